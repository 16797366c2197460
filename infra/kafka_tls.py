"""TLS material for a Kafka listener: a private CA (openssl) and the broker's keystore (keytool).

The classic Kafka recipe, with the tools a JDK host already has: openssl makes a CA; keytool
makes the broker's key pair in a PKCS12 keystore and its signing request; openssl signs it with
the addresses clients dial as subject alternative names (kafka-python checks the host name);
keytool imports the chain. Clients trust ``ca_pem`` (``LAMBDA_KAFKA_SSL_CAFILE``).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

VALID_DAYS = 30


class TlsToolError(RuntimeError):
    """openssl or keytool is missing or failed."""


@dataclass(frozen=True)
class BrokerTls:
    """What a broker's SSL settings and its clients need."""

    ca_pem: Path
    keystore: Path  # PKCS12: the broker's key, its certificate and the CA
    password: str

    def broker_config(self, prefix: str = "") -> dict[str, str]:
        """The broker's ``ssl.*`` keys (``prefix``: ``listener.name.<listener>.`` or none)."""
        return {
            f"{prefix}ssl.keystore.type": "PKCS12",
            f"{prefix}ssl.keystore.location": str(self.keystore),
            f"{prefix}ssl.keystore.password": self.password,
            f"{prefix}ssl.key.password": self.password,
        }


def _run(*cmd: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise TlsToolError(f"{cmd[0]} not found: install it (openssl, or a JDK for keytool)")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise TlsToolError(f"{' '.join(cmd[:2])} failed: {result.stderr or result.stdout}")


def _subject_alt_names(hosts: Sequence[str]) -> str:
    names = []
    for host in hosts:
        try:
            ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def make_broker_tls(directory: Path, hosts: Sequence[str]) -> BrokerTls:
    """A fresh CA and a broker keystore whose certificate names every address in ``hosts``."""
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    keystore, csr = directory / "broker.p12", directory / "broker.csr"
    signed, extensions = directory / "broker.pem", directory / "broker.ext"
    extensions.write_text(f"subjectAltName={_subject_alt_names(hosts)}\n")
    days = ["-days", str(VALID_DAYS)]
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", *days,
         "-keyout", str(ca_key), "-out", str(ca_pem), "-subj", "/CN=lambda-ca")  # fmt: skip
    store = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
    _run("keytool", "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
         "-dname", "CN=lambda-kafka", "-validity", str(VALID_DAYS), "-keypass", password,
         *store)  # fmt: skip
    _run("keytool", "-certreq", "-alias", "broker", "-file", str(csr), *store)
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(signed), *days, "-extfile", str(extensions))  # fmt: skip
    _run("keytool", "-importcert", "-alias", "ca", "-file", str(ca_pem), "-noprompt", *store)
    _run("keytool", "-importcert", "-alias", "broker", "-file", str(signed), "-noprompt", *store)
    ca_key.unlink()  # nothing signs with it again
    return BrokerTls(ca_pem=ca_pem, keystore=keystore, password=password)
