// The Monitor's live charts (gr.HTML js_on_load: `element`, `props` and `watch` come from Gradio).
//
// The page holds each metric's points and applies the server's deltas (studio/monitor_charts.py
// documents their shape): a new point is appended with Plotly.extendTraces, and a panel is laid out
// again only when a metric appears or a series is replaced. Memory stays flat: once a series holds
// more than MAX_POINTS, its older points are thinned and the newest RECENT_POINTS stay exact.
// Smoothing (a debiased EMA, as studio/plots.ema) is computed here, so moving the slider costs no
// request. A panel scrolled out of view is not redrawn (a Plotly redraw lays out every subplot of
// the panel, the main cost of a tick); it is drawn once, with all it missed, when it comes back.
const MAX_POINTS = 3000;
const RECENT_POINTS = 1000;
const MARKERS_BELOW = 30; // points drawn with markers while a series is short
const PANEL_IDS = {"GRPO": "monitor-plot-grpo", "Optimisation": "monitor-plot-optimisation",
                   "Timings": "monitor-plot-timings"};

const root = element.querySelector(".vgrpo-charts") || element;
const charts = {runId: null, smoothing: Number(props.smoothing ?? 0.6), panels: {}, series: {}};

function emaFrom(values, weight, acc, n) {
  // -> [smoothed values, acc, n]: s_t = w s_{t-1} + (1 - w) x_t, debiased by 1 - w^n; null stays null.
  const out = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (x === null) { out[i] = null; continue; }
    n += 1;
    acc = weight * acc + (1 - weight) * x;
    out[i] = acc / (1 - Math.pow(weight, n));
  }
  return [out, acc, n];
}

function resmooth(s) {
  if (charts.smoothing > 0) {
    [s.smooth, s.acc, s.n] = emaFrom(s.y, charts.smoothing, 0, 0);
  } else {
    s.smooth = s.y; s.acc = 0; s.n = 0;
  }
}

function bounds(s) {
  let lo = Infinity, hi = -Infinity;
  for (const v of s.y) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

function flatRange(s) {
  // A constant metric (a constant lr) would be zoomed into float rounding noise: give it a range.
  if (!(s.lo <= s.hi)) return null;
  if (s.hi - s.lo > 1e-9 * Math.max(Math.abs(s.hi), Math.abs(s.lo), 1e-12)) return null;
  const pad = Math.abs(s.hi) * 0.5 || 1.0;
  return [s.lo - pad, s.hi + pad];
}

function thinSeries(s) {
  // Keep every other older point, the newest RECENT_POINTS as they are (x, y and the smoothed curve).
  const cut = s.x.length - RECENT_POINTS;
  const keep = (a) => a.filter((_, i) => i >= cut || i % 2 === 0);
  s.x = keep(s.x); s.y = keep(s.y);
  s.smooth = charts.smoothing > 0 ? keep(s.smooth) : s.y;
}

function traces(panel) {
  const out = [];
  for (const m of panel.metrics) {
    const s = charts.series[m.name] || {x: [], y: [], smooth: []};
    const axes = {xaxis: m.xaxis, yaxis: m.yaxis};
    const markers = s.x.length < MARKERS_BELOW ? "lines+markers" : "lines";
    out.push({x: s.x.slice(), y: s.y.slice(), mode: "lines", name: m.name + " (raw)", hoverinfo: "skip",
              line: {color: m.color, width: 1}, opacity: 0.3, visible: charts.smoothing > 0, ...axes});
    out.push({x: s.x.slice(), y: s.smooth.slice(), mode: markers, name: m.name,
              line: {color: m.color, width: 2}, ...axes});
  }
  return out;
}

function layoutOf(panel) {
  const layout = JSON.parse(JSON.stringify(panel.layout));
  for (const m of panel.metrics) {
    const s = charts.series[m.name];
    const range = s ? flatRange(s) : null;
    const key = m.yaxis.replace("y", "yaxis");
    if (range) layout[key] = {...(layout[key] || {}), range: range, autorange: false};
  }
  return layout;
}

const onScreen = new Set();
const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const title = entry.target.dataset.panel;
    if (!entry.isIntersecting) { onScreen.delete(title); continue; }
    onScreen.add(title);
    const panel = charts.panels[title];
    if (panel && panel.stale) draw(title);
  }
}, {rootMargin: "200px"});

function panelDiv(title) {
  let div = root.querySelector(`[data-panel="${title}"]`);
  if (!div) {
    const box = document.createElement("div");
    box.id = PANEL_IDS[title] || ("monitor-plot-" + title.toLowerCase());
    box.className = "vgrpo-panel";
    div = document.createElement("div");
    div.dataset.panel = title;
    box.appendChild(div);
    root.appendChild(box);
    observer.observe(div);
  }
  return div;
}

