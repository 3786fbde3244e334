"""FHIR Bulk Data Access client ($export): kick-off, status polling, manifest, NDJSON downloads, delete.

    status_url = kickoff(session, base, group_id, types=EXPORT_TYPES, since=None)
    manifest = wait_for_manifest(session, status_url, deadline_monotonic)
    for piece in download(session, output["url"], manifest.requires_access_token): ...
    errors = read_error_files(session, manifest)
    delete_export(session, status_url)

``session`` comes from ``rls_cds.fhir.smart.session_for(base, settings)``: it carries the SMART
Backend Services token for the server's origin. Files are fetched with that session only when the
manifest says ``requiresAccessToken``; otherwise (files on a storage host) with a plain session, so the
token never leaves for another host. Kick-off and polling honour ``Retry-After`` on 202 and 429.
Error messages (``BulkError.reason``) name an HTTP status or an OperationOutcome code, never a URL
with a query, a token or resource contents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

import orjson
import requests

EXPORT_TYPES = ("Patient", "Condition", "Observation", "MedicationRequest", "Medication")
PIECE = 1 << 20
DEFAULT_WAIT = 2.0  # seconds between polls when the server gives no Retry-After
MAX_WAIT = 120.0
TRANSIENT = {500, 502, 503, 504}


class BulkError(Exception):
    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass
class Manifest:
    transaction_time: str | None
    requires_access_token: bool
    output: list[dict] = field(default_factory=list)  # {type, url, count?}
    error: list[dict] = field(default_factory=list)
    status_url: str = ""

    @classmethod
    def from_json(cls, doc: dict, status_url: str) -> Manifest:
        def files(key: str) -> list[dict]:
            items = doc.get(key) or []
            return [f for f in items if isinstance(f, dict) and isinstance(f.get("url"), str)]

        return cls(
            transaction_time=doc.get("transactionTime"),
            requires_access_token=bool(doc.get("requiresAccessToken", True)),
            output=files("output"),
            error=files("error"),
            status_url=status_url,
        )


def retry_after(resp: requests.Response, default: float = DEFAULT_WAIT) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), bounded to [0.1, MAX_WAIT]."""
    value = resp.headers.get("Retry-After")
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(MAX_WAIT, max(0.1, seconds))


def _outcome_reason(resp: requests.Response) -> str:
    try:
        doc = orjson.loads(resp.content)
        issue = (doc.get("issue") or [{}])[0]
        return f"HTTP {resp.status_code} ({issue.get('code', 'unknown')})"
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        return f"HTTP {resp.status_code}"


