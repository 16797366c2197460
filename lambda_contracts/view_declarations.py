"""The views file: users declare views in TOML, validated here and versioned by a hash.

Issue 27 ("views as code"), step 1: the contract of the file only. Users add views next to the
built-in ones of :mod:`lambda_contracts.views` in a TOML file (``LAMBDA_VIEWS_FILE``,
``views.toml`` at the repo root by default; a missing file declares no view).
:mod:`lambda_contracts.declared_views` compiles a declaration to the views the layers compute;
the layers do not read the file yet.

- A refusal is one line naming the file, the view and the problem (:class:`DeclarationError`),
  so a deploy that fails says what to fix.
- A view's version is a hash of its normalised definition (:meth:`ViewDeclaration.normalised`):
  reformatting the file or reordering its lists never rebuilds a view, any change of what it
  answers does, and so does a bump of :data:`SEMANTICS_VERSION`.
- ``views.schema.json`` at the repo root is generated from the models here, for editors and
  CI (``python -m lambda_contracts.view_declarations --schema``); a unit test fails when stale.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lambda_contracts.events import MAX_AMOUNT_CENTS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIEWS_FILE = PROJECT_ROOT / "views.toml"
SCHEMA_PATH = PROJECT_ROOT / "views.schema.json"

# Part of every version's hash input: bump it when the platform changes how a declared view is
# computed, and every user view gets a new version (so is rebuilt) at the next deploy.
SEMANTICS_VERSION = 1
VERSION_HEX_DIGITS = 12  # 48 bits: no collision among the versions one deployment ever holds
# The views of lambda_contracts.views (a unit test keeps the two in step). Not imported from
# there: the layers' views will be built from this module, which must not import them back.
BUILT_IN_VIEWS = ("account_minute", "global_minute")

Dimension = Literal["SourceAccountID", "TargetAccountID"]
Window = Literal["minute", "hour", "day"]
MeasureName = Literal[
    "count", "sum", "min", "max", "distinct(SourceAccountID)", "distinct(TargetAccountID)"
]
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
AMOUNT_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
AmountText = Annotated[str, Field(pattern=AMOUNT_PATTERN)]


class DeclarationError(ValueError):
    """A views file refused; ``str()`` is one line: ``<file>: view "<name>": <problem>``."""


def _cents(text: str) -> int:
    """A validated decimal string (``10``, ``10.5``, ``10.50``) as integer cents, exactly."""
    whole, _, decimals = text.partition(".")
    return int(whole) * 100 + int(decimals.ljust(2, "0"))


def normalise(
    dimensions: Iterable[str],
    window: str,
    measures: Iterable[str],
    amount_min_cents: int | None = None,
    amount_max_cents: int | None = None,
) -> dict[str, Any]:
    """A definition with every choice that changes no answer removed; what a version hashes.

    Dimensions and measures are sets (sorted): their order in the file is formatting. The
    layers lay a view's columns out in this order, so one version has one layout. Amounts are
    integer cents ("10" = "10.00"). The name is not in it: it is the other half of a view's
    identity, (name, version). Built-in views are versioned by the same rule.
    """
    return {
        "semantics": SEMANTICS_VERSION,
        "dimensions": sorted(set(dimensions)),
        "window": window,
        "measures": sorted(set(measures)),
        "amount_min_cents": amount_min_cents,
        "amount_max_cents": amount_max_cents,
    }


def version_of(normalised: dict[str, Any]) -> str:
    """The first hex digits of the SHA-256 of a normalised definition as canonical JSON."""
    canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:VERSION_HEX_DIGITS]


class ViewDeclaration(BaseModel):
    """One [[views]] table as written; normalised() is what it means, and what is hashed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=NAME_PATTERN,
        description="A safe identifier (a table and API name); not a built-in view's name.",
        json_schema_extra={"not": {"enum": list(BUILT_IN_VIEWS)}},
    )
    dimensions: tuple[Dimension, ...] = Field(
        description="Wire fields the view is keyed by, in any order; [] is one global key.",
        json_schema_extra={"uniqueItems": True},
    )
    window: Window = Field(description="The event-time window (of CreatedTime).")
    measures: tuple[MeasureName, ...] = Field(
        min_length=1,
        description="count, sum/min/max of Amount, or distinct(<ID field>): an exact count "
        "of the distinct IDs (a set, merged by union). In any order.",
        json_schema_extra={"uniqueItems": True},
    )
    amount_min: AmountText | None = Field(
        default=None, description='Only events with Amount ≥ this, e.g. "10000.00".'
    )
    amount_max: AmountText | None = Field(
        default=None, description='Only events with Amount ≤ this, e.g. "99.99".'
    )

    @model_validator(mode="after")
    def _consistent(self) -> ViewDeclaration:
        if self.name in BUILT_IN_VIEWS:
            raise ValueError(
                "name is taken by a built-in view (built-in views cannot be changed or removed)"
            )
        for field in ("dimensions", "measures"):
            items: tuple[str, ...] = getattr(self, field)
            for item in items:
                if items.count(item) > 1:
                    raise ValueError(f'duplicate {field[:-1]} "{item}"')
        for dimension in self.dimensions:
            if f"distinct({dimension})" in self.measures:
                raise ValueError(
                    f"distinct({dimension}) counts a dimension of the view (always 1 per key)"
                )
        for field in ("amount_min", "amount_max"):
            text = getattr(self, field)
            if text is not None and _cents(text) > MAX_AMOUNT_CENTS:
                raise ValueError(
                    f"{field} {text} is above the largest amount of an event "
                    f"({MAX_AMOUNT_CENTS // 100}.00)"
                )
        low, high = self.amount_min_cents, self.amount_max_cents
        if low is not None and high is not None and low > high:
            raise ValueError(f"amount_min {self.amount_min} > amount_max {self.amount_max}")
        return self

    @property
    def amount_min_cents(self) -> int | None:
        """The inclusive lower bound in cents; 0 is no bound (every amount is ≥ 0)."""
        cents = None if self.amount_min is None else _cents(self.amount_min)
        return cents or None

    @property
    def amount_max_cents(self) -> int | None:
        """The inclusive upper bound in cents (kept even at the platform's maximum amount,
        which may be raised: the bound would then start to filter)."""
        return None if self.amount_max is None else _cents(self.amount_max)

    def normalised(self) -> dict[str, Any]:
        """The definition with every choice that changes no answer removed (:func:`normalise`)."""
        return normalise(
            self.dimensions,
            self.window,
            self.measures,
            self.amount_min_cents,
            self.amount_max_cents,
        )

    @property
    def version(self) -> str:
        return version_of(self.normalised())

    @property
    def identity(self) -> tuple[str, str]:
        return (self.name, self.version)


