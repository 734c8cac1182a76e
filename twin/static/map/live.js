// The live map (/map): the page holds no feature. Signed in (the session of
// common/session.js, shared with the board and /field), it loads each shown layer for the visible box from
// /collections/{layer}/items, and asks the change feed every few seconds what changed since
// the newest change it has seen; a layer that changed is loaded again, so an edit made on a
// tablet shows without a reload. Popups are twinFeature's (twin/maps/page.py), plus the
// feature's history on demand. Cases (一网统管) are a layer of their own: open and parked ones
// in view, by state, overdue ones ringed in red, clustered, each with its timeline. So are the
// 12345 hotline orders: the open ones placed, by state, warnings ringed, late ones marked.
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
    S.cases.box = null;
    S.orders.signature = null;
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
    caseCluster.clearLayers();
    S.cases.signature = S.cases.box = null;
    orderCluster.clearLayers();
    S.orders.signature = null;
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
                        loadHeat().catch(report), loadCases().catch(report),
                        loadOrders().catch(report)]);
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

  // ---- cases (一网统管): open and parked cases in view, coloured by state -------------------
  // Asked for again every few seconds (cfg.cases.poll_ms) and drawn again only when what came
  // differs (a case's version, or its overdue flag: a case goes overdue by the clock passing,
  // with no event to signal it). An overdue case is bigger, ringed in red and pulses; so is a
  // cluster holding one. Its popup shows the case and its timeline (GET /cases/{id}/events).
  const CASES = cfg.cases;
  const casesGroup = L.featureGroup().addTo(map);
  window[cfg.control].addOverlay(casesGroup, "案件 Cases", "一网统管 Cases");
  const caseCluster = L.markerClusterGroup({
    showCoverageOnHover: false, maxClusterRadius: 40, disableClusteringAtZoom: 18,
    iconCreateFunction: (cluster) => {
      const late = cluster.getAllChildMarkers().filter((m) => m.options.overdue).length;
      const n = cluster.getChildCount();
      const size = n < 10 ? 30 : n < 100 ? 36 : 42;
      const inner = document.createElement("div");
      inner.append(twinText("span", n));
      return L.divIcon({ html: inner.outerHTML, iconSize: [size, size],
                         className: `marker-cluster twin-case-cluster${late ? " overdue" : ""}` });
    },
  });
  casesGroup.addLayer(caseCluster);
  S.cases = { signature: null, box: null, seq: 0, byId: {}, open: null, names: null };

  const hours = (h) => `${Number(h).toLocaleString("zh-CN", { maximumFractionDigits: 1 })} h`;
  const clockTime = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", {
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }) : "";

  function caseIcon(feature) {
    const p = feature.properties;
    const size = p.overdue ? 22 : 14;
    const colour = (CASES.states[p.state] || {}).colour || "#999";
    // the colour is set on the element when Leaflet makes it (caseMarker)
    return L.divIcon({ className: `twin-case twin-case-${p.state}${p.overdue ? " overdue" : ""}`,
                       iconSize: [size, size], html: "", twinColour: colour });
  }

  // the names of the moves (立案 file, 派遣 dispatch, ...) from the lifecycle's table, once
  async function moveNames() {
    if (!S.cases.names) {
      const body = await api("/cases/categories");
      S.cases.names = Object.fromEntries(body.transitions.map(
        (t) => [`${t.from}>${t.to}`, `${t.name_zh} ${t.name_en}`]));
    }
    return S.cases.names;
  }
  const ACTIONS = { report: "上报 reported", extension_request: "申请延期 extension asked",
                    extension_approval: "批准延期 extension approved",
                    extension_refusal: "驳回延期 extension refused",
                    reroute: "改派 re-routed", update: "更正 corrected" };

  function stateLabel(state) {
    return (CASES.states[state] || {}).label || state;
  }

  function casePopup(feature) {
    const p = feature.properties;
    const div = document.createElement("div");
    div.className = "twin-popup twin-case-popup";
    div.dataset.caseId = feature.id;
    div.append(twinText("b", `#${feature.id} ${p.category_zh} ${p.category_en}`));
    const line = document.createElement("div");
    const state = twinText("span", stateLabel(p.state));
    state.className = "twin-case-state";
    state.style.background = (CASES.states[p.state] || {}).colour || "#999";
    line.append(state);
    if (p.overdue) {
      const late = twinText("span", `超期 overdue ${hours(p.overdue_hours)}`);
      late.className = "twin-case-late";
      line.append(late);
    } else if (p.time_left_hours != null) {
      line.append(twinText("span", `剩余 left ${hours(p.time_left_hours)} (工作时 working)`));
    }
    div.append(line);
    const rows = [
      ["描述 Description", p.description],
      ["来源 Source", p.source],
      ["优先 Priority", p.priority === "urgent" ? "紧急 urgent" : ""],
      ["微网格 Micro-grid", p.micro_grid],
      ["部门 Department", p.department],
      ["处置人 Assignee", p.assignee],
      ["阶段时限 Stage due", clockTime(p.due && p.due.stage)],
      ["结案时限 Case due", clockTime(p.due && p.due.case)],
      ["返工 Rework", p.rework ? p.rework : ""],
      ["延期 Extended", (p.extended || []).join(", ")],
    ];
    const table = document.createElement("table");
    for (const [label, value] of rows) {
      if (value) table.insertRow().append(twinText("th", label), twinText("td", value));
    }
    div.append(table, twinText("div", "流程 Timeline", "twin-layer"));
    const list = document.createElement("ol");
    list.className = "twin-case-timeline";
    list.append(twinText("li", "…"));
    div.append(list);
    return [div, list];
  }

  async function fillTimeline(id, list) {
    const [body, names] = await Promise.all([api(`/cases/${id}/events`), moveNames()]);
    list.replaceChildren(...body.events.map((e) => {
      const item = document.createElement("li");
      const action = e.action === "transition"
        ? names[`${e.from}>${e.to}`] || e.to : ACTIONS[e.action] || e.action;
      const who = [e.actor, e.role && e.role !== e.actor ? `(${e.role})` : ""]
        .filter(Boolean).join(" ");
      const move = e.action === "report" ? ""
        : e.from && e.from !== e.to ? `${stateLabel(e.from)} → ${stateLabel(e.to)}`
          : stateLabel(e.to);
      item.append(twinText("span", [clockTime(e.server_time), who, action, move]
        .filter(Boolean).join(" · ")));
      item.dataset.action = e.action;
      if (e.reason) {
        const reason = twinText("div", `理由 reason: ${e.reason}`);
        reason.className = "twin-case-reason";
        item.append(reason);
      }
      return item;
    }));
  }

  function caseMarker(feature) {
    const [lon, lat] = feature.geometry.coordinates;
    const at = cfg.gcj02 ? TWIN_GCJ.toDisplay([lon, lat]) : L.latLng(lat, lon);
    const icon = caseIcon(feature);
    const marker = L.marker(at, { icon, overdue: feature.properties.overdue,
                                  title: `#${feature.id} ${feature.properties.category_zh}` });
    marker.feature = feature;
    marker.on("add", () => {
      const el = marker.getElement();
      if (el) el.style.background = icon.options.twinColour;
    });
    marker.bindPopup(() => twinText("div", "…"), { maxWidth: 380, minWidth: 260 });
    marker.on("popupopen", () => {
      S.cases.open = feature.id;
      const [div, list] = casePopup(feature);
      marker.setPopupContent(div);
      fillTimeline(feature.id, list).then(() => marker.getPopup().update())
        .catch((error) => { list.replaceChildren(twinText("li", `⚠ ${error.message}`)); });
    });
    marker.on("popupclose", () => { if (!S.redrawing) S.cases.open = null; });
    return marker;
  }

  async function loadCases(again) {
    if (!S.token || !map.hasLayer(casesGroup)) return;
    const view = map.getBounds();
    if (!again && S.cases.box && S.cases.box.contains(view)) return;
    const seq = (S.cases.seq += 1);
    const b = view.pad(0.5);
    const moment = S.asOf ? `&asOf=${encodeURIComponent(S.asOf)}` : "";
    let path = `/cases?bbox=${wgs84Box(b)}&state=${CASES.shown.join(",")}&limit=1000${moment}`;
    const found = [];
    for (let page = 0; path && page < CASES.pages; page += 1) {
      const body = await api(path);
      found.push(...body.features);
      const next = (body.links || []).find((link) => link.rel === "next");
      path = next ? new URL(next.href).pathname + new URL(next.href).search : null;
    }
    if (seq !== S.cases.seq) return; // a newer load is on its way
    S.cases.box = b;
    S.cases.truncated = Boolean(path);
    const signature = found.map((f) => `${f.id}.${f.properties.version}.`
      + `${f.properties.overdue ? 1 : 0}`).join(",");
    if (signature === S.cases.signature) return false;
    S.cases.signature = signature;
    S.cases.byId = Object.fromEntries(found.map((f) => [f.id, f]));
    const markers = found.map(caseMarker);
    const reopen = markers.find((m) => m.feature.id === S.cases.open);
    S.redrawing = true;
    caseCluster.clearLayers();
    caseCluster.addLayers(markers);
    S.redrawing = false;
    if (reopen) caseCluster.zoomToShowLayer(reopen, () => reopen.openPopup());
    return true;
  }

  // a case shown, its popup opened (for the board's lists, and the curious)
  function showCase(id) {
    let marker = null;
    caseCluster.eachLayer((m) => { if (m.feature.id === id) marker = m; });
    if (marker) caseCluster.zoomToShowLayer(marker, () => marker.openPopup());
    return Boolean(marker);
  }

  async function pollCases() {
    if (!S.token) return;
    try {
      const changed = await loadCases(true);
      if (changed && S.kpi && /^(cases|rate)\./.test(S.kpi)) await colourGrids();
    } catch (error) {
      report(error);
    }
  }

  // ---- 12345 hotline orders: the open ones placed, coloured by state ----------------------
  // Asked for again every few seconds (cfg.orders.poll_ms), like the cases, and drawn again
  // only when what came differs: an order runs late by the clock passing. A warning (a caller
  // dissatisfied at the return visit) is ringed, a late order marked "!"; so is a cluster
  // holding one. The queue (orders not placed) has no place to draw. Orders are the present's:
  // a moment in the past shows none. The caller never reaches the map: the API masks it, and
  // the page drops it (and the caller's own words) as each order arrives.
  const ORDERS = cfg.orders;
  const ordersGroup = L.featureGroup().addTo(map);
  window[cfg.control].addOverlay(ordersGroup, "热线工单 Hotline orders", "12345 热线 Hotline");
  const orderCluster = L.markerClusterGroup({
    showCoverageOnHover: false, maxClusterRadius: 40, disableClusteringAtZoom: 18,
    iconCreateFunction: (cluster) => {
      const marks = cluster.getAllChildMarkers();
      const late = marks.some((m) => m.options.late);
      const warning = marks.some((m) => m.options.warning);
      const n = cluster.getChildCount();
      const size = n < 10 ? 30 : n < 100 ? 36 : 42;
      const inner = document.createElement("div");
      inner.append(twinText("span", n));
      return L.divIcon({ html: inner.outerHTML, iconSize: [size, size], className:
        `marker-cluster twin-order-cluster${late ? " late" : ""}${warning ? " warning" : ""}` });
    },
  });
  ordersGroup.addLayer(orderCluster);
  S.orders = { signature: null, seq: 0, open: null, truncated: false };

  const orderState = (state) => (ORDERS.states[state] || {}).label || state;
  // the deadline an order waits on in each state (as twin.hotline.reads.LATE counts it)
  const WAITS = { received: ["accept"], accepted: ["contact", "handle"], contacted: ["handle"],
                  reopened: ["rehandle"], replied: ["visit"] };
  const CLOCKS = [["accept", "签收时限 Accept by"], ["contact", "先行联系时限 Contact by"],
                  ["handle", "办结时限 Handle by"], ["rehandle", "重办时限 Re-handle by"],
                  ["visit", "回访时限 Visit by"]];

  function orderIcon(feature) {
    const p = feature.properties;
    const size = p.late || p.warning ? 18 : 14;
    const colour = (ORDERS.states[p.state] || {}).colour || "#999";
    return L.divIcon({ className: `twin-order twin-order-${p.state}${p.late ? " late" : ""}`
                         + `${p.warning ? " warning" : ""}`,
                       iconSize: [size, size], html: p.late ? "!" : "", twinColour: colour });
  }

  function orderPopup(feature) {
    const p = feature.properties;
    const div = document.createElement("div");
    div.className = "twin-popup twin-order-popup";
    div.dataset.orderId = feature.id;
    div.append(twinText("b", `工单 Order ${p.order_number}`));
    const line = document.createElement("div");
    const state = twinText("span", orderState(p.state));
    state.className = "twin-order-state";
    state.style.background = (ORDERS.states[p.state] || {}).colour || "#999";
    line.append(state);
    if (p.late) {
      const late = twinText("span", "超时 late");
      late.className = "twin-order-late";
      line.append(late);
    }
    if (p.warning) {
      const warning = twinText("span", "不满意预警 warning");
      warning.className = "twin-order-warning";
      line.append(warning);
    }
    div.append(line);
    const due = p.due || {};
    const waiting = WAITS[p.state] || [];
    const rows = [
      ["类型 Kind", [p.kind_zh, p.kind_en].filter(Boolean).join(" ")],
      ["责任 Duty", [p.duty_zh, p.duty_en].filter(Boolean).join(" ")],
      ["受理 Received", clockTime(p.received_at)],
      ["签收 Accepted", clockTime(p.accepted_at)],
      ["先行联系 Contacted", clockTime(p.contacted_at)],
      ["答复 Replied", clockTime(p.replied_at)],
      ...CLOCKS.map(([step, label]) => [label, clockTime(due[step]), step]),
      ["重办次数 Re-opened", p.reopened ? p.reopened : ""],
      ["延期 Extended", (p.extended || []).join(", ")],
      ["微网格 Micro-grid", p.micro_grid],
      ["部门 Department", p.department],
    ];
    const table = document.createElement("table");
    const now = Date.now();
    for (const [label, value, step] of rows) {
      if (!value) continue;
      const cell = twinText("td", value);
      if (step && waiting.includes(step) && Date.parse(due[step]) < now) cell.className = "late";
      table.insertRow().append(twinText("th", label), cell);
    }
    div.append(table);
    if (p.case) {
      const link = twinText("a", `案件 Case #${p.case}`);
      link.href = `/cases/${p.case}`;
      link.className = "twin-order-case";
      link.dataset.caseId = p.case;
      const said = twinText("div", "");
      link.onclick = (event) => {  // the case on this map, or what it is now
        event.preventDefault();
        if (showCase(p.case)) return;
        api(`/cases/${p.case}`).then((c) => {
          said.textContent = `${c.properties.category_zh || ""} · ${c.properties.state}`;
        }).catch((error) => { said.textContent = `⚠ ${error.message}`; });
      };
      div.append(link, said);
    }
    return div;
  }

  function orderMarker(feature) {
    const [lon, lat] = feature.geometry.coordinates;
    const at = cfg.gcj02 ? TWIN_GCJ.toDisplay([lon, lat]) : L.latLng(lat, lon);
    const icon = orderIcon(feature);
    const p = feature.properties;
    const marker = L.marker(at, { icon, late: p.late, warning: p.warning,
                                  title: `${p.order_number} ${p.kind_zh || p.kind}` });
    marker.feature = feature;
    marker.on("add", () => {
      const el = marker.getElement();
      if (el) el.style.background = icon.options.twinColour;
    });
    marker.bindPopup(() => orderPopup(feature), { maxWidth: 380, minWidth: 240 });
    marker.on("popupopen", () => { S.orders.open = feature.id; });
    marker.on("popupclose", () => { if (!S.redrawing) S.orders.open = null; });
    return marker;
  }

  async function loadOrders() {
    if (!S.token || !map.hasLayer(ordersGroup)) return false;
    if (S.asOf) {  // orders are the present's
      orderCluster.clearLayers();
      S.orders.signature = null;
      return false;
    }
    const seq = (S.orders.seq += 1);
    const found = [];
    let more = true;
    for (let page = 0; more && page < ORDERS.pages; page += 1) {
      const body = await api(`/orders?state=${ORDERS.shown.join(",")}&queued=false`
                             + `&limit=1000&offset=${page * 1000}`);
      found.push(...body.features);
      more = found.length < body.numberMatched && body.numberReturned > 0;
    }
    if (seq !== S.orders.seq) return false; // a newer load is on its way
    S.orders.truncated = more;
    for (const f of found) {  // never kept: who called, and what they said
      delete f.properties.caller;
      delete f.properties.words;
    }
    const signature = found.map((f) => `${f.id}.${f.properties.version}.`
      + `${f.properties.late ? 1 : 0}`).join(",");
    if (signature === S.orders.signature) return false;
    S.orders.signature = signature;
    const markers = found.filter((f) => f.geometry).map(orderMarker);
    const reopen = markers.find((m) => m.feature.id === S.orders.open);
    S.redrawing = true;
    orderCluster.clearLayers();
    orderCluster.addLayers(markers);
    S.redrawing = false;
    if (reopen) orderCluster.zoomToShowLayer(reopen, () => reopen.openPopup());
    return true;
  }

  // an order shown, its popup opened (for the board's lists)
  function showOrder(id) {
    let marker = null;
    orderCluster.eachLayer((m) => { if (m.feature.id === id) marker = m; });
    if (marker) orderCluster.zoomToShowLayer(marker, () => marker.openPopup());
    return Boolean(marker);
  }

  async function pollOrders() {
    if (!S.token) return;
    try {
      await loadOrders();
    } catch (error) {
      report(error);
    }
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
    if (key.startsWith("cases.")) return (group.cases || {})[key.slice(6)] || 0;
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
  // the case figures: counts now (GET /kpis), and rates over the last 30 days (/cases/kpis)
  const CASE_KPIS = [["cases.open", "案件: 在办 Cases: open"],
                     ["cases.overdue", "案件: 超期 Cases: overdue"],
                     ["cases.filed_today", "案件: 今日立案 Cases: filed today"],
                     ["cases.closed_today", "案件: 今日结案 Cases: closed today"],
                     ["rate.on_time_rate", "案件: 按期结案率(近30天) Cases: on-time rate, 30 days"],
                     ["rate.closure_rate", "案件: 结案率(近30天) Cases: closure rate, 30 days"]];
  for (const [key, label] of CASE_KPIS) choice.append(new Option(label, key));
  // rates in fixed classes, worst first (red) to all on time (green); nothing due is grey
  const RATE_CLASSES = [[0, 0.6, "< 60%"], [0.6, 0.8, "60% – 80%"], [0.8, 0.9, "80% – 90%"],
                        [0.9, 1, "90% – 99.9%"], [1, 1.01, "100%"]];
  const RATE_PALETTE = ["#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641"];
  const NO_RATE = "#d9d9d9";

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

  function rateColour(value) {
    if (value == null) return NO_RATE;
    const k = RATE_CLASSES.findIndex(([low, high]) => value >= low && value < high);
    return RATE_PALETTE[k < 0 ? RATE_CLASSES.length - 1 : k];
  }

  function choropleth(feature) {
    const code = feature.properties.code;
    if (S.kpi.startsWith("rate.")) {
      const group = (S.rates || {})[code];
      return { color: "#555", weight: 1, fillOpacity: 0.6,
               fillColor: rateColour(group ? group[S.kpi.slice(5)] : null) };
    }
    const value = S.kpis && S.kpis[code] ? kpiValue(S.kpis[code], S.kpi) : 0;
    return { color: "#555", weight: 1, fillColor: PALETTE[classOf(value)], fillOpacity: 0.6 };
  }

  // the last 30 days of the subdistrict's calendar, tomorrow excluded: from and to as dates
  function last30Days() {
    const day = (t) => new Intl.DateTimeFormat("en-CA", { timeZone: cfg.time_zone,
      year: "numeric", month: "2-digit", day: "2-digit" }).format(t);
    const now = Date.now();
    return [day(new Date(now - 29 * 864e5)), day(new Date(now + 864e5))];
  }

  async function colourByRate() {
    const [from, to] = last30Days();
    const body = await api(`/cases/kpis?from=${from}&to=${to}&by=grid`);
    S.rates = Object.fromEntries(body.groups.filter((g) => g.key).map((g) => [g.key, g]));
    await readKpis(); // every grid, also those with no case
    const rate = S.kpi.slice(5);
    const values = Object.keys(S.kpis).map((code) => (S.rates[code] || {})[rate] ?? null);
    const rows = RATE_CLASSES.map(([low, high, label], k) => [label, RATE_PALETTE[k],
      values.filter((v) => v != null && v >= low && v < high).length]);
    rows.push(["无应结案件 nothing due", NO_RATE, values.filter((v) => v == null).length]);
    legend.append(twinText("div", `${from} – ${to}`));
    for (const [label, colour, grids] of rows) {
      const row = document.createElement("div");
      const swatch = document.createElement("span");
      swatch.className = "twin-swatch";
      swatch.style.background = swatch.style.borderColor = colour;
      row.append(swatch, `${label} (${grids})`);
      legend.append(row);
    }
  }

  async function colourGrids() {
    legend.replaceChildren();
    if (S.kpi && S.kpi.startsWith("rate.")) {
      await colourByRate();
    } else if (S.kpi) {
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
    if (event.layer === casesGroup) { loadCases(true).catch(report); return; }
    if (event.layer === ordersGroup) { S.orders.signature = null; loadOrders().catch(report); return; }
    const name = Object.keys(groups).find((key) => groups[key] === event.layer);
    if (name) load(name, true).catch(report);
  });
  setInterval(poll, cfg.poll_ms);
  setInterval(pollCases, CASES.poll_ms);
  setInterval(pollOrders, ORDERS.poll_ms);
  // the board asks its map to show a case or an order (same origin: a message naming its id)
  window.addEventListener("message", (event) => {
    if (event.origin === location.origin && event.data && event.data.twinCase) {
      showCase(event.data.twinCase);
    }
    if (event.origin === location.origin && event.data && event.data.twinOrder) {
      showOrder(event.data.twinOrder);
    }
  });
  // for the curious (and the tests): what the page holds and has seen
  window.twinLiveMap = { map, groups, heat, state: S, load, poll, classes, cases: caseCluster,
                         casesGroup, loadCases, showCase, orders: orderCluster, ordersGroup,
                         loadOrders, showOrder };
  if (S.token) start(); else signInForm();
}
