"""Which URLs the fetcher may request (schemes, addresses, names resolving to private
networks), which of its errors are transient, and its policy from the settings."""

from __future__ import annotations

from typing import Any

import pytest
from support.resolvers import PUBLIC_IP, addr, stub_resolver

from workers.config import Settings
from workers.feeds.policy import FetchError, HttpPolicy, check_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/feed",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "example.com/feed",
        "//example.com/feed",
        "http:///feed",
        "https://",
        "http://[::1/feed",
        "http://example.com:99999/feed",
        "",
    ],
)
def test_check_url_bad_urls(url: str) -> None:
    with pytest.raises(FetchError) as info:
        check_url(url, allow_private=True, resolve=stub_resolver({"example.com": PUBLIC_IP}))
    assert info.value.reason == "bad_url" and not info.value.transient


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.2",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.10",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fec0::1",
        "fc00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    ],
)
def test_check_url_blocks(ip: str) -> None:
    resolve = stub_resolver({"feeds.example": ip})
    with pytest.raises(FetchError) as info:
        check_url("http://feeds.example/rss", allow_private=False, resolve=resolve)
    assert info.value.reason == "blocked_address"
    assert ip.split("%")[0].removeprefix("::ffff:") in str(info.value)
    # The same address is fine when private networks are allowed.
    check_url("http://feeds.example/rss", allow_private=True, resolve=resolve)


@pytest.mark.parametrize("ip", [PUBLIC_IP, "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_check_url_allows_public(ip: str) -> None:
    check_url(
        "https://feeds.example:8443/rss",
        allow_private=False,
        resolve=stub_resolver({"feeds.example": ip}),
    )


@pytest.mark.parametrize(
    "url",
    ["http://[2606:4700::1111]/feed", "https://[::ffff:8.8.8.8]:8443/", "http://8.8.8.8/"],
)
def test_check_url_ip_literals_with_the_real_resolver(url: str) -> None:
    check_url(url, allow_private=False)  # literals: no DNS traffic


@pytest.mark.parametrize(
    "url", ["http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]:8080/"]
)
def test_check_url_blocked_ip_literals_with_the_real_resolver(url: str) -> None:
    with pytest.raises(FetchError) as info:
        check_url(url, allow_private=False)
    assert info.value.reason == "blocked_address"


def test_check_url_any_bad_address_blocks() -> None:
    def resolve(host: str, port: int, *args: Any) -> list[Any]:
        return addr(PUBLIC_IP, port) + addr("10.0.0.7", port)

    with pytest.raises(FetchError) as info:
        check_url("http://mixed.example/", allow_private=False, resolve=resolve)
    assert "10.0.0.7" in str(info.value)


def test_check_url_resolution_failures() -> None:
    with pytest.raises(FetchError) as info:
        check_url("http://gone.example/", allow_private=False, resolve=stub_resolver({}))
    assert info.value.reason == "dns_error" and info.value.transient
    with pytest.raises(FetchError) as info:
        check_url("http://empty.example/", allow_private=False, resolve=lambda *a: [])
    assert info.value.reason == "dns_error"


def test_fetch_error_transience() -> None:
    def transient(reason: str, status: int | None = None) -> bool:
        return FetchError(reason, "http://x/feed", "detail", status=status).transient

    assert transient("timeout") and transient("connect_error") and transient("dns_error")
    assert transient("host_busy") and transient("http_status", 503)
    assert transient("http_status", 429)
    assert not transient("http_status", 404) and not transient("http_status", 410)
    for reason in ("bad_url", "blocked_address", "too_large", "redirect_loop"):
        assert not transient(reason)
    assert not transient("too_many_redirects")
    with pytest.raises(ValueError):
        FetchError("nonsense", "http://x/", "detail")


def test_policy_from_settings() -> None:
    settings = Settings(
        feeds={"user_agent": "ua/2", "read_timeout": 7, "retries": 1, "max_bytes": 4096},
        allow_private_networks=True,
    )
    policy = HttpPolicy.from_settings(settings)
    assert policy.user_agent == "ua/2" and policy.read_timeout == 7 and policy.retries == 1
    assert policy.max_bytes == 4096 and policy.allow_private_networks
    assert policy.connect_timeout == settings.feeds.connect_timeout
    assert policy.max_redirects == settings.feeds.max_redirects
    assert not HttpPolicy.from_settings(Settings()).allow_private_networks
    assert HttpPolicy.from_settings(Settings()).deadline == 60
    assert HttpPolicy.from_settings(Settings(feeds={"request_deadline": 7})).deadline == 7
