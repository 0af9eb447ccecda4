"""The service's live state: the current engine (swapped atomically on reload), the inventory and the
substitution feedback log."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from recsys import Inventory, SubstituteEngine
from recsys.feedback import FeedbackLog


class ServiceState:
    """Holds the serving engine. A reload builds the new engine off the event loop, then swaps one reference,
    so in-flight requests finish on the model they started with and none sees a half-loaded model."""

    def __init__(self, model_path: Path, inventory: Inventory | None = None, feedback: FeedbackLog | None = None
                 ) -> None:
        self.model_path = model_path
        self.inventory = inventory or Inventory()
        self.feedback = feedback if feedback is not None else FeedbackLog()
        self.engine: SubstituteEngine | None = None
        self._reload_lock = asyncio.Lock()

    async def reload(self, model_path: Path | None = None) -> tuple[SubstituteEngine, str | None]:
        """Load and verify a model, then make it current; on error the old engine keeps serving."""
        async with self._reload_lock:
            path = model_path or self.model_path
            engine = await asyncio.to_thread(SubstituteEngine.load, path, self.inventory)
            previous = self.engine.version if self.engine is not None else None
            self.engine = engine
            # the model is ~10^5 long-lived Python objects: keep them out of the cyclic GC's full scans,
            # which otherwise stall requests for tens of milliseconds; unfreeze first so that cycles left by
            # the replaced model are still collected
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            return engine, previous
