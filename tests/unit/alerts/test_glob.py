"""Glob semantics, and the component index agreeing with plain whole-path matching."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from karmor_host.alerts.glob import GlobIndex, compile_glob


def test_compile_glob_basics():
    assert compile_glob("/etc/*.conf").fullmatch("/etc/a.conf")
    assert not compile_glob("/etc/*.conf").fullmatch("/etc/x/a.conf")
    assert compile_glob("/etc/**").fullmatch("/etc/x/a.conf")
    assert not compile_glob("/etc/**").fullmatch("/etc")
    assert compile_glob("/a/**/b").fullmatch("/a/b")
    assert compile_glob("/a/[bc]?").fullmatch("/a/cz")
    assert not compile_glob("/a/[!bc]?").fullmatch("/a/cz")
    assert compile_glob("/a/[x").fullmatch("/a/[x")  # unclosed bracket: literal
    assert compile_glob("/a.b").fullmatch("/a.b") and not compile_glob("/a.b").fullmatch("/axb")


def test_index_shape_shares_wildcard_components():
    index: GlobIndex[int] = GlobIndex()
    for i in range(1000):
        index.add(f"/home/*/.app{i}/*.key", i)
    home = index._root.literal[""].literal["home"]
    assert list(home.wild) == ["*"]  # one shared branch for the 1000 patterns
    assert len(home.wild["*"][1].literal) == 1000  # then a dict on the literal component
    assert list(index.lookup("/home/u/.app417/id.key")) == [417]
    assert list(index.lookup("/home/u/.app417/x/id.key")) == []


_PART = st.sampled_from(["a", "b", "ab", "*", "**", "?", "a*", "*b", "[ab]", "**b", ""])
_PATH_PART = st.sampled_from(["a", "b", "ab", "ba", "aab", ""])


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.lists(_PART, min_size=1, max_size=4).map(lambda ps: "/" + "/".join(ps)),
                      min_size=1, max_size=8),
    paths=st.lists(st.lists(_PATH_PART, min_size=1, max_size=5).map(lambda ps: "/" + "/".join(ps)),
                   min_size=1, max_size=8),
)
def test_index_agrees_with_whole_path_regex(patterns, paths):
    index: GlobIndex[int] = GlobIndex()
    for i, pattern in enumerate(patterns):
        index.add(pattern, i)
    for path in paths:
        expected = sorted(i for i, p in enumerate(patterns) if compile_glob(p).fullmatch(path))
        assert sorted(index.lookup(path)) == expected, path
