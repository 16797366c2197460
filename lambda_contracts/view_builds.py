"""When a declared view version can be answered exactly: the one rule both the speed layer
(which stops computing a superseded version once its successor serves) and serving use.

A version serves on a batch version at horizon H once that batch version holds it (computed
over every event below H) and H lies past its deploy position in every partition: the newest
Kafka timestamp applied before the speed layer started computing it (``speed_view_versions``;
``speed_layer.store_deploy``). Every event is then in exactly one side: below H in the batch
version, at or above H in the version's speed rows (docs/contracts.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class BuildState:
    state: Literal["building", "serving", "retiring"]
    progress: float  # 0 to 1: deployed to speed, held by the batch version, horizon past
    waiting_for: str | None = None


SERVING = BuildState("serving", 1.0)


def build_state(deployed: dict[str, Any] | None, held: bool, horizon_ms: int) -> BuildState:
    """Whether a declared version can be answered exactly from a batch version at
    ``horizon_ms`` that does (``held``) or does not hold it, given its speed deployment (its
    row of ``speed_view_versions``, None if the speed layer has not deployed it)."""
    if deployed is None or deployed["retired_at_ms"] is not None:
        return BuildState("building", 0.0, "the speed layer to deploy it (make deploy)")
    positions = json.loads(deployed["from_positions"])
    behind = [int(p) for p, (_, newest_ts) in positions.items() if newest_ts >= horizon_ms]
    covered = 1 - len(behind) / len(positions) if positions else 1.0
    if held and not behind:
        return SERVING
    progress = round((1 + int(held) + covered) / 3, 3)
    if not held:
        return BuildState("building", progress, "a batch run to compute it over all history")
    partitions = ", ".join(map(str, sorted(behind)))
    return BuildState(
        "building", progress, f"the batch horizon to pass the deploy in partitions {partitions}"
    )
