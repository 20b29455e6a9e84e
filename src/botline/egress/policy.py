"""Which destinations an outbound call may reach.

Two kinds of caller: the operator (admin accounts, gateways declared in the config file, provider APIs
whose base URL is in the config) reaches anything; a tenant (a URL saved through the API by an account
without admin rights, or any URL that arrives in a webhook) may not reach internal addresses unless
`security.egress.allow` lists them, by network (CIDR) or by host[:port].
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


class Trust(StrEnum):
    OPERATOR = "operator"
    """Any destination (the operator's own configuration: local models must keep working)."""
    TENANT = "tenant"
    """Public destinations only, plus what security.egress.allow lists."""

    @classmethod
    def of(cls, is_admin: bool) -> Trust:
        return cls.OPERATOR if is_admin else cls.TENANT


def is_internal(address: IPAddress) -> bool:
    """True for loopback, private (RFC 1918), link-local (169.254.169.254 included), CGNAT, ULA,
    multicast, unspecified, reserved and documentation addresses, and IPv6 forms that embed one of
    them (IPv4-mapped, 6to4, NAT64); Teredo is refused outright."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None or address in _NAT64_LOCAL:
            return True
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_internal(embedded)
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return True
    return (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_unspecified or address.is_reserved or not address.is_global
    )


@dataclass(frozen=True)
class HostRule:
    host: str
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        return self.host == host.lower().rstrip(".") and (self.port is None or self.port == port)


def parse_allow_entry(entry: str) -> IPNetwork | HostRule:
    """`10.0.0.0/8`, `10.0.0.5`, `fd00::/8`, `ollama.internal`, `ollama.internal:11434`, `[fd00::5]:8080`,
    `10.0.0.5:11434`. Raises ValueError with a readable reason."""
    text = entry.strip()
    if not text:
        raise ValueError("an empty entry")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    host, port = text, None
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{entry!r} is not a CIDR or host[:port]")
            port = _port(rest[1:], entry)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, entry)
    if not host or any(c in host for c in "/@?#* "):
        raise ValueError(f"{entry!r} is not a CIDR or host[:port]")
    return HostRule(host.lower().rstrip("."), port)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r} has an invalid port")
    return int(text)


class EgressPolicy:
    """The tenant policy: internal addresses refused unless listed in `allow`."""

    def __init__(self, allow: list[str] | tuple[str, ...] = ()) -> None:
        self._networks: list[IPNetwork] = []
        self._hosts: list[HostRule] = []
        for entry in allow:
            rule = parse_allow_entry(entry)
            if isinstance(rule, HostRule):
                self._hosts.append(rule)
            else:
                self._networks.append(rule)

    def host_allowed(self, host: str, port: int) -> bool:
        """An explicit host[:port] entry: every address it resolves to may be reached."""
        return any(rule.matches(host, port) for rule in self._hosts)

    def permits(self, host: str, port: int, address: str) -> bool:
        """May a tenant's request for `host:port` connect to `address`?"""
        if self.host_allowed(host, port):
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if any(ip in network for network in self._networks):
            return True
        return not is_internal(ip)
