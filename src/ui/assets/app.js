// xp ui: the runs table, curves (uPlot), the sweep's parallel coordinates and a run's page,
// kept live by the server's event stream. Plain script, no build step: the file is served as is.
"use strict";

const PALETTE = ["#2f6fde", "#e8743b", "#19a979", "#ed4a7b", "#945ecf", "#13a4b4",
  "#525df4", "#bf399e", "#6c8893", "#ee6868", "#2f9e44", "#c9a227"];
const MAX_OVERLAY = 20;

const S = {
  page: null,          // /api/runs answer
  where: "", sort: "", group: "",
  selected: new Set(), // runs picked for the chart
  brush: {},           // axis key -> [lo, hi] in 0..1 of that axis
  metric: "val_loss", x: "step", logx: false, logy: false, smooth: "debiased", param: 0.6,
  chart: null, tables: [], tableOf: {}, lastStep: {}, grouped: false,
  source: null, chartKey: "", refetch: null, marks: [],
};

// ---------- small helpers ----------

function h(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: { message: `${r.status} ${r.statusText}` } }));
  if (!r.ok) throw Object.assign(new Error(body.error?.message || r.statusText), { status: r.status, detail: body.error });
  return body;
}

function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) u.set(k, v);
  return u.toString();
}

function si(v) {
  if (v == null) return "—";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
  return String(Math.round(v * 100) / 100);
}

function loss(v) { return v == null ? "—" : v.toFixed(4); }

function duration(s) {
  if (s == null) return "—";
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  if (m < 60) return `${m}m ${String(r).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

function show(v) {
  if (v == null) return "—";
  if (typeof v === "number") {
    if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(3).replace(/\.?0+e/, "e");
    return String(Math.round(v * 1e6) / 1e6);
  }
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function shortKey(k) {
  const parts = k.split(".");
  return parts.length > 2 ? parts.slice(-2).join(".") : k;
}

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
}

// ---------- the runs table ----------

const FIXED = [
  { key: "run", label: "run", sort: "run" },
  { key: "experiment", label: "experiment", sort: "experiment" },
  { key: "status", label: "status", sort: "status" },
  { key: "step", label: "step", sort: "step", num: true },
];
const SUMMARY = [
  { key: "best_val_loss", label: "best val", sort: "best_val_loss", num: true },
  { key: "final_val_loss", label: "final val", sort: "final_val_loss", num: true },
  { key: "tokens_per_s", label: "tok/s", sort: "median_tokens_per_s", num: true },
  { key: "wall_s", label: "wall", sort: "wall_s", num: true },
];

function columns() {
  const swept = (S.page?.columns || []).map(k => ({ key: k, label: shortKey(k), title: k, sort: k, swept: true }));
  return [...FIXED, ...swept, ...SUMMARY];
}

function cell(row, col) {
  switch (col.key) {
    case "run": return h("td", {}, h("a", { href: `#/run/${row.id}` }, row.name));
    case "experiment": return h("td", {}, row.experiment);
    case "status": return h("td", { class: `status-${row.status}`, title: row.reason || "" }, row.status);
    case "step": return h("td", { class: "num" }, `${row.step}/${row.steps_total}`);
    case "best_val_loss":
    case "final_val_loss":
      return h("td", { class: "num" + (row.partial && row[col.key] != null ? " partial" : ""),
        title: row.partial ? "so far (the run has no summary yet)" : "" }, loss(row[col.key]));
    case "tokens_per_s": return h("td", { class: "num" }, si(row.tokens_per_s));
    case "wall_s": return h("td", { class: "num" }, duration(row.wall_s));
    default: return h("td", {}, show(row.swept[col.key]));
  }
}

function groupValue(row, key) {
  if (key === "experiment") return row.experiment;
  if (key === "status") return row.status;
  return row.swept[key];
}

function visibleRows() {
  if (!S.page) return [];
  const axes = Object.keys(S.brush);
  if (!axes.length) return S.page.rows;
  const scales = parScales();
  return S.page.rows.filter(r => axes.every(k => {
    const t = scales[k]?.t(axisValue(r, k));
    const [lo, hi] = S.brush[k];
    return t != null && t >= lo && t <= hi;
  }));
}

function rowElement(row, cols) {
  const tr = h("tr", { class: "run" + (S.selected.has(row.id) ? " selected" : ""), dataset: { id: row.id } },
    h("td", {}, h("input", { type: "checkbox", checked: S.selected.has(row.id), title: "draw this run",
      onchange: e => { e.target.checked ? S.selected.add(row.id) : S.selected.delete(row.id);
        tr.classList.toggle("selected", e.target.checked); loadChart(); } })),
    cols.map(c => cell(row, c)));
  return tr;
}

