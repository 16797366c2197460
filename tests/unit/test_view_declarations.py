"""The views file (issue 27, step 1): what it refuses, and how a view's version behaves.

The hashing laws are checked without the module's own normalisation: a definition is drawn as
plain sets and integer cents, written out as TOML text in random formatting by this file's own
writer, and only the versions the module reads back are compared (equal for the same
definition, different after any change of meaning).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lambda_contracts import view_declarations as vd
from lambda_contracts.events import MAX_AMOUNT_CENTS
from lambda_contracts.view_declarations import (
    DEFAULT_VIEWS_FILE,
    PROJECT_ROOT,
    DeclarationError,
    Declarations,
    load_declarations,
    parse_declarations,
)
from lambda_contracts.views import VIEWS_BY_NAME

EXAMPLE = PROJECT_ROOT / "views.example.toml"
IDS = ("SourceAccountID", "TargetAccountID")
WINDOWS = ("minute", "hour", "day")
MEASURES = ("count", "sum", "min", "max", *(f"distinct({i})" for i in IDS))
VALID = 'name = "v"\ndimensions = ["SourceAccountID"]\nwindow = "hour"\nmeasures = ["count"]\n'


def load_text(tmp_path: Path, text: str) -> Declarations:
    path = tmp_path / "views.toml"
    path.write_text(text, encoding="utf-8")
    return load_declarations(path)


def refusal(tmp_path: Path, text: str) -> str:
    """The one line a refused file gives, without its ``<file>: `` prefix."""
    with pytest.raises(DeclarationError) as caught:
        load_text(tmp_path, text)
    line = str(caught.value)
    assert "\n" not in line
    prefix = f"{tmp_path / 'views.toml'}: "
    assert line.startswith(prefix)
    return line.removeprefix(prefix)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[views]]\n" + VALID + 'colour = "red"\n', 'view "v": unknown key "colour"'),
        ('title = "mine"\n', 'unknown key "title"'),
        (
            "[[views]]\n" + VALID.replace('["SourceAccountID"]', '["Amount"]'),
            'view "v": unknown dimension "Amount" '
            "(expected 'SourceAccountID' or 'TargetAccountID')",
        ),
        (
            "[[views]]\n" + VALID.replace('"hour"', '"week"'),
            "view \"v\": unknown window \"week\" (expected 'minute', 'hour' or 'day')",
        ),
        ("[[views]]\n" + VALID.replace('"hour"', "60"), 'view "v": unknown window 60 (expected'),
        (
            "[[views]]\n" + VALID.replace('"hour"', "2026-12-07"),
            'view "v": unknown window "2026-12-07" (expected',
        ),
        ("[[views]]\n" + VALID.replace('["count"]', '["avg"]'), 'view "v": unknown measure "avg"'),
        (
            "[[views]]\n" + VALID.replace('["count"]', '["count", "distinct(Amount)"]'),
            'view "v": unknown measure "distinct(Amount)"',
        ),
        ("[[views]]\n" + VALID + "[[views]]\n" + VALID, 'view "v": duplicate name'),
        (
            "[[views]]\n" + VALID.replace('["count"]', '["count", "sum", "count"]'),
            'view "v": duplicate measure "count"',
        ),
        (
            "[[views]]\n" + VALID.replace('["SourceAccountID"]', '["SourceAccountID"] * 2'),
            "invalid TOML",
        ),
        (
            "[[views]]\n"
            + VALID.replace('["SourceAccountID"]', '["SourceAccountID", "SourceAccountID"]'),
            'view "v": duplicate dimension "SourceAccountID"',
        ),
        (
            "[[views]]\n" + VALID.replace('["count"]', '["count", "distinct(SourceAccountID)"]'),
            'view "v": distinct(SourceAccountID) counts a dimension of the view (always 1 per key)',
        ),
        (
            "[[views]]\n" + VALID.replace('"v"', '"x"') + 'amount_min = "5.00"\n'
            'amount_max = "1.00"\n',
            'view "x": amount_min 5.00 > amount_max 1.00',
        ),
        (
            "[[views]]\n" + VALID + 'amount_max = "10000000.01"\n',
            'view "v": amount_max 10000000.01 is above the largest amount of an event '
            "(10000000.00)",
        ),
        (
            "[[views]]\n" + VALID.replace('"v"', '"account_minute"'),
            'view "account_minute": name is taken by a built-in view '
            "(built-in views cannot be changed or removed)",
        ),
        (
            "[[views]]\n" + VALID.replace('"v"', '"global_minute"'),
            'view "global_minute": name is taken by a built-in view '
            "(built-in views cannot be changed or removed)",
        ),
        ("[[views]]\n" + VALID.replace('["count"]', "[]"), 'view "v": no measures'),
        ("[[views]]\n" + VALID.replace('window = "hour"\n', ""), 'view "v": missing key "window"'),
        ("[[views]]\n" + VALID.replace('name = "v"\n', ""), 'view #1: missing key "name"'),
        ("[views]\n" + VALID, "views: Input should be a valid array"),
    ],
)
def test_a_bad_declaration_is_refused_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    assert refusal(tmp_path, text).startswith(expected)


@pytest.mark.parametrize(
    "name", ["Bad-Name", "1abc", "_x", "a b", "a\nb", "drop;table", "a" * 64, "", "ümlaut", "X"]
)
def test_a_name_that_is_no_safe_identifier_is_refused(tmp_path: Path, name: str) -> None:
    text = "[[views]]\n" + VALID.replace('"v"', json.dumps(name))
    assert refusal(tmp_path, text) == (
        f"view {json.dumps(name, ensure_ascii=False)}: "
        "name is not a safe identifier ([a-z][a-z0-9_]{0,62})"
    )


@pytest.mark.parametrize("name", ["a", "a" * 63, "received_hourly", "v2_by_target"])
def test_a_safe_identifier_is_accepted(tmp_path: Path, name: str) -> None:
    text = "[[views]]\n" + VALID.replace('"v"', json.dumps(name))
    assert [v.name for v in load_text(tmp_path, text).views] == [name]


@pytest.mark.parametrize(
    "written", ['"1.234"', '"-1"', '"1e3"', '"1."', '".5"', '" 1"', '"1,00"', "10.5", "10"]
)
def test_an_amount_must_be_a_decimal_string(tmp_path: Path, written: str) -> None:
    text = "[[views]]\n" + VALID + f"amount_min = {written}\n"
    assert refusal(tmp_path, text) == (
        f'view "v": amount_min {written} is not a decimal string like "10000.00"'
    )


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    text = "[[views]]\n" + VALID + "measures = \n"
    line = refusal(tmp_path, text)
    assert re.fullmatch(r"invalid TOML at line 6, column \d+: .+", line), line


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "views.toml"
    path.write_bytes(b'[[views]]\nname = "\xff"\n')
    with pytest.raises(DeclarationError, match=r"views\.toml: is not UTF-8 text \(byte 18\)$"):
        load_declarations(path)


def test_the_message_names_the_file_relative_to_the_repo() -> None:
    with pytest.raises(DeclarationError) as caught:
        parse_declarations({"views": [{"name": "x"}]})
    assert str(caught.value) == 'views.toml: view "x": missing key "dimensions"'
    assert vd._shown(DEFAULT_VIEWS_FILE) == "views.toml"


# --- files -----------------------------------------------------------------------------------


def test_a_missing_file_declares_no_views(tmp_path: Path) -> None:
    assert load_declarations(tmp_path / "absent.toml").views == ()
    assert not DEFAULT_VIEWS_FILE.exists(), "views.toml is the user's: the repo ships none"
    assert load_declarations(None).views == ()


def test_an_empty_file_declares_no_views(tmp_path: Path) -> None:
    assert load_text(tmp_path, "# nothing yet\n").views == ()


def test_the_example_file_loads() -> None:
    views = load_declarations(EXAMPLE).by_name()
    assert list(views) == ["received_hourly", "counterparties_hourly", "large_payments_daily"]
    received = views["received_hourly"]
    assert (received.dimensions, received.window) == (("TargetAccountID",), "hour")
    assert received.measures == ("count", "sum")
    counterparties = views["counterparties_hourly"]
    assert counterparties.measures == ("count", "distinct(TargetAccountID)")
    large = views["large_payments_daily"]
    assert (large.dimensions, large.window) == ((), "day")
    assert (large.amount_min_cents, large.amount_max_cents) == (1_000_000, None)
    assert all(re.fullmatch(r"[0-9a-f]{12}", v.version) for v in views.values())


def test_the_built_in_names_are_those_of_the_views_module() -> None:
    assert set(vd.BUILT_IN_VIEWS) == set(VIEWS_BY_NAME)


@pytest.mark.parametrize("text", ["0", "1", "10", "10.5", "10.50", "0.01", "10000000.00", "007"])
def test_amounts_are_exact_cents(tmp_path: Path, text: str) -> None:
    declaration = load_text(tmp_path, "[[views]]\n" + VALID + f'amount_max = "{text}"\n').views[0]
    assert declaration.amount_max_cents == int(Decimal(text) * 100)


def test_the_command_prints_versions_or_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vd.main([str(EXAMPLE)]) == 0
    expected = [f"{v.name} {v.version}" for v in load_declarations(EXAMPLE).views]
    assert capsys.readouterr().out.splitlines() == expected
    bad = tmp_path / "views.toml"
    bad.write_text("[[views]]\n" + VALID.replace('"hour"', '"week"'), encoding="utf-8")
    assert vd.main([str(bad)]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 1


# --- the schema ------------------------------------------------------------------------------


def test_the_checked_in_schema_is_up_to_date() -> None:
    assert vd.SCHEMA_PATH.exists(), "views.schema.json is missing: run `make views-schema`"
    assert vd.SCHEMA_PATH.read_text(encoding="utf-8") == vd.schema_text(), (
        "views.schema.json differs from lambda_contracts/view_declarations.py: run "
        "`make views-schema` and commit the result"
    )


def test_schema_check_fails_on_a_stale_file_and_writing_mends_it(tmp_path: Path) -> None:
    target = tmp_path / "views.schema.json"
    target.write_text("{}\n", encoding="utf-8")
    assert vd.main(["--schema", "--check"], schema_path=target) == 1
    assert vd.main(["--schema"], schema_path=target) == 0
    assert vd.main(["--schema", "--check"], schema_path=target) == 0


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"window": "week"}, False),
        ({"colour": "red"}, False),
        ({"name": "account_minute"}, False),
        ({"name": "Bad"}, False),
        ({"measures": []}, False),
        ({"measures": ["count", "count"]}, False),
        ({"dimensions": ["Amount"]}, False),
        ({"amount_min": "1.234"}, False),
        ({"amount_min": 10}, False),
    ],
)
def test_the_schema_agrees_with_the_loader(change: dict[str, object], valid: bool) -> None:
    schema = json.loads(vd.SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    document = {"views": [{**tomllib.loads(VALID), **change}]}
    assert jsonschema.Draft202012Validator(schema).is_valid(document) is valid
    try:
        parse_declarations(document)
    except DeclarationError:
        assert not valid
    else:
        assert valid


def test_the_example_file_satisfies_the_schema() -> None:
    schema = json.loads(vd.SCHEMA_PATH.read_text(encoding="utf-8"))
    document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(document)


# --- versions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """What a view answers, as the test sees it: sets and integer cents (never 0 for a lower
    bound, which every amount meets and so is no bound)."""

    dimensions: frozenset[str]
    window: str
    measures: frozenset[str]
    amount_min: int | None
    amount_max: int | None


def allowed_measures(dimensions: frozenset[str]) -> list[str]:
    return [m for m in MEASURES if not any(m == f"distinct({d})" for d in dimensions)]


@st.composite
def definitions(draw: st.DrawFn) -> Definition:
    dimensions = draw(st.frozensets(st.sampled_from(IDS)))
    measures = draw(st.frozensets(st.sampled_from(allowed_measures(dimensions)), min_size=1))
    low = draw(st.none() | st.integers(1, MAX_AMOUNT_CENTS))
    high = draw(st.none() | st.integers(low or 0, MAX_AMOUNT_CENTS))
    return Definition(dimensions, draw(st.sampled_from(WINDOWS)), measures, low, high)


def spell_amount(cents: int, rnd: random.Random) -> str:
    """Cents as one of the decimal strings that mean it: "10", "10.0", "10.00", "010.00"."""
    whole, part = divmod(cents, 100)
    spellings = [f"{whole}.{part:02d}", f"0{whole}.{part:02d}"]
    if part % 10 == 0:
        spellings.append(f"{whole}.{part // 10}")
    if part == 0:
        spellings.append(str(whole))
    return rnd.choice(spellings)


def spell_string(text: str, rnd: random.Random) -> str:
    return rnd.choice([json.dumps(text), f"'{text}'"])


def spell_array(items: frozenset[str], rnd: random.Random, inline: bool) -> str:
    order = sorted(items)
    rnd.shuffle(order)
    spelled = [spell_string(i, rnd) for i in order]
    if inline or rnd.random() < 0.5:
        return "[" + rnd.choice([",", ", ", " ,  "]).join(spelled) + "]"
    return "[\n" + "".join(f"    {s},  # item\n" for s in spelled) + "]"


def write_view(name: str, d: Definition, rnd: random.Random, inline: bool) -> str:
    """One view as TOML: an ``[[views]]`` table or an inline table, keys in random order."""
    pairs = {
        "name": spell_string(name, rnd),
        "dimensions": spell_array(d.dimensions, rnd, inline),
        "window": spell_string(d.window, rnd),
        "measures": spell_array(d.measures, rnd, inline),
    }
    for key, cents in (("amount_min", d.amount_min), ("amount_max", d.amount_max)):
        if cents is not None:
            pairs[key] = json.dumps(spell_amount(cents, rnd))
        elif key == "amount_min" and rnd.random() < 0.3:
            pairs[key] = json.dumps(spell_amount(0, rnd))  # a lower bound of 0 is none
    keys = list(pairs)
    rnd.shuffle(keys)
    if inline:
        return "{" + ", ".join(f"{k} = {pairs[k]}" for k in keys) + "}"
    lines = [f"{k}{rnd.choice(['=', ' = ', '   =  '])}{pairs[k]}\n" for k in keys]
    return "[[views]]\n" + "".join(lines) + rnd.choice(["", "\n", "# end\n"])


def write_file(d: Definition, rnd: random.Random, name: str = "v") -> str:
    """A views file holding the view, sometimes beside another one, in either TOML style."""
    views = [(name, d)]
    if rnd.random() < 0.5:
        other = Definition(frozenset(), "minute", frozenset({"count"}), None, None)
        views.insert(rnd.randrange(2), ("other", other))
    inline = rnd.random() < 0.5
    written = [write_view(n, v, rnd, inline) for n, v in views]
    if inline:
        return "views = [\n  " + ",\n  ".join(written) + ",\n]\n"
    return "\n".join(written)


def version_of(d: Definition, rnd: random.Random, name: str = "v") -> str:
    return parse_declarations(tomllib.loads(write_file(d, rnd, name))).by_name()[name].version


@settings(max_examples=300, deadline=None)
@given(definitions(), st.randoms(use_true_random=False), st.randoms(use_true_random=False))
def test_one_definition_in_any_formatting_has_one_version(
    d: Definition, first: random.Random, second: random.Random
) -> None:
    assert version_of(d, first) == version_of(d, second)


def changed(d: Definition, field: str, data: st.DataObject) -> Definition:
    """``d`` with one part of its meaning changed (to another valid declaration)."""
    if field == "dimensions":
        flipped = d.dimensions ^ {data.draw(st.sampled_from(IDS))}
        assume(d.measures <= set(allowed_measures(flipped)))
        return replace(d, dimensions=flipped)
    if field == "window":
        return replace(d, window=data.draw(st.sampled_from([w for w in WINDOWS if w != d.window])))
    if field == "measures":
        flipped = d.measures ^ {data.draw(st.sampled_from(allowed_measures(d.dimensions)))}
        assume(flipped)
        return replace(d, measures=flipped)
    if field == "amount_min":
        top = MAX_AMOUNT_CENTS if d.amount_max is None else d.amount_max
        low = data.draw(st.none() | st.integers(1, top)) if top else None
        assume(low != d.amount_min)
        return replace(d, amount_min=low)
    high = data.draw(st.none() | st.integers(d.amount_min or 0, MAX_AMOUNT_CENTS))
    assume(high != d.amount_max)
    return replace(d, amount_max=high)


@settings(max_examples=300, deadline=None)
@given(
    definitions(),
    st.sampled_from(["dimensions", "window", "measures", "amount_min", "amount_max"]),
    st.data(),
    st.randoms(use_true_random=False),
)
def test_any_change_of_meaning_changes_the_version(
    d: Definition, field: str, data: st.DataObject, rnd: random.Random
) -> None:
    assert version_of(d, rnd) != version_of(changed(d, field, data), rnd)


def test_every_definition_without_bounds_has_its_own_version() -> None:
    rnd = random.Random(27)
    versions: dict[str, Definition] = {}
    for dims in (frozenset(), *(frozenset({i}) for i in IDS), frozenset(IDS)):
        allowed = allowed_measures(dims)
        for mask in range(1, 2 ** len(allowed)):
            measures = frozenset(m for bit, m in enumerate(allowed) if mask >> bit & 1)
            for window in WINDOWS:
                d = Definition(dims, window, measures, None, None)
                assert versions.setdefault(version_of(d, rnd), d) == d
    assert len(versions) == 3 * (63 + 2 * 31 + 15)


def test_the_name_is_not_part_of_the_version() -> None:
    d = Definition(frozenset(IDS), "day", frozenset({"count"}), 100, None)
    rnd = random.Random(1)
    assert version_of(d, rnd, "first") == version_of(d, rnd, "second")


def test_a_semantics_bump_changes_every_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = [v.version for v in load_declarations(EXAMPLE).views]
    monkeypatch.setattr(vd, "SEMANTICS_VERSION", vd.SEMANTICS_VERSION + 1)
    after = [v.version for v in load_declarations(EXAMPLE).views]
    assert all(a != b for a, b in zip(before, after, strict=True))


def test_versions_are_pinned() -> None:
    """A version is a stored name: a change of the hash input renames (rebuilds) every user
    view. If this fails on purpose, bump SEMANTICS_VERSION and update the pinned values."""
    versions = {v.name: v.version for v in load_declarations(EXAMPLE).views}
    assert versions == PINNED_EXAMPLE_VERSIONS
    # What is hashed, written out by hand for large_payments_daily: sorted keys, no spaces.
    canonical = (
        '{"amount_max_cents":null,"amount_min_cents":1000000,"dimensions":[],'
        '"measures":["count","max","sum"],"semantics":1,"window":"day"}'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert versions["large_payments_daily"] == expected


PINNED_EXAMPLE_VERSIONS = {
    "received_hourly": "f31e11c93329",
    "counterparties_hourly": "25c5ea98aafa",
    "large_payments_daily": "27abbf162c1b",
}


def test_dimensions_are_id_fields_of_the_event_contract() -> None:
    """The file's dimension names are the event's wire names of its account IDs, declared
    once in ``lambda_contracts.events``; this keeps the Literal of the file in step."""
    from typing import get_args

    from lambda_contracts.events import Transaction
    from lambda_contracts.view_declarations import Dimension

    aliases = {field.alias for field in Transaction.model_fields.values()}
    assert set(get_args(Dimension)) == {"SourceAccountID", "TargetAccountID"} <= aliases
