// The map, the list, the status line and the sheet, drawn from the local view.
import { S } from "./state.js";
import { applyText, t } from "./words.js";
import { $, h } from "./dom.js";
import { clock } from "./ids.js";
import { colourOf, display, isMine, isPointLayer, localView, stateOf, titleOf, xTwin } from "./layers.js";
import { drawForm, openForm } from "./forms.js";
import { drawAdd, openNewPoint } from "./location.js";
import { drawProblems } from "./problems.js";
import { drawCase, drawCases, drawReport, placeReport } from "./cases.js";

// the map and its layers, made once; shared by the modules that draw on it
export const M = { map: null, drawn: null, locateMarks: null, editMarker: null, fitted: false };
// a wide tap tolerance makes every drawn point a 44 px target
export const renderer = L.canvas({ tolerance: 12 });

export function ensureMap() {
  if (M.map) return;
  M.map = L.map("map", { attributionControl: false, zoomControl: true, preferCanvas: true })
    .setView([31.2, 121.5], 15);
  M.drawn = L.layerGroup().addTo(M.map);
  M.locateMarks = L.layerGroup().addTo(M.map);
  M.map.on("click", (event) => {
    if (S.sheet?.kind === "add" && S.sheet.layer) {
      openNewPoint(S.sheet.layer, event.latlng);
    } else if (S.sheet?.kind === "report") {
      placeReport(event.latlng);
    }
  });
}

export function drawMap(view) {
  ensureMap();
  M.drawn.clearLayers();
  if (S.grids) {
    L.geoJSON(S.grids, { renderer, interactive: false,
      style: { color: "#ff7f00", weight: 2, fillColor: "#fdbf6f", fillOpacity: 0.08 } })
      .addTo(M.drawn);
    if (!M.fitted && S.grids.features?.length) {
      M.map.fitBounds(L.geoJSON(S.grids).getBounds(), { padding: [20, 20], animate: false });
      M.fitted = true;
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
    shape.addTo(M.drawn);
  }
}

// ---- the list -----------------------------------------------------------------------------

export function drawList(view) {
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

export function drawStatus() {
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

export function render() {
  applyText();
  drawStatus();
  if (!S.token) return;
  const view = localView();
  drawMap(view);
  drawList(view);
  drawCases();
}



export function drawSheet() {
  const sheet = $("sheet");
  sheet.hidden = !S.sheet;
  document.body.classList.toggle("sheet-open", Boolean(S.sheet));
  if (!S.sheet) return;
  ({ form: drawForm, add: drawAdd, problems: drawProblems, case: drawCase, report: drawReport })[S.sheet.kind]();
}

export function closeSheet() {
  S.sheet = null;
  M.editMarker?.remove();
  M.editMarker = null;
  drawSheet();
  render();
}
