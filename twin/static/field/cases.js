// My cases (我的案件): the open cases the server gives this worker (sent to me, or in my grids),
// reporting one (category, photo, GPS fix, send: four taps), handling and verifying one. Every
// report and move goes into the same outbox as feature edits and travels in POST /sync; a move
// whose case has moved on since comes back a conflict and is kept (and shown) until dismissed.
import { S } from "./state.js";
import { t } from "./words.js";
import { $, h, toast } from "./dom.js";
import { idbGet, idbPut } from "./idb.js";
import { api } from "./api.js";
import { deviceId, nextSeq, pointAt, rfc3339 } from "./ids.js";
import { M, closeSheet, drawSheet, render } from "./view.js";
import { attachPhoto, drawThumbs } from "./photos.js";
import { fix } from "./location.js";
import { sync } from "./sync.js";

export const CASES = "cases"; // the sync batch's "layer" of case items
export const OPEN_STATES = ["reported", "filed", "dispatched", "handled"];
export const VERIFY_WITHIN_M = 50; // the server's rule (twin.case_rules), shown before sending
const NEARBY_M = 60; // features this close to the place make their layer's categories come first
const TOP_CATEGORIES = 6; // as big buttons; the rest in a list
const STATE_COLOURS = { reported: "#6a3d9a", filed: "#1f78b4", dispatched: "#ff7f00",
  handled: "#33a02c", closed: "#777", not_filed: "#777", parked: "#b15928", void: "#777" };

export const caseKey = (id) => `${CASES}/${id}`;
const byCode = (code) => S.categories.find((c) => c.code === code);
const pick = (zh, en) => (S.lang === "zh" ? zh : en);

// ---- the server's cases, kept for offline use -------------------------------------------

export async function loadLocalCases() {
  const cached = await idbGet("cache", `cases:${S.user.name}`);
  S.cases = new Map((cached ?? []).map((c) => [caseKey(c.id), c]));
  S.categories = (await idbGet("cache", "caseCategories")) ?? [];
}

export async function pullCases() {
  if (!S.categoriesLoaded) {
    S.categories = (await (await api("/cases/categories")).json()).categories;
    await idbPut("cache", S.categories, "caseCategories");
    S.categoriesLoaded = true;
  }
  // what GET /cases gives a worker: their grids' cases and those sent to them
  const found = await (await api(`/cases?state=${OPEN_STATES.join(",")}&limit=1000`)).json();
  S.cases = new Map(found.features.map((c) => [caseKey(c.id), c]));
  await idbPut("cache", found.features, `cases:${S.user.name}`);
}

// The server's answer to a case item of the outbox (settle() has taken it off the outbox).
export async function settleCase(edit, result, status) {
  if (result.feature) S.cases.set(caseKey(result.feature.id), result.feature);
  if (status === "conflict" || status === "rejected") {
    // a held move keeps its conflict's id: dismissing it settles it on the server too
    const kept = { ...edit, conflict: status === "conflict", conflictId: result.conflict,
      problems: result.problems ?? [] };
    await idbPut("rejected", kept);
    S.rejected.push(kept);
    toast(status === "conflict" ? t("caseMovedOn") : `${t("caseRefused")}: ${problemText(kept)}`,
      "error");
  }
}

export const problemText = (edit) => edit.problems
  .map((p) => (S.lang === "zh" ? p.reason_zh || p.reason : p.reason)).join("; ");

// ---- the local view: the server's cases with the queued reports and moves laid over ------

export function caseView() {
  const view = new Map();
  for (const [key, c] of S.cases) view.set(key, { ...c, key, properties: { ...c.properties }, pending: 0 });
  for (const edit of S.outbox) {
    if (edit.layer !== CASES) continue;
    let item = view.get(edit.key);
    if (edit.op === "create") {
      const category = byCode(edit.changes.category.new);
      item = { type: "Feature", key: edit.key, id: null, local: true,
        geometry: edit.changes.geometry.new, pending: 0,
        properties: { state: "reported", category: edit.changes.category.new,
          category_zh: category?.name_zh, category_en: category?.name_en,
          description: edit.changes.description?.new ?? "", due: {}, overdue: false,
          micro_grid: null, reported_by: S.user.name } };
      view.set(edit.key, item);
    }
    if (!item) continue;
    if (edit.op === "transition") item.properties.state = edit.changes.state.new;
    item.pending += 1;
  }
  return view;
}

