// The grid worker's tablet page. Every edit goes first into an outbox in IndexedDB (so that
// neither a dropped link nor a reload loses it), then to POST /sync; the map and the list
// show the server's state with the pending edits laid over it. Signing in is the session the
// map and the board share (common/session.js).
import { forget, request, signIn, signOut, token, user } from "/static/common/session.js";

const LAYERS = JSON.parse(document.getElementById("twin-layers").textContent);
const SYNC_EVERY_MS = 30_000;
const MAX_BACKOFF_MS = 30_000;
const PHOTO_TYPES = ["image/jpeg", "image/png"];
const PHOTO_MAX_BYTES = 4_000_000; // larger photos are re-encoded before they are queued
const PHOTO_MAX_SIDE = 2048;
const ENUM_BUTTONS_UP_TO = 6; // longer enums become a select

// [中文, English]
const TEXT = {
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

const S = {
  lang: localStorage.getItem("twin.lang") || "zh",
  token: token(), // null once expired
  user: user(),
  lastSync: localStorage.getItem("twin.lastSync"),
  lastError: null,
  features: new Map(), // "layer/id" -> the server's Feature
  grids: null,
  cursor: null,
  schemas: {},
  outbox: [], // this user's queued edits, in device_seq order
  rejected: [],
  conflicts: [],
  schemasLoaded: false, // fetched again once a page load, cached for offline use
  syncing: null,
  backoff: 0,
  retry: null,
  sheet: null, // what the sheet shows: {kind: "form" | "add" | "problems", ...}
};

// ---- words --------------------------------------------------------------------------------

function t(key, vars = {}) {
  const text = TEXT[key][S.lang === "zh" ? 0 : 1];
  return text.replace(/\{(\w+)\}/g, (_, name) => vars[name]);
}

// The API's labels are "中文 English": Chinese shows them whole, English only its English part.
function bi(label) {
  if (S.lang === "zh" || label == null) return label;
  const split = String(label).match(/^[^\x00-\x7f][^ ]*\s+(.+)$/);
  return split ? split[1] : label;
}

function applyText() {
  document.documentElement.lang = S.lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  document.getElementById("lang").textContent = S.lang === "zh" ? "EN" : "中文";
}

// ---- DOM ----------------------------------------------------------------------------------

// Builds elements from text only (never innerHTML): names and values come from users.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") el.style.cssText = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c != null && c !== false));
  return el;
}

const $ = (id) => document.getElementById(id);

