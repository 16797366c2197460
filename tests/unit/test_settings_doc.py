"""docs/settings.md is generated from the Settings class and must be kept in step with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_contracts import settings_doc
from lambda_contracts.settings import PROJECT_ROOT, Settings


def test_docs_settings_md_is_up_to_date() -> None:
    path = PROJECT_ROOT / "docs" / "settings.md"
    assert path.exists(), "docs/settings.md is missing: run `make settings-doc`"
    assert path.read_text(encoding="utf-8") == settings_doc.render(), (
        "docs/settings.md differs from lambda_contracts/settings.py: run `make settings-doc` "
        "and commit the result"
    )


def test_every_setting_is_described_once() -> None:
    text = settings_doc.render()
    for name, info in Settings.model_fields.items():
        assert info.description, f"Settings.{name} has no description="
        assert text.count(f"| `LAMBDA_{name.upper()}` |") == 1


def test_render_ignores_the_environment_and_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    before = settings_doc.render()
    monkeypatch.setenv("LAMBDA_DATA_DIR", "/elsewhere")
    monkeypatch.setenv("LAMBDA_PARTITIONS", "9")
    assert settings_doc.render() == before
    assert str(PROJECT_ROOT) not in before
    assert str(Path.home()) not in before


def test_check_fails_on_a_stale_file_and_writing_mends_it(tmp_path: Path) -> None:
    target = tmp_path / "settings.md"
    target.write_text("stale\n", encoding="utf-8")
    assert settings_doc.main(["--check"], path=target) == 1
    assert target.read_text(encoding="utf-8") == "stale\n"
    assert settings_doc.main([], path=target) == 0
    assert settings_doc.main(["--check"], path=target) == 0
