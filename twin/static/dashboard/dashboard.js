// The command centre's board (/dashboard): the live map (/map, in a frame: it signs in, to
// the session this page shares, common/session.js) and panels of key figures from GET /kpis
// and the coverage analysis (one block per facility layer, as the page lists them from the
// layers' declarations), asked again every few seconds and at once when one signs in. The
// cases panel: filed and closed today, open and overdue (GET /kpis), the overdue list
// (GET /cases?overdue=true) and rates by department and grid over 30 days (GET /cases/kpis);
// every figure opens the list of the cases it counts, and a case in a list shows on the map.
// The hotline panel (GET /kpis/hotline): orders received today, waiting for first contact, the
// queue not placed, open warnings and late ones, and the rates by department this month; each
// figure opens the orders it counts (GET /orders), and an order in a list shows on the map.
import { TOKEN_KEY, request, token } from "/static/common/session.js";

(() => {
  const LAYERS = JSON.parse(document.getElementById("twin-layers").textContent);
  const COVERAGE = JSON.parse(document.getElementById("twin-coverage").textContent);
  const EVERY_MS = 5000;
  const S = { token: token(), change: null, coverage: null, caseEvent: null, casesAt: 0,
              caseSoon: null, departments: null };

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

  // a block per facility layer: the share of households and of buildings within its walk
  async function coverage() {
    const nodes = [];
    for (const panel of COVERAGE) {
      const label = `${panel.title_zh} ${panel.title_en}`
        + (panel.state_label ? ` · ${panel.state_label}` : "");
      const block = el("div", undefined, "coverage");
      block.dataset.layer = panel.layer;
      block.dataset.href = panel.href;
      try {
        const body = await api(panel.href);
        const t = body.totals;
        block.append(el("h3", `${label} ≤ ${body.parameters.within_m} m`),
                     figure(`${(100 * (t.covered_households_share || 0)).toFixed(1)}%`,
                            "户 households"),
                     row("建筑 buildings", `${(100 * (t.covered_share || 0)).toFixed(1)}%`));
      } catch (error) {
        block.append(el("h3", label), el("div", "—"));
      }
      nodes.push(block);
    }
    fill("coverage", ...nodes);
  }

  // ---- cases (一网统管) ----------------------------------------------------------------------
  const STATES = { reported: "上报 reported", filed: "立案 filed", dispatched: "已派遣 dispatched",
                   handled: "已处置 handled", parked: "挂账 parked", closed: "结案 closed",
                   not_filed: "不予立案 not filed", void: "作废 void" };
  const hours = (h) => `${Number(h).toLocaleString("zh-CN", { maximumFractionDigits: 1 })} h`;
  const percent = (r) => r == null ? "—" : `${(100 * r).toFixed(1)}%`;
  const local = (href) => { const u = new URL(href, location.href); return u.pathname + u.search; };

  // a figure that opens the list of the cases (or, with openOrders, the orders) it counts
  function count(text, href, title, cls, open = openList) {
    const button = el("button", text, `count${cls ? ` ${cls}` : ""}`);
    button.type = "button";
    button.dataset.href = local(href);
    button.onclick = () => open(title, href).catch((error) => {
      document.querySelector("#case-list .body").replaceChildren(el("div", `⚠ ${error.message}`));
    });
    return button;
  }

  // the board's map shows a case (or an order) and opens its popup
  function showOnMap(id, what = "twinCase") {
    const frame = document.getElementById("map");
    frame.contentWindow.postMessage({ [what]: id }, location.origin);
  }

  function caseLine(f) {
    const p = f.properties;
    return `#${f.id} ${p.category_zh} · ${STATES[p.state] || p.state} · ${p.micro_grid || "-"}`;
  }

  async function openList(title, href) {
    const box = document.getElementById("case-list");
    box.hidden = false;
    box.querySelector(".title").textContent = title;
    const body = box.querySelector(".body");
    body.replaceChildren(el("div", "…"));
    const found = await api(`${local(href)}${href.includes("limit=") ? "" : "&limit=200"}`);
    const list = el("ol");
    for (const f of found.features) {
      const item = el("li", caseLine(f));
      item.dataset.caseId = f.id;
      if (f.properties.overdue) item.append(" ", el("span", `超期 ${hours(f.properties.overdue_hours)}`, "late"));
      item.onclick = () => showOnMap(f.id);
      list.append(item);
    }
    body.replaceChildren(el("div", `共 ${number(found.numberMatched)} 件 cases`
      + (found.numberMatched > found.numberReturned ? ` (前 first ${found.numberReturned})` : "")),
      list);
  }
  document.querySelector("#case-list .close").onclick = () => {
    document.getElementById("case-list").hidden = true;
  };

  async function cases(kpis) {
    const c = kpis.cases;
    const t = c.total;
    const cell = (value, label, figure, title, cls) => {
      const div = el("div");
      const big = el("div", undefined, `figure${cls && value ? ` ${cls}` : ""}`);
      big.append(count(number(value), c.links[figure], title));
      div.append(big, el("small", label));
      div.dataset.figure = figure;
      return div;
    };
    const figures = el("div", undefined, "figures");
    figures.append(cell(t.filed_today, "今日立案 filed today", "filed_today", "今日立案 Filed today"),
                   cell(t.closed_today, "今日结案 closed today", "closed_today", "今日结案 Closed today"),
                   cell(t.open, "在办 open", "open", "在办案件 Open cases"),
                   cell(t.overdue, "超期 overdue", "overdue", "超期案件 Overdue cases", "alert"));
    // the overdue, most overdue first; then the open ones whose time runs out soonest
    const overdue = await api("/cases?overdue=true&limit=1000");
    const late = [...overdue.features].sort((a, b) =>
      (b.properties.overdue_hours || 0) - (a.properties.overdue_hours || 0));
    const list = el("div", undefined, "overdue-list");
    for (const f of late.slice(0, 8)) {
      const line = row(caseLine(f), `超期 ${hours(f.properties.overdue_hours)}`, "late");
      line.dataset.caseId = f.id;
      line.title = f.properties.description || "";
      line.onclick = () => showOnMap(f.id);
      list.append(line);
    }
    const nodes = [figures, el("h3", `超期案件 Overdue (${number(overdue.numberMatched)})`)];
    nodes.push(late.length ? list : el("div", "无超期案件 none overdue"));
    if (S.caseSoon) nodes.push(el("h3", "即将到期 Due soonest"), S.caseSoon);
    fill("cases", ...nodes);
  }

  // open cases not yet overdue, the least time left first (asked when the cases change)
  async function dueSoon() {
    const open = await api("/cases?state=reported,filed,dispatched,handled&limit=1000");
    // by the running stage's deadline (a reported case has no case deadline yet)
    const due = (f) => Date.parse((f.properties.due || {}).stage);
    const soon = [...open.features].filter((f) => !f.properties.overdue && !isNaN(due(f)))
      .sort((a, b) => due(a) - due(b)).slice(0, 5);
    const list = el("div", undefined, "overdue-list");
    for (const f of soon) {
      const left = f.properties.time_left_hours;
      const line = row(caseLine(f), left != null ? `剩余 ${hours(left)}`
        : `时限 ${new Date(due(f)).toLocaleTimeString("zh-CN", { hour: "2-digit",
                                                                 minute: "2-digit", hour12: false })}`);
      line.dataset.caseId = f.id;
      line.onclick = () => showOnMap(f.id);
      list.append(line);
    }
    S.caseSoon = soon.length ? list : null;
  }

  // the last 30 days of the subdistrict's calendar (tomorrow excluded), as dates
  function last30Days(zone) {
    const day = (t) => new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric",
      month: "2-digit", day: "2-digit" }).format(t);
    return [day(new Date(Date.now() - 29 * 864e5)), day(new Date(Date.now() + 864e5))];
  }

  async function rates(zone, grids) {
    const [from, to] = last30Days(zone);
    if (!S.departments) {
      const body = await api("/cases/categories");
      S.departments = Object.fromEntries(body.categories.map(
        (k) => [k.department.code, `${k.department.name_zh} ${k.department.name_en}`]));
    }
    const [byDept, byGrid] = await Promise.all([
      api(`/cases/kpis?from=${from}&to=${to}&by=department`),
      api(`/cases/kpis?from=${from}&to=${to}&by=grid`)]);
    const names = Object.fromEntries(grids.map((g) => [g.code, g.name || g.code]));
    // a group's line: due, closure rate, on-time rate, each opening its cases
    const line = (label, g, whole) => {
      // the total's links name no group (the answer's carry by and an empty key)
      const link = (name) => {
        const u = new URL(g.links[name], location.href);
        if (whole) { u.searchParams.delete("by"); u.searchParams.delete("key"); }
        return u.pathname + u.search;
      };
      const tr = el("tr");
      tr.dataset.key = g.key ?? "";
      const td = (node) => { const cell = el("td"); cell.append(node); return cell; };
      tr.append(td(el("span", label)),
                td(count(number(g.due), link("due"), `${label} · 应结案 due`)),
                td(count(percent(g.closure_rate), link("closed"), `${label} · 结案 closed`)),
                td(count(percent(g.on_time_rate), link("closed_on_time"),
                         `${label} · 按期结案 closed on time`,
                         g.on_time_rate != null && g.on_time_rate < 0.9 ? "late" : "")));
      return tr;
    };
    const table = (title, rows) => {
      const t = el("table", undefined, "rates");
      const head = el("tr");
      for (const h of [title, "应结 due", "结案率 closure", "按期率 on time"]) head.append(el("th", h));
      t.append(head, ...rows);
      return t;
    };
    const depts = byDept.groups.filter((g) => g.key && g.due > 0);
    const worst = byGrid.groups.filter((g) => g.key && g.due > 0)
      .sort((a, b) => (a.on_time_rate ?? 1) - (b.on_time_rate ?? 1) || b.due - a.due).slice(0, 6);
    fill("rates",
         el("div", `${from} – ${to} · 率 = 结案数 / 应结案数 rate = closed / due`),
         table("合计 Total", [line("全部 all", byDept.total, true)]),
         el("h3", "按部门 By department"),
         depts.length ? table("部门 department", depts.map((g) => line(S.departments[g.key] || g.key, g)))
           : el("div", "—"),
         el("h3", "按期率最低的微网格 Grids, lowest on-time rate"),
         worst.length ? table("微网格 grid", worst.map((g) => line(names[g.key] ? `${names[g.key]} ${g.key}` : g.key, g)))
           : el("div", "—"));
  }

  // ---- 12345 hotline orders -----------------------------------------------------------------
  const ORDER_STATES = { received: "待签收 received", accepted: "已签收 accepted",
                         contacted: "已先行联系 contacted", replied: "已答复 replied",
                         reopened: "重办 reopened", closed: "办结 closed", returned: "退单 returned" };

  function orderLine(f) {
    const p = f.properties;
    return `${p.order_number} ${p.kind_zh || p.kind} · ${ORDER_STATES[p.state] || p.state} · `
      + `${p.queued ? "待定位 not placed" : p.micro_grid || "-"}`;
  }

  // the orders a figure counts, in the board's list box (an order placed opens on the map)
  async function openOrders(title, href) {
    const box = document.getElementById("case-list");
    box.hidden = false;
    box.querySelector(".title").textContent = title;
    const body = box.querySelector(".body");
    body.replaceChildren(el("div", "…"));
    const path = local(href);
    const found = await api(`${path}${path.includes("limit=") ? "" : `${path.includes("?") ? "&" : "?"}limit=200`}`);
    const list = el("ol");
    for (const f of found.features) {
      const item = el("li", orderLine(f));
      item.dataset.orderId = f.id;
      if (f.properties.late) item.append(" ", el("span", "超时 late", "late"));
      if (f.properties.warning) item.append(" ", el("span", "预警 warning", "late"));
      if (f.geometry) item.onclick = () => showOnMap(f.id, "twinOrder");
      list.append(item);
    }
    body.replaceChildren(el("div", `共 ${number(found.numberMatched)} 件 orders`
      + (found.numberMatched > found.numberReturned ? ` (前 first ${found.numberReturned})` : "")),
      list);
  }

  function hotline(h) {
    const t = h.total;
    const cell = (name, label, cls) => {
      const div = el("div");
      div.dataset.figure = name;
      const big = el("div", undefined, `figure${cls && t[name] ? ` ${cls}` : ""}`);
      big.append(count(number(t[name]), h.links[name], `热线 ${label}`, "", openOrders));
      div.append(big, el("small", label));
      return div;
    };
    const figures = el("div", undefined, "figures");
    figures.append(cell("received_today", "今日受理 received today"),
                   cell("waiting_contact", "待先行联系 waiting for first contact"),
                   cell("queued", "待定位 not placed (queue)", "alert"),
                   cell("warnings", "不满意预警 warnings", "alert"),
                   cell("late", "超时 late", "alert"));
    // the rates by department over the period, each opening the orders its numerator counts
    const rates = h.board_rates;
    const line = (label, g) => {
      const tr = el("tr");
      tr.dataset.key = g.key ?? "";
      const td = (node) => { const c = el("td"); c.append(node); return c; };
      tr.append(td(el("span", label)));
      for (const r of rates) {
        const button = count(percent(g[r.name]), g.links[r.numerator],
                             `${label} · ${r.zh} ${r.en}`, "", openOrders);
        button.title = `${number(g[r.numerator])} / ${number(g[r.denominator])}`;
        const c = td(button);
        c.dataset.rate = r.name;
        tr.append(c);
      }
      return tr;
    };
    const table = el("table", undefined, "rates");
    const head = el("tr");
    head.append(el("th", "部门 department"));
    for (const r of rates) {
      const th = el("th", r.zh);
      th.append(el("small", r.en));
      head.append(th);
    }
    const dept = (code) => {
      const d = h.departments[code];
      return d ? `${d.name_zh} ${d.name_en}` : code;
    };
    // departments with anything due or visited in the period
    const counted = (g) => rates.some((r) => g[r.denominator] > 0);
    const depts = h.rates.groups.filter((g) => g.key && counted(g));
    table.append(head, line("全部 all", h.rates.total), ...depts.map((g) => line(dept(g.key), g)));
    const p = h.period;
    const span = `${p.name_zh} ${p.name_en}: ${p.from.slice(0, 10)} – ${p.to.slice(0, 16).replace("T", " ")}`;
    const right = el("div");
    right.append(el("div", `${span} · 率 = 按时数 / 应办数 rate = in time / due`), table);
    if (!depts.length) right.append(el("div", "无部门工单 no department's orders due"));
    fill("hotline", figures, right);
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
      // the cases: their figures each time; the slower lists when a case moved, or each minute
      try {
        const moved = kpis.twin.case_event_id !== S.caseEvent || Date.now() - S.casesAt > 60_000;
        if (moved) {
          S.caseEvent = kpis.twin.case_event_id;
          S.casesAt = Date.now();
          await dueSoon();
          await rates(kpis.time_zone, kpis.groups);
        }
        await cases(kpis);
      } catch (error) {
        if (error.signedOut) throw error;
        S.caseEvent = null; // asked again at the next refresh
        fill("cases", el("div", `⚠ ${error.message}`));
      }
      try {
        hotline(await api("/kpis/hotline"));
      } catch (error) {
        if (error.signedOut) throw error;
        fill("hotline", el("div", `⚠ ${error.message}`));
      }
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

  // The read replicas as /ready lists them (it needs no token): how far behind each one is,
  // in red when it lags more than a second or does not stream; nothing when there are none.
  async function replicas() {
    let listed = [];
    try {
      listed = (await (await fetch("/ready")).json()).replicas || [];
    } catch {
      listed = [];
    }
    document.getElementById("replicas").replaceChildren(...listed.map((r) => el(
      "span", `只读副本 replica ${r.name}: ${r.state === "streaming"
        ? `${r.lag_s.toFixed(2)} s` : r.state}`,
      r.state !== "streaming" || r.lag_s > 1 ? "alert" : "")));
  }

  function tick() {
    document.getElementById("clock").textContent =
      new Date().toLocaleString("zh-CN", { hour12: false });
  }

  window.addEventListener("storage", (event) => { if (event.key === TOKEN_KEY) refresh(); });
  setInterval(refresh, EVERY_MS);
  setInterval(replicas, EVERY_MS);
  setInterval(tick, 1000);
  tick();
  refresh();
  replicas();
})();
