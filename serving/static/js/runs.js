// The batch-runs panel: the latest publishes (GET /v1/batch/runs), linked to the Airflow UI.
import { cell } from "./tables.js";

function minutes(ms) {
  return ms % 60000 === 0 ? `${ms / 60000} min` : `${(ms / 60000).toFixed(1)} min`;
}

function airflowLink(run) {
  const td = document.createElement("td");
  if (run.airflow_run_url) {
    const a = document.createElement("a");
    a.href = run.airflow_run_url;
    a.textContent = "Airflow";
    a.target = "_blank";
    a.rel = "noopener";
    td.append(a);
  }
  return td;
}

export function drawRuns(answer) {
  document.getElementById("runs-pinned").textContent = answer.pinned
    ? `CURRENT is pinned to ${answer.current_version} by a rollback: runs compute but do not publish (lambda-batch resume).`
    : "";
  document.getElementById("runs").dataset.pinned = answer.pinned;
  document.getElementById("runs-rows").tBodies[0].replaceChildren(...answer.runs.map((run) => {
    const tr = document.createElement("tr");
    tr.dataset.version = run.version;
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
      airflowLink(run),
    );
    return tr;
  }));
}
