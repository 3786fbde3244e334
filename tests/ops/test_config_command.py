"""`rls-cds config show|check` and the start-up message for invalid configuration (real subprocesses)."""

from __future__ import annotations

import json

import pytest

from rls_cds.settings import Settings
from tests.ops.helpers import run_cli

SECRET = "s3cr3t-Zq8vNw"  # distinctive, so any leak is found by substring


def test_show_lists_every_setting_with_its_variable():
    out = run_cli("config", "show", env={"RLS_PORT": "9123"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for name in Settings.model_fields:
        variable = "REDIS_URL" if name == "redis_url" else f"RLS_{name.upper()}"
        assert any(line.split()[0] == variable for line in lines), variable
    port_line = next(line for line in lines if line.startswith("RLS_PORT "))
    assert "9123" in port_line and "[env]" in port_line


def test_show_json_is_the_effective_configuration():
    out = run_cli("config", "show", "--json", env={"RLS_PORT": "9124", "RLS_DEV_MODE": "true"})
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert set(shown) == set(Settings.model_fields)
    assert shown["port"] == 9124 and shown["dev_mode"] is True
    assert shown["hook_deadline_seconds"] == Settings.model_fields["hook_deadline_seconds"].default


@pytest.mark.parametrize("as_json", [False, True])
def test_show_redacts_secrets_and_url_credentials(as_json):
    env = {
        "RLS_SUBSCRIPTION_SECRET": SECRET,
        "REDIS_URL": f"redis://:{SECRET}@redis.internal:6379/0",
        "RLS_PUBLIC_URL": f"https://svc:{SECRET}@cds.example.org",
    }
    out = run_cli("config", "show", *(["--json"] if as_json else []), env=env)
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert "redis.internal:6379/0" in out.stdout  # the rest of the URL stays useful
    assert "svc:**********@cds.example.org" in out.stdout
    if as_json:
        shown = json.loads(out.stdout)
        assert shown["subscription_secret"] == "**********"
        assert shown["redis_url"] == "redis://:**********@redis.internal:6379/0"


def test_user_name_alone_in_a_url_is_treated_as_a_token():
    out = run_cli("config", "show", "--json", env={"REDIS_URL": f"rediss://{SECRET}@r:6380/1"})
    assert SECRET not in out.stdout
    assert json.loads(out.stdout)["redis_url"] == "rediss://**********@r:6380/1"


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("RLS_PORT", "abc", ["config", "show"]),
        ("RLS_PORT", "70000", ["serve"]),
        ("RLS_HOOK_DEADLINE_SECONDS", "-1", ["evaluate", "patient.json"]),
        ("RLS_DEV_MODE", "maybe", ["worker"]),
        ("RLS_API_WORKERS", "0", ["config", "check"]),
        # Passed `config check` and then stopped `serve` with a ValueError traceback.
        ("RLS_LOG_LEVEL", "VERBOSE", ["config", "check"]),
        ("RLS_LOG_LEVEL", "VERBOSE", ["serve"]),
    ],
)
def test_invalid_configuration_fails_every_command_naming_the_variable(variable, value, command):
    out = run_cli(*command, env={variable: value})
    assert out.returncode != 0
    assert variable in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert repr(value) in out.stderr  # the offending value, so the operator sees what was read


def test_python_level_aliases_are_accepted():
    # Python's logging takes WARN and FATAL; refusing them would stop a worker configured that way.
    for alias in ("warn", "FATAL", " info "):
        out = run_cli("config", "check", "--offline", env={"RLS_LOG_LEVEL": alias})
        assert out.returncode == 0, (alias, out.stderr)


def test_invalid_secret_value_is_not_echoed():
    # SecretStr accepts any text, so make the error come from another variable in the same run.
    out = run_cli("config", "show", env={"RLS_SUBSCRIPTION_SECRET": SECRET, "RLS_MAX_JSON_DEPTH": "2"})
    assert out.returncode != 0 and "RLS_MAX_JSON_DEPTH" in out.stderr
    assert SECRET not in out.stderr + out.stdout


def test_check_reports_missing_files_by_variable(tmp_path):
    out = run_cli(
        "config",
        "check",
        "--offline",
        env={
            "RLS_TRUSTED_ISSUERS_FILE": str(tmp_path / "nope.yaml"),
            "RLS_CATALOGUE_DIR": str(tmp_path / "x"),
        },
    )
    assert out.returncode == 1
    assert "RLS_TRUSTED_ISSUERS_FILE" in out.stderr and "RLS_CATALOGUE_DIR" in out.stderr


def test_check_reports_unreachable_redis_without_its_password(tmp_path):
    from tests.support.fhir_server import free_port

    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"  # nothing listens there
    out = run_cli("config", "check", env={"REDIS_URL": url}, timeout=30)
    assert out.returncode == 1
    assert "REDIS_URL" in out.stderr and SECRET not in out.stderr + out.stdout


def test_check_passes_against_a_real_redis(tmp_path):
    from tests.support.cds_server import start_redis
    from tests.support.fhir_server import stop_process

    redis = start_redis(tmp_path / "redis")
    try:
        out = run_cli("config", "check", env={"REDIS_URL": redis.url})
    finally:
        stop_process(redis.process)
    problems = [line for line in out.stderr.splitlines() if line.startswith("problem:")]
    # The terminology tables may still be missing in this checkout; Redis must not be a problem.
    assert not [p for p in problems if "REDIS_URL" in p]
    if not problems:
        assert out.returncode == 0 and "distributed" in out.stdout


