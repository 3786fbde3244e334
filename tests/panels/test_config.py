"""Panels file: valid panels load; every mistake names the file, the panel and the key; cron -> beat."""

from __future__ import annotations

import pytest
import yaml
from celery.schedules import crontab

from rls_cds.panels.config import PanelConfigError, load_panels, parse_panels
from rls_cds.settings import Settings

BASE = "https://fhir.example.org/r4"


def test_valid_panels_and_defaults(tmp_path):
    path = tmp_path / "panels.yaml"
    doc = {
        "panels": {
            "ckd": {
                "fhir_server": BASE + "/",
                "group": "g-1",
                "schedule": "30 2 * * 1-5",
                "incremental": True,
            },
            "list": {"fhir_server": BASE, "patients": ["p1", "p2"]},
            "gp": {"fhir_server": BASE, "search": "Patient?general-practitioner=Practitioner/7"},
        }
    }
    path.write_text(yaml.safe_dump(doc))
    panels = load_panels(Settings(panels_file=path))
    assert panels["ckd"].strategy == "bulk" and panels["ckd"].fhir_server == BASE
    assert panels["ckd"].writeback is False  # write-back is off unless asked for
    assert panels["list"].strategy == "search" and panels["list"].patients == ("p1", "p2")
    assert panels["gp"].source == "search"
    assert load_panels(Settings(panels_file=None)) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fhir_server": BASE}, "exactly one of"),
        ({"fhir_server": BASE, "group": "g", "patients": ["a"]}, "exactly one of"),
        ({"fhir_server": "ftp://x", "group": "g"}, "'fhir_server'"),
        ({"fhir_server": BASE, "patients": ["a"], "strategy": "bulk"}, "strategy 'bulk' exports a Group"),
        ({"fhir_server": BASE, "group": "g", "schedule": "every night"}, "cron expression"),
        ({"fhir_server": BASE, "group": "g", "colour": "red"}, "unknown key(s) ['colour']"),
        ({"fhir_server": BASE, "patients": ["ok", "bad id/x"]}, "'patients'"),
        ({"fhir_server": BASE, "search": "Observation?code=1"}, "'search' must be a Patient search"),
    ],
)
def test_mistakes_name_file_panel_and_key(body, message):
    with pytest.raises(PanelConfigError) as err:
        parse_panels({"panels": {"p1": body}}, "panels.yaml")
    assert str(err.value).startswith("panels.yaml: panel 'p1': ") and message in str(err.value)


def test_unreadable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "panels.yaml"
    path.write_text("panels: [unclosed")
    with pytest.raises(PanelConfigError, match="invalid YAML"):
        load_panels(Settings(panels_file=path))


def test_beat_schedule_from_panel_cron(tmp_path):
    from rls_cds.panels.tasks import beat_schedule

    path = tmp_path / "panels.yaml"
    path.write_text(
        yaml.safe_dump({"panels": {"ckd": {"fhir_server": BASE, "group": "g", "schedule": "15 3 * * *"}}})
    )
    schedule = beat_schedule(Settings(panels_file=path))
    entry = schedule["rls-panel-ckd"]
    assert entry["task"] == "rls_cds.panels.tasks.scheduled_run" and entry["args"] == ["ckd"]
    assert entry["schedule"] == crontab(minute="15", hour="3")
    assert entry["options"]["queue"] == "batch"
    assert schedule["rls-panels-sweep"]["task"] == "rls_cds.panels.tasks.sweep"
