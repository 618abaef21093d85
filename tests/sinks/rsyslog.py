"""A real rsyslogd for the tests: an imtcp input on a loopback port (chosen by rsyslog,
read back from its port file), optionally TLS through rsyslog-gnutls, writing every
message twice: as received (raw.log) and as rsyslog parsed it (parsed.log, one JSON object
per line: PRI, header fields, the structured data through mmpstrucdata, the message)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from tests.sinks.certs import Pair

CONF = """\
global(workDirectory="{work}" maxMessageSize="256k"{tls_global})
module(load="imtcp"{tls_module})
module(load="mmpstrucdata")
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="parsed" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="appname" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="timereported" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="in") {{
  action(type="mmpstrucdata" sd_name.lowercase="off")
  action(type="omfile" file="{dir}/raw.log" template="raw")
  action(type="omfile" file="{dir}/parsed.log" template="parsed")
}}
input(type="imtcp" address="{address}" port="{port}" listenPortFileName="{dir}/port" ruleset="in")
"""


class Rsyslog:
    def __init__(self, directory: Path, *, address: str = "127.0.0.1", ca: Pair | None = None,
                 server: Pair | None = None, require_client_cert: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "work").mkdir(exist_ok=True)
        tls_global = tls_module = ""
        if server is not None:
            assert ca is not None
            tls_global = (f' defaultNetstreamDriverCAFile="{ca.cert}"'
                          f' defaultNetstreamDriverCertFile="{server.cert}"'
                          f' defaultNetstreamDriverKeyFile="{server.key}"')
            mode = "x509/certvalid" if require_client_cert else "anon"
            tls_module = f' streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{mode}"'
        self.address = address
        self.conf = self.dir / "rsyslog.conf"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._conf_text = dict(work=self.dir / "work", dir=self.dir, address=address,
                               tls_global=tls_global, tls_module=tls_module)

    def start(self, port: int = 0, timeout: float = 10.0) -> int:
        """Start (or restart on the same port); returns the port."""
        (self.dir / "port").unlink(missing_ok=True)
        self.conf.write_text(CONF.format(port=port, **self._conf_text))
        check = subprocess.run(["rsyslogd", "-N1", "-f", str(self.conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "rsyslogd.stderr", "ab"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # rsyslog writes the port file only for a port it chose itself (port 0)
            if port and _listening(self.address, port):
                self.port = port
                return port
            text = _read(self.dir / "port")
            if not port and text.strip():
                self.port = int(text)
                return self.port
            assert self.proc.poll() is None, _read(self.dir / "rsyslogd.stderr")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"rsyslogd did not listen in {timeout}s: {_read(self.dir / 'rsyslogd.stderr')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def raw(self) -> list[str]:
        return _read(self.dir / "raw.log").splitlines()

    def parsed(self) -> list[dict]:
        out = []
        for line in _read(self.dir / "parsed.log").splitlines():
            row = json.loads(line)
            row["sd"] = json.loads(row["sd"]) if row["sd"] else {}
            out.append(row)
        return out

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.parsed()
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def stderr(self) -> str:
        return _read(self.dir / "rsyslogd.stderr")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""



def _listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False
