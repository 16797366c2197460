"""Deploying a views file into the speed store, and the check every transaction makes of it.

A speed process deploys the file it read at start-up (:func:`deploy`), in one transaction that
holds the store's write lock, like an apply:

- a declared view version new to the store gets its tables, and a row in
  ``speed_view_versions`` with each partition's stored next offset and newest applied Kafka
  timestamp at that moment. Every record from those offsets on is applied by a process that
  computes the version (below), every record before them is not: the version's speed rows
  cover exactly the records from those positions on, and the batch layer covers the rest once
  its horizon lies past the newest timestamp recorded (``lambda_contracts.view_builds``);
- a version no longer in the file is retired (its rows stay until it is cleaned up), unless
  it is the version of a changed view that serves on CURRENT: that one is still computed, and
  answers, until its successor serves; the first deploy after that retires it;
- the topic's row of ``speed_deployment`` takes the file's fingerprint.

Each apply transaction reads that fingerprint after taking the write lock
(:func:`check_deployment`): a process still holding another file stops with
:class:`StaleDeploymentError` before it writes anything, so no record is applied without the
views of the deployment in force. Deploying the fingerprint already in force only retires
previous versions whose successors serve, so every process of a group deploys at start-up and
only the first one's deploy registers anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update

from lambda_contracts.layout import Layout
from lambda_contracts.store_schema import ViewTables, deployment, partition_state, view_versions
from lambda_contracts.view_builds import SERVING, build_state
from lambda_contracts.view_set import (
    ViewSet,
    deployed_fingerprint,
    registered_versions,
    with_previous,
)
from speed_layer.store_retry import retry_transient
from speed_layer.store_sql import dialect_insert


class StaleDeploymentError(RuntimeError):
    """The store runs another deployment (set of view versions) than this process computes:
    restart on the current views file."""


@dataclass(frozen=True)
class Deployed:
    fingerprint: str
    added: tuple[str, ...]  # "name@version" of each version the deploy added
    retired: tuple[str, ...]
    views: ViewSet  # the file's versions and the previous ones still computed beside them


Serves = Callable[[dict[str, Any]], bool]  # whether a registered version serves on CURRENT


def serving_on_current(layout: Layout) -> Serves:
    """Whether a registered version serves on the published batch version (the rule of
    :mod:`lambda_contracts.view_builds`); nothing serves before a first publish."""
    pointer = layout.read_current()
    manifest = layout.read_manifest(pointer.version) if pointer is not None else None
    if pointer is None or manifest is None:
        return lambda row: False
    held = set(manifest.output_partitions)
    return lambda row: (
        row["storage_name"] in held
        and build_state(row, held=True, horizon_ms=pointer.horizon_ms) is SERVING
    )


def deploy(
    engine: Engine, topic: str, views: ViewSet, lock: str | None, serves: Serves | None = None
) -> Deployed:
    """Make ``views`` the store's deployment for ``topic`` (see the module's docstring).

    A changed view's version that serves (``serves``) keeps being computed beside its
    successor, and answering, until the successor serves: a later deploy (any process's
    start) retires it then. A version that does not serve is retired at once: nothing answers
    from it. The deployment's fingerprint covers both the file's versions and those kept, so
    a process computing another set of versions cannot commit."""
    tables = ViewTables(views.computed)
    check = serves if serves is not None else (lambda row: False)
    return retry_transient(lambda: _deploy_once(engine, topic, views, tables, lock, check))


def _deploy_once(
    engine: Engine,
    topic: str,
    views: ViewSet,
    tables: ViewTables,
    lock: str | None,
    serves: Serves,
) -> Deployed:
    now_ms = int(time.time() * 1000)
    with engine.begin() as conn:
        _take_write_lock(conn, topic, lock)
        live = [r for r in registered_versions(conn) if r["retired_at_ms"] is None]
        kept = _previous_kept(views, live, serves)
        effective = with_previous(views, kept)
        if deployed_fingerprint(conn, topic) == effective.fingerprint:
            return Deployed(effective.fingerprint, (), (), effective)
        added = _add_new_versions(conn, topic, views, tables, live, now_ms)
        in_file = {d.totals.name for d in views.declared}
        kept_names = {r["storage_name"] for r in kept}
        retire = [r for r in live if r["storage_name"] not in in_file | kept_names]
        for row in kept:
            if row["superseded_at_ms"] is None:
                conn.execute(
                    update(view_versions)
                    .where(view_versions.c.storage_name == row["storage_name"])
                    .values(superseded_at_ms=now_ms)
                )
        if retire:
            conn.execute(
                update(view_versions)
                .where(view_versions.c.storage_name.in_(sorted(r["storage_name"] for r in retire)))
                .values(retired_at_ms=now_ms)
            )
        stmt = dialect_insert(conn, deployment).values(
            topic=topic, fingerprint=effective.fingerprint, deployed_at_ms=now_ms
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[deployment.c.topic],
                set_={"fingerprint": effective.fingerprint, "deployed_at_ms": now_ms},
            )
        )
    retired = tuple(sorted(f"{r['view_name']}@{r['version']}" for r in retire))
    return Deployed(effective.fingerprint, tuple(added), retired, effective)


def _previous_kept(
    views: ViewSet, live: list[dict[str, Any]], serves: Serves
) -> list[dict[str, Any]]:
    """The registered versions that stay computed beside the file's: per changed view, the
    newest version that serves, while the file's version of it does not serve yet."""
    in_file = {d.totals.name for d in views.declared}
    kept: dict[str, dict[str, Any]] = {}
    for row in sorted(live, key=lambda r: r["deployed_at_ms"]):
        name = row["view_name"]
        if row["storage_name"] in in_file or name not in {d.name for d in views.declared}:
            continue
        successor_serves = any(
            r["view_name"] == name and r["storage_name"] in in_file and serves(r) for r in live
        )
        if serves(row) and not successor_serves:
            kept[name] = row  # the newest serving one wins
    return list(kept.values())