// What this worker may do with a case now (the server checks it again).
export function actionOf(props) {
  if (props.state === "dispatched" && props.assignee === S.user.name) return "handle";
  if (props.state === "handled" && (S.user.grids ?? []).includes(props.micro_grid)
      && props.handled_by !== S.user.name) return "verify";
  return null;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(S.lang === "zh" ? "zh-CN" : "en-GB",
    { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }) : "—";
}

// Due time of the running stage, and the working hours left or over.
export function dueText(props) {
  if (!OPEN_STATES.includes(props.state) || !props.due?.stage) return "";
  const due = t("dueAt", { d: when(props.due.stage) });
  if (props.overdue) return `${due} · ${t("overdueBy", { h: props.overdue_hours ?? "?" })}`;
  if (props.time_left_hours != null) return `${due} · ${t("timeLeft", { h: props.time_left_hours })}`;
  return due;
}

export const categoryText = (props) => [props.category_zh, props.category_en]
  .filter(Boolean).join(" · ") || props.category;
const caseTitle = (item) => `${categoryText(item.properties)} ${item.local ? t("newCase") : `#${item.id}`}`;

// ---- the list and the map ---------------------------------------------------------------

const URGENCY = { handle: 0, verify: 1 };

export function drawCases() {
  const items = [...caseView().values()].filter((c) => OPEN_STATES.includes(c.properties.state))
    .sort((a, b) => (URGENCY[actionOf(a.properties)] ?? 2) - (URGENCY[actionOf(b.properties)] ?? 2)
      || Number(b.properties.overdue) - Number(a.properties.overdue)
      || String(a.properties.due?.stage ?? "~").localeCompare(String(b.properties.due?.stage ?? "~"))
      || (a.id ?? Infinity) - (b.id ?? Infinity));
  $("case-count").textContent = String(items.length);
  $("cases").replaceChildren(...items.map((item) => {
    const p = item.properties;
    const action = item.pending ? null : actionOf(p);
    return h("li", {}, h("button", { type: "button", class: `item case-item${p.overdue ? " overdue" : ""}`,
      dataset: { case: item.key, state: p.state }, onclick: () => openCase(item.key) },
    h("span", { class: "dot", style: `background:${STATE_COLOURS[p.state]}` }),
    h("span", { class: "name" }, h("b", {}, p.category_zh ?? p.category),
      h("small", { class: "en" }, p.category_en ?? ""),
      h("small", { class: "due" }, dueText(p))),
    h("span", { class: "state" }, t(`state_${p.state}`)),
    action && h("span", { class: "todo" }, t(action === "handle" ? "toHandle" : "toVerify")),
    item.pending > 0 && h("span", { class: "badge" }, t("pendingBadge"))));
  }));
  if (!$("cases").children.length) $("cases").append(h("li", { class: "hint" }, t("noCases")));
  drawCaseMarkers(items);
}

function drawCaseMarkers(items) {
  if (!M.map) return;
  M.cases ??= L.layerGroup().addTo(M.map);
  M.cases.clearLayers();
  for (const item of items) {
    const [lon, lat] = item.geometry?.coordinates ?? [];
    if (lon == null) continue;
    const p = item.properties;
    L.marker([lat, lon], { title: categoryText(p), keyboard: false,
      icon: L.divIcon({ className: `case-marker${p.overdue ? " overdue" : ""}${item.pending ? " pending" : ""}`,
        iconSize: [30, 30], html: `<span style="background:${STATE_COLOURS[p.state]}">案</span>` }) })
      .on("click", () => openCase(item.key)).addTo(M.cases);
  }
}

// ---- one case: handle or verify ---------------------------------------------------------

export function openCase(key) {
  const item = caseView().get(key);
  if (!item) return;
  S.sheet = { kind: "case", key, photos: [], reason: "", position: null, locating: null };
  drawSheet();
  if (!item.pending && actionOf(item.properties)) startFix();
}

