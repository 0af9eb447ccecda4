"""API keys: named, scoped, stored hashed in the state database so that every replica knows them.

A key is 32 random bytes (``rsk_`` + URL-safe base64): only its SHA-256 is stored, and a presented key is found
by the hash of what was presented. A fast hash is enough because keys are random, not chosen by people: there
is no dictionary to try. The lookup compares hashes, so its timing says nothing about the key itself.

Scopes (one key may hold several):

- ``read``: substitutes, batch substitutes, item search, the model's summary and report;
- ``profiles``: customers' purchase profiles (personal data: give it to data scientists' tools, not storefronts);
- ``write``: substitution feedback and stock updates;
- ``admin``: everything, including model reload and key-free administration.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from recsys.state.storage import utc_now

SCOPES: Final[tuple[str, ...]] = ("read", "profiles", "write", "admin")
KEY_PREFIX: Final[str] = "rsk_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the service knows it: its name, its scopes and when it was made or revoked; never the key."""

    name: str
    scopes: frozenset[str]
    key_hash: str
    created_at: str
    revoked_at: str | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class KeyStore(Protocol):
    """Where keys are kept: the state database (SQLite or PostgreSQL)."""

    def add_key(self, key: ApiKey) -> None:
        """Store a new key; raises ValueError when an active key already has its name."""

    def api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""

    def revoke_key(self, name: str) -> bool:
        """Revoke the active key named ``name``; False when there is none."""


def api_key_of(name: str, scopes: str, key_hash: str, created_at: object, revoked_at: object) -> ApiKey:
    """A key from its stored row (either database)."""
    return ApiKey(name=name, scopes=frozenset(scopes.split(",")), key_hash=key_hash, created_at=str(created_at),
                  revoked_at=None if revoked_at is None else str(revoked_at))



def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"key name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return name


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """``"read,write"`` (or an iterable of names) as a set of scopes; raises ValueError naming an unknown one."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    names = [s for s in names if s]
    unknown = [s for s in names if s not in SCOPES]
    if unknown or not names:
        raise ValueError(f"scopes {', '.join(unknown) or '(none)'}: expected some of {', '.join(SCOPES)}")
    return frozenset(names)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(store: KeyStore, name: str, scopes: frozenset[str]) -> str:
    """Make a new key named ``name``, store its hash, and return the key itself (the only time it is seen)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    store.add_key(ApiKey(name=check_name(name), scopes=scopes, key_hash=hash_key(key), created_at=utc_now()))
    return key


class Keyring:
    """The active keys by hash, for one process: replaced whole when the state changes (an atomic swap of one
    dict, so a request never sees half an update)."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._by_hash: dict[str, ApiKey] = {}
        self.replace(keys)

    def replace(self, keys: Iterable[ApiKey]) -> None:
        self._by_hash = {k.key_hash: k for k in keys if k.revoked_at is None}

    def find(self, key: str) -> ApiKey | None:
        """The active key ``key`` is, or None."""
        return self._by_hash.get(hash_key(key))