def kickoff(
    session: requests.Session,
    base: str,
    group_id: str,
    types: tuple[str, ...] = EXPORT_TYPES,
    since: str | None = None,
    timeout: float = 30.0,
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Start Group/{id}/$export; returns the status URL (Content-Location)."""
    params = {"_type": ",".join(types), "_outputFormat": "application/fhir+ndjson"}
    if since:
        params["_since"] = since
    url = f"{base.rstrip('/')}/Group/{group_id}/$export?{urlencode(params)}"
    headers = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
    for attempt in range(attempts):
        try:
            resp = session.get(url, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            if attempt == attempts - 1:
                raise BulkError(f"kick-off failed ({type(exc).__name__})") from None
            sleep(min(MAX_WAIT, 2**attempt))
            continue
        if resp.status_code == 202 and resp.headers.get("Content-Location"):
            return resp.headers["Content-Location"]
        if resp.status_code == 429 or (resp.status_code in TRANSIENT and attempt < attempts - 1):
            sleep(retry_after(resp, 2.0**attempt))
            continue
        raise BulkError(f"kick-off refused: {_outcome_reason(resp)}", resp.status_code)
    raise BulkError("kick-off: server kept asking to retry")


def wait_for_manifest(
    session: requests.Session,
    status_url: str,
    deadline: float,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Poll the status URL until the manifest arrives (200), honouring Retry-After on 202 and 429."""
    failures = 0
    while True:
        if time.monotonic() > deadline:
            raise BulkError("export did not complete in time")
        try:
            resp = session.get(
                status_url, headers={"Accept": "application/json"}, timeout=timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            failures += 1
            if failures > 5:
                raise BulkError(f"status polling failed ({type(exc).__name__})") from None
            sleep(min(MAX_WAIT, 2.0**failures))
            continue
        if resp.status_code == 200:
            try:
                return Manifest.from_json(orjson.loads(resp.content), status_url)
            except (orjson.JSONDecodeError, AttributeError) as exc:
                raise BulkError("manifest is not valid JSON") from exc
        if resp.status_code in (202, 429):
            if on_progress is not None:
                on_progress(resp.headers.get("X-Progress", "")[:100])
            wait = retry_after(resp)
            sleep(min(wait, max(0.0, deadline - time.monotonic())))
            continue
        if resp.status_code in TRANSIENT and failures < 5:
            failures += 1
            sleep(retry_after(resp, 2.0**failures))
            continue
        raise BulkError(f"export failed: {_outcome_reason(resp)}", resp.status_code)


def file_session(session: requests.Session, requires_access_token: bool) -> requests.Session:
    """The authorised session when the manifest requires the token; a plain one otherwise."""
    if requires_access_token:
        return session
    plain = requests.Session()
    plain.trust_env = False
    return plain


def download(
    session: requests.Session,
    url: str,
    requires_access_token: bool,
    timeout: float = 60.0,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """The file's bytes, streamed in pieces. Failures before the first byte are retried (with
    Retry-After / back-off); a failure after it raises (the caller re-runs the whole chunk)."""
    s = file_session(session, requires_access_token)
    headers = {"Accept": "application/fhir+ndjson"}
    resp = None
    for attempt in range(attempts):
        try:
            resp = s.get(url, headers=headers, timeout=timeout, stream=True, allow_redirects=False)
        except requests.RequestException as exc:
            if attempt == attempts - 1:
                raise BulkError(f"download failed ({type(exc).__name__})") from None
            sleep(min(MAX_WAIT, 0.5 * 2**attempt))
            continue
        if resp.status_code == 200:
            break
        status = resp.status_code
        resp.close()
        if (status == 429 or status in TRANSIENT) and attempt < attempts - 1:
            sleep(retry_after(resp, 0.5 * 2**attempt))
            continue
        raise BulkError(f"download failed: HTTP {status}", status)
    assert resp is not None
    try:
        yield from resp.iter_content(PIECE)
    except requests.RequestException as exc:
        raise BulkError(f"download interrupted ({type(exc).__name__})") from None
    finally:
        resp.close()


def read_error_files(session: requests.Session, manifest: Manifest, limit: int = 1000) -> list[dict]:
    """The export's error files as {'type', 'code', 'diagnostics'} entries (OperationOutcome issues)."""
    out: list[dict] = []
    for f in manifest.error:
        try:
            data = b"".join(download(session, f["url"], manifest.requires_access_token))
        except BulkError as exc:
            out.append({"type": f.get("type"), "code": "unreadable", "diagnostics": exc.reason})
            continue
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                out.append({"type": f.get("type"), "code": "malformed", "diagnostics": "unparsable line"})
                continue
            for issue in doc.get("issue") or []:
                out.append(
                    {
                        "type": f.get("type"),
                        "code": issue.get("code"),
                        "diagnostics": str(issue.get("diagnostics") or "")[:500],
                    }
                )
                if len(out) >= limit:
                    return out
    return out


def delete_export(session: requests.Session, status_url: str, timeout: float = 30.0) -> bool:
    """Tell the server it may delete the export's files (DELETE on the status URL)."""
    try:
        resp = session.delete(status_url, timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        return False
    return resp.status_code in (200, 202, 204, 404)
