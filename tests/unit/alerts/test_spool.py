"""The on-disk spool: order, at-least-once hand-over, persistence, recovery, bounds, permissions."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karmor_host.alerts.spool import FRAME, MAGIC, Spool
from karmor_host.errors import KarmorError


def rec(i: int, size: int = 20) -> bytes:
    return f"{i:08d}".encode().ljust(size, b".")


def drain(spool: Spool, max_records: int = 1000) -> list[bytes]:
    out = []
    while True:
        batch = spool.take(max_records, 1 << 20, timeout=0)
        if batch is None:
            return out
        out.extend(batch.payloads)
        spool.commit(batch)


def test_records_come_out_in_order_across_segments(tmp_path):
    s = Spool(tmp_path / "q", max_bytes=1 << 20, segment_bytes=256)
    for i in range(100):
        assert s.append(rec(i))
    assert len(list((tmp_path / "q").glob("*.seg"))) > 5
    assert s.records == 100
    assert drain(s, max_records=7) == [rec(i) for i in range(100)]
    assert s.records == 0 and s.pending_bytes == 0
    # delivered segments are deleted, only the one being written may remain
    assert len(list((tmp_path / "q").glob("*.seg"))) <= 1


def test_batch_caps_and_a_record_larger_than_the_byte_cap(tmp_path):
    s = Spool(tmp_path / "q", max_bytes=1 << 22)
    big = b"x" * 600_000  # larger than one read chunk
    for p in (rec(1), big, rec(2), rec(3)):
        s.append(p)
    b1 = s.take(10, 100, timeout=0)
    assert b1.payloads == (rec(1),)  # the next one would pass max_bytes
    s.commit(b1)
    b2 = s.take(10, 100, timeout=0)
    assert b2.payloads == (big,)  # alone, but delivered all the same
    s.commit(b2)
    b3 = s.take(1, 1 << 20, timeout=0)
    assert b3.payloads == (rec(2),)
    s.commit(b3)
    assert drain(s) == [rec(3)]


def test_release_puts_the_batch_back_and_a_resend_has_the_same_id(tmp_path):
    s = Spool(tmp_path / "q", max_bytes=1 << 20)
    for i in range(5):
        s.append(rec(i))
    b1 = s.take(3, 1 << 20, timeout=0)
    with pytest.raises(RuntimeError):
        s.take(3, 1 << 20, timeout=0)  # one batch out at a time
    s.release(b1)
    for i in range(5, 8):
        s.append(rec(i))
    again = s.take(100, 1 << 20, timeout=0, until=(b1.seq, b1.end))
    assert again.payloads == b1.payloads and again.id == b1.id
    s.commit(again)
    rest = s.take(100, 1 << 20, timeout=0)
    assert rest.payloads == tuple(rec(i) for i in range(3, 8)) and rest.id != b1.id


def test_take_waits_for_an_append(tmp_path):
    s = Spool(tmp_path / "q", max_bytes=1 << 20)
    threading.Timer(0.05, s.append, args=(rec(1),)).start()
    batch = s.take(10, 1 << 20, timeout=5)
    assert batch is not None and batch.payloads == (rec(1),)


def test_undelivered_records_survive_a_reopen_and_delivered_ones_do_not(tmp_path):
    d = tmp_path / "q"
    s = Spool(d, max_bytes=1 << 20, segment_bytes=300)
    for i in range(50):
        s.append(rec(i))
    b = s.take(20, 1 << 20, timeout=0)
    s.commit(b)
    out = s.take(5, 1 << 20, timeout=0)  # out for delivery when the process "dies"
    del out
    os.close(s._lock_fd)  # what a crash leaves: files, no clean close
    s2 = Spool(d, max_bytes=1 << 20, segment_bytes=300)
    assert s2.recovered == s2.records
    # the committed batch is gone; the one that was out comes back first
    assert drain(s2) == [rec(i) for i in range(len(b.payloads), 50)]


def test_a_torn_tail_is_cut_and_counted(tmp_path):
    d = tmp_path / "q"
    s = Spool(d, max_bytes=1 << 20)
    for i in range(3):
        s.append(rec(i))
    s.close()
    (seg,) = d.glob("*.seg")
    with open(seg, "ab") as fh:
        fh.write(FRAME.pack(100, 0) + b"half a rec")  # a write cut short by power loss
    s2 = Spool(d, max_bytes=1 << 20)
    assert s2.records == 3 and s2.corrupt == 1
    assert drain(s2) == [rec(0), rec(1), rec(2)]


def test_a_damaged_frame_loses_its_segment_tail_and_is_counted(tmp_path):
    d = tmp_path / "q"
    s = Spool(d, max_bytes=1 << 20)
    for i in range(4):
        s.append(rec(i))
    s.close()
    (seg,) = d.glob("*.seg")
    data = bytearray(seg.read_bytes())
    second = len(MAGIC) + FRAME.size + len(rec(0))
    data[second + FRAME.size + 2] ^= 0xFF  # flip a bit inside the second payload
    seg.write_bytes(bytes(data))
    s2 = Spool(d, max_bytes=1 << 20)
    assert s2.corrupt == 1
    assert drain(s2) == [rec(0)]


def test_drop_newest_refuses_new_records_and_counts_them(tmp_path):
    frame = FRAME.size + 20
    s = Spool(tmp_path / "q", max_bytes=10 * frame, overflow="drop_newest", segment_bytes=3 * frame)
    results = [s.append(rec(i)) for i in range(15)]
    assert results == [True] * 10 + [False] * 5
    assert s.dropped == 5
    assert drain(s) == [rec(i) for i in range(10)]


def test_drop_oldest_drops_whole_old_segments_and_counts_every_record(tmp_path):
    frame = FRAME.size + 20
    s = Spool(tmp_path / "q", max_bytes=10 * frame, overflow="drop_oldest", segment_bytes=len(MAGIC) + 2 * frame)
    for i in range(25):
        assert s.append(rec(i))
    kept = drain(s)
    assert s.dropped + len(kept) == 25
    assert kept == [rec(i) for i in range(25 - len(kept), 25)]  # the newest, in order
    assert len(kept) >= 9


def test_drop_oldest_never_drops_the_batch_out_for_delivery(tmp_path):
    frame = FRAME.size + 20
    s = Spool(tmp_path / "q", max_bytes=6 * frame, overflow="drop_oldest", segment_bytes=len(MAGIC) + 2 * frame)
    for i in range(4):
        s.append(rec(i))
    out = s.take(2, 1 << 20, timeout=0)
    assert out.payloads == (rec(0), rec(1))
    for i in range(4, 12):
        s.append(rec(i))
    s.commit(out)  # delivered although the spool overflowed meanwhile
    rest = drain(s)
    assert s.dropped + len(rest) + 2 == 12
    assert rec(2) not in rest  # the oldest segment not being delivered went first


def test_new_limits_on_an_open_spool_apply_to_the_next_append(tmp_path):
    """A reload that changes spool.maxBytes or overflow keeps the spool open (set_limits)."""
    frame = FRAME.size + 20
    s = Spool(tmp_path / "q", max_bytes=1 << 20)
    for i in range(10):
        s.append(rec(i))
    s.set_limits(4 * frame, "drop_newest")
    assert (s.max_bytes, s.overflow, s.segment_bytes) == (4 * frame, "drop_newest", 4096)
    assert not s.append(rec(10)) and s.dropped == 1  # over the new bound: refused, counted
    s.set_limits(4 * frame, "drop_oldest")
    assert s.append(rec(11))
    kept = drain(s)
    assert kept[-1] == rec(11) and s.dropped + len(kept) == 12
    with pytest.raises(ValueError):
        s.set_limits(1 << 20, "drop_everything")


def test_a_record_that_can_never_fit_is_dropped_alone(tmp_path):
    s = Spool(tmp_path / "q", max_bytes=1000)
    s.append(rec(1))
    assert not s.append(b"x" * 2000)
    assert s.dropped == 1 and drain(s) == [rec(1)]


def test_permissions_and_exclusive_use(tmp_path):
    d = tmp_path / "state" / "spool" / "x"
    s = Spool(d, max_bytes=1 << 20)
    s.append(rec(1))
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for f in d.iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    with pytest.raises(KarmorError, match=f"in use by another process \\(pid {os.getpid()}\\)"):
        Spool(d, max_bytes=1 << 20)
    s.close()
    os.chmod(d, 0o755)
    Spool(d, max_bytes=1 << 20).close()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_a_directory_of_another_user_is_refused(tmp_path):
    d = tmp_path / "q"
    d.mkdir()
    os.chown(d, 12345, 12345)
    with pytest.raises(KarmorError, match="owned by uid 12345"):
        Spool(d, max_bytes=1 << 20)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("append"), st.integers(0, 300)),
                          st.tuples(st.just("deliver"), st.integers(1, 9)),
                          st.tuples(st.just("fail"), st.integers(1, 9)),
                          st.tuples(st.just("reopen"), st.just(0))), max_size=60))
def test_model_without_bound_every_record_is_delivered_once_in_order(tmp_path_factory, ops):
    d = tmp_path_factory.mktemp("spool")
    s = Spool(d, max_bytes=1 << 30, segment_bytes=400)
    model: list[bytes] = []
    delivered: list[bytes] = []
    n = 0
    for op, arg in ops:
        if op == "append":
            p = rec(n, 10 + arg)
            n += 1
            s.append(p)
            model.append(p)
        elif op in ("deliver", "fail"):
            b = s.take(arg, 1 << 20, timeout=0)
            if b is None:
                assert not model
                continue
            assert list(b.payloads) == model[:len(b.payloads)]
            if op == "deliver":
                s.commit(b)
                delivered += model[:len(b.payloads)]
                del model[:len(b.payloads)]
            else:
                s.release(b)
        else:
            s.close()
            s = Spool(d, max_bytes=1 << 30, segment_bytes=400)
            assert s.records == len(model)
    assert drain(s) == model
    s.close()


def test_sync_covers_completed_segments_even_after_they_are_gone(tmp_path):
    s = Spool(tmp_path / "q", max_bytes=1 << 20, segment_bytes=200)
    for i in range(30):
        s.append(rec(i))
    assert len(s._unsynced) >= 3  # rotated segments wait for the sender's sync, not the alert path
    drain(s, max_records=4)
    s.sync()
    assert s._unsynced == []
    s.append(rec(99))
    s.sync()
    assert drain(s) == [rec(99)]
