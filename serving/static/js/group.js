// The consumer-group panel (GET /v1/speed/group): members, what each owns, each partition's
// offsets and state.
import { cell } from "./tables.js";

export function drawGroup(group) {
  const members = group.members.map((m) => `${m.client_id} owns [${m.partitions.join(", ")}]`);
  document.getElementById("group-meta").textContent = group.state === null
    ? `group ${group.group}: the broker cannot be reached`
    : `group ${group.group} · ${group.state} · ${members.length} member(s): ${members.join(" · ") || "none"}`;
  document.getElementById("group").dataset.members = group.members.length;
  document.getElementById("group-partitions").tBodies[0].replaceChildren(...group.partitions.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.partition = p.partition;
    tr.dataset.state = p.state;
    tr.append(cell(p.partition, "partition"), cell(p.owner ?? "—", "owner"),
      cell(p.stored_offset, "stored"), cell(p.end_offset ?? "—", "end"), cell(p.lag ?? "—", "lag"),
      cell(p.reason ? `${p.state}: ${p.reason}` : p.state, `state state-${p.state}`));
    return tr;
  }));
}
