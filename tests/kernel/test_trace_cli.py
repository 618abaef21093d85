"""`karmor-host trace`: live HostLog records until SIGINT, then a drop summary."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.kernel


def start_trace(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "karmor_host", "trace", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    err = ""
    while time.monotonic() < deadline and "monitor_attached" not in err:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            err += proc.stderr.readline()
        assert proc.poll() is None, err
    assert "monitor_attached" in err, err
    return proc


def stop_trace(proc: subprocess.Popen) -> tuple[str, str]:
    time.sleep(0.5)  # the poll interval: let the last batch out
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return out, err


def test_json_records_are_kubearmor_host_logs():
    proc = start_trace("--json", "--operation", "process")
    child = subprocess.Popen(["/bin/true", "an-arg"])
    child.wait()
    out, err = stop_trace(proc)
    records = [json.loads(line) for line in out.splitlines()]
    (rec,) = [r for r in records if r["HostPID"] == child.pid and r["Data"] == "syscall=SYS_EXECVE"]
    assert rec["Type"] == "HostLog" and rec["Operation"] == "Process"
    assert rec["ProcessName"] == os.path.realpath("/bin/true")
    assert rec["Resource"] == f"{os.path.realpath('/bin/true')} an-arg"
    assert (rec["PID"], rec["PPID"], rec["UID"]) == (child.pid, os.getpid(), 0)
    assert rec["ParentProcessName"] == os.path.realpath(sys.executable)
    assert rec["Result"] == "Passed" and rec["Cwd"] == os.getcwd().rstrip("/") + "/"
    assert {"Timestamp", "UpdatedTime", "HostName", "TTY"} <= rec.keys()
    assert {r["Operation"] for r in records} == {"Process"}
    assert "dropped: process=0" in err


def test_text_lines_and_the_summary():
    proc = start_trace("--operation", "network")
    subprocess.run([sys.executable, "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"],
                   check=True)
    out, err = stop_trace(proc)
    assert [line for line in out.splitlines() if "Network" in line and "domain=AF_INET type=SOCK_DGRAM" in line]
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("events: ") and "Network=" in summary and "dropped: " in summary