def test_check_validates_the_trusted_issuers(tmp_path):
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text("issuers:\n  - iss: https://ehr.example.org\n    jwks_url: not-a-url\n")
    out = run_cli("config", "check", "--offline", env={"RLS_TRUSTED_ISSUERS_FILE": str(issuers)})
    assert out.returncode == 1
    assert "problem:" in out.stderr and "Traceback" not in out.stderr
    issuers.write_text(
        "issuers:\n  - iss: https://ehr.example.org\n    jwks_url: https://ehr.example.org/jwks\n"
        "    fhir_servers: [https://ehr.example.org/fhir]\n"
    )
    out = run_cli("config", "check", "--offline", env={"RLS_TRUSTED_ISSUERS_FILE": str(issuers)})
    assert out.returncode == 0, out.stderr


def test_worker_without_terminology_refuses_to_start_naming_the_variable(tmp_path):
    # It used to log "warm-up failed", go ready, and dead-letter every task it took.
    missing = tmp_path / "no-tables"
    out = run_cli(
        "worker",
        "--pool",
        "solo",
        env={"REDIS_URL": "redis://127.0.0.1:1/0", "RLS_TERMINOLOGY_DIR": str(missing)},
        timeout=30,
    )
    assert out.returncode == 2
    assert "refusing to start" in out.stderr and "RLS_TERMINOLOGY_DIR" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_panel_commands_without_a_panels_file_say_which_setting_is_missing():
    listed = run_cli("panel", "list")
    assert listed.returncode == 0 and "RLS_PANELS_FILE" in listed.stderr  # was silent
    run = run_cli("panel", "run", "nightly")
    assert run.returncode == 2 and "unknown panel 'nightly'" in run.stderr and "RLS_PANELS_FILE" in run.stderr


def test_check_notes_an_unset_patient_digest_key_outside_development():
    out = run_cli("config", "check", "--offline", env={"RLS_DEV_MODE": "false"})
    assert "RLS_PATIENT_DIGEST_KEY is not set" in out.stderr
    keyed = run_cli("config", "check", "--offline", env={"RLS_PATIENT_DIGEST_KEY": SECRET})
    assert "RLS_PATIENT_DIGEST_KEY" not in keyed.stderr and SECRET not in keyed.stdout + keyed.stderr
    shown = json.loads(run_cli("config", "show", "--json", env={"RLS_PATIENT_DIGEST_KEY": SECRET}).stdout)
    assert shown["patient_digest_key"] == "**********"


def test_check_notes_an_empty_patient_digest_key_like_an_unset_one():
    # 'RLS_PATIENT_DIGEST_KEY=' in a .env file: the digests are unkeyed SHA-256, so the check must say so.
    out = run_cli("config", "check", "--offline", env={"RLS_DEV_MODE": "false", "RLS_PATIENT_DIGEST_KEY": ""})
    assert "RLS_PATIENT_DIGEST_KEY is not set" in out.stderr


@pytest.mark.parametrize("broken", ["missing", "invalid"])
def test_serve_without_a_readable_catalogue_refuses_to_start_naming_the_variable(tmp_path, broken):
    # A `pip install` carries no cds-hooks/ folder (operations.md §3): serve used to die of an uncaught
    # FileNotFoundError (exit 1, a stack, no path, no variable) after starting the embedded Redis.
    catalogue = tmp_path / "cds-hooks"
    if broken == "invalid":
        catalogue.mkdir()
        (catalogue / "services.yaml").write_text("services:\n  - id: x\n    hook: no-such-hook\n")
    out = run_cli(
        "serve",
        "--dev",
        "--port",
        "1",
        env={"REDIS_URL": "redis://127.0.0.1:1/0", "RLS_CATALOGUE_DIR": str(catalogue)},
        timeout=60,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "refusing to start" in out.stderr and "RLS_CATALOGUE_DIR" in out.stderr
    assert "uncaught exception" not in out.stderr


def test_an_empty_variable_means_not_set():
    """`RLS_PANELS_FILE=` (an empty line in a .env) was the path '.': 'file . does not exist'."""
    env = {"RLS_PANELS_FILE": "", "RLS_FHIR_SERVERS_FILE": "", "REDIS_URL": "", "RLS_PORT": ""}
    shown = json.loads(run_cli("config", "show", "--json", env=env).stdout)
    assert shown["panels_file"] is None and shown["fhir_servers_file"] is None
    assert shown["redis_url"] is None and shown["port"] == Settings.model_fields["port"].default
    out = run_cli("config", "check", "--offline", env=env)
    assert "does not exist" not in out.stderr, out.stderr


def test_a_closed_pipe_stops_a_command_quietly():
    """`rls-cds panel report RUN --format json | head` printed a BrokenPipeError traceback."""
    import os
    import subprocess

    from tests.support.cds_server import RLS_CDS_BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    cmd = [str(RLS_CDS_BIN), "config", "show"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line is written
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert proc.returncode == 141