function renderTable() {
  const cols = columns();
  const table = document.getElementById("runs");
  const [sortKey, dir] = S.sort.split(":");
  table.tHead.replaceChildren(h("tr", {}, h("th", {}, ""), cols.map(c =>
    h("th", { class: (c.sort === sortKey ? "sorted" : "") + (dir === "desc" && c.sort === sortKey ? " desc" : ""),
      title: c.title || c.key, dataset: { sort: c.sort },
      onclick: () => {
        S.sort = sortKey !== c.sort ? c.sort : dir === "desc" ? "" : `${c.sort}:desc`;
        loadRuns();
      } }, c.label))));
  const rows = visibleRows();
  const body = [];
  if (S.group) {
    const groups = new Map();
    for (const r of rows) {
      const k = JSON.stringify(groupValue(r, S.group) ?? null);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(r);
    }
    for (const [k, members] of groups) {
      const best = members.map(r => r.best_val_loss).filter(v => v != null);
      const stats = best.length
        ? ` · best val mean ${loss(best.reduce((a, b) => a + b, 0) / best.length)} (min ${loss(Math.min(...best))}, max ${loss(Math.max(...best))})`
        : "";
      body.push(h("tr", { class: "group" }, h("td", { colspan: cols.length + 1 },
        `${S.group} = ${show(JSON.parse(k))} · ${members.length} run${members.length === 1 ? "" : "s"}${stats}`)));
      for (const r of members) body.push(rowElement(r, cols));
    }
  } else {
    for (const r of rows) body.push(rowElement(r, cols));
  }
  table.tBodies[0].replaceChildren(...body);
  const all = S.page.rows.length;
  document.getElementById("count").textContent =
    rows.length === all ? `${all} run${all === 1 ? "" : "s"}` : `${rows.length} of ${all} runs (brushed)`;
}

function updateRow(row) {
  if (!S.page) return;
  const i = S.page.rows.findIndex(r => r.id === row.id);
  if (i < 0) return;
  S.page.rows[i] = row;
  const tr = document.querySelector(`#runs tr.run[data-id="${row.id}"]`);
  if (tr) tr.replaceWith(rowElement(row, columns()));
}

function fillGroupSelect() {
  const sel = document.getElementById("group");
  const keys = ["experiment", "status", ...(S.page?.columns || [])];
  sel.replaceChildren(h("option", { value: "" }, "—"), ...keys.map(k => h("option", { value: k, selected: k === S.group }, k)));
  if (S.group && !keys.includes(S.group)) S.group = "";
}

function showWhereError(err) {
  const box = document.getElementById("where-error");
  const input = document.getElementById("where");
  if (!err) { box.hidden = true; input.classList.remove("bad"); return; }
  const d = err.detail || {};
  const lines = [`${d.param ? "--" + d.param + ": " : ""}${d.column ? "column " + d.column + ": " : ""}${err.message}`];
  if (d.text != null && d.column) lines.push("  " + d.text, "  " + " ".repeat(d.column - 1) + "^");
  box.textContent = lines.join("\n");
  box.hidden = false;
  input.classList.add("bad");
}

// Each early-stopped experiment: its rungs (waiting, promoted, stopped, on the way) and the
// best run so far, as `xp status` shows them.
async function loadSearches() {
  const panel = document.getElementById("searches");
  const searches = await api("/api/searches").catch(() => []);
  panel.hidden = !searches.length;
  const dot = n => n ? String(n) : "·";
  panel.replaceChildren(...searches.map(s => h("div", { class: "search", dataset: { experiment: s.experiment } },
    h("h2", {}, `${s.experiment}: ${s.method}`),
    h("table", { class: "rungs" },
      h("thead", {}, h("tr", {}, ...["bracket", "rung", "step", "waiting", "promoted", "stopped", "on the way"].map(t => h("th", {}, t)))),
      h("tbody", {}, ...s.rungs.map(r => h("tr", {},
        h("td", { class: "num" }, r.bracket), h("td", { class: "num" }, r.rung), h("td", { class: "num" }, r.step),
        h("td", { class: "num" }, dot(r.waiting)), h("td", { class: "num" }, dot(r.promoted)),
        h("td", { class: "num" }, dot(r.stopped)), h("td", { class: "num" }, dot(r.on_the_way)))))),
    h("p", { class: "muted" },
      (s.best ? `best so far: ${s.best.run} with ${s.metric} ${loss(s.best.value)} at step ${s.best.step} (${s.best.status}); ` : "") +
      `trained ${si(s.steps_trained)} of the ${si(s.steps_of_full_grid)} steps of every run to its end ` +
      `(${Math.round(100 * s.steps_trained / Math.max(1, s.steps_of_full_grid))}%); ` +
      "on the curves: ▲ promoted, ✕ stopped, ○ paused"))));
}