function draw(title) {
  const panel = charts.panels[title];
  const div = panelDiv(title);
  panel.stale = false;
  panel.drawn = {};
  for (const m of panel.metrics) {
    const s = charts.series[m.name];
    panel.drawn[m.name] = s ? {count: s.x.length, range: JSON.stringify(flatRange(s))} : null;
  }
  panel.everDrawn = true;
  Plotly.react(div, traces(panel), layoutOf(panel), {responsive: true, displaylogo: false});
}

function append(title, added) {
  // added: name -> [new x, new y, new smoothed]; one extendTraces for the panel's touched traces.
  const panel = charts.panels[title];
  const div = panelDiv(title);
  const update = {x: [], y: []}, indices = [];
  for (let i = 0; i < panel.metrics.length; i++) {
    const name = panel.metrics[i].name;
    const a = added[name];
    if (!a) continue;
    update.x.push(a[0], a[0]); update.y.push(a[1], a[2]); indices.push(2 * i, 2 * i + 1);
  }
  if (!indices.length) return;
  // A redraw instead when a series crossed the marker threshold or its flat range changed.
  const redraw = panel.metrics.some((m) => {
    const s = charts.series[m.name], d = panel.drawn[m.name];
    if (!added[m.name] || !s || !d) return false;
    const crossed = (d.count < MARKERS_BELOW) !== (s.x.length < MARKERS_BELOW);
    return crossed || JSON.stringify(flatRange(s)) !== d.range;
  });
  if (redraw) { draw(title); return; }
  for (const m of panel.metrics) if (added[m.name]) panel.drawn[m.name].count = charts.series[m.name].x.length;
  Plotly.extendTraces(div, update, indices);
}

function clear() {
  for (const div of root.querySelectorAll("[data-panel]")) { observer.unobserve(div); Plotly.purge(div); }
  onScreen.clear();
  root.replaceChildren();
  charts.panels = {}; charts.series = {};
}

function apply(delta) {
  if (delta.reset) { clear(); charts.runId = delta.run_id; }
  else if (delta.run_id !== charts.runId) return; // a late delta of the run shown before
  const redraw = new Set(), added = {};
  for (const [title, panel] of Object.entries(delta.panels || {})) {
    charts.panels[title] = {layout: panel.layout, metrics: panel.metrics, drawn: {}};
    redraw.add(title);
  }
  const panelOf = {};
  for (const [title, panel] of Object.entries(charts.panels)) for (const m of panel.metrics) panelOf[m.name] = title;
  for (const [name, p] of Object.entries(delta.points || {})) {
    let s = charts.series[name];
    if (p.replace || !s) {
      s = charts.series[name] = {x: p.steps.slice(), y: p.values.slice()};
      resmooth(s);
      [s.lo, s.hi] = bounds(s);
      if (panelOf[name]) redraw.add(panelOf[name]);
      continue;
    }
    // Append only steps after the last one held: a delta applied twice or late changes nothing.
    const last = s.x.length ? s.x[s.x.length - 1] : -Infinity;
    let from = 0;
    while (from < p.steps.length && p.steps[from] <= last) from++;
    if (from === p.steps.length) continue;
    const x = p.steps.slice(from), y = p.values.slice(from);
    let smooth = y;
    if (charts.smoothing > 0) [smooth, s.acc, s.n] = emaFrom(y, charts.smoothing, s.acc, s.n);
    s.x.push(...x); s.y.push(...y);
    if (charts.smoothing > 0) s.smooth.push(...smooth);
    for (const v of y) if (v !== null) { s.lo = Math.min(s.lo, v); s.hi = Math.max(s.hi, v); }
    if (s.x.length > MAX_POINTS) { thinSeries(s); if (panelOf[name]) redraw.add(panelOf[name]); continue; }
    const title = panelOf[name];
    if (title && !redraw.has(title)) (added[title] = added[title] || {})[name] = [x, y, smooth];
  }
  for (const title of Object.keys(charts.panels)) {
    const panel = charts.panels[title];
    // A panel never drawn is drawn now, wherever it is: its size and place come from its layout.
    const seen = onScreen.has(title) || !root.querySelector(`[data-panel="${title}"]`) || !panel.everDrawn;
    if (!redraw.has(title) && !added[title]) continue;
    if (!seen) { panel.stale = true; continue; }
    if (redraw.has(title) || panel.stale) draw(title);
    else append(title, added[title]);
  }
  root.dataset.runId = String(charts.runId);
  root.dataset.lastStep = String(Math.max(-1, ...Object.values(charts.series).map((s) => s.x[s.x.length - 1] ?? -1)));
}

function setSmoothing(weight) {
  charts.smoothing = Math.min(0.99, Math.max(0, Number(weight) || 0));
  for (const s of Object.values(charts.series)) resmooth(s);
  for (const title of Object.keys(charts.panels)) draw(title);
}

function applyValue() {
  if (!props.value) return;
  try {
    apply(JSON.parse(props.value));
  } catch (err) {
    console.error("monitor charts: delta not applied", err);
  }
}

// The slider's change reaches the page by this handle (studio/tabs/monitor.py wires it in JS).
root.vgrpoCharts = {setSmoothing, state: charts};
watch("value", applyValue);
applyValue();
