// The Monitor's live part (gr.HTML js_on_load: `element`, `props`, `server`, `trigger` and `watch`
// come from Gradio): the progress line and the charts of the run the component's value names.
//
// Every REFRESH_MS, while the component is on screen, the page is visible and the run is queued or
// running, it asks the server (studio/tabs/monitor.py MonitorHandlers.poll, a plain request) for what
// it lacks, saying what it holds; a new value (another run, Refresh, Abort, Resume) asks at once.
// When a poll's `news` changed (status, the open log) or new rollouts came (at most every
// ROLLOUT_NEWS_MS), it fires the component's change event and the Gradio side reads those.
//
// The page holds each metric's points and applies the server's deltas (studio/monitor_charts.py
// documents their shape). Each metric is a small Plotly chart of two traces (raw, faint; smoothed);
// a poll's new points are appended with Plotly.extendTraces, and only to the charts on screen: a
// chart scrolled out of view is drawn once, with all it missed, when it comes back (a Plotly
// redraw is the main cost of a poll). Memory stays flat: once a series holds more than MAX_POINTS,
// its older points are thinned and the newest RECENT_POINTS stay exact. Smoothing (a debiased EMA,
// as studio/plots.ema) is computed here, so moving the slider costs no request.
const MAX_POINTS = 3000;
const RECENT_POINTS = 1000;
const MARKERS_BELOW = 30; // points drawn with markers while a series is short
const CHART_HEIGHT = 240;
const PANEL_IDS = {"GRPO": "monitor-plot-grpo", "Optimisation": "monitor-plot-optimisation",
                   "Timings": "monitor-plot-timings"};
const CONFIG = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"]};

const REFRESH_MS = Number(props.refresh_ms || 5000);
const ROLLOUT_NEWS_MS = Number(props.rollout_news_ms || 15000);
const root = element.querySelector(".vgrpo-charts") || element;
const progress = element.querySelector(".vgrpo-progress");
// series: name -> {x, y, smooth, acc, n, lo, hi}; charts: name -> {div, color, drawn, stale}.
const state = {runId: null, attempt: null, active: true, news: null, rollouts: null, rolloutsAt: 0,
               smoothing: Number(props.smoothing ?? 0.6), series: {}, charts: {}};
const onScreen = new Set();

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

// Held-out evaluations (eval/*) are drawn as they are: each point is a whole evaluation, not a noisy
// sample, and an EMA over a handful of sparse points lagged the truth (1.00 shown as 0.85).
const isExact = (name) => name.startsWith("eval/");
const weightOf = (s) => (s.exact ? 0 : state.smoothing);

function resmooth(s) {
  if (weightOf(s) > 0) [s.smooth, s.acc, s.n] = emaFrom(s.y, weightOf(s), 0, 0);
  else { s.smooth = s.y; s.acc = 0; s.n = 0; }
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
  s.smooth = weightOf(s) > 0 ? keep(s.smooth) : s.y;
}

function draw(name) {
  const chart = state.charts[name], s = state.series[name];
  if (!chart || !s) return;
  const range = flatRange(s);
  const data = [
    {x: s.x.slice(), y: s.y.slice(), mode: "lines", name: name + " (raw)", hoverinfo: "skip",
     line: {color: chart.color, width: 1}, opacity: 0.3, visible: weightOf(s) > 0},
    {x: s.x.slice(), y: s.smooth.slice(), mode: s.x.length < MARKERS_BELOW ? "lines+markers" : "lines",
     name: name, line: {color: chart.color, width: 2}},
  ];
  const layout = {
    title: {text: name, font: {size: 12}, x: 0.5}, height: CHART_HEIGHT, showlegend: false,
    margin: {l: 50, r: 15, t: 30, b: 35}, template: "plotly_white",
    xaxis: {title: {text: "step", font: {size: 10}}},
    yaxis: {tickformat: ".4~g", automargin: true, ...(range ? {range: range, autorange: false} : {})},
  };
  chart.drawn = {count: s.x.length, range: JSON.stringify(range)};
  chart.stale = false;
  Plotly.react(chart.div, data, layout, CONFIG);
}

