"""The views a deployment computes: the built-in ones and those of the views file.

Every layer loads one :class:`ViewSet` from ``LAMBDA_VIEWS_FILE`` at start-up and computes or
serves :attr:`ViewSet.computed`; none edits it while it runs. The speed store's deploy adds
the previous versions of changed views it still computes (:func:`with_previous`). A different
set of versions is a different deployment (:attr:`ViewSet.fingerprint`): the speed store
records the one it runs, so a process computing another set stops rather than write state
the deployment in force does not expect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.store_schema import deployment, view_versions
from lambda_contracts.view_declarations import (
    Declarations,
    ViewDeclaration,
    load_declarations,
)
from lambda_contracts.views import VIEWS, View


@dataclass(frozen=True)
class ViewSet:
    declared: tuple[DeclaredView, ...] = ()
    # Versions of changed views still answering until their successors serve: computed too,
    # read from the speed store (:func:`with_previous`), not from the file.
    previous: tuple[DeclaredView, ...] = ()

    @classmethod
    def of(cls, declarations: Declarations) -> ViewSet:
        return cls(tuple(DeclaredView.of(d) for d in declarations.views))

    @classmethod
    def load(cls, path: Path) -> ViewSet:
        """The views file at ``path``, validated (raises
        :class:`~lambda_contracts.view_declarations.DeclarationError`, one line)."""
        return cls.of(load_declarations(path))

    @property
    def computed(self) -> tuple[View, ...]:
        """Every view the speed and batch layers compute: built-in, declared, previous."""
        versions = (*self.declared, *self.previous)
        return (*VIEWS, *(view for d in versions for view in d.computed))

    @property
    def fingerprint(self) -> str:
        """The deployment's identity: every version it computes (the file's, and the previous
        ones kept beside them), hashed."""
        pairs = sorted(f"{d.name}:{d.version}" for d in self.declared)
        pairs += sorted(f"previous {d.name}:{d.version}" for d in self.previous)
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:16]


def deployed_fingerprint(db: Connection | Engine, topic: str) -> str:
    """The fingerprint of the deployment the speed store runs for ``topic``; a store never
    deployed to runs the built-in views only."""
    query = select(deployment.c.fingerprint).where(deployment.c.topic == topic)
    if isinstance(db, Engine):
        with db.connect() as conn:
            found = conn.execute(query).scalar()
    else:
        found = db.execute(query).scalar()
    return found if found is not None else ViewSet().fingerprint


def registered_versions(db: Connection | Engine) -> list[dict[str, Any]]:
    """Every declared view version the speed store has deployed, retired ones too."""
    query = select(view_versions)
    if isinstance(db, Engine):
        with db.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
    return [dict(r) for r in db.execute(query).mappings()]


def with_previous(views: ViewSet, registered: list[dict[str, Any]]) -> ViewSet:
    """``views`` and the versions of its views the store still computes beside them: the
    previous version of a changed view, until its successor serves."""
    in_file = {d.totals.name for d in views.declared}
    previous = []
    for row in registered:
        if row["retired_at_ms"] is not None or row["storage_name"] in in_file:
            continue
        declared = DeclaredView.of(ViewDeclaration.model_validate_json(row["declaration"]))
        if declared.totals.name == row["storage_name"]:  # else computed under other semantics
            previous.append(declared)
    return ViewSet(views.declared, tuple(sorted(previous, key=lambda d: d.name)))