// Each search: its objective against the trial number with the best so far (a step line),
// and each trial's settings, as `xp status` lists them.
async function loadTrials() {
  const panel = document.getElementById("trials");
  const searches = await api("/api/trials").catch(() => []);
  panel.hidden = !searches.length;
  panel.replaceChildren(...searches.map(t => {
    const keys = t.rows.length ? t.rows[0].settings.map(([k]) => k) : [];
    const chart = h("div", { class: "trial-chart" });
    const box = h("div", { class: "search", dataset: { experiment: t.experiment } },
      h("h2", {}, `${t.experiment}: ${t.method}; ${t.rows.length} of ${t.planned} trials chosen`),
      chart,
      h("table", { class: "trials" },
        h("thead", {}, h("tr", {}, ...["trial", "run", "status", "step", "objective", "best so far", ...keys].map(k => h("th", {}, k)))),
        h("tbody", {}, ...t.rows.map(r => h("tr", { class: r.trial === t.best ? "best" : null },
          h("td", { class: "num" }, r.trial), h("td", {}, h("a", { href: `#/run/${r.run.slice(4)}` }, r.run)),
          h("td", {}, r.status), h("td", { class: "num" }, r.step), h("td", { class: "num" }, loss(r.value)),
          h("td", { class: "num" }, loss(r.best_so_far)),
          ...r.settings.map(([, v]) => h("td", { class: "num" }, typeof v === "number" ? (Math.abs(v) < 1e-2 && v !== 0 ? v.toExponential(2) : String(Math.round(v * 1e4) / 1e4)) : String(v))))))));
    const xs = t.rows.map(r => r.trial);
    const data = [xs, t.rows.map(r => r.value ?? null), t.rows.map(r => r.best_so_far ?? null)];
    requestAnimationFrame(() => {
      const width = Math.max(320, chart.clientWidth || 600);
      new uPlot({
        width, height: 220,
        scales: { x: { time: false } },
        axes: [{ label: "trial" }, { label: t.metric }],
        series: [{ label: "trial" },
          { label: "objective", stroke: PALETTE[0], paths: () => null, points: { show: true, size: 7, fill: PALETTE[0] } },
          { label: "best so far", stroke: PALETTE[1], width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
      }, data, chart);
    });
    return box;
  }));
}

async function loadRuns() {
  let page;
  try {
    page = await api("/api/runs?" + qs({ where: S.where, sort: S.sort }));
  } catch (err) {
    showWhereError(err);
    document.body.dataset.ready = "1";
    return;
  }
  showWhereError(null);
  S.page = page;
  document.getElementById("store").textContent = page.store;
  const ids = new Set(page.rows.map(r => r.id));
  for (const id of [...S.selected]) if (!ids.has(id)) S.selected.delete(id);
  for (const k of Object.keys(S.brush)) if (k !== "best_val_loss" && !page.columns.includes(k)) delete S.brush[k];
  fillGroupSelect();
  renderTable();
  await loadSearches();
  await loadTrials();
  document.body.dataset.ready = "1";
  window.xpTimings = window.xpTimings || { ready: performance.now() };
  drawParcoords();
  loadChart();
}

// ---------- curves ----------

function chartRuns() {
  const rows = visibleRows();
  if (S.group) return rows.map(r => r.id);
  const picked = rows.filter(r => S.selected.has(r.id));
  return (picked.length ? picked : rows).slice(0, MAX_OVERLAY).map(r => r.id);
}

function chartNote(total) {
  const note = document.getElementById("chart-note");
  if (S.group || total <= MAX_OVERLAY || S.selected.size) note.textContent = "";
  else note.textContent = `showing the first ${MAX_OVERLAY} of ${total} runs: tick runs in the table, or group them`;
}

let metricsFor = "";
async function fillMetrics(ids) {
  const key = ids.join(",");
  if (key === metricsFor) return;
  metricsFor = key;
  const sel = document.getElementById("metric");
  const names = ids.length ? await api("/api/metrics?" + qs({ runs: key })) : [];
  if (!names.includes(S.metric) && names.length) S.metric = names.includes("val_loss") ? "val_loss" : names[0];
  sel.replaceChildren(...names.map(n => h("option", { value: n, selected: n === S.metric }, n)));
}

function smoothingParams() {
  if (S.smooth === "none") return {};
  return { smooth: S.smooth, param: S.param };
}

let chartSeq = 0;
async function loadChart() {
  const seq = ++chartSeq;
  const ids = chartRuns();
  chartNote(visibleRows().length);
  try {
    await fillMetrics(ids);
    if (seq !== chartSeq) return;
    const params = { runs: ids.join(","), metric: S.metric, x: S.x, group: S.group, ...smoothingParams() };
    const resp = ids.length ? await api("/api/curves?" + qs(params)) : { series: [], groups: [] };
    if (seq !== chartSeq) return;
    drawChart(resp);
    connectLive(params, resp);
  } catch (err) {
    document.getElementById("chart-note").textContent = "chart: " + err.message;
  }
}

function keepX(x, y) {
  if (!S.logx) return [x, y];
  const xs = [], ys = [];
  for (let i = 0; i < x.length; i++) if (x[i] > 0) { xs.push(x[i]); ys.push(y[i]); }
  return [xs, ys];
}

function drawChart(resp) {
  const host = document.getElementById("curves");
  const legend = document.getElementById("legend");
  S.tables = []; S.tableOf = {}; S.lastStep = {};
  const series = [{ label: S.x }];
  const bands = [];
  const items = [];
  S.grouped = resp.groups.length > 0;
  resp.groups.forEach((g, i) => {
    const c = PALETTE[i % PALETTE.length];
    const b = g.band;
    const [x, mean] = keepX(b.x, b.mean), [, lo] = keepX(b.x, b.lo), [, hi] = keepX(b.x, b.hi);
    S.tables.push([x, mean, lo, hi]);
    const base = series.length;
    series.push({ label: g.label, stroke: c, width: 2, spanGaps: true, points: { show: false } },
      { label: g.label + " min", stroke: alpha(c, 0.35), width: 0.5, spanGaps: true, points: { show: false } },
      { label: g.label + " max", stroke: alpha(c, 0.35), width: 0.5, spanGaps: true, points: { show: false } });
    bands.push({ series: [base + 2, base + 1], fill: alpha(c, 0.18) });
    items.push(h("li", { style: `--c:${c}`, dataset: { kind: "group" } }, g.label));
  });
  S.marks = resp.series.flatMap(s => s.marks || []);
  resp.series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    S.lastStep[s.run] = s.last_step;
    const entry = {};
    const raw = keepX(s.raw.x, s.raw.y);
    entry.raw = S.tables.push(raw) - 1;
    series.push({ label: s.name + (s.smooth ? " (raw)" : ""), stroke: s.smooth ? alpha(c, 0.25) : c, width: 1, spanGaps: true });
    if (s.smooth) {
      entry.smooth = S.tables.push(keepX(s.smooth.x, s.smooth.y)) - 1;
      series.push({ label: s.name, stroke: c, width: 1.6, spanGaps: true });
    }
    S.tableOf[s.run] = entry;
    items.push(h("li", { style: `--c:${c}`, dataset: { kind: "run", run: s.run } }, s.name));
  });
  legend.replaceChildren(...items);
  if (S.chart) { S.chart.destroy(); S.chart = null; }
  host.dataset.bands = String(bands.length);
  host.dataset.series = String(series.length - 1);
  if (!S.tables.length) { host.replaceChildren(h("p", { class: "muted" }, "no runs to draw")); host.dataset.lastX = ""; return; }
  host.replaceChildren();
  const opts = {
    width: Math.max(300, host.clientWidth), height: 320,
    legend: { show: false },
    cursor: { drag: { x: true, y: false } },
    // uPlot widens a log axis to whole decades; a loss between 1.9 and 2.4 would be a flat
    // line in 1–10, so the log range is the data's, a little padded.
    scales: { x: { time: false, distr: S.logx ? 3 : 1 },
      y: S.logy ? { distr: 3, range: (u, lo, hi) => lo > 0 ? [lo / 1.05, hi * 1.05] : [lo, hi] } : { distr: 1 } },
    axes: [{ label: { step: "step", tokens: "tokens", time: "seconds" }[S.x], values: (u, v) => v.map(si) },
      { label: S.metric, size: 60 }],
    series, bands,
    hooks: { draw: [u => markChart(u)] },
  };
  S.chart = new uPlot(opts, uPlot.join(S.tables), host);
}

