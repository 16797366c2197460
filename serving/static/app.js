// Live dashboard: polls the public API every few seconds; no external assets.
"use strict";
const REFRESH_MS = 3000;
const SVG_NS = "http://www.w3.org/2000/svg";

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(series, horizonMs, startMs, endMs) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const W = 900, H = 300, pad = 40;
  const max = Math.max(1, ...series.points.map((p) => p.count));
  const x = (ms) => pad + ((ms - startMs) / (endMs - startMs)) * (W - 2 * pad);
  const y = (v) => H - pad - (v / max) * (H - 2 * pad);
  const barW = Math.max(2, (W - 2 * pad) / 60 - 2);
  for (const p of series.points) {
    const side = horizonMs !== null && p.window_start_ms < horizonMs ? "batch" : "speed";
    svg.append(el("rect", { class: `bar ${side}`, x: x(p.window_start_ms), y: y(p.count),
      width: barW, height: H - pad - y(p.count), "data-count": p.count }));
  }
  svg.append(el("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: "#999" }));
  svg.append(el("text", { class: "axis", x: pad, y: H - pad + 16 }, new Date(startMs).toISOString().slice(11, 16)));
  svg.append(el("text", { class: "axis", x: W - pad - 30, y: H - pad + 16 }, new Date(endMs).toISOString().slice(11, 16)));
  svg.append(el("text", { class: "axis", x: 4, y: pad }, String(max)));
  if (horizonMs !== null && horizonMs > startMs && horizonMs < endMs) {
    svg.append(el("line", { class: "boundary", id: "boundary", x1: x(horizonMs), x2: x(horizonMs), y1: pad / 2, y2: H - pad }));
    const nearRight = x(horizonMs) > W * 0.7;
    svg.append(el("text", { class: "axis", x: x(horizonMs) + (nearRight ? -4 : 4), y: pad / 2 + 10,
      "text-anchor": nearRight ? "end" : "start" }, "batch | speed"));
  }
}

function drawTop(top) {
  const body = document.querySelector("#top tbody");
  body.replaceChildren();
  for (const a of top.accounts) {
    const row = document.createElement("tr");
    for (const v of [a.account_id, a.count, a.sum]) {
      const cell = document.createElement("td");
      cell.textContent = v;
      row.append(cell);
    }
    body.append(row);
  }
}

async function refresh() {
  const endMs = Math.ceil(Date.now() / 60000) * 60000;
  const startMs = endMs - 3600 * 1000;
  const range = `start=${startMs}&end=${endMs}`;
  try {
    const [series, top, fresh] = await Promise.all([
      getJSON(`/v1/totals/series?${range}&granularity=minute`),
      getJSON(`/v1/top-accounts?${range}&by=sum&limit=10`),
      getJSON("/v1/freshness"),
    ]);
    drawChart(series, fresh.batch_horizon_ms, startMs, endMs);
    drawTop(top);
    const lag = fresh.speed_lag.reduce((sum, p) => sum + (p.lag ?? 0), 0);
    document.getElementById("freshness").textContent =
      `batch version ${fresh.batch_version ?? "none yet"} · horizon ${fresh.batch_horizon ?? "—"} · ` +
      `landing watermark ${fresh.landing_watermark ?? "—"} · speed watermark ${fresh.speed_watermark ?? "—"} · ` +
      `consumer lag ${lag} · events in view: ${series.meta.events_from_batch} batch + ${series.meta.events_from_speed} speed`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    document.getElementById("freshness").textContent = `error: ${err.message}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
