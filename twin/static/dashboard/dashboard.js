// The command centre's board (/dashboard): the live map (/map, in a frame: it signs in, to
// the session this page shares, common/session.js) and panels of key figures from GET /kpis
// and the coverage analysis, asked again every few seconds and at once when one signs in.
import { TOKEN_KEY, request, token } from "/static/common/session.js";

(() => {
  const LAYERS = JSON.parse(document.getElementById("twin-layers").textContent);
  const EVERY_MS = 5000;
  const S = { token: token(), change: null, coverage: null };

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function row(label, value, cls) {
    const div = el("div", undefined, "row");
    div.append(label instanceof Node ? label : el("span", label), el("b", value, cls));
    return div;
  }

  function fill(id, ...nodes) {
    document.querySelector(`#${id} .body`).replaceChildren(...nodes);
  }

  function figure(value, unit) {
    const div = el("div", value, "figure");
    if (unit) div.append(el("small", unit));
    return div;
  }

  const number = (n) => (n ?? 0).toLocaleString("zh-CN");

  async function api(path) {
    const answer = await request(path);
    if (answer.status === 401) throw Object.assign(new Error("signed out"), { signedOut: true });
    if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
    return answer.json();
  }

  function states(kpis) {
    const nodes = [];
    for (const [layer, spec] of Object.entries(kpis.layers)) {
      const totals = {};
      for (const group of kpis.groups) {
        for (const [state, n] of Object.entries((group.states || {})[layer] || {})) {
          totals[state] = (totals[state] || 0) + n;
        }
      }
      nodes.push(el("h3", spec.title));
      const colours = (LAYERS[layer] || {}).by_state || {};
      for (const [state, label] of Object.entries(spec.states)) {
        const dot = el("span", undefined, "dot");
        dot.style.background = colours[state] || "#999";
        const name = el("span");
        name.append(dot, label);
        nodes.push(row(name, number(totals[state])));
      }
    }
    fill("states", ...nodes);
  }

  function edits(kpis) {
    const sum = (key) => kpis.groups.reduce((total, g) => total + (g[key] || 0), 0);
    fill("edits", figure(number(sum("edits_today")), "今日 today"),
         row("7日 7 days", number(sum("edits_7_days"))),
         row("7日在岗网格员 workers active, 7 days", number(sum("workers_7_days"))),
         row("微网格 micro-grids", number(kpis.groups.length)));
    fill("grids", bars(kpis.groups, "edits_today", 12) || el("div", "今日尚无编辑 no edits yet today"));
  }

  // the groups with the most of ``key``, as bars (null when none has any)
  function bars(groups, key, most) {
    const busiest = [...groups].sort((a, b) => b[key] - a[key]).filter((g) => g[key] > 0)
      .slice(0, most);
    if (!busiest.length) return null;
    const list = el("div", undefined, "bars");
    for (const g of busiest) {
      const bar = el("div", undefined, "bar");
      bar.style.width = `${(100 * g[key]) / busiest[0][key]}%`;
      const track = el("div", undefined, "track");
      track.append(bar);
      const line = el("div", undefined, "row");
      line.append(el("span", g.name || g.code, "name"), track, el("b", number(g[key])));
      list.append(line);
    }
    return list;
  }

  function sync(kpis) {
    const health = kpis.sync;
    const ago = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false }) : "-";
    const waited = health.longest_offline_s;
    fill("sync",
         figure(number(health.edits_unsynced), "平板待同步编辑 edits waiting on tablets"),
         row("有待同步编辑的设备 devices with pending edits", number(health.devices_unsynced),
             health.devices_unsynced ? "alert" : ""),
         row("最早未同步编辑 oldest unsynced edit", ago(health.oldest_unsynced)),
         row("待处理冲突 conflicts waiting", number(health.open_conflicts),
             health.open_conflicts ? "alert" : ""),
         row("有待处理冲突的设备 devices with edits waiting", number(health.devices_waiting),
             health.devices_waiting ? "alert" : ""),
         row("最早的待处理编辑 oldest waiting edit", ago(health.oldest_waiting)),
         el("h3", "近7日 last 7 days"),
         row("同步的设备 devices synced", number(health.devices)),
         row("最近同步 last sync", ago(health.last_sync)),
         row("收到的编辑 edits received", number(health.edits)),
         row("被拒绝 rejected", number(health.rejected), health.rejected ? "alert" : ""),
         row("离线最久 longest offline",
             waited == null ? "-" : `${Math.round(waited / 60).toLocaleString("zh-CN")} min`),
         ...(health.edits_unsynced ? [el("h3", "待同步最多的网格 grids with most pending"),
                                      bars(kpis.groups, "edits_unsynced", 5)] : []));
  }

  async function coverage() {
    const asks = [["waste_points", "", "垃圾投放点 Waste points"],
                  ["charging_points", "&state=safe", "安全充电点 Safe charging points"]];
    const nodes = [];
    for (const [layer, extra, label] of asks) {
      try {
        const body = await api(`/analysis/coverage?layer=${layer}${extra}&uncovered=false`);
        const t = body.totals;
        nodes.push(el("h3", `${label} ≤ ${body.parameters.within_m} m`),
                   figure(`${(100 * (t.covered_households_share || 0)).toFixed(1)}%`,
                          "户 households"),
                   row("建筑 buildings", `${(100 * (t.covered_share || 0)).toFixed(1)}%`));
      } catch (error) {
        nodes.push(el("h3", label), el("div", "—"));
      }
    }
    fill("coverage", ...nodes);
  }

  async function refresh() {
    S.token = token();
    document.body.classList.toggle("signed-out", !S.token);
    if (!S.token) return;
    try {
      const kpis = await api("/kpis?by=grid");
      states(kpis);
      edits(kpis);
      sync(kpis);
      const areas = await api("/kpis?by=area");
      fill("areas", bars(areas.groups, "edits_7_days", 10) || el("div", "—"));
      document.getElementById("moment").textContent =
        `变更 change #${kpis.twin.change_id}`;
      if (kpis.twin.change_id !== S.change) {  // coverage moves only when the twin does
        S.change = kpis.twin.change_id;
        await coverage();
      }
    } catch (error) {
      if (error.signedOut) document.body.classList.add("signed-out");
    }
  }

  function tick() {
    document.getElementById("clock").textContent =
      new Date().toLocaleString("zh-CN", { hour12: false });
  }

  window.addEventListener("storage", (event) => { if (event.key === TOKEN_KEY) refresh(); });
  setInterval(refresh, EVERY_MS);
  setInterval(tick, 1000);
  tick();
  refresh();
})();
