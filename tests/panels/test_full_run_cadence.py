"""An incremental panel reads every member again when its latest full run is too old (real Redis)."""

from __future__ import annotations

import shutil
import time

import redis

from rls_cds import provenance
from rls_cds.panels.config import Panel
from rls_cds.panels.orchestrate import create_panel_run, judged_with
from rls_cds.panels.state import RunState
from rls_cds.provenance import files_digest
from tests.support.fhir_server import REPO

DAY = 86400


def _past_run(
    client, panel_id: str, run_id: str, *, days_ago: float, incremental: bool, status="succeeded", judged=None
):
    RunState(client, run_id).create(
        {
            "panel": panel_id,
            "status": status,
            "created_at": time.time() - days_ago * DAY,
            "transaction_time": f"export-of-{run_id}",
            "incremental": incremental,
            "judged_with": judged,
        },
        {},
        {},
    )


def _panel(panel_id: str) -> Panel:
    return Panel(id=panel_id, fhir_server="https://fhir.example", group="g1", incremental=True)


def test_incremental_follows_a_recent_full_run_and_its_increments(panel_redis):
    client = redis.Redis.from_url(panel_redis.url)
    _past_run(client, "cad-a", "r1-full", days_ago=3, incremental=False)
    _past_run(client, "cad-a", "r2-inc", days_ago=2, incremental=True)
    _past_run(client, "cad-a", "r3-failed", days_ago=1, incremental=True, status="failed")
    meta = create_panel_run(client, _panel("cad-a"), full_every_days=7).meta()
    assert meta["incremental"] is True
    assert meta["previous_run"] == "r2-inc" and meta["since"] == "export-of-r2-inc"


def test_a_full_run_older_than_the_cadence_means_a_full_run_now(panel_redis):
    client = redis.Redis.from_url(panel_redis.url)
    _past_run(client, "cad-b", "r1-full", days_ago=8, incremental=False)
    _past_run(client, "cad-b", "r2-inc", days_ago=1, incremental=True)
    meta = create_panel_run(client, _panel("cad-b"), full_every_days=7).meta()
    assert meta["incremental"] is False and meta["since"] is None and meta["previous_run"] is None
    # ... and the next run follows that full one incrementally again.
    _past_run(client, "cad-b", "r3-full", days_ago=0, incremental=False)
    assert create_panel_run(client, _panel("cad-b"), full_every_days=7).meta()["previous_run"] == "r3-full"


def test_without_any_successful_full_run_everything_is_read(panel_redis):
    client = redis.Redis.from_url(panel_redis.url)
    _past_run(client, "cad-c", "r1-inc", days_ago=1, incremental=True)  # its full run fell off the list
    meta = create_panel_run(client, _panel("cad-c"), full_every_days=7).meta()
    assert meta["incremental"] is False and meta["since"] is None


def test_a_run_judged_by_other_tables_or_code_is_never_carried_over(panel_redis, tmp_path):
    # Before, an informaticist's table edit (or a release) reached unchanged members only at the next
    # scheduled full run, up to RLS_PANEL_FULL_RUN_EVERY_DAYS later.
    client = redis.Redis.from_url(panel_redis.url)
    tables = tmp_path / "terminology"
    shutil.copytree(REPO / "terminology", tables)
    before = judged_with(tables)
    _past_run(client, "cad-d", "r1-full", days_ago=2, incremental=False, judged=before)
    _past_run(client, "cad-d", "r2-inc", days_ago=1, incremental=True, judged=before)
    same = create_panel_run(client, _panel("cad-d"), full_every_days=7, judgement=before).meta()
    assert same["incremental"] is True and same["previous_run"] == "r2-inc" and same["judged_with"] == before
    labs = tables / "labs.csv"
    labs.write_text(labs.read_text() + "\n")  # any edit of any table
    after = judged_with(tables)
    assert after != before
    meta = create_panel_run(client, _panel("cad-d"), full_every_days=7, judgement=after).meta()
    assert meta["incremental"] is False and meta["previous_run"] is None and meta["judged_with"] == after
    # Runs from before this field existed were judged by unknown tables: a full run too.
    _past_run(client, "cad-e", "r1-full", days_ago=1, incremental=False)
    assert create_panel_run(client, _panel("cad-e"), judgement=after).meta()["incremental"] is False


def test_the_code_digest_covers_code_outside_the_core(tmp_path):
    # A fix to unit conversion (rls_cds/terminology/) must change what runs are judged with.
    package = tmp_path / "rls_cds"
    shutil.copytree(REPO / "src" / "rls_cds", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = files_digest(package, (".py",))
    units = package / "terminology" / "units.py"
    units.write_text(units.read_text() + "\n# a fix\n")
    assert files_digest(package, (".py",)) != before
    # ... and the digest runs are judged with is that of the whole package, not of rls_cds/core.
    provenance.code_digest.cache_clear()  # computed once per process: the tree may have changed since
    assert provenance.code_digest() == files_digest(REPO / "src" / "rls_cds", (".py",))
