"""``make cluster-chaos``: the cluster of ``make cluster-up`` under host faults, then a reckoning.

    .venv/bin/python -m bench.cluster_chaos [--seconds 300] [--rate 1000] [--seed 7]

Brings the cluster up on a fresh data directory (root needed: the hosts are network
namespaces) without the demo producer, and runs the adversarial stream (duplicates,
conflicting copies, late and malformed records) from the ``producer`` host at ``--rate``
events/s, acks=all. While it runs:

- ``kafka-2`` is SIGKILLed and brought back 20 s later (``cluster up``);
- ``speed-1`` is SIGKILLed: ``speed-2`` must own every partition within the session timeout;
  ``cluster up`` restarts ``speed-1`` and the partitions must rebalance back;
- ``speed-1``'s link is cut whole for 90 s (its veth down) at a moment its store session
  holds ``speed_dedup``'s lock: it loses the brokers and PostgreSQL mid-transaction. From the
  cut, ``speed-2`` must own every partition and have moved every partition's stored offset on
  (read from PostgreSQL: its transactions passed the dead session's lock) within 60 s; then
  the link comes back, ``cluster up`` restarts what is down and the partitions must rebalance
  back;
- ``speed-2`` is cut off from the three brokers for 30 s (blackhole routes in its host);
- ``spark-worker-1``'s link is cut for 45 s while a batch job runs on the cluster.

Then the producer stops and the serving host's API must equal the ground truth (the topic
read back whole, refereed by the independent oracle): totals, every account's summary, the
hourly series and the top accounts; a last batch run must publish views equal to the
oracle's; every valid offset must be landed exactly once on the object store; the DLQ must
hold exactly the invalid records; no partition may be left under-replicated; ``CURRENT`` must
only ever have pointed at validated versions. Writes ``bench/results/<report>.json`` and
exits non-zero unless every check holds.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy import bindparam, create_engine, select, text

from bench.chaos import Poller, conclude, final_batch, platform_cmd, print_log_tails, wait
from bench.chaos_check import (
    ALL_TIME,
    GroundTruth,
    LogRecord,
    api_differences,
    check_dlq,
    check_landing,
    convergence_s,
    read_log,
    reckoning_checks,
    series_and_top_differences,
    stream_figures,
)
from bench.common import exit_on_sigterm
from infra.airflow_env import admin_password
from infra.cluster.cli import kafka_report
from infra.cluster.services import Cluster
from infra.cluster.topology import CLUSTER_ENV, KAFKA_HOSTS, PORTS, Network
from infra.trigger_batch import AirflowClient
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings, get_settings
from lambda_contracts.store_schema import dedup, partition_state
from tests.support.oracle import oracle_views
from tests.support.pipeline import batch_views, mixed_stream, read_truth

console = Console()
ROOT = Path(__file__).resolve().parent.parent
BUCKET_MS = 30_000
SESSION_TIMEOUT_S = 10.0  # kafka-python's default session.timeout.ms, which the layer keeps
# The coordinator declares a silent member dead after the session timeout; the survivor then
# learns of the rebalance at its next heartbeat (3 s) and rejoins: allow that much more.
TAKEOVER_SLACK_S = 10.0
# A speed host whose link is cut mid-transaction: the server ends its session within about
# 20 s (lambda_contracts.db), the group's rebalance runs meanwhile; the survivor must count
# every partition again within LOCK_BOUND_S of the cut.
LINK_CUT_S = 90.0
LOCK_BOUND_S = 60.0
CUT_ATTEMPTS = 50


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = struct.Struct("16sH22x")  # struct ifreq: the name, then ifr_flags in its union


def set_link(name: str, up: bool) -> None:
    """``ip link set <name> up|down`` without forking ``ip``: a cut meant to land inside a
    store transaction must not wait for a process to start on a loaded machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, IFREQ.pack(name.encode(), 0)))[1]
        flags = flags | IFF_UP if up else flags & ~IFF_UP
        fcntl.ioctl(sock, SIOCSIFFLAGS, IFREQ.pack(name.encode(), flags))


