"""What every console page shares: rendering with the page's CSRF token, the signed-in user's
calls, and how platform errors become pages.

Handlers read what they show with the signed-in user's own calls (blocking SDK calls, run on a
worker thread), so the platform's access control decides what each user sees.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from markupsafe import Markup, escape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from cloister.console.guard import Guard
from cloister.console.link import Participant, PlatformLink
from cloister.errors import AuthenticationError, CloisterError, StatusCode

UserPage = Callable[[Request, Participant], Awaitable[Response]]

_HTTP_STATUS = {
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.FAILED_PRECONDITION: 409,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DEADLINE_EXCEEDED: 504,
}
MAX_FIELD_BYTES = 64 * 1024
"""The largest text field a form takes (files are bounded by the body limit only)."""
FORM_EXPIRED = "This form was not sent from this console's own page (or it expired). Reload the page and try again."


class FormRefusedError(Exception):
    """A POST without the page's CSRF token, or from another site."""


class PageKit:
    """The console's shared parts, handed to every group of pages."""

    def __init__(self, link: PlatformLink, guard: Guard, templates: Jinja2Templates, max_upload_bytes: int) -> None:
        self.link = link
        self.guard = guard
        self.templates = templates
        self.max_upload_bytes = max_upload_bytes
        """The largest file a form may upload: the platform's own limit on a request."""

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        status_code: int = 200,
        *,
        user: Participant | None = None,
    ) -> Response:
        csrf, presession = self.guard.csrf_token(request)
        values = {"user_id": "", **context, "me": user, "csrf": csrf}
        response = self.templates.TemplateResponse(request, template, values, status_code=status_code)
        if presession is not None:
            self.guard.set_presession(response, presession)
        return response

    def error(self, request: Request, status_code: int, message: str, user: Participant | None = None) -> Response:
        return self.render(request, "error.html", {"message": message}, status_code, user=user)

    async def checked_form(self, request: Request) -> FormData:
        """The POSTed form, once its CSRF token and origin are checked.

        Raises:
            FormRefusedError: they are not this console's.
        """
        if not self.guard.same_site(request):
            raise FormRefusedError  # before the body is read
        form = await request.form(max_part_size=MAX_FIELD_BYTES)
        if not self.guard.check_post(request, form.get("csrf")):
            raise FormRefusedError
        return form

    def as_user(self, page: UserPage) -> Callable[[Request], Awaitable[Response]]:
        """``page`` for the signed-in user: to sign in when there is none or their token is refused;
        a platform error as a page with the matching HTTP status."""

        async def handle(request: Request) -> Response:
            signin = self.guard.signin(request)
            if signin is None:
                return RedirectResponse("/sign-in", status_code=303)
            participant = self.link.as_user(signin.user_id, signin.token, browser_address(request))
            try:
                return await page(request, participant)
            except AuthenticationError:
                response = RedirectResponse("/sign-in", status_code=303)
                self.guard.end_session(response)
                return response
            except FormRefusedError:
                return self.error(request, 403, FORM_EXPIRED, participant)
            except CloisterError as exc:
                return self.error(request, http_status(exc), exc.message, participant)

        return handle


def browser_address(request: Request) -> str:
    """The address the browser's connection came from (a proxy's, behind one: no header is trusted)."""
    return request.client.host if request.client is not None else ""


_HIDING = frozenset({"Cf", "Zl", "Zp"})


def reveal_hidden(value: object) -> Markup:
    """``value`` as escaped text in which every invisible formatting character (bidirectional
    overrides and isolates, zero-width characters: category Cf), line and paragraph separator
    and control character other than tab and line ends is shown as a marked ``U+XXXX``: what an
    approver reads must be what runs, with no reordered or hidden text."""
    shown = []
    for char in str(value):
        category = unicodedata.category(char)
        if category in _HIDING or (category == "Cc" and char not in "\t\n\r"):
            code = f"U+{ord(char):04X}"
            name = unicodedata.name(char, "control character")
            shown.append(Markup('<mark class="hidden-char" title="{}">{}</mark>').format(name, code))
        else:
            shown.append(escape(char))
    return Markup("").join(shown)


def http_status(exc: CloisterError) -> int:
    return _HTTP_STATUS.get(exc.status, 500)


def text_field(form: FormData, name: str) -> str:
    """A text field's value, stripped; empty when missing or not text (a file where text belongs)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def whole_number(text: str, most: int) -> int | None:
    """``text`` as a whole number from 0 to ``most`` (ASCII digits only); None when it is not one."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(most)):
        return None
    value = int(text)
    return value if value <= most else None


def listed(form: FormData, name: str) -> list[str]:
    """A comma-separated field as a list of its non-empty items."""
    return [item.strip() for item in text_field(form, name).split(",") if item.strip()]