function toast(message, kind = "info") {
  const el = $("toast");
  el.textContent = message;
  el.className = kind;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

// ---- IndexedDB ----------------------------------------------------------------------------

const DB = await new Promise((resolve, reject) => {
  const request = indexedDB.open("twin-field", 1);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore("outbox", { keyPath: "edit_id" });
    db.createObjectStore("rejected", { keyPath: "edit_id" });
    db.createObjectStore("photos", { keyPath: "sha256" });
    db.createObjectStore("cache");
  };
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

function idb(store, mode, operation) {
  return new Promise((resolve, reject) => {
    const tx = DB.transaction(store, mode);
    const request = operation(tx.objectStore(store));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}
const idbGet = (store, key) => idb(store, "readonly", (s) => s.get(key));
const idbAll = (store) => idb(store, "readonly", (s) => s.getAll());
const idbPut = (store, value, key) => idb(store, "readwrite", (s) => s.put(value, key));
const idbDelete = (store, key) => idb(store, "readwrite", (s) => s.delete(key));

// ---- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body.description || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const sent = { ...headers };
  let payload = body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  const response = await request(path, { method, headers: sent, body: payload });
  if (response.status === 401 && S.token) {
    signOutLocally();
    toast(t("signedOut"), "error");
  }
  if (!response.ok) {
    throw new ApiError(response.status, await response.json().catch(() => ({})));
  }
  return response;
}

// ---- time, ids ----------------------------------------------------------------------------

function rfc3339(date = new Date()) {
  const offset = -date.getTimezoneOffset();
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  const local = new Date(date.getTime() + offset * 60_000).toISOString().slice(0, 19);
  return `${local}${offset < 0 ? "-" : "+"}${pad(offset / 60)}:${pad(offset % 60)}`;
}

function deviceId() {
  let id = localStorage.getItem("twin.device");
  if (!id) {
    id = crypto.randomUUID();
    localStorage.setItem("twin.device", id);
  }
  return id;
}

function nextSeq() {
  const seq = Number(localStorage.getItem("twin.seq") || 0) + 1;
  localStorage.setItem("twin.seq", String(seq));
  return seq;
}

const clock = (iso) => (iso
  ? new Date(iso).toLocaleTimeString(S.lang === "zh" ? "zh-CN" : "en-GB") : t("never"));

// GeoJSON to 7 decimals (1 cm): more is noise from the map's pixels.
const pointAt = (latlng) => ({ type: "Point",
  coordinates: [Number(latlng.lng.toFixed(7)), Number(latlng.lat.toFixed(7))] });

// ---- layers, schemas and the local view ---------------------------------------------------

const keyOf = (layer, id) => `${layer}/${id}`;
const xTwin = (layer) => S.schemas[layer]?.["x-twin"] ?? {};
const isPointLayer = (layer) => LAYERS[layer]?.geometry_type === "Point";

function stateOf(layer, props) {
  const field = xTwin(layer).state_field ?? LAYERS[layer]?.state_field;
  return field ? props[field] : undefined;
}

function colourOf(layer, props) {
  const style = LAYERS[layer] ?? { color: "#555", by_state: {} };
  return style.by_state[stateOf(layer, props)] ?? style.color;
}

function display(layer, field, value) {
  if (value == null || value === "") return "—";
  if (field === "geometry") return value.coordinates ? JSON.stringify(value.coordinates) : "—";
  const labels = field === xTwin(layer).state_field ? xTwin(layer).state_labels ?? {} : {};
  if (labels[value]) return bi(labels[value]);
  if (typeof value === "boolean") return t(value ? "yes" : "no");
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function titleOf(item) {
  const layerTitle = bi(xTwin(item.layer).title ?? LAYERS[item.layer]?.title ?? item.layer);
  const id = item.local ? t("newPoint") : `#${item.id}`;
  return `${item.properties.name || layerTitle} ${id}`;
}

// Server features with the pending edits laid over them, in the order they were made.
function localView() {
  const view = new Map();
  for (const [key, feature] of S.features) {
    view.set(key, { ...feature, key, properties: { ...feature.properties }, pending: 0 });
  }
  for (const edit of S.outbox) {
    let item = view.get(edit.key);
    if (edit.op === "create") {
      item = { type: "Feature", key: edit.key, layer: edit.layer, id: null, local: true,
        geometry: null, properties: {}, pending: 0 };
      view.set(edit.key, item);
    }
    if (!item) continue;
    if (edit.op === "delete") {
      view.delete(edit.key);
      continue;
    }
    for (const [field, change] of Object.entries(edit.changes)) {
      if (field === "geometry") item.geometry = change.new;
      else item.properties[field] = change.new;
    }
    item.pending += 1;
  }
  return view;
}

// Only the points of the user's own grids are listed (and editable); the rest is context.
function isMine(item) {
  return item.local || (S.user?.grids ?? []).includes(item.properties.micro_grid);
}

// ---- the map ------------------------------------------------------------------------------

let map = null;
let drawn = null;
let locateMarks = null;
let editMarker = null;
let fitted = false;
// a wide tap tolerance makes every drawn point a 44 px target
const renderer = L.canvas({ tolerance: 12 });

function ensureMap() {
  if (map) return;
  map = L.map("map", { attributionControl: false, zoomControl: true, preferCanvas: true })
    .setView([31.2, 121.5], 15);
  drawn = L.layerGroup().addTo(map);
  locateMarks = L.layerGroup().addTo(map);
  map.on("click", (event) => {
    if (S.sheet?.kind === "add" && S.sheet.layer) {
      openNewPoint(S.sheet.layer, event.latlng);
    }
  });
}

function drawMap(view) {
  ensureMap();
  drawn.clearLayers();
  if (S.grids) {
    L.geoJSON(S.grids, { renderer, interactive: false,
      style: { color: "#ff7f00", weight: 2, fillColor: "#fdbf6f", fillOpacity: 0.08 } })
      .addTo(drawn);
    if (!fitted && S.grids.features?.length) {
      map.fitBounds(L.geoJSON(S.grids).getBounds(), { padding: [20, 20], animate: false });
      fitted = true;
    }
  }
  // polygons under lines under points, so that points stay tappable
  const order = { Point: 2, LineString: 1 };
  const items = [...view.values()].filter((item) => item.geometry)
    .sort((a, b) => (order[a.geometry.type] ?? 0) - (order[b.geometry.type] ?? 0));
  for (const item of items) {
    const mine = isMine(item);
    const colour = colourOf(item.layer, item.properties);
    const dashed = item.pending ? "4 4" : null;
    const shape = L.geoJSON(item.geometry, {
      renderer,
      interactive: mine,
      pointToLayer: (_, latlng) => L.circleMarker(latlng, { renderer, radius: 9 }),
      style: item.geometry.type === "Point"
        ? { color: item.pending ? "#000" : "#fff", weight: 3, dashArray: dashed,
            fillColor: colour, fillOpacity: mine ? 0.95 : 0.3, opacity: mine ? 1 : 0.3 }
        : { color: colour, weight: item.geometry.type === "LineString" ? 5 : 1, dashArray: dashed,
            fillOpacity: 0.15, opacity: mine ? 0.9 : 0.3 },
    });
    if (mine) shape.on("click", (event) => {
      L.DomEvent.stop(event);
      openForm(item.key);
    });
    shape.addTo(drawn);
  }
}

// ---- the list -----------------------------------------------------------------------------

function drawList(view) {
  const items = [...view.values()].filter((item) => isPointLayer(item.layer) && isMine(item))
    // a stable order (new points last), so that nothing moves under the finger after a save
    .sort((a, b) => a.layer.localeCompare(b.layer) || (a.id ?? Infinity) - (b.id ?? Infinity));
  $("list").replaceChildren(...items.map((item) => {
    const state = stateOf(item.layer, item.properties);
    return h("li", {},
      h("button", { type: "button", class: "item", dataset: { key: item.key },
        onclick: () => openForm(item.key) },
      h("span", { class: "dot", style: `background:${colourOf(item.layer, item.properties)}` }),
      h("span", { class: "name" }, titleOf(item)),
      state != null && h("span", { class: "state" }, display(item.layer, xTwin(item.layer).state_field, state)),
      item.pending > 0 && h("span", { class: "badge" }, t("pendingBadge"))));
  }));
}

// ---- the status line ----------------------------------------------------------------------

function drawStatus() {
  const status = $("status");
  status.dataset.pending = String(S.outbox.length);
  $("pending").textContent = String(S.outbox.length);
  $("last-sync").textContent = clock(S.lastSync);
  $("net").textContent = t(navigator.onLine ? "online" : "offline");
  $("net").className = navigator.onLine ? "online" : "offline";
  const error = $("sync-error");
  error.hidden = !S.lastError;
  error.textContent = S.lastError ? `${t("error")}: ${S.lastError}` : "";
  const open = S.conflicts.length + S.rejected.length;
  $("conflict-count").textContent = String(open);
  $("conflicts-button").classList.toggle("alert", open > 0);
}

function render() {
  applyText();
  drawStatus();
  if (!S.token) return;
  const view = localView();
  drawMap(view);
  drawList(view);
}

// ---- forms generated from the layer's schema ----------------------------------------------

// The schema of one attribute, with pydantic's anyOf [X, null] folded into X.
function fieldSchema(property) {
  const branch = property.anyOf?.find((b) => b.type !== "null") ?? property;
  return { ...branch, ...property, anyOf: undefined,
    nullable: Boolean(property.anyOf?.some((b) => b.type === "null")) };
}

function editableFields(schema) {
  return Object.entries(schema.properties ?? {})
    .map(([name, property]) => [name, fieldSchema(property)])
    .filter(([, p]) => p.enum || ["boolean", "integer", "number", "string"].includes(p.type));
}

function problemOf(p, value, required) {
  if (value == null || value === "") return required && !p.nullable ? t("required") : null;
  if (p.type === "integer" || p.type === "number") {
    if (typeof value !== "number" || Number.isNaN(value)) return t("number");
    if (p.type === "integer" && !Number.isInteger(value)) return t("whole");
    if (p.minimum != null && value < p.minimum) return t("atLeast", { v: p.minimum });
    if (p.maximum != null && value > p.maximum) return t("atMost", { v: p.maximum });
    if (p.exclusiveMinimum != null && value <= p.exclusiveMinimum) return t("above", { v: p.exclusiveMinimum });
    if (p.exclusiveMaximum != null && value >= p.exclusiveMaximum) return t("below", { v: p.exclusiveMaximum });
  }
  if (p.type === "string") {
    if (p.maxLength != null && value.length > p.maxLength) return t("tooLong", { v: p.maxLength });
    if (p.pattern && !new RegExp(p.pattern).test(value)) return t("pattern");
  }
  return null;
}

// One input for one attribute; onChange gets the typed value (null when empty). Short enums
// are big buttons unless the input is only a compact alternative (a conflict's new value).
function widget(layer, name, p, value, onChange, compact = false) {
  const labels = name === xTwin(layer).state_field ? xTwin(layer).state_labels ?? {} : {};
  if (p.enum && !compact && p.enum.length <= ENUM_BUTTONS_UP_TO) {
    const group = h("div", { class: "choices", role: "radiogroup", "data-field": name });
    const pick = (choice) => {
      for (const b of group.children) b.setAttribute("aria-checked", String(b.dataset.value === choice));
      onChange(choice);
    };
    group.append(...p.enum.map((choice) => h("button", {
      type: "button", role: "radio", dataset: { value: choice }, "aria-checked": String(choice === value),
      style: `--c:${LAYERS[layer]?.by_state?.[choice] ?? "#1f4e79"}`,
      onclick: () => pick(choice) }, bi(labels[choice] ?? choice))));
    return group;
  }
  if (p.enum) {
    return h("select", { name, onchange: (e) => onChange(e.target.value || null) },
      h("option", { value: "" }, "—"),
      p.enum.map((choice) => h("option", { value: choice, selected: choice === value },
        bi(labels[choice] ?? choice))));
  }
  if (p.type === "boolean") {
    return h("label", { class: "toggle" },
      h("input", { type: "checkbox", name, role: "switch", checked: Boolean(value),
        onchange: (e) => onChange(e.target.checked) }),
      h("span", {}, t(value ? "yes" : "no")));
  }
  const numeric = p.type === "integer" || p.type === "number";
  return h("input", {
    name, type: numeric ? "number" : "text",
    inputmode: numeric ? (p.type === "integer" ? "numeric" : "decimal") : null,
    step: p.type === "integer" ? "1" : numeric ? "any" : null,
    min: p.minimum ?? p.exclusiveMinimum, max: p.maximum ?? p.exclusiveMaximum,
    maxlength: p.maxLength, value: value ?? "",
    oninput: (e) => onChange(e.target.value === "" ? null : numeric ? Number(e.target.value) : e.target.value),
  });
}

function openForm(key, fresh = null) {
  const item = fresh ?? localView().get(key);
  if (!item) return;
  const schema = S.schemas[item.layer];
  if (!schema || xTwin(item.layer).editable === false) {
    toast(t("notEditable"), "error");
    return;
  }
  const values = {};
  for (const [name, p] of editableFields(schema)) values[name] = item.properties[name] ?? p.default ?? null;
  S.sheet = { kind: "form", item, schema, values, creating: Boolean(fresh), reason: "",
    photos: [...(item.properties.photos ?? [])], geometry: item.geometry,
    accuracy: fresh?.accuracy ?? null };
  drawSheet();
}

function drawForm() {
  const form = S.sheet;
  const { item, schema } = form;
  const required = new Set(schema.required ?? []);
  const rows = editableFields(schema).map(([name, p]) => {
    const message = h("p", { class: "error", "data-error": name });
    const check = () => { message.textContent = problemOf(p, form.values[name], required.has(name)) ?? ""; };
    const input = widget(item.layer, name, p, form.values[name], (value) => {
      form.values[name] = value;
      check();
      if (p.type === "boolean") input.querySelector("span").textContent = t(value ? "yes" : "no");
    });
    return h("div", { class: "row" }, h("label", { class: "label" }, bi(p.title ?? name)), input, message);
  });
  const point = item.geometry?.type === "Point";
  $("sheet").replaceChildren(
    h("h2", {}, titleOf(item),
      item.properties.version != null && h("small", {}, ` v${item.properties.version}`)),
    ...rows,
    point && h("div", { class: "row" },
      h("span", { class: "label" }, t("position")),
      h("p", { id: "moved", class: "hint" }, movedText()),
      h("button", { type: "button", id: "use-gps", onclick: () => useGps() }, t("useGps")),
      h("p", { class: "hint" }, t("dragHint"))),
    h("div", { class: "row" },
      h("span", { class: "label" }, t("photos")),
      h("div", { id: "thumbs", class: "thumbs" }),
      h("label", { class: "button" }, t("photo"),
        h("input", { type: "file", accept: "image/*", capture: "environment", hidden: true,
          onchange: (e) => attachPhoto(e.target.files[0]) }))),
    h("div", { class: "row" },
      h("label", { class: "label", for: "reason" }, t("reason")),
      h("input", { id: "reason", name: "reason", value: form.reason,
        oninput: (e) => { form.reason = e.target.value; } })),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "cancel", onclick: closeSheet }, t("cancel")),
      h("button", { type: "button", id: "save", class: "primary", onclick: save }, t("save"))));
  drawThumbs();
  if (point) showEditMarker();
}

function movedText() {
  const { item, geometry, creating } = S.sheet;
  if (creating) return geometry ? geometry.coordinates.map((c) => c.toFixed(6)).join(", ") : "—";
  if (geometry === item.geometry) return t("unmoved");
  const [a, b] = [item.geometry, geometry].map((g) => L.latLng(g.coordinates[1], g.coordinates[0]));
  return t("moved", { d: Math.round(a.distanceTo(b)) });
}

function setPosition(latlng, accuracy) {
  S.sheet.geometry = pointAt(latlng);
  S.sheet.accuracy = accuracy;
  $("moved").textContent = movedText();
}

function showEditMarker() {
  const [lon, lat] = S.sheet.geometry.coordinates;
  editMarker?.remove();
  editMarker = L.marker([lat, lon], { draggable: true, autoPan: true,
    icon: L.divIcon({ className: "edit-marker", iconSize: [44, 44] }) }).addTo(map);
  // a position dragged by eye has no GPS accuracy
  editMarker.on("dragend", () => setPosition(editMarker.getLatLng(), null));
  map.panTo([lat, lon]);
}

async function save() {
  const form = S.sheet;
  const { item, schema, creating } = form;
  const required = new Set(schema.required ?? []);
  let bad = false;
  for (const [name, p] of editableFields(schema)) {
    const problem = problemOf(p, form.values[name], required.has(name));
    $("sheet").querySelector(`[data-error="${name}"]`).textContent = problem ?? "";
    bad ||= Boolean(problem);
  }
  if (bad) {
    toast(t("fixErrors"), "error");
    return;
  }
  const changes = {};
  for (const [name] of editableFields(schema)) {
    const old = creating ? null : item.properties[name] ?? null;
    if (creating || form.values[name] !== old) changes[name] = { old, new: form.values[name] };
  }
  if (creating || JSON.stringify(form.geometry) !== JSON.stringify(item.geometry)) {
    changes.geometry = { old: creating ? null : item.geometry, new: form.geometry };
  }
  const before = item.properties.photos ?? [];
  if (form.photos.length !== before.length) changes.photos = { old: before, new: form.photos };
  if (!Object.keys(changes).length) {
    toast(t("noChange"));
    return;
  }
  const editId = crypto.randomUUID();
  const edit = {
    edit_id: editId, device_id: deviceId(), device_seq: nextSeq(), layer: item.layer,
    op: creating ? "create" : "update", changes, device_time: rfc3339(),
    // not sent: whose edit it is, and which local feature it belongs to
    user: S.user.name, key: creating ? keyOf(item.layer, `local-${editId}`) : item.key,
  };
  // a point still waiting for its creation gets its id and version when that is answered
  if (!creating && !item.local) {
    edit.feature_id = item.id;
    edit.base_version = item.properties.version;
  }
  if (form.reason.trim()) edit.reason = form.reason.trim();
  if (changes.geometry && form.accuracy != null) edit.accuracy_m = form.accuracy;
  await idbPut("outbox", edit);
  S.outbox.push(edit);
  closeSheet();
  toast(t("queued"));
  sync();
}

// ---- photos -------------------------------------------------------------------------------

async function sha256(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// Cameras may give HEIC or very large files: those are re-encoded as a smaller JPEG.
async function uploadable(file) {
  if (PHOTO_TYPES.includes(file.type) && file.size <= PHOTO_MAX_BYTES) return file;
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return canvas.convertToBlob({ type: "image/jpeg", quality: 0.85 });
}

async function attachPhoto(file) {
  if (!file) return;
  const blob = await uploadable(file).catch(() => null);
  if (!blob) {
    toast(t("photoType"), "error");
    return;
  }
  const digest = await sha256(blob);
  // kept on the device until uploaded, so that a photo taken offline is not lost
  await idbPut("photos", { sha256: digest, blob, type: blob.type, tried: false });
  if (S.sheet?.kind !== "form") return; // the form was closed meanwhile
  if (!S.sheet.photos.includes(digest)) S.sheet.photos.push(digest);
  drawThumbs();
}

async function drawThumbs() {
  const box = $("thumbs");
  const images = await Promise.all(S.sheet.photos.map(async (digest) => {
    const local = await idbGet("photos", digest);
    const blob = local?.blob ?? (navigator.onLine
      ? await api(`/photos/${digest}`).then((r) => r.blob()).catch(() => null) : null);
    return blob ? h("img", { src: URL.createObjectURL(blob), alt: digest.slice(0, 8) })
      : h("span", { class: "hint" }, digest.slice(0, 8));
  }));
  box.replaceChildren(...images);
}

// A HEAD first only when an earlier upload may have arrived (its answer lost): re-sending
// would be safe, but costs the link a whole photo.
async function uploadPhotos(edits) {
  const digests = new Set(edits.flatMap((e) => e.changes.photos?.new ?? []));
  for (const digest of digests) {
    const photo = await idbGet("photos", digest);
    if (!photo) continue; // already uploaded
    const stored = photo.tried && (await fetch(`/photos/${digest}`, { method: "HEAD",
      headers: { Authorization: `Bearer ${S.token}` } })).ok;
    if (!stored) {
      await idbPut("photos", { ...photo, tried: true });
      await api(`/photos/${digest}`, { method: "PUT", body: photo.blob,
        headers: { "Content-Type": photo.type } });
    }
    await idbDelete("photos", digest);
  }
}

// ---- location -----------------------------------------------------------------------------

function fix() {
  return new Promise((resolve, reject) => navigator.geolocation.getCurrentPosition(resolve, reject,
    { enableHighAccuracy: true, timeout: 20_000, maximumAge: 0 }));
}

// The strictest threshold of the layers the user may add points to.
function strictestGpsError(layer) {
  const limits = (layer ? [layer] : Object.keys(S.schemas).filter(isPointLayer))
    .map((name) => xTwin(name).max_gps_error_m).filter((m) => m != null);
  return limits.length ? Math.min(...limits) : Infinity;
}

async function locate(layer) {
  let position;
  try {
    position = await fix();
  } catch (error) {
    toast(t("gpsNone", { e: error.message }), "error");
    return null;
  }
  const { latitude, longitude, accuracy } = position.coords;
  const latlng = L.latLng(latitude, longitude);
  const limit = strictestGpsError(layer);
  const poor = accuracy > limit;
  locateMarks.clearLayers();
  L.circle(latlng, { radius: accuracy, color: poor ? "#e31a1c" : "#1f78b4", weight: 1, fillOpacity: 0.1 })
    .addTo(locateMarks);
  L.circleMarker(latlng, { radius: 6, color: "#fff", weight: 2, fillColor: "#1f78b4", fillOpacity: 1 })
    .addTo(locateMarks);
  map.panTo(latlng);
  const a = Math.round(accuracy * 10) / 10;
  if (poor) {
    toast(t("gpsPoor", { a, m: limit }), "error");
    return null;
  }
  toast(t("gpsOk", { a }));
  return { latlng, accuracy: a };
}

async function useGps() {
  const found = await locate(S.sheet.item.layer);
  if (!found || S.sheet?.kind !== "form") return;
  setPosition(found.latlng, found.accuracy);
  editMarker.setLatLng(found.latlng);
}

// ---- adding a point -----------------------------------------------------------------------

function drawAdd() {
  const layers = Object.keys(S.schemas).filter((name) => isPointLayer(name) && xTwin(name).editable !== false);
  const { layer } = S.sheet;
  $("sheet").replaceChildren(
    h("h2", {}, t(layer ? "tapMap" : "chooseLayer")),
    h("div", { class: "choices", role: "radiogroup" }, layers.map((name) => h("button", {
      type: "button", role: "radio", dataset: { layer: name }, "aria-checked": String(name === layer),
      onclick: () => { S.sheet.layer = name; drawSheet(); } }, bi(xTwin(name).title ?? LAYERS[name].title)))),
    layer && h("button", { type: "button", id: "add-gps", onclick: async () => {
      const found = await locate(layer);
      if (found) openNewPoint(layer, found.latlng, found.accuracy);
    } }, t("useGps")),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: closeSheet }, t("cancel"))));
}

