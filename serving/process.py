"""Run ``recsys serve`` as a child process on a free loopback port (benchmarks, tests, the CLI example)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base_url: str, timeout_s: float = 60.0) -> bool:
    """Poll ``/readyz`` until it answers 200 or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@contextmanager
def serving(model: Path, env: dict[str, str] | None = None, timeout_s: float = 60.0
            ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``recsys serve --model MODEL`` with extra environment ``env``; yield (base URL, process) once
    ready; stop it (SIGTERM) on exit unless it already ended."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", "serve", "--model", str(model), "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(base, timeout_s):
            raise RuntimeError(f"recsys serve did not become ready within {timeout_s:.0f} s")
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
