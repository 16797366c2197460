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


@dataclass(frozen=True)
class CertificateAuthority:
    """A private CA: its certificate (what clients trust) and its key (what signs)."""

    pem: Path
    key: Path


def make_ca(directory: Path) -> CertificateAuthority:
    """A fresh CA under ``directory`` (``ca.pem``, ``ca.key`` mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(VALID_DAYS),
         "-keyout", str(ca_key), "-out", str(ca_pem), "-subj", "/CN=lambda-ca")  # fmt: skip
    ca_key.chmod(0o600)
    return CertificateAuthority(ca_pem, ca_key)


def make_keystore(
    directory: Path, ca: CertificateAuthority, hosts: Sequence[str], name: str = "broker"
) -> BrokerTls:
    """A PKCS12 keystore ``<name>.p12`` whose certificate (subject ``CN=<name>``, signed by
    ``ca``) names every address in ``hosts``; also a client certificate for mutual TLS."""
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    keystore, csr = directory / f"{name}.p12", directory / f"{name}.csr"
    signed, extensions = directory / f"{name}.pem", directory / f"{name}.ext"
    extensions.write_text(f"subjectAltName={_subject_alt_names(hosts)}\n")
    store = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
    _run("keytool", "-genkeypair", "-alias", name, "-keyalg", "RSA", "-keysize", "2048",
         "-dname", f"CN={name}", "-validity", str(VALID_DAYS), "-keypass", password,
         *store)  # fmt: skip
    _run("keytool", "-certreq", "-alias", name, "-file", str(csr), *store)
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.pem), "-CAkey", str(ca.key),
         "-CAcreateserial", "-out", str(signed), "-days", str(VALID_DAYS),
         "-extfile", str(extensions))  # fmt: skip
    _run("keytool", "-importcert", "-alias", "ca", "-file", str(ca.pem), "-noprompt", *store)
    _run("keytool", "-importcert", "-alias", name, "-file", str(signed), "-noprompt", *store)
    return BrokerTls(ca_pem=ca.pem, keystore=keystore, password=password)


def make_broker_tls(directory: Path, hosts: Sequence[str]) -> BrokerTls:
    """A fresh CA and a broker keystore whose certificate names every address in ``hosts``."""
    ca = make_ca(directory)
    tls = make_keystore(directory, ca, hosts)
    ca.key.unlink()  # nothing signs with it again
    return tls
