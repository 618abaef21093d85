from pathlib import Path

import pytest

from karmor_host import config
from karmor_host.errors import ConfigError
from karmor_host.policy.ruleset import Category, Posture

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_parses_to_the_defaults():
    shipped = config.load(REPO / "config" / "karmor-host.yaml")
    defaults = config.parse("", "x")
    for attr in ("policy_dir", "enforcer", "postures", "visibility", "throttle", "cluster", "hostname",
                 "log_level", "ring_buffer_bytes", "ignore_prefixes", "journald"):
        assert getattr(shipped, attr) == getattr(defaults, attr), attr


def test_values_are_read():
    cfg = config.parse(
        "enforcer: none\n"
        "defaultPosture: {file: block}\n"
        "visibility: process,file\n"
        "throttle: {maxAlertsPerSecond: 3, quietSeconds: 5}\n"
        "identity: {cluster: prod, hostname: web-1}\n",
        "c.yaml",
    )
    assert cfg.enforcer == "none"
    assert cfg.postures[Category.FILE] is Posture.BLOCK
    assert cfg.postures[Category.NETWORK] is Posture.AUDIT
    assert cfg.visibility == {"process", "file"}
    assert (cfg.throttle.max_per_second, cfg.throttle.quiet_seconds) == (3, 5)
    assert (cfg.cluster, cfg.hostname) == ("prod", "web-1")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("enforcer: apparmr\n", "c.yaml:1:11: enforcer: must be one of auto, bpflsm, apparmor, selinux, none, not 'apparmr'"),
        ("policyDirr: /x\n", "c.yaml:1:1: policyDirr: unknown key (did you mean 'policyDir'?)"),
        ("policyDir: etc/x\n", "c.yaml:1:12: policyDir: must be an absolute path, not 'etc/x'"),
        ("throttle:\n  maxAlertsPerSecond: 0\n", "c.yaml:2:23: throttle.maxAlertsPerSecond: must be an integer in 1..1000000, not 0"),
        ("defaultPosture:\n  file: deny\n", "c.yaml:2:9: defaultPosture.file: must be one of audit, block, not 'deny'"),
        ("visibility: [process, disk]\n", "c.yaml:1:13: visibility: unknown categories ['disk']"),
        ("monitor: {ringBufferBytes: 5000}\n", "c.yaml:1:28: monitor.ringBufferBytes: must be a power of two, not 5000"),
        ("sinks: {journald: {enabled: maybe}}\n", "c.yaml:1:29: sinks.journald.enabled: must be true or false, not 'maybe'"),
        ("enforcer: [a\n", "c.yaml:2:1: YAML syntax error"),
    ],
)
def test_bad_config_names_file_line_and_key(text, expected):
    with pytest.raises(ConfigError) as exc:
        config.parse(text, "c.yaml")
    assert expected in str(exc.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        config.parse("enforcer: x\nlogLevel: loud\n", "c.yaml")
    assert "c.yaml:1:" in str(exc.value) and "c.yaml:2:" in str(exc.value)


def test_missing_file_is_an_error_unless_allowed(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")
    assert config.load(tmp_path / "nope.yaml", missing_ok=True).enforcer == "auto"
