// The layers' schemas and the local view: the server's features with pending edits laid over them.
import { LAYERS, S } from "./state.js";
import { bi, t } from "./words.js";

export const keyOf = (layer, id) => `${layer}/${id}`;
export const xTwin = (layer) => S.schemas[layer]?.["x-twin"] ?? {};
export const isPointLayer = (layer) => LAYERS[layer]?.geometry_type === "Point";

export function stateOf(layer, props) {
  const field = xTwin(layer).state_field ?? LAYERS[layer]?.state_field;
  return field ? props[field] : undefined;
}

export function colourOf(layer, props) {
  const style = LAYERS[layer] ?? { color: "#555", by_state: {} };
  return style.by_state[stateOf(layer, props)] ?? style.color;
}

export function display(layer, field, value) {
  if (value == null || value === "") return "—";
  if (field === "geometry") return value.coordinates ? JSON.stringify(value.coordinates) : "—";
  const labels = field === xTwin(layer).state_field ? xTwin(layer).state_labels ?? {} : {};
  if (labels[value]) return bi(labels[value]);
  if (typeof value === "boolean") return t(value ? "yes" : "no");
  return Array.isArray(value) ? value.join(", ") : String(value);
}

export function titleOf(item) {
  const layerTitle = bi(xTwin(item.layer).title ?? LAYERS[item.layer]?.title ?? item.layer);
  const id = item.local ? t("newPoint") : `#${item.id}`;
  return `${item.properties.name || layerTitle} ${id}`;
}

// Server features with the pending edits laid over them, in the order they were made.
export function localView() {
  const view = new Map();
  for (const [key, feature] of S.features) {
    view.set(key, { ...feature, key, properties: { ...feature.properties }, pending: 0 });
  }
  for (const edit of S.outbox) {
    if (edit.layer === "cases") continue; // cases have their own view (cases.js)
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
export function isMine(item) {
  return item.local || (S.user?.grids ?? []).includes(item.properties.micro_grid);
}
