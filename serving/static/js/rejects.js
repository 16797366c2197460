// The rejects panel (GET /v1/speed/rejects): dead letters per minute stacked by reason label,
// and the latest ones with where they were.
import { PALETTE, bars, redraw, timeChart } from "./charts.js";
import { cell } from "./tables.js";

const SHOWN = 10;
let chart = null;
let chartLabels = "";

export function drawRejects(answer) {
  const labels = [...new Set(answer.by_minute.flatMap((m) => Object.keys(m.counts)))].sort();
  if (chart === null || chartLabels !== labels.join()) {
    chart?.destroy();
    chartLabels = labels.join();
    const drawn = bars(20);
    chart = timeChart(document.getElementById("rejects-chart"), {
      height: 180, yLabel: "rejected",
      series: labels.map((label, i) => ({
        label, stroke: PALETTE[i % PALETTE.length], fill: PALETTE[i % PALETTE.length],
        paths: drawn, points: { show: false },
      })),
    });
  }
  // Stacked: each label's bar is its count plus the labels after it, drawn under them.
  const minutes = answer.by_minute;
  const now = Date.now() / 1000;
  redraw(chart, [
    minutes.map((m) => m.minute_ms / 1000),
    ...labels.map((_, i) => minutes.map((m) =>
      labels.slice(i).reduce((sum, l) => sum + (m.counts[l] ?? 0), 0))),
  ], now - 3600, now + 60);
  const total = minutes.reduce((sum, m) =>
    sum + Object.values(m.counts).reduce((a, b) => a + b, 0), 0);
  document.getElementById("rejects").dataset.total = total;
  document.getElementById("rejects-meta").textContent = !answer.reachable
    ? `${answer.dlq_topic}: the broker cannot be reached`
    : `${total} rejected in the last hour (${answer.dlq_topic})` +
      (answer.caught_up ? "" : " · still reading the backlog");
  document.getElementById("rejects-latest").tBodies[0].replaceChildren(
    ...answer.latest.slice(0, SHOWN).map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.partition = r.partition ?? "";
      tr.dataset.offset = r.offset ?? "";
      tr.append(cell(r.rejected_at.slice(11, 19), "rejected"), cell(r.reason, "reason"),
        cell(r.partition ?? "—", "partition"), cell(r.offset ?? "—", "offset"),
        cell(r.preview, "preview"));
      return tr;
    }));
}
