"""The reckoning after a fault run: what the log holds, against what the platform made of it.

Ground truth is the topic itself, read back whole after the run (what the producer wrote, in
log order with its offsets and timestamps), checked against the producer's acknowledgements
(nothing acknowledged may be missing from the log). Expected views come from the independent
test oracle (plain loops over the events); the platform's answers come only through its
public interfaces: the serving API over HTTP, the landing files, the DLQ topic, the batch
version's Parquet files.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from lambda_contracts.events import MAX_CREATED_TIME_MS, Transaction, parse_event
from lambda_contracts.landing_files import landing_row
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.view_declarations import load_declarations
from tests.support.declared import reference, rendered
from tests.support.oracle import kept_rows, oracle_views
from tests.support.pipeline import TruthRecord, landed_rows

Stats = tuple[int, int, int, int]


@dataclass(frozen=True)
class LogRecord:
    partition: int
    offset: int
    timestamp: int
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


def read_log(settings: Settings, topic: str) -> list[LogRecord]:
    """Every record of the topic, up to its end offsets at the time of the call."""
    consumer = KafkaConsumer(
        **settings.kafka_client_config,
        enable_auto_commit=False,
        max_poll_records=10_000,
        request_timeout_ms=30_000,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[LogRecord] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    if r.offset < ends[tp]:
                        headers = {k: v for k, v in (r.headers or [])}
                        out.append(LogRecord(tp.partition, r.offset, r.timestamp, r.value, headers))
        return out
    finally:
        consumer.close()


@dataclass
class GroundTruth:
    """The topic's records split by the event contract, and the views they must give."""

    log: list[LogRecord]
    valid: dict[tuple[int, int], dict[str, Any]]  # (partition, offset) -> landing row
    invalid: dict[tuple[int, int], LogRecord]
    views: dict[str, dict[tuple[Any, ...], Stats]]

    @classmethod
    def of(cls, log: list[LogRecord], dedup_horizon_ms: int) -> GroundTruth:
        valid: dict[tuple[int, int], dict[str, Any]] = {}
        invalid: dict[tuple[int, int], LogRecord] = {}
        for rec in log:
            parsed = parse_event(rec.value)
            if isinstance(parsed, Transaction):
                row = landing_row(parsed, rec.partition, rec.offset, rec.timestamp)
                valid[(rec.partition, rec.offset)] = row
            else:
                invalid[(rec.partition, rec.offset)] = rec
        return cls(log, valid, invalid, oracle_views(valid.values(), dedup_horizon_ms))

    def summary(self, account: str | None = None) -> dict[str, Any]:
        """What ``/v1/totals`` (or an account's summary) must say over all time."""
        if account is None:
            values = list(self.views["global_minute"].values())
        else:
            values = [v for k, v in self.views["account_minute"].items() if k[0] == account]
        if not values:
            return {"count": 0, "sum": "0.00"}
        return {"count": sum(v[0] for v in values), "sum": cents(sum(v[1] for v in values))}

    def accounts(self) -> list[str]:
        return sorted({k[0] for k in self.views["account_minute"]})


def cents(amount: int) -> str:
    return f"{Decimal(amount) / 100:.2f}"


ALL_TIME = {"start": 0, "end": MAX_CREATED_TIME_MS}
VIEW_ROWS = 10_000  # a declared view's rows per answer: every account of a fault run