class StoreWatch:
    """The speed store as the machine sees it (by the postgres host's address): each
    partition's stored offset, and which sessions of a host hold the store's write lock."""

    def __init__(self, cluster: Cluster, topic: str) -> None:
        self.topic = topic
        self.engine = create_engine(cluster.store_url(), connect_args={"connect_timeout": 5})
        self._offsets = select(partition_state.c.kafka_partition, partition_state.c.next_offset)
        self._holders = text(
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            f"WHERE l.locktype = 'relation' AND l.relation = '{dedup.name}'::regclass "
            "AND l.granted AND host(a.client_addr) = :addr"
        )
        self._alive = text("SELECT pid FROM pg_stat_activity WHERE pid IN :pids").bindparams(
            bindparam("pids", expanding=True)
        )

    def offsets(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._offsets.where(partition_state.c.topic == self.topic))
            return {int(p): int(o) for p, o in rows}

    def lock_holders(self, address: str) -> list[int]:
        """The backends of the host at ``address`` that hold ``speed_dedup``'s lock."""
        with self.engine.connect() as conn:
            return [int(pid) for (pid,) in conn.execute(self._holders, {"addr": address})]

    def alive(self, pids: list[int]) -> list[int]:
        with self.engine.connect() as conn:
            return [int(pid) for (pid,) in conn.execute(self._alive, {"pids": pids})]

    def close(self) -> None:
        self.engine.dispose()


