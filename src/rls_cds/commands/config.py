"""`rls-cds config show|check`: the effective configuration, secrets redacted, and a pre-flight check.

Also home of the start-up error message for invalid configuration: `rls_cds.cli.main` asks
`configuration_error(exc)` to turn pydantic's ValidationError on the Settings object into lines that
name the environment variable (``RLS_PORT``), never a traceback, and never echo a secret's value.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

REDACTED = "**********"
# Field names that hold credentials even when typed as plain str.
_SECRET_NAME = re.compile(r"secret|key|token|password|passwd|credential", re.IGNORECASE)
# scheme://userinfo@ — the userinfo of any URL inside a value (redis://:pw@host, https://u:p@host).
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def env_names(field_name: str) -> list[str]:
    """Environment variables that set a Settings field, the preferred one first."""
    from rls_cds.settings import Settings

    field = Settings.model_fields[field_name]
    alias = field.validation_alias
    if alias is None:
        return [f"{Settings.model_config.get('env_prefix', '')}{field_name}".upper()]
    choices = getattr(alias, "choices", [alias])
    return [str(c).upper() for c in choices]


def is_secret_field(field_name: str) -> bool:
    """SecretStr fields, and text fields whose name says credential (a number or a path never is:
    RLS_MAX_TOKEN_LIFETIME_SECONDS stays readable, a private key's *path* is not the key)."""
    from pydantic import SecretStr

    from rls_cds.settings import Settings

    annotation = str(Settings.model_fields[field_name].annotation)
    if SecretStr.__name__ in annotation:
        return True
    is_text = "str" in annotation and not any(t in annotation for t in ("int", "float", "bool", "Path"))
    return is_text and bool(_SECRET_NAME.search(field_name))


def redact_urls(text: str) -> str:
    """Hide the credentials of every URL in text; a user name alone may itself be a token."""

    def hide(match: re.Match) -> str:
        user, sep, _password = match["userinfo"].partition(":")
        kept = f"{user}:{REDACTED}" if sep else REDACTED
        return f"{match['scheme']}{kept}@"

    return _URL_USERINFO.sub(hide, text)


def redacted_value(field_name: str, value: Any) -> Any:
    if value is None:
        return None
    if is_secret_field(field_name):
        return REDACTED
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact_urls(value)
    return value


def effective_config(settings=None) -> list[dict]:
    """One row per Settings field: name, env variable, redacted value, and whether env set it."""
    from rls_cds.settings import Settings

    settings = settings or Settings()
    rows = []
    for name in Settings.model_fields:
        rows.append(
            {
                "field": name,
                "env": env_names(name)[0],
                "value": redacted_value(name, getattr(settings, name)),
                "source": "env" if name in settings.model_fields_set else "default",
            }
        )
    return rows


# --- invalid configuration at start-up -------------------------------------------------------


def _field_for(loc: tuple) -> str | None:
    from rls_cds.settings import Settings

    if not loc:
        return None
    head = str(loc[0])
    if head in Settings.model_fields:
        return head
    for name in Settings.model_fields:  # errors reported under an alias (REDIS_URL)
        if head.upper() in env_names(name):
            return name
    return None


def configuration_error(exc: BaseException) -> str | None:
    """A message naming the environment variables behind an invalid Settings; None if exc is not that."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, SettingsError):
        return f"rls-cds: invalid configuration: {redact_urls(str(exc))}"
    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    lines = ["rls-cds: invalid configuration (fix these environment variables):"]
    for err in exc.errors(include_url=False):
        name = _field_for(tuple(err.get("loc") or ()))
        variable = " or ".join(env_names(name)) if name else ".".join(map(str, err.get("loc") or ()))
        line = f"  {variable}: {err.get('msg', 'invalid value')}"
        if name and not is_secret_field(name) and isinstance(err.get("input"), str | int | float):
            line += f" (got {redacted_value(name, str(err['input']))!r})"
        lines.append(line)
    return "\n".join(lines)


# --- the command -----------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser("config", help="show or check the effective configuration (secrets redacted)")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    config_sub.required = True
    show = config_sub.add_parser("show", help="print every setting, its environment variable and value")
    show.add_argument("--json", action="store_true", help="one JSON object {field: value}")
    show.set_defaults(func=show_config)
    check = config_sub.add_parser(
        "check", help="validate the configuration: files exist, content loads, Redis answers"
    )
    check.add_argument("--offline", action="store_true", help="do not try to reach Redis")
    check.set_defaults(func=check_config)


def show_config(args) -> int:
    rows = effective_config()
    if args.json:
        print(json.dumps({r["field"]: r["value"] for r in rows}, indent=2, sort_keys=False))
        return 0
    width = max(len(r["env"]) for r in rows)
    for r in rows:
        value = "(unset)" if r["value"] is None else r["value"]
        print(f"{r['env']:<{width}}  {value}" + ("" if r["source"] == "default" else "   [env]"))
    return 0


def _check_paths(settings) -> list[str]:
    problems = []
    for name in ("terminology_dir", "catalogue_dir"):
        path = getattr(settings, name)
        if not Path(path).is_dir():
            problems.append(f"{env_names(name)[0]}: directory {path} does not exist")
    for name in ("trusted_issuers_file", "fhir_servers_file", "panels_file"):
        path = getattr(settings, name)
        if path is not None and not Path(path).is_file():
            problems.append(f"{env_names(name)[0]}: file {path} does not exist")
    return problems


def terminology_problems(settings) -> list[str]:
    try:
        from rls_cds.terminology import load_terminology
    except ImportError:
        return []  # that part is not installed in this build; `serve` reports it in /readyz
    try:
        load_terminology(path=settings.terminology_dir)
    except Exception as exc:  # noqa: BLE001 - TerminologyError names file and line
        return [f"{env_names('terminology_dir')[0]}: tables do not load: {exc}"]
    return []


def _check_issuers(settings) -> list[str]:
    """The trusted-issuer configuration, when one is given (worker and beat need none)."""
    if not (settings.trusted_issuers_file or settings.trusted_issuers_json):
        print("note: no trusted issuers configured: `rls-cds serve` will refuse to start", file=sys.stderr)
        return []
    try:
        from rls_cds.security.issuers import check_startup
    except ImportError:
        return []
    try:
        check_startup(settings)
    except Exception as exc:  # noqa: BLE001 - IssuerConfigError names the variable and issuer
        return [redact_urls(str(exc))]
    return []


def _check_redis(settings) -> list[str]:
    if not settings.redis_url:
        return []
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        return [f"REDIS_URL: {redact_urls(settings.redis_url)} does not answer ({type(exc).__name__})"]
    return []


def check_config(args) -> int:
    from rls_cds.settings import Settings

    settings = Settings()  # invalid values already stopped the CLI at start with a named variable
    problems = _check_paths(settings) + terminology_problems(settings)
    if not problems:
        problems += _check_issuers(settings)
    if not args.offline:
        problems += _check_redis(settings)
    if settings.dev_mode:
        print("note: RLS_DEV_MODE is on: no authentication (development only)", file=sys.stderr)
    elif not (settings.patient_digest_key and settings.patient_digest_key.get_secret_value()):
        # Empty counts as unset, as it does for the digests themselves (api.suppression._digest_key).
        print(
            "note: RLS_PATIENT_DIGEST_KEY is not set: patient digests in Redis keys and logs are unkeyed "
            "SHA-256 (recomputable for a guessable patient id)",
            file=sys.stderr,
        )
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    mode = "distributed (REDIS_URL set)" if settings.redis_url else "embedded (no REDIS_URL)"
    print(f"configuration ok; mode: {mode}")
    return 0
