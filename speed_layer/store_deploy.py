"""Deploying a views file into the speed store, and the check every transaction makes of it.

A speed process deploys the file it read at start-up (:func:`deploy`), in one transaction that
holds the store's write lock, like an apply:

- a declared view version new to the store gets its tables, and a row in
  ``speed_view_versions`` with each partition's stored next offset and newest applied Kafka
  timestamp at that moment. Every record from those offsets on is applied by a process that
  computes the version (below), every record before them is not: the version's speed rows
  cover exactly the records from those positions on, and the batch layer covers the rest once
  its horizon lies past the newest timestamp recorded (``lambda_contracts.view_set``);
- a version no longer in the file is retired (its rows stay until it is cleaned up);
- the topic's row of ``speed_deployment`` takes the file's fingerprint.

Each apply transaction reads that fingerprint after taking the write lock
(:func:`check_deployment`): a process still holding another file stops with
:class:`StaleDeploymentError` before it writes anything, so no record is applied without the
views of the deployment in force. Deploying the fingerprint already in force changes nothing,
so every process of a group deploys at start-up and only the first one's deploy does anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, select, update

from lambda_contracts.store_schema import ViewTables, deployment, partition_state, view_versions
from lambda_contracts.view_set import ViewSet, deployed_fingerprint
from speed_layer.store_retry import retry_transient
from speed_layer.store_sql import dialect_insert


class StaleDeploymentError(RuntimeError):
    """The store runs another views file than this process read: restart on the new file."""


@dataclass(frozen=True)
class Deployed:
    fingerprint: str
    added: tuple[str, ...]  # "name@version" of each version the deploy added
    retired: tuple[str, ...]


def deploy(engine: Engine, topic: str, views: ViewSet, lock: str | None) -> Deployed:
    """Make ``views`` the store's deployment for ``topic`` (see the module's docstring)."""
    tables = ViewTables(views.computed)
    return retry_transient(lambda: _deploy_once(engine, topic, views, tables, lock))


def _deploy_once(
    engine: Engine, topic: str, views: ViewSet, tables: ViewTables, lock: str | None
) -> Deployed:
    now_ms = int(time.time() * 1000)
    with engine.begin() as conn:
        _take_write_lock(conn, topic, lock)
        if deployed_fingerprint(conn, topic) == views.fingerprint:
            return Deployed(views.fingerprint, (), ())
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
        versions = view_versions.c
        known = {
            row.storage_name: row.retired_at_ms
            for row in conn.execute(select(versions.storage_name, versions.retired_at_ms))
        }
        added = []
        for declared in views.declared:
            storage = declared.totals.name
            if storage in known and known[storage] is None:
                continue  # computed since an earlier deploy: its rows are whole
            for view in declared.computed:  # a retired version's rows have a gap: start over
                conn.execute(delete(tables[view.name]))
            conn.execute(delete(view_versions).where(versions.storage_name == storage))
            conn.execute(
                view_versions.insert().values(
                    storage_name=storage,
                    view_name=declared.name,
                    version=declared.version,
                    deployed_at_ms=now_ms,
                    from_positions=json.dumps(positions, sort_keys=True),
                    tables=json.dumps([tables[v.name].name for v in declared.computed]),
                    retired_at_ms=None,
                )
            )
            added.append(f"{declared.name}@{declared.version}")
        keep = [d.totals.name for d in views.declared]
        retiring = conn.execute(
            update(view_versions)
            .where(versions.retired_at_ms.is_(None), versions.storage_name.not_in(keep))
            .values(retired_at_ms=now_ms)
            .returning(versions.view_name, versions.version)
        ).all()
        stmt = dialect_insert(conn, deployment).values(
            topic=topic, fingerprint=views.fingerprint, deployed_at_ms=now_ms
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[deployment.c.topic],
                set_={"fingerprint": views.fingerprint, "deployed_at_ms": now_ms},
            )
        )
    return Deployed(
        views.fingerprint, tuple(added), tuple(f"{name}@{version}" for name, version in retiring)
    )


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
