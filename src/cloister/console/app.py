"""The console as an ASGI application (Starlette): routes, templates, static files, headers."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from cloister.console.audit import AuditPages
from cloister.console.catalog import CatalogPages
from cloister.console.guard import BodyLimit, Guard, SecurityHeaders
from cloister.console.kit import PageKit, reveal_hidden
from cloister.console.link import PlatformLink
from cloister.console.signin import SigninPages
from cloister.console.tasks import TaskPages

_HERE = Path(__file__).parent
FORM_OVERHEAD_BYTES = 64 * 1024
"""What a form may carry besides its largest upload: its other fields and multipart framing."""


def make_app(link: PlatformLink, guard: Guard, max_upload_bytes: int) -> SecurityHeaders:
    """The console; ``max_upload_bytes``: the largest file a form takes (the platform's request limit)."""
    environment = Environment(
        loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
    )
    environment.filters["visible"] = reveal_hidden
    kit = PageKit(link, guard, Jinja2Templates(env=environment), max_upload_bytes)
    signin, tasks, catalog, audit = SigninPages(kit), TaskPages(kit), CatalogPages(kit), AuditPages(kit)
    app = Starlette(
        routes=[
            Route("/", signin.home),
            Route("/sign-in", signin.form, methods=["GET"]),
            Route("/sign-in", signin.sign_in, methods=["POST"]),
            Route("/sign-out", signin.sign_out, methods=["POST"]),
            Route("/inbox", tasks.inbox),
            Route("/tasks", tasks.list),
            Route("/tasks/{task_id}", tasks.task),
            Route("/tasks/{task_id}/events", tasks.events, methods=["GET"]),
            Route("/tasks/{task_id}/receipt", tasks.receipt, methods=["GET"]),
            Route("/tasks/{task_id}/manifest", tasks.receipt, methods=["GET"]),
            Route("/tasks/{task_id}/{action}", tasks.act, methods=["POST"]),
            Route("/functions", catalog.functions, methods=["GET"]),
            Route("/functions", catalog.register_function, methods=["POST"]),
            Route("/functions/{function_id}", catalog.function),
            Route("/files", catalog.files, methods=["GET"]),
            Route("/files/find", catalog.file),
            Route("/files/{kind}", catalog.register_file, methods=["POST"]),
            Route("/files/{file_id}", catalog.file, methods=["GET"]),
            Route("/audit", audit.search),
            Route("/audit/export", audit.export),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ],
    )
    return SecurityHeaders(BodyLimit(app, max_upload_bytes + FORM_OVERHEAD_BYTES), secure=guard.secure)
