"""The example request in docs/ehr-integration.md §6 still produces the response the guide shows."""

from __future__ import annotations

import json
import re

from tests.ops.deployment import REPO
from tests.ops.helpers import run_cli

GUIDE = (REPO / "docs" / "ehr-integration.md").read_text(encoding="utf-8")
NOW = "2026-11-25"  # the day the guide's response was recorded from the running service


def _json_blocks() -> list:
    section = GUIDE.split("## 6. Example requests and responses", 1)[1].split("## 7.", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, re.DOTALL)[:2]]


def test_guide_example_response_is_what_the_core_answers(tmp_path):
    request, shown = _json_blocks()
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    out = run_cli("evaluate", str(path), "--now", NOW, "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    cards = json.loads(out.stdout)["cards"]

    def key(card: dict) -> tuple:
        return card["source"]["topic"]["code"], card["indicator"], card["summary"]

    assert sorted(key(c) for c in cards) == sorted(key(c) for c in shown["cards"])
