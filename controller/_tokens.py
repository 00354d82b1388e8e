"""API tokens: made at random, stored only as hashes, checked without touching the disk.

Tokens carry 256 bits of randomness, so a plain SHA-256 is the right hash: there is nothing to
brute-force that a slow password hash would protect. Checks happen on gRPC threads for every call,
so the known hashes live in memory (loaded at start, updated on every change) behind a dict lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlite_utils import Database

Kind = Literal["user", "join", "node", "anyone"]


@dataclass(frozen=True)
class Identity:
    kind: Kind
    subject: str  # the user's name, or the node's id


@dataclass(frozen=True)
class _TokenRecord:
    identity: Identity
    expires_at: float | None
    uses_left: int | None


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def new_join_token(ca_fingerprint: str) -> str:
    """A join token that also pins the controller's CA: agents check the CA they are sent
    against the fingerprint after the dot before trusting it."""
    return f"{new_token('wakajoin')}.{ca_fingerprint[:32]}"


def token_hash(token: str) -> str:
    # A join token's `.fingerprint` suffix is a public pin for agents, not part of the secret.
    secret = token.partition(".")[0]
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenBook:
    """The in-memory view of the tokens table; the database stays the truth."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_hash: dict[str, _TokenRecord] = {}
        # Nodes whose certificates are honoured; removing a node revokes its certificate.
        self._nodes: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def load(self, db: Database) -> None:
        rows = db.execute(
            "SELECT hash, kind, subject, expires_at, uses_left FROM tokens"
        ).fetchall()
        nodes = frozenset(r[0] for r in db.execute("SELECT id FROM nodes"))
        with self._lock:
            self._by_hash = {
                h: _TokenRecord(Identity(kind, subject), expires, uses)
                for h, kind, subject, expires, uses in rows
            }
            self._nodes = nodes

    def identify_node(self, node_id: str) -> Identity | None:
        return Identity("node", node_id) if node_id in self._nodes else None

    def identify(self, token: str) -> Identity | None:
        record = self._by_hash.get(token_hash(token))
        if record is None:
            return None
        if record.expires_at is not None and record.expires_at < self._clock():
            return None
        if record.uses_left is not None and record.uses_left <= 0:
            return None
        return record.identity

    @staticmethod
    def insert(
        db: Database,
        token: str,
        identity: Identity,
        *,
        now: float,
        expires_at: float | None = None,
        uses_left: int | None = None,
    ) -> None:
        """Stores a token; call inside a write transaction, then load() the book again."""
        db.execute(
            "INSERT INTO tokens (hash, kind, subject, created_at, expires_at, uses_left)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (token_hash(token), identity.kind, identity.subject, now, expires_at, uses_left),
        )

    @staticmethod
    def spend(db: Database, token: str) -> None:
        db.execute(
            "UPDATE tokens SET uses_left = uses_left - 1 WHERE hash = ? AND uses_left IS NOT NULL",
            (token_hash(token),),
        )
