"""Parsers for the deployment files (docker-compose.yml, Dockerfile) used by the ops tests."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rls_cds.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def settings_env_names() -> set[str]:
    """Every environment variable the Settings object reads, derived from its fields."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for name, f in Settings.model_fields.items():
        alias = f.validation_alias
        if alias is None:
            names.add(f"{prefix}{name}".upper())
        else:
            names.update(str(c).upper() for c in getattr(alias, "choices", [alias]))
    return names


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate_defaults(value: str) -> str:
    """What compose makes of ${VAR:-default} when VAR is not set in the operator's shell."""
    return _INTERPOLATION.sub(lambda m: m["arg"] if m["op"] in (":-", "-") else "", value)


def environment(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE or bare KEY (pass-through) list form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def command_args(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def builds_project_image(service: dict) -> bool:
    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    return context is not None and (REPO / context).resolve() == REPO


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """Dockerfile instructions per stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = arg.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, arg.strip()))
    return stages


def env_instruction_names(arg: str) -> list[str]:
    """Variable names of one ENV instruction (KEY=VALUE ... form)."""
    return [tok.split("=", 1)[0] for tok in shlex.split(arg) if "=" in tok]
