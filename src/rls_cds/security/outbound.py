"""Where this service may send HTTP requests: never to link-local or cloud-metadata addresses.

A FHIR base comes from an EHR's request (allowlisted per issuer) or from configuration, and a FHIR
server answers with redirects and paging links: none of them may turn this service into a probe of
the host's metadata endpoint (169.254.169.254 and friends) or of link-local neighbours.
``check_destination(url)`` resolves the host and refuses such addresses; callers also refuse
redirects to another host (see ``same_origin``).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from urllib.parse import urlsplit

import requests

# Names and addresses of cloud instance-metadata services (AWS, GCP, Azure, Alibaba, Oracle, AWS IPv6).
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.azure.com", "instance-data"})
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
# Resolutions are cached briefly so a hook's parallel queries do not each ask DNS.
_DNS_TTL = 30.0
_dns_cache: dict[tuple[str, int], tuple[float, tuple[ipaddress._BaseAddress, ...]]] = {}
_dns_lock = threading.Lock()


class ForbiddenDestination(requests.exceptions.InvalidURL):
    """The URL points at a link-local or metadata address (or is not http/https)."""


def _is_forbidden(addr: ipaddress._BaseAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr in _METADATA_ADDRESSES or any(addr in net for net in _LINK_LOCAL)


def _resolve(host: str, port: int) -> tuple[ipaddress._BaseAddress, ...]:
    try:
        return (ipaddress.ip_address(host.strip("[]").split("%")[0]),)
    except ValueError:
        pass
    now = time.monotonic()
    with _dns_lock:
        hit = _dns_cache.get((host, port))
    if hit and hit[0] > now:
        return hit[1]
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return ()  # unresolvable: the request itself fails with a connection error
    addrs = tuple(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    with _dns_lock:
        if len(_dns_cache) > 1024:
            _dns_cache.clear()
        _dns_cache[(host, port)] = (now + _DNS_TTL, addrs)
    return addrs


def check_destination(url: str) -> None:
    """Raise ``ForbiddenDestination`` unless ``url`` is http(s) to an allowed address."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ForbiddenDestination("only http and https URLs with a host are allowed")
    host = parts.hostname.lower().rstrip(".")
    if host in _METADATA_HOSTS:
        raise ForbiddenDestination("metadata host refused")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    if any(_is_forbidden(a) for a in _resolve(host, port)):
        raise ForbiddenDestination("link-local or metadata address refused")


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80 if scheme == "http" else None)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    return origin(a) == origin(b)


def is_allowed(url: str) -> bool:
    try:
        check_destination(url)
    except ForbiddenDestination:
        return False
    return True