// Early stopping on the curves: ▲ promoted, ✕ stopped, ○ paused (waiting for its decision).
const MARK = { promoted: "#2f9e44", stopped: "#d6336c", paused: "#868e96" };

function drawMarks(u) {
  const ctx = u.ctx, counts = { promoted: 0, stopped: 0, paused: 0 };
  ctx.save();
  ctx.lineWidth = 2 * devicePixelRatio;
  for (const m of S.marks) {
    if (S.logx && m.x <= 0) continue;
    const px = u.valToPos(m.x, "x", true), py = u.valToPos(m.y, "y", true);
    const r = 5 * devicePixelRatio;
    ctx.strokeStyle = ctx.fillStyle = MARK[m.kind];
    ctx.beginPath();
    if (m.kind === "promoted") {
      ctx.moveTo(px, py - r); ctx.lineTo(px + r, py + r); ctx.lineTo(px - r, py + r); ctx.closePath(); ctx.fill();
    } else if (m.kind === "stopped") {
      ctx.moveTo(px - r, py - r); ctx.lineTo(px + r, py + r); ctx.moveTo(px + r, py - r); ctx.lineTo(px - r, py + r); ctx.stroke();
    } else {
      ctx.arc(px, py, r, 0, 2 * Math.PI); ctx.stroke();
    }
    counts[m.kind]++;
  }
  ctx.restore();
  document.getElementById("curves").dataset.marks = JSON.stringify(counts);
}

