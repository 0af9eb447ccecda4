"""Training's stages: each one timed (seconds and peak memory, recorded in the manifest) and shown where the output
goes. On a terminal (stderr is a tty) that is one progress bar. Anywhere else (a log file, a pipe, cron) it is
timestamped lines: one per stage, one per step inside a stage (the ranker's), and one every ``HEARTBEAT_S`` seconds
while a stage runs without another, so a log shows what a long run is doing and holds no carriage returns or cursor
movements. :func:`progress_bar` does the same for a loop over many items (evaluation's queries)."""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from tqdm.auto import tqdm

STAGES = ("validate", "catalog", "interactions", "embeddings", "neighbours", "feedback", "index", "ranker", "report",
          "write")


#: in a log, the longest a running stage or loop goes without a line (seconds)
HEARTBEAT_S = 10.0

_write_lock = threading.Lock()  # the heartbeat thread and the training thread write whole lines, one at a time


def stderr_is_terminal() -> bool:
    """Whether stderr, where progress goes, is a terminal (else bars would fill a log with redraws)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without one, or closed
        return False


def log_line(message: str) -> None:
    """One line on stderr, after its UTC time to the second."""
    with _write_lock:
        print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}", file=sys.stderr, flush=True)


class StageTimer:
    """Times named stages and shows them: a step of one progress bar each on a terminal, timestamped lines in a
    log (see the module's docstring); nothing when ``show`` is false."""

    def __init__(self, show: bool, name: str = "train") -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.name = name
        self.bars = show and stderr_is_terminal()
        self.lines = show and not self.bars
        self.bar = tqdm(total=len(STAGES), desc=name, unit="stage", disable=not self.bars, leave=True)
        self.current = ""  # the running stage
        self._step = ""  # the running stage's last step
        self._last_line = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.bar.set_description(f"{self.name}: {name}")
        self.current, self._step = name, ""
        start = time.perf_counter()
        with self._heartbeat(start):
            yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.peak_rss_mb[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.bar.update(1)
        self._line(f"{name} done in {self.seconds[name]:.1f} s (peak memory {self.peak_rss_mb[name]:,.0f} MB)")

    def step(self, message: str) -> None:
        """A step inside the running stage: the bar's postfix on a terminal, a line in a log."""
        self._step = message
        if self.bars:
            self.bar.set_postfix_str(message)
        self._line(f"{self.current}: {message}")

    def _line(self, message: str) -> None:
        if self.lines:
            log_line(f"{self.name}: {message}")
            self._last_line = time.monotonic()

    @contextmanager
    def _heartbeat(self, start: float) -> Iterator[None]:
        """In a log: a line whenever the stage has gone ``HEARTBEAT_S`` seconds without one."""
        if not self.lines:
            yield
            return
        stopped = threading.Event()
        interval = HEARTBEAT_S

        def beat() -> None:
            while not stopped.wait(min(interval, 1.0)):
                if time.monotonic() - self._last_line >= interval and not stopped.is_set():
                    doing = f", {self._step}" if self._step else ""
                    self._line(f"{self.current}: running for {time.perf_counter() - start:.0f} s{doing}")

        self._last_line = time.monotonic()
        thread = threading.Thread(target=beat, name=f"{self.name}-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopped.set()
            thread.join()


class LineProgress:
    """A loop's progress as timestamped lines, at most one every ``HEARTBEAT_S`` seconds and one at the end: the
    part of tqdm's interface that the loops here use, for a log."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.whole = desc  # the loop's own name, for its last line (desc may name the part running now)
        self.started = self._last_line = time.monotonic()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last_line >= HEARTBEAT_S:
            self._write()

    def close(self) -> None:
        self.desc = self.whole
        self._write(f" in {time.monotonic() - self.started:.1f} s")

    def _write(self, suffix: str = "") -> None:
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        log_line(f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}{share}{suffix}")
        self._last_line = time.monotonic()


def progress_bar(total: int, desc: str, unit: str, show: bool) -> tqdm[None] | LineProgress:
    """A progress bar on a terminal, timestamped lines elsewhere (:class:`LineProgress`), a silent bar when
    ``show`` is false. ``unit``: what is counted, singular (``query``)."""
    if show and not stderr_is_terminal():
        return LineProgress(total, desc, PLURALS.get(unit, f"{unit}s"))
    return tqdm(total=total, desc=desc, unit=unit, disable=not show)


#: the plural of a unit that does not just add an s
PLURALS = {"query": "queries"}
