// The time panel (GET /v1/freshness/history): how many seconds each clock was behind each
// sample over the last hour, the publishes marked; below, the lag per partition.
import { PALETTE, redraw, timeChart, verticalLines } from "./charts.js";

const CLOCKS = [["speed watermark", "speed_watermark_ms", "#2e86c1"],
  ["landing watermark", "landing_watermark_ms", "#27ae60"], ["batch horizon", "batch_horizon_ms", "#2f5d8a"]];
let clocksChart = null;
let lagChart = null;
let lagPartitions = "";
let publishesSec = [];

const markPublishes = (u) => verticalLines(u, publishesSec, { dashed: true });

function lines(containerId, series, height, yLabel) {
  return timeChart(document.getElementById(containerId), {
    height, yLabel, draw: [markPublishes],
    series: series.map(([label, colour]) => ({ label, stroke: colour, width: 2 })),
  });
}

export function drawTime(history) {
  const samples = history.samples;
  publishesSec = history.publishes.map((p) => p.published_at_ms / 1000);
  const xs = samples.map((s) => s.at_ms / 1000);
  const behind = (s, key) => s[key] === null ? null : Math.max(0, (s.at_ms - s[key]) / 1000);
  const [from, to] = [Date.now() / 1000 - 3600, Date.now() / 1000];
  clocksChart ??= lines("time-chart", CLOCKS.map(([label, , colour]) => [label, colour]), 200,
    "seconds behind");
  redraw(clocksChart, [xs, ...CLOCKS.map(([, key]) => samples.map((s) => behind(s, key)))], from, to);
  const partitions = [...new Set(samples.flatMap((s) => Object.keys(s.lag)))].sort((a, b) => a - b);
  if (lagChart === null || lagPartitions !== partitions.join()) {
    lagChart?.destroy();
    lagPartitions = partitions.join();
    lagChart = lines("lag-chart",
      partitions.map((p, i) => [`partition ${p}`, PALETTE[i % PALETTE.length]]), 140, "lag (records)");
  }
  redraw(lagChart, [xs, ...partitions.map((p) => samples.map((s) => s.lag[p] ?? null))], from, to);
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
