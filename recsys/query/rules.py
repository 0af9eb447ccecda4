"""The retailer's merchandising rules, applied at query time without retraining.

A rule has an ``action``: ``block`` (never offer), ``bury`` and ``boost`` (move by a bounded ``amount`` of score)
or ``pin`` (first wherever it is eligible); a ``scope`` saying which requests it applies to (its fields match X
and the request's store; empty: every request) and a ``target`` saying which candidates it touches (its fields
match a candidate); all given fields must match. ``starts`` / ``ends`` bound when it is active.

Rules never override the hard rules (stock, cart, substitution group) nor a request's filters: they act only on
candidates that passed them, and a pinned item is first only when it is one of those. Each answer names the rules
that acted on it (``rules_applied``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.query.attributes import ItemAttributes

#: the largest score change a boost or bury may make (scores are mostly within [-1, 2])
MAX_AMOUNT = 1.0
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class RuleScope(BaseModel):
    """Which requests a rule applies to: X's fields and the request's store."""

    model_config = ConfigDict(extra="forbid")

    store_id: str | None = Field(None, min_length=1, max_length=256)
    category: str | None = Field(None, min_length=1, max_length=256)
    product_type: str | None = Field(None, min_length=1, max_length=256)
    item_id: str | None = Field(None, min_length=1, max_length=256)


class RuleTarget(BaseModel):
    """Which candidates a rule touches."""

    model_config = ConfigDict(extra="forbid")

    brand: str | None = Field(None, min_length=1, max_length=256)
    private_label: bool | None = None
    item_id: str | None = Field(None, min_length=1, max_length=256)
    category: str | None = Field(None, min_length=1, max_length=256)
    attribute: dict[str, str] | None = Field(None, min_length=1, max_length=10, description=(
        "catalog attribute -> value a candidate must have, e.g. {\"organic\": \"yes\"}"))

    def fields(self) -> dict[str, object]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class Rule(BaseModel):
    """One merchandising rule (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="letters, digits and _ . : -, up to 100")
    action: Literal["block", "bury", "boost", "pin"]
    scope: RuleScope = Field(default_factory=RuleScope)
    target: RuleTarget
    amount: float = Field(0.5, gt=0.0, le=MAX_AMOUNT, description="boost and bury: the score change")
    starts: datetime | None = None
    ends: datetime | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if not self.target.fields():
            raise ValueError("target: name at least one of brand, private_label, item_id, category, attribute")
        if self.action == "pin" and self.target.item_id is None:
            raise ValueError("target.item_id: a pin names the item it puts first")
        for name in ("starts", "ends"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=UTC))  # a time without a zone is UTC
        if self.starts is not None and self.ends is not None and self.ends <= self.starts:
            raise ValueError("ends: must be after starts")
        return self

    def active(self, now: datetime) -> bool:
        return (self.starts is None or self.starts <= now) and (self.ends is None or now < self.ends)


@dataclass
class RuleEffects:
    """What the rules do to one query's candidates."""

    blocked: np.ndarray | None  # per candidate: a block rule removes it (None: none does)
    bias: np.ndarray | None  # per candidate: the score change of boosts and buries (None: none)
    pins: list[tuple[str, int]]  # (rule name, item index) of each pin in scope, in rule order
    touched: list[str]  # the names of the block, boost and bury rules that matched a candidate


class RuleBook:
    """The active rules of a model's catalog, compiled: each target as a mask over the items, and the rules
    indexed by the scope field they name first, so that a query looks at the few rules that may apply to it."""

    def __init__(self, rules: Sequence[Rule], item_ids: np.ndarray, brands: np.ndarray, private_label: np.ndarray,
                 categories: np.ndarray, attributes: ItemAttributes | None = None) -> None:
        self.rules = list(rules)
        index_of = {str(i): n for n, i in enumerate(item_ids.tolist())}
        self._targets: list[np.ndarray] = []
        self._pin_item: list[int] = []
        for rule in self.rules:
            mask = np.ones(len(item_ids), dtype=bool)
            target = rule.target
            if target.brand is not None:
                mask &= brands == target.brand
            if target.private_label is not None:
                mask &= private_label == target.private_label
            if target.category is not None:
                mask &= categories == target.category
            for name, value in (target.attribute or {}).items():
                mask &= attributes.having(name, value) if attributes is not None else False
            if target.item_id is not None:
                only = np.zeros(len(item_ids), dtype=bool)
                if target.item_id in index_of:
                    only[index_of[target.item_id]] = True
                mask &= only
            self._targets.append(mask)
            self._pin_item.append(index_of.get(target.item_id, -1) if target.item_id is not None else -1)
        self._by_scope: dict[tuple[str, str], list[int]] = {}
        self._everywhere: list[int] = []
        # each rule's scope as plain pairs, read per query (a pydantic dump per query costs microseconds)
        self._scopes = [tuple(rule.scope.model_dump(exclude_none=True).items()) for rule in self.rules]
        for n, scope_pairs in enumerate(self._scopes):
            scope = dict(scope_pairs)
            if not scope:
                self._everywhere.append(n)
            else:
                field, value = next(iter(scope.items()))
                self._by_scope.setdefault((field, value), []).append(n)

    def __len__(self) -> int:
        return len(self.rules)

    def effects(self, x_fields: dict[str, str], candidates: np.ndarray, now: datetime | None = None
                ) -> RuleEffects | None:
        """The effects on ``candidates`` of the rules whose scope matches ``x_fields`` (X's item_id, category,
        product_type and the store_id) and that are active at ``now``; None when no rule applies."""
        if not self.rules:
            return None
        maybe = list(self._everywhere)
        for field, value in x_fields.items():
            maybe += self._by_scope.get((field, value), ())
        if not maybe:
            return None
        now = now or datetime.now(UTC)
        blocked = bias = None
        pins: list[tuple[str, int]] = []
        touched: list[str] = []
        for n in sorted(set(maybe)):
            rule = self.rules[n]
            if not rule.active(now) or any(x_fields.get(field) != value for field, value in self._scopes[n]):
                continue
            if rule.action == "pin":
                pins.append((rule.name, self._pin_item[n]))
                continue
            hit = self._targets[n][candidates]
            if not hit.any():
                continue
            touched.append(rule.name)
            if rule.action == "block":
                blocked = hit if blocked is None else blocked | hit
            else:
                change = hit * (rule.amount if rule.action == "boost" else -rule.amount)
                bias = change if bias is None else bias + change
        if blocked is None and bias is None and not pins:
            return None
        return RuleEffects(blocked, None if bias is None else np.clip(bias, -MAX_AMOUNT, MAX_AMOUNT), pins, touched)


def parse_rules(bodies: Iterable[object]) -> list[Rule]:
    """Rules from their JSON objects (raises pydantic's ``ValidationError`` naming the field)."""
    return [Rule.model_validate(body) for body in bodies]
