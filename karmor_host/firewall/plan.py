"""NetRuleSet -> the nftables JSON batch that replaces our table (pure: no kernel, no I/O).

Layout of `table inet karmor` (docs/network-policy.md):

    chain input   hook input,  priority filter, policy accept
    chain output  hook output, priority filter, policy accept
        ct state established,related accept        replies and related ICMP pass first
        iifname/oifname "lo" accept                unless a rule of that direction names lo
        icmpv6 neighbour discovery / MLD accept    IPv6 stops working without it
        one nft rule per (rule, IP version, protocol) in evaluation order:
            Allow         <match> counter name r<id> accept
            Block, Audit  <match> jump r<id>
        jump posture_in / posture_out              only when the direction is a whitelist
    chain r<id>, posture_*   (alerting verdicts)
        limit rate over R/second burst B packets counter name <c>_over <verdict>
        log group G snaplen S prefix "karmor:<id>:<in|out>:<verdict>" counter name <c>_log <verdict>
    chain reject  (outgoing Block: goto here)
        meta l4proto tcp reject with tcp reset     the program gets ECONNREFUSED at once
        reject with icmpx admin-prohibited

The log rule runs only while under the rate limit, so a flood costs one counter increment per
packet and never more than R log messages per second per rule; `_over` counts what was not
logged. The batch starts with add+delete+add of the table: one transaction, no window
without rules, and nothing outside our table is named.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from karmor_host.policy.netpolicy.model import Direction, PortSpec, Protocol
from karmor_host.policy.netpolicy.ruleset import NetRule, NetRuleSet
from karmor_host.policy.ruleset import Action, Posture

FAMILY = "inet"
TABLE = "karmor"
LOG_PREFIX = "karmor"
POSTURE_ID = 0  # the rule id of default-posture decisions in log prefixes
CHAIN = {Direction.INGRESS: "input", Direction.EGRESS: "output"}
SHORT = {Direction.INGRESS: "in", Direction.EGRESS: "out"}
_IFNAME = {Direction.INGRESS: "iifname", Direction.EGRESS: "oifname"}
_ADDR = {Direction.INGRESS: "saddr", Direction.EGRESS: "daddr"}  # the peer's address
_L4 = {Protocol.TCP: "tcp", Protocol.UDP: "udp", Protocol.SCTP: "sctp",
       Protocol.ICMP: "icmp", Protocol.ICMPV6: "ipv6-icmp"}
ND_TYPES = ("nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert",
            "mld-listener-query", "mld-listener-report", "mld2-listener-report")
Json = dict[str, Any]


@dataclass(frozen=True)
class PlanOptions:
    nflog_group: int = 4242
    rate_per_second: int = 20  # log messages per second per rule, before suppression
    burst: int = 40
    snaplen: int = 128  # bytes of each logged packet: IP + transport headers suffice
    priority: int = 0  # "filter"


@dataclass(frozen=True)
class Plan:
    batch: tuple[Json, ...]  # the commands, table replacement first
    chains: dict[str, tuple[str, ...]]  # chain -> rule comments in order (for verify)
    counters: tuple[str, ...]

    def document(self) -> Json:
        return {"nftables": list(self.batch)}


def verdict_of(action: Action, direction: Direction) -> str:
    """What happens to a flow that meets an alerting rule or posture."""
    if action is Action.AUDIT:
        return "accept"
    return "drop" if direction is Direction.INGRESS else "reject"


REJECT_CHAIN = "reject"


def _verdict(name: str) -> Json:
    if name == "reject":
        return {"goto": {"target": REJECT_CHAIN}}
    return {name: None}


def log_prefix(rule_id: int, direction: Direction, verdict: str) -> str:
    return f"{LOG_PREFIX}:{rule_id}:{SHORT[direction]}:{verdict}"


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _one_or_set(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else {"set": values}


def _addr_value(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _address_matches(rule: NetRule) -> list[tuple[int, Json | None]]:
    """(IP version, match) per version the rule's peers cover; [(0, None)]: any address."""
    if not rule.peers:
        return [(0, None)]
    out: list[tuple[int, Json | None]] = []
    for version, proto in ((4, "ip"), (6, "ip6")):
        nets = [ipaddress.ip_network(p) for p in rule.peers if (":" in p) == (version == 6)]
        if not nets:
            continue
        # nftables refuses overlapping intervals in one set: merge them first.
        merged = list(ipaddress.collapse_addresses(nets))  # type: ignore[arg-type]
        if merged[0].prefixlen == 0:  # the whole family
            out.append((version, _match({"meta": {"key": "nfproto"}}, f"ipv{version}")))
        else:
            left = {"payload": {"protocol": proto, "field": _ADDR[rule.direction]}}
            out.append((version, _match(left, _one_or_set([_addr_value(n) for n in merged]))))
    return out


