// The live map (/map): the page holds no feature. Signed in (the session of
// common/session.js, shared with the board and /field), it loads each shown layer for the visible box from
// /collections/{layer}/items, and asks the change feed every few seconds what changed since
// the newest change it has seen; a layer that changed is loaded again, so an edit made on a
// tablet shows without a reload. Popups are twinFeature's (twin/maps/page.py), plus the
// feature's history on demand.
"use strict";

// WGS-84 to GCJ-02, the shifted datum of Chinese web maps (the published conversion, good to
// a few metres); outside China nothing is shifted. Only what is drawn moves: the twin's data,
// the boxes asked of the API and the features' properties stay WGS-84.
const TWIN_GCJ = (() => {
  const A = 6378245.0;
  const EE = 0.00669342162296594323;
  const inChina = (lon, lat) => lon > 73.66 && lon < 135.05 && lat > 3.86 && lat < 53.55;
  const dLat = (x, y) => -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y
    + 0.2 * Math.sqrt(Math.abs(x))
    + ((20 * Math.sin(6 * x * Math.PI) + 20 * Math.sin(2 * x * Math.PI)) * 2) / 3
    + ((20 * Math.sin(y * Math.PI) + 40 * Math.sin((y / 3) * Math.PI)) * 2) / 3
    + ((160 * Math.sin((y / 12) * Math.PI) + 320 * Math.sin((y * Math.PI) / 30)) * 2) / 3;
  const dLon = (x, y) => 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y
    + 0.1 * Math.sqrt(Math.abs(x))
    + ((20 * Math.sin(6 * x * Math.PI) + 20 * Math.sin(2 * x * Math.PI)) * 2) / 3
    + ((20 * Math.sin(x * Math.PI) + 40 * Math.sin((x / 3) * Math.PI)) * 2) / 3
    + ((150 * Math.sin((x / 12) * Math.PI) + 300 * Math.sin((x / 30) * Math.PI)) * 2) / 3;
  function shift(lon, lat) {  // [dLon, dLat] in degrees
    if (!inChina(lon, lat)) return [0, 0];
    const rad = (lat / 180) * Math.PI;
    const magic = 1 - EE * Math.sin(rad) ** 2;
    const root = Math.sqrt(magic);
    return [(dLon(lon - 105, lat - 35) * 180) / ((A / root) * Math.cos(rad) * Math.PI),
            (dLat(lon - 105, lat - 35) * 180) / (((A * (1 - EE)) / (magic * root)) * Math.PI)];
  }
  return {
    toDisplay: ([lon, lat]) => {
      const [x, y] = shift(lon, lat);
      return L.latLng(lat + y, lon + x);
    },
    // a displayed point back to WGS-84: the shift barely varies over its own size, so a
    // few steps of "subtract the shift at the last guess" settle to millimetres
    fromDisplay: (latlng) => {
      let [lon, lat] = [latlng.lng, latlng.lat];
      for (let step = 0; step < 3; step += 1) {
        const [x, y] = shift(lon, lat);
        [lon, lat] = [latlng.lng - x, latlng.lat - y];
      }
      return L.latLng(lat, lon);
    },
  };
})();

