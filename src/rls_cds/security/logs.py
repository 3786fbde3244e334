"""Structured JSON logs that cannot carry tokens or patient data.

``configure_logging(settings)`` (called by `rls-cds serve` and workers) sends every log record to
stderr as one JSON object: time, level, logger, message and the ``extra=`` fields the code attached
(request id, service id, hook, status, latency, card counts, ...). A redaction filter runs on
every record before it is written:

- ``extra`` fields whose names say they hold secrets or patient data (token, authorization,
  secret, password, assertion, patient, name, identifier, birth date, address, resource, body,
  prefetch, ...) are replaced by ``"[redacted]"``;
- anything shaped like a JWT, a ``Bearer`` credential, an ``access_token`` value or a PEM block is
  replaced wherever it appears (message, fields);
- exceptions are logged as their type and stack frames only: exception messages (a validation error
  quoting a resource, an HTTP error quoting a URL with a patient id) are dropped.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

REDACTED = "[redacted]"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_SENSITIVE_NAME = re.compile(
    r"token|authori[sz]ation|secret|password|passwd|assertion|jwt|cookie|credential|private|"
    r"patient|name$|^name|given|family|identifier|mrn|ssn|birth|dob|address|phone|email|telecom|"
    r"resource|body|prefetch|context|payload|content|^path$",
    re.IGNORECASE,
)
# Field names that contain a sensitive word but hold only safe metadata.
_SAFE_NAMES = {"service_id", "hook", "status", "latency_ms", "card_count", "request_id", "error_type"}
_SECRET_VALUE = [
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 [redacted]"),
    (
        re.compile(
            r"""(?i)(["']?(?:access_token|refresh_token|id_token|client_assertion|client_secret)["']?\s*[:=]\s*["']?)[^"'&\s,}]+"""
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----"), "[redacted-pem]"),
]


def route_of(scope: Any) -> str:
    """The matched route's template (``/operator/assessments/{patient_id}``) for logs: the raw path
    can carry a patient id or a run id; the template names the endpoint and nothing else."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def safe_request_id(header: str | None) -> str | None:
    """A caller's X-Request-Id if it looks like an id (<= 128 id characters), else None: the header
    is logged, so free text (a name, a 60 KB string) must not reach the log."""
    return header if header and _REQUEST_ID.fullmatch(header) else None


def scrub(text: str) -> str:
    for pattern, repl in _SECRET_VALUE:
        text = pattern.sub(repl, text)
    return text


# Celery's task context carries the task's registered name under "name": code, not a person's name.
_TASK_NAME = re.compile(r"(?:rls_cds|celery)(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _clean(name: str, value: Any, depth: int = 0) -> Any:
    if name not in _SAFE_NAMES and _SENSITIVE_NAME.search(name):
        if name == "name" and isinstance(value, str) and _TASK_NAME.fullmatch(value):
            return value
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth < 3 and isinstance(value, list | tuple | set | frozenset):
        return [_clean(name, v, depth + 1) for v in value]
    if depth < 3 and isinstance(value, dict):
        return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
    return scrub(str(value))


class RedactionFilter(logging.Filter):
    """Scrubs the record in place, so every handler (JSON or not) gets the safe version."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:  # "raised %r" with an exception: its message may quote data, keep the type
            record.args = _without_exception_text(record.args)
        if isinstance(getattr(record, "data", None), dict):
            record.data = _without_task_exception(record.data)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = scrub(message), ()
        for key in [k for k in vars(record) if k not in _STANDARD]:
            setattr(record, key, _clean(key, getattr(record, key)))
        if record.exc_info and record.exc_info[0] is not None:
            etype, _, tb = record.exc_info
            record.exc_type_name = etype.__name__
            # Frames only (file, line, function): no source lines, no exception message.
            frames = traceback.extract_tb(tb) if tb else []
            record.stack = " < ".join(f"{f.filename}:{f.lineno} {f.name}" for f in reversed(frames))
            record.exc_info, record.exc_text = None, None  # the message may quote patient data
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _without_exception_text(args: Any) -> Any:
    def safe(value: Any, depth: int = 0) -> Any:
        if isinstance(value, BaseException):
            return type(value).__name__
        if depth < 2 and isinstance(value, list | tuple):
            return type(value)(safe(v, depth + 1) for v in value)
        return value

    if isinstance(args, dict):
        return _without_task_exception({k: safe(v) for k, v in args.items()})
    return tuple(safe(a) for a in args) if isinstance(args, tuple) else args


# Celery's task-failure context ("Task %(name)s[%(id)s] raised unexpected: %(exc)s", also sent as
# extra "data"): the exception as text and the whole traceback text, message included.
_TASK_EXCEPTION_TEXT = ("exc", "traceback")


def _without_task_exception(context: dict) -> dict:
    if not any(isinstance(context.get(k), str) for k in _TASK_EXCEPTION_TEXT):
        return context
    out = dict(context)
    if isinstance(out.get("exc"), str):
        out["exc"] = out["exc"].split("(", 1)[0].split(":", 1)[0].strip() or "exception"
    if isinstance(out.get("traceback"), str):
        out["traceback"] = REDACTED
    return out


def _log_uncaught(etype, value, tb) -> None:
    """sys.excepthook: an exception that ends the process is logged like any other (type and frames,
    redacted), not printed as a raw traceback whose message may quote data."""
    if issubclass(etype, KeyboardInterrupt):
        sys.__excepthook__(etype, value, tb)
        return
    logging.getLogger("rls_cds").critical("uncaught exception", exc_info=(etype, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("rls_cds").critical(
        "uncaught exception in a thread", exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )


def _log_unraisable(unraisable: Any) -> None:
    exc = unraisable.exc_value
    logging.getLogger("rls_cds").error(
        "unraisable exception",
        exc_info=(unraisable.exc_type, exc, unraisable.exc_traceback) if exc is not None else None,
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        return orjson.dumps(out, default=str).decode()


def configure_logging(settings: Any, stream: Any = None) -> None:
    """Root logger -> one JSON line per record on stderr, redacted. Idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_rls_cds", False):
            root.removeHandler(old)
    handler._rls_cds = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(str(getattr(settings, "log_level", "INFO")).upper())
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable
    logging.captureWarnings(True)  # warnings.warn (Celery's SecurityWarning...) as JSON lines too
    # Libraries that log URLs (with patient ids in query strings) at DEBUG/INFO stay quiet.
    for name in ("urllib3", "requests", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
