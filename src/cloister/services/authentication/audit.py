"""Audit entries for the authentication API: who called what, from where, and how it went.

Entries name the caller once their token has been verified (for a login, the id being logged
in to), and no user when it was not, never a password or token; they are shipped to
management's log like the frontend's.
"""

from __future__ import annotations

from typing import Any

import grpc

from cloister.errors import CloisterError
from cloister.rpc.audit_trail import AuditTrail, audit_user
from cloister.rpc.forwarding import caller_ip
from cloister.services.authentication.servicer import ApiServicer, verified_caller

API_NAMES = {
    "UserRegister": "user_register",
    "UserUpdate": "user_update",
    "UserLogin": "user_login",
    "UserChangePassword": "user_change_password",
    "ResetUserPassword": "reset_user_password",
    "DeleteUser": "delete_user",
    "ListUsers": "list_users",
}


def audited(servicer: ApiServicer, trail: AuditTrail) -> ApiServicer:
    """``servicer`` with every API method recording an entry in ``trail``."""
    for method, api in API_NAMES.items():
        setattr(servicer, method, _recording(getattr(servicer, method), api, trail))
    return servicer


def _recording(original: Any, api: str, trail: AuditTrail) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        verified: list[str] = []
        token = verified_caller.set(verified)
        ip = caller_ip(context)
        try:
            response = await original(request, context)
        except CloisterError as exc:
            await trail.record(ip, _user(api, request, verified), f"{api}: {exc.message}", False)
            raise
        finally:
            verified_caller.reset(token)
        await trail.record(ip, _user(api, request, verified), api, True)
        return response

    return call


def _user(api: str, request: Any, verified: list[str]) -> str:
    if api == "user_login":
        return audit_user(request.id[:256])
    return audit_user(verified[0]) if verified else ""  # as the frontend records a caller it could not authenticate
