"""Random partitioned logs for property tests: duplicates, conflicting copies, late events.

Copies of one TransactionID share a source account, hence a Kafka key and a partition, as on
the real topic. Kafka timestamps grow per partition (LogAppendTime), with gaps wide enough for
copies to fall on either side of a small dedup horizon and in different ingest buckets.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from lambda_contracts.events import MAX_AMOUNT_CENTS

Record = dict[str, Any]
START_TS = 1_000_000


@st.composite
def partitioned_logs(
    draw: st.DrawFn,
    max_partitions: int = 3,
    max_records: int = 40,
    max_gap_ms: int = 700,
    max_skew_ms: int = 0,
    gap_unit_ms: int = 1,
) -> dict[int, list[Record]]:
    """{partition: records in offset order} with landing-row fields.

    ``max_skew_ms``: each partition's clock starts up to this much after ``START_TS``, so one
    partition's timestamps may run far ahead of another's (out of order across partitions).
    """
    partitions = draw(st.integers(1, max_partitions))
    ids = draw(st.integers(1, 12))  # a small pool: many duplicates
    logs: dict[int, list[Record]] = {p: [] for p in range(partitions)}
    clock = {p: START_TS + draw(st.integers(0, max_skew_ms)) for p in range(partitions)}
    amounts = st.one_of(st.integers(0, 10_000), st.sampled_from([0, MAX_AMOUNT_CENTS]))
    for _ in range(draw(st.integers(0, max_records))):
        tid = draw(st.integers(0, ids - 1))
        account = f"acct{tid % 3}"
        partition = (tid % 3) % partitions
        clock[partition] += draw(st.integers(0, max_gap_ms // gap_unit_ms)) * gap_unit_ms
        log = logs[partition]
        log.append(
            {
                "transaction_id": f"t{tid}",
                "created_time": draw(st.integers(0, 5 * 60_000)),  # late and early events
                "source_account_id": account,
                "target_account_id": draw(st.sampled_from(["z", "y", "x"])),
                "amount_cents": draw(amounts),
                "kafka_partition": partition,
                "kafka_offset": len(log),
                "kafka_ts": clock[partition],
            }
        )
    return logs


def all_records(logs: dict[int, list[Record]]) -> list[Record]:
    return [r for log in logs.values() for r in log]
