"""The console's session cookie and CSRF checks, against hostile cookies, forms and headers."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cloister.console.guard import BodyLimit, Guard

ORIGIN = "https://127.0.0.1:7780"


def request(cookies: dict[str, str] | None = None, **headers: str) -> Request:
    raw = [(b"host", b"127.0.0.1:7780")]
    if cookies:
        raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "scheme": "https", "method": "POST", "path": "/", "query_string": b"", "headers": raw}
    return Request(scope)


def session_cookie(guard: Guard, user_id: str = "bob", token: str = "t0k3n") -> dict[str, str]:
    response = Response()
    guard.start_session(response, user_id, token)
    value = response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    return {guard.session_cookie: value}


@pytest.fixture
def guard() -> Guard:
    return Guard(b"k" * 32, secure=True)


def test_the_session_cookie_is_locked_down_and_reads_back(guard: Guard) -> None:
    response = Response()
    guard.start_session(response, "bob", "t0k3n")
    header = response.headers["set-cookie"].lower()
    assert header.startswith("__host-cloister-session=")
    for attribute in ("httponly", "secure", "samesite=strict", "path=/"):
        assert attribute in header
    assert "domain" not in header
    signin = guard.signin(request(session_cookie(guard)))
    assert signin is not None and (signin.user_id, signin.token) == ("bob", "t0k3n")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(json.dumps({"u": "bob"}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"u": 1, "t": ["x"]}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"u": "", "t": "x"}).encode()).decode(),
        "é",
        base64.urlsafe_b64encode(b"[" * 3000).decode(),  # nested too deep for the JSON parser
        "A" * 5000,  # longer than any cookie a browser keeps
    ],
)
def test_a_hostile_session_cookie_is_no_session(guard: Guard, value: str) -> None:
    assert guard.signin(request({guard.session_cookie: value})) is None


def test_only_a_session_cookie_this_console_issued_is_a_session(guard: Guard) -> None:
    """The cookie's payload is readable, but a made-up or altered one (another user id, another
    token) or one from a console with another key is no session."""
    genuine = session_cookie(guard)[guard.session_cookie]
    payload, _, mac = genuine.rpartition(".")
    made_up = base64.urlsafe_b64encode(json.dumps({"u": "alice", "t": "forged"}).encode()).decode()
    for value in (made_up, f"{made_up}.{mac}", payload, f"{payload}.", f"{payload}.{mac[:-1]}"):
        assert guard.signin(request({guard.session_cookie: value})) is None
    assert Guard(b"x" * 32, secure=True).signin(request({guard.session_cookie: genuine})) is None
    assert guard.signin(request({guard.session_cookie: genuine})) is not None


def test_a_form_token_works_only_with_the_session_it_was_made_for(guard: Guard) -> None:
    bobs, eves = session_cookie(guard, "bob"), session_cookie(guard, "eve", "other")
    token, fresh = guard.csrf_token(request(bobs))
    assert fresh is None
    assert guard.check_post(request(bobs, origin=ORIGIN, sec_fetch_site="same-origin"), token)
    assert guard.check_post(request(bobs), token)  # an older browser sends neither header
    assert not guard.check_post(request(eves), token)
    assert not guard.check_post(request({}), token)
    assert not guard.check_post(request(bobs), token[:-1] + ("A" if token[-1] != "A" else "B"))
    for missing in (None, "", 42):
        assert not guard.check_post(request(bobs), missing)
    assert not Guard(b"x" * 32, secure=True).check_post(request(bobs), token)  # another console's key


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:7780"},  # same host, other scheme
        {"origin": "https://127.0.0.1:7781"},
        {"sec_fetch_site": "cross-site"},
        {"sec_fetch_site": "same-site"},
    ],
)
def test_a_post_from_another_site_is_refused_even_with_the_right_token(guard: Guard, headers: dict[str, str]) -> None:
    bobs = session_cookie(guard)
    token, _ = guard.csrf_token(request(bobs))
    assert not guard.check_post(request(bobs, **headers), token)


def test_the_sign_in_form_is_bound_to_a_pre_session_cookie(guard: Guard) -> None:
    token, fresh = guard.csrf_token(request())
    assert fresh is not None
    presession = {guard.presession_cookie: fresh}
    assert guard.csrf_token(request(presession)) == (token, None)
    assert guard.check_post(request(presession), token)
    assert not guard.check_post(request({guard.presession_cookie: "another"}), token)
    assert not guard.check_post(request(), token)
    response = Response()
    guard.set_presession(response, fresh)
    header = response.headers["set-cookie"].lower()
    assert header.startswith("__host-cloister-presession=") and "httponly" in header and "samesite=strict" in header


def test_over_plain_http_the_cookies_drop_the_host_prefix_and_secure() -> None:
    guard = Guard(b"k" * 32, secure=False)
    response = Response()
    guard.start_session(response, "bob", "t")
    header = response.headers["set-cookie"].lower()
    assert header.startswith("cloister-session=") and "secure" not in header and "httponly" in header


def test_the_csrf_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = Guard.from_directory(tmp_path / "console", secure=True)
    key = tmp_path / "console" / "csrf.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    again = Guard.from_directory(tmp_path / "console", secure=True)
    bobs = session_cookie(first)
    assert first.csrf_token(request(bobs)) == again.csrf_token(request(bobs))


def _post(app: object, chunks: list[bytes], content_length: int | None = None) -> list[tuple[object, object]]:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b"", "scheme": "http"}
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return [(m.get("status"), m.get("body")) for m in sent]


def _form_app(read: list[int]) -> BodyLimit:
    async def handle(request: Request) -> Response:
        form = await request.form()
        read.append(len(form))
        return PlainTextResponse("read")

    return BodyLimit(Starlette(routes=[Route("/", handle, methods=["POST"])]), 10)


def test_a_body_over_the_limit_is_refused_by_its_length_or_as_it_streams() -> None:
    read: list[int] = []
    app = _form_app(read)
    assert _post(app, [b"a=1", b"&b=2"]) == [(200, None), (None, b"read")]
    assert read == [2]
    declared = _post(app, [b"a=1"], content_length=11)
    assert declared[0] == (413, None) and b"larger than this console accepts (10 bytes)" in declared[1][1]
    assert _post(app, [b"a=1"], content_length=-1)[0] == (413, None)  # not a number
    streamed = _post(app, [b"a=1234", b"&b=567890", b"&c=never read"])
    assert streamed[0] == (413, None) and len(streamed) == 2  # nothing of the application's answer follows
    assert read == [2]  # the handler never got a form
