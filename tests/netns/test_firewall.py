"""The firewall table in a namespace, with real traffic between two namespaces.

A holds the table (applied by tests/netns/fwctl.py through the backend), B is its peer.
Every assertion is about packets that really crossed (or did not cross) the veth pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.netns.topology import PYTHON, Topology
from tests.policytext import network_policy

pytestmark = pytest.mark.kernel

def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(network_policy(name, body))
    return path


def fw(topo: Topology, *args: str) -> object:
    r = topo.py(topo.a, "tests.netns.fwctl", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def apply(topo: Topology, path: Path, posture: str = "block") -> dict:
    out = fw(topo, "apply", str(path), "--posture", posture)
    assert isinstance(out, dict)
    return out


def test_allowed_port_passes_blocked_port_fails_and_a_range(topo, tmp_path) -> None:
    topo.serve(topo.a, tcp=(8080, 8081, 9000, 9005, 9010, 9011))
    p = write(tmp_path, "web", """\
  ingress:
  - ports:
    - protocol: TCP
      port: 8080
    - protocol: TCP
      port: 9000
      endPort: 9010
  action: Allow
""")
    assert apply(topo, p) == {"ok": True, "verify": [], "nft_rules": 12}
    host = topo.a4()
    assert topo.connect(topo.b, host, 8080)
    assert not topo.connect(topo.b, host, 8081, timeout=0.5)
    assert topo.connect(topo.b, host, 9000) and topo.connect(topo.b, host, 9005) and topo.connect(topo.b, host, 9010)
    assert not topo.connect(topo.b, host, 9011, timeout=0.5)
    # audit posture: the whitelist alerts but lets everything through
    assert apply(topo, p, posture="audit")["ok"]
    assert topo.connect(topo.b, host, 8081) and topo.connect(topo.b, host, 9011)


def test_service_name_and_udp(topo, tmp_path) -> None:
    topo.serve(topo.a, tcp=(80, 81), udp=(53, 54))
    p = write(tmp_path, "svc", """\
  ingress:
  - ports:
    - protocol: TCP
      port: http
    - protocol: UDP
      port: domain
  action: Allow
""")
    assert apply(topo, p)["ok"]
    assert topo.connect(topo.b, topo.a4(), 80) and not topo.connect(topo.b, topo.a4(), 81, timeout=0.5)
    assert topo.udp(topo.b, topo.a4(), 53) and not topo.udp(topo.b, topo.a4(), 54, timeout=0.5)


def test_ipv6_cidr(topo, tmp_path) -> None:
    topo.serve(topo.a, tcp=(7000,))
    p = write(tmp_path, "v6", f"""\
  ingress:
  - from:
    - ipBlock:
        cidr: {topo.net6(0)}
    ports:
    - protocol: TCP
      port: 7000
  action: Allow
""")
    assert apply(topo, p)["ok"]
    assert topo.connect(topo.b, topo.a6(0), 7000)  # from fd00:n:1::2, inside the CIDR
    assert not topo.connect(topo.b, topo.a6(1), 7000, timeout=0.5)  # from fd00:n:2::2, outside
    assert not topo.connect(topo.b, topo.a4(0), 7000, timeout=0.5)  # IPv4 is not in an IPv6 CIDR


def test_icmp_and_icmpv6_are_told_apart(topo, tmp_path) -> None:
    assert topo.ping(topo.b, topo.a4()) and topo.ping(topo.b, topo.a6())
    v4 = write(tmp_path, "no-ping", "  ingress:\n  - ports:\n    - protocol: icmp\n  action: Block\n")
    assert apply(topo, v4)["ok"]
    assert not topo.ping(topo.b, topo.a4(), timeout=0.5) and topo.ping(topo.b, topo.a6())
    v6 = write(tmp_path, "no-ping6", "  ingress:\n  - ports:\n    - protocol: ICMPv6\n  action: Block\n")
    assert apply(topo, v6)["ok"]
    # echo requests are blocked, neighbour discovery still passes: IPv4 and TCP over IPv6 work
    assert topo.ping(topo.b, topo.a4()) and not topo.ping(topo.b, topo.a6(), timeout=0.5)
    topo.serve(topo.a, tcp=(7150,))
    for ns in (topo.a, topo.b):  # forget the neighbours: the connect must solicit them anew
        assert topo.run(ns, "ip", "-6", "neigh", "flush", "all").returncode == 0
    assert topo.connect(topo.b, topo.a6(), 7150)


def test_iface_scoped_rule(topo, tmp_path) -> None:
    topo.serve(topo.a, tcp=(7100,))
    p = write(tmp_path, "iface", """\
  ingress:
  - iface: [a0]
    ports:
    - protocol: TCP
      port: 7100
  action: Allow
