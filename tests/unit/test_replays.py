"""The batch job counts records landed twice (crash replays) from overlapping files only."""

from __future__ import annotations

from pathlib import Path

from batch_layer.spark_dedup import count_replays
from lambda_contracts.landing_files import write_landing_file
from lambda_contracts.layout import Layout


def rows(partition: int, offsets: list[int]) -> list[dict[str, object]]:
    return [
        {
            "transaction_id": f"{partition}-{o}",
            "created_time": 1,
            "source_account_id": "a",
            "target_account_id": "b",
            "amount_cents": 1,
            "kafka_partition": partition,
            "kafka_offset": o,
            "kafka_ts": 1000,
        }
        for o in offsets
    ]


def test_overlapping_files_share_exactly_the_replayed_offsets(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    write_landing_file(layout, 0, 0, rows(0, [0, 1, 2, 4]))  # p0-0-4
    write_landing_file(layout, 0, 0, rows(0, [2, 4, 5, 6]))  # p0-2-6: replays 2 and 4
    write_landing_file(layout, 0, 0, rows(0, [7, 8]))  # no overlap
    write_landing_file(layout, 0, 1, rows(1, [0, 1]))  # another partition, same offsets
    assert count_replays(layout, layout.landing_files()) == 2


def test_no_overlap_no_replays(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    write_landing_file(layout, 0, 0, rows(0, [0, 1]))
    write_landing_file(layout, 300_000, 0, rows(0, [2, 3]))
    assert count_replays(layout, layout.landing_files()) == 0
