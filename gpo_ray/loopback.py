"""This machine's own addresses, decided in one place: the servers gpo-ray starts (the embedded model, the fake
endpoint) listen on loopback only, and requests to an endpoint on loopback never go through a proxy from the
environment."""

from __future__ import annotations

LOOPBACK_HOST = "127.0.0.1"  # where those servers listen unless told otherwise


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1); a name that only looks like one (127.0.0.1.nip.io,
    127.example.com) is not, nor is an unspecified address (0.0.0.0, ::) that listens everywhere."""
    import ipaddress  # local: the CLI imports this module to parse its flags

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_is_loopback(url: str) -> bool:
    """Whether a URL's host is on loopback (`is_loopback`)."""
    from urllib.parse import urlsplit

    return is_loopback(urlsplit(url).hostname or "")
