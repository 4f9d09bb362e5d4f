"""Fetching a user-supplied URL without opening the server's network to the caller (SSRF).

Rules: https only; the host is resolved once and every address it resolves to must be a public one (no
loopback, private, link-local, multicast or reserved ranges); the connection goes to that checked address (so a
second DNS answer cannot swap in an internal one) while TLS verifies the certificate for the host name;
redirects are followed by hand and each hop is checked the same way; the body and the total time are limited.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from modules.errors import UserError

log = logging.getLogger(__name__)

MAX_BYTES = 50 * 1024 * 1024
TIMEOUT = 30.0
MAX_REDIRECTS = 5
CHUNK = 64 * 1024
# Longest wait for any single network operation; the total time is checked between operations.
STEP_TIMEOUT = 10.0

Resolver = Callable[..., list[tuple[Any, ...]]]


class UrlRefused(UserError):
    """The URL may not be fetched (scheme, target address, size, time) or the fetch failed."""


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; IPv4-mapped IPv6 is judged by its IPv4 part."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, *, forbid_local: bool, resolver: Resolver = socket.getaddrinfo) -> str:
    """The address to connect to for `host`; refused when any address it resolves to is not public."""
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise UrlRefused(f"Cannot resolve the host name {host!r}: {e}") from e
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise UrlRefused(f"The host name {host!r} has no address.")
    if forbid_local:
        for address in addresses:
            if not is_public_address(address):
                raise UrlRefused(f"URLs to local or private addresses are not allowed ({host} is {address}).")
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed address: TCP goes to `address`, SNI and the certificate check use the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls_context.wrap_socket(sock, server_hostname=self.host)
        except Exception:
            sock.close()
            raise


def fetch(
    url: str,
    *,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT,
    user_agent: str = "",
    forbid_local: bool = True,
    resolver: Resolver = socket.getaddrinfo,
    ssl_context: ssl.SSLContext | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> bytes:
    """The body of a GET on `url` (status 200), under the rules above; UrlRefused with the reason otherwise."""
    context = ssl_context or ssl.create_default_context()
    deadline = time.monotonic() + timeout
    for _ in range(max_redirects + 1):
        parts = urlsplit(url)
        if parts.scheme.lower() != "https":
            raise UrlRefused(f"Only https:// URLs can be fetched (got {parts.scheme or 'no'} scheme).")
        host = parts.hostname
        if not host:
            raise UrlRefused("The URL has no host name.")
        try:
            port = parts.port or 443
        except ValueError as e:
            raise UrlRefused(f"Bad port in URL: {e}") from e
        address = resolve(host, port, forbid_local=forbid_local, resolver=resolver)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UrlRefused(f"Fetching the URL took longer than {timeout:.0f} s.")
        conn = _PinnedHTTPSConnection(host, port, address, min(remaining, STEP_TIMEOUT), context)
        try:
            headers = {"Accept": "image/*", "User-Agent": user_agent or "sd-webui"}
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise UrlRefused(f"HTTP {response.status} redirect without a Location from {host}.")
                url = urljoin(url, location)
                log.debug("Following redirect to %s", url)
                continue
            if response.status != 200:
                raise UrlRefused(f"Fetching the URL failed: HTTP {response.status} {response.reason}.")
            return _read_limited(response, max_bytes, deadline, timeout)
        except (OSError, http.client.HTTPException) as e:
            raise UrlRefused(f"Fetching the URL failed: {e}") from e
        finally:
            conn.close()
    raise UrlRefused(f"Too many redirects (more than {max_redirects}).")


def _read_limited(response: http.client.HTTPResponse, max_bytes: int, deadline: float, timeout: float) -> bytes:
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise UrlRefused(f"The file at the URL is larger than {max_bytes // (1024 * 1024)} MB.")
    chunks = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise UrlRefused(f"Fetching the URL took longer than {timeout:.0f} s.")
        chunk = response.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise UrlRefused(f"The file at the URL is larger than {max_bytes // (1024 * 1024)} MB.")
        chunks.append(chunk)