function openNewPoint(layer, latlng, accuracy = null) {
  openForm(null, { layer, local: true, id: null, geometry: pointAt(latlng), properties: {}, accuracy });
}

// ---- conflicts and rejections -------------------------------------------------------------

function conflictCard(conflict) {
  const schema = S.schemas[conflict.layer] ?? { properties: {} };
  const fields = Object.entries(conflict.fields);
  const chosen = {};
  const resolve = h("button", { type: "button", class: "primary", "data-choose": "values",
    disabled: true, onclick: () => resolveConflict(conflict, { values: chosen }) }, t("useChosen"));
  const refresh = () => { resolve.disabled = fields.some(([field]) => chosen[field] === undefined); };
  const rows = fields.map(([field, sides]) => {
    // one value per field: a side's, or a new one typed in
    const choose = (value, pressed) => {
      chosen[field] = value;
      for (const cell of cells) cell.setAttribute("aria-pressed", String(cell === pressed));
      refresh();
    };
    const cells = ["base", "mine", "server"].map((side) => h("button", {
      type: "button", class: "side", dataset: { side, field },
      onclick: (e) => choose(sides[side], e.currentTarget) },
    display(conflict.layer, field, sides[side])));
    const p = schema.properties[field] && fieldSchema(schema.properties[field]);
    // an emptied new value chooses nothing
    const other = p && widget(conflict.layer, field, p, null,
      (value) => choose(value ?? undefined, null), true);
    return h("div", { class: "conflict-field" },
      h("span", { class: "label" }, bi(p?.title ?? field)), ...cells,
      other && h("div", { class: "other" }, h("span", { class: "hint" }, t("other")), other));
  });
  const side = (choose, label) => h("button", { type: "button", "data-choose": choose,
    onclick: () => resolveConflict(conflict, { choose }) }, t(label));
  return h("article", { class: "conflict", dataset: { conflict: conflict.id } },
    h("h3", {}, titleOf({ layer: conflict.layer, id: conflict.feature_id,
      properties: conflict.feature?.properties ?? {} })),
    h("div", { class: "conflict-field head" },
      h("span", { class: "label" }, t("field")),
      ["base", "mine", "server"].map((name) => h("span", { class: "side-head" }, t(name)))),
    ...rows,
    h("div", { class: "actions" }, side("mine", "allMine"), side("server", "allServer"), resolve));
}