class Faults:
    """The cluster's faults, each injected through the hosts' processes and links."""

    def __init__(self, cluster: Cluster, env: dict[str, str], partitions: int) -> None:
        self.cluster = cluster
        self.env = env
        self.partitions = partitions

    def kill(self, service: str) -> int:
        pid = self.cluster.supervisor.pid(service)
        if pid is None:
            raise RuntimeError(f"{service} is not running")
        os.killpg(pid, signal.SIGKILL)
        wait(lambda: self.cluster.supervisor.pid(service) is None, 30, f"{service} to die", 0.2)
        return pid

    def up(self) -> None:
        platform_cmd(self.env, "cluster", "up", "--no-demo", "--no-keeper")

    def owned(self, host: str) -> list[int] | None:
        """The partitions a speed host reports owning, or None if it does not answer."""
        report = self.cluster.speed_report(host)
        return None if report is None else list(report.get("partitions", []))

    def kill_broker(self) -> str:
        pid = self.kill("kafka-2")
        time.sleep(20)
        self.up()
        return f"SIGKILL kafka-2 [{pid}], back after 20 s"

    def kill_speed(self) -> str:
        pid = self.kill("speed-1")
        everything = list(range(self.partitions))
        took = wait(lambda: self.owned("speed-2") == everything, 120, "speed-2 to take over", 0.2)
        if took > SESSION_TIMEOUT_S + TAKEOVER_SLACK_S:
            raise RuntimeError(f"speed-2 took {took:.1f}s to own every partition")
        restarted = time.monotonic()
        self.up()
        wait(lambda: bool(self.owned("speed-1")), 180, "speed-1 to get partitions", 0.5)
        back = time.monotonic() - restarted
        shared = f"speed-1 {self.owned('speed-1')}, speed-2 {self.owned('speed-2')}"
        return (
            f"SIGKILL speed-1 [{pid}]: speed-2 owned every partition after {took:.1f}s; "
            f"restarted by cluster up, partitions rebalanced back {back:.1f}s later ({shared})"
        )

    def cut_speed_link(self, seconds: float = LINK_CUT_S) -> str:
        """Cut ``speed-1``'s link whole (its veth down) while its store session holds the
        store's lock; measure from the cut when ``speed-2`` owns every partition and when
        every partition's stored offset has moved past the cut's (no store transaction can
        commit before the dead session's lock is gone, and ``speed-1``'s partitions only
        move once ``speed-2`` counts them)."""
        everything = list(range(self.partitions))
        wait(
            lambda: bool(self.owned("speed-1")) and bool(self.owned("speed-2")),
            120,
            "both speed hosts to own partitions",
            0.5,
        )
        owned_before = self.owned("speed-1")
        veth = self.cluster.net.veth("speed-1")
        address = self.cluster.address("speed-1")
        store = StoreWatch(self.cluster, self.cluster.settings("speed-1").topic)
        cut_at: float | None = None
        try:
            # Cut at a moment speed-1's session holds the lock, and check half a second
            # later that it still does (a transaction that committed just before the cut
            # let go): if not, put the link back at once (TCP only retransmits) and try again.
            holders: list[int] = []
            attempts = 0
            while not holders:
                attempts += 1
                if attempts > CUT_ATTEMPTS:
                    raise RuntimeError("speed-1 never held the store's lock across a cut")
                if cut_at is not None:
                    set_link(veth, up=True)
                    cut_at = None
                    time.sleep(1)
                wait(lambda: bool(store.lock_holders(address)), 60, "speed-1 to lock", 0.005)
                cut_at = time.monotonic()
                set_link(veth, up=False)
                time.sleep(0.5)
                holders = store.lock_holders(address)
            at_cut = store.offsets()
            owned_s = freed_s = progress_s = None
            while time.monotonic() - cut_at < seconds:
                now = time.monotonic() - cut_at
                if owned_s is None and self.owned("speed-2") == everything:
                    owned_s = now
                with suppress(Exception):  # the store is reachable; a slow answer waits
                    if freed_s is None and not store.alive(holders):
                        freed_s = now
                    stored = store.offsets()
                    if progress_s is None and all(
                        stored.get(p, -1) > at_cut.get(p, -1) for p in everything
                    ):
                        progress_s = now
                if None not in (owned_s, freed_s, progress_s):
                    break
                time.sleep(0.25)
            time.sleep(max(0.0, cut_at + seconds - time.monotonic()))
        finally:
            if cut_at is not None:
                set_link(veth, up=True)
            store.close()
        back = time.monotonic()
        # speed-1 comes back fenced, or its watchdog ends it (no progress for 120 s): let it
        # settle either way before ``cluster up`` checks it (up fails on one that exits).
        supervisor = self.cluster.supervisor

        def settled() -> bool:
            report = self.cluster.speed_report("speed-1")
            return supervisor.pid("speed-1") is None or (report or {}).get("status") == "ok"

        wait(settled, 240, "speed-1 to recover or exit", 1)
        gone = supervisor.pid("speed-1") is None
        self.up()
        wait(lambda: bool(self.owned("speed-1")), 180, "speed-1 to get partitions", 0.5)
        rebalanced = time.monotonic() - back
        fmt = lambda s: "never" if s is None else f"{s:.1f}s"  # noqa: E731
        note = (
            f"speed-1's link cut for {seconds:.0f}s (attempt {attempts}) while its session "
            f"{holders} held {dedup.name}'s lock, owning {owned_before}: speed-2 owned every "
            f"partition after {fmt(owned_s)}, the session was gone after {fmt(freed_s)}, "
            f"every partition's stored offset moved on after {fmt(progress_s)} "
            f"(bound {LOCK_BOUND_S:.0f}s); link back, speed-1 "
            f"{'had exited, restarted by cluster up' if gone else 'recovered by itself'}, "
            f"partitions rebalanced back {rebalanced:.1f}s later "
            f"(speed-1 {self.owned('speed-1')}, speed-2 {self.owned('speed-2')})"
        )
        if owned_s is None or progress_s is None or progress_s > LOCK_BOUND_S:
            raise RuntimeError(note)
        return note

    def cut_speed_from_kafka(self, seconds: float = 30) -> str:
        ns = self.cluster.net.namespace("speed-2")
        routes = [f"{self.cluster.address(h)}/32" for h in KAFKA_HOSTS]
        for route in routes:
            subprocess.run(["ip", "-n", ns, "route", "add", "blackhole", route], check=True)
        try:
            time.sleep(seconds)
        finally:
            for route in routes:
                subprocess.run(["ip", "-n", ns, "route", "del", "blackhole", route], check=True)
        return f"speed-2 cut off from the brokers for {seconds:.0f}s"

    def cut_worker_during_batch(self, seconds: float = 45) -> str:
        master = f"http://{self.cluster.address('spark-master')}:8080/json/"

        def running_app() -> str | None:
            with suppress(httpx.HTTPError, ValueError, IndexError, KeyError):
                return httpx.get(master, timeout=2).json()["activeapps"][0]["id"]
            return None

        wait(lambda: running_app() is not None, 300, "a batch job on the cluster", 0.5)
        app = running_app()
        veth = self.cluster.net.veth("spark-worker-1")
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        try:
            time.sleep(seconds)
        finally:
            subprocess.run(["ip", "link", "set", veth, "up"], check=True)

        def finished() -> dict[str, Any] | None:
            with suppress(httpx.HTTPError, ValueError, KeyError):
                done = httpx.get(master, timeout=2).json()["completedapps"]
                return next((a for a in done if a["id"] == app), None)
            return None

        wait(lambda: finished() is not None, 900, f"{app} to end", 2)
        ended = finished() or {}
        note = f"spark-worker-1's link cut for {seconds:.0f}s during {app}"
        note += f", which ended {ended.get('state')} after {ended.get('duration', 0) / 1000:.0f}s"
        if ended.get("state") != "FINISHED":
            raise RuntimeError(note)
        return note


