"""Whole orders: substitutes for several unavailable lines of one order at once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from recsys.domain.types import Intent, OrderSubstitutes, SubstituteFilters, SubstituteList


class _Engine(Protocol):
    version: str

    def __contains__(self, item_id: object) -> bool: ...

    def customer_row(self, customer_id: str) -> int | None: ...

    def substitutes(self, item_id: str, customer_id: str | None = None, store_id: str | None = None,
                    k: int = 10, *, exclude: Iterable[str] = (), filters: SubstituteFilters | None = None,
                    intent: Intent | str = Intent.balanced) -> SubstituteList: ...


def order_substitutes(engine: _Engine, item_ids: Sequence[str], customer_id: str | None = None,
                      store_id: str | None = None, k: int = 3, *, order: Iterable[str] = (),
                      filters: SubstituteFilters | None = None, intent: Intent = Intent.balanced
                      ) -> OrderSubstitutes:
    """Substitutes for each unavailable line of one order (one customer, one store), in line order.

    Never proposes an item of the order (``order``, plus the unavailable lines themselves) and never the
    same substitute for two lines: each line's answer is excluded from the later lines. Unknown ids are
    reported rather than failing the whole order; a repeated line is answered once.
    """
    lines = list(dict.fromkeys(item_ids))
    unknown = tuple(i for i in lines if i not in engine)
    taken = set(order) | set(lines)
    answers = []
    for item_id in lines:
        if item_id in engine:
            answer = engine.substitutes(item_id, customer_id, store_id, k=k, exclude=taken, filters=filters,
                                        intent=intent)
            taken.update(s.item_id for s in answer)
            answers.append(answer)
    return OrderSubstitutes(
        lines=tuple(answers), unknown_items=unknown, model_version=engine.version,
        personalized=customer_id is not None and engine.customer_row(customer_id) is not None,
    )
