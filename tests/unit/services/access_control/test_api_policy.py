"""The packaged policy reproduces Teaclave's role → API decisions (§5.1, §18.14), plus ListTasks' and
the task participant's APIs for function owners (a private function's owner must approve its tasks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cloister.errors import ConfigurationError
from cloister.services.access_control.policy import PACKAGED_POLICY_DIR, POLICY_FILES, AccessPolicy

DATA_APIS = [
    "register_input_file", "register_output_file", "update_input_file", "update_output_file",
    "register_fusion_output", "register_input_from_output", "get_output_file", "get_input_file",
    "create_task", "get_task", "assign_data", "approve_task", "invoke_task", "cancel_task",
    "list_tasks",  # Cloister's ListTasks: the one row added to Teaclave's file
]  # fmt: skip
PARTICIPANT_APIS = [
    "get_task", "approve_task", "assign_data", "list_tasks",
    "register_input_file", "register_output_file", "update_input_file", "update_output_file",
    "register_fusion_output", "register_input_from_output", "get_input_file", "get_output_file",
]  # fmt: skip
"""Cloister's: what any participant of a task may need; the object rules decide which task and file."""
FUNCTION_APIS = ["register_function", "update_function", "delete_function", "disable_function"]
SHARED_APIS = ["get_function", "list_functions", "get_function_usage_stats"]


@pytest.fixture(scope="module")
def policy() -> AccessPolicy:
    return AccessPolicy()


def test_reference_examples(policy: AccessPolicy) -> None:
    assert policy.allows_api("PlatformAdmin", "Arbitrary_api")
    assert policy.allows_api("DataOwner", "get_function")
    assert not policy.allows_api("FunctionOwner", "invoke_task")


@pytest.mark.parametrize("role", ["DataOwner", "DataOwnerManager"])
def test_data_owners(policy: AccessPolicy, role: str) -> None:
    assert all(policy.allows_api(role, api) for api in DATA_APIS + SHARED_APIS)
    assert not any(policy.allows_api(role, api) for api in [*FUNCTION_APIS, "query_audit_logs"])


@pytest.mark.parametrize("role", ["FunctionOwner", "FunctionOwnerManager"])
def test_function_owners(policy: AccessPolicy, role: str) -> None:
    assert all(policy.allows_api(role, api) for api in FUNCTION_APIS + SHARED_APIS + PARTICIPANT_APIS)
    # Teaclave's refusals that remain: creating, running and cancelling tasks, and the audit log.
    assert set(DATA_APIS) - set(PARTICIPANT_APIS) == {"create_task", "invoke_task", "cancel_task"}
    assert not any(
        policy.allows_api(role, api) for api in ["create_task", "invoke_task", "cancel_task", "query_audit_logs"]
    )


def test_unknown_roles_and_case(policy: AccessPolicy) -> None:
    assert not policy.allows_api("Invalid", "get_task")
    assert not policy.allows_api("", "get_task")
    assert not policy.allows_api("DataOwner", "GET_TASK")
    assert policy.allows_api("PlatformAdmin", "query_audit_logs")


def test_operator_policy_changes_decisions(tmp_path: Path) -> None:
    for name in POLICY_FILES:
        shutil.copy(PACKAGED_POLICY_DIR / name, tmp_path / name)
    (tmp_path / "policy.csv").write_text(
        (PACKAGED_POLICY_DIR / "policy.csv").read_text() + "p, rule_function_owner, create_task\n"
    )
    assert AccessPolicy(tmp_path).allows_api("FunctionOwner", "create_task")


def test_missing_policy_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        AccessPolicy(tmp_path)
    # A directory holding only Teaclave's two files lacks the object rules: nothing is allowed by default.
    for name in ("model.conf", "policy.csv"):
        shutil.copy(PACKAGED_POLICY_DIR / name, tmp_path / name)
    with pytest.raises(ConfigurationError, match=r"object_model\.conf does not exist; `cloister policy init"):
        AccessPolicy(tmp_path)


def test_broken_policy_stops_start_up(tmp_path: Path) -> None:
    for name in POLICY_FILES:
        shutil.copy(PACKAGED_POLICY_DIR / name, tmp_path / name)
    (tmp_path / "object_model.conf").write_text("[request_definition]\nr = sub, obj, act\n")
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        AccessPolicy(tmp_path)
