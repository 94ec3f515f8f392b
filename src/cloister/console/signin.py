"""Signing in and out."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cloister.console.kit import FORM_EXPIRED, MAX_FIELD_BYTES, PageKit, browser_address, http_status
from cloister.errors import AuthenticationError, CloisterError

WRONG_CREDENTIALS = "The user ID or password is wrong, or sign-ins for this user are paused for a while."


class SigninPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/inbox" if self._kit.guard.signin(request) else "/sign-in", status_code=303)

    async def form(self, request: Request) -> Response:
        return self._kit.render(request, "sign_in.html", {})

    async def sign_in(self, request: Request) -> Response:
        kit = self._kit
        if not kit.guard.same_site(request):
            return kit.error(request, 403, FORM_EXPIRED)
        form = await request.form(max_part_size=MAX_FIELD_BYTES, max_files=0)  # no uploads here
        if not kit.guard.check_post(request, form.get("csrf")):
            return kit.error(request, 403, FORM_EXPIRED)
        user_id, password = form.get("user_id"), form.get("password")
        if not isinstance(user_id, str) or not isinstance(password, str) or not user_id or not password:
            shown = user_id if isinstance(user_id, str) else ""
            return kit.render(
                request, "sign_in.html", {"user_id": shown, "error": "Enter your user ID and password."}, 400
            )
        try:
            token = await run_in_threadpool(kit.link.login, user_id, password, browser_address(request))
        except AuthenticationError:
            return kit.render(request, "sign_in.html", {"user_id": user_id, "error": WRONG_CREDENTIALS}, 401)
        except CloisterError as exc:
            return kit.render(request, "sign_in.html", {"user_id": user_id, "error": exc.message}, http_status(exc))
        response = RedirectResponse("/inbox", status_code=303)
        kit.guard.start_session(response, user_id, token)
        return response

    async def sign_out(self, request: Request) -> Response:
        if not self._kit.guard.same_site(request):
            return self._kit.error(request, 403, FORM_EXPIRED)
        form = await request.form(max_part_size=MAX_FIELD_BYTES, max_files=0)  # no uploads here
        if not self._kit.guard.check_post(request, form.get("csrf")):
            return self._kit.error(request, 403, FORM_EXPIRED)
        response = RedirectResponse("/sign-in", status_code=303)
        self._kit.guard.end_session(response)
        return response
