"""Service names -> port numbers, from /etc/services (the file getservbyname reads).

Read directly rather than through NSS so that validation is the same in every process and
the file can be swapped in tests. A name not in the file is an error, except the few common
names that the file spells differently (KubeArmor's own examples write `dns`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SERVICES_FILE = Path("/etc/services")
# Names people write that /etc/services spells otherwise (IANA's names are on the right).
ALIASES = {"dns": "domain"}


@dataclass(frozen=True)
class Services:
    source: str
    ports: dict[tuple[str, str], int]  # (name, "tcp"|"udp"|"sctp") -> port

    def port(self, name: str, protocol: str) -> int | None:
        return self.ports.get((name.lower(), protocol.lower()))

    def names(self, protocol: str) -> list[str]:
        proto = protocol.lower()
        return sorted({n for n, p in self.ports if p == proto})


def parse(text: str, source: str) -> Services:
    """`name port/proto [aliases...] [# comment]` lines; the first definition of a name wins."""
    ports: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or "/" not in words[1]:
            continue
        number, _, proto = words[1].partition("/")
        if not number.isdigit() or not 0 < int(number) < 65536:
            continue
        for name in (words[0], *words[2:]):
            ports.setdefault((name.lower(), proto.lower()), int(number))
    return Services(source, ports)


@lru_cache(maxsize=4)
def _load(path: str, _mtime_ns: int) -> Services:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""  # every name is then unknown, and the error names the file
    return parse(text, path)


def system(path: Path = SERVICES_FILE) -> Services:
    """This host's table, re-read when the file changes."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return _load(str(path), mtime)