// A GPS fix for the open sheet; any accuracy is taken and sent with it (the server judges).
function startFix() {
  const sheet = S.sheet;
  sheet.locating = fix().then((position) => {
    const { latitude, longitude, accuracy } = position.coords;
    sheet.position = { lon: Number(longitude.toFixed(7)), lat: Number(latitude.toFixed(7)),
      accuracy_m: Math.round(accuracy * 10) / 10 };
    sheet.place ??= "gps";
    M.lastFix = L.latLng(latitude, longitude);
    M.locateMarks?.clearLayers();
    L.circleMarker([latitude, longitude], { radius: 6, color: "#fff", weight: 2, fillColor: "#1f78b4",
      fillOpacity: 1 }).addTo(M.locateMarks);
    return sheet.position;
  }).catch((error) => {
    sheet.gpsError = error.message || String(error.code);
    return null;
  }).finally(() => { if (S.sheet === sheet) showPlace(); });
  showPlace();
}

function distanceTo(item, position) {
  if (!position || !item.geometry) return null;
  const [lon, lat] = item.geometry.coordinates;
  return Math.round(L.latLng(lat, lon).distanceTo(L.latLng(position.lat, position.lon)));
}

function placeText() {
  const sheet = S.sheet;
  if (sheet.kind === "report" && sheet.place === "map") return t("placeTapped");
  if (sheet.position) {
    const text = t("gpsOk", { a: sheet.position.accuracy_m });
    if (sheet.kind !== "case") return text;
    const away = distanceTo(caseView().get(sheet.key), sheet.position);
    return `${text} · ${t("away", { d: away })}${away > VERIFY_WITHIN_M && actionOf(caseView().get(sheet.key).properties) === "verify"
      ? ` · ${t("tooFar", { m: VERIFY_WITHIN_M })}` : ""}`;
  }
  if (sheet.gpsError) return t("gpsNone", { e: sheet.gpsError });
  return t("locating");
}

function showPlace() {
  const el = $("case-place");
  if (el) el.textContent = placeText();
}

function photoRow(required) {
  return h("div", { class: "row" },
    h("span", { class: "label" }, t(required ? "photoRequired" : "photos")),
    h("div", { id: "thumbs", class: "thumbs" }),
    h("label", { class: "button", id: "case-photo" }, t("photo"),
      h("input", { type: "file", accept: "image/*", capture: "environment", hidden: true,
        onchange: (e) => attachPhoto(e.target.files[0]) })));
}

function reasonRow(key) {
  return h("div", { class: "row" },
    h("label", { class: "label", for: "case-reason" }, t(key)),
    h("input", { id: "case-reason", name: "reason", value: S.sheet.reason,
      oninput: (e) => { S.sheet.reason = e.target.value; } }));
}

export function drawCase() {
  const item = caseView().get(S.sheet.key);
  if (!item) {
    closeSheet();
    return;
  }
  const p = item.properties;
  const action = item.pending ? null : actionOf(p);
  const category = byCode(p.category);
  const facts = [
    [t("stateLabel"), t(`state_${p.state}`)],
    [t("due"), dueText(p) || "—"],
    [t("gridLabel"), p.micro_grid ?? "—"],
    [t("assignee"), p.assignee ?? p.department ?? "—"],
    [t("description"), p.description || "—"],
    category && [t("closeWhen"), pick(category.close_when_zh, category.close_when_en)],
  ].filter(Boolean);
  const rows = [];
  if (action) {
    rows.push(photoRow(action === "verify"),
      h("div", { class: "row" }, h("span", { class: "label" }, t("position")),
        h("p", { id: "case-place", class: "hint" }, placeText())),
      reasonRow(action === "verify" ? "reworkReason" : "reason"));
  } else {
    rows.push(h("p", { class: "hint" }, t(item.pending ? "casePending" : "noAction")));
  }
  const buttons = action === "handle"
    ? [h("button", { type: "button", id: "case-handle", class: "primary", onclick: () => move("handled") }, t("markHandled"))]
    : action === "verify"
      ? [h("button", { type: "button", id: "case-rework", onclick: () => move("dispatched") }, t("verifyFail")),
        h("button", { type: "button", id: "case-close", class: "primary", onclick: () => move("closed") }, t("verifyClose"))]
      : [];
  $("sheet").replaceChildren(
    h("h2", {}, caseTitle(item), p.version != null && h("small", {}, ` v${p.version}`)),
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    ...rows,
    h("div", { class: "actions" },
      h("button", { type: "button", id: "case-cancel", onclick: closeSheet }, t(action ? "cancel" : "close")),
      ...buttons));
  if (action) drawThumbs();
  if (item.geometry) M.map?.panTo([item.geometry.coordinates[1], item.geometry.coordinates[0]]);
}

