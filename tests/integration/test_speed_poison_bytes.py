"""Byte strings that once stopped a partition go to the DLQ, and the stream goes on.

On the real broker, from a plain kafka-python producer: an ``Amount`` holding invalid UTF-8
crashed the columnar decode (the process died, and its successor on the same offset); invalid
UTF-8 where msgspec does not look (an unknown member's value, a member's name) was counted
although the contract rejects it; a record the broker took gzip-compressed with a 3 MB key could
not be dead-lettered (too large for a request) and was retried forever. The oracle is a plain
loop over the valid events sent.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from kafka import KafkaProducer

from lambda_contracts.db import make_engine
from tests.support.pipeline import (
    BIG_KEY,
    SpeedProcess,
    gzip_producer,
    read_topic,
    speed_views,
    stored_offsets,
    wait_until,
)

pytestmark = pytest.mark.integration


def valid(i: int) -> bytes:
    return json.dumps(
        {
            "TransactionID": f"p{i}",
            "CreatedTime": int(time.time() * 1000),
            "SourceAccountID": f"a{i % 7}",
            "TargetAccountID": "t",
            "Amount": i % 50 + 0.25,
        }
    ).encode()


POISON = [
    (b"a1", valid(10**6).replace(b'"Amount": ', b'"Amount": "\xff", "x": ')),
    (b"a2", valid(10**6 + 1)[:-1] + b', "note": "\xff"}'),
    (b"a3", valid(10**6 + 2)[:-1] + b', "\xc0\xaf": 1}'),
]


def test_poison_values_and_a_huge_key_are_dead_lettered_and_the_rest_counts(
    make_settings,
) -> None:
    settings = make_settings(partitions=1)
    engine = make_engine(settings.speed_store_url)
    plain = KafkaProducer(**settings.kafka_client_config, acks="all")
    gzip = gzip_producer(settings.bootstrap_servers)
    sent = []
    for block in range(5):
        for i in range(block * 100, block * 100 + 100):
            plain.send(settings.topic, valid(i), f"a{i % 7}".encode(), partition=0)
            sent.append(json.loads(valid(i)))
        plain.flush()
        if block < 3:
            key, value = POISON[block]
            plain.send(settings.topic, value, key, partition=0).get(30)
        elif block == 3:
            gzip.send(settings.topic, b"not json", BIG_KEY, partition=0).get(30)
    plain.close()
    gzip.close()
    total_offsets = len(sent) + 4

    with SpeedProcess(settings) as speed:
        wait_until(
            lambda: stored_offsets(engine, settings.topic) == {0: total_offsets}, 120, "counted"
        )
        assert speed.alive(), SpeedProcess.recent_logs()
        views = speed_views(engine)
        count = sum(m[0] for m in views["global_minute"].values())
        cents = sum(m[1] for m in views["global_minute"].values())
        assert count == len(sent) == 500
        assert cents == sum(round(e["Amount"] * 100) for e in sent)
        dead = read_topic(settings, settings.dlq_topic)
        assert len(dead) == 4, [dict(d.headers) for d in dead]
        big = next(d for d in dead if dict(d.headers).get("key.truncated_from"))
        headers = dict(big.headers)
        assert headers["key.truncated_from"] == str(len(BIG_KEY)).encode()
        assert headers["key.sha256"] == hashlib.sha256(BIG_KEY).hexdigest().encode()
        assert BIG_KEY.startswith(big.key) and big.value == b"not json"
        assert headers["origin.offset"] == str(total_offsets - 101).encode()
        reasons = sorted(dict(d.headers)["reason"].decode() for d in dead)
        assert sum("UTF-8" in r for r in reasons) == 3, reasons
        assert speed.terminate() == 0