function rejectedCard(edit) {
  const show = (field, value) => display(edit.layer, field, value);
  const reason = (p) => (S.lang === "zh" ? p.reason_zh || p.reason : p.reason);
  return h("article", { class: "rejected", dataset: { edit: edit.edit_id } },
    h("h3", {}, titleOf({ layer: edit.layer, id: edit.feature_id, local: !edit.feature_id,
      properties: {} })),
    h("ul", {}, Object.entries(edit.changes).map(([field, change]) =>
      h("li", {}, `${field}: ${show(field, change.old)} → ${show(field, change.new)}`))),
    h("ul", { class: "error" }, edit.problems.map((p) =>
      h("li", {}, `${p.field ?? ""}${p.value != null ? ` (${p.value})` : ""}: ${reason(p)}`))),
    h("button", { type: "button", onclick: async () => {
      await idbDelete("rejected", edit.edit_id);
      S.rejected = S.rejected.filter((e) => e !== edit);
      drawSheet();
      drawStatus();
    } }, t("dismiss")));
}

function drawProblems() {
  const cards = [...S.conflicts.map(conflictCard)];
  if (S.rejected.length) cards.push(h("h2", {}, t("rejectedTitle")), ...S.rejected.map(rejectedCard));
  $("sheet").replaceChildren(
    h("h2", {}, t("conflictsTitle")),
    ...(cards.length ? cards : [h("p", { class: "hint" }, t("nothing"))]),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: closeSheet }, t("close"))));
}

