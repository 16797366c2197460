"""The speed layer as the dashboard shows it: its consumer group, each partition's state, and
what it rejected."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from lambda_contracts.buckets import ms_to_iso
from serving.consumer_group import GroupReading, partition_state
from serving.dead_letters import RejectsReading
from serving.deps import QueriesDep, SettingsDep
from serving.kafka_lag import partition_progress
from serving.routes.common import JSONAnswer
from serving.schemas import ConsumerGroupAnswer, Rejects

router = APIRouter(prefix="/v1/speed", tags=["speed"])


async def group_reading(request: Request) -> GroupReading | None:
    return await request.app.state.group_reading.get()


async def rejects_reading(request: Request) -> RejectsReading | None:
    return await request.app.state.rejects_reading.get()


@router.get("/group", response_model=ConsumerGroupAnswer)
def consumer_group(
    settings: SettingsDep,
    queries: QueriesDep,
    reading: Annotated[GroupReading | None, Depends(group_reading)],
) -> JSONAnswer:
    """The speed processes' consumer group: its members, the partitions each owns, and each
    partition's stored offset, end offset, lag and state (ok, stalled, halted)."""
    # A plain ``def`` (thread pool): the speed store's progress and halts are read here.
    members = reading.members if reading else ()
    owner = {p: m.client_id for m in members for p in m.partitions}
    stored = {p["kafka_partition"]: p for p in queries.speed.partitions()}
    halts = queries.speed.halts()
    offsets = {p: row["next_offset"] for p, row in stored.items()}
    now_ms = int(time.time() * 1000)
    stall_ms = int(settings.speed_unhealthy_after_s * 1000)
    partitions = []
    for progress in partition_progress(settings.partitions, offsets, queries.end_offsets()):
        updated = stored.get(progress.partition, {}).get("updated_at_ms", 0)
        halt = halts.get(progress.partition)
        state = partition_state(halt is not None, progress.lag, updated, now_ms, stall_ms)
        partitions.append(
            {
                **asdict(progress),
                "owner": owner.get(progress.partition),
                "state": state,
                "reason": halt["reason"] if halt else None,
                "updated_at_ms": updated,
            }
        )
    return JSONAnswer(
        {
            "group": settings.speed_group,
            "state": reading.state if reading else None,
            "members": [asdict(m) for m in members],
            "partitions": partitions,
        }
    )


@router.get("/rejects", response_model=Rejects)
async def rejects(
    settings: SettingsDep, reading: Annotated[RejectsReading | None, Depends(rejects_reading)]
) -> JSONAnswer:
    """What the speed layer rejected over the last hour (its dead-letter topic): counts per
    minute and reason, and the latest rejected records with where they were."""
    return JSONAnswer(
        {
            "dlq_topic": settings.dlq_topic,
            "reachable": reading is not None,
            "caught_up": reading.caught_up if reading else False,
            "by_minute": [
                {"minute": ms_to_iso(m), "minute_ms": m, "counts": counts}
                for m, counts in (reading.by_minute.items() if reading else ())
            ],
            "latest": [
                {**asdict(letter), "rejected_at": ms_to_iso(letter.rejected_at_ms)}
                for letter in (reading.latest if reading else ())
            ],
        }
    )
