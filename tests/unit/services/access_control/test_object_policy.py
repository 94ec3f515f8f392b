"""The object rules: what they see of a request, and that anything they cannot evaluate is denied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from policy_authorizer import caller

from cloister._proto import cloister_pb2 as cpb
from cloister.errors import ConfigurationError, MalformedRequestError
from cloister.model.access import Action, Query, file_query
from cloister.rpc.convert.access import authorize_request, queries_from_proto
from cloister.services.access_control.policy import PACKAGED_POLICY_DIR, POLICY_FILES, AccessPolicy

ALICE = caller("alice", "DataOwner-org1")


@pytest.fixture(scope="module")
def policy() -> AccessPolicy:
    return AccessPolicy()


def _over_the_wire(*queries: Query) -> list[Query]:
    return queries_from_proto(authorize_request(ALICE, queries).queries)


def test_sets_compare_as_sets_whatever_order_they_arrive_in(policy: AccessPolicy) -> None:
    (query,) = _over_the_wire(file_query(Action.FILE_UPDATE, "input-1", {"alice"}))
    assert policy.allows(ALICE, query)  # owner == {r.sub.id}
    (shared,) = _over_the_wire(file_query(Action.FILE_UPDATE, "input-1", ["bob", "alice"]))
    assert not policy.allows(ALICE, shared)
    assert policy.allows(ALICE, _over_the_wire(file_query(Action.FILE_READ, "input-1", ["bob", "alice"]))[0])


def test_what_the_policy_cannot_evaluate_is_denied(policy: AccessPolicy, caplog: pytest.LogCaptureFixture) -> None:
    assert not policy.allows(ALICE, Query("task.unheard_of", "x", {"owner": frozenset({"alice"})}))
    assert not policy.allows(ALICE, Query(Action.FILE_READ, "input-1", {}))  # no owner attribute
    wrong_type = Query(Action.FUNCTION_INVOKE, "f", {"usage_quota": "three", "use_numbers": 1})
    assert not policy.allows(ALICE, wrong_type)
    assert "could not evaluate" in caplog.text and "alice" not in caplog.text


def test_quota_counts_uses(policy: AccessPolicy) -> None:
    def invoke(quota: int | None, used: int) -> bool:
        return policy.allows(ALICE, Query(Action.FUNCTION_INVOKE, "f", {"usage_quota": quota, "use_numbers": used}))

    assert invoke(None, 10**6) and invoke(2, 1)
    assert not invoke(2, 2) and not invoke(0, 0)


def test_attributes_must_be_names_and_simple_values() -> None:
    def query(attributes: str) -> cpb.AuthorizationQuery:
        return cpb.AuthorizationQuery(action="file.read", resource_id="x", attributes_json=attributes)

    for bad in ("[]", "{not json", '{"__class__": "x"}', '{"owner": [1]}', '{"owner": {"a": 1}}', '{"a b": 1}'):
        with pytest.raises(MalformedRequestError):
            queries_from_proto([query(bad)])
    (decoded,) = queries_from_proto([query(json.dumps({"owner": ["b", "a"], "n": 3, "flag": None}))])
    assert decoded.attributes == {"owner": frozenset({"a", "b"}), "n": 3, "flag": None}


def _copy(tmp_path: Path) -> Path:
    for name in POLICY_FILES:
        shutil.copy(PACKAGED_POLICY_DIR / name, tmp_path / name)
    return tmp_path


def test_a_rule_that_does_not_parse_stops_start_up_naming_it(tmp_path: Path) -> None:
    with (_copy(tmp_path) / "object_policy.csv").open("a") as f:
        f.write("p, task.read, r.sub.id in in r.obj.participants\n")
    with pytest.raises(ConfigurationError, match=r"rule for task\.read does not parse"):
        AccessPolicy(tmp_path)


def test_an_operator_rule_can_use_the_disabled_mark(tmp_path: Path) -> None:
    text = (_copy(tmp_path) / "object_policy.csv").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("p, task.create,")]
    lines.append("p, task.create, !r.obj.disabled && (r.obj.public || r.sub.attribute in r.obj.user_allowlist)")
    (tmp_path / "object_policy.csv").write_text("\n".join(lines) + "\n")
    strict = AccessPolicy(tmp_path)
    function = {"public": True, "user_allowlist": frozenset(), "disabled": False}
    assert strict.allows(ALICE, Query(Action.TASK_CREATE, "f", function))
    assert not strict.allows(ALICE, Query(Action.TASK_CREATE, "f", {**function, "disabled": True}))
    assert strict.unknown_actions() == [] and strict.rule_counts()["task.create"] == 1


def test_every_action_has_a_rule_in_the_default_policy(policy: AccessPolicy) -> None:
    assert all(count >= 1 for count in policy.rule_counts().values())
    assert policy.unknown_actions() == []
