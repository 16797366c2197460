// Tables and definition lists filled from answers.

export const DAY_MS = 86400 * 1000;

// "2026-12-07 05:00": a minute in UTC, as the tables show it.
export function utcMinute(ms) {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

export function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// A table with one column per field of the rows (window_start shown as a UTC minute).
export function fillTable(tableId, rows) {
  const table = document.getElementById(tableId);
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
    tr.append(...columns.map((c) => cell(c === "window_start" ? utcMinute(r[c]) : r[c])));
    return tr;
  }));
}

export function definitionList(entries) {
  return entries.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  });
}

// The select's options are these names (replaced only when they differ, so a choice the user
// made is kept across refreshes); whether they were replaced.
export function setOptions(select, names) {
  if (select.options.length === names.length && names.every((n, i) => select.options[i].value === n)) {
    return false;
  }
  select.replaceChildren(...names.map((n) => new Option(n, n)));
  return true;
}
