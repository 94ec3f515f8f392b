"""Audit entries for the authentication API: who called what, from where, and how it went.

Entries name the user id the caller gave (for a login, the id being logged in to), never a
password or token, and are shipped to management's log like the frontend's.
"""

from __future__ import annotations

from typing import Any

import grpc

from cloister.errors import CloisterError
from cloister.rpc.audit_trail import AuditTrail, audit_user, client_ip
from cloister.rpc.metadata import Caller
from cloister.services.authentication.servicer import ApiServicer

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
        caller = Caller.from_metadata(context.invocation_metadata())
        user_id = request.id if api == "user_login" else caller.user_id or ""
        user = audit_user(user_id[:256])
        ip = client_ip(context.peer() or "")
        try:
            response = await original(request, context)
        except CloisterError as exc:
            trail.record(ip, user, f"{api}: {exc.message}", False)
            raise
        trail.record(ip, user, api, True)
        return response

    return call
