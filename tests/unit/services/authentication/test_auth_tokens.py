"""JWT issuing and checking: claims, expiry at an explicit time, rejected tokens, the persisted secret."""

from __future__ import annotations

import os
import stat

import jwt
import pytest

from cloister.errors import AuthenticationError, ConfigurationError
from cloister.model.roles import Role, RoleKind
from cloister.services.authentication.tokens import SECRET_LENGTH, JWTIssuer, TokenClaims

NOW = 1_700_000_000
SECRET = bytes(range(64))


def issuer(lifetime: int = 86_400) -> JWTIssuer:
    return JWTIssuer(SECRET, lifetime)


def test_claims_are_teaclaves_then_the_generation() -> None:
    token = issuer().issue("alice", Role(RoleKind.DATA_OWNER, "org1"), "gen-1", NOW)
    assert jwt.get_unverified_header(token) == {"alg": "HS512", "typ": "JWT"}
    payload = jwt.decode(token, SECRET, algorithms=["HS512"], options={"verify_exp": False})
    assert payload == {"sub": "alice", "role": "DataOwner-org1", "iss": "Teaclave", "exp": NOW + 86_400, "gen": "gen-1"}
    assert list(payload) == ["sub", "role", "iss", "exp", "gen"]


def test_verify_returns_the_claims() -> None:
    token = issuer().issue("admin", Role(RoleKind.PLATFORM_ADMIN), "gen-1", NOW)
    claims = issuer().verify_jwt(token, "admin", now=NOW + 1)
    assert claims == TokenClaims(sub="admin", role="PlatformAdmin", iss="Teaclave", exp=NOW + 86_400, gen="gen-1")


def test_expiry_is_strict_with_no_leeway() -> None:
    token = issuer(lifetime=60).issue("alice", "FunctionOwner", "gen-1", NOW)
    issuer().verify_jwt(token, "alice", now=NOW + 59)
    issuer().verify_jwt(token, "alice", now=NOW + 59.999)
    for now in (NOW + 60, NOW + 61, NOW + 10**6):
        with pytest.raises(AuthenticationError, match=r"^authentication failed$"):
            issuer().verify_jwt(token, "alice", now=now)


def forge(claims: dict, *, key: bytes = SECRET, algorithm: str = "HS512") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


GOOD = {"sub": "alice", "role": "FunctionOwner", "iss": "Teaclave", "exp": NOW + 100, "gen": "gen-1"}


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(forge(GOOD, algorithm="HS256"), id="hs256-same-secret"),
        pytest.param(forge(GOOD, algorithm="HS384"), id="hs384-same-secret"),
        pytest.param(forge(GOOD, key=os.urandom(64)), id="other-secret"),
        pytest.param(forge({**GOOD, "iss": "Mallory"}), id="wrong-iss"),
        pytest.param(forge({**GOOD, "iss": "Teaclav"}), id="iss-a-substring"),  # PyJWT 2.10.0 alone accepts it
        pytest.param(forge({**GOOD, "sub": "bob"}), id="wrong-sub"),
        pytest.param(forge({k: v for k, v in GOOD.items() if k != "exp"}), id="no-exp"),
        pytest.param(forge({k: v for k, v in GOOD.items() if k != "role"}), id="no-role"),
        pytest.param(forge({k: v for k, v in GOOD.items() if k != "iss"}), id="no-iss"),
        pytest.param(forge({k: v for k, v in GOOD.items() if k != "sub"}), id="no-sub"),
        pytest.param(forge({k: v for k, v in GOOD.items() if k != "gen"}), id="no-generation"),
        pytest.param(forge({**GOOD, "gen": ""}), id="empty-generation"),
        pytest.param(forge({**GOOD, "gen": 1}), id="generation-not-string"),
        pytest.param(forge({**GOOD, "exp": str(NOW + 100)}), id="exp-string"),
        pytest.param(forge({**GOOD, "exp": float(NOW + 100)}), id="exp-float"),
        pytest.param(forge({**GOOD, "role": 7}), id="role-not-string"),
        pytest.param(jwt.encode(GOOD, None, algorithm="none"), id="alg-none"),
        pytest.param("", id="empty"),
        pytest.param("InvalidToken", id="garbage"),
        pytest.param("a.b.c", id="three-garbage-parts"),
    ],
)
def test_bad_tokens_fail_authentication(token: str) -> None:
    with pytest.raises(AuthenticationError, match=r"^authentication failed$"):
        issuer().verify_jwt(token, "alice", now=NOW)


def test_a_token_made_like_ours_verifies() -> None:
    assert issuer().verify_jwt(forge(GOOD), "alice", now=NOW).sub == "alice"


def test_secret_persists_across_instances_with_mode_0600(tmp_path) -> None:
    first = JWTIssuer.load_or_create(tmp_path / "authentication")
    token = first.issue("alice", "FunctionOwner", "gen-1", NOW)
    key_file = tmp_path / "authentication" / "jwt.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == SECRET_LENGTH
    second = JWTIssuer.load_or_create(tmp_path / "authentication")
    assert second.verify_jwt(token, "alice", now=NOW).role == "FunctionOwner"


def test_different_directories_have_different_secrets(tmp_path) -> None:
    token = JWTIssuer.load_or_create(tmp_path / "a").issue("alice", "FunctionOwner", "gen-1", NOW)
    with pytest.raises(AuthenticationError):
        JWTIssuer.load_or_create(tmp_path / "b").verify_jwt(token, "alice", now=NOW)


def test_truncated_key_file_is_a_configuration_error(tmp_path) -> None:
    (tmp_path / "jwt.key").write_bytes(b"short")
    with pytest.raises(ConfigurationError, match="64-byte key"):
        JWTIssuer.load_or_create(tmp_path)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        JWTIssuer(b"x" * 32)
