"""The .deb as a user meets it, in a Debian 12 guest with systemd as PID 1 (guest/test.sh).

Each test is one step of guest/test.sh, in order: a step that failed, or that the guest never
reached, fails here with the guest's own detail and the tail of its logs.
"""

from __future__ import annotations

import pytest

# (check name, what it shows) in the order guest/test.sh runs them
STEPS = [
    ("guest_lsms", "the guest kernel runs AppArmor and BPF-LSM"),
    ("guest_apparmor", "AppArmor is enabled"),
    ("install", "apt install ./karmor-host_*.deb works offline"),
    ("installed_files", "binary, BPF objects, unit, conffile, root-only empty policy dir, examples, man page"),
    ("service_active", "the service was enabled and started by the package and reported READY=1"),
    ("service_properties", "Type=notify, enabled, running, watchdog, no restarts, STATUS= text, no drop-ins"),
    ("start_errors", "the agent logs no errors when it starts in its sandbox"),
    ("journal_ready", "the agent's own 'ready' log is in journalctl -u karmor-host"),
    ("status_command", "karmor-host status reports a running agent"),
    ("probe_bpflsm", "karmor-host probe finds BPF-LSM and AppArmor usable in the guest"),
    ("unit_verify", "systemd-analyze verify is clean"),
    ("sandbox", "the unit's sandbox keeps what the agent needs and removes the rest"),
    ("block_after_copy", "with an LSM enforcer, a Block policy copied into /etc/karmor/policies takes effect"),
    ("policy_applied", "a policy copied into /etc/karmor/policies is applied without a restart"),
    ("audit_alert", "an Audit rule's alert reaches journalctl -u karmor-host with its KARMOR_* fields"),
    ("logs_command", "karmor-host logs reads the alert back"),
    ("block_rule", "a Block rule: EACCES + Block with an LSM enforcer, Audit (Block) without"),
    ("reload", "systemctl reload re-reads the edited conffile without a restart"),
    ("restart", "systemctl restart: enforcement (or alerting) continues"),
    ("apparmor_enforcer", "enforcer: apparmor under the same unit: EACCES and a Block alert from AppArmor"),
    ("boot_active", "after a reboot the service is enabled and active"),
    ("boot_order", "at boot the agent is ready before basic.target (before ordinary services)"),
    ("boot_policies", "the policies are active again after the reboot"),
    ("boot_enforces", "the Block rule still holds after the reboot"),
    ("upgrade", "apt install of a newer build: enforcement (or alerting) continues"),
    ("upgrade_version", "the newer version is installed"),
    ("upgrade_restarted", "the upgrade restarted the service"),
    ("upgrade_conffile", "the admin's edit of /etc/karmor/karmor-host.yaml survived the upgrade"),
    ("purge_seeded", "kernel state of ours was present before the purge"),
    ("purge", "apt purge works"),
    ("purge_leftovers", "no files, state, pinned objects, profiles or processes left after purge"),
]


@pytest.mark.parametrize("name,what", STEPS, ids=[s[0] for s in STEPS])
def test_step(guest, name: str, what: str) -> None:
    records = guest.checks.get(name)
    if not records:
        pytest.fail(f"{name} ({what}): the guest never got to this step\n{guest.context()}", pytrace=False)
    failed = [r for r in records if not r["ok"]]
    if failed:
        detail = "\n".join(f"[boot {r['boot']}] {r['detail']}" for r in failed)
        pytest.fail(f"{name} ({what}) failed:\n{detail}\n\n{guest.context()}", pytrace=False)


def test_no_unknown_steps(guest) -> None:
    """Every step the guest recorded is listed above (so none is silently ignored)."""
    unknown = sorted(set(guest.checks) - {s[0] for s in STEPS})
    assert not unknown, f"guest/test.sh recorded steps this file does not check: {unknown}"


def test_guest_script_finished(guest) -> None:
    assert guest.run.passed, guest.context()
    assert guest.run.boots == 2, f"expected 2 boots (install, reboot): {guest.run.summary()}"


# Under TCG the guest runs 5-10x slower than a real machine (vm-testing.md); these bounds catch
# a broken path (a policy applied by the 30 s rescan instead of inotify, an alert stuck in a
# queue), while the values themselves are printed in the summary.
# systemd-analyze security's "overall exposure" of the shipped unit (3.6 when written down in
# docs/packaging.md); a change that loosens the sandbox has to raise this on purpose.
MAX_EXPOSURE = 4.0

LATENCY_BOUNDS = {
    "policy_apply_seconds": 10.0,
    "audit_alert_seconds": 10.0,
}


@pytest.mark.parametrize("metric,bound", sorted(LATENCY_BOUNDS.items()))
def test_latency(guest, metric: str, bound: float) -> None:
    value = guest.metrics.get(metric)
    assert value is not None, f"{metric} was not measured\n{guest.context()}"
    assert float(value) <= bound, f"{metric} = {value} s, above {bound} s even for TCG"


def test_security_exposure(guest) -> None:
    """systemd-analyze security: the score docs/packaging.md explains must not get worse."""
    value = guest.metrics.get("security_exposure")
    assert value not in (None, ""), f"no systemd-analyze security score\n{guest.context()}"
    assert float(value) <= MAX_EXPOSURE, (
        f"systemd-analyze security karmor-host: exposure {value} > {MAX_EXPOSURE}; see "
        f"{guest.run.results / 'security.txt'} and docs/packaging.md")


def test_block_latency(guest) -> None:
    """With an LSM enforcer: a Block policy dropped into /etc/karmor/policies denies its target
    within seconds of the copy (1.3 s measured under TCG)."""
    value = guest.metrics.get("block_after_copy_seconds")
    detail = " ".join(r["detail"] for r in guest.checks.get("block_after_copy", []))
    if "alerts only" in detail:
        assert value is None, "alerts-only enforcer, yet a block latency was measured"
        return
    assert value is not None, f"no block latency measured: {detail}\n{guest.context()}"
    assert float(value) <= 10.0, f"the Block policy took {value} s to take effect, even for TCG"
