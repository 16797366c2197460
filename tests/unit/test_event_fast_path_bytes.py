"""The fast paths and the contract agree on every byte string, not only on JSON text.

The oracle is the contract alone (``parse_event``: decode UTF-8, parse JSON, validate), as in
``test_event_fast_path``; here the inputs are valid events mutated at the byte level — a byte
replaced by any byte, a truncation, bytes or a whole member inserted (names and values holding
invalid UTF-8 among them) — and arbitrary bytes. Such a record reached the speed layer's
columnar path and either crashed it (an ``Amount`` of ``"\\xff"``) or was counted although the
contract rejects it (invalid UTF-8 where msgspec does not look: a skipped member's value, a
member's name).

CI runs ``LAMBDA_PROPERTY_EXAMPLES`` examples (100,000 by default) of the record rule; the
long run (``LAMBDA_LONG_RUN=1``) ten times as many of each.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lambda_contracts.events import (
    Rejection,
    event_row,
    fast_event_row,
    parse_event,
    plain_event_columns,
)

EXAMPLES = int(os.environ.get("LAMBDA_PROPERTY_EXAMPLES", "100000"))
LONG_RUN = os.environ.get("LAMBDA_LONG_RUN") == "1"
LONG_EXAMPLES = 10 * EXAMPLES

VALID = (
    b'{"TransactionID":"100001","CreatedTime":1550149860000,'
    b'"SourceAccountID":"131100","TargetAccountID":"151837","Amount":3000.25}'
)
MEMBER_NAMES = [
    b"note", b"\xc0\xaf", b"\xff", b"Amount", b"amount", b"TransactionID", b"\xed\xa0\x80",
]  # fmt: skip
MEMBER_VALUES = [
    b'"\xff"', b'"\xc3"', b'"\xe2\x82"', b"1", b'"x"', b"[\xff]", b'{"\xff":1}', b"null",
]  # fmt: skip


def contract(value: bytes | None) -> dict | Rejection:
    """The contract's answer, written without the fast paths."""
    parsed = parse_event(value)
    return parsed if isinstance(parsed, Rejection) else parsed.to_row()


def check_record(value: bytes) -> None:
    """Neither fast path accepts what the contract rejects, nor with other values; and
    neither raises."""
    expected = contract(value)
    fast = fast_event_row(value)
    if fast is not None:
        assert fast == expected, value
    assert event_row(value) == expected, value
    columns = plain_event_columns([VALID, value])
    if columns is not None:
        assert not isinstance(expected, Rejection), value
        assert {name: column[1] for name, column in columns.items()} == expected


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event with one to three byte-level mutations."""
    value = bytearray(VALID)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert_bytes", "insert_member", "cut"]))
        at = draw(st.integers(0, len(value)))
        if kind == "flip" and value:
            value[min(at, len(value) - 1)] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del value[at:]
        elif kind == "insert_bytes":
            value[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "cut" and value:
            del value[at : at + draw(st.integers(1, 4))]
        else:  # a whole member, just inside the object or after the first member
            name = draw(st.one_of(st.sampled_from(MEMBER_NAMES), st.binary(max_size=4)))
            member_value = draw(st.one_of(st.sampled_from(MEMBER_VALUES), st.binary(max_size=4)))
            member = b'"' + name + b'":' + member_value
            where = draw(st.sampled_from([1, VALID.index(b",") + 1]))
            if where <= len(value):
                value[where:where] = member + b","
    return bytes(value)


RECORDS = st.one_of(mutated(), mutated(), mutated(), st.binary(max_size=200))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(RECORDS)
@example(VALID.replace(b"3000.25", b'"\xff"'))  # the columnar decode crashed on it
@example(VALID[:-1] + b',"note":"\xff"}')  # a skipped member's value
@example(VALID[:-1] + b',"\xc0\xaf":1}')  # a member's name
@example(VALID.replace(b"3000.25", b"3000.2\xff"))
def test_fast_paths_and_contract_agree_on_mutated_bytes(value: bytes) -> None:
    check_record(value)


@settings(max_examples=EXAMPLES // 10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(mutated(), st.just(VALID)), min_size=1, max_size=8))
def test_batch_path_refuses_a_batch_holding_a_value_the_contract_rejects(
    values: list[bytes],
) -> None:
    columns = plain_event_columns(values)
    expected = [contract(v) for v in values]
    if columns is not None:
        for i, row in enumerate(expected):
            assert not isinstance(row, Rejection), values[i]
            assert {name: column[i] for name, column in columns.items()} == row


@pytest.mark.skipif(not LONG_RUN, reason="the long run: LAMBDA_LONG_RUN=1")
@settings(max_examples=LONG_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(RECORDS)
def test_long_run_fast_paths_and_contract_agree_on_mutated_bytes(value: bytes) -> None:
    check_record(value)
