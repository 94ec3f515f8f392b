"""The vocabulary of authorization: who asks, to do what, to which object.

Management (where requests are enforced) describes each request in these terms; the access
control service (where they are decided) evaluates its policy over them. The attribute names
below are the names the policy's rules use (``r.sub.id``, ``r.obj.owner``), so they are
defined once, here. Every collection is a set of user ids.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cloister.model.functions import Function
from cloister.model.roles import Role
from cloister.model.tasks import TaskState

AttributeValue = str | int | bool | None | frozenset[str]


class Action(enum.StrEnum):
    """Everything management asks the access control service before doing it."""

    FUNCTION_READ = "function.read"
    """GetFunction, the whole record."""
    FUNCTION_READ_REDACTED = "function.read_redacted"
    """GetFunction without payload and allowlist, asked when ``function.read`` is denied."""
    FUNCTION_READ_USAGE = "function.read_usage"
    FUNCTION_LIST = "function.list"
    """ListFunctions of user ``r.obj.user_id``."""
    FUNCTION_LIST_ALL = "function.list_all"
    """ListFunctions answers every stored function as allowed."""
    FUNCTION_UPDATE = "function.update"
    FUNCTION_DELETE = "function.delete"
    FUNCTION_DISABLE = "function.disable"
    FUNCTION_SET_REQUIREMENTS = "function.set_requirements"
    FUNCTION_INVOKE = "function.invoke"
    """Count one more use of the function: its quota (``r.obj.use_numbers`` so far)."""
    FILE_REGISTER = "file.register"
    FILE_REGISTER_FUSION = "file.register_fusion"
    FILE_READ = "file.read"
    FILE_UPDATE = "file.update"
    FILE_DERIVE = "file.derive"
    """RegisterInputFromOutput: make an input of a written output."""
    TASK_CREATE = "task.create"
    """CreateTask with the function ``r.obj``."""
    TASK_READ = "task.read"
    """GetTask and WaitTask."""
    TASK_ASSIGN = "task.assign"
    """AssignData to the task at all; each file is then asked as ``task.assign_file``."""
    TASK_ASSIGN_FILE = "task.assign_file"
    TASK_APPROVE = "task.approve"
    TASK_INVOKE = "task.invoke"
    TASK_STAGE = "task.stage"
    """Hand the task to the scheduler: its data owners and approvals."""
    TASK_CANCEL = "task.cancel"
    TASK_REJECT = "task.reject"
    """RejectTask: a participant declines the task before it is invoked (Cloister's)."""
    AUDIT_QUERY = "audit.query"
    USER_REGISTER = "user.register"
    """UserRegister: ``r.obj`` is the new user, with the role asked for."""
    USER_UPDATE = "user.update"
    """UserUpdate: the target's current role, and the one asked for as ``new_role``/``new_attribute``."""
    USER_DELETE = "user.delete"
    USER_RESET_PASSWORD = "user.reset_password"  # noqa: S105 - an action name
    USER_CHANGE_PASSWORD = "user.change_password"  # noqa: S105 - an action name
    """UserChangePassword, always of the caller's own account (``r.obj.self``)."""
    USER_LIST = "user.list"
    """ListUsers of the organisation ``r.obj.organisation`` (the request's ``id``)."""
    USER_LIST_ROLE = "user.list_role"
    """Whether ListUsers shows the users whose role is ``r.obj.role``/``r.obj.attribute``."""


@dataclass(frozen=True)
class Subject:
    """The caller: ``r.sub.id``, ``r.sub.role`` (e.g. ``DataOwner``) and ``r.sub.attribute``."""

    user_id: str
    role: Role

    def attributes(self) -> dict[str, AttributeValue]:
        return {"id": self.user_id, "role": self.role.kind.value, "attribute": self.role.attribute}


@dataclass(frozen=True)
class Query:
    """One decision to make: may the subject take ``action`` on the object described by ``attributes``."""

    action: str
    """An :class:`Action`; the access control service also receives ones it does not know, and denies them."""
    resource_id: str
    """Names the object in the audit log; the policy sees only ``attributes``."""
    attributes: Mapping[str, AttributeValue]


def function_query(action: Action, function: Function, use_numbers: int | None = None) -> Query:
    attributes: dict[str, AttributeValue] = {
        "id": function.external_id,
        "name": function.name,
        "owner": function.owner,
        "public": function.public,
        "user_allowlist": frozenset(function.user_allowlist),
        "usage_quota": function.usage_quota,
        "disabled": function.disabled,
        "executor_type": function.executor_type,
    }
    if use_numbers is not None:
        attributes["use_numbers"] = use_numbers
    return Query(action, function.external_id, attributes)


def user_query(action: Action, user_id: str) -> Query:
    """An action on a user's own things, such as the list of their functions."""
    return Query(action, f"user {user_id}", {"user_id": user_id})


def account_query(action: Action, subject: Subject, target_id: str, role: Role, new_role: Role | None = None) -> Query:
    """An action on the user ``target_id``, whose role is ``role`` (``Invalid`` when there is no such user)."""
    attributes: dict[str, AttributeValue] = {
        "id": target_id,
        "self": target_id == subject.user_id,
        "role": role.kind.value,
        "attribute": role.attribute,
    }
    if new_role is not None:
        attributes["new_role"] = new_role.kind.value
        attributes["new_attribute"] = new_role.attribute
    return Query(action, f"user {target_id}", attributes)


def user_list_query(organisation: str) -> Query:
    return Query(Action.USER_LIST, f"users of {organisation}", {"organisation": organisation})


def listed_role_query(role: Role) -> Query:
    """One question per distinct role among the users, not per user: listings stay cheap to decide and audit."""
    return Query(
        Action.USER_LIST_ROLE, f"users with role {role}", {"role": role.kind.value, "attribute": role.attribute}
    )


def file_query(action: Action, file_id: str, owner: Collection[str], **extra: AttributeValue) -> Query:
    return Query(action, file_id, {"id": file_id, "owner": frozenset(owner), **extra})


def task_query(action: Action, task: TaskState) -> Query:
    data_owners: set[str] = set()
    for file in (*task.assigned_inputs.values(), *task.assigned_outputs.values()):
        data_owners |= file.owner
    attributes: dict[str, AttributeValue] = {
        "id": task.external_id,
        "creator": task.creator,
        "function_id": str(task.function_id),
        "function_owner": task.function_owner,
        "participants": task.participants,
        "approved_users": task.approved_users,
        "data_owners": frozenset(data_owners),
        "status": task.status.name,
    }
    return Query(action, task.external_id, attributes)


def assignment_query(
    task: TaskState, kind: str, name: str, file_id: str, owner: frozenset[str], already_assigned: bool
) -> Query:
    """Assigning the file ``file_id`` to the task's ``kind`` (input or output) ``name``."""
    declarations = task.inputs_ownership if kind == "input" else task.outputs_ownership
    attributes: dict[str, AttributeValue] = {
        "id": file_id,
        "task_id": task.external_id,
        "kind": kind,
        "name": name,
        "owner": owner,
        "declared_owner": declarations.get(name, frozenset()),
        "assigned": already_assigned,
        "participants": task.participants,
    }
    return Query(Action.TASK_ASSIGN_FILE, f"{task.external_id} {kind} {name}", attributes)


AUDIT_LOG_QUERY = Query(Action.AUDIT_QUERY, "audit log", {})
