"""Reading the table files: CSV rows with their line numbers, YAML with line numbers, problem collection."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rls_cds.terminology.errors import Problem

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Problems:
    """Collects every problem of one load so `terminology check` can show them all at once."""

    items: list[Problem] = field(default_factory=list)

    def add(self, file: str, line: int, message: str) -> None:
        self.items.append(Problem(file, line, message))


@dataclass(frozen=True)
class Row:
    file: str
    line: int
    cells: dict[str, str]

    def get(self, column: str) -> str:
        return self.cells.get(column, "")


def read_csv(path: Path, text: str, required: list[str], problems: Problems) -> list[Row]:
    """Rows of a CSV table (cells stripped; blank rows and rows whose first cell starts with '#' skipped).

    Line numbers are the physical line where the row starts, as a spreadsheet shows it."""
    name = path.name
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        problems.add(name, 1, "empty file: expected a header row")
        return []
    missing = [c for c in required if c not in header]
    if missing:
        problems.add(name, 1, f"missing column(s): {', '.join(missing)}")
        return []
    rows: list[Row] = []
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if len(cells) > len(header):
            problems.add(name, line, f"{len(cells)} cells but the header has {len(header)} columns")
            continue
        values = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)}
        rows.append(Row(name, line, values))
    return rows


def split_list(value: str) -> list[str]:
    """A ';'-separated cell as a list of non-empty items."""
    return [item.strip() for item in value.split(";") if item.strip()]


def parse_bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v in ("yes", "true", "y", "1"):
        return True
    if v in ("no", "false", "n", "0", ""):
        return False
    return None


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML loader that records each mapping's line (``__line__``) and each key's line (``__lines__``),
    and reports duplicate keys instead of silently keeping the last one."""

    duplicate_keys: list[tuple[int, str]]

    def construct_mapping(self, node, deep=False):
        lines: dict[str, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in lines:
                self.duplicate_keys.append((line, str(key)))
            lines[str(key)] = line
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        mapping["__lines__"] = lines
        return mapping


def read_yaml(path: Path, text: str, problems: Problems) -> dict | None:
    loader = _LineLoader(text)
    loader.duplicate_keys = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.add(
            path.name, (mark.line + 1) if mark else 1, f"YAML syntax error: {getattr(exc, 'problem', exc)}"
        )
        return None
    finally:
        loader.dispose()
    for line, key in loader.duplicate_keys:
        problems.add(path.name, line, f"duplicate key {key!r}")
    if not isinstance(data, dict):
        problems.add(path.name, 1, "expected a mapping at the top level")
        return None
    return data


def items(mapping: dict) -> Iterator[tuple[str, object, int]]:
    """(key, value, line) of a line-annotated YAML mapping, without the annotations."""
    lines = mapping.get("__lines__", {})
    for key, value in mapping.items():
        if key in ("__line__", "__lines__"):
            continue
        yield key, value, lines.get(str(key), mapping.get("__line__", 1))
