"""The §4.4 authorization matrix, with its two compatibility quirks."""

from __future__ import annotations

import pytest

from cloister.model.roles import Role, RoleKind
from cloister.services.authentication import permissions

ADMIN = Role(RoleKind.PLATFORM_ADMIN)
FO = Role(RoleKind.FUNCTION_OWNER)
DOM_A = Role(RoleKind.DATA_OWNER_MANAGER, "a")
DOM_B = Role(RoleKind.DATA_OWNER_MANAGER, "b")
DO_A = Role(RoleKind.DATA_OWNER, "a")
DO_B = Role(RoleKind.DATA_OWNER, "b")
INVALID = Role(RoleKind.INVALID)
VALID = [ADMIN, FO, DOM_A, DOM_B, DO_A, DO_B]


def test_admin_may_do_anything_to_valid_roles() -> None:
    for role in VALID:
        assert permissions.may_register(ADMIN, role)
        assert permissions.may_update(ADMIN, role)
        assert permissions.may_reset(ADMIN, role)
        assert permissions.may_delete(ADMIN, role)
    assert not permissions.may_register(ADMIN, INVALID)
    assert permissions.may_list(ADMIN, "anything")


def test_data_owner_manager_manages_its_own_data_owners_only() -> None:
    assert [permissions.may_register(DOM_A, r) for r in VALID] == [False, False, False, False, True, False]
    assert [permissions.may_reset(DOM_A, r) for r in VALID] == [False, False, False, False, True, False]
    assert [permissions.may_delete(DOM_A, r) for r in VALID] == [False, False, False, False, True, False]
    assert permissions.may_list(DOM_A, "a")
    assert not permissions.may_list(DOM_A, "b")
    assert not permissions.may_list(DOM_A, "DataOwnerManager-a")


def test_quirk_data_owner_manager_may_update_anyone_into_its_data_owner() -> None:
    # The target's current role is not part of the decision: only the new role counts.
    assert permissions.may_update(DOM_A, DO_A)
    assert not permissions.may_update(DOM_A, DO_B)
    assert not permissions.may_update(DOM_A, DOM_A)
    assert not permissions.may_update(DOM_A, ADMIN)


def test_quirk_function_owner_may_register_data_owner_managers_of_any_attribute() -> None:
    assert permissions.may_register(FO, DOM_A)
    assert permissions.may_register(FO, DOM_B)
    assert permissions.may_register(FO, Role(RoleKind.DATA_OWNER_MANAGER, ""))
    for role in (ADMIN, FO, DO_A):
        assert not permissions.may_register(FO, role)


@pytest.mark.parametrize("requester", [FO, DO_A, INVALID])
def test_others_may_not_update_reset_delete_or_list(requester: Role) -> None:
    for role in VALID:
        assert not permissions.may_update(requester, role)
        assert not permissions.may_reset(requester, role)
        assert not permissions.may_delete(requester, role)
    assert not permissions.may_list(requester, requester.attribute or "a")


@pytest.mark.parametrize("requester", [DO_A, DO_B, INVALID])
def test_data_owners_may_register_nobody(requester: Role) -> None:
    assert not any(permissions.may_register(requester, role) for role in VALID)


def test_listing_shows_exact_data_owner_roles() -> None:
    assert all(permissions.listed(ADMIN, role) for role in VALID)
    assert [permissions.listed(DOM_A, r) for r in VALID] == [False, False, False, False, True, False]
