// Every label in Chinese and English, and the switch between them.
import { S } from "./state.js";

// [中文, English]
export const TEXT = {
  app: ["网格员", "Grid worker"],
  user: ["用户名", "User name"],
  password: ["密码", "Password"],
  signin: ["登录", "Sign in"],
  signout: ["退出", "Sign out"],
  badLogin: ["用户名或密码错误", "Wrong user name or password"],
  signedOut: ["登录已失效，请重新登录（未同步的修改仍保留）",
    "Signed out; sign in again (unsynced edits are kept)"],
  keepOutbox: ["还有 {n} 条修改未同步，会保留在本机，重新登录后同步。确定退出？",
    "{n} edits are not synced yet; they stay on this device and sync when you sign in " +
    "again. Sign out?"],
  pending: ["待同步", "Pending"],
  lastSync: ["上次同步", "Last sync"],
  never: ["从未", "never"],
  online: ["在线", "online"],
  offline: ["离线", "offline"],
  error: ["错误", "Error"],
  myGrid: ["我的网格", "My grid"],
  locate: ["定位", "Locate me"],
  add: ["新增点", "Add point"],
  problems: ["冲突/退回", "Conflicts/rejected"],
  save: ["保存", "Save"],
  cancel: ["取消", "Cancel"],
  close: ["关闭", "Close"],
  reason: ["原因（可选）", "Reason (optional)"],
  photo: ["拍照", "Photo"],
  photos: ["照片", "Photos"],
  position: ["位置", "Position"],
  dragHint: ["拖动地图上的圆圈可改位置", "Drag the ring on the map to move it"],
  moved: ["已移动 {d} 米", "moved {d} m"],
  unmoved: ["未改", "unchanged"],
  useGps: ["用我的位置", "Use my location"],
  yes: ["是", "yes"],
  no: ["否", "no"],
  required: ["必填", "required"],
  atLeast: ["不能小于 {v}", "at least {v}"],
  atMost: ["不能大于 {v}", "at most {v}"],
  above: ["须大于 {v}", "more than {v}"],
  below: ["须小于 {v}", "less than {v}"],
  whole: ["须为整数", "a whole number"],
  number: ["须为数字", "a number"],
  tooLong: ["最多 {v} 个字", "at most {v} characters"],
  pattern: ["格式不对", "wrong format"],
  fixErrors: ["请先改正标红的项", "Correct the fields in red first"],
  noChange: ["没有改动", "Nothing changed"],
  queued: ["已保存，待同步", "Saved; waiting to sync"],
  notEditable: ["此图层不可编辑", "This layer cannot be edited"],
  gpsPoor: ["GPS 精度太差：±{a} 米（须 ≤ {m} 米），未采用",
    "GPS too imprecise: ±{a} m (needs ≤ {m} m); not used"],
  gpsOk: ["定位精度 ±{a} 米", "Accuracy ±{a} m"],
  gpsNone: ["无法定位：{e}", "No location: {e}"],
  chooseLayer: ["新增哪类点？", "Add what?"],
  tapMap: ["在地图上点选位置，或用我的位置", "Tap the map, or use my location"],
  newPoint: ["新点", "new point"],
  pendingBadge: ["待同步", "pending"],
  conflictsTitle: ["冲突：请选择保留哪个值", "Conflicts: choose which value stays"],
  rejectedTitle: ["被退回的修改", "Rejected edits"],
  nothing: ["没有待处理的冲突或退回", "No conflicts or rejections"],
  field: ["字段", "Field"],
  base: ["原值", "Base"],
  mine: ["我的", "Mine"],
  server: ["服务器", "Server"],
  other: ["或输入新值", "or a new value"],
  allMine: ["全部用我的", "All mine"],
  allServer: ["全部用服务器的", "All server's"],
  useChosen: ["用所选的值", "Use the chosen values"],
  resolved: ["冲突已解决", "Conflict resolved"],
  conflictsArrived: ["有 {n} 条冲突待处理", "{n} conflicts to resolve"],
  rejectedArrived: ["有 {n} 条修改被退回", "{n} edits were rejected"],
  dismiss: ["知道了", "Dismiss"],
  needsNetwork: ["需要网络", "Needs a network"],
  createRejected: ["新增点被退回，此修改无法提交", "the new point was rejected, so this cannot apply"],
  photoType: ["照片须为 JPEG 或 PNG", "Photos must be JPEG or PNG"],
};


// ---- words --------------------------------------------------------------------------------

export function t(key, vars = {}) {
  const text = TEXT[key][S.lang === "zh" ? 0 : 1];
  return text.replace(/\{(\w+)\}/g, (_, name) => vars[name]);
}

// The API's labels are "中文 English": Chinese shows them whole, English only its English part.
export function bi(label) {
  if (S.lang === "zh" || label == null) return label;
  const split = String(label).match(/^[^\x00-\x7f][^ ]*\s+(.+)$/);
  return split ? split[1] : label;
}

export function applyText() {
  document.documentElement.lang = S.lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  document.getElementById("lang").textContent = S.lang === "zh" ? "EN" : "中文";
}