def _merge_ranges(specs: list[PortSpec]) -> list[Any]:
    """Ports and ranges as set elements, overlapping or adjacent ones merged, sorted."""
    spans = sorted((s.port or 0, s.last or 0) for s in specs)
    merged: list[list[int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [a if a == b else {"range": [a, b]} for a, b in merged]


def _protocol_matches(rule: NetRule) -> list[tuple[int, Json | None]]:
    """(IP version or 0, match) per protocol of the rule's ports; [(0, None)]: any protocol."""
    if not rule.ports:
        return [(0, None)]
    by_proto: dict[Protocol, list[PortSpec]] = {}
    for spec in rule.ports:
        by_proto.setdefault(spec.protocol, []).append(spec)
    out: list[tuple[int, Json | None]] = []
    for proto in Protocol:  # a fixed order, whatever the file's
        specs = by_proto.get(proto)
        if not specs:
            continue
        l4 = _L4[proto]
        if not proto.has_ports or any(s.port is None for s in specs):
            out.append((proto.family, _match({"meta": {"key": "l4proto"}}, l4)))
        else:
            left = {"payload": {"protocol": l4, "field": "dport"}}
            out.append((proto.family, _match(left, _one_or_set(_merge_ranges(specs)))))
    return out


def rule_matches(rule: NetRule) -> list[list[Json]]:
    """The match expressions of each nft rule a NetRule becomes (one per IP version and
    protocol that can meet; never empty unless the rule can match nothing)."""
    head: list[Json] = []
    if rule.ifaces:
        head.append(_match({"meta": {"key": _IFNAME[rule.direction]}}, _one_or_set(list(rule.ifaces))))
    out = []
    for proto_family, proto_match in _protocol_matches(rule):
        for addr_family, addr_match in _address_matches(rule):
            if proto_family and addr_family and proto_family != addr_family:
                continue  # ICMP with IPv6 peers and the like: cannot meet
            out.append(head + [m for m in (proto_match, addr_match) if m is not None])
    return out


def _comment(rule: NetRule) -> str:
    return f"karmor rule {rule.id} {rule.policy} {rule.field}"[:127]


class _Builder:
    def __init__(self, rs: NetRuleSet, opts: PlanOptions) -> None:
        self.rs = rs
        self.opts = opts
        self.batch: list[Json] = []
        self.chains: dict[str, list[str]] = {}
        self.counters: list[str] = []

    def _t(self, **kw: Any) -> Json:
        return {"family": FAMILY, "table": TABLE, **kw}

    def chain(self, name: str, hook: str | None = None) -> None:
        spec = self._t(name=name)
        if hook:
            spec.update(type="filter", hook=hook, prio=self.opts.priority, policy="accept")
        self.batch.append({"add": {"chain": spec}})
        self.chains[name] = []

    def counter(self, name: str) -> Json:
        self.counters.append(name)
        self.batch.append({"add": {"counter": self._t(name=name)}})
        return {"counter": name}

    def rule(self, chain: str, expr: list[Json], comment: str) -> None:
        self.batch.append({"add": {"rule": self._t(chain=chain, expr=expr, comment=comment)}})
        self.chains[chain].append(comment)

    def alerting_chain(self, name: str, rule_id: int, direction: Direction, verdict: str) -> None:
        """limit-over -> count and decide silently; else log, count and decide."""
        self.chain(name)
        over, logged = self.counter(f"{name}_over"), self.counter(f"{name}_log")
        o = self.opts
        limit = {"limit": {"rate": o.rate_per_second, "per": "second", "burst": o.burst, "inv": True}}
        self.rule(name, [limit, over, _verdict(verdict)], f"{name} over the log rate: not logged")
        log = {"log": {"group": o.nflog_group, "snaplen": o.snaplen,
                       "prefix": log_prefix(rule_id, direction, verdict)}}
        self.rule(name, [log, logged, _verdict(verdict)], f"{name} logged")

    def reject_chain(self) -> None:
        """How an outgoing flow is refused, so the local program fails at once: TCP gets a
        reset (ECONNREFUSED; an ICMP error would only count as a soft error while connect()
        holds the socket, and the SYN would be retried), anything else ICMP "administratively
        prohibited"."""
        self.chain(REJECT_CHAIN)
        tcp = _match({"meta": {"key": "l4proto"}}, "tcp")
        self.rule(REJECT_CHAIN, [tcp, {"reject": {"type": "tcp reset"}}], "karmor: refuse TCP with a reset")
        self.rule(REJECT_CHAIN, [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}],
                  "karmor: refuse the rest with ICMP administratively prohibited")

    def base(self, direction: Direction) -> None:
        chain = CHAIN[direction]
        self.chain(chain, hook=chain)
        state = _match({"ct": {"key": "state"}}, ["established", "related"], op="in")
        self.rule(chain, [state, {"accept": None}], "karmor: replies and related flows")
        if not self.rs.names_iface("lo", direction):
            self.rule(chain, [_match({"meta": {"key": _IFNAME[direction]}}, "lo"), {"accept": None}],
                      "karmor: loopback (no rule names lo)")
        nd = [_match({"meta": {"key": "l4proto"}}, "ipv6-icmp"),
              _match({"payload": {"protocol": "icmpv6", "field": "type"}}, {"set": list(ND_TYPES)})]
        self.rule(chain, nd + [{"accept": None}], "karmor: IPv6 neighbour discovery and MLD")

    def policy_rules(self, direction: Direction) -> None:
        chain = CHAIN[direction]
        for r in self.rs.rules:
            if r.direction is not direction:
                continue
            comment = _comment(r)
            if r.action is Action.ALLOW:
                tail = [self.counter(f"r{r.id}"), {"accept": None}]
            else:
                self.alerting_chain(f"r{r.id}", r.id, direction, verdict_of(r.action, direction))
                tail = [{"jump": {"target": f"r{r.id}"}}]
            for matches in rule_matches(r):
                self.rule(chain, matches + tail, comment)
        if direction in self.rs.whitelists:
            name = f"posture_{SHORT[direction]}"
            action = Action.AUDIT if self.rs.posture is Posture.AUDIT else Action.BLOCK
            self.alerting_chain(name, POSTURE_ID, direction, verdict_of(action, direction))
            self.rule(chain, [{"jump": {"target": name}}], f"karmor: default posture {self.rs.posture.value}")


def build(rs: NetRuleSet, opts: PlanOptions = PlanOptions()) -> Plan:
    """The whole table for `rs`, even when `rs` is empty (the caller decides to remove
    the table instead; benchmarks install the empty one)."""
    b = _Builder(rs, opts)
    table = {"family": FAMILY, "name": TABLE}
    b.batch += [{"add": {"table": table}}, {"delete": {"table": table}}, {"add": {"table": table}}]
    for direction in Direction:
        b.base(direction)
    b.reject_chain()
    for direction in Direction:
        b.policy_rules(direction)
    return Plan(tuple(b.batch), {k: tuple(v) for k, v in b.chains.items()}, tuple(b.counters))


def removal() -> tuple[Json, ...]:
    """Remove our table whether or not it exists (add is a no-op when it does)."""
    table = {"family": FAMILY, "name": TABLE}
    return ({"add": {"table": table}}, {"delete": {"table": table}})
