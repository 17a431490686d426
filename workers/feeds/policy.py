"""What the fetcher may request and how: its policy, its failures, and the URL checks.

Every hop of a request (redirects included) goes through `check_url` before it is made:
http/https only, and no private, loopback or otherwise non-global address unless
`allow_private_networks` (SSRF). A request that gives no usable response ends as one
`FetchError` with a reason from `REASONS`; `transient` says whether a later poll may
succeed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from workers.config import DEFAULTS
from workers.ops.connection import redact

if TYPE_CHECKING:
    from workers.config import Settings

REASONS = frozenset(
    {
        "bad_url",
        "blocked_address",
        "dns_error",
        "timeout",
        "connect_error",
        "truncated",
        "http_status",
        "too_many_redirects",
        "redirect_loop",
        "too_large",
        "host_busy",
    }
)
# A truncated body (cut off in transit) is a transfer failure like a reset connection.
_TRANSIENT = frozenset({"timeout", "connect_error", "truncated", "dns_error", "host_busy"})
# Why a private address is refused, with both ways to allow it: the setting (config file)
# and its environment variable (docs/configuration.md).
PRIVATE_NETWORKS_OFF = (
    "allow_private_networks is off; to allow, set allow_private_networks = true in the "
    "config file or NEWSDEDUP_ALLOW_PRIVATE_NETWORKS=1 in the environment"
)


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    user_agent: str
    connect_timeout: float = DEFAULTS.feeds.connect_timeout
    read_timeout: float = DEFAULTS.feeds.read_timeout
    # Extra attempts after the first, on timeouts, connection errors, 5xx, 429.
    retries: int = DEFAULTS.feeds.retries
    backoff_base: float = DEFAULTS.feeds.backoff_base
    backoff_max: float = DEFAULTS.feeds.backoff_max
    max_redirects: int = DEFAULTS.feeds.max_redirects
    max_bytes: int = DEFAULTS.feeds.max_bytes  # body cap after decompression (gzip bombs)
    # Seconds for a whole get(): gate wait, redirects, retries, headers and body.
    deadline: float = DEFAULTS.feeds.request_deadline
    allow_private_networks: bool = DEFAULTS.allow_private_networks

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPolicy:
        feeds = settings.feeds
        return cls(
            user_agent=feeds.user_agent,
            connect_timeout=feeds.connect_timeout,
            read_timeout=feeds.read_timeout,
            retries=feeds.retries,
            backoff_base=feeds.backoff_base,
            backoff_max=feeds.backoff_max,
            max_redirects=feeds.max_redirects,
            max_bytes=feeds.max_bytes,
            deadline=feeds.request_deadline,
            allow_private_networks=settings.allow_private_networks,
        )


class FetchError(Exception):
    """A request that gave no usable response. str() is one line; `url` is redacted (it
    is the URL asked for; the message names the redirect hop when another one failed)."""

    def __init__(
        self,
        reason: str,
        url: str,
        detail: str,
        *,
        status: int | None = None,
        attempts: int = 0,
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown fetch failure reason {reason!r}")
        self.reason = reason
        self.url = redact(url)
        self.detail = detail
        self.status = status
        self.attempts = attempts
        super().__init__(f"GET {self.url}: {detail}" if url else detail)

    @property
    def transient(self) -> bool:
        """Worth trying again in a later poll."""
        if self.reason == "http_status":
            return self.status is not None and (self.status >= 500 or self.status == 429)
        return self.reason in _TRANSIENT


Resolver = Callable[..., list[Any]]

# IPv6 ranges that embed an IPv4 address a connection may end up at.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _blocked_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why `address` must not be contacted ("" when it may)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            kind = _blocked_kind(embedded)
            return f"{kind} (IPv4 {embedded} inside)" if kind else ""
        if address.is_site_local:
            return "site-local"
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        # Carrier-grade NAT space (100.64/10) and the like: not private, not public either,
        # and some clouds put their metadata service there.
        ("non-global", not address.is_global),
    ):
        if flag:
            return kind
    return ""


def check_url(url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo) -> None:
    """Refuse a URL the fetcher must not request: FetchError bad_url, dns_error or
    blocked_address.

    Limitation: this resolves the host, and httpx resolves it again when it connects. A
    hostile DNS server can answer with a public address here and a private one a moment
    later (DNS rebinding). Closing that gap needs connecting to the checked address
    itself (a custom transport passing SNI and Host), which this does not do; do not rely
    on it alone where internal services are sensitive (also firewall the workers' egress).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError("bad_url", url, f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError("bad_url", url, f"scheme {scheme or '(none)'!r} is not http or https")
    host = parts.hostname
    if not host:
        raise FetchError("bad_url", url, "no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except UnicodeError:
        raise FetchError("bad_url", url, f"invalid host name {host!r}") from None
    except OSError as exc:
        raise FetchError("dns_error", url, f"cannot resolve {host}: {exc}") from None
    if not infos:
        raise FetchError("dns_error", url, f"cannot resolve {host}: no addresses")
    if allow_private:
        return
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 scope id
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise FetchError("blocked_address", url, f"{host} resolved to {text!r}") from None
        kind = _blocked_kind(address)
        if kind:
            # ANY bad address blocks: the connection may use any of them.
            raise FetchError(
                "blocked_address",
                url,
                f"{host} resolves to {kind} address {address} ({PRIVATE_NETWORKS_OFF})",
            )
