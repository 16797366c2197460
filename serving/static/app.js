// Live dashboard: polls the public API every few seconds; no external assets.
"use strict";
const REFRESH_MS = 3000;
// When the API wants a bearer token (LAMBDA_API_TOKEN), the user enters it once per tab:
// sessionStorage keeps it for this tab only, and it goes out only to this origin's /v1.
const TOKEN_KEY = "lambda.apiToken";

function apiHeaders() {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

class Unauthorized extends Error {}

async function getJSON(url) {
  const response = await fetch(url, { headers: apiHeaders() });
  if (response.status === 401) throw new Unauthorized("the API needs a valid token");
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function setupTokenForm() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  input.value = sessionStorage.getItem(TOKEN_KEY) ?? "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    refresh();
  });
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// The merge panel: each window's batch part and speed part (GET /v1/totals/merge) as stacked
// bars (uPlot, vendored), the batch horizon as a vertical line, the numbers in a table.
const BATCH_COLOUR = "#2f5d8a";
const SPEED_COLOUR = "#9ecae9";
const HORIZON_COLOUR = "#c0392b";
// Series of no fixed meaning (reason labels, partitions).
const PALETTE = ["#c0392b", "#e67e22", "#8e44ad", "#16a085", "#7f8c8d", "#2c3e50"];
const MERGE_KEY = "lambda.mergeRange";
let mergeChart = null;
let mergeHorizonSec = null;

function mergeRange() {
  const select = document.getElementById("merge-range");
  const saved = sessionStorage.getItem(MERGE_KEY);
  if (saved && [...select.options].some((o) => o.value === saved)) select.value = saved;
  const [spanMs, granularity] = select.value.split(":");
  const size = granularity === "hour" ? 3600000 : 60000;
  const endMs = Math.ceil(Date.now() / size) * size;
  return { startMs: endMs - Number(spanMs), endMs, granularity, size };
}

function drawHorizon(u) {
  if (mergeHorizonSec === null) return;
  const [min, max] = [u.scales.x.min, u.scales.x.max];
  if (mergeHorizonSec < min || mergeHorizonSec > max) return;
  const x = u.valToPos(mergeHorizonSec, "x", true);
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = HORIZON_COLOUR;
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.beginPath();
  ctx.moveTo(x, u.bbox.top);
  ctx.lineTo(x, u.bbox.top + u.bbox.height);
  ctx.stroke();
  ctx.restore();
}

function mergeChartFor(container) {
  const bars = uPlot.paths.bars({ size: [0.85, 40], align: 1 });
  return new uPlot({
    width: Math.max(320, container.clientWidth - 2),
    height: 300,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    series: [
      { label: "window (UTC)", value: (u, v) => v === null ? "—" : new Date(v * 1000).toISOString().slice(0, 16).replace("T", " ") },
      // Drawn first: the whole bar, in the speed colour; the batch part is drawn over it.
      { label: "total (speed part on top)", stroke: SPEED_COLOUR, fill: SPEED_COLOUR, paths: bars, points: { show: false } },
      { label: "batch part", stroke: BATCH_COLOUR, fill: BATCH_COLOUR, paths: bars, points: { show: false } },
    ],
    axes: [{}, { label: "payments" }],
    hooks: { draw: [drawHorizon] },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
  }, [[], [], []], container);
}

function drawMerge(merge, range) {
  const container = document.getElementById("merge-chart");
  mergeChart ??= mergeChartFor(container);
  const points = merge.points;
  mergeHorizonSec = merge.meta.batch_horizon_ms === null ? null : merge.meta.batch_horizon_ms / 1000;
  mergeChart.batch(() => {
    mergeChart.setData([
      points.map((p) => p.window_start_ms / 1000),
      points.map((p) => p.count),
      points.map((p) => p.batch.count),
    ]);
    mergeChart.setScale("x", { min: range.startMs / 1000, max: range.endMs / 1000 });
  });
  const panel = document.getElementById("merge");
  Object.assign(panel.dataset, {
    start: range.startMs, end: range.endMs, granularity: range.granularity,
    horizon: merge.meta.batch_horizon_ms ?? "", version: merge.meta.batch_version ?? "",
  });
  document.getElementById("merge-rows").tBodies[0].replaceChildren(...points.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.window = p.window_start_ms;
    tr.append(cell(p.window_start.slice(0, 16).replace("T", " "), "window"),
      cell(p.batch.count, "batch"), cell(p.speed.count, "speed"), cell(p.count, "count"),
      cell(p.sum, "sum"));
    return tr;
  }));
  const side = (key) => points.reduce((sum, p) => sum + p[key].count, 0);
  document.getElementById("merge-meta").textContent =
    `batch version ${merge.meta.batch_version ?? "none yet"} · horizon ${merge.meta.batch_horizon ?? "—"} · ` +
    `${side("batch")} events from batch + ${side("speed")} from speed in ${points.length} windows`;
}

