"""The backend's own logic without semodule: state, label bookkeeping, store layout, settings."""

from __future__ import annotations

import bz2
import os

from karmor_host.enforce.selinux import avc
from karmor_host.enforce.selinux.backend import Backend, State, _expand_check, _store_modules
from karmor_host.enforce.selinux.render import Label
from karmor_host.kernel.auditrecords import split_netlink


class FakeSelinux:
    """python3-selinux's label calls over a dict; paths in `refuse` fail like 9p does."""

    def __init__(self, labels=None, refuse=()):
        self.labels = dict(labels or {})
        self.refuse = set(refuse)

    def lgetfilecon_raw(self, path):
        if path not in self.labels:
            raise OSError(61, "No data available")
        return [len(self.labels[path]) + 1, self.labels[path]]

    def lsetfilecon_raw(self, path, ctx):
        if path in self.refuse:
            raise OSError(95, "Operation not supported")
        self.labels[path] = ctx


def _backend(tmp_path, fake):
    b = Backend(tmp_path / "state")
    b._selinux = fake
    return b


def test_originals_are_recorded_before_labels_change_and_restored_after(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for p in (a, b, c):
        p.write_text("")
    orig = "system_u:object_r:etc_t:s0"
    fake = FakeSelinux({str(a): orig, str(b): orig, str(c): orig}, refuse={str(c)})
    backend = _backend(tmp_path, fake)
    state = State()
    labels = [Label(str(p), "file", orig, "system_u:object_r:karmor_1_t:s0", "karmor_1_t", ino=os.lstat(p).st_ino)
              for p in (a, b, c)]
    res = backend.set_labels(labels, state)
    assert res.set == (str(a), str(b)) and res.failed[0][0] == str(c)
    assert fake.labels[str(a)] == "system_u:object_r:karmor_1_t:s0"
    saved = backend.read_state()
    assert saved.originals() == {str(a): orig, str(b): orig}  # c never took our label
    # someone relabels b in between: karmor leaves it alone
    fake.labels[str(b)] = "system_u:object_r:admin_t:s0"
    res = backend.restore([str(a), str(b)], saved)
    assert res.restored == (str(a),) and fake.labels[str(a)] == orig
    assert fake.labels[str(b)] == "system_u:object_r:admin_t:s0"
    assert backend.read_state().labels == {}


def test_a_replaced_file_is_not_relabelled(tmp_path):
    p = tmp_path / "f"
    p.write_text("")
    fake = FakeSelinux({str(p): "u:object_r:etc_t:s0"})
    backend = _backend(tmp_path, fake)
    res = backend.set_labels([Label(str(p), "file", "u:object_r:etc_t:s0", "u:object_r:karmor_1_t:s0",
                                    "karmor_1_t", ino=os.lstat(p).st_ino + 1)], State())
    assert res.failed and "replaced" in res.failed[0][1]
    assert fake.labels[str(p)] == "u:object_r:etc_t:s0"


def test_an_original_survives_a_second_apply(tmp_path):
    p = tmp_path / "f"
    p.write_text("")
    fake = FakeSelinux({str(p): "u:object_r:etc_t:s0"})
    backend = _backend(tmp_path, fake)
    state = State()
    backend.set_labels([Label(str(p), "file", "u:object_r:etc_t:s0", "u:object_r:karmor_1_t:s0", "karmor_1_t")], state)
    # the next scan sees karmor's label; the recorded original must not be overwritten by it
    backend.set_labels([Label(str(p), "file", "u:object_r:karmor_1_t:s0", "u:object_r:karmor_2_t:s0", "karmor_2_t")],
                       state)
    assert backend.read_state().originals() == {str(p): "u:object_r:etc_t:s0"}


def test_state_round_trip_and_version(tmp_path):
    backend = Backend(tmp_path / "s")
    assert backend.read_state() == State()
    backend.write_state(State(module="abc", labels={"/x": {"original": "o", "applied": "a", "dev": 1, "ino": 2}}))
    st = backend.read_state()
    assert st.module == "abc" and st.originals() == {"/x": "o"}
    (tmp_path / "s" / "state.json").write_text('{"version": 99}')
    assert backend.read_state() == State()


def test_store_modules_take_the_highest_priority_and_skip_disabled(tmp_path):
    store = tmp_path / "active"
    for prio, name, data in ((100, "base", b"(base)"), (100, "apache", b"(a100)"), (400, "apache", b"(a400)"),
                             (100, "old", b"(old)"), (400, "karmor", bz2.compress(b"(k)"))):
        d = store / "modules" / str(prio) / name
        d.mkdir(parents=True)
        (d / "cil").write_bytes(data)
    (store / "modules" / "disabled").mkdir()
    (store / "modules" / "disabled" / "old").write_text("")
    mods = _store_modules(store)
    assert sorted(mods) == ["apache", "base", "karmor"]
    assert mods["apache"].read_bytes() == b"(a400)"


def test_expand_check_setting(tmp_path):
    conf = tmp_path / "etc/selinux/semanage.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("# expand-check=1\nexpand-check=0\n")
    assert not _expand_check(tmp_path)
    conf.write_text("expand-check = 1  # check neverallows\n")
    assert _expand_check(tmp_path)


def test_netlink_payloads_keep_only_avc_records():
    import struct

    def msg(kind, text):
        body = text.encode() + b"\0"
        length = 16 + len(body)
        return struct.pack("=IHHII", length, kind, 0, 0, 0) + body + b"\0" * ((4 - length % 4) % 4)

    data = (msg(1400, "audit(1.0:1): avc:  denied  { read } for pid=1") + msg(1300, "audit(1.0:1): arch=c000003e")
            + msg(1400, 'audit(1.0:2): apparmor="DENIED" operation="open"'))
    assert split_netlink(data, avc.RECORDS) == ["audit(1.0:1): avc:  denied  { read } for pid=1"]


def test_files_created_in_a_relabelled_directory_get_its_original_type_back(tmp_path):
    d = tmp_path / "conf"
    (d / "sub").mkdir(parents=True)
    new, deeper, foreign = d / "new", d / "sub" / "x", d / "foreign"
    for p in (new, deeper, foreign):
        p.write_text("")
    karmor = "system_u:object_r:karmor_1_t:s0"
    fake = FakeSelinux({str(d): karmor, str(new): "staff_u:object_r:karmor_1_t:s0", str(d / "sub"): karmor,
                        str(deeper): karmor, str(foreign): "system_u:object_r:admin_t:s0"})
    backend = _backend(tmp_path, fake)
    state = State(labels={str(d): {"original": "system_u:object_r:etc_t:s0", "applied": karmor, "dev": 0, "ino": 0}})
    res = backend.sweep([str(d)], state, skip={str(d / "sub")})
    assert sorted(res.restored) == [str(new), str(deeper)]
    assert fake.labels[str(new)] == "staff_u:object_r:etc_t:s0"  # only the type is the directory's
    assert fake.labels[str(deeper)] == "system_u:object_r:etc_t:s0"
    assert fake.labels[str(d / "sub")] == karmor  # the next plan labels it
    assert fake.labels[str(foreign)] == "system_u:object_r:admin_t:s0"  # not karmor's


def test_a_file_named_by_its_last_component_is_found_by_inode(tmp_path):
    from karmor_host.enforce.selinux.enforcer import _find_in

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "new").write_text("")
    (tmp_path / "b" / "new").write_text("")
    ino = os.lstat(tmp_path / "b" / "new").st_ino
    assert _find_in({str(tmp_path / "a"), str(tmp_path / "b")}, "new", ino) == str(tmp_path / "b" / "new")
    assert _find_in({str(tmp_path / "a")}, "gone", 0) == ""