class Declarations(BaseModel):
    """A views file: the user's views (the built-in views always exist besides them)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Views file (LAMBDA_VIEWS_FILE)",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    views: tuple[ViewDeclaration, ...] = Field(
        default=(), description="One [[views]] table per view; none is fine."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Declarations:
        seen: set[str] = set()
        for view in self.views:
            if view.name in seen:
                raise ValueError(f'view "{view.name}": duplicate name')
            seen.add(view.name)
        return self

    def by_name(self) -> dict[str, ViewDeclaration]:
        return {v.name: v for v in self.views}


def load_declarations(path: Path | None) -> Declarations:
    """The views file at ``path`` (None: ``views.toml`` at the repo root), validated.

    A missing file declares no views. Anything else wrong raises :class:`DeclarationError`.
    """
    path = DEFAULT_VIEWS_FILE if path is None else path
    shown = _shown(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Declarations()
    except UnicodeDecodeError as exc:
        raise DeclarationError(f"{shown}: is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DeclarationError(f"{shown}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError(f"{shown}: invalid TOML {_toml_where(str(exc))}") from None
    return parse_declarations(raw, shown)


def parse_declarations(raw: dict[str, Any], source: str = "views.toml") -> Declarations:
    """Validate an already-parsed views file; ``source`` names it in the error."""
    try:
        return Declarations.model_validate(raw)
    except ValidationError as exc:
        raise DeclarationError(f"{source}: {_one_line(exc, raw)}") from None


def _shown(path: Path) -> str:
    """A path as shown in messages: relative to the repo root when under it."""
    absolute = path.resolve()
    inside = absolute.is_relative_to(PROJECT_ROOT)
    return str(absolute.relative_to(PROJECT_ROOT) if inside else path)


def _toml_where(message: str) -> str:
    """tomllib's "problem (at line 3, column 9)" as "at line 3, column 9: problem"."""
    found = re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", message)
    return f"at {found[2]}: {found[1]}" if found else f": {message}"


