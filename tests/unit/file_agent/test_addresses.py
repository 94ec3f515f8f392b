"""The address rule: every special-purpose range refused by default, global addresses allowed, opt-ins honoured."""

from __future__ import annotations

import ipaddress

import pytest

from cloister.errors import TransferError
from cloister.file_agent.addresses import SETTING, AddressPolicy, AddressRefusedError

DEFAULT = AddressPolicy()

# address -> why it is refused by default (None: allowed)
CASES = {
    # IPv4
    "8.8.8.8": None,
    "1.1.1.1": None,
    "93.184.215.14": None,
    "127.0.0.1": "a loopback address",
    "127.255.255.254": "a loopback address",
    "10.0.0.1": "a private address",
    "172.16.5.4": "a private address",
    "172.31.255.255": "a private address",
    "192.168.1.1": "a private address",
    "169.254.169.254": "a link-local address",
    "100.64.0.1": "a shared address (carrier-grade NAT)",
    "100.127.255.255": "a shared address (carrier-grade NAT)",
    "0.0.0.0": "an unspecified address",
    "0.1.2.3": "a reserved address",
    "224.0.0.1": "a multicast address",
    "239.255.255.250": "a multicast address",
    "240.0.0.1": "a reserved address",
    "255.255.255.255": "a broadcast address",
    "192.0.0.9": "a reserved address",
    "192.0.2.1": "a reserved address",
    "198.18.0.1": "a reserved address",
    "198.51.100.7": "a reserved address",
    "203.0.113.9": "a reserved address",
    "192.88.99.1": "a reserved address",
    # IPv6
    "2606:4700::1111": None,
    "2001:4860:4860::8888": None,
    "::1": "a loopback address",
    "::": "an unspecified address",
    "fe80::1": "a link-local address",
    "fe80::1%eth0": "a link-local address",
    "fc00::1": "a unique-local address",
    "fd12:3456::1": "a unique-local address",
    "fec0::1": "a site-local address",
    "ff02::1": "a multicast address",
    "ff0e::1": "a multicast address",
    "2001:db8::1": "a reserved address",
    "3fff::1": "a reserved address",
    "100::1": "a reserved address",
    "::127.0.0.1": "a reserved address",  # IPv4-compatible, deprecated
    "5f00::1": "a reserved address",
    "2001:2::1": "a reserved address",
    # IPv4-mapped: judged as the IPv4 address the socket reaches
    "::ffff:127.0.0.1": "a loopback address",
    "::ffff:10.1.2.3": "a private address",
    "::ffff:169.254.169.254": "a link-local address",
    "::ffff:8.8.8.8": None,
    # NAT64, 6to4 and Teredo: judged by the IPv4 address they embed
    "64:ff9b::7f00:1": "a NAT64 address embedding a loopback address",
    "64:ff9b::a00:1": "a NAT64 address embedding a private address",
    "64:ff9b::808:808": None,
    "64:ff9b:1::808:808": "a local-use NAT64 address",
    "2002:7f00:1::1": "a 6to4 address embedding a loopback address",
    "2002:a9fe:a9fe::1": "a 6to4 address embedding a link-local address",
    "2002:808:808::1": None,
    # Teredo: server 65.54.227.120, client ~0x3fff_fdd2 = 192.0.2.45 (documentation)
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "a Teredo address embedding a reserved address",
    # Teredo: server 65.54.227.120, client ~0x80ff_fffe = 127.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "a Teredo address embedding a loopback address",
    # Teredo: server 65.54.227.120, client ~0xf7f7_f7f7 = 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7": None,
}


@pytest.mark.parametrize(("text", "why"), CASES.items(), ids=list(CASES))
def test_default_policy(text: str, why: str | None) -> None:
    assert DEFAULT.refusal(ipaddress.ip_address(text)) == why


def test_the_cases_cover_both_families_and_both_outcomes() -> None:
    addresses = [ipaddress.ip_address(text) for text in CASES]
    assert {address.version for address in addresses if DEFAULT.refusal(address) is None} == {4, 6}
    assert {address.version for address in addresses if DEFAULT.refusal(address) is not None} == {4, 6}


@pytest.mark.parametrize(
    ("cidrs", "allowed", "refused"),
    [
        (["127.0.0.0/8"], ["127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1", "64:ff9b::7f00:1"], ["::1", "10.0.0.1"]),
        (["::1/128"], ["::1"], ["127.0.0.1", "::2"]),
        (["10.0.0.0/8"], ["10.255.0.1", "::ffff:10.0.0.1"], ["172.16.0.1", "192.168.0.1"]),
        (["127.0.0.2/32"], ["127.0.0.2"], ["127.0.0.1", "127.0.0.3"]),
        (["fd00::/8"], ["fd00::2"], ["fc00::1", "fe80::1"]),
        (["169.254.169.254/32"], ["169.254.169.254"], ["169.254.169.253"]),
        # An IPv6 network never holds an IPv4 address that happens to have the same bits, nor the other way round.
        (["::/96"], ["::7f00:1"], ["127.0.0.1", "0.0.0.1"]),
        (["0.0.0.0/0"], ["127.0.0.1", "10.0.0.1", "::ffff:127.0.0.1"], ["::1", "fe80::1", "::"]),
    ],
)
def test_allowed_networks(cidrs: list[str], allowed: list[str], refused: list[str]) -> None:
    policy = AddressPolicy.from_cidrs(cidrs)
    for text in allowed:
        assert policy.refusal(ipaddress.ip_address(text)) is None, text
    for text in refused:
        assert policy.refusal(ipaddress.ip_address(text)) is not None, text
    # Global addresses stay allowed whatever is opted in.
    assert policy.refusal(ipaddress.ip_address("8.8.8.8")) is None


def test_from_cidrs_refuses_what_is_not_a_network() -> None:
    with pytest.raises(ValueError, match="host bits"):
        AddressPolicy.from_cidrs(["10.0.0.1/8"])


def test_check_names_the_host_the_address_the_rule_and_the_setting() -> None:
    with pytest.raises(AddressRefusedError) as caught:
        DEFAULT.check("localhost", [ipaddress.ip_address("127.0.0.1")])
    assert isinstance(caught.value, TransferError)
    assert caught.value.message == (
        "localhost resolves to a loopback address (127.0.0.1), which tasks may not reach; "
        "allow it with [execution] allowed_networks (CLOISTER_EXECUTION__ALLOWED_NETWORKS)"
    )
    with pytest.raises(AddressRefusedError) as caught:
        DEFAULT.check("10.1.2.3", [ipaddress.ip_address("10.1.2.3")])
    assert caught.value.message == f"10.1.2.3 is a private address, which tasks may not reach; allow it with {SETTING}"


def test_one_refused_address_refuses_the_host() -> None:
    """Whoever runs the host's DNS chooses which of its addresses a client connects to."""
    mixed = [ipaddress.ip_address(text) for text in ("8.8.8.8", "2606:4700::1111", "169.254.169.254")]
    with pytest.raises(AddressRefusedError, match=r"evil\.example resolves to a link-local address \(169\.254"):
        DEFAULT.check("evil.example", mixed)
    DEFAULT.check("good.example", mixed[:2])
    AddressPolicy.from_cidrs(["169.254.169.254/32"]).check("evil.example", mixed)
