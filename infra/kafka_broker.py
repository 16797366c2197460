"""The local Apache Kafka broker: jars from Maven Central, KRaft storage, the java command.

One combined broker+controller, data under ``data/kafka`` so it survives restarts; storage is
formatted on first start only. ``KAFKA_HOME`` (an Apache Kafka distribution) replaces the Maven
jars when set.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from lambda_contracts.layout import Layout
from lambda_contracts.settings import PROJECT_ROOT, Settings

KAFKA_CONFIG_DIR = PROJECT_ROOT / "infra" / "kafka"
JARS_DIR = PROJECT_ROOT / ".cache" / "kafka" / "libs"


class BrokerSetupError(RuntimeError):
    """The broker cannot be prepared (no java, jars not fetchable, bad storage)."""


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise BrokerSetupError("java not found: install a JDK 17+ or set JAVA_HOME")
    return found


def libs_dir() -> Path:
    home = os.environ.get("KAFKA_HOME")
    return Path(home) / "libs" if home else JARS_DIR


def ensure_jars() -> Path:
    """Fetch the broker's jars with Maven unless present (or KAFKA_HOME is used)."""
    libs = libs_dir()
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    if os.environ.get("KAFKA_HOME"):
        raise BrokerSetupError(f"KAFKA_HOME is set but {libs} holds no kafka_2.13 jar")
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerSetupError("mvn not found: needed once to fetch the Kafka jars")
    subprocess.run(
        [mvn, "-q", "-B", "-f", str(KAFKA_CONFIG_DIR / "pom.xml"), "package"], check=True
    )
    return libs


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def render_config(settings: Settings, node: dict[str, str] | None = None) -> Path:
    """server.properties with this instance's ports and log directory filled in.

    ``node`` overrides more keys: a node of a multi-broker cluster gives its id, the voters,
    its listeners and the replication settings (``infra/cluster``).
    """
    layout = Layout(settings.data_dir)
    host, port = _host_port(settings.bootstrap_servers[0])
    ctl = settings.kafka_controller_port
    overrides = {
        "log.dirs": str(layout.kafka_dir / "logs"),
        "controller.quorum.voters": f"1@{host}:{ctl}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        **(node or {}),
    }
    lines = []
    for line in (KAFKA_CONFIG_DIR / "server.properties").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in overrides and not line.lstrip().startswith("#"):
            line = f"{key}={overrides.pop(key)}"
        lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items()]
    target = layout.kafka_dir / "server.properties"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    return target


def java_base(settings: Settings) -> list[str]:
    return [
        java_executable(),
        f"-Xmx{settings.kafka_heap}",
        f"-Xms{settings.kafka_heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_CONFIG_DIR / 'log4j2.properties'}",
        "-cp",
        f"{libs_dir()}/*",
    ]


def new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 random bytes), as Kafka's Uuid.randomUuid
    makes them: never starting with '-', which a command line would read as an option (one
    id in 64 did, and then the storage format failed)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def format_storage_once(
    settings: Settings, config: Path, cluster_id: str | None = None, scram: Sequence[str] = ()
) -> None:
    """Format KRaft storage on first start only; later starts keep the data. The nodes of one
    cluster share ``cluster_id``; a single broker makes its own. ``scram``: SCRAM users to
    write into the metadata (``--add-scram`` arguments, ``infra.kafka_secured``)."""
    log_dir = Layout(settings.data_dir).kafka_dir / "logs"
    if (log_dir / "meta.properties").exists():
        return
    cmd = [*java_base(settings), "kafka.tools.StorageTool", "format"]
    cmd += ["-t", cluster_id or new_cluster_id(), "-c", str(config), "--ignore-formatted"]
    for user in scram:
        cmd += ["--add-scram", user]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerSetupError(f"formatting Kafka storage failed: {result.stderr or result.stdout}")


def broker_command(
    settings: Settings,
    node: dict[str, str] | None = None,
    cluster_id: str | None = None,
    scram: Sequence[str] = (),
) -> list[str]:
    """Prepare jars, config and storage; return the command that runs the broker."""
    ensure_jars()
    config = render_config(settings, node)
    format_storage_once(settings, config, cluster_id, scram)
    return [*java_base(settings), "kafka.Kafka", str(config)]
