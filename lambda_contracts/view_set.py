"""The views a deployment computes: the built-in ones and those of the views file.

Every layer loads one :class:`ViewSet` from ``LAMBDA_VIEWS_FILE`` at start-up and computes or
serves :attr:`ViewSet.computed`; none edits it while it runs. A different file is a different
deployment (:attr:`ViewSet.fingerprint`): the speed store records the one it runs, so a
process still holding an older file stops rather than write state the new one does not expect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.store_schema import deployment
from lambda_contracts.view_declarations import Declarations, load_declarations
from lambda_contracts.views import VIEWS, View


@dataclass(frozen=True)
class ViewSet:
    declared: tuple[DeclaredView, ...] = ()

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
        """Every view the speed and batch layers compute: built-in, then declared."""
        return (*VIEWS, *(view for d in self.declared for view in d.computed))

    @property
    def fingerprint(self) -> str:
        """The deployment's identity: its declared (name, version) pairs, hashed."""
        pairs = sorted(f"{d.name}:{d.version}" for d in self.declared)
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:16]

    def by_name(self) -> dict[str, DeclaredView]:
        return {d.name: d for d in self.declared}


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
