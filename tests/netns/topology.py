"""Two test hosts in network namespaces, joined by two veth pairs; always torn down.

    A (the firewall host)           B (its peer)
    a0  10.<n>.1.1/24  fd00:<n>:1::1/64  <->  b0  10.<n>.1.2  fd00:<n>:1::2
    a1  10.<n>.2.1/24  fd00:<n>:2::1/64  <->  b1  10.<n>.2.2  fd00:<n>:2::2

Every address lives inside these namespaces; nothing here routes anywhere else. Commands
are argument lists (`ip netns exec NS ...`), never shell strings.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Topology:
    a: str
    b: str
    n: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    # addresses ----------------------------------------------------------------------------
    def a4(self, link: int = 0) -> str:
        return f"10.{self.n}.{link + 1}.1"

    def b4(self, link: int = 0) -> str:
        return f"10.{self.n}.{link + 1}.2"

    def a6(self, link: int = 0) -> str:
        return f"fd00:{self.n}:{link + 1}::1"

    def b6(self, link: int = 0) -> str:
        return f"fd00:{self.n}:{link + 1}::2"

    def net4(self, link: int = 0) -> str:
        return f"10.{self.n}.{link + 1}.0/24"

    def net6(self, link: int = 0) -> str:
        return f"fd00:{self.n}:{link + 1}::/64"

    # running things -------------------------------------------------------------------------
    def argv(self, ns: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *args]

    def run(self, ns: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(ns, *args), capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def py(self, ns: str, module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.run(ns, PYTHON, "-m", module, *args, timeout=timeout)

    def spawn(self, ns: str, *args: str, wait_for: str = "") -> subprocess.Popen:
        """A background process, killed at teardown; waits for a line containing `wait_for`."""
        proc = subprocess.Popen(self.argv(ns, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO)
        self.procs.append(proc)
        if wait_for:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert wait_for in line, f"{args} printed {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        return proc

    def serve(self, ns: str, tcp: tuple[int, ...] = (), udp: tuple[int, ...] = ()) -> subprocess.Popen:
        return self.spawn(ns, PYTHON, "-m", "tests.netns.peer", "serve",
                          "--tcp", ",".join(map(str, tcp)), "--udp", ",".join(map(str, udp)), wait_for="ready")

    def connect(self, ns: str, host: str, port: int, timeout: float = 1.0) -> bool:
        r = self.py(ns, "tests.netns.peer", "connect", host, str(port), "--timeout", str(timeout))
        return r.returncode == 0

    def ping(self, ns: str, host: str, timeout: float = 1.0) -> bool:
        return self.py(ns, "tests.netns.peer", "ping", host, "--timeout", str(timeout)).returncode == 0

    def udp(self, ns: str, host: str, port: int, timeout: float = 1.0) -> bool:
        return self.py(ns, "tests.netns.peer", "udp", host, str(port), "--timeout", str(timeout)).returncode == 0

    # life cycle ---------------------------------------------------------------------------
    def create(self) -> None:
        for ns in (self.a, self.b):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for link in (0, 1):
            ip("link", "add", f"kt{self.n}a{link}", "netns", self.a, "type", "veth",
               "peer", "name", f"kt{self.n}b{link}", "netns", self.b)
            for ns, side, v4, v6 in ((self.a, "a", self.a4(link), self.a6(link)),
                                     (self.b, "b", self.b4(link), self.b6(link))):
                dev = f"kt{self.n}{side}{link}"
                ip("-n", ns, "link", "set", dev, "name", f"{side}{link}")
                ip("-n", ns, "addr", "add", f"{v4}/24", "dev", f"{side}{link}")
                ip("-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", f"{side}{link}", "nodad")
                ip("-n", ns, "link", "set", f"{side}{link}", "up")

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        for ns in (self.a, self.b):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:  # anything a test left behind in its own namespace
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        deadline = time.monotonic() + 5
        while any(Path("/run/netns", ns).exists() for ns in (self.a, self.b)) and time.monotonic() < deadline:
            time.sleep(0.05)


def new_topology() -> Topology:
    tag = uuid.uuid4().hex[:6]
    topo = Topology(f"kfw-{tag}-a", f"kfw-{tag}-b", random.randint(100, 250))
    try:
        topo.create()
    except BaseException:
        topo.destroy()
        raise
    return topo
