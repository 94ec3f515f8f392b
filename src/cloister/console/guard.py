"""What keeps one browser's session from being used by another site: the session cookie, CSRF
tokens on every form and the headers every response carries.

The session cookie holds the user's id and Cloister token, HttpOnly and SameSite=Strict, and over
HTTPS Secure under the ``__Host-`` prefix (so no other host or path can set it). It is signed
with the console's key: the frontend checks the token on every call anyway, but a cookie the
console did not issue is no session at all, so a made-up one gets no form body read, no live
stream counted against a user, and no user id the platform never accepted passed on.

Every form carries a CSRF token, an HMAC (under a key kept in the state directory) of the cookie it
is bound to: the session cookie once signed in, before that a random pre-session cookie. A POST
whose token does not match, or whose ``Origin`` or ``Sec-Fetch-Site`` names another site, is
refused before anything is done.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SESSION_LIFETIME_SECONDS = 8 * 3600
"""How long the browser keeps the session cookie; the token may end sooner (its own lifetime, a
change to the user), and then the console asks to sign in again."""
_KEY_FILE = "csrf.key"
MAX_COOKIE_CHARS = 4096
"""A session cookie longer than browsers keep is no session (and is not parsed)."""


@dataclass(frozen=True)
class Signin:
    """The signed-in user a request's session cookie names."""

    user_id: str
    token: str


class Guard:
    """Cookies and CSRF tokens of one console (``secure``: it is served over HTTPS)."""

    def __init__(self, key: bytes, *, secure: bool) -> None:
        self._key = key
        self.secure = secure
        prefix = "__Host-" if secure else ""
        self.session_cookie = f"{prefix}cloister-session"
        self.presession_cookie = f"{prefix}cloister-presession"

    @classmethod
    def from_directory(cls, directory: Path, *, secure: bool) -> Guard:
        """The guard whose CSRF key is kept in ``directory`` (made once, 0600), so forms rendered
        before a console restart still post after it."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / _KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes()
        else:
            key = secrets.token_bytes(32)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
        return cls(key, secure=secure)

    # --- the session -----------------------------------------------------------------------

    def signin(self, request: Request) -> Signin | None:
        value = request.cookies.get(self.session_cookie)
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        payload, _, mac = value.rpartition(".")
        if not hmac.compare_digest(self._mac(b"session-cookie", payload).encode(), mac.encode("utf-8", "replace")):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
            user_id, token = data["u"], data["t"]
        except (ValueError, KeyError, TypeError, UnicodeEncodeError, binascii.Error, RecursionError):
            return None
        if not isinstance(user_id, str) or not isinstance(token, str) or not user_id or not token:
            return None
        return Signin(user_id, token)

    def start_session(self, response: Response, user_id: str, token: str) -> None:
        payload = base64.urlsafe_b64encode(json.dumps({"u": user_id, "t": token}).encode()).decode("ascii")
        value = f"{payload}.{self._mac(b'session-cookie', payload)}"
        self._set(response, self.session_cookie, value, SESSION_LIFETIME_SECONDS)
        response.delete_cookie(self.presession_cookie, secure=self.secure, httponly=True, samesite="strict")

    def end_session(self, response: Response) -> None:
        response.delete_cookie(self.session_cookie, secure=self.secure, httponly=True, samesite="strict")

    # --- CSRF -------------------------------------------------------------------------------

    def csrf_token(self, request: Request) -> tuple[str, str | None]:
        """The token this page's forms carry, and a new pre-session cookie value to set when the
        request has neither a session nor a pre-session cookie (:meth:`set_presession`)."""
        session = request.cookies.get(self.session_cookie)
        if session:
            return self._mac(b"session", session), None
        presession = request.cookies.get(self.presession_cookie)
        fresh = None
        if not presession:
            presession = fresh = secrets.token_urlsafe(32)
        return self._mac(b"presession", presession), fresh

    def set_presession(self, response: Response, value: str) -> None:
        self._set(response, self.presession_cookie, value, 3600)

    @staticmethod
    def same_site(request: Request) -> bool:
        """Whether a request's ``Sec-Fetch-Site`` and ``Origin`` headers, when present, say it
        comes from this console's own pages. Checked before a form is read."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        return origin is None or origin == _own_origin(request)

    def check_post(self, request: Request, form_token: object) -> bool:
        """Whether a POST may be acted on: same-site by its headers, and its form's token matches
        the session it is bound to."""
        if not self.same_site(request):
            return False
        if not isinstance(form_token, str) or not form_token:
            return False
        session = request.cookies.get(self.session_cookie)
        if session:
            expected = self._mac(b"session", session)
        else:
            presession = request.cookies.get(self.presession_cookie)
            if not presession:
                return False
            expected = self._mac(b"presession", presession)
        return hmac.compare_digest(expected.encode(), form_token.encode("utf-8", "replace"))

    def _mac(self, purpose: bytes, value: str) -> str:
        digest = hmac.new(self._key, purpose + b"\0" + value.encode("utf-8", "replace"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="strict"
        )


def _own_origin(request: Request) -> str:
    url = request.url
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = "" if url.port in (None, default) else f":{url.port}"
    return f"{url.scheme}://{url.hostname}{port}"


class SecurityHeaders:
    """ASGI middleware: every response gets the console's Content-Security-Policy and friends, and
    pages are never cached (they show other parties' task details)."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self._app = app
        self._secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"  # "no-referrer" would make forms send "Origin: null"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers.setdefault("Cache-Control", "no-store")
                if self._secure:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self._app(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413, by its
    Content-Length before it is read or, when it is sent chunked, as soon as it passes the limit
    (the application then sees the client go away). Form parsing would otherwise spool any upload
    to disk."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._limit):
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._limit:
                    refused = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:
                return  # answered already: whatever the application makes of the disconnect is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted, watched)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Send) -> None:
        body = f"The request is larger than this console accepts ({self._limit} bytes).".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
