"""Training's stages: each one timed (seconds and peak memory, recorded in the manifest) and shown as a step of one
progress bar."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

STAGES = ("validate", "catalog", "interactions", "embeddings", "neighbours", "feedback", "index", "ranker", "report",
          "write")


class StageTimer:
    """Times named stages and advances one progress bar per stage."""

    def __init__(self, show: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.bar = tqdm(total=len(STAGES), desc="train", unit="stage", disable=not show, leave=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.bar.set_description(f"train: {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.peak_rss_mb[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.bar.update(1)
