"""What the frontend remembers about tokens: used only while authentication's feed is trusted,
forgotten for every user it names, never kept when a change may have come meanwhile."""

from __future__ import annotations

from cloister.services.frontend.tokens import (
    EXPIRY_MARGIN_SECONDS,
    MAX_REMEMBERED_SECONDS,
    MAX_TRUST_SECONDS,
    RememberedTokens,
)

NOW = 1_800_000_000.0


class Clocks:
    def __init__(self) -> None:
        self.monotonic = 100.0
        self.wall = NOW


def _tokens(clocks: Clocks) -> RememberedTokens:
    tokens = RememberedTokens(lambda: clocks.monotonic, lambda: clocks.wall)
    tokens.start_over()
    tokens.heard(2000)
    return tokens


def _remember(tokens: RememberedTokens, user: str = "alice", token: str = "t1", role: str = "PlatformAdmin") -> None:
    tokens.remember(user, token, role, int(NOW + 3600), since_epoch=tokens.epoch)


def test_a_remembered_answer_is_used_for_that_token_only() -> None:
    tokens = _tokens(Clocks())
    _remember(tokens)
    assert tokens.role("alice", "t1") == "PlatformAdmin"
    assert tokens.role("alice", "t2") is None
    assert tokens.role("bob", "t1") is None


def test_nothing_is_used_once_the_feed_has_been_silent_for_its_trust() -> None:
    clocks = Clocks()
    tokens = _tokens(clocks)
    _remember(tokens)
    clocks.monotonic += 1.9
    assert tokens.role("alice", "t1") == "PlatformAdmin"
    clocks.monotonic += 0.2
    assert tokens.role("alice", "t1") is None, "2 s without a message from the feed"
    tokens.heard(2000)
    assert tokens.role("alice", "t1") == "PlatformAdmin", "the same feed spoke again, in order"


def test_a_broken_feed_is_distrusted_at_once_and_a_new_one_starts_empty() -> None:
    tokens = _tokens(Clocks())
    _remember(tokens)
    tokens.distrust()
    assert tokens.role("alice", "t1") is None
    tokens.start_over()
    tokens.heard(2000)
    assert tokens.role("alice", "t1") is None


def test_a_named_user_is_forgotten_and_others_kept() -> None:
    tokens = _tokens(Clocks())
    _remember(tokens, "alice", "t1")
    _remember(tokens, "alice", "t2")
    _remember(tokens, "bob", "t3")
    tokens.forget(["alice"])
    assert tokens.role("alice", "t1") is None and tokens.role("alice", "t2") is None
    assert tokens.role("bob", "t3") == "PlatformAdmin"


def test_an_answer_fetched_across_a_change_is_not_kept() -> None:
    """It may predate the change whose notice arrived first."""
    tokens = _tokens(Clocks())
    asked_at = tokens.epoch
    tokens.forget(["carol"])  # any change, even another user's, while the answer was on its way
    tokens.remember("alice", "t1", "PlatformAdmin", int(NOW + 3600), since_epoch=asked_at)
    assert tokens.role("alice", "t1") is None
    asked_at = tokens.epoch
    tokens.start_over()
    tokens.heard(2000)
    tokens.remember("alice", "t1", "PlatformAdmin", int(NOW + 3600), since_epoch=asked_at)
    assert tokens.role("alice", "t1") is None


def test_a_token_is_asked_about_again_before_it_expires_and_at_least_every_few_minutes() -> None:
    clocks = Clocks()
    tokens = _tokens(clocks)
    tokens.remember("alice", "soon", "PlatformAdmin", int(NOW + 60), since_epoch=tokens.epoch)
    tokens.remember("alice", "late", "PlatformAdmin", int(NOW + 86_400), since_epoch=tokens.epoch)
    tokens.remember("alice", "gone", "PlatformAdmin", int(NOW + EXPIRY_MARGIN_SECONDS), since_epoch=tokens.epoch)
    assert tokens.role("alice", "gone") is None
    clocks.monotonic += 60 - EXPIRY_MARGIN_SECONDS - 1
    tokens.heard(2000)
    assert tokens.role("alice", "soon") == "PlatformAdmin"
    clocks.monotonic += 1
    assert tokens.role("alice", "soon") is None, "forgotten a margin before it expires"
    assert tokens.role("alice", "late") == "PlatformAdmin"
    clocks.monotonic = 100.0 + MAX_REMEMBERED_SECONDS
    tokens.heard(2000)
    assert tokens.role("alice", "late") is None, "asked about again after a few minutes"


def test_the_feed_cannot_ask_for_trust_beyond_a_bound() -> None:
    clocks = Clocks()
    tokens = _tokens(clocks)
    _remember(tokens)
    tokens.heard(3_600_000)
    clocks.monotonic += MAX_TRUST_SECONDS + 0.1
    assert tokens.role("alice", "t1") is None


def test_tokens_are_kept_as_digests() -> None:
    tokens = _tokens(Clocks())
    _remember(tokens, token="eyJ-secret-token")
    assert "eyJ-secret-token" not in repr(vars(tokens))
