"""The transaction event: its schema, its validation and its wire format.

Every layer that reads or writes an event goes through this module, so "what is a valid event"
and "why was this record rejected" have one answer. Amounts are parsed as ``Decimal`` straight
from the JSON text and carried as integer cents afterwards: sums never drift.

Amounts are bounded so that no sum the platform keeps in 64 bits can overflow: every store
(SQLite, PostgreSQL, Spark with ANSI mode, DuckDB) holds a view's sum as BIGINT, and SQLite
(the default speed store) has no wider integer. ``MAX_AMOUNT_CENTS * MAX_EVENTS_PER_SUM``
fits int64, so a sum over up to ``MAX_EVENTS_PER_SUM`` events (~9.2 billion) is exact: far
more than one view key (an account's or the whole platform's minute) or the speed store's
unexpired rows ever hold. Raising the amount bound lowers the event bound in proportion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
)

INT64_MAX = 2**63 - 1
MAX_AMOUNT_CENTS = 1_000_000_000  # 10,000,000.00 per event: above any payment of the domain
MAX_AMOUNT = MAX_AMOUNT_CENTS // 100  # in currency units, as on the wire
MAX_EVENTS_PER_SUM = INT64_MAX // MAX_AMOUNT_CENTS  # events of the largest amount a sum holds
MAX_CREATED_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def _number_only(value: Any) -> Any:
    """JSON strings and booleans are not amounts, even if pydantic could coerce them."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ValueError("must be a JSON number")
    return value


# Identifiers are stored as keys by every store (VARCHAR on PostgreSQL, where a NUL byte cannot
# be stored at all): bounded in length, printable characters only. store_schema sizes its key
# columns from ID_MAX_LENGTH, so a valid event always fits.
ID_MAX_LENGTH = 128


def _printable(value: str) -> str:
    for position, char in enumerate(value):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise ValueError(
                f"must not contain control characters (U+{ord(char):04X} at position {position})"
            )
    return value


NonEmptyId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=ID_MAX_LENGTH, strip_whitespace=True),
    AfterValidator(_printable),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_number_only),
    Field(ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False),
]


