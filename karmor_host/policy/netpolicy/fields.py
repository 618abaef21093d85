"""Checks for the single values of a KubeArmorNetworkPolicy: CIDRs, interfaces, protocols
and ports. Same contract as policy/fields.py: report, then return the normalised value or None.
"""

from __future__ import annotations

import ipaddress
import re

import yaml

from karmor_host.policy import fields as F
from karmor_host.policy.fields import Report
from karmor_host.policy.netpolicy import messages as N
from karmor_host.policy.netpolicy.model import Protocol
from karmor_host.policy.netpolicy.services import ALIASES, Services

_PROTOCOLS = {p.value.lower(): p for p in Protocol}
_IFACE = re.compile(r"[^/:*\s]{1,15}")
_DIGITS = re.compile(r"\s*[0-9]{1,5}\s*")


def cidr(r: Report, node: yaml.Node, field: str) -> str | None:
    """`10.0.0.0/8`, `fd00::/64`. Host bits set, or no prefix length, is accepted with a
    warning: the prefix length (or its absence) says what was meant."""
    value = F.want_str(r, node, field)
    if value is None:
        return None
    text = value.strip()
    # Parse as the version the text looks like, so the reason names the bad part.
    kind = ipaddress.IPv6Network if ":" in text else ipaddress.IPv4Network
    try:
        if "%" in text:
            raise ValueError("a zone index has no place in a CIDR; name the interface in iface")
        net: ipaddress.IPv4Network | ipaddress.IPv6Network = kind(text, strict=False)
    except ValueError as exc:
        r.error(node, field, N.E_CIDR.format(got=F.describe(node), why=exc))
        return None
    fixed = str(net)
    if "/" not in text:
        r.warn(node, field, N.W_CIDR_NO_PREFIX.format(fixed=fixed))
    elif ipaddress.ip_interface(text).ip != net.network_address:
        r.warn(node, field, N.W_CIDR_HOST_BITS.format(fixed=fixed))
    return fixed


def iface(r: Report, node: yaml.Node, field: str) -> str | None:
    value = F.want_str(r, node, field)
    if value is None:
        return None
    if not _IFACE.fullmatch(value) or value in (".", ".."):
        r.error(node, field, N.E_IFACE.format(got=F.describe(node)))
        return None
    return value


def protocol(r: Report, node: yaml.Node, field: str) -> Protocol | None:
    value = F.want_str(r, node, field)
    if value is None:
        return None
    found = _PROTOCOLS.get(value.strip().lower())
    if found is None:
        r.error(node, field, N.E_PROTOCOL.format(got=F.describe(node)))
    return found


def _number(node: yaml.Node) -> int | None:
    try:
        return int(yaml.constructor.SafeConstructor().construct_object(node))
    except (ValueError, yaml.YAMLError):
        return None


def port(r: Report, node: yaml.Node, field: str, proto: Protocol, services: Services) -> tuple[int, str] | None:
    """(port, service name or "") from a number or a service name of `proto`."""
    k = F.kind(node)
    if k == "int":
        value = _number(node)
        if value is not None and 0 < value < 65536:
            return value, ""
    elif k == "str" and _DIGITS.fullmatch(node.value) and 0 < int(node.value) < 65536:
        r.warn(node, field, N.W_PORT_STRING.format(value=int(node.value)))
        return int(node.value), ""
    elif k == "str" and node.value.strip():
        name = node.value.strip().lower()
        found = services.port(name, proto.value)
        if found is not None:
            return found, name
        alias = ALIASES.get(name)
        if alias is not None and services.port(alias, proto.value) is not None:
            fixed = services.port(alias, proto.value)
            assert fixed is not None
            r.warn(node, field, N.W_SERVICE_ALIAS.format(
                got=name, services=services.source, fixed=alias, port=fixed))
            return fixed, alias
        close = F.closest(name, services.names(proto.value))
        hint = f" (did you mean {close!r}?)" if close else ""
        r.error(node, field, N.E_SERVICE.format(
            got=F.describe(node), protocol=proto.value, services=services.source, hint=hint))
        return None
    r.error(node, field, N.E_PORT.format(services=services.source, got=F.describe(node)))
    return None


def end_port(r: Report, node: yaml.Node, field: str) -> int | None:
    value = _number(node) if F.kind(node) == "int" else None
    if value is None or not 0 < value < 65536:
        r.error(node, field, N.E_END_PORT.format(got=F.describe(node)))
        return None
    return value
