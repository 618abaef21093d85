from karmor_host.agent import watchdog_ping_due


def test_ping_only_when_event_thread_progressed():
    assert watchdog_ping_due(True, beat=5, last_beat=4)
    assert not watchdog_ping_due(True, beat=5, last_beat=5)  # stuck consumer: let systemd restart us
    assert not watchdog_ping_due(False, beat=6, last_beat=5)  # dead consumer thread
