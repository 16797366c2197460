// The merge panel: each window's batch part and speed part (GET /v1/totals/merge) as stacked
// bars, the batch horizon as a vertical line, the numbers in a table under them.
import { BATCH_COLOUR, SPEED_COLOUR, bars, redraw, timeChart, verticalLines } from "./charts.js";
import { cell, utcMinute } from "./tables.js";

const RANGE_KEY = "lambda.mergeRange";
let chart = null;
let horizonSec = null;

// The range the panel's select names, ending at the next whole window.
export function mergeRange() {
  const select = document.getElementById("merge-range");
  const saved = sessionStorage.getItem(RANGE_KEY);
  if (saved && [...select.options].some((o) => o.value === saved)) select.value = saved;
  const [spanMs, granularity] = select.value.split(":");
  const size = granularity === "hour" ? 3600000 : 60000;
  const endMs = Math.ceil(Date.now() / size) * size;
  return { startMs: endMs - Number(spanMs), endMs, granularity };
}

export function rememberMergeRange(value) {
  sessionStorage.setItem(RANGE_KEY, value);
}

function mergeChart(container) {
  const drawn = bars(40);
  return timeChart(container, {
    height: 300,
    yLabel: "payments",
    series: [
      // Drawn first: the whole bar, in the speed colour; the batch part is drawn over it.
      { label: "total (speed part on top)", stroke: SPEED_COLOUR, fill: SPEED_COLOUR, paths: drawn, points: { show: false } },
      { label: "batch part", stroke: BATCH_COLOUR, fill: BATCH_COLOUR, paths: drawn, points: { show: false } },
    ],
    draw: [(u) => verticalLines(u, horizonSec === null ? [] : [horizonSec], { width: 2 })],
  });
}

export function drawMerge(merge, range) {
  chart ??= mergeChart(document.getElementById("merge-chart"));
  const points = merge.points;
  horizonSec = merge.meta.batch_horizon_ms === null ? null : merge.meta.batch_horizon_ms / 1000;
  redraw(chart, [
    points.map((p) => p.window_start_ms / 1000),
    points.map((p) => p.count),
    points.map((p) => p.batch.count),
  ], range.startMs / 1000, range.endMs / 1000);
  Object.assign(document.getElementById("merge").dataset, {
    start: range.startMs, end: range.endMs, granularity: range.granularity,
    horizon: merge.meta.batch_horizon_ms ?? "", version: merge.meta.batch_version ?? "",
  });
  document.getElementById("merge-rows").tBodies[0].replaceChildren(...points.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.window = p.window_start_ms;
    tr.append(cell(utcMinute(p.window_start_ms), "window"), cell(p.batch.count, "batch"),
      cell(p.speed.count, "speed"), cell(p.count, "count"), cell(p.sum, "sum"));
    return tr;
  }));
  const side = (key) => points.reduce((sum, p) => sum + p[key].count, 0);
  document.getElementById("merge-meta").textContent =
    `batch version ${merge.meta.batch_version ?? "none yet"} · horizon ${merge.meta.batch_horizon ?? "—"} · ` +
    `${side("batch")} events from batch + ${side("speed")} from speed in ${points.length} windows`;
}