function extend(name, x, y, smooth) {
  const chart = state.charts[name], s = state.series[name];
  const crossed = (chart.drawn.count < MARKERS_BELOW) !== (s.x.length < MARKERS_BELOW);
  if (crossed || JSON.stringify(flatRange(s)) !== chart.drawn.range) { draw(name); return; }
  chart.drawn.count = s.x.length;
  Plotly.extendTraces(chart.div, {x: [x, x], y: [y, smooth]}, [0, 1]);
}

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const name = entry.target.dataset.metric;
    if (!entry.isIntersecting) { onScreen.delete(name); continue; }
    onScreen.add(name);
    if (state.charts[name] && state.charts[name].stale) draw(name);
  }
}, {rootMargin: "0px"});

function panelBox(title) {
  const id = PANEL_IDS[title] || ("monitor-plot-" + title.toLowerCase());
  let box = root.querySelector(`#${id}`);
  if (!box) {
    box = document.createElement("div");
    box.id = id;
    box.className = "vgrpo-panel";
    box.innerHTML = '<h3 class="vgrpo-panel-title"></h3><div class="vgrpo-waiting"></div>'
      + '<div class="vgrpo-grid"></div>';
    box.querySelector("h3").textContent = title;
    root.appendChild(box);
  }
  return box;
}

function layOut(title, panel) {
  // The panel's charts in its order: new ones created (drawn when on screen), gone ones removed.
  const box = panelBox(title), grid = box.querySelector(".vgrpo-grid");
  box.querySelector(".vgrpo-waiting").textContent = panel.waiting || "";
  const wanted = new Set(panel.metrics.map((m) => m.name));
  for (const div of Array.from(grid.children)) {
    if (wanted.has(div.dataset.metric)) continue;
    observer.unobserve(div); Plotly.purge(div); div.remove();
    delete state.charts[div.dataset.metric];
  }
  for (const m of panel.metrics) {
    let chart = state.charts[m.name];
    if (!chart) {
      const div = document.createElement("div");
      div.className = "vgrpo-chart";
      div.dataset.metric = m.name;
      chart = state.charts[m.name] = {div: div, color: m.color, drawn: null, stale: true};
      observer.observe(div);
    }
    chart.color = m.color;
    grid.appendChild(chart.div); // appending an existing child moves it into the panel's order
  }
}

function clear() {
  for (const chart of Object.values(state.charts)) { observer.unobserve(chart.div); Plotly.purge(chart.div); }
  root.replaceChildren();
  onScreen.clear();
  state.series = {}; state.charts = {};
}

function lastStep() {
  const lasts = Object.values(state.series).map((s) => (s.x.length ? s.x[s.x.length - 1] : -1));
  return lasts.length ? Math.max(...lasts) : null;
}

function apply(delta) {
  if (delta.reset) clear();
  for (const [title, panel] of Object.entries(delta.panels || {})) layOut(title, panel);
  const redraw = new Set(), added = {};
  for (const [name, p] of Object.entries(delta.points || {})) {
    let s = state.series[name];
    if (!s) {
      s = state.series[name] = {x: p.steps.slice(), y: p.values.slice(), lo: Infinity, hi: -Infinity,
                                exact: isExact(name)};
      for (const v of s.y) if (v !== null) { s.lo = Math.min(s.lo, v); s.hi = Math.max(s.hi, v); }
      resmooth(s);
      redraw.add(name);
      continue;
    }
    // Append only steps after the last one held: a delta applied twice or late changes nothing.
    const last = s.x.length ? s.x[s.x.length - 1] : -Infinity;
    let from = 0;
    while (from < p.steps.length && p.steps[from] <= last) from++;
    if (from === p.steps.length) continue;
    const x = p.steps.slice(from), y = p.values.slice(from);
    let smooth = y;
    if (weightOf(s) > 0) [smooth, s.acc, s.n] = emaFrom(y, weightOf(s), s.acc, s.n);
    s.x.push(...x); s.y.push(...y);
    if (weightOf(s) > 0) s.smooth.push(...smooth);
    for (const v of y) if (v !== null) { s.lo = Math.min(s.lo, v); s.hi = Math.max(s.hi, v); }
    if (s.x.length > MAX_POINTS) { thinSeries(s); redraw.add(name); continue; }
    added[name] = [x, y, smooth];
  }
  for (const [name, chart] of Object.entries(state.charts)) {
    const changed = redraw.has(name) || added[name];
    if (!changed && !(chart.stale && onScreen.has(name))) continue;
    if (!onScreen.has(name)) { chart.stale = true; continue; }
    if (chart.stale || !chart.drawn || redraw.has(name)) draw(name);
    else extend(name, ...added[name]);
  }
}