async function twinLive(cfg) {
  const session = await import("/static/common/session.js");
  const map = window[cfg.map];
  const groups = {};
  for (const [name, variable] of Object.entries(cfg.groups)) groups[name] = window[variable];
  const S = { token: session.token(), last: null, loads: {}, loaded: {},
              truncated: {}, open: null, redrawing: false, kpi: null, kpis: null, classes: [[0, 0]],
              asOf: null, pending: 0, ready: null };

  // ---- boxes ------------------------------------------------------------------------------
  // a box in a corner of the map whose clicks and scrolls stay its own
  function cornerBox(position, className) {
    const box = L.control({ position });
    box.onAdd = () => {
      const div = L.DomUtil.create("div", `twin-box ${className}`);
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      return div;
    };
    box.addTo(map);
    return box.getContainer();
  }
  const panel = cornerBox("topleft", "twin-live");

  function show(lines) {
    panel.replaceChildren(...lines.map((line) => {
      const div = document.createElement("div");
      if (line instanceof Node) div.append(line); else div.textContent = line;
      return div;
    }));
  }

  // the moment shown: now (live), or a moment in the past chosen here (the twin as it was)
  const when = Object.assign(document.createElement("input"),
    { type: "datetime-local", name: "as_of", step: 1, title: "时间 Time" });
  const go = Object.assign(document.createElement("button"), { textContent: "查看 Show" });
  const live = Object.assign(document.createElement("button"), { textContent: "现在 Now" });
  go.onclick = () => {
    const moment = new Date(when.value);
    if (when.value && !isNaN(moment)) travel(moment.toISOString());
  };
  live.onclick = () => { when.value = ""; travel(null); };
  const clock = document.createElement("span");
  clock.className = "twin-clock";
  clock.append(when, go, live);

  function travel(moment) {
    S.asOf = moment;
    choice.disabled = Boolean(moment); // the key figures are the present's
    S.loaded = {};
    status();
    loadShown().then(() => status());
  }

  function status(extra) {
    const lines = [S.asOf
      ? `历史 As of ${new Date(S.asOf).toLocaleString("zh-CN", { hour12: false })}`
      : `实时 Live · 变更 change #${S.last ?? "-"} · ${new Date()
        .toLocaleTimeString("zh-CN", { hour12: false })}`, clock];
    const more = Object.entries(S.truncated).filter(([, v]) => v)
      .map(([name]) => `${TWIN_LAYERS[name].title}: 放大查看全部 zoom in for all`);
    const out = document.createElement("a");
    out.href = "#";
    out.textContent = "退出 Sign out";
    out.onclick = async (event) => {
      event.preventDefault();
      await session.signOut();
      signOut();
    };
    show([...lines, ...more, ...(extra ? [extra] : []), out]);
  }

  function signInForm(message) {
    const form = session.signInForm({ message, onSignedIn: () => {
      S.token = session.token();
      start();
    } });
    show(["指挥中心 Command centre: 请登录 sign in", form]);
  }

  // signed out here (the session is already forgotten): the map empties, the form returns
  function signOut(message) {
    S.token = null;
    for (const group of Object.values(groups)) group.clearLayers();
    S.loaded = {};
    signInForm(message);
  }

  // ---- the API ----------------------------------------------------------------------------
  async function api(path) {
    const answer = await session.request(path);
    if (answer.status === 401) {
      signOut("登录已过期 signed out: sign in again");
      throw new Error("signed out");
    }
    if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
    return answer.json();
  }

  window.twinHistory = async (layer, id) => {
    const body = await api(`/collections/${layer}/items/${id}/history?limit=10`);
    return body.versions || [];
  };

  // ---- layers -----------------------------------------------------------------------------
  // a displayed box as the API's bbox (WGS-84)
  function wgs84Box(box) {
    const sw = cfg.gcj02 ? TWIN_GCJ.fromDisplay(box.getSouthWest()) : box.getSouthWest();
    const ne = cfg.gcj02 ? TWIN_GCJ.fromDisplay(box.getNorthEast()) : box.getNorthEast();
    return [sw.lng, sw.lat, ne.lng, ne.lat].map((v) => v.toFixed(6)).join(",");
  }

  function painter(name) {
    const style = TWIN_LAYERS[name].style;
    const field = TWIN_LAYERS[name].state;
    if (name === "micro_grids" && S.kpi) return choropleth;
    return (feature) => {
      const state = field ? feature.properties[field] : null;
      const colour = (state != null && style.by_state[state]) || style.color;
      const fill = Object.keys(style.by_state).length || !style.fill ? colour : style.fill;
      return { color: colour, weight: style.weight, fillColor: fill,
               fillOpacity: style.opacity, radius: style.radius };
    };
  }

  // A layer is loaded for the view widened by half on each side, and loaded again when the
  // view leaves that (or the feed says it changed): small pans, and a popup opening, keep it.
  async function load(name, again) {
    const group = groups[name];
    if (!S.token || !map.hasLayer(group)) return;
    if (map.getZoom() < (cfg.min_zoom[name] || 0)) {
      group.clearLayers();
      S.loaded[name] = null;
      S.truncated[name] = true;
      return;
    }
    const view = map.getBounds();
    if (!again && !S.truncated[name] && S.loaded[name] && S.loaded[name].contains(view)) return;
    const seq = (S.loads[name] = (S.loads[name] || 0) + 1);
    const b = view.pad(0.5);
    const bbox = wgs84Box(b);
    const moment = S.asOf ? `&asOf=${encodeURIComponent(S.asOf)}` : "";
    S.pending += 1;
    let page;
    try {
      page = await api(`/collections/${name}/items?bbox=${bbox}&limit=${cfg.limit}${moment}`);
    } finally {
      S.pending -= 1;
    }
    if (seq !== S.loads[name]) return; // a newer load of this layer is on its way
    S.loaded[name] = b;
    const paint = painter(name);
    const bind = twinFeature(name);
    let reopen = null;
    const drawn = L.geoJSON(page, {
      coordsToLatLng: cfg.gcj02 ? TWIN_GCJ.toDisplay : L.GeoJSON.coordsToLatLng,
      style: paint,
      pointToLayer: (feature, at) => L.circleMarker(at, paint(feature)),
      onEachFeature: (feature, layer) => {
        bind(feature, layer);
        layer.on("popupopen", () => { S.open = [name, feature.id]; });
        layer.on("popupclose", () => { if (!S.redrawing) S.open = null; });
        if (S.open && S.open[0] === name && S.open[1] === feature.id) reopen = layer;
      },
    });
    // a dense point layer in clusters, until its points can be seen apart
    const holder = cfg.cluster.includes(name)
      ? L.markerClusterGroup({ disableClusteringAtZoom: 17, showCoverageOnHover: false,
                               chunkedLoading: true }).addLayers(drawn.getLayers())
      : drawn;
    // the feature whose popup is open keeps it open, with what it says now
    S.redrawing = true;
    group.clearLayers();
    group.addLayer(holder);
    S.redrawing = false;
    if (reopen && map.hasLayer(reopen)) reopen.openPopup();
    S.truncated[name] = page.numberReturned >= cfg.limit;
  }

  function loadShown() {
    return Promise.all([...Object.keys(groups).map((name) => load(name).catch(report)),
                        loadHeat().catch(report)]);
  }

  // ---- the heat map of recent changes (an overlay, off until chosen) ---------------------
  const heat = L.heatLayer([], { radius: 20, blur: 16, minOpacity: 0.25 });
  window[cfg.control].addOverlay(heat, "变更热力 Changes, 7 days", "分析 Analysis");

  async function loadHeat() {
    if (!S.token || !map.hasLayer(heat)) return;
    const view = map.getBounds().pad(0.5);
    // a cell of about 8 pixels at this zoom
    const perPixel = 156543 * Math.cos((map.getCenter().lat * Math.PI) / 180) / 2 ** map.getZoom();
    const cell = Math.min(Math.max(Math.round(8 * perPixel), 5), 5000);
    const bbox = wgs84Box(view);
    const period = S.asOf ? `&from=${encodeURIComponent(new Date(Date.parse(S.asOf) - 7 * 864e5)
      .toISOString())}&to=${encodeURIComponent(S.asOf)}` : "";
    const found = await api(`/changes/heat?cell_m=${cell}&bbox=${bbox}${period}`);
    heat.setLatLngs(found.cells.map(([lon, lat, n]) => {
      const at = cfg.gcj02 ? TWIN_GCJ.toDisplay([lon, lat]) : L.latLng(lat, lon);
      return [at.lat, at.lng, n / (found.max || 1)];
    }));
    S.heat = found.changes;
  }

  function report(error) {
    if (S.token) status(`⚠ ${error.message}`);
  }

  // ---- the micro-grids coloured by a key figure (GET /kpis) -------------------------------
  const PALETTE = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"];
  const BASE_KPIS = [["edits_today", "今日编辑 Edits today"],
                     ["edits_7_days", "7日编辑 Edits, 7 days"],
                     ["workers_7_days", "7日在岗网格员 Workers active, 7 days"],
                     ["edits_unsynced", "平板待同步编辑 Edits waiting on tablets"]];
  const kpiPanel = cornerBox("bottomright", "twin-kpi");
  const choice = document.createElement("select");
  choice.name = "kpi";
  choice.append(new Option("微网格指标 Grid KPI: 无 none", ""));
  choice.onchange = () => { S.kpi = choice.value || null; colourGrids().catch(report); };
  const legend = document.createElement("div");
  legend.className = "twin-kpi-legend";
  kpiPanel.append(choice, legend);

  function kpiValue(group, key) {
    if (!key.includes(".")) return group[key] || 0;
    const [layer, state] = key.split(".");
    return ((group.states || {})[layer] || {})[state] || 0;
  }

  // the figures on offer: edits, and every state of every layer with a state
  for (const [key, label] of BASE_KPIS) choice.append(new Option(label, key));
  for (const [layer, spec] of Object.entries(TWIN_LAYERS)) {
    for (const [state, label] of Object.entries(spec.state ? spec.states : {})) {
      choice.append(new Option(`${spec.title}: ${label}`, `${layer}.${state}`));
    }
  }

  async function readKpis() {
    const body = await api("/kpis?by=grid");
    S.kpis = Object.fromEntries(body.groups.map((g) => [g.code, g]));
  }

  // Up to five classes of whole numbers, each [low, high], distinct and increasing, that
  // between them hold every grid's value: zero (nothing to see) a class of its own when any
  // grid has it, the other values in classes of about equal count. Counts are whole.
  function classes(values) {
    const above = values.filter((v) => v > 0).sort((a, b) => a - b);
    const out = values.some((v) => v <= 0) ? [[0, 0]] : [];
    const room = 5 - out.length;
    const lows = [...new Set([...Array(room).keys()]
      .map((k) => above[Math.floor((k * above.length) / room)])
      .filter((v) => v !== undefined))];
    lows.forEach((low, k) => {
      out.push([low, k + 1 < lows.length ? lows[k + 1] - 1 : above[above.length - 1]]);
    });
    return out;
  }

  function classOf(value) {
    const k = S.classes.findIndex(([low, high]) => value >= low && value <= high);
    return k < 0 ? S.classes.length - 1 : k;
  }

  function choropleth(feature) {
    const code = feature.properties.code;
    const value = S.kpis && S.kpis[code] ? kpiValue(S.kpis[code], S.kpi) : 0;
    return { color: "#555", weight: 1, fillColor: PALETTE[classOf(value)], fillOpacity: 0.6 };
  }

  async function colourGrids() {
    legend.replaceChildren();
    if (S.kpi) {
      await readKpis();
      const values = Object.values(S.kpis).map((g) => kpiValue(g, S.kpi));
      S.classes = classes(values.length ? values : [0]);
      S.classes.forEach(([low, high], k) => {
        const row = document.createElement("div");
        const swatch = document.createElement("span");
        swatch.className = "twin-swatch";
        swatch.style.background = swatch.style.borderColor = PALETTE[k];
        const grids = values.filter((v) => v >= low && v <= high).length;
        row.append(swatch, `${low === high ? low : `${low} – ${high}`} (${grids})`);
        legend.append(row);
      });
    }
    const grids = groups.micro_grids;
    if (!map.hasLayer(grids)) map.addLayer(grids);
    await load("micro_grids", true);
  }

  // ---- the change feed --------------------------------------------------------------------
  async function poll() {
    if (!S.token) return;
    try {
      const changed = new Set();
      for (;;) {
        const after = S.last ? `&cursor=${S.last}` : "";
        const page = await api(`/changes?order=oldest&limit=500${after}`);
        for (const change of page.changes) {
          changed.add(change.layer);
          S.last = change.id;
        }
        if (!page.links.some((link) => link.rel === "next")) break;
      }
      if (S.asOf) return; // the past does not change: only the cursor moves
      await Promise.all([...changed].filter((name) => name in groups)
        .map((name) => load(name, true)));
      if (changed.size) await loadHeat();
      if (changed.size && S.kpi) await colourGrids();
      status();
    } catch (error) {
      report(error);
    }
  }

  async function start() {
    status();
    try {
      const newest = await api("/changes?limit=1");
      S.last = newest.changes.length ? newest.changes[0].id : 0;
      await loadShown();
      S.ready = performance.now(); // the first view drawn (ms since the page began)
      status();
    } catch (error) {
      report(error);
    }
  }

  map.on("moveend", () => loadShown().then(() => S.token && status()));
  map.on("overlayadd", (event) => {
    if (event.layer === heat) { loadHeat().catch(report); return; }
    const name = Object.keys(groups).find((key) => groups[key] === event.layer);
    if (name) load(name, true).catch(report);
  });
  setInterval(poll, cfg.poll_ms);
  // for the curious (and the tests): what the page holds and has seen
  window.twinLiveMap = { map, groups, heat, state: S, load, poll, classes };
  if (S.token) start(); else signInForm();
}
