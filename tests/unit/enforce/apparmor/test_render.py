"""What render() decides, rule by rule: which profiles exist, what each rule becomes, and
how every rule AppArmor cannot carry is reported instead (the goldens show the text)."""

from __future__ import annotations

from karmor_host.enforce.apparmor.render import APPARMOR, GLOBAL, MONITOR, profile_names, render, slug
from karmor_host.policy.ruleset import Category, Posture
from tests.unit.enforce.apparmor.helpers import fixture_ruleset, policy, ruleset_of


def _status(plan, rs, target):
    (rule,) = [r for r in rs.rules if r.target == target]
    (line,) = [s for s in plan.rules if s.rule_id == rule.id]
    return rule, line


def test_global_rules_attach_to_every_new_program_and_source_rules_to_their_program():
    rs = fixture_ruleset("from-source")
    plan = render(rs)
    glob = plan.profile(GLOBAL)
    assert glob is not None and glob.attachment == "/**"
    nginx = plan.profile("karmor-src-usr.sbin.nginx")
    assert nginx is not None and nginx.attachment == '"/usr/sbin/nginx"' and nginx.source == "/usr/sbin/nginx"
    shadow = next(r for r in rs.rules if r.target == "/etc/shadow")
    # A process is confined by one profile, so every source profile carries the global rules.
    assert all(shadow.id in p.rule_ids for p in plan.profiles)
    bash_from_nginx = next(r for r in rs.rules if r.target == "/usr/bin/bash")
    assert bash_from_nginx.id in nginx.rule_ids and bash_from_nginx.id not in glob.rule_ids
    assert 'audit deny "/usr/bin/bash" x,' in nginx.text


def test_children_never_inherit_a_profile_they_do_not_run():
    for name in ("from-source", "blocks", "whitelist-block", "odd-paths", "audits"):
        for prof in render(fixture_ruleset(name)).profiles:
            for line in prof.text.splitlines():
                rule = line.strip()
                if rule.startswith("#"):
                    continue
                # ix/cx would keep a child in this profile (fromSource rules of the parent)
                assert not rule.endswith((" ix,", " pix,", " cix,", " Pix,")), (prof.name, rule)


def test_every_profile_is_ours_and_refuses_escape_to_unconfined():
    plan = render(fixture_ruleset("from-source"))
    assert plan.names and all(n == GLOBAL or n.startswith("karmor-src-") for n in plan.names)
    for prof in plan.profiles:
        assert "audit deny change_profile -> unconfined," in prof.text


def test_block_rules_are_audited_denials_with_the_file_flags():
    rs = fixture_ruleset("blocks")
    text = render(rs).profile(GLOBAL).text
    expected = [
        'audit deny "/etc/shadow" rw,',
        'audit deny "/etc/hosts" w,',  # readOnly: reads pass
        'audit deny other "/home/alice/notes" rw,',  # ownerOnly: others denied
        'audit deny owner "/home/alice/plan" w,',  # both: the owner may read
        'audit deny other "/home/alice/plan" rw,',
        'audit deny "/etc/ssh/**" w,',
        'audit deny "/var/secret/*" rw,',
        'audit deny "/var/secret/*/" rw,',
        'audit deny "/home/*/.ssh/id_*" rw,',
        'audit deny "/usr/bin/nc.openbsd" x,',
        'audit deny "/{**/,}socat" x,',
        'audit deny other "/usr/local/bin/tool" x,',
        'audit deny "/tmp/**" x,',
        'audit deny "/dev/shm/*" x,',
    ]
    for line in expected:
        assert f"  {line}\n" in text, line
    assert all(s.mode == "enforced" and s.by == APPARMOR for s in render(rs).rules)


def test_network_and_capability_blocks_and_what_apparmor_cannot_tell_apart():
    rs = fixture_ruleset("from-source")
    plan = render(rs)
    py = plan.profile("karmor-src-usr.bin.python3.11").text
    assert "audit deny network inet stream," in py and "audit deny network inet6 dgram," in py
    nginx = plan.profile("karmor-src-usr.sbin.nginx").text
    assert "audit deny network raw," in nginx and "audit deny capability net_raw," in nginx
    _, icmp = _status(plan, rs, "icmp")
    assert (icmp.mode, icmp.by) == ("audit-only", MONITOR)
    assert "family and type, not its protocol" in icmp.reason and "Audit (Block)" in icmp.reason
    _, tcp = _status(plan, rs, "tcp")
    assert tcp.mode == "enforced" and "SCTP" in tcp.reason


