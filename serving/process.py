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


def start(model: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
          ) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``recsys serve --model MODEL ARGS`` on a free port with extra environment ``env``, without
    waiting for it; returns (base URL, process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", "serve", "--model", str(model), "--port", str(port),
         "--log-level", "warning", "--no-access-log", *args],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return f"http://127.0.0.1:{port}", process


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM ``process`` unless it already ended, and wait for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


@contextmanager
def serving(model: Path, env: dict[str, str] | None = None, timeout_s: float = 60.0, args: tuple[str, ...] = ()
            ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``recsys serve --model MODEL ARGS`` with extra environment ``env``; yield (base URL, process) once
    ready; stop it (SIGTERM) on exit unless it already ended."""
    base, process = start(model, env, args)
    try:
        if not wait_ready(base, timeout_s):
            raise RuntimeError(f"recsys serve did not become ready within {timeout_s:.0f} s")
        yield base, process
    finally:
        stop(process)