class CurrentWatch:
    """Every version ``CURRENT`` pointed at during the run, with whether it was validated
    when first seen (read from its manifest, as the serving layer would)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.seen: dict[str, bool] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with suppress(Exception):  # the store may be briefly unreachable; look again
                current = self.layout.read_current()
                if current is not None and current.version not in self.seen:
                    manifest = self.layout.read_manifest(current.version)
                    ok = manifest is not None and manifest.validated
                    self.seen[current.version] = ok
            self.stop.wait(1.0)


def dump_log(out: Path) -> None:
    """Run inside a host: write the transactions topic and the DLQ, read back whole."""
    settings = get_settings()
    logs = {t: read_log(settings, t) for t in (settings.topic, settings.dlq_topic)}
    out.write_bytes(pickle.dumps(logs))


def read_logs(cluster: Cluster, env: dict[str, str], out: Path) -> dict[str, list[LogRecord]]:
    argv = cluster.on("producer", [sys.executable, "-m", "bench.cluster_chaos", "--dump", str(out)])
    subprocess.run(argv, env={**env, **cluster.env("producer")}, cwd=ROOT, check=True, timeout=600)
    return pickle.loads(out.read_bytes())


def in_thread(fn: Callable[[], str], results: list[tuple[str, str]], name: str) -> threading.Thread:
    def target() -> None:
        try:
            results.append((name, fn()))
        except Exception as exc:  # reported as a failed check
            results.append((name, f"error: {type(exc).__name__}: {exc}"))
        console.print(f"        {name}: {results[-1][1]}")

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_", "AIRFLOW"))}
    env = {
        **inherited,
        "LAMBDA_DATA_DIR": str(data_dir),
        "LAMBDA_BUCKET_MS": str(BUCKET_MS),
        "LAMBDA_BATCH_SCHEDULE_MINUTES": "1",
        "LAMBDA_IDLE_SEAL_GRACE_MS": "1000",
        "LAMBDA_CLUSTER_PREFIX": args.prefix,
        "LAMBDA_CLUSTER_SUBNET": args.subnet,
    }
    cluster = Cluster.of(data_dir, Network(prefix=args.prefix, subnet=args.subnet))
    os.environ.update({"AWS_ACCESS_KEY_ID": cluster.access_key,
                       "AWS_SECRET_ACCESS_KEY": cluster.secret_key})  # fmt: skip
    # The machine's own view of the master dataset: the s3 host by its address.
    checks = Settings(
        data_dir=data_dir / "checks",
        storage_url=CLUSTER_ENV["LAMBDA_STORAGE_URL"],
        s3_endpoint=f"http://{cluster.address('s3')}:{PORTS['s3']}",
        bucket_ms=BUCKET_MS,
    )
    layout = Layout.of(checks)
    api = f"http://{cluster.address('serving')}:{PORTS['serving']}"
    faults: list[tuple[str, str]] = []
    try:
        started_up = time.monotonic()
        console.print(f"bringing the cluster up on {data_dir}")
        platform_cmd(env, "cluster", "up", "--no-demo", "--no-keeper")
        up_s = time.monotonic() - started_up
        password = admin_password(Settings(data_dir=cluster.host_dir("airflow")))
        client = AirflowClient(f"http://{cluster.address('airflow')}:{PORTS['airflow']}", password)
        client.trigger("lambda_batch")  # unpauses the DAG; it then runs every minute
        poller = Poller(api)
        threading.Thread(target=poller.run, daemon=True).start()
        watch = CurrentWatch(layout)
        threading.Thread(target=watch.run, daemon=True).start()
        truth_file = data_dir / "acked.jsonl"
        produce = [
            "lambda-produce", "--quiet", "--truth", str(truth_file), "--seed", str(args.seed),
            *mixed_stream(args.rate, args.accounts),
        ]  # fmt: skip
        producer = subprocess.Popen(cluster.on("producer", produce),
                                    env={**env, **cluster.env("producer")})  # fmt: skip
        started = time.monotonic()
        target = Faults(cluster, env, cluster.settings("speed-1").partitions)
        spark = in_thread(target.cut_worker_during_batch, faults, "cut spark-worker-1 in a batch")
        for at, name, fault in (
            (10, "SIGKILL kafka-2", target.kill_broker),
            (45, "SIGKILL speed-1", target.kill_speed),
            (110, "cut speed-1's link", target.cut_speed_link),
            (args.seconds - 45, "cut speed-2 from Kafka", target.cut_speed_from_kafka),
        ):
            time.sleep(max(0.0, started + at - time.monotonic()))
            console.print(f"[bold]{time.monotonic() - started:6.1f}s[/bold] {name}")
            try:
                faults.append((name, fault()))
            except Exception as exc:  # reported as a failed check; the run goes on
                faults.append((name, f"error: {type(exc).__name__}: {exc}"))
                with suppress(Exception):
                    target.up()
            console.print(f"        {faults[-1][1]}")
        spark.join(timeout=max(0.0, started + args.seconds + 300 - time.monotonic()))
        time.sleep(max(0.0, started + args.seconds - time.monotonic()))
        producer.send_signal(signal.SIGTERM)
        producer.wait(300)
        stream_s = time.monotonic() - started
        stopped = time.monotonic()

        logs = read_logs(cluster, env, data_dir / "log.pickle")
        log = logs[checks.topic]
        truth = GroundTruth.of(log, checks.dedup_horizon_ms)
        want = truth.summary()["count"]
        converge_s = convergence_s(api, want, stopped, 300)
        diffs_speed = api_differences(api, truth) + series_and_top_differences(api, truth)

        version = final_batch(client, layout, checks, max(r.timestamp for r in log))
        current = layout.read_current()
        assert current is not None
        below = [r for r in truth.valid.values() if r["kafka_ts"] < current.horizon_ms]
        batch_equal = batch_views(layout, version) == oracle_views(below, checks.dedup_horizon_ms)
        diffs_batch = api_differences(api, truth) + series_and_top_differences(api, truth)
        final = httpx.get(f"{api}/v1/totals", params=ALL_TIME, timeout=10).json()
        poller.stop.set()
        watch.stop.set()
        landing = check_landing(layout, truth)
        dlq = check_dlq(logs[checks.dlq_topic], truth, checks.topic)
        acked = read_truth(truth_file)
        kafka = kafka_report(cluster)
        errors, _ = poller.server_errors([])
    finally:
        with suppress(Exception):
            platform_cmd(env, "cluster", "down", timeout=600)
    api_total = int(final["count"])
    return {
        "seconds": args.seconds,
        "rate": args.rate,
        "seed": args.seed,
        "cluster_up_s": round(up_s, 1),
        "stream_s": round(stream_s, 1),
        "faults": [{"fault": n, "note": note} for n, note in faults],
        **stream_figures(log, acked, truth, api_total),
        "api_differences_before_batch": diffs_speed[:10],
        "api_differences_after_batch": diffs_batch[:10],
        "batch_version": version,
        "batch_views_equal_oracle": batch_equal,
        "events_from_batch": final["meta"].get("events_from_batch"),
        "current_versions_seen": watch.seen,
        "landing": asdict(landing),
        "dlq": asdict(dlq),
        "kafka": kafka,
        "http_polls": len(poller.seen),
        "http_5xx": errors,
        "converge_s": converge_s,
    }


def failures(f: dict[str, Any]) -> list[str]:
    """Every check of the run that did not hold."""
    checks = {
        **reckoning_checks(f),
        "CURRENT pointed at a version not validated": all(f["current_versions_seen"].values()),
        "under-replicated partitions at the end": f["kafka"].get("under_replicated") == [],
        "not every broker is back": f["kafka"].get("brokers") == [1, 2, 3],
        "5xx from the serving host": f["http_5xx"] == 0,
        "a fault could not be injected": len(f["faults"]) == 5
        and not any(x["note"].startswith("error:") for x in f["faults"]),
    }
    return [name for name, ok in checks.items() if not ok]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=300, help="length of the stream (≥300)")
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--report", default="cluster-chaos", help="report name under results/")
    parser.add_argument("--prefix", default=Network().prefix, help="namespace/bridge prefix")
    parser.add_argument("--subnet", default=Network().subnet, help="the hosts' subnet")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # inside a host
    args = parser.parse_args()
    exit_on_sigterm()
    if args.dump:
        dump_log(args.dump)
        return
    with tempfile.TemporaryDirectory(prefix="lambda-cluster-chaos-") as tmp:
        Path(tmp).chmod(0o755)  # the postgres host's server runs as the postgres user
        try:
            figures = run(args, Path(tmp) / "data")
        except BaseException:
            print_log_tails(Path(tmp) / "data" / "cluster" / "logs")
            raise
    conclude(args.report, figures, failures(figures), show, "cluster fault run")


def show(figures: dict[str, Any]) -> None:
    for fault in figures["faults"]:
        console.print(f"{fault['fault']}: {fault['note']}")
    keys = ("produced", "acked", "valid", "invalid", "expected_events", "api_events", "lost",
            "double", "converge_s", "cluster_up_s", "kafka")  # fmt: skip
    for key in keys:
        console.print(f"{key}: {figures[key]}")
    console.print(f"landed: {figures['landing']['landed']}")


if __name__ == "__main__":
    main()
