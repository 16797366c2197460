"""A broker's refusal of a client's credentials or rights, as one line and a stop.

A wrong password, a certificate the client does not trust, or a missing ACL is a
configuration error: retrying cannot fix it, and a client that retries forever buries it under
connection errors. kafka-python only logs a failed SASL authentication and reconnects, so
:func:`check_kafka_access` authenticates once at start-up and raises :class:`KafkaRefused` with
the broker's reason; an authorization error later (a topic or group the principal may not use)
is one of :data:`REFUSALS`. Processes turn either into exit 78 (``lambda_contracts.startup``).
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from kafka.conn import BrokerConnection
from kafka.errors import (
    AuthorizationError,
    IllegalSaslStateError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from lambda_contracts.settings_kafka import KafkaSettings

# Errors of the broker that say "not these credentials" or "not this principal".
REFUSALS: tuple[type[Exception], ...] = (
    AuthorizationError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


CONN_LOG = logging.getLogger("kafka.conn")


class _Silence(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


class KafkaRefused(RuntimeError):
    """The brokers refuse this client: a setting or an ACL must change, not the timing."""


def who(settings: KafkaSettings) -> str:
    """The client as the broker sees it: its user (if any), protocol and first server."""
    user = settings.kafka_sasl_plain_username
    principal = f"user {user!r} over " if user else ""
    return f"{principal}{settings.kafka_security_protocol} to {settings.bootstrap_servers[0]}"


def refusal_line(settings: KafkaSettings, exc: BaseException) -> str:
    """The one line a refused process prints before it exits."""
    reason = str(exc)  # a broker's error reads "[Error 29] TopicAuthorizationFailedError: …"
    if type(exc).__name__ not in reason:
        reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return f"error: Kafka access refused for {who(settings)}: {reason}"


def _first_refusal(errors: list[BaseException]) -> BaseException | None:
    for error in errors:
        if isinstance(error, REFUSALS):
            return error
        cause = error.args[0] if error.args else None
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            error
        ):
            return error
    return None


def check_kafka_access(settings: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Connect to the first bootstrap server and authenticate once; raise KafkaRefused if the
    broker refuses the credentials or the TLS handshake fails on trust. Without SASL or TLS
    there is nothing to check; a broker that does not answer is left to the clients' retries
    (it may be starting)."""
    config: dict[str, Any] = settings.kafka_client_config
    if config["security_protocol"] == "PLAINTEXT":
        return
    host, _, port = settings.bootstrap_servers[0].rpartition(":")
    conn = BrokerConnection(host, int(port), socket.AF_UNSPEC, **config)
    errors: list[BaseException] = []
    close = conn.close

    def recording_close(error: BaseException | None = None) -> None:
        if error is not None:
            errors.append(error)
        close(error)

    conn.close = recording_close  # type: ignore[method-assign]  # kafka-python logs, not raises
    quiet = _Silence()  # its own error lines would bury the one this check prints
    CONN_LOG.addFilter(quiet)
    try:
        conn.connect_blocking(timeout_s)
    except Exception as exc:  # raised by the handshake itself (a refusal is one)
        errors.append(exc)
    finally:
        close()
        CONN_LOG.removeFilter(quiet)
    refusal = _first_refusal(errors)
    if refusal is not None:
        raise KafkaRefused(refusal_line(settings, refusal)) from refusal