""")
    assert apply(topo, p)["ok"]
    assert topo.connect(topo.b, topo.a4(0), 7100) and topo.connect(topo.b, topo.a6(0), 7100)
    assert not topo.connect(topo.b, topo.a4(1), 7100, timeout=0.5)  # arrives on a1


def test_block_rule_and_replies_to_allowed_egress_under_block_posture(topo, tmp_path) -> None:
    topo.serve(topo.b, tcp=(7200, 7201))
    topo.serve(topo.a, tcp=(7300,))
    p = write(tmp_path, "egress", f"""\
  egress:
  - to:
    - ipBlock:
        cidr: {topo.net4(0)}
    ports:
    - protocol: TCP
      port: 7200
    action: Allow
  - to:
    - ipBlock:
        cidr: {topo.b4(0)}/32
    ports:
    - protocol: TCP
      port: 7201
    action: Block
  ingress:
  - ports:
    - protocol: TCP
      port: 7300
    action: Allow
""")
    assert apply(topo, p)["ok"]
    # Both directions are whitelists with a block posture: the reply packets of A's
    # connection to B:7200 come back in through input and pass only as established.
    r = topo.py(topo.a, "tests.netns.peer", "hold", topo.b4(0), "7200", "--seconds", "1")
    assert r.returncode == 0, r.stdout
    refused = topo.py(topo.a, "tests.netns.peer", "connect", topo.b4(0), "7201", "--timeout", "3")
    assert refused.returncode == 1 and refused.stdout.startswith("ConnectionRefusedError")  # Block: a reset
    assert not topo.connect(topo.a, topo.b4(1), 7200, timeout=0.5)  # not in the allowed CIDR
    assert topo.connect(topo.b, topo.a4(0), 7300)  # and B's replies from A pass out


def test_update_swaps_rules_without_a_gap(topo, tmp_path) -> None:
    """A connection loop runs while the table is replaced 60 times: the allowed port never
    fails and the blocked one never passes (a window with no table would let it through)."""
    topo.serve(topo.b, tcp=(7400, 7401))
    first = write(tmp_path, "swap-a", f"""\
  egress:
  - to:
    - ipBlock:
        cidr: {topo.net4(0)}
    ports:
    - protocol: TCP
      port: 7400
  action: Allow
""")
    second = write(tmp_path, "swap-b", f"""\
  egress:
  - ports:
    - protocol: TCP
      port: 7400
    - protocol: UDP
      port: 53
  - to:
    - ipBlock:
        cidr: {topo.net6(1)}
  action: Allow
""")
    assert apply(topo, first)["ok"]
    loop = topo.spawn(topo.a, PYTHON, "-m", "tests.netns.peer",
                      "loop", "--ok", f"{topo.b4(0)}:7400", "--blocked", f"{topo.b4(0)}:7401", "--seconds", "6")
    swapped = fw(topo, "swap", str(first), str(second), "--times", "60")
    out, err = loop.communicate(timeout=30)
    counts = json.loads(out)
    assert swapped == {"ok": True, "errors": []}
    assert counts["ok_failed"] == 0 and counts["blocked_passed"] == 0, counts
    assert counts["ok_passed"] > 20 and counts["blocked_failed"] > 20, counts


def test_remove_takes_our_table_and_nothing_else(topo, tmp_path) -> None:
    p = write(tmp_path, "x", "  ingress:\n  - {}\n  action: Audit\n")
    assert fw(topo, "foreign-add") == {"ok": True}
    assert apply(topo, p)["ok"]
    live = fw(topo, "live")
    assert isinstance(live, dict) and {"input", "output"} <= set(live)
    assert fw(topo, "remove") == {"existed": True}
    assert fw(topo, "live") is None
    assert fw(topo, "foreign-live") == ["someone else's"]
    assert fw(topo, "remove") == {"existed": False}


def test_lock_out_guard_refuses_and_keeps_the_last_rules(topo, tmp_path) -> None:
    """An established session to port 22 on A (our stand-in for sshd): an ingress
    whitelist that does not allow it is refused; the table stays as it was."""
    topo.serve(topo.a, tcp=(22, 7500))
    keep = write(tmp_path, "keep", "  egress:\n  - {}\n  action: Audit\n")
    assert apply(topo, keep)["ok"]
    before = fw(topo, "live")
    session = topo.spawn(topo.b, PYTHON, "-m", "tests.netns.peer", "hold",
                         topo.a4(0), "22", "--seconds", "30", wait_for="connected")
    assert fw(topo, "sessions") == [f"{topo.b4(0)}:{_peer_port(topo)} -> {topo.a4(0)}:22 via a0"]
    risky = write(tmp_path, "risky", "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 7500\n  action: Allow\n")
    out = apply(topo, risky)
    assert not out["ok"] and "the established SSH session" in out["error"] and "name port 22" in out["error"]
    assert fw(topo, "live") == before
    explicit = write(tmp_path, "explicit", "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 7500\n"
                                           "    - protocol: TCP\n      port: ssh\n  action: Allow\n")
    assert apply(topo, explicit)["ok"]
    assert session.poll() is None  # the session is still up


def _peer_port(topo: Topology) -> int:
    r = topo.py(topo.a, "tests.netns.fwctl", "sessions")
    (text,) = json.loads(r.stdout)
    return int(text.split(" -> ")[0].rsplit(":", 1)[1])
