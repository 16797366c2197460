"""The order in which the speed layer judges copies of an event.

The store aggregates inside the database (each view's ``batch_sql``, keyed additionally by
ingest bucket, see :mod:`speed_layer.store`); what stays in Python is the log order that the
dedup decisions follow when one poll batch holds several copies of a TransactionID.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lambda_contracts.layout import LOG_ORDER

Row = Mapping[str, Any]


def log_order(row: Row) -> tuple[int, ...]:
    """The position of a record in log order (``LOG_ORDER``: Kafka timestamp, partition,
    offset): "first in log order wins" means first by this key, in both layers."""
    return tuple(row[column] for column in LOG_ORDER)
