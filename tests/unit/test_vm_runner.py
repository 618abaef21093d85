"""tests/vm/harness.run_vng, which the VM suite and the guest benches boot their guests with:
the console is kept, a command past its limit is killed with everything it started."""

from __future__ import annotations

import os
import time

from tests.vm import harness


def test_the_exit_status_and_the_output_are_kept(tmp_path) -> None:
    assert harness.run_vng(["sh", "-c", "echo from-the-guest; exit 3"], tmp_path, 30) == 3
    console = (tmp_path / harness.CONSOLE_NAME).read_text()
    assert console.startswith("$ sh -c ") and "from-the-guest\n" in console


def test_past_its_limit_the_whole_process_group_is_killed(tmp_path) -> None:
    pidfile = tmp_path / "child"
    # the child in the background stands for QEMU under vng: it must not outlive the timeout
    script = f"sleep 60 & echo $! > {pidfile}; echo started; wait"
    t0 = time.monotonic()
    assert harness.run_vng(["sh", "-c", script], tmp_path, 1) is None
    assert time.monotonic() - t0 < 20
    child = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the background child {child} outlived the timeout")
    assert "started" in (tmp_path / harness.CONSOLE_NAME).read_text()
