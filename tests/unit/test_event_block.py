"""EventBlock: the columns a poll batch travels in hold exactly the rows that went in."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from lambda_contracts.landing_files import LANDING_SCHEMA
from speed_layer.event_block import EventBlock
from tests.support.blocks import block_of, rows_of

ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "transaction_id": st.text(min_size=1, max_size=5),
            "created_time": st.integers(0, 10**13),
            "source_account_id": st.text(min_size=1, max_size=5),
            "target_account_id": st.text(min_size=1, max_size=5),
            "amount_cents": st.integers(0, 10**9),
            "kafka_partition": st.integers(0, 7),
            "kafka_offset": st.integers(0, 10**9),
            "kafka_ts": st.integers(0, 10**13),
        }
    ),
    max_size=12,
)


@given(ROWS, ROWS, st.integers(0, 12), st.integers(0, 12))
def test_a_block_keeps_its_rows_through_extend_slice_and_arrow(
    first: list[dict], second: list[dict], start: int, stop: int
) -> None:
    block = block_of(first)
    block.extend(block_of(second))
    everything = first + second
    assert len(block) == len(everything) and bool(block) == bool(everything)
    assert rows_of(block) == everything
    assert rows_of(block.slice(start, stop)) == everything[start:stop]
    assert list(block.tuples(("kafka_offset", "transaction_id"), start, stop)) == [
        (row["kafka_offset"], row["transaction_id"]) for row in everything[start:stop]
    ]
    names = ("transaction_id", "kafka_offset", "amount_cents")
    low, high = min(start, len(everything)), min(max(start, stop), len(everything))
    flat = [v for row in everything[low:high] for v in (row[n] for n in names)]
    assert block.flat(names, low, high) == tuple(flat)
    table = block.to_table()
    assert table.schema == LANDING_SCHEMA
    assert table.to_pylist() == everything


def test_placed_events_get_their_partition_offsets_and_timestamps() -> None:
    events = {
        "transaction_id": ["a", "b"],
        "created_time": [1, 2],
        "source_account_id": ["s", "s"],
        "target_account_id": ["t", "u"],
        "amount_cents": [100, 250],
    }
    block = EventBlock.placed(events, 3, [10, 11], [1000, 1001])
    assert rows_of(block) == [
        {"transaction_id": "a", "created_time": 1, "source_account_id": "s"}
        | {"target_account_id": "t", "amount_cents": 100, "kafka_partition": 3}
        | {"kafka_offset": 10, "kafka_ts": 1000},
        {"transaction_id": "b", "created_time": 2, "source_account_id": "s"}
        | {"target_account_id": "u", "amount_cents": 250, "kafka_partition": 3}
        | {"kafka_offset": 11, "kafka_ts": 1001},
    ]
    assert block.to_table().column("kafka_partition").type == pa.int32()
