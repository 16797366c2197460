// Time charts drawn with uPlot (vendored: /static/vendor/uplot, the global `uPlot`).

export const BATCH_COLOUR = "#2f5d8a";
export const SPEED_COLOUR = "#9ecae9";
export const HORIZON_COLOUR = "#c0392b";
// Series of no fixed meaning (reason labels, partitions).
export const PALETTE = ["#c0392b", "#e67e22", "#8e44ad", "#16a085", "#7f8c8d", "#2c3e50"];

export function bars(maxWidth) {
  return uPlot.paths.bars({ size: [0.85, maxWidth], align: 1 });
}

// A chart over time (x in epoch seconds, shown in UTC), y from 0, as wide as its container.
export function timeChart(container, { height, series, yLabel, draw = [] }) {
  return new uPlot({
    width: Math.max(320, container.clientWidth - 2),
    height,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    series: [{ label: "time (UTC)" }, ...series],
    axes: [{}, { label: yLabel }],
    hooks: { draw },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
  }, [[], ...series.map(() => [])], container);
}

// New data and the x range it is shown over, drawn once.
export function redraw(chart, data, minSec, maxSec) {
  chart.batch(() => {
    chart.setData(data);
    chart.setScale("x", { min: minSec, max: maxSec });
  });
}

// Vertical lines across the plot at these x values (epoch seconds).
export function verticalLines(u, xs, { dashed = false, width = 1 } = {}) {
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = HORIZON_COLOUR;
  ctx.lineWidth = width * devicePixelRatio;
  if (dashed) ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
  for (const at of xs) {
    if (at < u.scales.x.min || at > u.scales.x.max) continue;
    const x = u.valToPos(at, "x", true);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
  }
  ctx.restore();
}