function markChart(u) {
  drawMarks(u);
  const host = document.getElementById("curves");
  if (window.xpTimings && window.xpTimings.chart == null) window.xpTimings.chart = performance.now();
  const xs = u.data[0];
  host.dataset.lastX = xs.length ? String(xs[xs.length - 1]) : "";
  host.dataset.points = String(xs.length);
  // Each run's last x, for whoever checks what the chart holds (the browser tests do).
  const last = {};
  for (const [run, e] of Object.entries(S.tableOf)) {
    const x = S.tables[e.raw][0];
    last[run] = x.length ? x[x.length - 1] : null;
  }
  host.dataset.runs = JSON.stringify(last);
}

// What the chart holds per run: its last raw and smoothed values.
window.xpChartTables = () => {
  const out = { raw: {}, smooth: {} };
  for (const [run, e] of Object.entries(S.tableOf)) {
    const raw = S.tables[e.raw][1];
    out.raw[run] = raw[raw.length - 1];
    if (e.smooth != null) { const s = S.tables[e.smooth][1]; out.smooth[run] = s[s.length - 1]; }
  }
  return out;
};

let redraw = 0;
function appendPoints(ev) {
  if (S.grouped) { scheduleRefetch(); return; }
  const entry = S.tableOf[ev.run];
  if (!entry || !S.chart) return;
  const add = (t, line) => {
    const [x, y] = keepX(line.x, line.y);
    S.tables[t][0].push(...x); S.tables[t][1].push(...y);
  };
  add(entry.raw, ev.raw);
  if (entry.smooth != null && ev.smooth) add(entry.smooth, ev.smooth);
  S.lastStep[ev.run] = ev.last_step;
  if (!redraw) redraw = requestAnimationFrame(() => { redraw = 0; S.chart?.setData(uPlot.join(S.tables)); });
}

function scheduleRefetch() {
  if (S.refetch) return;
  S.refetch = setTimeout(() => { S.refetch = null; loadChart(); }, 700);
}

// ---------- live ----------

function connectLive(params, resp) {
  if (S.source) { S.source.close(); S.source = null; }
  const after = resp ? resp.series.map(s => `${s.run}:${s.last_step ?? -1}`).join(",") : "";
  const url = "/api/events?" + qs({ ...params, after });
  const live = document.getElementById("live");
  const src = new EventSource(url);
  S.source = src;
  src.addEventListener("open", () => { live.classList.add("on"); live.textContent = "live"; });
  src.addEventListener("runs", e => {
    const ev = JSON.parse(e.data);
    if (ev.appeared) { loadRuns(); return; }
    for (const row of ev.rows) updateRow(row);
    if (ev.rows.length) drawParcoords();
  });
  src.addEventListener("points", e => appendPoints(JSON.parse(e.data)));
  src.addEventListener("problem", e => {
    document.getElementById("chart-note").textContent = "live: " + JSON.parse(e.data).message;
  });
  src.onerror = () => {
    live.classList.remove("on"); live.textContent = "reconnecting";
    src.close();
    if (S.source !== src) return;
    // Reconnects with the steps the page has now, so nothing arrives twice.
    setTimeout(() => {
      if (S.source !== src) return;
      const fresh = { series: Object.entries(S.lastStep).map(([run, last_step]) => ({ run, last_step })) };
      connectLive(params, S.grouped ? null : fresh);
    }, 1000);
  };
}

