"""The catalog of batch versions: which exist, their manifests, which passed validation.

The read side every other batch module builds on (publish and rollback in ``versions``, the
keep window and holds in ``retention``, the horizon checks in ``horizon``); it imports none of
them. A version exists once its manifest does (the job writes it last).
"""

from __future__ import annotations

import re

from lambda_contracts.layout import Layout
from lambda_contracts.manifest import Manifest

VERSION_ID = re.compile(r"^v\d{8}T\d{6}Z-[A-Za-z0-9_.-]+$")


class VersionError(RuntimeError):
    """A version is missing, incomplete or cannot be published."""


def read_manifest(layout: Layout, version: str) -> Manifest:
    manifest = layout.read_manifest(version)
    if manifest is None:
        raise VersionError(f"version {version} has no manifest (incomplete or unknown)")
    return manifest


def read_manifest_versioned(layout: Layout, version: str) -> tuple[Manifest, str]:
    """The manifest and its etag: a verdict is stored only on the manifest it checked."""
    found = layout.store.get_versioned(layout.manifest_key(version))
    if found is None:
        raise VersionError(f"version {version} has no manifest (incomplete or unknown)")
    return Manifest.parse(found.data), found.etag


def is_validated(manifest: Manifest | None) -> bool:
    return manifest is not None and manifest.validated


def require_validated(layout: Layout, version: str) -> Manifest:
    """The manifest of ``version``; raise VersionError unless it passed validation."""
    manifest = read_manifest(layout, version)
    if not is_validated(manifest):
        raise VersionError(f"version {version} is not validated; it cannot be made CURRENT")
    return manifest


def list_versions(layout: Layout) -> list[str]:
    """Complete versions (those with a manifest), oldest first."""
    return [v for v, complete in layout.version_ids().items() if complete and VERSION_ID.match(v)]


def validated_versions(layout: Layout) -> list[str]:
    """Complete versions that passed validation, oldest first."""
    return [v for v in list_versions(layout) if is_validated(layout.read_manifest(v))]


def safe_expiry_horizon(layout: Layout, keep: int) -> int:
    """The horizon below which speed rows may go: that of the oldest validated version kept.

    Keeping speed rows back to the oldest retained version makes a rollback to any of them
    exact, and leaves in-flight readers of the previous version their rows. Only validated
    versions count: a failed run can be neither published nor rolled back to.
    """
    current = layout.read_current()
    if current is None:
        return 0
    kept = validated_versions(layout)[-keep:]
    horizons = [read_manifest(layout, v).horizon_ms for v in kept] + [current.horizon_ms]
    return min(horizons)
