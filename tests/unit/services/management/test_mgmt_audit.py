"""Audit log: batch storage, the interim query language, ordering and errors (§13)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from policy_authorizer import caller

from cloister.errors import AccessDeniedError, FailedOperationError
from cloister.model.audit import AuditEntry
from cloister.model.roles import Role

ADMIN = Role.parse("PlatformAdmin")
V4 = ipaddress.IPv6Address("::127.0.0.1").packed
V6 = ipaddress.IPv6Address("2001:db8::1").packed
SECOND = 1_000_000


def entry(at: int, message: str, user: str = "", result: bool = True, ip: bytes = V4) -> AuditEntry:
    return AuditEntry(at, ip, user, message, result)


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_save_stores_one_commit_and_rejects_bad_ip(services, storage):
    async def go():
        await services.audit.save([entry(1, "a"), entry(2, "b")])
        assert len(storage.commits) == 1
        keys = await storage.keys_with_prefix(b"audit")
        assert keys == [b"audit-00000000000000000001", b"audit-00000000000000000002"]
        first = storage.json(keys[0])
        assert first["entry"] == {"microsecond": 1, "ip": list(V4), "user": "", "message": "a", "result": True}
        assert first["seq"] == 1 and first["prev"] == "00" * 32
        assert storage.json(keys[1])["prev"] == first["hash"]
        assert storage.json(b"chain-audit-head") == {"count": 2, "hash": storage.json(keys[1])["hash"]}
        with pytest.raises(FailedOperationError) as error:
            await services.audit.save([entry(3, "c"), entry(4, "d", ip=b"\x7f\x00\x00\x01")])
        assert error.value.message == "audit log error, reason: failed to transform entries: ip must be 16 bytes"
        assert len(storage.commits) == 1
        await services.audit.save([])

    asyncio.run(go())


def test_query_matches_terms_and_orders_newest_first(services):
    async def go():
        user = "{ user: frontend_user, role: PlatformAdmin }"
        await services.audit.save(
            [
                entry(10 * SECOND, "register_function", user),
                entry(10 * SECOND + 5, "authenticate to register_function: authentication failed", "", False),
                entry(20 * SECOND, "get_task", user, ip=V6),
                entry(30 * SECOND, "authenticate to get_task", "", False),
            ]
        )

        async def messages(query: str, limit: int = 100) -> list[str]:
            return [e.message for e in await services.audit.query(caller("auditor", ADMIN), query, limit)]

        # the same second keeps the order written, as the reference's tests expect
        assert await messages("message:register_function") == [
            "register_function",
            "authenticate to register_function: authentication failed",
        ]
        assert await messages("user:frontend_user") == ["get_task", "register_function"]
        assert await messages("authenticate") == [
            "authenticate to get_task",
            "authenticate to register_function: authentication failed",
        ]
        assert await messages("+result:false +get_task") == ["authenticate to get_task"]
        assert await messages("result:false AND get_task") == ["authenticate to get_task"]
        assert await messages('message:"to register"') == ["authenticate to register_function: authentication failed"]
        assert await messages("ip:2001:db8::1") == ["get_task"]
        assert len(await messages("ip:127.0.0.1")) == 3
        assert await messages("", limit=2) == ["authenticate to get_task", "get_task"]
        assert await messages("register") == await messages("REGISTER")
        assert await messages("regist") == []

    asyncio.run(go())


def test_query_errors(services):
    async def go():
        with pytest.raises(AccessDeniedError):
            await services.audit.query(caller("auditor", Role.parse("DataOwner-x")), "", 10)
        with pytest.raises(FailedOperationError) as error:
            await services.audit.query(caller("auditor", ADMIN), "", 0)
        assert error.value.message == "audit log error, reason: limit must be positive"
        with pytest.raises(FailedOperationError) as error:
            await services.audit.query(caller("auditor", ADMIN), "date:today", 10)
        assert error.value.message.startswith("audit log error, reason: failed to query logs:")
        with pytest.raises(FailedOperationError, match="unknown field"):
            await services.audit.query(caller("auditor", ADMIN), "colour:blue", 10)

    asyncio.run(go())


@pytest.mark.parametrize("query", ["result:maybe", "ip:nowhere", 'message:"open', "user:"])
def test_malformed_queries(services, query):
    async def go():
        with pytest.raises(FailedOperationError, match="failed to query logs"):
            await services.audit.query(caller("auditor", ADMIN), query, 10)

    asyncio.run(go())
