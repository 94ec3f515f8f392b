"""The audit view shows each entry's address as people write it, whichever 16-byte form it was stored in."""

from __future__ import annotations

import ipaddress

from cloister.console.audit import shown_ip
from cloister.rpc.forwarding import client_ip


def test_ipv4_reads_as_ipv4_in_both_stored_forms() -> None:
    assert shown_ip(client_ip("ipv4:127.0.0.1:5000")) == "127.0.0.1"  # ::127.0.0.1, as the services store it
    assert shown_ip(ipaddress.IPv6Address("::ffff:203.0.113.7").packed) == "203.0.113.7"


def test_ipv6_and_unknown_addresses_read_as_they_are() -> None:
    assert shown_ip(client_ip("ipv6:[::1]:5000")) == "::1"
    assert shown_ip(bytes(16)) == "::"  # no address known
    assert shown_ip(ipaddress.IPv6Address("2001:db8::5").packed) == "2001:db8::5"
    assert shown_ip(b"\x01\x02") == ""
