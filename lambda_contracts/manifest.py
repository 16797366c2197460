"""A batch version's manifest, as a type: what the Spark job wrote, and what checked it.

The job writes the views' files first and the manifest, which names them, last; a version
exists once its manifest does. Every reader (validation, publish and rollback, the next
increment, prune, the CLI, the DAGs, serving) reads it through :class:`Manifest`, so a field
is named once, here. Fields this code does not know (a newer writer's) are kept as they are
when a manifest is read and written back (a validation verdict is stored that way).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Manifests of this format carry what an increment needs (``output_partitions``,
# ``dedup_index_files``); older versions are complete but can only be replaced by a full run
# (format 2 partitioned every view by day).
BATCH_FORMAT = 3


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Counters(_Record):
    """What a run read and kept; validation reconciles them with every view's total."""

    input_records: int = 0  # rows in the landing files listed
    records_read: int = 0  # rows the job read (must equal input_records)
    replays_removed: int = 0  # the same (partition, offset) landed twice
    duplicates_removed: int = 0  # a TransactionID seen again within the dedup horizon
    events: int = 0  # what the views count

    @property
    def expected_events(self) -> int:
        return self.input_records - self.replays_removed - self.duplicates_removed


COUNTERS: tuple[str, ...] = tuple(Counters.model_fields)


class Increment(Counters):
    """What this run added to its base (all of it for a full run)."""

    from_ms: int = 0
    horizon_ms: int = 0
    buckets: int = 0
    files: int = 0
    days_touched: int = 0
    hours_touched: int = 0
    partitions_touched: dict[str, int] = Field(default_factory=dict)
    partitions: dict[str, int] = Field(default_factory=dict)


class Validation(_Record):
    """The verdict of ``lambda-batch validate``: only a version that passed is published."""

    ok: bool
    at_ms: int = 0
    events: int | None = None
    problems: list[str] = Field(default_factory=list)


class Manifest(Counters):
    """A complete batch version (the counters are cumulative: the base's plus the increment's)."""

    version: str
    horizon_ms: int
    format: int | None = None
    run_id: str = ""
    dag_id: str = ""  # the Airflow DAG whose run (run_id) wrote it; "" outside Airflow
    bucket_ms: int | None = None
    dedup_horizon_ms: int | None = None
    code_version: str | None = None
    created_at_ms: int = 0
    elapsed_s: float = 0.0
    steps_s: dict[str, float] = Field(default_factory=dict)
    mode: Literal["incremental", "full"] = "full"
    base_version: str | None = None
    why: str = ""
    increment: Increment | None = None
    input_files: dict[str, int] = Field(default_factory=dict)  # landing key -> rows
    dedup_index_files: dict[str, int] = Field(default_factory=dict)  # key -> horizon of its run
    # view -> event-time period start (ms, as a string: a JSON key) -> the files of that period
    output_partitions: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    # view -> its files (None: written before manifests named them; the prefix holds them)
    output_files: dict[str, list[str]] | None = None
    # declared view name -> its version, each computed into this version (storage names in
    # output_files; lambda_contracts.declared_views)
    declared_views: dict[str, str] = Field(default_factory=dict)
    validation: Validation | None = None

    @property
    def validated(self) -> bool:
        return self.validation is not None and self.validation.ok

    def named_files(self) -> set[str]:
        """Every object key the version's views and dedup index consist of."""
        views = {key for keys in (self.output_files or {}).values() for key in keys}
        return views | set(self.dedup_index_files)

    def with_validation(self, verdict: Validation) -> Manifest:
        return self.model_copy(update={"validation": verdict})

    @classmethod
    def parse(cls, data: bytes | str) -> Manifest:
        return cls.model_validate_json(data)

    def dumps(self) -> bytes:
        """The stored form: indented, keys sorted (diffable), unset optional fields left out."""
        payload: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(payload, indent=1, sort_keys=True).encode()
