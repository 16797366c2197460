"""``docs/settings.md``, generated from :class:`~lambda_contracts.settings.Settings`.

The settings reference is the class itself: each field's variable, type, constraints, default
and description are read from its declaration, so the page cannot drift from the code. The
page is written by ``make settings-doc`` (``python -m lambda_contracts.settings_doc``);
``--check`` exits 1 when the file on disk differs, and a unit test does the same.

Defaults are rendered without the machine they were computed on: a path under the project
root is shown relative to it (``./data``), one under the home directory as ``~/...``. The
environment plays no part: defaults are read from the fields, not from a ``Settings()``.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path

from annotated_types import Ge, Gt, Le, Lt
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lambda_contracts.settings import PROJECT_ROOT, Settings

DOC_PATH = PROJECT_ROOT / "docs" / "settings.md"

HEADER = """\
# Settings

<!-- Generated from lambda_contracts/settings.py by `make settings-doc`; do not edit. -->

Every setting is an environment variable read by one pydantic-settings class,
`lambda_contracts.settings.Settings` (through the cached `get_settings()`). Defaults run the
whole platform on one machine, so local mode needs none of them; docker compose, the cluster
and the tests set what they change.

- The variable of field `x` is `{prefix}X`. Unknown `{prefix}*` variables are ignored.
- An empty variable reads as unset: the default applies.
- List settings are JSON (`{prefix}API_CORS_ORIGINS='["https://a.example"]'`).
- Secrets (`SecretStr`) are left out of the environment of child processes that do not need
  them, such as Spark jobs.
- A path default under the project root is shown relative to it (`./data`); `~` is the home
  directory of the user running the platform.
- "unset" means the default is derived at start-up, as the description says.

| variable | type | default | description |
| --- | --- | --- | --- |
"""

FOOTER = """
Variables outside this class:

| variable | read by | meaning |
| --- | --- | --- |
| `KAFKA_HOME` | `infra/kafka_broker.py` | an Apache Kafka distribution to run instead of the \
Maven-fetched broker jars |
| `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | the S3 store | S3 keys; \
without them the rest of the AWS credential chain; `make up`'s own versitygw serves the first \
two |
| `LAMBDA_S3_ACCESS_KEY`, `LAMBDA_S3_SECRET_KEY` | `docker-compose.yml` | the compose object \
store's keys (default `lambda` / `lambda-secret`) |
| `DEMO` | `make up`, `make cluster-up` | `0` starts no demo producer |
| `CHAOS_ARGS`, `PYTEST_ARGS` | the Makefile | arguments of the fault runs and of pytest |
"""


def render() -> str:
    """The whole of ``docs/settings.md``."""
    prefix = Settings.model_config.get("env_prefix", "")
    rows = [_row(prefix, name, info) for name, info in Settings.model_fields.items()]
    return HEADER.format(prefix=prefix) + "".join(rows) + FOOTER


def _row(prefix: str, name: str, info: FieldInfo) -> str:
    variable = f"`{prefix}{name.upper()}`"
    kind = _code(_type_name(info.annotation) + _constraints(info))
    return f"| {variable} | {kind} | {_default(info)} | {_text(info.description or '')} |\n"


def _type_name(annotation: object) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(info: FieldInfo) -> str:
    signs = {Ge: ("≥", "ge"), Gt: (">", "gt"), Le: ("≤", "le"), Lt: ("<", "lt")}
    found = []
    for item in info.metadata:
        for cls, (sign, attr) in signs.items():
            if isinstance(item, cls):
                found.append(f"{sign} {getattr(item, attr)}")
    return f", {', '.join(found)}" if found else ""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return _code(_stable_path(value))
    if isinstance(value, list):
        return _code(repr(value).replace("'", '"'))
    return _code(str(value))


def _stable_path(path: Path) -> str:
    """A path as the same text on every checkout and every user's machine."""
    for base, shown in ((PROJECT_ROOT, "."), (Path.home(), "~")):
        if path.is_relative_to(base):
            return f"{shown}/{path.relative_to(base).as_posix()}"
    return path.as_posix()


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _text(text: str) -> str:
    """A description as a table cell: one line, no HTML, no cell breaks."""
    cell = " ".join(text.split())
    return cell.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def main(argv: list[str] | None = None, path: Path = DOC_PATH) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs, write nothing"
    )
    args = parser.parse_args(argv)
    text = render()
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            print(
                f"{shown} is stale: it differs from lambda_contracts/settings.py; "
                "run `make settings-doc` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{shown} is up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
