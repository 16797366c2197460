"""When a declared view version serves: deployed to speed, held by the batch version, and
that version's horizon past the newest record applied before the deploy, in every partition."""

from __future__ import annotations

import json

from lambda_contracts.view_builds import SERVING, build_state


def deployed(positions: dict[int, tuple[int, int]], retired: int | None = None) -> dict:
    return {
        "from_positions": json.dumps({str(p): list(v) for p, v in positions.items()}),
        "retired_at_ms": retired,
    }


def test_serving_needs_the_batch_version_and_a_horizon_past_every_partitions_deploy() -> None:
    at = deployed({0: (10, 4_999), 1: (7, 9_000)})
    assert build_state(at, held=True, horizon_ms=10_000) is SERVING
    # The horizon must pass the newest record before the deploy: its bucket is below H.
    waiting = build_state(at, held=True, horizon_ms=9_000)
    assert waiting.state == "building" and "partitions 1" in (waiting.waiting_for or "")
    assert waiting.progress < 1
    unheld = build_state(at, held=False, horizon_ms=10_000)
    assert unheld.state == "building" and "batch run" in (unheld.waiting_for or "")


def test_a_version_the_speed_layer_has_not_deployed_or_retired_is_building() -> None:
    assert build_state(None, held=True, horizon_ms=10**13).progress == 0.0
    retired = deployed({0: (1, 1)}, retired=5)
    assert build_state(retired, held=True, horizon_ms=10**13).state == "building"


def test_partitions_empty_at_the_deploy_wait_for_nothing() -> None:
    assert build_state(deployed({}), held=True, horizon_ms=0) is SERVING
    assert build_state(deployed({0: (0, 0)}), held=True, horizon_ms=1) is SERVING
