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
                 "log_level", "ring_buffer_bytes", "ignore_prefixes", "journald", "remote_sinks"):
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


# --- sinks.remote ---------------------------------------------------------------------------


def test_shipped_remote_sink_example_shows_the_defaults():
    """Uncommented, the example in the shipped file is a sink with every default value."""
    text = (REPO / "config" / "karmor-host.yaml").read_text()
    example = text[text.index("  # remote:\n"):]
    lines = [line.replace("  # ", "  ", 1) for line in example.splitlines() if line.startswith("  # ")]
    cfg = config.parse("sinks:\n" + "\n".join(lines) + "\n", "example.yaml")
    sink, other = cfg.remote_sinks
    assert sink == config.RemoteSinkConfig(name="central", type="forward", host="10.0.0.5", port=24224)
    assert other == config.RemoteSinkConfig(name="syslog-10.0.0.6-6514", type="syslog", host="10.0.0.6", port=6514)
    # and the dataclass defaults are the table's
    d = config.REMOTE_SINK_DEFAULTS
    assert (sink.records, sink.tag, sink.format, sink.facility) == (frozenset(d["records"]), d["tag"],
                                                                   d["format"], d["facility"])
    assert (sink.spool.max_bytes, sink.spool.overflow) == (d["spool"]["maxBytes"], d["spool"]["overflow"])
    assert (sink.tls.enabled, sink.tls.verify) == (d["tls"]["enabled"], d["tls"]["verify"])
    assert (sink.send_timeout, sink.retry_max, sink.batch_records) == (
        d["sendTimeoutSeconds"], d["retryMaxSeconds"], d["batchRecords"])


def test_remote_sinks_are_read():
    cfg = config.parse(
        "sinks:\n"
        "  remote:\n"
        "  - type: forward\n"
        "    address: 127.0.0.1:24224\n"
        "    tag: host.sec\n"
        "    sharedKeyFile: /etc/karmor/fwd.key\n"
        "    records: [alerts, telemetry]\n"
        "    tls: {enabled: true, caFile: /etc/ssl/ca.pem, certFile: /etc/c.pem, keyFile: /etc/k.pem}\n"
        "    spool: {maxBytes: 1048576, overflow: drop_newest, dir: /srv/spool}\n"
        "  - name: siem\n"
        "    type: syslog\n"
        "    address: '[::1]:6514'\n"
        "    format: json\n"
        "    facility: local4\n"
        "    records: telemetry\n"
        "    sendTimeoutSeconds: 3\n"
        "    retryMaxSeconds: 5\n"
        "    batchRecords: 50\n",
        "c.yaml",
    )
    fwd, sys_ = cfg.remote_sinks
    assert (fwd.name, fwd.type, fwd.host, fwd.port) == ("forward-127.0.0.1-24224", "forward", "127.0.0.1", 24224)
    assert (fwd.tag, fwd.shared_key_file, fwd.records) == ("host.sec", "/etc/karmor/fwd.key",
                                                           frozenset({"alerts", "telemetry"}))
    assert fwd.tls == config.TLSConfig(enabled=True, ca_file="/etc/ssl/ca.pem", cert_file="/etc/c.pem",
                                       key_file="/etc/k.pem")
    assert fwd.spool == config.SpoolConfig(dir="/srv/spool", max_bytes=1048576, overflow="drop_newest")
    assert (sys_.name, sys_.type, sys_.host, sys_.port, sys_.format, sys_.facility) == (
        "siem", "syslog", "::1", 6514, "json", "local4")
    assert (sys_.records, sys_.send_timeout, sys_.retry_max, sys_.batch_records) == (
        frozenset({"telemetry"}), 3, 5, 50)