class Transaction(BaseModel):
    """A payment event. Field names on the wire are the lecture's CamelCase names."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    transaction_id: NonEmptyId = Field(alias="TransactionID")
    created_time: StrictInt = Field(alias="CreatedTime", ge=0, le=MAX_CREATED_TIME_MS)
    source_account_id: NonEmptyId = Field(alias="SourceAccountID")
    target_account_id: NonEmptyId = Field(alias="TargetAccountID")
    amount: Amount = Field(alias="Amount")

    @property
    def amount_cents(self) -> int:
        return int(self.amount * 100)

    @property
    def key(self) -> bytes:
        """Kafka key: per-account order, and duplicates of a transaction share a partition."""
        return self.source_account_id.encode("utf-8")

    def to_row(self) -> dict[str, Any]:
        """The event as a flat row with the column names of the landing zone and the views."""
        return {
            "transaction_id": self.transaction_id,
            "created_time": self.created_time,
            "source_account_id": self.source_account_id,
            "target_account_id": self.target_account_id,
            "amount_cents": self.amount_cents,
        }

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sent to Kafka (Amount as a JSON number with its 2 decimals)."""
        return self.model_dump(by_alias=True)

    def to_json_bytes(self) -> bytes:
        return encode_json(self.to_wire())


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is not a valid event; the text goes to the DLQ header ``reason``."""

    reason: str


def encode_json(obj: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; Decimals are written as JSON numbers."""
    return json.dumps(obj, separators=(",", ":"), default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    # A 2-decimal amount below 1e12 (MAX_AMOUNT is far below) survives float's shortest repr
    # exactly (its ulp < 0.01), and readers parse it back with parse_float=Decimal.
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _describe(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "value"
    message = first["msg"]
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return f"{field}: {message}"


def parse_event(value: bytes | None) -> Transaction | Rejection:
    """Validate one Kafka record value; return the event or the precise reason it is invalid."""
    if value is None:
        return Rejection("value: is empty (tombstone)")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(f"value: is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        obj = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        return Rejection(f"value: is not valid JSON ({exc.msg} at position {exc.pos})")
    except ValueError as exc:  # an integer literal longer than Python converts (4,300 digits)
        return Rejection(f"value: is not valid JSON ({exc})")
    except RecursionError:
        return Rejection("value: is not valid JSON (nested too deeply)")
    return validate_event(obj)


def validate_event(obj: Any) -> Transaction | Rejection:
    """Validate an already-decoded JSON value (floats must be ``Decimal`` to stay exact)."""
    if not isinstance(obj, dict):
        return Rejection(f"value: must be a JSON object, got {type(obj).__name__}")
    try:
        return Transaction.model_validate(obj)
    except ValidationError as exc:
        return Rejection(_describe(exc))


# --- the fast path: the same rule, cheaper for the common shape ------------------------------
#
# The speed layer validates every record it reads, and pydantic over Decimal costs several
# times what Kafka costs to deliver the record. ``event_row`` accepts at once the records whose
# validity is plain to see — the wire names, printable IDs without surrounding spaces, an
# integer CreatedTime in range, an Amount that is a JSON number with at most 2 decimals in
# range — and hands everything else to the pydantic contract above, which then decides and
# words the reason. So the fast path never accepts what the contract rejects, and a rejection
# always carries the contract's reason; ``tests/unit/test_event_fast_path.py`` checks that the
# two agree on random and adversarial inputs.


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH)]


class _PlainWire(msgspec.Struct, gc=False):
    """The wire fields with the checks msgspec makes while decoding (types, lengths, range).

    ``Amount`` stays the exact text of its JSON value. A record that also uses a Python name
    (the contract reads a field by it too) fails to decode here, as does one naming a field
    both ways: the contract decides those. msgspec, unlike json, reads no NaN or Infinity and
    no lone surrogates: records holding them go to the contract too. Untracked by the garbage
    collector (``gc=False``): its fields are strings, integers and raw bytes, which hold no
    reference cycle, and a poll batch makes tens of thousands of them.
    """

    TransactionID: _Id
    CreatedTime: Annotated[int, msgspec.Meta(ge=0, le=MAX_CREATED_TIME_MS)]
    SourceAccountID: _Id
    TargetAccountID: _Id
    Amount: msgspec.Raw
    transaction_id: msgspec.UnsetType = msgspec.UNSET
    created_time: msgspec.UnsetType = msgspec.UNSET
    source_account_id: msgspec.UnsetType = msgspec.UNSET
    target_account_id: msgspec.UnsetType = msgspec.UNSET
    amount: msgspec.UnsetType = msgspec.UNSET


_FAST_DECODER = msgspec.json.Decoder(_PlainWire)
# Longer values go to the contract. Python's json refuses an integer of more than 4,300
# digits, or nesting deeper than its recursion limit (1,000 frames, 2 bytes a level at the
# least), even in a field the contract then ignores; msgspec skips such a field unread. No
# value of this length holds either; a record with UUIDs for IDs is about 200 bytes.
FAST_PATH_MAX_BYTES = 1024
_MAX_DIGITS = len(str(MAX_AMOUNT)) + 2  # whole digits, then up to two decimals
_FIELDS = ("TransactionID", "CreatedTime", "SourceAccountID", "TargetAccountID", "Amount")
_TID, _CREATED, _SOURCE, _TARGET, _AMOUNT = map(attrgetter, _FIELDS)
# An amount's text the fast path reads: digits (JSON has no leading zeros) and up to two
# decimals. pyarrow's cast to DECIMAL(12, 2) then reads it exactly, and fails above 10 digits.
_PLAIN_AMOUNT = r"^[0-9]+(\.[0-9]{1,2})?$"
_AMOUNT_TYPE = pa.decimal128(12, 2)
_CENTS_PER_UNIT = pa.scalar(100, pa.decimal128(3, 0))


def _plain_ids(ids: Iterable[str]) -> bool:
    """IDs the contract keeps as they are: every character printable, nothing to strip.

    ``str.isprintable`` is false for every control and Unicode separator character except
    the ASCII space, so for printable IDs ``strip`` (the contract's own) only removes spaces at
    either end. Checked for many IDs at once, in a few passes over one joined string: no space
    next to a separator or at either end. An ID that holds the separator next to a space is
    refused though plain: the contract then decides it."""
    joined = "|".join(ids)
    return (
        joined.isprintable()
        and " |" not in joined
        and "| " not in joined
        and not joined.startswith(" ")
        and not joined.endswith(" ")
    )


def _plain_cents(text: bytes) -> int | None:
    """Exact integer cents of a JSON number ``digits[.d[d]]``, in range (None for any other
    JSON value: a string, a sign, an exponent, more decimals)."""
    dot = text.find(b".")
    if dot < 0:
        digits, scale = text, 100
    else:
        decimals = len(text) - dot - 1
        if decimals > 2 or dot == 0:
            return None
        digits, scale = text[:dot] + text[dot + 1 :], (10 if decimals == 1 else 1)
    if not digits.isdigit() or len(digits) > _MAX_DIGITS:
        return None
    cents = int(digits) * scale
    return cents if cents <= MAX_AMOUNT_CENTS else None


def _all_plain_cents(texts: Iterable[msgspec.Raw]) -> list[int] | None:
    """:func:`_plain_cents` for many amounts at once, in Arrow; None unless all are plain.
    The JSON texts are joined by newlines (which no JSON number holds) and split in Arrow."""
    joined = b"\n".join(texts).decode()  # type: ignore[arg-type]  # Raw is a buffer
    amounts = pc.split_pattern(pa.array([joined]), "\n").flatten()
    if not pc.all(pc.match_substring_regex(amounts, _PLAIN_AMOUNT)).as_py():
        return None
    try:
        units = amounts.cast(_AMOUNT_TYPE)
    except pa.ArrowInvalid:  # more than 10 whole digits
        return None
    cents = pc.multiply(units, _CENTS_PER_UNIT).cast(pa.int64())
    if pc.max(cents).as_py() > MAX_AMOUNT_CENTS:
        return None
    return cents.to_pylist()


def _all_utf8(values: Sequence[bytes]) -> bool:
    """Whether every value is valid UTF-8, as the contract decodes the whole value first.

    msgspec checks the text of the members it reads, not of those it skips (an unknown
    member's value, a member's name) nor of a raw ``Amount``: without this check the fast paths
    would count records the contract rejects. ASCII (nearly every record) is checked in one
    pass; anything else is decoded."""
    for value in values:
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return False
    return True


def fast_event_row(value: bytes | None) -> dict[str, Any] | None:
    """The event's row (as :meth:`Transaction.to_row`) when it is plainly valid; else None,
    meaning "ask the contract", never "invalid"."""
    if value is None or len(value) > FAST_PATH_MAX_BYTES or not _all_utf8((value,)):
        return None
    try:
        wire = _FAST_DECODER.decode(value)
    except Exception:  # malformed, mistyped, out of range, too deep: the contract words it
        return None
    tid, source, target = wire.TransactionID, wire.SourceAccountID, wire.TargetAccountID
    if not _plain_ids((tid, source, target)):
        return None
    cents = _plain_cents(bytes(wire.Amount))
    if cents is None:
        return None
    return {
        "transaction_id": tid,
        "created_time": wire.CreatedTime,
        "source_account_id": source,
        "target_account_id": target,
        "amount_cents": cents,
    }


def plain_event_columns(values: Sequence[bytes | None]) -> dict[str, list[Any]] | None:
    """The rows of a poll batch's values as columns (those of :meth:`Transaction.to_row`)
    when every value is plainly valid; else None, meaning "decide record by record".

    The same checks as :func:`fast_event_row`, made once per batch instead of once per
    record: each value is decoded alone (so one value can never pass for another), then the
    IDs and the amounts of all of them are checked together.
    """
    if not values or None in values:
        return None
    if max(map(len, values)) > FAST_PATH_MAX_BYTES:  # type: ignore[arg-type]
        return None
    if not _all_utf8(values):  # type: ignore[arg-type]  # None was ruled out above
        return None
    try:
        wires = list(map(_FAST_DECODER.decode, values))  # type: ignore[arg-type]
    except Exception:  # one value not plainly valid (or None): record by record
        return None
    tids, sources, targets = (list(map(field, wires)) for field in (_TID, _SOURCE, _TARGET))
    if not _plain_ids(chain(tids, sources, targets)):
        return None
    cents = _all_plain_cents(map(_AMOUNT, wires))
    if cents is None or len(cents) != len(wires):  # an Amount holding a newline: no number
        return None
    return {
        "transaction_id": tids,
        "created_time": list(map(_CREATED, wires)),
        "source_account_id": sources,
        "target_account_id": targets,
        "amount_cents": cents,
    }


def event_row(value: bytes | None) -> dict[str, Any] | Rejection:
    """Validate one Kafka record value into its row, by the one rule of :func:`parse_event`.

    The fast path answers for plainly valid records; every other record is decided (and its
    rejection worded) by the pydantic contract.
    """
    row = fast_event_row(value)
    if row is not None:
        return row
    parsed = parse_event(value)
    return parsed if isinstance(parsed, Rejection) else parsed.to_row()
