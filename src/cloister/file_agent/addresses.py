"""Which addresses a task's http(s) URLs may reach: global ones, and those in networks the operator opted in.

A task's URLs are chosen by its participants, and the execution service fetches and writes them from inside the
deployment; unchecked, an input URL could read from a server only the deployment can reach (a cloud metadata
service on 169.254.169.254, an admin page on 127.0.0.1) and an output URL could write to it. The rule is a table
of the IANA special-purpose ranges rather than ``ipaddress``'s ``is_global`` alone: Python's tables changed in
patch releases (3.11.10, 3.12.4) and call multicast global. ``is_global`` still backs the table up, so a range
Python learns of can only be refused, never allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloister.errors import TransferError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "[execution] allowed_networks (CLOISTER_EXECUTION__ALLOWED_NETWORKS)"
"""Where an operator opts networks in; every refusal names it."""

_LOCAL = "a loopback address"
_PRIVATE = "a private address"
_RESERVED = "a reserved address"
_LINK_LOCAL = "a link-local address"
_MULTICAST = "a multicast address"
_UNSPECIFIED = "an unspecified address"


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in rows)


# The first network holding an address names why it is refused, so more specific networks come first.
_IPV4 = _table(
    ("0.0.0.0/32", _UNSPECIFIED),  # connecting to it reaches this machine
    ("0.0.0.0/8", _RESERVED),  # "this network"
    ("10.0.0.0/8", _PRIVATE),
    ("100.64.0.0/10", "a shared address (carrier-grade NAT)"),
    ("127.0.0.0/8", _LOCAL),
    ("169.254.0.0/16", _LINK_LOCAL),
    ("172.16.0.0/12", _PRIVATE),
    ("192.0.0.0/24", _RESERVED),  # IETF protocol assignments
    ("192.0.2.0/24", _RESERVED),  # documentation
    ("192.88.99.0/24", _RESERVED),  # the former 6to4 relay anycast
    ("192.168.0.0/16", _PRIVATE),
    ("198.18.0.0/15", _RESERVED),  # benchmarking
    ("198.51.100.0/24", _RESERVED),  # documentation
    ("203.0.113.0/24", _RESERVED),  # documentation
    ("224.0.0.0/4", _MULTICAST),
    ("255.255.255.255/32", "a broadcast address"),
    ("240.0.0.0/4", _RESERVED),
)
_IPV6 = _table(
    ("::/128", _UNSPECIFIED),
    ("::1/128", _LOCAL),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", _LINK_LOCAL),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", _MULTICAST),
    ("2001:db8::/32", _RESERVED),  # documentation
    ("2001::/23", _RESERVED),  # IETF protocol assignments; Teredo's 2001::/32 is judged by what it embeds first
    ("3fff::/20", _RESERVED),  # documentation
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
"""Every other IPv6 address is unassigned or reserved for a special use."""
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")


class AddressRefusedError(TransferError):
    """A URL's host is, or resolves to, an address tasks may not reach."""


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (an IPv6 one may carry a ``%scope``), or None when it is a host name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressPolicy:
    """Tasks may reach global addresses and any address in ``allowed``; nothing else.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as the IPv4 address it reaches; one that embeds an
    IPv4 address for a translator or tunnel (NAT64 ``64:ff9b::/96``, 6to4, Teredo) is refused when what it embeds
    would be.
    """

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AddressPolicy:
        """The policy allowing ``cidrs`` (``"10.0.0.0/8"``, ``"::1/128"``); ValueError names one that is not one."""
        return cls(tuple(ipaddress.ip_network(cidr) for cidr in cidrs))

    def refusal(self, address: IPAddress) -> str | None:
        """Why tasks may not reach ``address``, as ``"a loopback address"``; None when they may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address.version == network.version and address in network for network in self.allowed):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return self._ipv6_refusal(address)
        return _listed(address, _IPV4) or (None if address.is_global else "a non-global address")

    def _ipv6_refusal(self, address: ipaddress.IPv6Address) -> str | None:
        embedded: list[tuple[str, ipaddress.IPv4Address]] = []
        if address in _NAT64:
            embedded = [("a NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))]
        elif address in _SIX_TO_FOUR and address.sixtofour is not None:
            embedded = [("a 6to4", address.sixtofour)]
        elif address in _TEREDO and address.teredo is not None:
            server, client = address.teredo
            embedded = [("a Teredo", server), ("a Teredo", client)]
        if embedded:
            for form, inner in embedded:
                why = self.refusal(inner)
                if why is not None:
                    return f"{form} address embedding {why}"
            return None
        listed = _listed(address, _IPV6)
        if listed is not None:
            return listed
        if address not in _GLOBAL_UNICAST:
            return _RESERVED
        return None if address.is_global else "a non-global address"

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Refuse ``host`` unless tasks may reach every one of ``addresses``, those it resolved to.

        Any refused address refuses the host: whoever controls its DNS chooses which address a client tries.

        Raises:
            AddressRefusedError: saying which address, why, and the setting that would allow it.
        """
        literal = parse_address(host) is not None
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                subject = f"{host} is {why}" if literal else f"{host} resolves to {why} ({address})"
                raise AddressRefusedError(f"{subject}, which tasks may not reach; allow it with {SETTING}")


def _listed(address: IPAddress, table: tuple[tuple[IPNetwork, str], ...]) -> str | None:
    for network, why in table:
        if address in network:
            return why
    return None