def api_differences(api: str, truth: GroundTruth, token: str | None = None) -> list[str]:
    """Where the API's all-time answers differ from the truth (empty when they agree)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    diffs = []
    with httpx.Client(base_url=api, timeout=30, headers=headers) as http:
        got = http.get("/v1/totals", params=ALL_TIME).json()
        want = truth.summary()
        if (got.get("count"), got.get("sum")) != (want["count"], want["sum"]):
            diffs.append(f"totals: api {got.get('count')}/{got.get('sum')} want {want}")
        for account in truth.accounts():
            got = http.get(f"/v1/accounts/{account}/summary", params=ALL_TIME).json()
            want = truth.summary(account)
            if (got.get("count"), got.get("sum")) != (want["count"], want["sum"]):
                diffs.append(f"account {account}: api {got.get('count')}/{got.get('sum')} {want}")
    return diffs


def declared_view_differences(
    api: str, views_file: Path, truth: GroundTruth, dedup_horizon_ms: int
) -> list[str]:
    """Where each declared view's all-time answer (per value of its first dimension, or whole
    for a global view) differs from the plain reference over the events that count."""
    kept = kept_rows(truth.valid.values(), dedup_horizon_ms)
    diffs = []
    with httpx.Client(base_url=api, timeout=30) as http:
        for declaration in load_declarations(views_file).views:
            by = declaration.dimensions[:1]
            params: dict[str, Any] = dict(ALL_TIME)
            if by:
                params |= {"group_by": by[0], "limit": VIEW_ROWS}
            answer = http.get(f"/v1/views/{declaration.name}", params=params)
            if answer.status_code != 200:
                diffs.append(f"{declaration.name}: {answer.status_code} {answer.text[:200]}")
                continue
            want = reference(declaration, kept, by, None)
            got = {
                tuple(row[d] for d in by): {k: v for k, v in row.items() if k not in by}
                for row in answer.json()["rows"]
            }
            wanted = {key: rendered(declaration.measures, row) for key, row in want.items()}
            if got != wanted:
                wrong = sorted(k for k in wanted.keys() | got.keys() if got.get(k) != wanted.get(k))
                diffs.append(
                    f"{declaration.name}: {len(wrong)} keys differ, e.g. {wrong[:1]}: "
                    f"api {got.get(wrong[0])} want {wanted.get(wrong[0])}"
                )
    return diffs


def api_count(api: str) -> int | None:
    try:
        return int(httpx.get(f"{api}/v1/totals", params=ALL_TIME, timeout=10).json()["count"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def convergence_s(api: str, want: int, since: float, timeout_s: float) -> float | None:
    """Seconds from ``since`` (monotonic) until the API counts ``want`` events over all time,
    or None if it did not within ``timeout_s`` (a run reports it as a failed check)."""
    deadline = time.monotonic() + timeout_s
    while api_count(api) != want:
        if time.monotonic() > deadline:
            return None
        time.sleep(1.0)
    return round(time.monotonic() - since, 1)


@dataclass
class LandingCheck:
    landed: int  # distinct (partition, offset) in the landing zone
    missing: int  # valid records of the log that were not landed
    extra: int  # landed offsets that are not valid records of the log
    mismatched: int  # landed rows whose content differs from the log's record
    overlapping: int  # offsets held by more than one live landing file (readers dedup them)
    # The first few mismatches: where, and each differing field as (landed, log).
    mismatch_examples: list[dict[str, Any]] = field(default_factory=list)


def check_landing(layout: Layout, truth: GroundTruth) -> LandingCheck:
    copies: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in landed_rows(layout):
        copies.setdefault((row["kafka_partition"], row["kafka_offset"]), []).append(row)
    differing = [
        (key, row)
        for key, rows in copies.items()
        if key in truth.valid
        for row in rows
        if row != truth.valid[key]
    ]
    mismatched = len({key for key, _ in differing})
    examples = [
        {
            "partition": key[0],
            "offset": key[1],
            "fields": {
                name: [row.get(name), truth.valid[key].get(name)]
                for name in sorted(row.keys() | truth.valid[key].keys())
                if row.get(name) != truth.valid[key].get(name)
            },
        }
        for key, row in differing[:5]
    ]
    return LandingCheck(
        landed=len(copies),
        missing=len(truth.valid.keys() - copies.keys()),
        extra=len(copies.keys() - truth.valid.keys()),
        mismatched=mismatched,
        mismatch_examples=examples,
        overlapping=sum(1 for rows in copies.values() if len(rows) > 1),
    )


@dataclass
class DlqCheck:
    records: int  # DLQ records, copies included
    missing: int  # invalid records of the log with no DLQ record
    unexpected: int  # DLQ records whose origin is not an invalid record
    wrong_value: int  # DLQ value differs from the original (beyond the documented truncation)
    without_reason: int
    reasons: dict[str, int]  # reason prefix (the field) -> count


def check_dlq(dlq: list[LogRecord], truth: GroundTruth, topic: str) -> DlqCheck:
    origins: set[tuple[int, int]] = set()
    unexpected = wrong_value = without_reason = 0
    reasons: Counter[str] = Counter()
    for rec in dlq:
        h = rec.headers
        if h.get("origin.topic", b"").decode() != topic:
            unexpected += 1
            continue
        key = (int(h.get("origin.partition", b"-1")), int(h.get("origin.offset", b"-1")))
        original = truth.invalid.get(key)
        if original is None:
            unexpected += 1
            continue
        origins.add(key)
        value = original.value
        if value is not None and "value.truncated_from" in h:
            value = value[: len(rec.value or b"")]
        if rec.value != value:
            wrong_value += 1
        reason = h.get("reason", b"").decode("utf-8", "replace")
        if not reason:
            without_reason += 1
        reasons[reason.split(":", 1)[0]] += 1
    return DlqCheck(
        records=len(dlq),
        missing=len(truth.invalid.keys() - origins),
        unexpected=unexpected,
        wrong_value=wrong_value,
        without_reason=without_reason,
        reasons=dict(reasons.most_common()),
    )


def acked_missing(acked: list[TruthRecord], log: list[LogRecord]) -> int:
    """Acknowledged records that the log does not hold, byte for byte, at their offset."""
    at = {(r.partition, r.offset): r.value for r in log}
    return sum(1 for r in acked if at.get((r.partition, r.offset)) != r.value)


def series_and_top_differences(api: str, truth: GroundTruth, top: int = 10) -> list[str]:
    """Where the all-time hourly series and the top accounts by amount differ from the
    truth (folded here from the oracle's per-minute views, by plain loops)."""
    hours: dict[int, list[int]] = {}
    for (minute,), (count, total, low, high) in truth.views["global_minute"].items():
        hour = minute - minute % 3_600_000
        agg = hours.setdefault(hour, [0, 0, low, high])
        agg[0] += count
        agg[1] += total
        agg[2], agg[3] = min(agg[2], low), max(agg[3], high)
    per_account: dict[str, list[int]] = {}
    for (account, _), (count, total, _, _) in truth.views["account_minute"].items():
        agg = per_account.setdefault(account, [0, 0])
        agg[0] += count
        agg[1] += total
    ranked = sorted(per_account.items(), key=lambda kv: (-kv[1][1], kv[0]))[:top]
    diffs = []
    with httpx.Client(base_url=api, timeout=60) as http:
        # The API bounds a series' points: ask for the hours that hold events.
        span = {"start": min(hours, default=0), "end": max(hours, default=0) + 3_600_000}
        series = http.get("/v1/totals/series", params={**span, "granularity": "hour"}).json()
        got = {
            p["window_start_ms"]: (p["count"], p["sum"], p["min"], p["max"])
            for p in series["points"]
        }
        want = {h: (c, cents(s), cents(lo), cents(hi)) for h, (c, s, lo, hi) in hours.items()}
        if got != want:
            wrong = sorted(set(got.items()) ^ set(want.items()))[:3]
            diffs.append(f"hourly series: {len(got)} points, want {len(want)}; e.g. {wrong}")
        params = {**ALL_TIME, "by": "sum", "limit": top}
        answer = http.get("/v1/top-accounts", params=params).json()["accounts"]
        got_top = [(a["account_id"], a["count"], a["sum"]) for a in answer]
        want_top = [(a, c, cents(s)) for a, (c, s) in ranked]
        if got_top != want_top:
            diffs.append(f"top accounts: api {got_top[:3]}…, want {want_top[:3]}…")
    return diffs


def stream_figures(
    log: list[LogRecord], acked: list[TruthRecord], truth: GroundTruth, api_total: int
) -> dict[str, Any]:
    """What went in and what the API counted: the figures every fault run reports."""
    want = truth.summary()["count"]
    return {
        "produced": len(log),
        "acked": len(acked),
        "acked_missing_from_log": acked_missing(acked, log),
        "valid": len(truth.valid),
        "invalid": len(truth.invalid),
        "expected_events": want,
        "api_events": api_total,
        "lost": max(0, want - api_total),
        "double": max(0, api_total - want),
    }


def reckoning_checks(f: dict[str, Any]) -> dict[str, bool]:
    """The checks every fault run makes of its figures: {what failed: whether it held}."""
    return {
        "acknowledged records missing from the log": f["acked_missing_from_log"] == 0,
        "the API did not converge within 300 s": f["converge_s"] is not None,
        "events lost": f["lost"] == 0,
        "events double-counted": f["double"] == 0,
        "API differs from the truth (speed side)": not f["api_differences_before_batch"],
        "API differs from the truth (after the last batch)": not f["api_differences_after_batch"],
        "batch views differ from the oracle": f["batch_views_equal_oracle"],
        "the last batch absorbed nothing": (f["events_from_batch"] or 0) > 0,
        "valid offsets not landed": f["landing"]["missing"] == 0,
        "landed offsets that are not valid records": f["landing"]["extra"] == 0,
        "landed rows that differ from the log": f["landing"]["mismatched"] == 0,
        "invalid records missing from the DLQ": f["dlq"]["missing"] == 0,
        "DLQ records that are not invalid records": f["dlq"]["unexpected"] == 0,
        "DLQ values that differ from the original": f["dlq"]["wrong_value"] == 0,
        "DLQ records without a reason": f["dlq"]["without_reason"] == 0,
        "declared views differ from the reference": not f.get("declared_view_differences"),
    }