def _show(value: Any) -> str:
    """A value from the file as JSON on one line (quotes, escapes; TOML dates as text)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _one_line(error: ValidationError, raw: Any) -> str:
    """The first problem pydantic found, worded for the person editing the file."""
    first = error.errors(include_url=False)[0]
    loc, kind, value = first["loc"], first["type"], first.get("input")
    where = ""
    if len(loc) >= 2 and loc[0] == "views" and isinstance(loc[1], int):
        views = raw.get("views") if isinstance(raw, dict) else None
        table = views[loc[1]] if isinstance(views, list) else None
        name = table.get("name") if isinstance(table, dict) else None
        where = f"view {_show(name)}: " if isinstance(name, str) else f"view #{loc[1] + 1}: "
        loc = loc[2:]
    field = str(loc[0]) if loc else ""
    if kind == "extra_forbidden":
        problem = f"unknown key {_show(field)}"
    elif kind == "missing":
        problem = f"missing key {_show(field)}"
    elif kind == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        problem = f"unknown {field.rstrip('s')} {_show(value)} (expected {expected})"
    elif kind == "string_pattern_mismatch" and field == "name":
        problem = "name is not a safe identifier ([a-z][a-z0-9_]{0,62})"
    elif kind in ("string_pattern_mismatch", "string_type") and field.startswith("amount_"):
        problem = f'{field} {_show(value)} is not a decimal string like "10000.00"'
    elif kind == "too_short" and field == "measures":
        problem = "no measures (count, sum, min, max or distinct(<ID field>))"
    elif kind == "value_error":
        problem = str(first["msg"]).removeprefix("Value error, ")
    else:
        message = str(first["msg"]).replace("valid tuple", "valid array")
        problem = f"{'.'.join(map(str, loc)) or 'file'}: {message}"
    return where + problem


def schema_text() -> str:
    """``views.schema.json``: the JSON Schema of :class:`Declarations`."""
    return json.dumps(Declarations.model_json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None, schema_path: Path = SCHEMA_PATH) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, help="a views file: print its versions")
    parser.add_argument("--schema", action="store_true", help=f"write {SCHEMA_PATH.name}")
    parser.add_argument("--check", action="store_true", help="with --schema: exit 1 if stale")
    args = parser.parse_args(argv)
    if args.schema:
        shown = _shown(schema_path)
        if not args.check:
            schema_path.write_text(schema_text(), encoding="utf-8")
            print(f"wrote {shown}")
        elif not schema_path.exists() or schema_path.read_text(encoding="utf-8") != schema_text():
            print(f"{shown} is stale: run `make views-schema` and commit it", file=sys.stderr)
            return 1
        return 0
    try:
        declarations = load_declarations(args.file)
    except DeclarationError as exc:
        print(exc, file=sys.stderr)
        return 1
    for view in declarations.views:
        print(f"{view.name} {view.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