function drawTop(top) {
  const body = document.querySelector("#top tbody");
  body.replaceChildren();
  for (const a of top.accounts) {
    const row = document.createElement("tr");
    row.append(cell(a.account_id), cell(a.count), cell(a.sum));
    body.append(row);
  }
}

// The views panel: the views GET /v1/views lists; the chosen one queried generically.
const VIEW_KEY = "lambda.view";
const DAY_MS = 86400 * 1000;

function fillViewSelect(views) {
  const select = document.getElementById("view-select");
  const names = [...new Set(views.map((v) => v.name))];
  if (select.options.length !== names.length ||
      names.some((n, i) => select.options[i].value !== n)) {
    select.replaceChildren(...names.map((n) => new Option(n, n)));
  }
  const saved = sessionStorage.getItem(VIEW_KEY);
  if (saved && names.includes(saved)) select.value = saved;
  return select.value;
}

function viewQuery(view, startMs, endMs) {
  const params = new URLSearchParams({ start: startMs, end: endMs, limit: "10" });
  const dims = view.definition.dimensions;
  if (dims.length > 0) {
    params.set("group_by", dims[0]);
    params.set("order_by", view.definition.measures[0].replace(/^distinct\((.*)\)$/, "distinct_$1"));
  } else {
    params.set("granularity", view.definition.window === "minute" ? "hour" : view.definition.window);
    params.set("limit", "24");
  }
  return params;
}

function drawRows(rows, tableId = "view-rows") {
  const table = document.getElementById(tableId);
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const head = document.createElement("tr");
  for (const c of columns) {
    const th = document.createElement("th");
    th.textContent = c;
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    for (const c of columns) {
      const td = document.createElement("td");
      td.textContent = c === "window_start" ? new Date(r[c]).toISOString().slice(0, 16).replace("T", " ") : r[c];
      tr.append(td);
    }
    return tr;
  }));
}

async function refreshViews(endMs) {
  const listed = (await getJSON("/v1/views")).views;
  fillExplore(listed);
  const name = fillViewSelect(listed);
  const versions = listed.filter((v) => v.name === name);
  const view = versions.find((v) => v.answering) ?? versions[0];
  if (!view) return;
  const states = versions.map((v) => `${v.version} ${v.state}` +
    (v.state === "building" ? ` ${Math.round(v.progress * 100)} % (waiting for ${v.waiting_for})` : ""));
  const response = await fetch(`/v1/views/${name}?${viewQuery(view, endMs - DAY_MS, endMs)}`,
    { headers: apiHeaders() });
  const body = await response.json();
  const meta = document.getElementById("view-meta");
  if (response.status === 409) {
    drawRows([]);
    meta.textContent = `${name}: building, ${Math.round(body.progress * 100)} % — ${body.waiting_for}`;
  } else if (response.ok) {
    drawRows(body.rows);
    meta.textContent = `${name} · answered by version ${body.meta.view_version} · ` +
      `${body.meta.events_from_batch} events from batch + ${body.meta.events_from_speed} from speed · ` +
      `versions: ${states.join(", ")}`;
  } else {
    meta.textContent = `${name}: error ${response.status}`;
  }
  document.body.dataset.viewsLoaded = "true";
}

// The batch-runs panel: the latest publishes (GET /v1/batch/runs), linked to the Airflow UI.
function minutes(ms) {
  return ms % 60000 === 0 ? `${ms / 60000} min` : `${(ms / 60000).toFixed(1)} min`;
}

