"""Tables of the speed store, derived from the view declarations (SQLAlchemy Core).

The speed layer writes them, the serving layer reads them and the batch layer expires rows
below its horizon; all three take the definitions from here. Amounts are integer cents
(BigInteger), so SQLite and PostgreSQL both sum them exactly.

- ``speed_partition_state``: per partition, the next offset whose effect is not yet in the
  store, and counters. Updated in the same transaction as the aggregates.
- ``speed_partition_halts``: partitions whose log contradicts their stored offsets (topic
  recreated or truncated, records expired uncounted): no process reads them until
  ``lambda-speed reset-offsets`` clears the row, so a rebalance cannot lift a halt.
- ``speed_dedup``: TransactionIDs seen within the dedup horizon. On SQLite a WITHOUT ROWID
  table: its primary key's B-tree holds the rows, so a claim writes one tree fewer and a
  look-up reads the timestamp from the key's tree (claim and judge 0.98 -> 0.89 us per event,
  the file 17 % smaller at 2M events; bench/README.md).
- ``speed_<view>``: one row per (dimensions, window_start, ingest_bucket).
- ``batch_runs``: what each batch publish absorbed and how far speed had drifted from it.
- ``speed_deployment``: per topic, the fingerprint of the views file the store computes
  (:class:`~lambda_contracts.view_set.ViewSet`); every apply transaction checks it, so a
  process holding another file stops instead of writing what this deployment does not expect.
- ``speed_view_versions``: each declared view version the store computes or computed: its
  declaration, from which offset of each partition on (and the newest Kafka timestamp before
  it), when a newer version of its view superseded it and when it was retired. A version's
  speed rows cover exactly the records from those offsets on.
- a declared view's tables are created when it is deployed, named by its storage name.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, Text

from lambda_contracts.events import ID_MAX_LENGTH
from lambda_contracts.views import VIEWS, View

metadata = MetaData()

partition_state = Table(
    "speed_partition_state",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("events", BigInteger, nullable=False, default=0),
    Column("duplicates", BigInteger, nullable=False, default=0),
    Column("rejected", BigInteger, nullable=False, default=0),
    Column("max_kafka_ts", BigInteger, nullable=False, default=0),
    Column("updated_at_ms", BigInteger, nullable=False, default=0),
)

partition_halts = Table(
    "speed_partition_halts",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("halted_at_ms", BigInteger, nullable=False),
)

dedup = Table(
    "speed_dedup",
    metadata,
    Column("transaction_id", String(ID_MAX_LENGTH), primary_key=True),
    Column("ingest_ts", BigInteger, nullable=False, index=True),
    sqlite_with_rowid=False,
)

batch_runs = Table(
    "batch_runs",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("horizon_ms", BigInteger, nullable=False),
    Column("previous_horizon_ms", BigInteger, nullable=False),
    Column("published_at_ms", BigInteger, nullable=False),
    Column("batch_events", BigInteger, nullable=False),
    Column("speed_events", BigInteger),
    Column("drift_events", BigInteger),
    Column("drift_cents", BigInteger),
    Column("report", Text),
)


deployment = Table(
    "speed_deployment",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("deployed_at_ms", BigInteger, nullable=False),
)

view_versions = Table(
    "speed_view_versions",
    metadata,
    Column("storage_name", String(64), primary_key=True),
    Column("view_name", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("deployed_at_ms", BigInteger, nullable=False),
    # JSON: {partition: [next offset at the deploy, newest Kafka timestamp applied before it]}
    Column("from_positions", Text, nullable=False),
    Column("tables", Text, nullable=False),  # JSON: the speed tables of its views
    Column("declaration", Text, nullable=False),  # JSON: the [[views]] table it was built from
    # When a newer version of its view was deployed; it is still computed (and answers) until
    # that one serves.
    Column("superseded_at_ms", BigInteger),
    Column("retired_at_ms", BigInteger),
)


def _view_table(view: View, meta: MetaData = metadata) -> Table:
    columns = [Column(d, String(ID_MAX_LENGTH), primary_key=True) for d in view.dimensions]
    columns.append(Column("window_start", BigInteger, primary_key=True))
    columns.append(Column("ingest_bucket", BigInteger, primary_key=True, index=True))
    columns += [Column(m.name, BigInteger, nullable=False) for m in view.measures]
    return Table(f"speed_{view.name}", meta, *columns)


view_tables: dict[str, Table] = {view.name: _view_table(view) for view in VIEWS}


class ViewTables:
    """The speed tables of some views: the built-in views' from :data:`view_tables`, the
    others (declared views) in a MetaData of their own, created when deployed."""

    def __init__(self, views: Iterable[View]) -> None:
        self.declared = MetaData()
        self._tables = {
            v.name: view_tables[v.name] if v.name in view_tables else _view_table(v, self.declared)
            for v in views
        }

    def __getitem__(self, view_name: str) -> Table:
        return self._tables[view_name]

    def create_declared(self, conn: Connection) -> None:
        """Create the declared views' tables that do not exist yet."""
        self.declared.create_all(conn)
