"""docs/operations.md's table of environment variables == the Settings object, both ways, defaults too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rls_cds.settings import REPO_ROOT, Settings
from tests.ops.deployment import REPO, settings_env_names

DOC = REPO / "docs" / "operations.md"


def _env_table() -> dict[str, str]:
    """{variable: default cell} of the table under the 'Environment variables' heading."""
    text = DOC.read_text()
    section = text.split("## 10. Environment variables", 1)[1]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            rows[name] = cells[1].strip("`")
    return rows


TABLE = _env_table()


def _field_for(variable: str) -> str:
    for name, f in Settings.model_fields.items():
        choices = getattr(f.validation_alias, "choices", None) or [f"RLS_{name}"]
        if variable in {str(c).upper() for c in choices}:
            return name
    raise KeyError(variable)


def test_every_setting_is_documented():
    missing = settings_env_names() - set(TABLE)
    assert not missing, f"add to docs/operations.md §10: {sorted(missing)}"


def test_every_documented_variable_is_read_by_the_settings():
    unknown = set(TABLE) - settings_env_names()
    assert not unknown, f"documented but not read by Settings: {sorted(unknown)}"


@pytest.mark.parametrize("variable", sorted(TABLE))
def test_documented_default_is_the_real_default(variable):
    default = Settings.model_fields[_field_for(variable)].default
    shown = TABLE[variable]
    if default is None:
        assert shown == "(unset)"
    elif isinstance(default, bool):
        assert shown == str(default).lower()
    elif isinstance(default, Path):
        assert shown == f"<repo>/{default.relative_to(REPO_ROOT)}"
    elif isinstance(default, int | float):
        assert float(shown) == float(default)
    else:
        assert shown == str(default)