async function move(to) {
  const sheet = S.sheet;
  const item = caseView().get(sheet.key);
  const verifying = item.properties.state === "handled";
  const reason = sheet.reason.trim();
  if (verifying && !sheet.photos.length) {
    toast(t("needPhoto"), "error");
    return;
  }
  if (to === "dispatched" && !reason) {
    toast(t("needReason"), "error");
    $("case-reason")?.focus();
    return;
  }
  const position = sheet.position ?? await sheet.locating;
  if (verifying && !position) {
    toast(t("needPosition"), "error");
    return;
  }
  const changes = { state: { old: item.properties.state, new: to } };
  if (sheet.photos.length) changes.photos = { old: [], new: [...sheet.photos] };
  if (position) changes.position = { new: position };
  const edit = { edit_id: crypto.randomUUID(), device_id: deviceId(), device_seq: nextSeq(),
    layer: CASES, op: "transition", feature_id: item.id, base_version: item.properties.version,
    changes, device_time: rfc3339(), user: S.user.name, key: item.key };
  if (reason) edit.reason = reason;
  await queue(edit);
}

async function queue(edit) {
  await idbPut("outbox", edit);
  S.outbox.push(edit);
  closeSheet();
  toast(t("queued"));
  sync();
}

// ---- reporting a case: 1 report, 2 category, 3 photo, (the GPS fix comes by itself), 4 send

// Categories whose layer has features near the place first, then those a worker fixes.
export function rankedCategories(latlng) {
  const near = new Map();
  for (const feature of S.features.values()) {
    if (!feature.geometry || !latlng) continue;
    const d = nearestVertex(feature.geometry, latlng);
    if (d <= NEARBY_M) near.set(feature.layer, Math.min(near.get(feature.layer) ?? Infinity, d));
  }
  const rank = (c) => [near.has(c.layer) ? near.get(c.layer) : Infinity, c.handler === "worker" ? 0 : 1];
  return [...S.categories].sort((a, b) => {
    const [ra, rb] = [rank(a), rank(b)];
    return ra[0] - rb[0] || ra[1] - rb[1] || a.code.localeCompare(b.code);
  });
}

function nearestVertex(geometry, latlng) {
  let best = Infinity;
  const visit = (c) => {
    if (typeof c[0] === "number") best = Math.min(best, latlng.distanceTo(L.latLng(c[1], c[0])));
    else for (const inner of c) visit(inner);
  };
  visit(geometry.coordinates ?? []);
  return best;
}

export function openReport() {
  const around = M.lastFix ?? M.map?.getCenter() ?? null;
  S.sheet = { kind: "report", category: null, photos: [], description: "", position: null,
    place: null, locating: null, order: rankedCategories(around).map((c) => c.code) };
  drawSheet();
  startFix();
}

