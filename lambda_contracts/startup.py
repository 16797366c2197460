"""Start-up checks every long-running process makes before it takes work.

A misconfiguration (an unreachable S3 endpoint, a missing bucket, wrong credentials) stops the
process at once with one clear line and exit code 78, which supervisors read as "do not
restart": a restart cannot fix a setting, and a crash loop would bury the message.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import structlog
from pydantic import ValidationError

from lambda_contracts.kafka_access import (
    REFUSALS,
    KafkaRefused,
    check_kafka_access,
    refusal_line,
)
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings, get_settings
from lambda_contracts.storage import StorageCheckError
from lambda_contracts.view_declarations import DeclarationError
from lambda_contracts.view_set import ViewSet

EXIT_CONFIG = 78  # EX_CONFIG (sysexits.h): fix the configuration, then start again


def checked_settings() -> Settings:
    """The process's settings; an invalid one exits 78 with a line per problem, naming the
    variable (a traceback would bury it, and a restart would not fix it)."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            where = f"setting LAMBDA_{field.upper()}" if field else "settings"
            print(f"error: invalid {where}: {error['msg']}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None


def checked_layout(settings: Settings) -> Layout:
    """The configured layout once its store answered; else exit 78 with the reason."""
    layout = Layout.of(settings)
    try:
        layout.store.check()
    except StorageCheckError as exc:
        structlog.get_logger("startup").error("storage unusable", error=str(exc))
        print(f"error: storage {layout.store.describe()}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None
    return layout


def checked_views(settings: Settings) -> ViewSet:
    """The views of ``LAMBDA_VIEWS_FILE``; an invalid file exits 78 with its one-line reason."""
    try:
        return ViewSet.load(settings.views_file)
    except DeclarationError as exc:
        print(f"error: invalid views file: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None


def checked_kafka_access(settings: Settings) -> None:
    """Exit 78 with the broker's reason if it refuses this process's credentials."""
    try:
        check_kafka_access(settings)
    except KafkaRefused as exc:
        exit_refused(str(exc))


def exit_refused(line: str) -> NoReturn:
    """Print ``line`` (a :func:`refusal_line`) and exit 78: the brokers refuse this client,
    and starting it again would not change their answer."""
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG)


def exit_if_refused(settings: Settings, exc: BaseException) -> None:
    """Exit 78 if ``exc`` is a broker's refusal (an ACL, the credentials); else return."""
    if isinstance(exc, REFUSALS):
        exit_refused(refusal_line(settings, exc))
