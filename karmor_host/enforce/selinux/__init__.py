"""The SELinux enforcer: rule sets as one generated CIL module, denials from AVC records.

facts.py (what render needs to know about the policy and the files, plain data) · render.py
(RuleSet + facts -> CIL module, labels, rule statuses, AVC index; pure) · policyfacts.py (facts
from the installed policy, via setools) · inventory.py (file labels and mounts) · avc.py (AVC
records -> rules) · audit.py (where AVC records come from) · backend.py (semodule, secilc,
labels, state) · enforcer.py (the Enforcer the agent drives). Design: docs/selinux.md.
"""