function drawRuns(answer) {
  document.getElementById("runs-pinned").textContent = answer.pinned
    ? `CURRENT is pinned to ${answer.current_version} by a rollback: runs compute but do not publish (lambda-batch resume).`
    : "";
  document.getElementById("runs").dataset.pinned = answer.pinned;
  document.getElementById("runs-rows").tBodies[0].replaceChildren(...answer.runs.map((run) => {
    const tr = document.createElement("tr");
    tr.dataset.version = run.version;
    const link = document.createElement("td");
    if (run.airflow_run_url) {
      const a = document.createElement("a");
      a.href = run.airflow_run_url;
      a.textContent = "Airflow";
      a.target = "_blank";
      a.rel = "noopener";
      link.append(a);
    }
    const drift = run.drift_events === null ? "—" : `${run.drift_events} (${run.drift_amount})`;
    tr.append(
      cell((run.current ? "★ " : "") + run.version, "version"),
      cell(run.published_at.slice(11, 19), "published"),
      cell(run.horizon.slice(11, 19), "horizon"),
      cell(run.previous_horizon_ms === 0 ? "all history" : minutes(run.increment_ms), "increment"),
      cell(run.batch_events, "events"),
      cell(drift, "drift"),
      cell(run.mode ?? "deleted", "mode"),
      cell(run.elapsed_s === null ? "—" : `${run.elapsed_s.toFixed(1)} s`, "took"),
      link,
    );
    return tr;
  }));
}

// The time panel (GET /v1/freshness/history): seconds behind each sample, publishes marked.
const CLOCKS = [["speed watermark", "speed_watermark_ms", "#2e86c1"],
  ["landing watermark", "landing_watermark_ms", "#27ae60"], ["batch horizon", "batch_horizon_ms", "#2f5d8a"]];
let timeChart = null;
let lagChart = null;
let lagPartitions = "";
let publishesSec = [];

function drawPublishes(u) {
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = HORIZON_COLOUR;
  ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
  for (const at of publishesSec) {
    if (at < u.scales.x.min || at > u.scales.x.max) continue;
    const x = u.valToPos(at, "x", true);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
  }
  ctx.restore();
}

function lineChart(container, series, height, yLabel) {
  return new uPlot({
    width: Math.max(320, container.clientWidth - 2),
    height,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    series: [{ label: "time (UTC)" }, ...series.map(([label, colour]) => ({ label, stroke: colour, width: 2 }))],
    axes: [{}, { label: yLabel }],
    hooks: { draw: [drawPublishes] },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
  }, [[], ...series.map(() => [])], container);
}

function drawTime(history) {
  const samples = history.samples;
  publishesSec = history.publishes.map((p) => p.published_at_ms / 1000);
  const xs = samples.map((s) => s.at_ms / 1000);
  const behind = (s, key) => s[key] === null ? null : Math.max(0, (s.at_ms - s[key]) / 1000);
  timeChart ??= lineChart(document.getElementById("time-chart"),
    CLOCKS.map(([label, , colour]) => [label, colour]), 200, "seconds behind");
  const hour = { min: Date.now() / 1000 - 3600, max: Date.now() / 1000 };
  timeChart.batch(() => {
    timeChart.setData([xs, ...CLOCKS.map(([, key]) => samples.map((s) => behind(s, key)))]);
    timeChart.setScale("x", hour);
  });
  const partitions = [...new Set(samples.flatMap((s) => Object.keys(s.lag)))].sort((a, b) => a - b);
  if (lagChart === null || lagPartitions !== partitions.join()) {
    lagChart?.destroy();
    lagPartitions = partitions.join();
    lagChart = lineChart(document.getElementById("lag-chart"),
      partitions.map((p, i) => [`partition ${p}`, PALETTE[i % PALETTE.length]]), 140, "lag (records)");
  }
  lagChart.batch(() => {
    lagChart.setData([xs, ...partitions.map((p) => samples.map((s) => s.lag[p] ?? null))]);
    lagChart.setScale("x", hour);
  });
  const panel = document.getElementById("time");
  panel.dataset.samples = samples.length;
  panel.dataset.publishes = history.publishes.map((p) => p.version).join(" ");
  const last = samples.at(-1);
  document.getElementById("time-meta").textContent = last === undefined
    ? (history.sample_s ? "no sample yet" : "sampling is off (LAMBDA_API_HISTORY_SAMPLE_S=0)")
    : `${samples.length} samples every ${history.sample_s} s · now: ` + CLOCKS.map(([label, key]) =>
      `${label} ${behind(last, key)?.toFixed(1) ?? "—"} s behind`).join(" · ") +
      ` · ${history.publishes.length} publish(es) in the hour`;
}

// The consumer-group panel (GET /v1/speed/group).
function drawGroup(group) {
  const members = group.members.map((m) => `${m.client_id} owns [${m.partitions.join(", ")}]`);
  document.getElementById("group-meta").textContent = group.state === null
    ? `group ${group.group}: the broker cannot be reached`
    : `group ${group.group} · ${group.state} · ${members.length} member(s): ${members.join(" · ") || "none"}`;
  document.getElementById("group").dataset.members = group.members.length;
  document.getElementById("group-partitions").tBodies[0].replaceChildren(...group.partitions.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.partition = p.partition;
    tr.dataset.state = p.state;
    const state = cell(p.reason ? `${p.state}: ${p.reason}` : p.state, `state state-${p.state}`);
    tr.append(cell(p.partition, "partition"), cell(p.owner ?? "—", "owner"),
      cell(p.stored_offset, "stored"), cell(p.end_offset ?? "—", "end"), cell(p.lag ?? "—", "lag"),
      state);
    return tr;
  }));
}

