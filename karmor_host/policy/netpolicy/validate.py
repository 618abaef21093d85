"""The spec of a KubeArmorNetworkPolicy document -> NetworkPolicy, or Problems.

policy/validate.py checks what every kind shares (apiVersion, kind, metadata, the spec
mapping) and hands the spec here. The checks reuse the host-policy helpers for mappings,
nodeSelector and the inheritable attributes, so both kinds report the same way.
"""

from __future__ import annotations

import yaml

from karmor_host.policy import fields as F
from karmor_host.policy import messages as M
from karmor_host.policy.fields import Report
from karmor_host.policy.netpolicy import fields as NF
from karmor_host.policy.netpolicy import messages as N
from karmor_host.policy.netpolicy.model import PEER_KEY, Direction, NetRuleSpec, NetworkPolicy, PortSpec, Protocol
from karmor_host.policy.netpolicy.services import Services, system

# Shared with host-policy validation: same mapping checks, selector and attributes.
from karmor_host.policy.validate import META, _join, _meta, _selector, fields_of

_K8S_PEERS = ("podSelector", "namespaceSelector")


def _peers(r: Report, node: yaml.Node, field: str, key: str) -> tuple[str, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        r.error(node, field, M.E_TYPE.format(expected="a list of {ipBlock: {cidr: ...}} entries",
                                             got=F.describe(node)))
        return None
    if not node.value:
        r.warn(node, field, N.W_PEERS_EMPTY.format(key=key))
        return ()
    out: list[str] = []
    ok = True
    for i, item in enumerate(node.value):
        where = f"{field}[{i}]"
        selectors = [k for k, _ in item.value if F.plain_str(k) in _K8S_PEERS] if isinstance(
            item, yaml.MappingNode) else []
        for key_node in selectors:
            r.error(key_node, _join(where, key_node.value), N.E_PEER_SELECTOR.format(key=key_node.value))
        if selectors:
            ok = False
            continue
        m = fields_of(r, item, where, ("ipBlock",), required=("ipBlock",))
        if not m or "ipBlock" not in m:
            ok = False
            continue
        block = fields_of(r, m["ipBlock"][1], f"{where}.ipBlock", ("cidr",), required=("cidr",))
        value = NF.cidr(r, block["cidr"][1], f"{where}.ipBlock.cidr") if block and "cidr" in block else None
        if value is None:
            ok = False
        elif value not in out:
            out.append(value)
    return tuple(out) if ok else None


def _ifaces(r: Report, node: yaml.Node, field: str) -> tuple[str, ...] | None:
    names = F.str_list(r, node, field)
    if names is None:
        return None
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    checked = [NF.iface(r, item, f"{field}[{i}]" if isinstance(node, yaml.SequenceNode) else field)
               for i, item in enumerate(items)]
    if any(c is None for c in checked):
        return None
    return tuple(dict.fromkeys(c for c in checked if c is not None))


def _port(r: Report, node: yaml.Node, field: str, services: Services) -> PortSpec | None:
    before = r.error_count
    m = fields_of(r, node, field, ("protocol", "port", "endPort"))
    if m is None:
        return None
    if not m:
        if r.error_count == before:
            r.error(node, field, N.E_PORTS_ENTRY_EMPTY)
        return None
    if "protocol" in m:
        proto = NF.protocol(r, m["protocol"][1], _join(field, "protocol"))
    elif "port" in m:
        r.warn(m["port"][0], _join(field, "protocol"), N.W_PROTOCOL_DEFAULT)
        proto = Protocol.TCP
    else:
        r.error(node, _join(field, "protocol"), M.E_REQUIRED)
        return None
    if proto is None:
        return None
    if not proto.has_ports:
        for key in ("port", "endPort"):
            if key in m:
                r.error(m[key][0], _join(field, key), N.E_NO_PORTS.format(protocol=proto.value))
        return None if r.error_count > before else PortSpec(proto)
    if "port" not in m:
        if "endPort" in m:
            r.error(m["endPort"][0], _join(field, "endPort"), N.E_END_PORT_ALONE)
            return None
        return PortSpec(proto)
    got = NF.port(r, m["port"][1], _join(field, "port"), proto, services)
    end = NF.end_port(r, m["endPort"][1], _join(field, "endPort")) if "endPort" in m else None
    if got is None or ("endPort" in m and end is None):
        return None
    number, name = got
    if end is not None and end < number:
        r.error(m["endPort"][1], _join(field, "endPort"), N.E_END_PORT_ORDER.format(port=number, got=end))
        return None
    return PortSpec(proto, number, end, name)


def _ports(r: Report, node: yaml.Node, field: str, services: Services) -> tuple[PortSpec, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        r.error(node, field, M.E_TYPE.format(expected="a list of {protocol, port} entries", got=F.describe(node)))
        return None
    specs = [_port(r, item, f"{field}[{i}]", services) for i, item in enumerate(node.value)]
    if any(s is None for s in specs):
        return None
    return tuple(dict.fromkeys(s for s in specs if s is not None))


def _check_families(r: Report, node: yaml.Node, field: str, peers: tuple[str, ...],
                    ports: tuple[PortSpec, ...]) -> None:
    """ICMP with only IPv6 peers (or ICMPv6 with only IPv4 ones) can never match."""
    if not peers:
        return
    families = {6 if ":" in p else 4 for p in peers}
    if len(families) != 1:
        return
    (family,) = families
    for spec in ports:
        if spec.protocol.family and spec.protocol.family != family:
            r.error(node, _join(field, "ports"), N.E_ICMP_FAMILY.format(
                protocol=spec.protocol.value, family=f"IPv{spec.protocol.family}", other=f"IPv{family}"))


def _rule(r: Report, direction: Direction, node: yaml.Node, field: str, services: Services) -> NetRuleSpec | None:
    if F.kind(node) == "null":
        r.error(node, field, N.E_RULE_NULL)
        return None
    key = PEER_KEY[direction]
    before = r.error_count
    m = fields_of(r, node, field, (key, "iface", "ports", *META))
    if m is None:
        return None
    meta = _meta(r, m, field, syscall=False)
    peers = _peers(r, m[key][1], _join(field, key), key) if key in m else ()
    ifaces = _ifaces(r, m["iface"][1], _join(field, "iface")) if "iface" in m else ()
    ports = _ports(r, m["ports"][1], _join(field, "ports"), services) if "ports" in m else ()
    if peers is not None and ports is not None:
        _check_families(r, node, field, peers, ports)
    if peers is None or ifaces is None or ports is None or r.error_count > before:
        return None
    return NetRuleSpec(direction, peers, ifaces, ports, field, node.start_mark.line + 1,
                       node.start_mark.column + 1, meta)


def validate_network_spec(
    r: Report, node: yaml.Node, spec_node: yaml.Node, named: tuple[str, int, int] | None,
    before: int, services: Services | None = None,
) -> NetworkPolicy | None:
    """The spec of one document whose kind is KubeArmorNetworkPolicy. `named` and `before`
    come from the shared document checks: the name (or None) and the error count then."""
    services = services or system()
    directions = tuple(d.value for d in Direction)
    spec = fields_of(r, spec_node, "spec", ("nodeSelector", *directions, *META), ("nodeSelector",))
    if spec is None:
        return None
    selector = _selector(r, spec["nodeSelector"][1]) if "nodeSelector" in spec else ()
    meta = _meta(r, spec, "spec", syscall=False)
    rules: list[NetRuleSpec] = []
    for direction in Direction:
        if direction.value not in spec:
            continue
        seq, where = spec[direction.value][1], f"spec.{direction.value}"
        if not isinstance(seq, yaml.SequenceNode):
            r.error(seq, where, M.E_TYPE.format(expected="a list of rules", got=F.describe(seq)))
            continue
        if not seq.value:
            r.error(seq, where, M.E_EMPTY)
        for i, item in enumerate(seq.value):
            rule = _rule(r, direction, item, f"{where}[{i}]", services)
            if rule is not None:
                rules.append(rule)
    if not any(d in spec for d in directions):
        r.error(spec_node, "spec", N.E_NO_DIRECTIONS)
    if r.error_count > before or named is None:
        return None
    name, name_line, name_col = named
    return NetworkPolicy(
        name=name, file=r.file, line=node.start_mark.line + 1, name_line=name_line,
        name_col=name_col, node_selector=selector, meta=meta, rules=tuple(rules),
    )