// ---------- sweep: parallel coordinates ----------

function axisValue(row, key) {
  return key === "best_val_loss" ? row.best_val_loss : row.swept[key];
}

function parScales() {
  const rows = S.page?.rows || [];
  const keys = [...(S.page?.columns || []), "best_val_loss"];
  const out = {};
  for (const k of keys) {
    const vals = rows.map(r => axisValue(r, k)).filter(v => v != null);
    const numeric = vals.length > 0 && vals.every(v => typeof v === "number");
    if (numeric) {
      const lo = Math.min(...vals), hi = Math.max(...vals);
      const log = lo > 0 && hi / lo >= 20;
      const f = log ? Math.log : (v => v);
      const a = f(lo), b = f(hi);
      out[k] = { key: k, numeric, log, lo, hi,
        t: v => (typeof v !== "number") ? null : (b === a ? 0.5 : (f(v) - a) / (b - a)) };
    } else {
      const cats = [...new Set(vals.map(v => JSON.stringify(v)))].sort();
      out[k] = { key: k, numeric, cats,
        t: v => { const i = cats.indexOf(JSON.stringify(v)); return i < 0 ? null : cats.length === 1 ? 0.5 : i / (cats.length - 1); } };
    }
  }
  return out;
}

const PAR = { top: 34, bottom: 26, left: 50, right: 60 };

function parLayout(canvas) {
  const keys = [...(S.page?.columns || []), "best_val_loss"];
  const w = canvas.clientWidth, hgt = canvas.height;
  const step = keys.length > 1 ? (w - PAR.left - PAR.right) / (keys.length - 1) : 0;
  return { keys, w, hgt, x: i => keys.length > 1 ? PAR.left + i * step : w / 2,
    y: t => PAR.top + (1 - t) * (hgt - PAR.top - PAR.bottom), t: y => 1 - (y - PAR.top) / (hgt - PAR.top - PAR.bottom) };
}

function drawParcoords(drag) {
  const canvas = document.getElementById("parcoords");
  if (!S.page) return;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * dpr;
  canvas.height = 320 * dpr;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const L = parLayout({ clientWidth: canvas.clientWidth, height: 320 });
  const scales = parScales();
  ctx.clearRect(0, 0, L.w, L.hgt);
  const visible = new Set(visibleRows().map(r => r.id));
  const lossScale = scales.best_val_loss;
  const color = r => {
    const t = lossScale?.t(r.best_val_loss);
    if (t == null) return "rgba(140,140,140,0.5)";
    const a = [47, 111, 222], b = [232, 116, 59];
    return `rgba(${a.map((c, i) => Math.round(c + (b[i] - c) * t)).join(",")},0.75)`;
  };
  const line = (r, style, width) => {
    ctx.beginPath();
    let started = false;
    L.keys.forEach((k, i) => {
      const t = scales[k].t(axisValue(r, k));
      if (t == null) { started = false; return; }
      const px = L.x(i), py = L.y(t);
      started ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
      started = true;
    });
    ctx.strokeStyle = style; ctx.lineWidth = width; ctx.stroke();
  };
  for (const r of S.page.rows) if (!visible.has(r.id)) line(r, "rgba(180,180,180,0.25)", 1);
  for (const r of S.page.rows) if (visible.has(r.id)) line(r, color(r), 1.2);
  ctx.font = "11px system-ui, 'DejaVu Sans', sans-serif";
  ctx.fillStyle = "#1d2433";
  L.keys.forEach((k, i) => {
    const x = L.x(i), sc = scales[k];
    ctx.strokeStyle = "#8a93a6"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x, L.y(1)); ctx.lineTo(x, L.y(0)); ctx.stroke();
    ctx.textAlign = "center";
    ctx.fillText(k === "best_val_loss" ? "best val loss" : shortKey(k), x, 14);
    ctx.textAlign = i === L.keys.length - 1 ? "left" : "right";
    const lx = i === L.keys.length - 1 ? x + 5 : x - 5;
    if (sc.numeric) {
      const fmt = v => (k === "best_val_loss" ? loss(v) : show(v));
      ctx.fillText(fmt(sc.hi), lx, L.y(1) + 4);
      if (sc.hi !== sc.lo) ctx.fillText(fmt(sc.lo), lx, L.y(0) + 4);
    } else {
      sc.cats.forEach(c => ctx.fillText(show(JSON.parse(c)), lx, L.y(sc.t(JSON.parse(c))) + 4));
    }
    const b = drag && drag.key === k ? [Math.min(drag.t0, drag.t1), Math.max(drag.t0, drag.t1)] : S.brush[k];
    if (b) {
      ctx.fillStyle = "rgba(47,111,222,0.18)";
      ctx.fillRect(x - 7, L.y(b[1]), 14, L.y(b[0]) - L.y(b[1]));
      ctx.fillStyle = "#1d2433";
    }
  });
}

