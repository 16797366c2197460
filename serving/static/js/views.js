// The views panel: a view of those GET /v1/views lists, queried generically over the last day.
import { getAnswer } from "./api.js";
import { DAY_MS, fillTable, setOptions } from "./tables.js";

const VIEW_KEY = "lambda.view";

export function rememberView(name) {
  sessionStorage.setItem(VIEW_KEY, name);
}

function fillViewSelect(views) {
  const select = document.getElementById("view-select");
  const names = [...new Set(views.map((v) => v.name))];
  setOptions(select, names);
  const saved = sessionStorage.getItem(VIEW_KEY);
  if (saved && names.includes(saved)) select.value = saved;
  return select.value;
}

// Grouped by its first dimension and ranked by its first measure; per window without one.
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

export async function refreshViews(listed, endMs) {
  const name = fillViewSelect(listed);
  const versions = listed.filter((v) => v.name === name);
  const view = versions.find((v) => v.answering) ?? versions[0];
  if (!view) return;
  const states = versions.map((v) => `${v.version} ${v.state}` +
    (v.state === "building" ? ` ${Math.round(v.progress * 100)} % (waiting for ${v.waiting_for})` : ""));
  const { status, ok, body } = await getAnswer(
    `/v1/views/${name}?${viewQuery(view, endMs - DAY_MS, endMs)}`);
  const meta = document.getElementById("view-meta");
  if (status === 409) {
    fillTable("view-rows", []);
    meta.textContent = `${name}: building, ${Math.round(body.progress * 100)} % — ${body.waiting_for}`;
  } else if (ok) {
    fillTable("view-rows", body.rows);
    meta.textContent = `${name} · answered by version ${body.meta.view_version} · ` +
      `${body.meta.events_from_batch} events from batch + ${body.meta.events_from_speed} from speed · ` +
      `versions: ${states.join(", ")}`;
  } else {
    meta.textContent = `${name}: error ${status}`;
  }
  document.body.dataset.viewsLoaded = "true";
}