export function drawReport() {
  const sheet = S.sheet;
  const order = sheet.order.map(byCode).filter(Boolean);
  const top = order.slice(0, TOP_CATEGORIES);
  const choose = (code) => {
    sheet.category = code;
    for (const b of $("case-categories").children) b.setAttribute("aria-checked", String(b.dataset.category === code));
    $("case-more").value = top.some((c) => c.code === code) ? "" : code;
  };
  const label = (c) => [c.name_zh, c.name_en].join(" · ");
  $("sheet").replaceChildren(
    h("h2", {}, t("reportCase")),
    h("div", { class: "row" }, h("span", { class: "label" }, t("category")),
      h("div", { id: "case-categories", class: "choices", role: "radiogroup" }, top.map((c) => h("button", {
        type: "button", role: "radio", dataset: { category: c.code }, "aria-checked": String(c.code === sheet.category),
        onclick: () => choose(c.code) }, h("span", {}, c.name_zh, h("small", { class: "en" }, c.name_en))))),
      h("select", { id: "case-more", "aria-label": t("moreCategories"), onchange: (e) => e.target.value && choose(e.target.value) },
        h("option", { value: "" }, t("moreCategories")),
        order.slice(TOP_CATEGORIES).map((c) => h("option", { value: c.code, selected: c.code === sheet.category }, label(c))))),
    photoRow(false),
    h("div", { class: "row" }, h("span", { class: "label" }, t("place")),
      h("p", { id: "case-place", class: "hint" }, placeText()),
      h("p", { class: "hint" }, t("tapToPlace"))),
    h("div", { class: "row" }, h("label", { class: "label", for: "case-description" }, t("descriptionOptional")),
      h("input", { id: "case-description", value: sheet.description, maxlength: 2000,
        oninput: (e) => { sheet.description = e.target.value; } })),
    h("div", { class: "actions" },
      h("button", { type: "button", onclick: closeSheet }, t("cancel")),
      h("button", { type: "button", id: "case-send", class: "primary", onclick: sendReport }, t("send"))));
  drawThumbs();
}

// A tap on the map while reporting places the case there (no GPS accuracy then).
export function placeReport(latlng) {
  const [lon, lat] = pointAt(latlng).coordinates;
  S.sheet.position = { lon, lat, accuracy_m: null };
  S.sheet.place = "map";
  M.editMarker?.remove();
  M.editMarker = L.marker(latlng, { icon: L.divIcon({ className: "edit-marker", iconSize: [44, 44] }) }).addTo(M.map);
  showPlace();
}

async function sendReport() {
  const sheet = S.sheet;
  if (!sheet.category) {
    toast(t("needCategory"), "error");
    return;
  }
  const position = sheet.position ?? await sheet.locating;
  if (S.sheet !== sheet) return;
  if (!position) {
    toast(t("needPlace"), "error");
    return;
  }
  const editId = crypto.randomUUID();
  const changes = {
    geometry: { old: null, new: { type: "Point", coordinates: [position.lon, position.lat] } },
    category: { old: null, new: sheet.category },
  };
  if (sheet.description.trim()) changes.description = { old: null, new: sheet.description.trim() };
  if (sheet.photos.length) changes.photos = { old: [], new: [...sheet.photos] };
  const edit = { edit_id: editId, device_id: deviceId(), device_seq: nextSeq(), layer: CASES,
    op: "create", changes, device_time: rfc3339(), user: S.user.name, key: caseKey(`local-${editId}`) };
  if (position.accuracy_m != null) edit.accuracy_m = position.accuracy_m;
  await queue(edit);
}

// ---- a refused or conflicting case item, in the problems sheet ----------------------------

export function caseProblemCard(edit, dismiss) {
  const p = S.cases.get(edit.key)?.properties;
  const category = byCode(edit.changes.category?.new ?? p?.category);
  const what = edit.op === "create" ? t("reportCase")
    : `${t(`state_${edit.changes.state.old}`)} → ${t(`state_${edit.changes.state.new}`)}`;
  return h("article", { class: `rejected${edit.conflict ? " case-conflict" : ""}`, dataset: { edit: edit.edit_id } },
    h("h3", {}, `${category ? `${category.name_zh} · ${category.name_en}` : t("case")} `
      + `${edit.feature_id ? `#${edit.feature_id}` : t("newCase")}`),
    h("p", {}, what),
    edit.conflict && h("p", { class: "moved-on" }, t("caseMovedOn")),
    p && h("p", { class: "hint" }, `${t("stateNow")}: ${t(`state_${p.state}`)}`),
    h("p", { class: "error" }, problemText(edit)),
    h("button", { type: "button", onclick: dismiss }, t("dismiss")));
}