async function resolveConflict(conflict, choice) {
  if (!navigator.onLine) {
    toast(t("needsNetwork"), "error");
    return;
  }
  try {
    const answer = await (await api(`/conflicts/${conflict.id}/resolve`,
      { method: "POST", json: choice })).json();
    if (answer.feature) {
      S.features.set(keyOf(conflict.layer, answer.feature.id), { ...answer.feature, layer: conflict.layer });
    }
    S.conflicts = S.conflicts.filter((c) => c.id !== conflict.id);
    toast(t("resolved"));
  } catch (error) {
    toast(error.message, "error");
  }
  render();
  drawSheet();
}

// ---- the sheet ----------------------------------------------------------------------------

function drawSheet() {
  const sheet = $("sheet");
  sheet.hidden = !S.sheet;
  document.body.classList.toggle("sheet-open", Boolean(S.sheet));
  if (!S.sheet) return;
  ({ form: drawForm, add: drawAdd, problems: drawProblems })[S.sheet.kind]();
}

function closeSheet() {
  S.sheet = null;
  editMarker?.remove();
  editMarker = null;
  drawSheet();
  render();
}

// ---- sync ---------------------------------------------------------------------------------

// Strips what only the device needs.
const wire = ({ user, key, ...edit }) => edit;

async function settle(edit, result) {
  await idbDelete("outbox", edit.edit_id);
  S.outbox = S.outbox.filter((e) => e.edit_id !== edit.edit_id);
  if (result.feature) {
    S.features.set(keyOf(edit.layer, result.feature.id), { ...result.feature, layer: edit.layer });
  }
  // A duplicate carries the first answer: a problem or a conflict there means it never applied.
  const status = result.status === "duplicate"
    ? result.conflict != null ? "conflict" : result.problems?.length ? "rejected" : "applied"
    : result.status;
  const later = S.outbox.filter((e) => e.key === edit.key);
  if (status === "applied" || status === "merged") {
    if (edit.op === "delete") S.features.delete(edit.key);
    // later edits of the feature were made on top of this one
    for (const next of later) {
      next.base_version = result.version;
      if (edit.op === "create") {
        next.feature_id = result.feature.id;
        next.key = keyOf(edit.layer, result.feature.id);
      }
      await idbPut("outbox", next);
    }
  } else if (status === "rejected") {
    const rejected = [{ ...edit, problems: result.problems ?? [] }];
    // later edits of a point whose creation was refused can never be sent
    if (edit.op === "create") {
      for (const next of later) {
        rejected.push({ ...next, problems: [{ field: null, value: null, reason: TEXT.createRejected[1],
          reason_zh: TEXT.createRejected[0] }] });
        await idbDelete("outbox", next.edit_id);
      }
      S.outbox = S.outbox.filter((e) => !later.includes(e));
    }
    for (const r of rejected) await idbPut("rejected", r);
    S.rejected.push(...rejected);
    toast(t("rejectedArrived", { n: rejected.length }), "error");
  }
}

