#!/usr/bin/env bash
# Makes sure a systemd-journald is reachable at /run/systemd/journal/socket.
# On a normal host systemd runs it already; on a bare container or CI machine
# we start the standalone daemon so alerts have somewhere to go.
set -euo pipefail
sock=/run/systemd/journal/socket
if [ -S "$sock" ] && journalctl -n 0 >/dev/null 2>&1 && pgrep -x systemd-journal >/dev/null; then
    exit 0
fi
mkdir -p /run/systemd/journal /var/log/journal
nohup /lib/systemd/systemd-journald >/dev/null 2>&1 &
for _ in $(seq 1 50); do
    [ -S "$sock" ] && exit 0
    sleep 0.1
done
echo "ensure-journald: systemd-journald did not come up ($sock missing)" >&2
exit 1
