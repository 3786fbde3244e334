"""`rls-cds evaluate` on the shipped examples: the real console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "cds-hooks" / "examples"
RLS_CDS = str(Path(sys.executable).parent / "rls-cds")

# file -> (hook the request names, causes of the cards expected at 2026-11-01)
EXPECTED = {
    "patient-view-low-ferritin-sertraline.json": ("patient-view", ["iron_deficiency", "drug_induced"]),
    "order-sign-escitalopram-draft.json": ("order-sign", ["iron_deficiency", "drug_induced"]),
    "bundle-esrd-dialysis.json": ("patient-view", ["iron_deficiency", "kidney_disease", "drug_induced"]),
    "patient-view-pregnant-third-trimester.json": (
        "patient-view",
        ["iron_studies_missing", "drug_induced", "pregnancy"],
    ),
    "order-sign-gabapentin-nothing-to-flag.json": ("order-sign", []),
    "patient-view-no-rls-diagnosis.json": ("patient-view", []),
}


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RLS_CDS, "evaluate", *args], capture_output=True, input=stdin, timeout=60, cwd=ROOT, check=False
    )


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_json_output(name):
    hook, expected = EXPECTED[name]
    proc = _cli(str(EXAMPLES / name), "--now", "2026-11-01", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert out["hook"] == hook
    assert [c["source"]["topic"]["code"] for c in out["cards"]] == expected
    for f in out["findings"]:
        assert {"cause", "strength", "evidence"} <= set(f)
    assert out["table_version"]


def test_escitalopram_draft_card_deletes_the_draft_and_says_it_read_leniently():
    out = json.loads(
        _cli(str(EXAMPLES / "order-sign-escitalopram-draft.json"), "--now", "2026-11-01", "--json").stdout
    )
    card = next(c for c in out["cards"] if c["source"]["topic"]["code"] == "drug_induced")
    assert card["suggestions"][0]["actions"][0]["resourceId"] == ["MedicationRequest/draft-escitalopram"]
    assert "read leniently" in card["detail"].lower()
    assert any("category" in w for w in out["warnings"])


def test_readable_output_and_hook_override():
    path = str(EXAMPLES / "order-sign-escitalopram-draft.json")
    proc = _cli(path, "--now", "2026-11-01")
    text = proc.stdout.decode()
    assert proc.returncode == 0 and "WARNING" in text and "escitalopram" in text.lower()
    # As patient-view, the draft is not being decided: no escitalopram card, the active sertraline instead.
    pv = json.loads(_cli(path, "--now", "2026-11-01", "--hook", "patient-view", "--json").stdout)
    summaries = " ".join(c["summary"].lower() for c in pv["cards"])
    assert "sertraline" in summaries and "escitalopram" not in summaries


def test_same_input_and_now_give_identical_output():
    args = (str(EXAMPLES / "bundle-esrd-dialysis.json"), "--now", "2026-11-01T08:00:00Z", "--json")
    assert _cli(*args).stdout == _cli(*args).stdout


def test_stdin_and_strict_mode():
    body = (EXAMPLES / "patient-view-low-ferritin-sertraline.json").read_bytes()
    proc = _cli("-", "--now", "2026-11-01", "--json", "--strict", stdin=body)
    assert proc.returncode == 0
    assert [c["source"]["topic"]["code"] for c in json.loads(proc.stdout)["cards"]] == [
        "iron_deficiency",
        "drug_induced",
    ]


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args in ([str(bad)], [str(tmp_path / "missing.json")], [str(bad), "--now", "tomorrow"]):
        proc = _cli(*args)
        assert proc.returncode == 2
        assert b"Traceback" not in proc.stderr and proc.stderr.startswith(b"rls-cds evaluate: ")