@pytest.mark.parametrize(
    "sink, expected",
    [
        ("{address: 'h:1'}", "c.yaml:3:5: sinks.remote[0].type: required: forward or syslog"),
        ("{type: forward}", "c.yaml:3:5: sinks.remote[0].address: required"),
        ("{type: kafka, address: 'h:1'}", "c.yaml:3:12: sinks.remote[0].type: must be one of forward, syslog, not 'kafka'"),
        ("{type: forward, address: 'h'}", "c.yaml:3:30: sinks.remote[0].address: must be host:port with a port in 1..65535"),
        ("{type: forward, address: '::1:9'}", "sinks.remote[0].address: write an IPv6 address in brackets: [::1]:9"),
        ("{type: forward, address: 'h:70000'}", "sinks.remote[0].address: must be host:port"),
        ("{type: syslog, address: 'h:1', tag: x}", "c.yaml:3:41: sinks.remote[0].tag: only for type forward, this sink is syslog"),
        ("{type: forward, address: 'h:1', format: json}", "sinks.remote[0].format: only for type syslog, this sink is forward"),
        ("{type: syslog, address: 'h:1', facility: local9}", "sinks.remote[0].facility: must be one of kern,"),
        ("{type: forward, address: 'h:1', tag: 'a b'}", "sinks.remote[0].tag: must be a Fluent tag"),
        ("{type: forward, address: 'h:1', sharedKeyFile: key}", "sinks.remote[0].sharedKeyFile: must be an absolute path"),
        ("{type: forward, address: 'h:1', records: [alert]}", "sinks.remote[0].records: choose one or both of alerts, telemetry"),
        ("{type: forward, address: 'h:1', name: journald}", "sinks.remote[0].name: must be 1-64 of"),
        ("{type: forward, address: 'h:1', tls: {caFile: /ca.pem}}",
         "c.yaml:3:51: sinks.remote[0].tls.caFile: is set but tls.enabled is not true"),
        ("{type: forward, address: 'h:1', tls: {enabled: true, certFile: /c.pem}}",
         "sinks.remote[0].tls: certFile and keyFile go together"),
        ("{type: forward, address: 'h:1', tls: {enabled: yes please}}", "sinks.remote[0].tls.enabled: must be true or false"),
        ("{type: forward, address: 'h:1', spool: {maxBytes: 1000}}",
         "sinks.remote[0].spool.maxBytes: must be an integer in 65536..1099511627776, not 1000"),
        ("{type: forward, address: 'h:1', spool: {overflow: block}}",
         "sinks.remote[0].spool.overflow: must be one of drop_oldest, drop_newest, not 'block'"),
        ("{type: forward, address: 'h:1', spool: {sizee: 1}}", "sinks.remote[0].spool.sizee: unknown key"),
        ("{type: forward, address: 'h:1', sendTimeoutSeconds: 0}", "sinks.remote[0].sendTimeoutSeconds: must be an integer in 1..600"),
        ("{type: forward, adress: 'h:1'}", "sinks.remote[0].adress: unknown key (did you mean 'address'?)"),
        ("x", "c.yaml:3:5: sinks.remote[0]: must be a mapping"),
    ],
)
def test_bad_remote_sinks_name_file_line_and_key(sink, expected):
    with pytest.raises(ConfigError) as exc:
        config.parse(f"sinks:\n  remote:\n  - {sink}\n", "c.yaml")
    assert expected in str(exc.value)


def test_remote_sinks_must_be_a_list_with_unique_names():
    with pytest.raises(ConfigError, match="c.yaml:2:11: sinks.remote: must be a list of sinks"):
        config.parse("sinks:\n  remote: {type: forward}\n", "c.yaml")
    with pytest.raises(ConfigError) as exc:
        config.parse("sinks:\n  remote:\n  - {type: forward, address: 'h:1'}\n"
                     "  - {type: forward, address: 'h:1'}\n", "c.yaml")
    assert ("c.yaml:4:5: sinks.remote[1].name: 'forward-h-1' is already used by sinks.remote[0];"
            " each sink needs its own") in str(exc.value)
