"""The redaction filter and JSON formatter, in process: what any code might try to log."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import pytest

from rls_cds.security.logs import configure_logging

JWT = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2VociJ9.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def capture():
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level, saved_hook = list(root.handlers), root.level, sys.excepthook
    saved_thread_hook, saved_unraisable = threading.excepthook, sys.unraisablehook
    configure_logging(type("S", (), {"log_level": "INFO"})(), stream=stream)
    yield stream
    for h in list(root.handlers):
        if getattr(h, "_rls_cds", False):
            root.removeHandler(h)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    sys.excepthook = saved_hook
    threading.excepthook, sys.unraisablehook = saved_thread_hook, saved_unraisable


def _lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structured_fields_kept(capture):
    logging.getLogger("rls_cds.api").info(
        "hook answered",
        extra={
            "request_id": "r1",
            "service_id": "s",
            "hook": "patient-view",
            "status": 200,
            "latency_ms": 4.2,
            "card_count": 3,
        },
    )
    (rec,) = _lines(capture)
    assert rec["msg"] == "hook answered" and rec["level"] == "INFO" and rec["logger"] == "rls_cds.api"
    assert rec["card_count"] == 3 and rec["status"] == 200 and rec["request_id"] == "r1"


def test_sensitive_fields_and_token_shapes_redacted(capture):
    log = logging.getLogger("rls_cds.anything")
    log.warning(
        "calling with Bearer abcdef123456 and %s",
        JWT,
        extra={
            "access_token": "tok-123456",
            "patient_id": "pat-42",
            "patient_name": "Jane Roe",
            "identifier": "MRN-1",
            "fhir_resource": {"name": "x"},
            "detail": f"token={JWT}",
            "url": "https://x/?access_token=zzz999&y=1",
            "nested": {"authorization": "Basic dXNlcjpwYXNz"},
        },
    )
    text = capture.getvalue()
    for secret in (
        "abcdef123456",
        JWT,
        "tok-123456",
        "pat-42",
        "Jane Roe",
        "MRN-1",
        "zzz999",
        "dXNlcjpwYXNz",
    ):
        assert secret not in text
    (rec,) = _lines(capture)
    assert rec["access_token"] == "[redacted]" and rec["patient_id"] == "[redacted]"
    assert "[redacted-jwt]" in rec["msg"] and "Bearer [redacted]" in rec["msg"]


def test_exception_messages_dropped_stack_kept(capture):
    try:
        raise ValueError("Patient Jane Roe MRN-77 failed validation")
    except ValueError:
        logging.getLogger("rls_cds.core").exception("core failed")
    text = capture.getvalue()
    assert "Jane Roe" not in text and "MRN-77" not in text
    (rec,) = _lines(capture)
    assert (
        rec["exc_type_name"] == "ValueError" and "test_exception_messages_dropped_stack_kept" in rec["stack"]
    )


def test_pem_blocks_redacted(capture):
    pem = "-----BEGIN PRIVATE KEY-----\nMIGkAgEBBDA\n-----END PRIVATE KEY-----"
    logging.getLogger("x").error("loaded %s", pem)
    assert "MIGkAgEBBDA" not in capture.getvalue()


def test_an_exception_passed_as_an_argument_keeps_only_its_type(capture):
    """Celery logs "beat raised exception %r" / "Task ... raised unexpected: %r": the type is enough."""
    logging.getLogger("celery.beat").critical(
        "beat raised exception %s: %r", ValueError, ValueError("Jane Testperson, MRN 12345")
    )
    logging.getLogger("celery.worker").error(
        "task %(id)s raised %(exc)r", {"id": "t1", "exc": KeyError("MRN 12345")}
    )
    text = capture.getvalue()
    assert "Testperson" not in text and "12345" not in text
    first, second = _lines(capture)
    assert first["msg"] == "beat raised exception <class 'ValueError'>: 'ValueError'"
    assert second["msg"] == "task t1 raised 'KeyError'"


def test_an_uncaught_exception_is_logged_as_type_and_frames(capture):
    def crash():
        raise RuntimeError(f"token {JWT} for Jane Testperson")

    try:
        crash()
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    (line,) = _lines(capture)
    assert line["level"] == "CRITICAL" and line["exc_type_name"] == "RuntimeError"
    assert "crash" in line["stack"] and "Testperson" not in json.dumps(line) and JWT not in json.dumps(line)


def test_celery_task_failure_context_keeps_the_type_only(capture):
    """celery.app.trace logs the exception and traceback as text, as arguments and as extra data."""
    context = {
        "id": "t1",
        "name": "rls_cds.background.tasks.reevaluate",
        "exc": "ValueError('Patient/12345 Jane Testperson')",
        "traceback": "Traceback (most recent call last):\n  ...\nValueError: Patient/12345 Jane Testperson",
    }
    logging.getLogger("celery.app.trace").error(
        "Task %(name)s[%(id)s] raised unexpected: %(exc)s", context, extra={"data": context}
    )
    logging.getLogger("x").error("several: %s", [KeyError("Jane Testperson")])
    text = capture.getvalue()
    assert "Testperson" not in text and "12345" not in text
    first, second = _lines(capture)
    assert first["msg"].endswith("raised unexpected: ValueError") and first["data"]["exc"] == "ValueError"
    assert second["msg"] == "several: ['KeyError']"
    # The task's registered name is code: an operator must see which task failed (was "[redacted]").
    assert first["data"]["name"] == "rls_cds.background.tasks.reevaluate"


def test_a_name_that_is_not_a_task_name_stays_redacted(capture):
    for name in ("Jane Testperson", "rls_cds Jane", "celery.Jane Testperson", "rls_cds."):
        logging.getLogger("x").info("m", extra={"name_given": name, "data": {"name": name}})
    assert "Testperson" not in capture.getvalue() and "Jane" not in capture.getvalue()


def test_an_uncaught_exception_in_a_thread_is_logged_as_type_and_frames(capture):
    def crash():
        raise RuntimeError("Jane Testperson")

    thread = threading.Thread(target=crash)
    thread.start()
    thread.join()
    (line,) = _lines(capture)
    assert line["exc_type_name"] == "RuntimeError" and "Testperson" not in json.dumps(line)
