"""Which URLs the data plane can read and write, checked when a file is registered.

Teaclave took any URL at registration and failed the task that used it (``Scheme not supported``,
an unparseable URL). A file's URL is refused here instead, when it is registered or updated, for
the mistakes that need no network to see: no scheme (a relative URL), a scheme the file agent
does not have, an output at a ``data:`` URL, no host, a malformed ``data:``, ``fusion:`` or
``file:`` URL. The checks are the file agent's own parsers, so what passes here is what a transfer
will try. Whether the host answers, or may be reached at all (``[execution] allowed_networks``,
``file_roots``), is known only to the execution service, when the task runs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cloister.errors import InvalidArgumentError, InvalidChoiceError, TransferError, quoted
from cloister.file_agent.local import decode_data_url, file_url_path, fusion_segments
from cloister.file_agent.urls import display_url

READ_SCHEMES = ("http", "https", "data", "fusion", "file")
"""Where an input may come from. An S3 object is read through a presigned ``https`` URL."""
WRITE_SCHEMES = ("http", "https", "fusion", "file")
"""Where an output may go: a ``data:`` URL holds its bytes and cannot be written."""
MAX_URL_CHARS = 8192

_HINTS = {
    "s3": "an S3 object is reached by a presigned https URL",
    "data": "a data URL can be read, not written",
}


def check_url(url: str, *, output: bool, field: str = "url") -> str:
    """``url`` unchanged, if the file agent could read it (an input) or write it (``output``).

    Messages show the URL as :func:`~cloister.file_agent.urls.display_url` does: never its
    query, password or a data URL's contents, since a presigned URL's query is a credential and
    the frontend's audit log records refusals.

    Raises:
        InvalidChoiceError: its scheme is not one of the schemes the direction supports.
        InvalidArgumentError: it is empty, too long, relative or malformed for its scheme.
    """
    schemes = WRITE_SCHEMES if output else READ_SCHEMES
    give = "give an absolute URL with a scheme, one of: " + ", ".join(schemes)
    if not url:
        raise InvalidArgumentError(f"{field} is empty; {give}")
    if len(url) > MAX_URL_CHARS:
        raise InvalidArgumentError(f"{field} is {len(url)} characters long, over the limit of {MAX_URL_CHARS}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidArgumentError(f"{field} {quoted(display_url(url))} cannot be parsed as a URL") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidArgumentError(f"{field} {quoted(display_url(url))} is relative; {give}")
    if scheme not in schemes:
        raise InvalidChoiceError(f"{field} scheme", scheme, schemes, hint=_HINTS.get(scheme, ""))
    shown = quoted(display_url(url))
    try:
        if scheme in ("http", "https"):
            if not parts.hostname:
                raise TransferError("it names no host")
            _port = parts.port  # raises ValueError for a port that is no number or out of range
        elif scheme == "data":
            decode_data_url(parts, MAX_URL_CHARS)
        elif scheme == "fusion":
            fusion_segments(parts)
        elif scheme == "file":
            file_url_path(parts)
    except TransferError as exc:
        raise InvalidArgumentError(f"{field} {shown} cannot be used: {exc.message}") from None
    except ValueError:
        raise InvalidArgumentError(f"{field} {shown} cannot be used: its port is malformed") from None
    return url