function setupBrushing() {
  const canvas = document.getElementById("parcoords");
  let drag = null;
  const at = e => {
    const r = canvas.getBoundingClientRect();
    return { px: e.clientX - r.left, py: e.clientY - r.top };
  };
  canvas.addEventListener("mousedown", e => {
    if (!S.page) return;
    const L = parLayout({ clientWidth: canvas.clientWidth, height: 320 });
    const { px, py } = at(e);
    const i = L.keys.findIndex((k, j) => Math.abs(L.x(j) - px) < 14);
    if (i < 0) return;
    const t = Math.min(1, Math.max(0, L.t(py)));
    drag = { key: L.keys[i], t0: t, t1: t, L };
  });
  window.addEventListener("mousemove", e => {
    if (!drag) return;
    drag.t1 = Math.min(1, Math.max(0, drag.L.t(at(e).py)));
    drawParcoords(drag);
  });
  window.addEventListener("mouseup", () => {
    if (!drag) return;
    const { key, t0, t1 } = drag;
    drag = null;
    // Categorical values sit on exact positions: a brush reaches a little past its ends.
    if (Math.abs(t1 - t0) < 0.01) delete S.brush[key];
    else S.brush[key] = [Math.min(t0, t1) - 0.005, Math.max(t0, t1) + 0.005];
    renderTable();
    drawParcoords();
    loadChart();
  });
}

// ---------- a run's page ----------

function dl(target, pairs) {
  document.getElementById(target).replaceChildren(...pairs.filter(p => p[1] != null && p[1] !== "")
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

async function showRun(id) {
  document.getElementById("home").hidden = true;
  const page = document.getElementById("run-page");
  page.hidden = false;
  let run;
  try {
    run = await api(`/api/runs/${id}`);
  } catch (err) {
    document.getElementById("run-title").textContent = err.message;
    return;
  }
  document.getElementById("run-title").textContent = `${run.name} · ${run.experiment}`;
  document.getElementById("run-status").replaceChildren(
    h("span", { class: `status-${run.status}` }, run.status), run.reason ? ` — ${run.reason}` : "",
    ` · step ${run.step}/${run.steps_total}`, run.attempts > 1 ? ` · ${run.attempts} attempts` : "");
  dl("run-summary", [["best val loss", loss(run.best_val_loss) + (run.partial ? " (so far)" : "")],
    ["final val loss", loss(run.final_val_loss)], ["final train loss", loss(run.final_train_loss)],
    ["tokens/s", si(run.tokens_per_s)], ["wall time", duration(run.wall_s)], ["parameters", si(run.params)],
    ["swept", Object.entries(run.swept).map(([k, v]) => `${k}=${show(v)}`).join("  ")]]);
  const p = run.provenance, ex = p.executed || {};
  dl("run-provenance", [["key", run.key], ["manifest", run.manifest_path],
    ["git", p.git_commit ? p.git_commit.slice(0, 12) + (p.git_dirty ? " (with uncommitted changes)" : "") : null],
    ["queued by", `${p.host || "?"} · xp ${p.xp_version}`],
    ["executed", ex.xp_version ? `${ex.host || "?"} (pid ${ex.pid}) · xp ${ex.xp_version} · burn ${ex.burn_version}` : null],
    ["backend", run.backend ? `${run.backend} on ${run.adapter || "?"}` : null],
    ["device", ex.device != null ? `GPU ${ex.device}` : null], ["slurm task", ex.slurm_task],
    ["started", run.started_at], ["finished", run.finished_at]]);
  document.getElementById("settings").tBodies[0].replaceChildren(...run.settings.map(s =>
    h("tr", {}, h("td", {}, s.key), h("td", {}, show(s.value)), h("td", { class: "muted" }, s.layer || ""))));
  const cps = document.getElementById("checkpoints").tBodies[0];
  const sampleBox = document.getElementById("sample-text");
  sampleBox.hidden = true;
  cps.replaceChildren(...run.checkpoints.map(c => h("tr", {},
    h("td", { class: "num" }, c.step), h("td", { class: "num" }, loss(c.val_loss)), h("td", { class: "num" }, si(c.bytes)),
    h("td", { class: "muted" }, c.blake3.slice(0, 16)),
    h("td", {}, !c.present ? h("span", { class: "muted", title: c.path }, "folder not on this machine") : h("button", { onclick: async () => {
      sampleBox.hidden = false; sampleBox.textContent = `sampling from step ${c.step}…`;
      try {
        const s = await api(`/api/runs/${run.id}/sample?` + qs({ checkpoint: c.step }));
        sampleBox.textContent = s.prompt + s.text;
      } catch (err) { sampleBox.textContent = err.message; }
    } }, "sample")))));
  if (!run.checkpoints.length) cps.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "no checkpoints")));
  const others = (S.page ? S.page.rows : (await api("/api/runs")).rows).filter(r => r.id !== run.id);
  const sel = document.getElementById("diff-with");
  const pick = others.find(r => r.experiment === run.experiment) || others[0];
  sel.replaceChildren(...others.map(r => h("option", { value: r.id, selected: r === pick },
    `${r.name} ${Object.entries(r.swept).map(([k, v]) => `${shortKey(k)}=${show(v)}`).join(" ")}`)));
  sel.onchange = () => showDiff(run.id, sel.value);
  if (pick) showDiff(run.id, pick.id);
  else document.getElementById("diff-note").textContent = "no other run to compare with";
}

