"""FHIR REST reads for hooks whose prefetch is missing: parallel, paged, bounded by one deadline.

Every query runs in a shared thread pool; each HTTP request is bounded by a per-request timeout
clipped to what is left of the hook's deadline, and the caller stops waiting at the deadline. A query
that fails, is refused or runs out of time is reported in ``FetchResult.failed`` (its key and a short
reason, never a URL or token) so the clinical core knows which data it could not see.

Redirects are never followed and ``Bundle.link[next]`` is only followed to the same origin as the
FHIR base: a FHIR server must not be able to steer this service to another host. Link-local and
cloud-metadata addresses are refused (``rls_cds.security.outbound``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson
import requests
import urllib3

from rls_cds.security.outbound import ForbiddenDestination, check_destination

# Enough threads for every prefetch key of a few concurrent hooks; requests are I/O bound.
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fhir-fetch")
_MAX_PAGES = 50
# One page of a search is a few MB even for a large patient; a server sending far more must not be
# able to fill this process's memory (the read stops one byte past this).
MAX_PAGE_BYTES = 64 * 2**20
_local = threading.local()


class FhirFetchError(Exception):
    """One query could not be completed; ``reason`` is safe to log (no URL, no token)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class FetchResult:
    bundles: dict[str, list[dict]] = field(default_factory=dict)  # key -> resources read
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason ('timeout', 'http_500', ...)


def _session() -> requests.Session:
    # One pooled session per worker thread: keep-alive to the FHIR server without sharing state.
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.trust_env = False  # never route patient data through an environment-configured proxy
        _local.session = s
    return s


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _get_json(
    url: str,
    headers: dict[str, str],
    deadline: float,
    per_request: float,
    session: requests.Session | None = None,
) -> dict:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FhirFetchError("deadline")
    timeout = min(per_request, remaining)
    try:
        check_destination(url)  # never link-local or cloud-metadata addresses (SSRF)
    except ForbiddenDestination as e:
        raise FhirFetchError("forbidden_destination") from e
    try:
        resp = (session or _session()).get(
            url, headers=headers, timeout=(timeout, timeout), allow_redirects=False, stream=True
        )
    except requests.Timeout as e:
        raise FhirFetchError("timeout") from e
    except requests.ConnectionError as e:
        raise FhirFetchError("connection") from e
    except requests.RequestException as e:
        raise FhirFetchError("request") from e
    with resp:
        if resp.status_code != 200:
            raise FhirFetchError(f"http_{resp.status_code}")
        content = _read_capped(resp)
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as e:
        raise FhirFetchError("invalid_json") from e


def _read_capped(resp: requests.Response) -> bytes:
    """The body, read from the raw stream so that its size is bounded (urllib3 raises its own errors)."""
    try:
        content = resp.raw.read(MAX_PAGE_BYTES + 1, decode_content=True)
    except urllib3.exceptions.ReadTimeoutError as e:
        raise FhirFetchError("timeout") from e
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as e:
        raise FhirFetchError("connection") from e
    if len(content) > MAX_PAGE_BYTES:
        raise FhirFetchError("too_large")
    return content


def unreadable_bundle(bundle: dict) -> bool:
    """A Bundle whose ``entry`` or ``link`` is not a list: read as "no results", it would hide the data."""
    return not isinstance(bundle.get("entry") or [], list) or not isinstance(bundle.get("link") or [], list)


def fetch_search(
    url: str,
    headers: dict[str, str],
    deadline: float,
    per_request: float,
    session: requests.Session | None = None,
    max_pages: int = _MAX_PAGES,
) -> list[dict]:
    """Run one search (or read), follow same-origin next links, return the resources found.

    ``session``: e.g. a SMART Backend Services session for background work (default: a plain pooled
    session per thread, the hook path, which passes the EHR's token in ``headers``)."""
    origin = _origin(url)
    out: list[dict] = []
    for _ in range(max_pages):
        body = _get_json(url, headers, deadline, per_request, session)
        if not isinstance(body, dict):
            raise FhirFetchError("invalid_json")
        if body.get("resourceType") != "Bundle":
            return [body]  # a read (Patient/123) answers with the resource itself
        if unreadable_bundle(body):
            raise FhirFetchError("invalid_bundle")
        for entry in body.get("entry") or ():
            res = entry.get("resource") if isinstance(entry, dict) else None
            # Search bundles may carry OperationOutcome entries (mode=outcome): not data.
            if isinstance(res, dict) and res.get("resourceType") != "OperationOutcome":
                out.append(res)
        nxt = next(
            (
                link.get("url")
                for link in body.get("link") or ()
                if isinstance(link, dict) and link.get("relation") == "next"
            ),
            None,
        )
        if not nxt:
            return out
        if not isinstance(nxt, str):
            raise FhirFetchError("invalid_bundle")
        if _origin(nxt) != origin:
            raise FhirFetchError("foreign_next_link")
        url = nxt
    raise FhirFetchError("too_many_pages")


def fetch_queries(
    base_url: str,
    queries: dict[str, str],
    access_token: str | None,
    deadline: float,
    per_request_timeout: float,
) -> FetchResult:
    """Run ``queries`` (key -> relative query such as ``Condition?patient=1``) in parallel.

    Returns by ``deadline`` (a ``time.monotonic()`` value) at the latest; queries still running then
    are abandoned and reported as failed with reason ``deadline``.
    """
    headers = {"Accept": "application/fhir+json"}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    base = base_url.rstrip("/")
    futures: dict[Future, str] = {
        _POOL.submit(fetch_search, f"{base}/{q.lstrip('/')}", headers, deadline, per_request_timeout): key
        for key, q in queries.items()
    }
    result = FetchResult()
    pending = set(futures)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
        for fut in done:
            key = futures[fut]
            try:
                result.bundles[key] = fut.result()
            except FhirFetchError as e:
                result.failed[key] = e.reason
            except Exception:  # noqa: BLE001 - a bug in one query must not sink the hook
                result.failed[key] = "error"
    for fut in pending:
        fut.cancel()
        result.failed[futures[fut]] = "deadline"
    return result
