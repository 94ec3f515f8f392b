"""Errors across the wire: ``CloisterError`` → status on servers, status → error on clients.

Only :func:`status_and_message` decides what a failed call answers. A ``CloisterError`` travels as its
own status and message; anything else is a bug, answered as INTERNAL with an incident id that
points at the logged traceback, so no internal detail reaches the caller.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from cloister.errors import CloisterError, StatusCode, error_for_status

logger = logging.getLogger(__name__)


def grpc_code(status: StatusCode) -> grpc.StatusCode:
    return _TO_GRPC[status]


_TO_GRPC = {StatusCode(code.value[0]): code for code in grpc.StatusCode}


def status_and_message(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, CloisterError):
        return grpc_code(exc.status), exc.message
    incident = uuid.uuid4().hex[:12]
    logger.error("unexpected error in %s (incident %s)", method, incident, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (incident {incident})"


def from_rpc_error(exc: grpc.RpcError) -> CloisterError:
    """The ``CloisterError`` a server raised, rebuilt from the status it sent."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else None
    status = code.value[0] if code is not None else StatusCode.UNKNOWN
    message = details or (code.name.lower().replace("_", " ") if code else "rpc failed")
    return error_for_status(status, message)
