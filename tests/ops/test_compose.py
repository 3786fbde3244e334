"""docker-compose.yml cannot drift from the code: Docker does not run here, so parse it and check it
against the real CLI parser, the real Settings fields and the files in the repository."""

from __future__ import annotations

import json

import pytest

from rls_cds.cli import build_parser
from rls_cds.settings import Settings
from tests.ops.deployment import (
    REPO,
    builds_project_image,
    command_args,
    environment,
    interpolate_defaults,
    load_compose,
    settings_env_names,
)

COMPOSE = load_compose()
SERVICES = COMPOSE["services"]
PROJECT_SERVICES = sorted(name for name, svc in SERVICES.items() if builds_project_image(svc))


def test_the_four_core_services_exist_and_run_the_project_image():
    assert {"redis", "api", "worker", "beat"} <= set(SERVICES)
    assert {"api", "worker", "beat"} <= set(PROJECT_SERVICES)
    images = {SERVICES[name].get("image") for name in ("api", "worker", "beat")}
    assert len(images) == 1, "api, worker and beat must be one image"


def test_optional_services_are_behind_profiles():
    assert "flower" in SERVICES["flower"]["profiles"]
    assert "dev" in SERVICES["fhir"]["profiles"]
    for core in ("redis", "api", "worker", "beat"):
        assert not SERVICES[core].get("profiles"), f"{core} must start by default"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_or_an_existing_build_context(name):
    svc = SERVICES[name]
    assert svc.get("image") or svc.get("build"), name
    build = svc.get("build")
    if build:
        context = build["context"] if isinstance(build, dict) else build
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        assert (REPO / context).is_dir(), f"{name}: build context {context} missing"
        assert (REPO / context / dockerfile).is_file(), f"{name}: {dockerfile} missing in {context}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck(name):
    check = SERVICES[name].get("healthcheck")
    assert check and not check.get("disable"), name
    test = check["test"]
    assert test and test[0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_commands_are_real_cli_sub_commands(name):
    args = command_args(SERVICES[name])
    assert args, f"{name} has no command"
    parsed = build_parser().parse_args(args)  # SystemExit (failure) on an unknown command or option
    assert parsed.command == args[0]


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_healthcheck_commands_exist(name):
    test = SERVICES[name]["healthcheck"]["test"]
    words = test[1].split() if test[0] == "CMD-SHELL" else test[1:]
    if words[0] == "rls-cds":
        build_parser().parse_args(words[1:])
    elif words[0] == "celery":
        import importlib

        from celery import Celery

        module = importlib.import_module(words[words.index("-A") + 1])
        assert any(isinstance(v, Celery) for v in vars(module).values()), "no Celery app in -A module"
    else:
        assert words[0] == "python"


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_environment_names_are_settings_the_service_reads(name):
    env = environment(SERVICES[name])
    unknown = set(env) - settings_env_names()
    assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_environment_defaults_validate(name, monkeypatch):
    """With nothing set in the operator's shell, the values compose passes are valid settings."""
    for var in settings_env_names():
        monkeypatch.delenv(var, raising=False)
    for key, value in environment(SERVICES[name]).items():
        if value is not None:
            monkeypatch.setenv(key, interpolate_defaults(str(value)))
    settings = Settings()
    assert settings.redis_url == "redis://redis:6379/0"  # distributed mode: never the embedded Redis


def test_redis_persists_with_append_only_file_on_a_volume():
    redis = SERVICES["redis"]
    args = command_args(redis)
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"  # queues are never evicted
    volumes = [v.split(":") for v in redis["volumes"]]
    assert any(target == "/data" and source in COMPOSE["volumes"] for source, target, *_ in volumes)


def test_beat_cannot_be_scaled_and_workers_can():
    beat = SERVICES["beat"]
    assert beat.get("container_name"), "a fixed container name makes `--scale beat=2` fail"
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    for scalable in ("worker", "api"):
        svc = SERVICES[scalable]
        assert not svc.get("container_name"), scalable
        for port in svc.get("ports", []):
            host = str(port).rsplit(":", 1)[0]
            assert "-" in interpolate_defaults(host) or not host, f"{scalable}: fixed host port {port}"


def test_shutdown_grace_covers_draining():
    def seconds(value: str) -> float:
        units = {"s": 1, "m": 60, "h": 3600}
        return float(value[:-1]) * units[value[-1]]

    api_grace = seconds(SERVICES["api"]["stop_grace_period"])
    assert api_grace > Settings().hook_deadline_seconds * 2
    assert api_grace > Settings().shutdown_grace_seconds  # uvicorn gives up draining before Docker kills
    assert seconds(SERVICES["worker"]["stop_grace_period"]) >= 60  # warm shutdown of running tasks


def test_bind_mounts_and_named_volumes_exist():
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} not declared"


def test_no_secret_values_in_the_compose_file():
    secret_like = {
        name
        for name in settings_env_names()
        if any(word in name for word in ("SECRET", "PASSWORD", "TOKEN", "KEY"))
    }
    for name, svc in SERVICES.items():
        for key, value in environment(svc).items():
            if key in secret_like or "SECRET" in key or "PASSWORD" in key:
                assert value is None or str(value).startswith("${"), f"{name}: {key} has a literal value"
    assert "://:" not in json.dumps(COMPOSE), "a URL with a password"


# Service attributes of the Compose Specification used here or commonly (a typo such as `healtcheck`
# would otherwise be silently ignored by a parser-only test).
_SERVICE_KEYS = {
    "build",
    "command",
    "container_name",
    "depends_on",
    "deploy",
    "entrypoint",
    "environment",
    "env_file",
    "expose",
    "healthcheck",
    "image",
    "init",
    "labels",
    "logging",
    "networks",
    "ports",
    "profiles",
    "read_only",
    "restart",
    "stop_grace_period",
    "stop_signal",
    "tmpfs",
    "ulimits",
    "user",
    "volumes",
    "working_dir",
}
_HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
_DURATION = r"^\d+(\.\d+)?(us|ms|s|m|h)$"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_attributes_are_compose_keys(name):
    import re

    svc = SERVICES[name]
    assert set(svc) <= _SERVICE_KEYS, set(svc) - _SERVICE_KEYS
    check = svc["healthcheck"]
    assert set(check) <= _HEALTHCHECK_KEYS, set(check) - _HEALTHCHECK_KEYS
    for key in ("interval", "timeout", "start_period"):
        if key in check:
            assert re.match(_DURATION, str(check[key])), f"{name}.healthcheck.{key}={check[key]}"
    if "stop_grace_period" in svc:
        assert re.match(_DURATION, str(svc["stop_grace_period"]))
    assert svc.get("restart", "no") in ("no", "always", "on-failure", "unless-stopped")
    for dep, cond in (svc.get("depends_on") or {}).items():
        assert dep in SERVICES
        assert cond["condition"] in ("service_started", "service_healthy", "service_completed_successfully")
