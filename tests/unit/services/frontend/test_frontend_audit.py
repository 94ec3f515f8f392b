"""Client addresses in audit entries use Teaclave's 16-byte form (§2.3 step 1)."""

from __future__ import annotations

import ipaddress

from cloister.rpc.audit_trail import audit_user
from cloister.rpc.forwarding import client_ip


def test_ipv4_becomes_ipv4_compatible_ipv6() -> None:
    assert client_ip("ipv4:127.0.0.1:51234") == bytes(12) + bytes([127, 0, 0, 1])
    assert ipaddress.IPv6Address(client_ip("ipv4:10.1.2.3:1")) == ipaddress.IPv6Address("::10.1.2.3")


def test_ipv6_and_unknown() -> None:
    assert client_ip("ipv6:[::1]:4000") == ipaddress.IPv6Address("::1").packed
    # gRPC writes IPv6 peers percent-encoded, sometimes with a zone.
    assert client_ip("ipv6:%5B::1%5D:58844") == ipaddress.IPv6Address("::1").packed
    assert client_ip("ipv6:%5B2001:db8::7%5D:1") == ipaddress.IPv6Address("2001:db8::7").packed
    assert client_ip("ipv6:%5Bfe80::1%25lo%5D:1") == ipaddress.IPv6Address("fe80::1").packed
    assert client_ip("unix:/tmp/socket") == bytes(16)
    assert client_ip("") == bytes(16)


def test_audit_user_shows_odd_ids_as_strings() -> None:
    assert audit_user("alice", 'DataOwner("org1")') == '{ user: alice, role: DataOwner("org1") }'
    assert audit_user("a.b@example.org") == "{ user: a.b@example.org }"
    assert audit_user("admin, role: PlatformAdmin") == '{ user: "admin, role: PlatformAdmin" }'
    assert audit_user("x }") == '{ user: "x }" }'
    assert audit_user(role="PlatformAdmin") == "{ role: PlatformAdmin }"
