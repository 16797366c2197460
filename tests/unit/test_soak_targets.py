"""The soak's targets: a service whose memory grows past 10 % fails, a data part that keeps
growing fails unless it may, and the batch views may grow as fast as the landing zone."""

from __future__ import annotations

from bench.soak import MIB, Sample, window_targets


def samples(memory: list[int], sizes: dict[str, list[int]]) -> list[Sample]:
    return [
        Sample(
            at_s=60.0 * i,
            memory={"serving": memory[i], "batch run (tasks, spark-submit)": 10**9 * (i % 2)},
            sizes={name: values[i] for name, values in sizes.items()},
            files={},
            batch_version=None,
        )
        for i in range(len(memory))
    ]


def test_memory_growth_past_ten_percent_fails_and_transients_are_not_judged() -> None:
    flat = window_targets(samples([100 * MIB] * 30, {}), 3600)
    assert flat["memory"]["serving"]["ok"]
    assert "batch run (tasks, spark-submit)" not in flat["memory"]
    leaking = window_targets(samples([100 * MIB + i * MIB for i in range(30)], {}), 3600)
    assert not leaking["memory"]["serving"]["ok"]
    assert leaking["memory"]["serving"]["growth"] > 0.1


def test_parts_that_grow_fail_unless_they_may() -> None:
    n = 30
    rising = [10 * MIB * (i + 1) for i in range(n)]
    result = window_targets(
        samples(
            [MIB] * n,
            {
                "kafka": rising,
                "landing": rising,
                "batch": [r // 2 for r in rising],  # as fast as the landing zone
                "speed": rising,  # a store that should have reached its bound
                "run": [4096 * (i + 1) for i in range(n)],  # grows, but by bytes
            },
        ),
        3600,
    )["sizes"]
    assert result["kafka"]["ok"] and result["landing"]["ok"]
    assert result["batch"]["ok"]
    assert not result["speed"]["ok"]
    assert result["run"]["ok"]
    faster = window_targets(
        samples(
            [MIB] * n, {"landing": rising, "batch": [r * (i + 1) for i, r in enumerate(rising)]}
        ),
        3600,
    )["sizes"]
    assert not faster["batch"]["ok"]
