"""Is this string usable as a FHIR server base URL? One answer for every place that takes one.

A hook's ``fhirServer``, an operator's re-evaluation request, a Subscription's channel header and a
background task all name a FHIR base. Before this check each did its own ``startswith('http')`` or
``urlsplit``; ``urlsplit`` raises ValueError on a malformed authority (``http://[::1/fhir``), which
turned into a 500, and a query, fragment or userinfo part changed which URL the client fetched
(``http://host/fhir#x`` drops the search path; ``user:pass@`` replaces the Bearer token).
"""

from __future__ import annotations

from urllib.parse import urlsplit


def base_url_problem(url: object) -> str | None:
    """None when ``url`` is an absolute http(s) base URL with a host and nothing else; else why not."""
    if not isinstance(url, str) or not url.strip():
        return "must be a non-empty string"
    if url != url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "is not a well-formed URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not carry a query or fragment"
    return None