// What stays on this device besides the batch, for the command centre's sync health.
function outboxReport(batch) {
  const rest = S.outbox.filter((edit) => !batch.includes(edit));
  return { device_id: deviceId(), waiting: rest.length,
           oldest_device_time: rest[0]?.device_time ?? null, sent_at: rfc3339() };
}

async function pushOutbox() {
  for (;;) {
    // One edit per feature a batch: the next is rebased on the version this one makes.
    const batch = [];
    const seen = new Set();
    for (const edit of S.outbox) {
      if (seen.has(edit.key)) continue;
      seen.add(edit.key);
      batch.push(edit);
    }
    const outbox = outboxReport(batch);
    if (!batch.length) {
      // once a page load, and after a batch that left edits waiting: "nothing waits here now"
      if (S.reportedWaiting !== 0) await api("/sync", { method: "POST", json: { edits: [], outbox } });
      S.reportedWaiting = 0;
      return;
    }
    await uploadPhotos(batch);
    const { results } = await (await api("/sync", { method: "POST", json: { edits: batch.map(wire), outbox } })).json();
    S.reportedWaiting = outbox.waiting;
    const byId = new Map(results.map((r) => [r.edit_id, r]));
    const answered = batch.filter((edit) => byId.has(edit.edit_id));
    if (!answered.length) throw new Error("POST /sync answered none of the edits");
    for (const edit of answered) await settle(edit, byId.get(edit.edit_id));
  }
}

