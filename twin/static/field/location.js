// GPS fixes, checked against the layer's accuracy, and placing a point.
import { LAYERS, S } from "./state.js";
import { bi, t } from "./words.js";
import { $, h, toast } from "./dom.js";
import { pointAt } from "./ids.js";
import { isPointLayer, xTwin } from "./layers.js";
import { M, closeSheet, drawSheet } from "./view.js";
import { openForm, setPosition } from "./forms.js";

export function fix() {
  return new Promise((resolve, reject) => navigator.geolocation.getCurrentPosition(resolve, reject,
    { enableHighAccuracy: true, timeout: 20_000, maximumAge: 0 }));
}

// The strictest threshold of the layers the user may add points to.
export function strictestGpsError(layer) {
  const limits = (layer ? [layer] : Object.keys(S.schemas).filter(isPointLayer))
    .map((name) => xTwin(name).max_gps_error_m).filter((m) => m != null);
  return limits.length ? Math.min(...limits) : Infinity;
}

export async function locate(layer) {
  let position;
  try {
    position = await fix();
  } catch (error) {
    toast(t("gpsNone", { e: error.message }), "error");
    return null;
  }
  const { latitude, longitude, accuracy } = position.coords;
  const latlng = L.latLng(latitude, longitude);
  M.lastFix = latlng;
  const limit = strictestGpsError(layer);
  const poor = accuracy > limit;
  M.locateMarks.clearLayers();
  L.circle(latlng, { radius: accuracy, color: poor ? "#e31a1c" : "#1f78b4", weight: 1, fillOpacity: 0.1 })
    .addTo(M.locateMarks);
  L.circleMarker(latlng, { radius: 6, color: "#fff", weight: 2, fillColor: "#1f78b4", fillOpacity: 1 })
    .addTo(M.locateMarks);
  M.map.panTo(latlng);
  const a = Math.round(accuracy * 10) / 10;
  if (poor) {
    toast(t("gpsPoor", { a, m: limit }), "error");
    return null;
  }
  toast(t("gpsOk", { a }));
  return { latlng, accuracy: a };
}

export async function useGps() {
  const found = await locate(S.sheet.item.layer);
  if (!found || S.sheet?.kind !== "form") return;
  setPosition(found.latlng, found.accuracy);
  M.editMarker.setLatLng(found.latlng);
}

// ---- adding a point -----------------------------------------------------------------------

export function drawAdd() {
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

export function openNewPoint(layer, latlng, accuracy = null) {
  openForm(null, { layer, local: true, id: null, geometry: pointAt(latlng), properties: {}, accuracy });
}