function setSmoothing(weight) {
  state.smoothing = Math.min(0.99, Math.max(0, Number(weight) || 0));
  for (const s of Object.values(state.series)) resmooth(s);
  for (const [name, chart] of Object.entries(state.charts)) {
    if (onScreen.has(name)) draw(name); else chart.stale = true;
  }
}

function shown() {
  // Another tab, a closed window or a minimised one: no request.
  return !document.hidden && element.isConnected && element.offsetParent !== null;
}

function logOpen() {
  const log = document.querySelector("#monitor-log");
  return !!(log && log.offsetParent !== null);
}

let inFlight = false, again = false;
async function poll(force) {
  if (state.runId === null) return;
  if (!force && (!shown() || !state.active)) return;
  if (inFlight) { again = again || force; return; }
  inFlight = true;
  const runId = state.runId;
  try {
    const answer = await server.poll({run_id: runId, attempt: state.attempt, last_step: lastStep(),
                                      metrics: Object.keys(state.series), log_open: logOpen()});
    if (runId !== state.runId) return; // another run was picked meanwhile
    if (answer.error) { state.active = false; trigger("change"); return; }
    if (answer.attempt !== state.attempt) { clear(); state.attempt = answer.attempt; }
    if (answer.delta) apply(answer.delta);
    if (progress.innerHTML !== answer.progress) progress.innerHTML = answer.progress;
    state.active = answer.active;
    root.dataset.runId = String(runId);
    root.dataset.lastStep = String(lastStep() ?? -1);
    // The Gradio side reads the status, log and rollouts when they changed (new rollouts at most
    // every ROLLOUT_NEWS_MS, and always with a status change).
    const now = Date.now();
    const newRollouts = answer.rollouts !== state.rollouts && now - state.rolloutsAt >= ROLLOUT_NEWS_MS;
    if (answer.news !== state.news || newRollouts) {
      if (answer.rollouts !== state.rollouts) { state.rollouts = answer.rollouts; state.rolloutsAt = now; }
      state.news = answer.news;
      trigger("change");
    }
  } catch (err) {
    console.error("monitor: poll failed", err);
  } finally {
    inFlight = false;
    if (again) { again = false; poll(true); }
  }
}

function show(value) {
  let picked;
  try { picked = JSON.parse(value || "{}"); } catch (err) { picked = {}; }
  const runId = picked.run_id ?? null;
  if (runId !== state.runId) {
    clear();
    Object.assign(state, {runId: runId, attempt: null, news: null, rollouts: null, rolloutsAt: 0});
    progress.innerHTML = props.empty_progress || "";
    delete root.dataset.lastStep;
  }
  state.active = true; // until a poll says otherwise: a resumed run is active again
  poll(true);
}

// Back on screen (the Monitor tab selected again, the window restored): ask at once.
new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) poll(false); })
  .observe(element);
document.addEventListener("visibilitychange", () => poll(false));
setInterval(() => poll(false), REFRESH_MS);

// The slider and the Refresh button reach the page through this handle (studio/tabs/monitor.py).
root.vgrpoCharts = {setSmoothing, poll, state};
watch("value", () => show(props.value));
show(props.value);