// The rejects panel (GET /v1/speed/rejects): dead letters per minute, stacked by reason label.
const REJECTS_SHOWN = 10;
let rejectsChart = null;
let rejectsLabels = "";

function drawRejects(answer) {
  const labels = [...new Set(answer.by_minute.flatMap((m) => Object.keys(m.counts)))].sort();
  const container = document.getElementById("rejects-chart");
  if (rejectsChart === null || rejectsLabels !== labels.join()) {
    // Stacked: each label's series is its count plus the labels after it, drawn first.
    rejectsChart?.destroy();
    rejectsLabels = labels.join();
    const bars = uPlot.paths.bars({ size: [0.85, 20], align: 1 });
    rejectsChart = new uPlot({
      width: Math.max(320, container.clientWidth - 2),
      height: 180,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{ label: "minute (UTC)" }, ...labels.map((label, i) => ({
        label, stroke: PALETTE[i % PALETTE.length],
        fill: PALETTE[i % PALETTE.length], paths: bars, points: { show: false },
      }))],
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    }, [[], ...labels.map(() => [])], container);
  }
  const now = Date.now();
  const minutes = answer.by_minute;
  rejectsChart.batch(() => {
    rejectsChart.setData([
      minutes.map((m) => m.minute_ms / 1000),
      ...labels.map((_, i) => minutes.map((m) =>
        labels.slice(i).reduce((sum, l) => sum + (m.counts[l] ?? 0), 0))),
    ]);
    rejectsChart.setScale("x", { min: (now - 3600000) / 1000, max: (now + 60000) / 1000 });
  });
  const total = minutes.reduce((sum, m) =>
    sum + Object.values(m.counts).reduce((a, b) => a + b, 0), 0);
  document.getElementById("rejects").dataset.total = total;
  document.getElementById("rejects-meta").textContent = !answer.reachable
    ? `${answer.dlq_topic}: the broker cannot be reached`
    : `${total} rejected in the last hour (${answer.dlq_topic})` +
      (answer.caught_up ? "" : " · still reading the backlog");
  const shown = answer.latest.slice(0, REJECTS_SHOWN);
  document.getElementById("rejects-latest").tBodies[0].replaceChildren(...shown.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.partition = r.partition ?? "";
    tr.dataset.offset = r.offset ?? "";
    tr.append(cell(r.rejected_at.slice(11, 19), "rejected"), cell(r.reason, "reason"),
      cell(r.partition ?? "—", "partition"), cell(r.offset ?? "—", "offset"),
      cell(r.preview, "preview"));
    return tr;
  }));
}

// The explore panel: any serving view, keys, range and granularity; the answer beside its meta.
const WINDOW_ORDER = ["minute", "hour", "day"];
let exploreViews = [];

function utcInput(ms) {
  return new Date(ms).toISOString().slice(0, 16);
}

function exploreView() {
  const name = document.getElementById("explore-view").value;
  return exploreViews.find((v) => v.name === name && v.answering) ??
    exploreViews.find((v) => v.name === name);
}

function fillExplore(views) {
  exploreViews = views;
  const select = document.getElementById("explore-view");
  const names = [...new Set(views.map((v) => v.name))];
  if (select.options.length !== names.length ||
      names.some((n, i) => select.options[i].value !== n)) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => new Option(n, n)));
    select.value = names.includes(chosen) ? chosen : (names.includes("account_minute") ? "account_minute" : names[0]);
    exploreKeys();
  }
  const start = document.getElementById("explore-start");
  const end = document.getElementById("explore-end");
  if (!start.value || !end.value) {
    const hour = Math.ceil(Date.now() / 3600000) * 3600000;
    start.value = utcInput(hour - DAY_MS);
    end.value = utcInput(hour);
  }
}

