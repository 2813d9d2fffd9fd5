"""Hashes that are the same in every process and run: what makes the fake's replies, faults and delays repeatable."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts that is the same in every process and run."""
    blob = json.dumps([str(p) for p in parts], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big")


def unit_interval(*parts: object) -> float:
    return stable_hash(*parts) / 2**64


def request_fingerprint(body: dict[str, Any]) -> str:
    """What makes two HTTP requests the same request: model, messages and seed (retries repeat it)."""
    blob = json.dumps([body.get("model"), body.get("messages"), body.get("seed")], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
