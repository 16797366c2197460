// Live dashboard: polls the public API every few seconds; no external assets.
"use strict";
const REFRESH_MS = 3000;
const SVG_NS = "http://www.w3.org/2000/svg";
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

function el(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Bars are event-time minutes. Each merges batch and speed rows: the batch horizon is an
// ingest time, so a minute before it can still hold late events counted by speed. The chart
// therefore does not colour bars by side; the split the API reports is in the header.
function drawChart(series, startMs, endMs) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const W = 900, H = 300, pad = 40;
  const max = Math.max(1, ...series.points.map((p) => p.count));
  const x = (ms) => pad + ((ms - startMs) / (endMs - startMs)) * (W - 2 * pad);
  const y = (v) => H - pad - (v / max) * (H - 2 * pad);
  const barW = Math.max(2, (W - 2 * pad) / 60 - 2);
  for (const p of series.points) {
    svg.append(el("rect", { class: "bar", x: x(p.window_start_ms), y: y(p.count),
      width: barW, height: H - pad - y(p.count), "data-count": p.count }));
  }
  svg.append(el("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: "#999" }));
  svg.append(el("text", { class: "axis", x: pad, y: H - pad + 16 }, new Date(startMs).toISOString().slice(11, 16)));
  svg.append(el("text", { class: "axis", x: W - pad - 30, y: H - pad + 16 }, new Date(endMs).toISOString().slice(11, 16)));
  svg.append(el("text", { class: "axis", x: 4, y: pad }, String(max)));
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

function drawRows(rows) {
  const table = document.getElementById("view-rows");
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
    drawChart(series, startMs, endMs);
    drawTop(top);
    const lag = fresh.speed_lag.reduce((sum, p) => sum + (p.lag ?? 0), 0);
    document.getElementById("freshness").textContent =
      `batch version ${fresh.batch_version ?? "none yet"} · horizon (ingest time) ${fresh.batch_horizon ?? "—"} · ` +
      `landing watermark ${fresh.landing_watermark ?? "—"} · speed counted on every partition through ${fresh.speed_watermark ?? "—"} · ` +
      `consumer lag ${lag} · events in view: ${series.meta.events_from_batch} batch + ${series.meta.events_from_speed} speed`;
    document.body.dataset.loaded = "true";
    document.body.dataset.auth = "ok";
    await refreshViews(endMs);
  } catch (err) {
    if (err instanceof Unauthorized) {
      document.body.dataset.auth = "needed";
      document.getElementById("token").focus();
    }
    document.getElementById("freshness").textContent = `error: ${err.message}`;
  }
}

setupTokenForm();
document.getElementById("view-select").addEventListener("change", (event) => {
  sessionStorage.setItem(VIEW_KEY, event.target.value);
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
