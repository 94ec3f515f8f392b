"""What the file agent reads from a URL: its basename as Teaclave derives it, its normalized path, and a safe way to
show it (reference §11.1 step 2).

Teaclave parses URLs with Rust's ``url`` crate, which percent-encodes a few characters and resolves ``.``/``..``
segments (``%2e`` counts as a dot) before anything looks at the path. ``urllib.parse`` does neither, so the parts of
that parser the basename and the local paths depend on are redone here. Presigned URLs carry credentials in their
query, so :func:`display_url` is the only form of a URL that may appear in a message or a log.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from cloister.errors import TransferError

SPECIAL_SCHEMES = frozenset({"http", "https", "file", "ftp", "ws", "wss"})
"""Schemes whose paths the URL standard treats specially (``\\`` separates segments)."""

# rust-url's PATH set: C0 controls, DEL, space and " # < > ? ` { } are percent-encoded; so is non-ASCII (as UTF-8).
_PATH_ENCODED = frozenset(' "#<>?`{}')
_SINGLE_DOTS = frozenset({".", "%2e"})
_DOUBLE_DOTS = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
_DISPLAY_LIMIT = 300


def split_url(url: str) -> SplitResult:
    """``urlsplit`` that reports an unparseable URL as a :class:`TransferError` naming no part of it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TransferError("the URL cannot be parsed") from None
    if not parts.scheme:
        raise TransferError(f"the URL has no scheme: {display_url(url)}")
    return parts


def _encode(text: str, encoded: frozenset[str]) -> str:
    out = []
    for char in text:
        code = ord(char)
        if code < 0x20 or code == 0x7F or char in encoded:
            out.append(f"%{code:02X}")
        elif code > 0x7F:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            out.append(char)
    return "".join(out)


def normalized_path(parts: SplitResult) -> str:
    """The URL's path as rust-url's ``Url::path()`` returns it: percent-encoded, dot segments resolved."""
    scheme = parts.scheme.lower()
    path = parts.path
    if not path.startswith("/") and not parts.netloc and scheme not in SPECIAL_SCHEMES:
        # An opaque path (``data:...``): only control characters and non-ASCII are encoded; no dot segments.
        return _encode(path, frozenset())
    if scheme in SPECIAL_SCHEMES:
        path = path.replace("\\", "/")
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    output: list[str] = []
    for index, raw in enumerate(segments):
        segment = _encode(raw, _PATH_ENCODED)
        last = index == len(segments) - 1
        if segment.lower() in _DOUBLE_DOTS:
            if output:
                output.pop()
            if last:
                output.append("")
        elif segment.lower() in _SINGLE_DOTS:
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def _file_name(path: str) -> str | None:
    """Rust's ``Path::file_name``: the last component, ignoring trailing ``/`` and ``.``; none for ``..`` or root."""
    components = [part for part in path.split("/") if part not in ("", ".")]
    if not components or components[-1] == "..":
        return None
    return components[-1]


def url_basename(url: str) -> str:
    """The local file name Teaclave gives the file behind ``url``: the path's last segment, still percent-encoded.

    A trailing ``/`` is ignored; a URL whose path is just ``/`` has no name. For a
    ``data:text/plain;base64,XXX`` URL the name is the text after the last ``/``, e.g. ``plain;base64,XXX``.

    Raises:
        TransferError: ``Cannot get filename from url: ...`` when the path has no last segment.
    """
    name = _file_name(normalized_path(split_url(url)))
    if name is None:
        raise TransferError(f"Cannot get filename from url: {display_url(url)}")
    return name


_MEDIA_TYPE = re.compile(r"([A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+)?(;[A-Za-z0-9.+-]+(=[A-Za-z0-9.+-]+)?)*")
"""A data URL's media type and parameters as shown; anything else there may be its payload."""


def display_url(url: str) -> str:
    """``url`` without its query, fragment, user name and password, and with a data URL's payload left out.

    Use this, never the URL itself, in messages and logs: a presigned URL's query is a credential.
    """
    if not url:
        return "<empty URL>"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    scheme = parts.scheme.lower()
    # A malformed URL (``https:/user:password@host``) keeps its user name and password in the
    # path: whatever comes before an ``@`` is never shown.
    path = parts.path.rpartition("@")[2]
    if scheme == "data":
        media_type, comma, _ = parts.path.partition(",")
        shown = media_type if comma and _MEDIA_TYPE.fullmatch(media_type) else ""
        text = f"data:{shown},..." if shown else "data:..."
    elif not scheme:
        text = path
    elif url[len(scheme) + 1 :].startswith("//"):
        text = f"{scheme}://{parts.netloc.rpartition('@')[2]}{path}"
    else:
        text = f"{scheme}:{path}"
    text = _encode(text, frozenset())
    if len(text) > _DISPLAY_LIMIT:
        text = text[: _DISPLAY_LIMIT - 3] + "..."
    return text


def display_host(parts: SplitResult) -> str:
    """``host[:port]`` of a URL, without user name or password."""
    return parts.netloc.rpartition("@")[2] or "<no host>"