async function showDiff(a, b) {
  const d = await api("/api/diff?" + qs({ a, b }));
  document.getElementById("diff-a").textContent = d.a;
  document.getElementById("diff-b").textContent = d.b;
  document.getElementById("diff").tBodies[0].replaceChildren(...d.differences.map(x =>
    h("tr", { class: "diff", dataset: { key: x.key } }, h("td", {}, x.key), h("td", {}, show(x.a)),
      h("td", { class: "muted" }, x.a_layer || ""), h("td", {}, show(x.b)), h("td", { class: "muted" }, x.b_layer || ""))));
  document.getElementById("diff-note").textContent =
    `${d.differences.length} of ${d.compared} settings differ`;
}

// ---------- wiring ----------

function route() {
  const m = location.hash.match(/^#\/run\/(?:run-)?(\d+)/);
  if (m) { showRun(Number(m[1])); return; }
  document.getElementById("run-page").hidden = true;
  document.getElementById("home").hidden = false;
  if (S.chart) S.chart.setSize({ width: Math.max(300, document.getElementById("curves").clientWidth), height: 320 });
  drawParcoords();
}

function init() {
  const param = document.getElementById("smooth-param");
  const syncParam = () => {
    const mean = S.smooth === "mean";
    param.min = mean ? 1 : 0; param.max = mean ? 200 : 0.99; param.step = mean ? 1 : 0.01;
    param.hidden = S.smooth === "none";
    document.getElementById("smooth-value").textContent = S.smooth === "none" ? "" : mean ? `${S.param} points` : `weight ${S.param}`;
  };
  document.getElementById("filter").addEventListener("submit", e => {
    e.preventDefault();
    S.where = document.getElementById("where").value.trim();
    loadRuns();
  });
  document.getElementById("group").addEventListener("change", e => { S.group = e.target.value; renderTable(); loadChart(); });
  document.getElementById("metric").addEventListener("change", e => { S.metric = e.target.value; loadChart(); });
  document.getElementById("xaxis").addEventListener("change", e => { S.x = e.target.value; loadChart(); });
  document.getElementById("logx").addEventListener("change", e => { S.logx = e.target.checked; loadChart(); });
  document.getElementById("logy").addEventListener("change", e => { S.logy = e.target.checked; loadChart(); });
  document.getElementById("smooth").addEventListener("change", e => {
    S.smooth = e.target.value;
    S.param = S.smooth === "mean" ? 10 : 0.6;
    param.value = S.param;
    syncParam(); loadChart();
  });
  param.addEventListener("input", () => { S.param = Number(param.value); syncParam(); });
  param.addEventListener("change", () => loadChart());
  syncParam();
  setupBrushing();
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => {
    if (S.chart) S.chart.setSize({ width: Math.max(300, document.getElementById("curves").clientWidth), height: 320 });
    drawParcoords();
  });
  loadRuns().then(route);
}

init();