def test_audit_rules_in_apparmor_only_where_an_audit_line_is_exact():
    rs = fixture_ruleset("audits")
    plan = render(rs)
    text = plan.profile(GLOBAL).text
    assert 'audit "/etc/passwd" w,' in text  # readOnly audit: writes
    assert 'audit other "/etc/sudoers" rw,' in text
    assert 'audit other "/tmp/**" pux,' in text
    modes = {r.target: _status(plan, rs, r.target)[1] for r in rs.rules}
    assert modes["packet"].by == MONITOR and "every send and receive" in modes["packet"].reason
    # The monitor sees capabilities only from Linux 6.14: AppArmor audits them, and says how often.
    assert modes["sys_ptrace"].by == APPARMOR and "once per profile and CPU" in modes["sys_ptrace"].reason
    assert "audit capability sys_ptrace," in plan.profile("karmor-src-usr.bin.gdb").text
    assert modes["init_module"].by == MONITOR and modes["init_module"].mode == "monitor"
    # The monitor-only rules add no profile of their own (tcpdump's packet audit).
    assert plan.names == (GLOBAL, "karmor-src-usr.bin.gdb")


def test_block_posture_whitelist_grants_only_its_allow_rules():
    rs = fixture_ruleset("whitelist-block")
    plan = render(rs)
    assert plan.whitelists == {Category.FILE, Category.NETWORK, Category.CAPABILITIES}
    daemon = plan.profile("karmor-src-usr.sbin.daemon")
    assert daemon.restricted == plan.whitelists
    body = daemon.text
    for base_grant in ("/{,**} rwlkm,", "/** pux,", "  network,", "  capability,", "  unix,"):
        assert base_grant not in body
    assert '"/usr/lib/**" rmk,' in body and '"/var/lib/daemon/**" rwlkm,' in body
    assert 'owner "/etc/daemon.conf" rmk,' in body and "network inet stream," in body
    assert "capability net_bind_service," in body and '"/usr/sbin/daemon" pux,' in body
    # Programs outside the whitelist keep the base grants.
    glob = plan.profile(GLOBAL)
    assert glob.restricted == frozenset() and "/{,**} rwlkm," in glob.text
    # A global Audit rule would grant inside the whitelist: the monitor reports it.
    _, passwd = _status(plan, rs, "/etc/passwd")
    assert passwd.by == MONITOR and "karmor-src-usr.sbin.daemon" in passwd.reason


def test_audit_posture_whitelists_file_and_network_to_the_monitor_capabilities_audited():
    rs = fixture_ruleset("whitelist-audit")
    plan = render(rs)
    assert plan.whitelists == frozenset() and plan.audited == {Category.CAPABILITIES}
    allows = {r.target: _status(plan, rs, r.target)[1] for r in rs.rules if r.policy == "daemon-whitelist"}
    cap = allows.pop("net_bind_service")
    assert cap.by == APPARMOR and "audits every capability no Allow rule names" in cap.reason
    assert allows and all(s.mode == "monitor" and "complain mode" in s.reason for s in allows.values())
    daemon = plan.profile("karmor-src-usr.sbin.daemon").text
    assert "  capability,\n" in daemon  # nothing is denied
    assert "audit capability chown," in daemon and "audit capability net_bind_service," not in daemon
    assert "audit capability" not in plan.profile(GLOBAL).text  # the whitelist confines the daemon only
    _, passwd = _status(plan, rs, "/etc/passwd")
    assert passwd.by == APPARMOR  # no whitelist in force: an audit line is exact again


