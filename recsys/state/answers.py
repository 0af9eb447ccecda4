"""Signed answer ids: what binds feedback to an answer the service really gave.

Each answer carries an ``answer_id``: the answer's model version, item, customer, store, the ids shown and
when, signed with HMAC-SHA256 under a key that every replica reads from the state database. Feedback must
bring it back: the signature must verify, the answer must be recent, and ``accepted`` / ``rejected`` must be
ids that answer showed. So nobody can make up feedback for pairs the service never offered, nor replay one
answer's decision as many (the state stores one decision per answer id), and the trainer checks the signature
again before it learns from a row.

The id is ``<payload>.<tag>``: URL-safe base64 of a compact JSON array, then of the first 16 bytes of the MAC
(128 bits, far beyond guessing). It is readable by whoever holds it, which is the client the answer went to.

An answer given in an online experiment (:mod:`recsys.state.experiments`) also signs the experiment's name and the
arm, so feedback on it counts for that arm and no other. Those two fields are appended to the array only then: an
answer outside any experiment has the same id as before experiments existed, and ids issued before them verify.
A line of a whole order's answer (``POST /v1/substitutes/batch``) in an experiment also signs the order's id, one
random id shared by every line of that answer, so feedback on any line counts toward its order and a client cannot
move a line into another order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

#: the state database's name for the signing key
SECRET_NAME: Final[str] = "answer-signing"
DEFAULT_MAX_AGE_S: Final[float] = 7 * 24 * 3600.0
#: how far in the future an answer may claim to be from (replicas' clocks differ a little)
CLOCK_SKEW_S: Final[float] = 300.0
_TAG_BYTES: Final[int] = 16
#: longest answer id accepted: 100 shown ids of 256 characters, escaped, fit well within it
MAX_ANSWER_ID_LENGTH: Final[int] = 120_000


class AnswerIdError(ValueError):
    """An answer id that cannot be trusted; the message says why (malformed, forged, expired, mismatched)."""


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    """What an answer id says was shown."""

    model_version: str
    item_id: str
    customer_id: str | None
    store_id: str | None
    shown: tuple[str, ...]
    issued_at: float  # Unix seconds
    experiment: str | None = None  # the online experiment the answer was given in, and its arm
    arm: str | None = None
    order_id: str | None = None  # the whole order (batch answer) the line belongs to, in an experiment only


def new_order_id() -> str:
    """A fresh id for one whole order's answer: random, so that replicas need not agree on anything (64 bits)."""
    return os.urandom(8).hex()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AnswerSigner:
    """Signs and verifies answer ids with one secret (at least 32 bytes)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("an answer-signing secret needs at least 32 bytes")
        # keyed once: a copy of it signs a payload in 1.5 µs, hmac.digest (which keys it afresh) in 2.5 µs
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def _tag(self, payload: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(payload)
        return base64.urlsafe_b64encode(mac.digest()[:_TAG_BYTES]).rstrip(b"=")

    def sign(self, model_version: str, item_id: str, customer_id: str | None, store_id: str | None,
             shown: Sequence[str], issued_at: float, experiment: str | None = None, arm: str | None = None,
             order_id: str | None = None) -> str:
        """The answer id of an answer (every answer the service sends is signed: this is on its busiest path).
        ``order_id`` (:func:`new_order_id`) is signed only with an experiment: outside one, ids stay as they were."""
        # a nonce: two identical answers in the same millisecond are still two answers, each decided once
        body: list[object] = [model_version, item_id, customer_id, store_id, shown, round(issued_at * 1000),
                              os.urandom(6).hex()]
        if experiment is not None:
            body += [experiment, arm] if order_id is None else [experiment, arm, order_id]
        payload = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=")
        return (payload + b"." + self._tag(payload)).decode("ascii")

    def verify(self, answer_id: str, now: float, max_age_s: float = DEFAULT_MAX_AGE_S) -> SignedAnswer:
        """The answer ``answer_id`` names; raises :class:`AnswerIdError` saying why it cannot be trusted."""
        answer = self.read(answer_id)
        age = now - answer.issued_at
        if age > max_age_s:
            raise AnswerIdError(f"answer_id expired: the answer is {age / 3600:.1f} h old, feedback is taken "
                                f"for {max_age_s / 3600:.1f} h")
        if age < -CLOCK_SKEW_S:
            raise AnswerIdError("answer_id is from the future: it was not issued by this service")
        return answer

    def read(self, answer_id: str) -> SignedAnswer:
        """The answer ``answer_id`` names, whatever its age; raises :class:`AnswerIdError` unless it verifies."""
        if len(answer_id) > MAX_ANSWER_ID_LENGTH or answer_id.count(".") != 1:
            raise AnswerIdError("answer_id is malformed: copy it unchanged from the answer")
        payload, tag = answer_id.split(".")
        if not hmac.compare_digest(tag.encode("ascii", "replace"), self._tag_or_empty(payload)):
            raise AnswerIdError("answer_id does not verify: it was changed, or not issued by this service")
        try:
            fields = orjson.loads(_unb64(payload))
            if len(fields) not in (7, 9, 10):  # outside experiments; an experiment's answer; one line of an order
                raise ValueError("not an answer id's fields")
            version, item, customer, store, shown, issued_ms, _ = fields[:7]
            experiment, arm = fields[7:9] if len(fields) >= 9 else (None, None)
            order_id = fields[9] if len(fields) == 10 else None
        except (ValueError, TypeError, binascii.Error) as exc:  # a signed payload of another format
            raise AnswerIdError("answer_id is malformed: copy it unchanged from the answer") from exc
        return SignedAnswer(model_version=version, item_id=item, customer_id=customer, store_id=store,
                            shown=tuple(shown), issued_at=issued_ms / 1000, experiment=experiment, arm=arm,
                            order_id=order_id)

    def _tag_or_empty(self, payload: str) -> bytes:
        try:
            return self._tag(payload.encode("ascii"))
        except UnicodeEncodeError:  # not base64 at all: compare against something that cannot match
            return b""
