"""The dashboard panels' pure rules: a partition's state, and how rejects are shown."""

from __future__ import annotations

from serving.consumer_group import partition_state
from serving.dead_letters import PREVIEW_CHARS, shortened

STALL_MS = 30_000


def test_halted_wins_then_a_stall_needs_records_waiting_and_no_progress() -> None:
    now = 1_000_000
    assert partition_state(True, 0, now, now, STALL_MS) == "halted"
    assert partition_state(False, 5, now - STALL_MS, now, STALL_MS) == "stalled"
    assert partition_state(False, 5, now - STALL_MS + 1, now, STALL_MS) == "ok"  # progressing
    assert partition_state(False, 0, 0, now, STALL_MS) == "ok"  # idle: nothing to count
    assert partition_state(False, None, 0, now, STALL_MS) == "ok"  # no broker: lag unknown


def test_long_ids_are_cut_to_their_head_and_the_text_to_its_bound() -> None:
    assert shortened("Amount: must be a number") == "Amount: must be a number"
    tid = "3f9c1a2b-7d4e-4b8a-9c2d-0e1f2a3b4c5d"
    assert shortened(f'{{"TransactionID": "{tid}"}}') == '{"TransactionID": "3f9c1a2b…"}'
    assert shortened("x" * 16) == "x" * 16  # at most 16: not an ID
    long_text = "word " * 100
    cut = shortened(long_text)
    assert len(cut) == PREVIEW_CHARS and cut.endswith("…")
