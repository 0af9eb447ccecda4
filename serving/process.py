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


def wait_ready(base_url: str, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll ``/readyz`` until it answers 200 or the time is up (or ``process``, the server, has ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def start(model: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (), cwd: Path | None = None
          ) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``recsys serve --model MODEL ARGS`` on a free port with extra environment ``env``, without
    waiting for it; returns (base URL, process). ``cwd``: the directory it runs in, whose ``recsys`` package it
    imports when that holds a source checkout (to compare with another version)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", "serve", "--model", str(model), "--port", str(port),
         "--log-level", "warning", "--no-access-log", *args],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd,
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
def serving(model: Path, env: dict[str, str] | None = None, timeout_s: float = 60.0, args: tuple[str, ...] = (),
            cwd: Path | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``recsys serve --model MODEL ARGS`` with extra environment ``env`` (in ``cwd``); yield (base URL,
    process) once ready; stop it (SIGTERM) on exit unless it already ended."""
    base, process = start(model, env, args, cwd)
    try:
        if not wait_ready(base, timeout_s, process):
            if process.poll() is not None:
                raise RuntimeError(f"recsys serve ended with exit status {process.returncode} before it was ready")
            raise RuntimeError(f"recsys serve did not become ready within {timeout_s:.0f} s")
        yield base, process
    finally:
        stop(process)


def memory(pid: int) -> dict[str, int]:
    """Resident memory of process ``pid`` in bytes, from ``/proc/PID/smaps_rollup`` (Linux): ``rss``; ``pss``, its
    proportional share (each page divided by the number of processes mapping it, so the PSS of a group of
    processes adds up to the memory they use together); ``private`` (clean + dirty: pages no other process maps)
    and ``shared`` (clean + dirty)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "private": fields["Private_Clean"] + fields["Private_Dirty"],
            "shared": fields["Shared_Clean"] + fields["Shared_Dirty"]}


def proc_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` (Linux) after the command name: the state first, then the parent id, ...
    (``proc_stat(p)[k]`` is field k + 3 of proc(5)). Raises OSError once the process is gone."""
    with open(f"/proc/{pid}/stat") as stat:
        # the command name (field 2) is in parentheses and may hold spaces: the other fields follow it
        return stat.read().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    """The ids of the live child processes of ``pid`` (Linux ``/proc``), sorted."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = proc_stat(entry)
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)
