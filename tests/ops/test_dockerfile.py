"""Dockerfile rules: multi-stage, slim, non-root, healthcheck on /healthz, rls-cds entrypoint."""

from __future__ import annotations

import json

from rls_cds.cli import build_parser
from tests.ops.deployment import REPO, dockerfile_stages, env_instruction_names, settings_env_names

STAGES = dockerfile_stages()
FINAL = STAGES[-1]


def test_multi_stage_with_a_slim_python_311_base():
    assert len(STAGES) >= 2
    text = (REPO / "Dockerfile").read_text()
    assert "python:3.11-slim" in text
    assert FINAL.base in ("${PYTHON_IMAGE}", "python:3.11-slim") or FINAL.base.startswith("python:3.11-slim")
    assert any(arg.startswith("--from=") for arg in FINAL.all("COPY")), "final stage copies the built venv"


def test_no_build_tools_in_the_final_image():
    final_runs = " ".join(FINAL.all("RUN"))
    for tool in ("build-essential", "gcc", "g++", "make ", "apt-get install"):
        assert tool not in final_runs, tool
    assert "build-essential" in " ".join(" ".join(s.all("RUN")) for s in STAGES[:-1])


def test_runs_as_a_non_root_user():
    users = FINAL.all("USER")
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_healthcheck_asks_healthz():
    checks = FINAL.all("HEALTHCHECK")
    assert checks and "/healthz" in checks[-1] and "NONE" not in checks[-1].upper()


def test_entrypoint_and_default_command_are_the_cli():
    assert json.loads(FINAL.all("ENTRYPOINT")[-1]) == ["rls-cds"]
    cmd = json.loads(FINAL.all("CMD")[-1])
    assert build_parser().parse_args(cmd).command == "serve"
    assert "0.0.0.0" in cmd


def test_content_is_copied_and_settings_point_at_it():
    copies = " ".join(FINAL.all("COPY"))
    assert "terminology" in copies and "cds-hooks" in copies
    env_names = [n for arg in FINAL.all("ENV") for n in env_instruction_names(arg)]
    assert {"RLS_TERMINOLOGY_DIR", "RLS_CATALOGUE_DIR"} <= set(env_names)
    rls_names = {n for n in env_names if n.startswith("RLS_") or n == "REDIS_URL"}
    assert rls_names <= settings_env_names(), rls_names - settings_env_names()


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".venv-fhir", "var", ".env"} <= ignored
    for needed in ("src", "terminology", "cds-hooks", "pyproject.toml", "README.md"):
        assert needed not in ignored, needed
