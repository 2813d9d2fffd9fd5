"""Injected faults: which one hits a request, and the error a real endpoint would answer with.

A fault comes from a marker in the prompt text - [[fault:429]], [[fault:500]], [[fault:401]], [[fault:quota]],
[[fault:hang]], [[fault:malformed]], [[fault:empty]], [[fault:nomarkers]], [[fault:oversized]] (a 200 whose body goes
on for `oversized_bytes`), [[fault:stall]] (headers and the first bytes, then nothing for `hang_s`), [[fault:once:500]] (only the first time
this request is seen), [[fault:first:3:429]] (the first three times) - or from the config: the first requests to
arrive (`fail_first_n`) or a rate per attempt, decided by a hash so a run is repeatable (`fault_rates`).
"""

from __future__ import annotations

import re
from typing import Any

from gpo_ray.testing.hashing import unit_interval

NAMED_FAULTS = frozenset({"hang", "malformed", "empty", "nomarkers", "quota", "oversized", "stall"})
# Faults that shape a normal reply instead of replacing it.
REPLY_SHAPING_FAULTS = frozenset({"empty", "nomarkers"})
_MARKER = re.compile(r"\[\[fault:([a-z0-9:]+)\]\]")


def is_fault_name(name: str) -> bool:
    return name in NAMED_FAULTS or (name.isdigit() and len(name) == 3 and 400 <= int(name) <= 599)


def fault_markers(text: str) -> list[str]:
    """The [[fault:...]] markers in a request's text, without the brackets."""
    return _MARKER.findall(text)


def choose_fault(
    markers: list[str],
    *,
    fail_first_n: dict[str, int],
    fault_rates: dict[str, float],
    fingerprint: str,
    times_seen: int,
    arrival: int,
) -> str | None:
    """The fault for this attempt, if any: markers first, then the first arrivals, then the rates."""
    for marker in markers:
        parts = marker.split(":")
        if len(parts) == 1 and is_fault_name(parts[0]) and parts[0] != "nomarkers":
            return parts[0]
        if len(parts) == 2 and parts[0] == "once" and is_fault_name(parts[1]):
            if times_seen == 1:
                return parts[1]
        elif len(parts) == 3 and parts[0] == "first" and parts[1].isdigit() and is_fault_name(parts[2]):
            if times_seen <= int(parts[1]):
                return parts[2]
    remaining = arrival
    for name, n in fail_first_n.items():
        if remaining <= n:
            return name
        remaining -= n
    for name, rate in fault_rates.items():
        if rate > 0 and unit_interval("fault", name, fingerprint, times_seen) < rate:
            return name
    return None


def error_body(message: str, *, type_: str, code: str | None = None) -> dict[str, Any]:
    """An error in the shape of the OpenAI API's, so the real client parses it as it would a real one."""
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


def bad_key_body(authorization: str) -> dict[str, Any]:
    """Like the real API, quote a masked part of the wrong key: clients must not pass this text on."""
    given = authorization.removeprefix("Bearer ")
    shown = f"{given[:12]}****{given[-4:]}" if len(given) > 16 else "****"
    return error_body(f"Incorrect API key provided: {shown}.", type_="invalid_request_error", code="invalid_api_key")


def error_response(fault: str, *, retry_after_s: float | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for a fault answered with an HTTP error: `quota` or a status code."""
    if fault == "quota":
        quota = error_body("You exceeded your current quota.", type_="insufficient_quota", code="insufficient_quota")
        return 429, quota, {}
    status = int(fault)
    headers: dict[str, str] = {}
    if status in (429, 503) and retry_after_s is not None:
        headers["Retry-After"] = f"{retry_after_s:g}"
        headers["retry-after-ms"] = str(int(round(retry_after_s * 1000)))
    if status == 401:
        return 401, error_body("Incorrect API key provided.", type_="invalid_request_error", code="invalid_api_key"), {}
    if status == 429:
        return 429, error_body("Rate limit reached; slow down.", type_="requests", code="rate_limit_exceeded"), headers
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return status, error_body(f"injected HTTP {status}", type_=kind), headers
