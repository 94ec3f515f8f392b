"""Client addresses in audit entries use Teaclave's 16-byte form (§2.3 step 1)."""

from __future__ import annotations

import ipaddress

from cloister.rpc.audit_trail import client_ip
from cloister.services.frontend.gate import _unverified_role


def test_ipv4_becomes_ipv4_compatible_ipv6() -> None:
    assert client_ip("ipv4:127.0.0.1:51234") == bytes(12) + bytes([127, 0, 0, 1])
    assert ipaddress.IPv6Address(client_ip("ipv4:10.1.2.3:1")) == ipaddress.IPv6Address("::10.1.2.3")


def test_ipv6_and_unknown() -> None:
    assert client_ip("ipv6:[::1]:4000") == ipaddress.IPv6Address("::1").packed
    assert client_ip("unix:/tmp/socket") == bytes(16)
    assert client_ip("") == bytes(16)


def test_unverified_role_reads_claim_or_nothing() -> None:
    import base64
    import json

    payload = base64.urlsafe_b64encode(json.dumps({"role": "DataOwner-x"}).encode()).rstrip(b"=").decode()
    assert _unverified_role(f"h.{payload}.s") == "DataOwner-x"
    assert _unverified_role("InvalidToken") is None
    assert _unverified_role("a.!!!.c") is None
