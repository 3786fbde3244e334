"""Whatever an editor does to a table, loading ends in a Terminology or a TerminologyError, never a crash."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rls_cds.terminology import TerminologyError, load_terminology
from rls_cds.terminology.index import FILES

from .conftest import TABLES

ORIGINAL = {name: (TABLES / name).read_text(encoding="utf-8") for name in FILES}
junk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def _load_with(name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "t"
        shutil.copytree(TABLES, root, ignore=shutil.ignore_patterns("README.md"))
        (root / name).write_text(text, encoding="utf-8")
        try:
            load_terminology(root)
        except TerminologyError as exc:
            assert exc.file in FILES and exc.line >= 0 and exc.message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(FILES), position=st.floats(0, 1), insert=junk, cut=st.integers(0, 30))
def test_random_edits_never_crash_the_loader(name, position, insert, cut):
    text = ORIGINAL[name]
    at = int(position * len(text))
    _load_with(name, text[:at] + insert + text[at + cut :])


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(FILES), keep=st.floats(0, 1))
def test_truncated_tables_never_crash_the_loader(name, keep):
    text = ORIGINAL[name]
    _load_with(name, text[: int(keep * len(text))])
