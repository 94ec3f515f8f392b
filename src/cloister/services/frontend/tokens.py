"""What authentication answered about tokens, reused while its ``CredentialFeed`` says nothing changed.

The frontend asks authentication about a token the first time it sees it and remembers the
answer (the user's role now, and when the token expires). Authentication's feed names every
user that changes before the change is answered (``services.authentication.feed``); the
frontend forgets those users' tokens, then acknowledges. What it remembers is used only while
the feed is alive: after ``trust_ms`` without a message, or when the stream breaks, every call
asks authentication again, and a new stream starts from an empty memory.

An answer is remembered only if nothing was forgotten while it was being fetched: otherwise it
might predate a change whose notice came first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.rpc.channel import Peer
from cloister.rpc.retry import Backoff

logger = logging.getLogger(__name__)

MAX_REMEMBERED_SECONDS = 300.0
"""A token is asked about again at least this often, whatever the feed says."""
EXPIRY_MARGIN_SECONDS = 5.0
"""Forget a token this long before it expires, so a frontend clock a little behind never extends it."""
MAX_TRUST_SECONDS = 10.0
MAX_TOKENS = 100_000


class RememberedTokens:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._by_user: dict[str, dict[bytes, tuple[str, float]]] = {}
        self._count = 0
        self._trusted_until = 0.0
        self.epoch = 0
        """Bumped whenever something remembered may have gone stale; see :meth:`remember`."""

    def role(self, user_id: str, token: str) -> str | None:
        """The role authentication answered for this token, if it is remembered and may be used now."""
        now = self._monotonic()
        if now >= self._trusted_until:
            return None
        remembered = self._by_user.get(user_id, {}).get(_digest(token))
        if remembered is None or now >= remembered[1]:
            return None
        return remembered[0]

    def remember(self, user_id: str, token: str, role: str, expires_at: int, since_epoch: int) -> None:
        """Keep authentication's answer, fetched when :attr:`epoch` was ``since_epoch``, unless anything
        was forgotten since (the answer might predate the change)."""
        if since_epoch != self.epoch:
            return
        lifetime = min(expires_at - self._wall() - EXPIRY_MARGIN_SECONDS, MAX_REMEMBERED_SECONDS)
        if lifetime <= 0:
            return
        if self._count >= MAX_TOKENS:
            self._by_user.clear()
            self._count = 0
        tokens = self._by_user.setdefault(user_id, {})
        self._count += _digest(token) not in tokens
        tokens[_digest(token)] = (role, self._monotonic() + lifetime)

    def forget(self, user_ids: list[str]) -> None:
        self.epoch += 1
        for user_id in user_ids:
            self._count -= len(self._by_user.pop(user_id, {}))

    def start_over(self) -> None:
        """A new feed: nothing heard before it can be trusted."""
        self.epoch += 1
        self._by_user.clear()
        self._count = 0
        self._trusted_until = 0.0

    def heard(self, trust_ms: int) -> None:
        self._trusted_until = self._monotonic() + min(trust_ms / 1000, MAX_TRUST_SECONDS)

    def distrust(self) -> None:
        self._trusted_until = 0.0


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def follow_changes(authentication: Peer, tokens: RememberedTokens) -> None:
    """Keep a feed from authentication open for ever, applying and acknowledging every change."""
    backoff = Backoff()
    while True:
        acks: asyncio.Queue[cpb.CredentialAck] = asyncio.Queue()
        try:
            first = True
            async for message in authentication.stream(cgrpc.CredentialFeedStub, "Watch", _drain(acks)):
                if first:
                    tokens.start_over()
                    first = False
                    backoff.reset()
                    logger.info("following authentication's user changes")
                if message.user_ids:
                    tokens.forget(list(message.user_ids))
                tokens.heard(message.trust_ms)
                acks.put_nowait(cpb.CredentialAck(seq=message.seq))
            logger.warning("authentication ended its feed of user changes; reconnecting")
        except Exception as exc:
            reason = getattr(exc, "message", exc)
            logger.warning("lost authentication's feed of user changes (%s); reconnecting", reason)
        tokens.distrust()
        await backoff.sleep()


async def _drain(acks: asyncio.Queue[cpb.CredentialAck]) -> AsyncIterator[cpb.CredentialAck]:
    while True:
        yield await acks.get()
