"""The user's functions and files: what they registered, and forms to register more.

Keys for files come from a file picker and travel only over the console's own TLS connection to
the console, which passes them to the platform over its attested channel and keeps nothing.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cloister.console.kit import PageKit, listed, text_field, whole_number
from cloister.console.link import Participant
from cloister.console.tasks import MAX_SOURCE_BYTES, shown_source
from cloister.errors import CloisterError, InvalidArgumentError
from cloister.model.views import File, Function
from cloister.sdk._files import Crypto, FileHandle, FilesAPI
from cloister.sdk._functions import FunctionHandle, FunctionsAPI

EXECUTORS = ("builtin", "python", "wasm")
SCHEMAS = ("aes-gcm-128", "aes-gcm-256", "teaclave-file-128", "raw")


@dataclass(frozen=True)
class Listed:
    """A function in the user's lists; ``function`` is None when it cannot be read now."""

    id: str
    function: Function | None


class CatalogPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit
        self.functions = kit.as_user(self._functions)
        self.register_function = kit.as_user(self._register_function)
        self.function = kit.as_user(self._function)
        self.files = kit.as_user(self._files)
        self.register_file = kit.as_user(self._register_file)
        self.file = kit.as_user(self._file)

    # --- functions --------------------------------------------------------------------------

    async def _functions(
        self, request: Request, participant: Participant, error: str | None = None, entered: FormData | None = None
    ) -> Response:
        def load() -> tuple[list[Listed], list[Listed]]:
            registered, allowed = FunctionsAPI(participant).list()
            return [_read(h) for h in registered], [_read(h) for h in allowed]

        registered, allowed = await run_in_threadpool(load)
        context: dict[str, object] = {
            "registered": registered,
            "allowed": allowed,
            "executors": EXECUTORS,
            "error": error,
            "entered": entered or {},
        }
        return self._kit.render(request, "functions.html", context, 400 if error else 200, user=participant)

    async def _register_function(self, request: Request, participant: Participant) -> Response:
        form = await self._kit.checked_form(request)
        try:
            executor = text_field(form, "executor")
            if executor not in EXECUTORS:
                raise InvalidArgumentError(f"choose an executor: {', '.join(EXECUTORS)}")
            payload = await _upload(form, "payload")
            if executor != "builtin" and not payload:
                raise InvalidArgumentError(f"a {executor} function needs its code: choose the file")
            quota_text = text_field(form, "usage_quota")
            quota = whole_number(quota_text, 2**31 - 1) if quota_text else None
            if quota_text and quota is None:
                raise InvalidArgumentError("the usage quota is a whole number of tasks, or empty for no limit")
            registered = await run_in_threadpool(
                lambda: FunctionsAPI(participant).register(
                    text_field(form, "name"),
                    executor=executor,
                    description=text_field(form, "description"),
                    payload=payload,
                    arguments=listed(form, "arguments"),
                    inputs=listed(form, "inputs"),
                    outputs=listed(form, "outputs"),
                    public=form.get("public") == "on",
                    allowed_users=listed(form, "allowed_users"),
                    usage_quota=quota,
                )
            )
        except InvalidArgumentError as exc:
            return await self._functions(request, participant, exc.message, form)
        return RedirectResponse(f"/functions/{registered.id}", status_code=303)

    async def _function(self, request: Request, participant: Participant) -> Response:
        function = await run_in_threadpool(FunctionHandle(participant, request.path_params["function_id"]).get)
        context = {"function": function, "source": shown_source(function), "too_long": MAX_SOURCE_BYTES}
        return self._kit.render(request, "function.html", context, user=participant)

    # --- files ------------------------------------------------------------------------------

    async def _files(
        self, request: Request, participant: Participant, error: str | None = None, kind: str = ""
    ) -> Response:
        context = {"schemas": SCHEMAS, "error": error, "error_kind": kind}
        return self._kit.render(request, "files.html", context, 400 if error else 200, user=participant)

    async def _register_file(self, request: Request, participant: Participant) -> Response:
        form = await self._kit.checked_form(request)
        kind = request.path_params["kind"]
        if kind not in ("input", "output"):
            return self._kit.error(request, 404, "Files are inputs or outputs.", participant)
        try:
            url = text_field(form, "url")
            if not url:
                raise InvalidArgumentError("enter the file's URL")
            crypto = _crypto(text_field(form, "schema"), await _upload(form, "key"), text_field(form, "iv"))
            files = FilesAPI(participant)
            if kind == "input":
                cmac = _hex(text_field(form, "cmac"), "the cmac")
                handle = await run_in_threadpool(files.register_input, url, crypto, cmac)
            else:
                handle = await run_in_threadpool(files.register_output, url, crypto)
        except InvalidArgumentError as exc:
            return await self._files(request, participant, exc.message, kind)
        return RedirectResponse(f"/files/{handle.id}", status_code=303)

    async def _file(self, request: Request, participant: Participant) -> Response:
        file_id = (request.query_params.get("id") or request.path_params.get("file_id") or "").strip()
        if not file_id.startswith(("input-", "output-")):
            return self._kit.error(request, 404, "A file ID starts with input- or output-.", participant)
        file: File = await run_in_threadpool(FileHandle(participant, file_id).get)
        return self._kit.render(request, "file.html", {"file": file}, user=participant)


def _read(handle: FunctionHandle) -> Listed:
    try:
        return Listed(handle.id, handle.get())
    except CloisterError as exc:
        if exc.status.name == "UNAUTHENTICATED":
            raise
        return Listed(handle.id, None)


async def _upload(form: FormData, name: str) -> bytes:
    """The bytes of an uploaded file field; empty when no file was chosen."""
    value = form.get(name)
    if not isinstance(value, UploadFile):
        return b""
    return await value.read()


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidArgumentError(f"{what} must be hexadecimal") from None


def _crypto(schema: str, key_file: bytes, iv_text: str) -> Crypto:
    """The file's crypto from its schema, key file (raw bytes, or hex text) and IV (hex; random when
    empty for an output)."""
    if schema not in SCHEMAS:
        raise InvalidArgumentError(f"choose a schema: {', '.join(SCHEMAS)}")
    if schema == "raw":
        return Crypto.raw()
    key = _key_bytes(key_file)
    iv = _hex(iv_text, "the IV") if iv_text else None
    if schema == "teaclave-file-128":
        return Crypto.teaclave_file_128(key)
    return Crypto.aes_gcm_128(key, iv) if schema == "aes-gcm-128" else Crypto.aes_gcm_256(key, iv)


def _key_bytes(key_file: bytes) -> bytes:
    if not key_file:
        raise InvalidArgumentError("choose the key file")
    if len(key_file) in (16, 32):
        return key_file
    try:
        text = key_file.decode("ascii").strip()
        return binascii.unhexlify(text)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise InvalidArgumentError("the key file must hold the key's 16 or 32 bytes, raw or in hexadecimal") from None
