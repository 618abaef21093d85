"""Connection-rate client for bench_firewall: `python -m bench.firewall_client HOST PORT SECONDS`.

Opens, reads the server's greeting from and resets TCP connections in a loop; prints
{"per_second": ..., "failed": ...}.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

# Close with a reset: no TIME_WAIT pile-up, which would slow the client's port search
# (and so the later measurements of a run) more than any firewall rule does.
_LINGER_RESET = struct.pack("ii", 1, 0)


def main(host: str, port: int, seconds: float) -> None:
    done = failed = 0
    end = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                s.recv(3)
            done += 1
        except OSError:
            failed += 1
    print(json.dumps({"per_second": done / (time.monotonic() - start), "failed": failed}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
