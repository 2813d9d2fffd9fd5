"""One loopback check for the embedded model server, the fake endpoint (and its CLI) and the transports' proxy rule."""

from __future__ import annotations

import pytest

from gpo_ray.loopback import LOOPBACK_HOST, is_loopback, url_is_loopback


@pytest.mark.parametrize("host", [LOOPBACK_HOST, "127.0.0.2", "::1", "localhost", "LocalHost", "0:0:0:0:0:0:0:1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.2", "example.com", "127.0.0.1.nip.io",
                                  "127.example.com", "localhost.example.com", "[::1]"])
def test_hosts_that_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8787/v1", True), ("http://localhost:8080/v1", True), ("http://LOCALHOST/v1", True),
    ("http://[::1]:8000/v1", True), ("https://api.openai.com/v1", False), ("http://127.0.0.1.nip.io/v1", False),
    ("http://10.0.0.5:8000/v1", False), ("not a url", False),
])
def test_urls(url: str, loopback: bool) -> None:
    assert url_is_loopback(url) is loopback