def _add_new_versions(
    conn: Connection,
    topic: str,
    views: ViewSet,
    tables: ViewTables,
    live: list[dict[str, Any]],
    now_ms: int,
) -> list[str]:
    """Register the file's versions the store does not compute yet, at the deploy position
    (each partition's stored next offset and newest applied Kafka timestamp)."""
    tables.create_declared(conn)
    state = partition_state.c
    positions = {
        p: [offset, max_ts]
        for p, offset, max_ts in conn.execute(
            select(state.kafka_partition, state.next_offset, state.max_kafka_ts).where(
                state.topic == topic
            )
        )
    }
    computed = {r["storage_name"] for r in live}
    added = []
    for declared in views.declared:
        storage = declared.totals.name
        if storage in computed:
            continue  # computed since an earlier deploy: its rows are whole
        for view in declared.computed:  # a retired version's rows have a gap: start over
            conn.execute(delete(tables[view.name]))
        conn.execute(delete(view_versions).where(view_versions.c.storage_name == storage))
        conn.execute(
            view_versions.insert().values(
                storage_name=storage,
                view_name=declared.name,
                version=declared.version,
                deployed_at_ms=now_ms,
                from_positions=json.dumps(positions, sort_keys=True),
                tables=json.dumps([tables[v.name].name for v in declared.computed]),
                declaration=declared.declaration.model_dump_json(),
                superseded_at_ms=None,
                retired_at_ms=None,
            )
        )
        added.append(f"{declared.name}@{declared.version}")
    return added


def _take_write_lock(conn: Connection, topic: str, lock: str | None) -> None:
    """The lock every apply transaction takes first: PostgreSQL's lock statement, or on
    SQLite a write (which takes the database's write lock) that changes nothing."""
    if lock is not None:
        conn.exec_driver_sql(lock)
    else:
        conn.execute(delete(deployment).where(deployment.c.topic == topic, False))


def check_deployment(conn: Connection, topic: str, fingerprint: str) -> None:
    """Raise :class:`StaleDeploymentError` unless ``fingerprint`` is the one in force (call
    it holding the write lock, before writing)."""
    stored = deployed_fingerprint(conn, topic)
    if stored != fingerprint:
        raise StaleDeploymentError(
            f"the speed store runs views deployment {stored}, this process read {fingerprint} "
            "from its views file: restarting on the current file"
        )


RETIRED_GRACE_MS = 10 * 60_000  # a retired version's tables outlive its retirement this long


def drop_retired(engine: Engine, now_ms: int, grace_ms: int = RETIRED_GRACE_MS) -> list[str]:
    """Drop the speed tables of versions retired more than ``grace_ms`` ago; return them.

    Nothing writes them (a process computing a retired version runs another deployment and
    cannot commit) and serving reads no retired version; the grace covers a request that
    checked the version just before it was retired."""

    def drop() -> list[str]:
        dropped = []
        with engine.begin() as conn:
            rows = conn.execute(
                select(view_versions.c.storage_name, view_versions.c.tables).where(
                    view_versions.c.retired_at_ms < now_ms - grace_ms,
                    view_versions.c.tables != "[]",
                )
            ).all()
            for storage, listed in rows:
                for name in json.loads(listed):
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
                    dropped.append(name)
                conn.execute(
                    update(view_versions)
                    .where(view_versions.c.storage_name == storage)
                    .values(tables="[]")
                )
        return dropped

    return retry_transient(drop)
