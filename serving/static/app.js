// Live dashboard: polls the public API every few seconds; no external assets. Each panel is a
// module of js/; this one runs the refresh and wires the controls.
import { TOKEN_KEY, Unauthorized, getJSON } from "./js/api.js";
import { fillExplore, refreshExplore, showKeys } from "./js/explore.js";
import { drawGroup } from "./js/group.js";
import { drawMerge, mergeRange, rememberMergeRange } from "./js/merge.js";
import { drawRejects } from "./js/rejects.js";
import { drawRuns } from "./js/runs.js";
import { drawTime } from "./js/time.js";
import { drawTop } from "./js/top.js";
import { refreshViews, rememberView } from "./js/views.js";

const REFRESH_MS = 3000;

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

async function refresh() {
  const range = mergeRange();
  const span = `start=${range.startMs}&end=${range.endMs}`;
  try {
    const [merge, top, fresh, runs, group, rejects, history, views] = await Promise.all([
      getJSON(`/v1/totals/merge?${span}&granularity=${range.granularity}`),
      getJSON(`/v1/top-accounts?${span}&by=sum&limit=10`),
      getJSON("/v1/freshness"),
      getJSON("/v1/batch/runs?limit=10"),
      getJSON("/v1/speed/group"),
      getJSON("/v1/speed/rejects"),
      getJSON("/v1/freshness/history"),
      getJSON("/v1/views"),
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
    fillExplore(views.views);
    await refreshViews(views.views, range.endMs);
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
  showKeys();
  refreshExplore();
});
document.getElementById("explore-form").addEventListener("submit", (event) => {
  event.preventDefault();
  refreshExplore();
});
document.getElementById("merge-range").addEventListener("change", (event) => {
  rememberMergeRange(event.target.value);
  refresh();
});
document.getElementById("view-select").addEventListener("change", (event) => {
  rememberView(event.target.value);
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
