"""Who may manage which users: the authorization matrix of reference §4.4, quirks included.

Every user-management decision is made here, in plain functions, so that moving them to the
access control service later changes one module. Two quirks are kept on purpose for
compatibility: a FunctionOwner may register DataOwnerManager users of any attribute, and a
DataOwnerManager may update *any* user, as long as the new role is its own DataOwner role.
"""

from __future__ import annotations

from cloister.model.roles import Role, RoleKind


def _managed_role(requester: Role) -> Role | None:
    """The role a DataOwnerManager(a) manages, DataOwner(a); None for every other role."""
    if requester.kind is RoleKind.DATA_OWNER_MANAGER:
        return Role(RoleKind.DATA_OWNER, requester.attribute)
    return None


def may_register(requester: Role, new_role: Role) -> bool:
    if requester.is_admin:
        return new_role.is_valid
    if requester.kind is RoleKind.FUNCTION_OWNER:
        return new_role.kind is RoleKind.DATA_OWNER_MANAGER
    managed = _managed_role(requester)
    return managed is not None and new_role == managed


def may_update(requester: Role, new_role: Role) -> bool:
    """The target's current role is not considered, as in the reference."""
    if requester.is_admin:
        return new_role.is_valid
    managed = _managed_role(requester)
    return managed is not None and new_role == managed


def may_reset(requester: Role, target_role: Role) -> bool:
    if requester.is_admin:
        return True
    managed = _managed_role(requester)
    return managed is not None and target_role == managed


def may_delete(requester: Role, target_role: Role) -> bool:
    return may_reset(requester, target_role)


def may_list(requester: Role, requested_id: str) -> bool:
    """A DataOwnerManager lists only when the request's ``id`` names its own attribute."""
    if requester.is_admin:
        return True
    return requester.kind is RoleKind.DATA_OWNER_MANAGER and requested_id == requester.attribute


def listed(requester: Role, user_role: Role) -> bool:
    """Whether a user with ``user_role`` appears in ``requester``'s list (given ``may_list``)."""
    if requester.is_admin:
        return True
    managed = _managed_role(requester)
    return managed is not None and user_role == managed
