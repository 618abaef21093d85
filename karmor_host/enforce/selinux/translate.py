"""`karmor-host policy translate --enforcer selinux`: the CIL module the enforcer would install
for a rule set on this host, with the facts it would use -- the installed policy and the
files' contexts (the kernel's labels, or file_contexts where SELinux is not enabled). Labels
karmor set earlier count as their recorded originals. Nothing is installed or relabelled.
"""

from __future__ import annotations

from pathlib import Path

from karmor_host.enforce.selinux import inventory, policyfacts
from karmor_host.enforce.selinux.backend import Backend
from karmor_host.enforce.selinux.enforcer import STATE_DIR_NAME, agent_protection
from karmor_host.enforce.selinux.render import plan, wanted
from karmor_host.errors import EnforcerError
from karmor_host.paths import default_paths
from karmor_host.policy.ruleset import RuleSet


def text(ruleset: RuleSet, root: Path = Path("/")) -> str:
    originals = Backend(default_paths().state_dir / STATE_DIR_NAME).read_state().originals()
    inv = inventory.scan(wanted(ruleset), originals)
    types = {i.type for i in inv.inodes.values() if i.type}
    try:
        facts = policyfacts.read(policyfacts.policy_file(root), types)
    except policyfacts.PolicyUnavailable as exc:
        raise EnforcerError(f"cannot translate for SELinux: {exc} (install selinux-policy-default or "
                            "selinux-policy-targeted, and python3-setools)") from exc
    return plan(ruleset, facts, inv, agent_protection(None)).cil
