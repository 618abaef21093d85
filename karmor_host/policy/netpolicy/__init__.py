"""KubeArmorNetworkPolicy: validated model, compiler and the NetRuleSet the firewall consumes.

    compile_network(policies, identity, posture) -> NetRuleSet
    network_policies(policies) / host_policies(policies): split a mixed list from the loader
"""

from __future__ import annotations

from karmor_host.policy.netpolicy.compile import compile_network, host_policies, network_policies
from karmor_host.policy.netpolicy.model import Direction, NetRuleSpec, NetworkPolicy, PortSpec, Protocol
from karmor_host.policy.netpolicy.ruleset import NetRule, NetRuleSet

__all__ = [
    "Direction", "NetRule", "NetRuleSet", "NetRuleSpec", "NetworkPolicy", "PortSpec", "Protocol",
    "compile_network", "host_policies", "network_policies",
]