async function pullScope() {
  const since = S.cursor ? `?since=${encodeURIComponent(S.cursor)}` : "";
  const scope = await (await api(`/sync/scope${since}`)).json();
  if (!since) S.features.clear();
  for (const feature of scope.features.features) S.features.set(keyOf(feature.layer, feature.id), feature);
  for (const gone of scope.deleted ?? []) S.features.delete(keyOf(gone.layer, gone.id));
  if (!since || scope.grids?.features?.length) S.grids = scope.grids;
  S.cursor = scope.cursor;
  const cached = { cursor: S.cursor, grids: S.grids, features: [...S.features.values()] };
  await idbPut("cache", cached, `scope:${S.user.name}`);
}

async function loadSchemas() {
  const names = Object.keys(LAYERS).filter((name) => LAYERS[name].group === "twin");
  const schemas = await Promise.all(names.map((name) =>
    api(`/collections/${name}/schema`).then((r) => r.json()).catch(() => null)));
  names.forEach((name, i) => { if (schemas[i]) S.schemas[name] = schemas[i]; });
  await idbPut("cache", S.schemas, "schemas");
  S.schemasLoaded = true;
}

async function loadConflicts() {
  const before = new Set(S.conflicts.map((c) => c.id));
  S.conflicts = (await (await api("/conflicts")).json()).conflicts.filter((c) => c.status === "open");
  const arrived = S.conflicts.filter((c) => !before.has(c.id)).length;
  if (arrived) toast(t("conflictsArrived", { n: arrived }), "error");
}

