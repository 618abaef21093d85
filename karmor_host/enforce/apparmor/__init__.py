"""The AppArmor enforcer: rule sets as AppArmor profiles, denials from AppArmor's audit records.

render.py (RuleSet -> profiles, pure) · aare.py (globs) · records.py (audit lines -> records)
· attribute.py (record -> rule) · audit.py (where records come from) · backend.py (apparmor_parser)
· enforcer.py (the Enforcer the agent drives). Design and trade-offs: docs/apparmor.md.
"""
