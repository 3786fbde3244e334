"""The real tables (loaded once per session) and writable copies for broken-table tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rls_cds.terminology import Terminology, load_terminology

TABLES = Path(__file__).resolve().parents[2] / "terminology"


@pytest.fixture(scope="session")
def terminology() -> Terminology:
    return load_terminology(TABLES)


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    """A private copy of the real tables that a test may break."""
    target = tmp_path / "terminology"
    shutil.copytree(TABLES, target, ignore=shutil.ignore_patterns("README.md"))
    return target
