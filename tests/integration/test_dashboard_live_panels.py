"""The dashboard's consumer-group and rejects panels in a real browser, over a real broker and
two real speed processes.

Poison records show in the rejects panel with their reason, partition and offset (long IDs
shortened), as the API says. When one speed process is SIGKILLed, the group panel shows its
partitions move to the other member, and every partition back to ok with no lag once the
survivor has counted what came meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from kafka import KafkaProducer
from playwright.sync_api import Page

from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from serving.main import create_app
from tests.support.app_server import served
from tests.support.browser import ARTIFACTS
from tests.support.pipeline import SpeedProcess, produce, wait_caught_up, wait_until
from tests.support.topic_settings import fresh_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG_ID = "poison-0123456789abcdefghijklmnop"


@dataclass
class Live:
    settings: Settings
    speeds: list[SpeedProcess]
    server: str
    poison: dict[tuple[int, int], str]  # (partition, offset) -> the label its reason gets


def send_poison(settings: Settings) -> dict[tuple[int, int], str]:
    """A record with an amount that is not a number, and one that is not JSON at all."""
    bad_amount = json.dumps(
        {"TransactionID": LONG_ID, "CreatedTime": 1_796_619_600_000, "SourceAccountID": "a",
         "TargetAccountID": "b", "Amount": "lots"}
    ).encode()  # fmt: skip
    producer = KafkaProducer(**settings.kafka_client_config, acks="all")
    try:
        sent = {}
        for value, label, partition in ((bad_amount, "Amount", 1), (b"\xffnot json", "value", 2)):
            meta = producer.send(settings.topic, value=value, partition=partition).get(30)
            sent[(meta.partition, meta.offset)] = label
        return sent
    finally:
        producer.close()


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live-panels")
    settings = fresh_settings(broker, tmp / "data", landing_flush_ms=300, idle_seal_grace_ms=200)
    engine = make_engine(settings.speed_store_url)
    speeds = [SpeedProcess(settings, instance).start() for instance in (0, 1)]
    produce(settings, tmp / "t.jsonl", "--count", "300", "--rate", "600", "--id-prefix", "g")
    poison = send_poison(settings)
    wait_caught_up(settings, engine)
    engine.dispose()
    try:
        with served(create_app(settings)) as base:
            yield Live(settings, speeds, base, poison)
    finally:
        for speed in speeds:
            speed.kill()


def test_poison_records_show_in_the_rejects_panel(tab: Page, live: Live) -> None:
    def rejects() -> dict:
        return httpx.get(f"{live.server}/v1/speed/rejects", timeout=30).json()

    wait_until(
        lambda: {(r["partition"], r["offset"]) for r in rejects()["latest"]} >= live.poison.keys(),
        60,
        "both poison records in /v1/speed/rejects",
    )
    answer = rejects()
    assert answer["reachable"] and answer["caught_up"]
    labels = {(r["partition"], r["offset"]): r["label"] for r in answer["latest"]}
    assert {k: labels[k] for k in live.poison} == live.poison
    counted: dict[str, int] = {}
    for minute in answer["by_minute"]:
        for label, n in minute["counts"].items():
            counted[label] = counted.get(label, 0) + n
    assert counted == {"Amount": 1, "value": 1}  # the producer's 300 events were all valid

    tab.goto(live.server + "/")
    tab.wait_for_selector("body[data-loaded=true]", timeout=30_000)
    for (partition, offset), label in live.poison.items():
        row = tab.locator(
            f"#rejects-latest tr[data-partition='{partition}'][data-offset='{offset}']"
        )
        assert row.count() == 1, (partition, offset)
        assert row.locator("td.reason").inner_text().startswith(label)
    shown = tab.locator("#rejects-latest").inner_text()
    assert LONG_ID not in shown and LONG_ID[:8] + "…" in shown  # IDs shortened
    assert tab.locator("#rejects").get_attribute("data-total") == "2"
    tab.screenshot(path=str(ARTIFACTS / "dashboard-rejects.png"), full_page=True)


def owners_js(expected: str) -> str:
    """A page condition: every partition row's owner is ``expected`` (a JS expression)."""
    return (
        "(() => { const rows = [...document.querySelectorAll('#group-partitions tbody tr')];"
        f" return rows.length > 0 && rows.every((r) => {expected}); }})()"
    )


def test_group_panel_shows_partitions_move_when_a_speed_process_dies(tab: Page, live: Live) -> None:
    settings = live.settings
    everything = set(range(settings.partitions))

    def group() -> dict:
        return httpx.get(f"{live.server}/v1/speed/group", timeout=30).json()

    def split_between_two() -> bool:
        g = group()
        owned = [set(m["partitions"]) for m in g["members"]]
        return len(owned) == 2 and all(owned) and set().union(*owned) == everything

    wait_until(split_between_two, 60, "both speed processes to own partitions")
    tab.goto(live.server + "/")
    tab.wait_for_function(
        owners_js("r.querySelector('td.owner').textContent.startsWith('speed-layer-')")
        + " && document.getElementById('group').dataset.members === '2'",
        timeout=30_000,
    )
    shown = set(tab.locator("#group-partitions td.owner").all_inner_texts())
    assert shown == {"speed-layer-0", "speed-layer-1"}
    tab.screenshot(path=str(ARTIFACTS / "dashboard-group-two.png"), full_page=True)

    live.speeds[1].kill()  # SIGKILL: no leave-group; the broker notices at session timeout
    tab.wait_for_function(
        owners_js("r.querySelector('td.owner').textContent === 'speed-layer-0'"),
        timeout=90_000,
    )
    assert tab.locator("#group").get_attribute("data-members") == "1"
    more = produce(
        settings, settings.data_dir / "more.jsonl", "--count", "200", "--rate", "400",
        "--id-prefix", "h",
    )  # fmt: skip
    assert {r.partition for r in more} == everything  # the survivor counts on every one
    # Until the page shows every partition counted through the new events, and ok.
    ends = {p: max(r.offset for r in more if r.partition == p) + 1 for p in everything}
    tab.wait_for_function(
        owners_js(
            f"r.querySelector('td.stored').textContent === String({json.dumps(ends)}"
            "[r.dataset.partition]) && r.dataset.state === 'ok'"
            " && r.querySelector('td.lag').textContent === '0'"
        ),
        timeout=60_000,
    )
    tab.screenshot(path=str(ARTIFACTS / "dashboard-group-one.png"), full_page=True)
    answer = group()
    assert [m["client_id"] for m in answer["members"]] == ["speed-layer-0"]
    assert set(answer["members"][0]["partitions"]) == everything
    assert all(p["state"] == "ok" and p["lag"] == 0 for p in answer["partitions"])
