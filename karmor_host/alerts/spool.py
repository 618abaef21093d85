"""A bounded on-disk queue of records waiting for a remote sink; it outlives the process.

Opaque payloads (each sink stores its records already encoded for its wire format) are
appended to segment files and consumed from the head by one sender. A payload is on disk
(in the page cache) when `append` returns, so an agent killed -9 loses nothing; `sync()`
(called about once a second by the sender) makes it survive a power loss too.

Directory layout (0700, files 0600, owned by the agent's user):

    lock                 flock()ed while a process owns the spool (holds its pid)
    id                   16 random bytes: makes batch ids unique across spools
    head                 "<segment> <offset>": the first record not yet delivered
    <segment>.seg        "KSPOOL1\\n" then frames: u32 length, u32 crc32, payload

Delivery is at least once: `take` hands out the next batch (one at a time), `commit`
advances the head once the peer confirmed it, `release` puts it back after a failure. The
head is written (rename) after each commit; a crash between the peer's confirmation and
that write means the batch is sent again.

The bound is on undelivered bytes (`max_bytes`). When it is reached, `overflow` decides:
`drop_oldest` deletes the oldest whole segment (a segment is max_bytes/16, so at most a
sixteenth is lost at a time) but never the batch being delivered; `drop_newest` refuses the
new record. Either way every dropped record is counted (`dropped`), and so are records lost
to corruption found on recovery (`corrupt`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from karmor_host.errors import KarmorError

MAGIC = b"KSPOOL1\n"
FRAME = struct.Struct("<II")  # payload length, crc32(payload)
OVERFLOW = ("drop_oldest", "drop_newest")
MIN_SEGMENT = 4096
MAX_SEGMENT = 8 * 1024 * 1024
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Batch:
    """Records handed to the sender: payloads[i] sits in segment `seq` between start and end."""

    id: bytes  # 16 bytes, the same for the same records of the same spool (resends keep it)
    seq: int
    start: int
    end: int
    payloads: tuple[bytes, ...]


@dataclass
class _Segment:
    seq: int
    size: int  # bytes in the file
    start: int  # first undelivered byte
    records: int  # undelivered records

    @property
    def pending(self) -> int:
        return self.size - self.start


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        overflow: str = "drop_oldest",
        segment_bytes: int | None = None,
    ) -> None:
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {OVERFLOW}, not {overflow!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.overflow = overflow
        self._fixed_segment = segment_bytes is not None
        self.segment_bytes = segment_bytes or _segment_size(max_bytes)
        self.dropped = 0
        self.corrupt = 0  # records (or, when uncountable, frames) lost to damaged files
        self.recovered = 0  # records found on disk at open
        self._cond = threading.Condition()
        self._segments: dict[int, _Segment] = {}  # insertion order = age
        self._active: _Segment | None = None  # the one being appended to
        self._fd = -1  # write fd of _active
        self._next_seq = 1  # segment numbers only grow: the head file compares them
        self._unsynced: list[int] = []  # full segments the next sync() makes durable
        self._inflight: tuple[int, int] | None = None  # (seq, start) of the batch out
        self._records = 0
        self._pending = 0
        self._closed = False
        _private_dir(self.directory)
        self._lock_fd = _lock(self.directory)
        try:
            self._id = _spool_id(self.directory)
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # --- counters ---------------------------------------------------------------------

    @property
    def records(self) -> int:
        """Undelivered records, including a batch out for delivery."""
        return self._records

    @property
    def pending_bytes(self) -> int:
        return self._pending

    # --- producer ---------------------------------------------------------------------

    def append(self, payload: bytes) -> bool:
        """Store one payload; False if it was dropped (drop_newest, or nothing droppable).
        Raises OSError when the disk refuses the write (nothing is left half-written)."""
        frame = FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        with self._cond:
            if self._closed:
                raise OSError("spool is closed")
            if len(frame) > self.max_bytes:  # could never fit: do not empty the spool for it
                self.dropped += 1
                return False
            if self._pending + len(frame) > self.max_bytes and not self._make_room(len(frame)):
                self.dropped += 1
                return False
            seg = self._active
            if seg is None or (seg.size + len(frame) > self.segment_bytes and seg.size > len(MAGIC)):
                seg = self._rotate()
            _write_all(self._fd, frame, seg.size)
            seg.size += len(frame)
            seg.records += 1
            self._records += 1
            self._pending += len(frame)
            self._cond.notify()
        return True

    def _make_room(self, need: int) -> bool:
        if self.overflow == "drop_newest":
            return False
        while self._pending + need > self.max_bytes:
            victim = next((s for s in self._segments.values()
                           if s.pending and (self._inflight is None or s.seq != self._inflight[0])), None)
            if victim is None:
                return False  # everything left is the batch being delivered
            if victim is self._active:
                self._close_active()
            self.dropped += victim.records
            self._forget(victim)
        return True

    def _rotate(self) -> _Segment:
        old = self._active
        self._close_active()
        if old is not None and not old.records:
            self._forget(old)  # fully delivered while it was still being written
        seq = self._next_seq
        self._next_seq += 1
        path = self._path(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, MAGIC, 0)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        seg = _Segment(seq, len(MAGIC), len(MAGIC), 0)
        self._segments[seq] = seg
        self._active, self._fd = seg, fd
        return seg

    def _close_active(self, fsync: bool = False) -> None:
        if self._fd >= 0:
            if fsync:
                os.fsync(self._fd)
            elif self._active is not None:
                self._unsynced.append(self._active.seq)  # not here: append is the alert path
            os.close(self._fd)
        self._active, self._fd = None, -1

    def set_limits(self, max_bytes: int, overflow: str) -> None:
        """New bound and drop policy on an open spool (a reload). Records beyond a smaller
        bound are dropped, and counted, by the next append; new segments get the new size."""
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {OVERFLOW}, not {overflow!r}")
        with self._cond:
            self.max_bytes, self.overflow = max_bytes, overflow
            if not self._fixed_segment:
                self.segment_bytes = _segment_size(max_bytes)

    # --- consumer ---------------------------------------------------------------------

    def take(
        self, max_records: int, max_bytes: int, timeout: float, until: tuple[int, int] | None = None
    ) -> Batch | None:
        """The next undelivered records (at least one, within one segment), or None after
        `timeout` seconds without any. `until` = (seq, end) of a batch that failed: if the
        head is still in that segment the batch ends there too, so a resend carries the same
        records and the same id. Only one batch may be out at a time."""
        with self._cond:
            if self._inflight is not None:
                raise RuntimeError("a batch is already out for delivery")
            if not self._records:
                self._cond.wait(timeout)
            seg = next((s for s in self._segments.values() if s.records), None)
            if seg is None or self._closed:
                return None
            self._inflight = (seg.seq, seg.start)
            seq, start, limit = seg.seq, seg.start, seg.size
            if until is not None and until[0] == seq and start < until[1]:
                limit = min(limit, until[1])
        # Reading and checking happen outside the lock: the bytes before `limit` never
        # change, and a segment with a batch out is never deleted.
        try:
            payloads, end = self._read(seq, start, limit, max_records, max_bytes)
        except BaseException:
            with self._cond:
                self._inflight = None
            raise
        with self._cond:
            if not payloads:  # damaged frame at the head: the rest of the segment is lost
                self._inflight = None
                self._drop_corrupt(seq)
                return None
            digest = hashlib.blake2b(self._id + struct.pack("<QQQ", seq, start, end), digest_size=16)
            return Batch(digest.digest(), seq, start, end, tuple(payloads))

    def commit(self, batch: Batch) -> None:
        """The peer confirmed `batch`: forget it for good."""
        with self._cond:
            self._inflight = None
            seg = self._segments.get(batch.seq)
            if seg is None or seg.start != batch.start:
                return  # cannot happen: a segment with a batch out is never dropped
            seg.start = batch.end
            seg.records -= len(batch.payloads)
            self._records -= len(batch.payloads)
            self._pending -= batch.end - batch.start
            if not seg.records and seg is not self._active:
                self._forget(seg)
            head = next(iter(self._segments.values()), None)
            self._write_head(head.seq if head else self._next_seq, head.start if head else 0)

    def release(self, batch: Batch) -> None:
        """Delivery failed: the records stay first in line."""
        with self._cond:
            self._inflight = None
            self._cond.notify()

    def wait_empty(self, timeout: float) -> bool:
        """For tests and shutdown: True once every record was delivered or dropped."""
        deadline = time.monotonic() + timeout
        while self._records:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.02, left))
        return True

    # --- durability and life cycle ----------------------------------------------------

    def sync(self) -> None:
        """fsync what was written since the last call: segments completed meanwhile and the
        one being written. The lock is not held during the fsyncs (appends go on)."""
        with self._cond:
            paths = [self._path(seq) for seq in self._unsynced if seq in self._segments]
            self._unsynced.clear()
            fd = os.dup(self._fd) if self._fd >= 0 else -1
        for path in paths:
            try:
                done = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # delivered or dropped meanwhile
            try:
                os.fsync(done)
            finally:
                os.close(done)
        if fd >= 0:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            try:
                self._close_active(fsync=True)
            finally:
                os.close(self._lock_fd)
                self._cond.notify_all()

    # --- files ------------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}.seg"

    def _forget(self, seg: _Segment) -> None:
        self._records -= seg.records
        self._pending -= seg.pending
        del self._segments[seg.seq]
        try:
            os.unlink(self._path(seg.seq))
        except FileNotFoundError:
            pass

    def _drop_corrupt(self, seq: int) -> None:
        seg = self._segments.get(seq)
        if seg is None:
            return
        if seg is self._active:
            self._close_active()
        self.corrupt += seg.records
        self._forget(seg)

    def _write_head(self, seq: int, offset: int) -> None:
        tmp = self.directory / "head.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, f"{seq} {offset}\n".encode(), 0)
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / "head")

    def _read_head(self) -> tuple[int, int]:
        try:
            seq, offset = (self.directory / "head").read_text().split()
            return int(seq), int(offset)
        except (FileNotFoundError, ValueError):
            return 0, 0

    def _read(self, seq: int, start: int, limit: int, max_records: int, max_bytes: int) -> tuple[list[bytes], int]:
        fd = os.open(self._path(seq), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return _frames(fd, start, limit, max_records, max_bytes)
        finally:
            os.close(fd)

    def _recover(self) -> None:
        """Rebuild the segment table from the files; cut torn or damaged tails."""
        head_seq, head_off = self._read_head()
        seqs = []
        for path in self.directory.glob("*.seg"):
            try:
                seqs.append(int(path.stem))
            except ValueError:
                continue
        self._next_seq = max([head_seq, *seqs]) + 1
        for seq in sorted(seqs):
            path = self._path(seq)
            if seq < head_seq:
                path.unlink()  # delivered; the process died before deleting it
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            if not data.startswith(MAGIC):
                self.corrupt += 1
                path.unlink()
                continue
            start = max(len(MAGIC), head_off) if seq == head_seq else len(MAGIC)
            start = min(start, len(data))
            count, good_end = _scan(data, start)
            if good_end < len(data):
                # A torn last write (crash or power loss) or damage: keep what checks out.
                self.corrupt += 1
                os.truncate(path, good_end)
            if not count:
                path.unlink()
                continue
            os.chmod(path, 0o600)
            self._segments[seq] = _Segment(seq, good_end, start, count)
            self._records += count
            self._pending += good_end - start
            self.recovered += count


def _segment_size(max_bytes: int) -> int:
    return min(MAX_SEGMENT, max(MIN_SEGMENT, max_bytes // 16))


def _scan(data: bytes, pos: int) -> tuple[int, int]:
    """(records, end of the last good frame) from `pos`."""
    count = 0
    while pos + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + length
        if end > len(data) or zlib.crc32(data[pos + FRAME.size:end]) != crc:
            break
        count += 1
        pos = end
    return count, pos


def _frames(fd: int, start: int, limit: int, max_records: int, max_bytes: int) -> tuple[list[bytes], int]:
    """Whole, checked frames from [start, limit): at least one (if any), else up to the caps."""
    out: list[bytes] = []
    pos, total = start, 0
    while pos < limit and len(out) < max_records:
        buf = os.pread(fd, min(limit - pos, max(READ_CHUNK, max_bytes - total + FRAME.size)), pos)
        i = 0
        while len(out) < max_records and i + FRAME.size <= len(buf):
            length, crc = FRAME.unpack_from(buf, i)
            if i + FRAME.size + length > len(buf):
                if i == 0:  # one frame larger than the read: fetch it whole
                    buf = os.pread(fd, FRAME.size + length, pos)
                    if len(buf) < FRAME.size + length:
                        return out, pos
                    continue
                break
            if out and total + length > max_bytes:
                return out, pos
            payload = buf[i + FRAME.size:i + FRAME.size + length]
            if zlib.crc32(payload) != crc:
                return out, pos
            out.append(payload)
            total += length
            i += FRAME.size + length
            pos += FRAME.size + length
        if i == 0:
            break
    return out, pos


def _write_all(fd: int, data: bytes, size_before: int) -> None:
    """Write everything or nothing: a short or failed write is cut off again, so the file
    never keeps half a frame that recovery would have to discard."""
    done = 0
    try:
        while done < len(data):
            done += os.write(fd, data[done:])
    except OSError:
        if done:
            try:
                os.ftruncate(fd, size_before)
            except OSError:
                pass
        raise


def _private_dir(path: Path) -> None:
    """Create `path` 0700; refuse one that another user owns or that is a symlink."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        raise KarmorError(f"spool {path}: not a directory")
    if st.st_uid != os.geteuid():
        raise KarmorError(f"spool {path}: owned by uid {st.st_uid}, not by this process (uid {os.geteuid()})")
    if st.st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)


def _lock(path: Path) -> int:
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        raise KarmorError(f"spool {path} is in use by another process (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _spool_id(path: Path) -> bytes:
    id_path = path / "id"
    try:
        value = id_path.read_bytes()
        if len(value) == 16:
            return value
    except FileNotFoundError:
        pass
    value = os.urandom(16)
    fd = os.open(id_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, value, 0)
    finally:
        os.close(fd)
    return value
