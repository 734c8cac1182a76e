// Edit forms generated from a layer's schema; saving puts an edit in the outbox.
import { ENUM_BUTTONS_UP_TO, LAYERS, S } from "./state.js";
import { bi, t } from "./words.js";
import { $, h, toast } from "./dom.js";
import { idbPut } from "./idb.js";
import { deviceId, nextSeq, pointAt, rfc3339 } from "./ids.js";
import { keyOf, localView, titleOf, xTwin } from "./layers.js";
import { M, closeSheet, drawSheet } from "./view.js";
import { attachPhoto, drawThumbs } from "./photos.js";
import { useGps } from "./location.js";
import { sync } from "./sync.js";

// The schema of one attribute, with pydantic's anyOf [X, null] folded into X.
export function fieldSchema(property) {
  const branch = property.anyOf?.find((b) => b.type !== "null") ?? property;
  return { ...branch, ...property, anyOf: undefined,
    nullable: Boolean(property.anyOf?.some((b) => b.type === "null")) };
}

export function editableFields(schema) {
  // the layer's own attributes: the schema (OGC API Part 5) describes the common fields too,
  // id and name among them, which the form does not edit (a schema cached before it named
  // them has only the attributes)
  const own = schema["x-twin"]?.attributes;
  return Object.entries(schema.properties ?? {})
    .filter(([name]) => !own || own.includes(name))
    .map(([name, property]) => [name, fieldSchema(property)])
    .filter(([, p]) => p.enum || ["boolean", "integer", "number", "string"].includes(p.type));
}

export function problemOf(p, value, required) {
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
export function widget(layer, name, p, value, onChange, compact = false) {
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

export function openForm(key, fresh = null) {
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

export function drawForm() {
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

export function movedText() {
  const { item, geometry, creating } = S.sheet;
  if (creating) return geometry ? geometry.coordinates.map((c) => c.toFixed(6)).join(", ") : "—";
  if (geometry === item.geometry) return t("unmoved");
  const [a, b] = [item.geometry, geometry].map((g) => L.latLng(g.coordinates[1], g.coordinates[0]));
  return t("moved", { d: Math.round(a.distanceTo(b)) });
}

export function setPosition(latlng, accuracy) {
  S.sheet.geometry = pointAt(latlng);
  S.sheet.accuracy = accuracy;
  $("moved").textContent = movedText();
}

export function showEditMarker() {
  const [lon, lat] = S.sheet.geometry.coordinates;
  M.editMarker?.remove();
  M.editMarker = L.marker([lat, lon], { draggable: true, autoPan: true,
    icon: L.divIcon({ className: "edit-marker", iconSize: [44, 44] }) }).addTo(M.map);
  // a position dragged by eye has no GPS accuracy
  M.editMarker.on("dragend", () => setPosition(M.editMarker.getLatLng(), null));
  M.map.panTo([lat, lon]);
  // an item far down a long list scrolled the map away: bring it back, the circle on it
  document.getElementById("map").scrollIntoView({ block: "nearest" });
}

export async function save() {
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