// One input per dimension of the chosen view; granularities finer than its window disabled.
function exploreKeys() {
  const view = exploreView();
  if (!view) return;
  document.getElementById("explore-keys").replaceChildren(...view.definition.dimensions.flatMap((d) => {
    const label = document.createElement("label");
    label.htmlFor = `explore-key-${d}`;
    label.textContent = d;
    const input = document.createElement("input");
    input.id = `explore-key-${d}`;
    input.dataset.dimension = d;
    input.placeholder = "any";
    input.size = 12;
    return [label, input];
  }));
  const least = WINDOW_ORDER.indexOf(view.definition.window);
  const granularity = document.getElementById("explore-granularity");
  for (const option of granularity.options) option.disabled = WINDOW_ORDER.indexOf(option.value) < least;
  if (granularity.selectedOptions[0].disabled) granularity.value = view.definition.window;
}

function metaEntries(view, body) {
  const m = body.meta;
  return [["view version", `${view.name} @ ${m.view_version ?? body.version}`],
    ["batch version", m.batch_version ?? "none yet"], ["batch horizon (ingest)", m.batch_horizon ?? "—"],
    ["speed watermark", m.speed_watermark ?? "—"],
    ["events", `${m.events_from_batch} from batch + ${m.events_from_speed} from speed`],
    ["as of", m.as_of]];
}

async function refreshExplore() {
  const view = exploreView();
  const start = document.getElementById("explore-start").value;
  const end = document.getElementById("explore-end").value;
  if (!view || !start || !end) return;
  const params = new URLSearchParams({
    start: `${start}:00Z`, end: `${end}:00Z`,
    granularity: document.getElementById("explore-granularity").value, limit: "1000",
  });
  for (const input of document.querySelectorAll("#explore-keys input")) {
    if (input.value.trim()) params.set(input.dataset.dimension, input.value.trim());
  }
  const response = await fetch(`/v1/views/${view.name}?${params}`, { headers: apiHeaders() });
  const body = await response.json();
  const panel = document.getElementById("explore");
  panel.dataset.query = params.toString();
  panel.dataset.status = response.status;
  const meta = document.getElementById("explore-meta");
  if (!response.ok) {
    drawRows([], "explore-rows");
    const why = response.status === 409
      ? `building, ${Math.round(body.progress * 100)} % — ${body.waiting_for}`
      : JSON.stringify(body.detail ?? body);
    meta.replaceChildren(...definitionList([["error " + response.status, why]]));
    return;
  }
  drawRows(body.rows, "explore-rows");
  meta.replaceChildren(...definitionList(metaEntries(view, body)));
}

function definitionList(entries) {
  return entries.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  });
}

async function refresh() {
  const range = mergeRange();
  const span = `start=${range.startMs}&end=${range.endMs}`;
  try {
    const [merge, top, fresh, runs, group, rejects, history] = await Promise.all([
      getJSON(`/v1/totals/merge?${span}&granularity=${range.granularity}`),
      getJSON(`/v1/top-accounts?${span}&by=sum&limit=10`),
      getJSON("/v1/freshness"),
      getJSON("/v1/batch/runs?limit=10"),
      getJSON("/v1/speed/group"),
      getJSON("/v1/speed/rejects"),
      getJSON("/v1/freshness/history"),
    ]);
    drawMerge(merge, range);
    drawTop(top);
    drawRuns(runs);
    drawGroup(group);
    drawRejects(rejects);
    drawTime(history);
    const lag = fresh.speed_lag.reduce((sum, p) => sum + (p.lag ?? 0), 0);
    document.getElementById("freshness").textContent =
      `batch version ${fresh.batch_version ?? "none yet"} · horizon (ingest time) ${fresh.batch_horizon ?? "—"} · ` +
      `landing watermark ${fresh.landing_watermark ?? "—"} · speed counted on every partition through ${fresh.speed_watermark ?? "—"} · ` +
      `consumer lag ${lag}`;
    document.body.dataset.loaded = "true";
    document.body.dataset.auth = "ok";
    await refreshViews(range.endMs);
    await refreshExplore();
  } catch (err) {
    if (err instanceof Unauthorized) {
      document.body.dataset.auth = "needed";
      document.getElementById("token").focus();
    }
    document.getElementById("freshness").textContent = `error: ${err.message}`;
  }
}

setupTokenForm();
document.getElementById("explore-view").addEventListener("change", () => {
  exploreKeys();
  refreshExplore();
});
document.getElementById("explore-form").addEventListener("submit", (event) => {
  event.preventDefault();
  refreshExplore();
});
document.getElementById("merge-range").addEventListener("change", (event) => {
  sessionStorage.setItem(MERGE_KEY, event.target.value);
  refresh();
});
document.getElementById("view-select").addEventListener("change", (event) => {
  sessionStorage.setItem(VIEW_KEY, event.target.value);
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
