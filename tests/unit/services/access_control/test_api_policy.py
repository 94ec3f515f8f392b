"""The packaged policy reproduces Teaclave's role → API decisions (§5.1, §18.14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.errors import ConfigurationError
from cloister.services.access_control.policy import PACKAGED_POLICY_DIR, ApiPolicy

DATA_APIS = [
    "register_input_file", "register_output_file", "update_input_file", "update_output_file",
    "register_fusion_output", "register_input_from_output", "get_output_file", "get_input_file",
    "create_task", "get_task", "assign_data", "approve_task", "invoke_task", "cancel_task",
]  # fmt: skip
FUNCTION_APIS = ["register_function", "update_function", "delete_function", "disable_function"]
SHARED_APIS = ["get_function", "list_functions", "get_function_usage_stats"]


@pytest.fixture(scope="module")
def policy() -> ApiPolicy:
    return ApiPolicy()


def test_reference_examples(policy: ApiPolicy) -> None:
    assert policy.allows("PlatformAdmin", "Arbitrary_api")
    assert policy.allows("DataOwner", "get_function")
    assert not policy.allows("FunctionOwner", "invoke_task")


@pytest.mark.parametrize("role", ["DataOwner", "DataOwnerManager"])
def test_data_owners(policy: ApiPolicy, role: str) -> None:
    assert all(policy.allows(role, api) for api in DATA_APIS + SHARED_APIS)
    assert not any(policy.allows(role, api) for api in [*FUNCTION_APIS, "query_audit_logs"])


def test_function_owner(policy: ApiPolicy) -> None:
    assert all(policy.allows("FunctionOwner", api) for api in FUNCTION_APIS + SHARED_APIS)
    assert not any(policy.allows("FunctionOwner", api) for api in [*DATA_APIS, "query_audit_logs"])


def test_unknown_roles_and_case(policy: ApiPolicy) -> None:
    assert not policy.allows("Invalid", "get_task")
    assert not policy.allows("", "get_task")
    assert not policy.allows("DataOwner", "GET_TASK")
    assert policy.allows("PlatformAdmin", "query_audit_logs")


def test_operator_policy_changes_decisions(tmp_path: Path) -> None:
    (tmp_path / "model.conf").write_text((PACKAGED_POLICY_DIR / "model.conf").read_text())
    (tmp_path / "policy.csv").write_text(
        (PACKAGED_POLICY_DIR / "policy.csv").read_text() + "p, rule_function_owner, create_task\n"
    )
    assert ApiPolicy(tmp_path).allows("FunctionOwner", "create_task")


def test_missing_policy_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        ApiPolicy(tmp_path)
