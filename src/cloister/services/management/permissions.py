"""Every object-level authorization decision of management, as Teaclave hard-codes them (§6-§8).

Each check raises :class:`AccessDeniedError` ("permission denied") and returns nothing else
(GetFunction answers which view the caller may see). They are kept together, apart from the
domain logic, because a later change moves these decisions to the access control service.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import NoReturn

from cloister.errors import AccessDeniedError
from cloister.model.functions import Function
from cloister.model.roles import Role
from cloister.model.tasks import TaskState


def _deny() -> NoReturn:
    raise AccessDeniedError("permission denied")


class FunctionView(enum.Enum):
    FULL = "full"
    REDACTED = "redacted"
    """Payload and allowlist hidden: for a user who is only on the allowlist."""


def function_view(function: Function, user_id: str, role: Role) -> FunctionView:
    """GetFunction (§6.4): public, admin or owner see all; allow-listed user ids see a redacted copy."""
    if function.public or role.is_admin or function.owner == user_id:
        return FunctionView.FULL
    if user_id in function.user_allowlist:
        return FunctionView.REDACTED
    _deny()


def check_read_usage_stats(function: Function, user_id: str, role: Role) -> None:
    """GetFunctionUsageStats (§6.4); the owner of a private function is not let in [QUIRK]."""
    if not (function.public or role.is_admin or user_id in function.user_allowlist):
        _deny()


def check_list_functions(target_user_id: str, user_id: str, role: Role) -> None:
    if not (role.is_admin or target_user_id == user_id):
        _deny()


def check_function_owner(function: Function, user_id: str) -> None:
    """UpdateFunction and DeleteFunction: the owner only, admins included (§6.3, §6.5)."""
    if function.owner != user_id:
        _deny()


def check_disable_function(function: Function, user_id: str, role: Role) -> None:
    if not (role.is_admin or function.owner == user_id):
        _deny()


def check_create_task(function: Function, role: Role) -> None:
    """CreateTask (§8.2 step 2): data owners by *attribute* against the allowlist [QUIRK]."""
    if role.is_admin:
        return
    if role.is_data_owner and (function.public or role.attribute in function.user_allowlist):
        return
    _deny()


def check_file_owner(owner: Collection[str], user_id: str) -> None:
    """Reading a file, or registering an output as an input: any owner (§7.1)."""
    if user_id not in owner:
        _deny()


def check_file_sole_owner(owner: Collection[str], user_id: str) -> None:
    """UpdateInputFile/UpdateOutputFile: the owners must be exactly the caller."""
    if set(owner) != {user_id}:
        _deny()


def check_fusion_owners(owner_list: Collection[str], user_id: str) -> None:
    """RegisterFusionOutput: at least two entries (duplicates counted), the caller among them."""
    if len(owner_list) <= 1 or user_id not in owner_list:
        _deny()


def check_task_participant(task: TaskState, user_id: str) -> None:
    """GetTask, WaitTask, AssignData, ApproveTask: participants only, admins included (§8.7)."""
    if user_id not in task.participants:
        _deny()


def check_task_creator(task: TaskState, user_id: str) -> None:
    """InvokeTask (§8.5)."""
    if task.creator != user_id:
        _deny()


def check_cancel_task(task: TaskState, user_id: str, role: Role) -> None:
    if not (role.is_admin or task.creator == user_id):
        _deny()


def check_assign_data(
    user_id: str,
    name: str,
    file_owner: frozenset[str],
    declared: Mapping[str, frozenset[str]],
    assigned: Collection[str],
) -> None:
    """AssignData (§8.3): the caller owns the file, ``name`` is declared with exactly the file's
    owners, and nothing is assigned to ``name`` yet."""
    if user_id not in file_owner or declared.get(name) != file_owner or name in assigned:
        _deny()


def check_query_audit_logs(role: Role) -> None:
    if not role.is_admin:
        _deny()