const problemIds = () => [...S.conflicts.map((c) => c.id), ...S.rejected.map((e) => e.edit_id)].join();

function sync() {
  if (S.syncing || !S.token || !navigator.onLine) return S.syncing;
  clearTimeout(S.retry);
  const shown = problemIds();
  S.syncing = (async () => {
    try {
      if (!S.schemasLoaded) await loadSchemas();
      await pushOutbox();
      await pullScope();
      await loadConflicts();
      S.lastSync = new Date().toISOString();
      localStorage.setItem("twin.lastSync", S.lastSync);
      S.lastError = null;
      S.backoff = 0;
    } catch (error) {
      S.lastError = error.message;
      // retry sooner than the periodic sync, backing off while the link stays bad
      S.backoff = Math.min(MAX_BACKOFF_MS, (S.backoff || 1000) * 2);
      if (S.token) S.retry = setTimeout(sync, S.backoff);
    } finally {
      S.syncing = null;
      render();
      // redrawn only when they changed, so that half-made choices survive the periodic sync
      if (S.sheet?.kind === "problems" && problemIds() !== shown) drawSheet();
    }
  })();
  return S.syncing;
}

// ---- signing in and out -------------------------------------------------------------------

async function loadLocal() {
  const cached = await idbGet("cache", `scope:${S.user.name}`);
  S.features = new Map((cached?.features ?? []).map((f) => [keyOf(f.layer, f.id), f]));
  S.grids = cached?.grids ?? null;
  S.cursor = cached?.cursor ?? null;
  S.schemas = (await idbGet("cache", "schemas")) ?? {};
  const mine = (e) => e.user === S.user.name;
  S.outbox = (await idbAll("outbox")).filter(mine).sort((a, b) => a.device_seq - b.device_seq);
  S.rejected = (await idbAll("rejected")).filter(mine);
  S.reportedWaiting = undefined; // this user's outbox not yet reported from this page
}

function showApp() {
  const signedIn = Boolean(S.token);
  $("login").hidden = signedIn;
  $("app").hidden = !signedIn;
  $("signout").hidden = !signedIn;
  $("who").textContent = signedIn ? `${t("app")} ${S.user.name}` : t("app");
  $("who").removeAttribute("data-t");
  if (signedIn) {
    ensureMap();
    map.invalidateSize();
  }
}

async function start() {
  await loadLocal();
  showApp();
  render();
  await sync();
}

function signOutLocally() {
  S.token = null;
  S.sheet = null;
  S.cursor = null;
  fitted = false;
  forget();
  drawSheet();
  showApp();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  $("login-error").textContent = "";
  try {
    const answer = await signIn(data.get("username"), data.get("password"));
    if (!answer) {
      $("login-error").textContent = t("badLogin");
      return;
    }
    S.token = answer.access_token;
    S.user = answer.user;
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("signout").addEventListener("click", async () => {
  if (S.outbox.length && !confirm(t("keepOutbox", { n: S.outbox.length }))) return;
  await signOut(); // the token dies with the sign-out; offline it simply expires
  await idbDelete("cache", `scope:${S.user.name}`);
  signOutLocally();
  render();
});

$("lang").addEventListener("click", () => {
  S.lang = S.lang === "zh" ? "en" : "zh";
  localStorage.setItem("twin.lang", S.lang);
  showApp();
  render();
  drawSheet();
});

$("status").addEventListener("click", () => sync());
$("locate").addEventListener("click", () => locate(null));
$("add").addEventListener("click", () => { S.sheet = { kind: "add", layer: null }; drawSheet(); });
$("conflicts-button").addEventListener("click", () => { S.sheet = { kind: "problems" }; drawSheet(); });
window.addEventListener("online", () => { render(); sync(); });
window.addEventListener("offline", render);
setInterval(sync, SYNC_EVERY_MS);

navigator.serviceWorker?.register("/field/sw.js", { scope: "/field" });

applyText();
if (S.token) await start();
else showApp();
