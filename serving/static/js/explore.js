// The explore panel: any serving view, a key per dimension, a UTC range and a granularity no
// finer than the view's window; the answer (GET /v1/views/{name}) beside its meta.
import { getAnswer } from "./api.js";
import { DAY_MS, definitionList, fillTable, setOptions } from "./tables.js";

const WINDOW_ORDER = ["minute", "hour", "day"];
let listed = [];

// A minute as a datetime-local input holds it (read as UTC).
function inputMinute(ms) {
  return new Date(ms).toISOString().slice(0, 16);
}

function chosenView() {
  const name = document.getElementById("explore-view").value;
  return listed.find((v) => v.name === name && v.answering) ?? listed.find((v) => v.name === name);
}

export function fillExplore(views) {
  listed = views;
  const select = document.getElementById("explore-view");
  const names = [...new Set(views.map((v) => v.name))];
  const chosen = select.value;
  if (setOptions(select, names)) {
    select.value = names.includes(chosen) ? chosen : (names.includes("account_minute") ? "account_minute" : names[0]);
    showKeys();
  }
  const start = document.getElementById("explore-start");
  const end = document.getElementById("explore-end");
  if (!start.value || !end.value) {
    const hour = Math.ceil(Date.now() / 3600000) * 3600000;
    start.value = inputMinute(hour - DAY_MS);
    end.value = inputMinute(hour);
  }
}

// One input per dimension of the chosen view; granularities finer than its window disabled.
export function showKeys() {
  const view = chosenView();
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

export async function refreshExplore() {
  const view = chosenView();
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
  const { status, ok, body } = await getAnswer(`/v1/views/${view.name}?${params}`);
  Object.assign(document.getElementById("explore").dataset, { query: params.toString(), status });
  const meta = document.getElementById("explore-meta");
  if (!ok) {
    fillTable("explore-rows", []);
    const why = status === 409
      ? `building, ${Math.round(body.progress * 100)} % — ${body.waiting_for}`
      : JSON.stringify(body.detail ?? body);
    meta.replaceChildren(...definitionList([[`error ${status}`, why]]));
    return;
  }
  fillTable("explore-rows", body.rows);
  meta.replaceChildren(...definitionList(metaEntries(view, body)));
}