def test_a_whitelist_with_an_inexpressible_allow_rule_is_not_enforced_by_apparmor():
    rs = fixture_ruleset("network-whitelist-icmp")
    plan = render(rs)
    assert Category.NETWORK not in plan.whitelists
    _, udp = _status(plan, rs, "udp")
    assert udp.mode == "audit-only" and "Audit (Allow)" in udp.reason and "icmp" in udp.reason
    ping = plan.profile("karmor-src-usr.bin.ping")
    assert "  network,\n" in ping.text  # the base keeps its network grant


def test_global_whitelist_restricts_karmor_global():
    plan = render(fixture_ruleset("global-whitelist"))
    glob = plan.profile(GLOBAL)
    assert Category.FILE in glob.restricted and "/{,**} rwlkm," not in glob.text
    assert '"/usr/bin/*" pux,' in glob.text
    # capabilities: the only Allow rule has fromSource, so only chown is restricted
    assert Category.CAPABILITIES not in glob.restricted
    assert Category.CAPABILITIES in plan.profile("karmor-src-usr.bin.chown").restricted


def test_a_whitelisted_global_profile_leaves_the_loader_free_to_reload():
    rs = ruleset_of(policy("lock", """\
  file:
    matchDirectories:
    - dir: /usr/
      recursive: true
      readOnly: true
      action: Allow
    matchPaths:
    - path: /etc/shadow
      action: Block
"""), {Category.FILE: Posture.BLOCK})
    plan = render(rs, loader="/opt/aa/apparmor_parser")
    loader = plan.profile("karmor-loader-opt.aa.apparmor_parser")
    assert loader is not None and loader.attachment == '"/opt/aa/apparmor_parser"'
    assert loader.restricted == frozenset() and "/{,**} rwlkm," in loader.text
    assert 'audit deny "/etc/shadow" rw,' in loader.text and '"/usr/**" rmk,' not in loader.text
    # No whitelist on karmor-global: the loader runs under karmor-global like anything else.
    unrestricted = render(ruleset_of(policy("b", "  file:\n    matchPaths:\n    - path: /etc/shadow\n"
                                              "      action: Block\n")), loader="/opt/aa/apparmor_parser")
    assert unrestricted.names == (GLOBAL,)


def test_no_profiles_when_apparmor_carries_nothing():
    plan = render(fixture_ruleset("syscalls-only"))
    assert plan.profiles == () and "no profiles" in plan.text()


def test_profile_names_are_readable_and_unique():
    assert slug("/usr/sbin/nginx") == "usr.sbin.nginx"
    assert slug("/opt/my app/run*") == "opt.my_app.run_"
    names = profile_names(["/opt/a b", "/opt/a_b", "/usr/bin/x"])
    assert names["/usr/bin/x"] == "karmor-src-usr.bin.x"
    assert names["/opt/a b"] != names["/opt/a_b"]
    assert all(n.startswith("karmor-src-opt.a_b-") for k, n in names.items() if k.startswith("/opt"))


def test_canonical_spellings_are_said_in_the_output():
    text = policy("canon", """\
  action: Block
  file:
    matchPaths:
    - path: /etc/shadow
      fromSource:
      - path: /bin/cat
""")
    from karmor_host.policy import compile_policies, load_text
    from tests.unit.enforce.apparmor.helpers import IDENTITY

    pols = load_text(text, "p.yaml").policies
    rs = compile_policies(pols, IDENTITY, {}, resolve=lambda p: p.replace("/bin/", "/usr/bin/", 1)
                          if p.startswith("/bin/") else p)
    out = render(rs).text()
    assert "# fromSource /bin/cat is /usr/bin/cat here (symlinks resolved)" in out
    assert 'profile karmor-src-usr.bin.cat "/usr/bin/cat"' in out


def test_reported_is_what_apparmor_carries():
    rs = ruleset_of(policy("mix", """\
  file:
    matchPaths:
    - path: /etc/shadow
      action: Block
    - path: /etc/passwd
      action: Audit
  syscalls:
    matchSyscalls:
    - syscall: [ptrace]
"""), {Category.FILE: Posture.AUDIT})
    plan = render(rs)
    by_target = {r.target: r.id for r in rs.rules}
    assert plan.reported() == {by_target["/etc/shadow"], by_target["/etc/passwd"]}
