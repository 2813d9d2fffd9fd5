"""Shared by the shims: the harness's settings (GPO_DIFF_SHIM_CONFIG, a JSON file) and one JSON POST."""

from __future__ import annotations

import json
import os
import urllib.request
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def settings() -> dict[str, Any]:
    path = os.environ.get("GPO_DIFF_SHIM_CONFIG")
    if not path:
        raise RuntimeError("GPO_DIFF_SHIM_CONFIG is not set: these shims run under benchmarks/paper_diff.py only")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def post_chat(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())
