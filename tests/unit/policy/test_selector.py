"""nodeSelector matching: hostname forms, hostnamereg, other labels, reasons."""

from __future__ import annotations

import os

import pytest

from karmor_host.policy import HostIdentity, match

HOST = HostIdentity("web-1.example.com", {"kubearmor.io/hostname": "web-1.example.com", "env": "prod"})


@pytest.mark.parametrize("value", [
    "web-1.example.com", "WEB-1.example.com", "web-1", "*", "db-1, web-1 ,db-2", "db-1,*",
])
def test_hostname_values_that_name_this_host(value: str) -> None:
    for key in ("kubearmor.io/hostname", "kubernetes.io/hostname"):
        assert match({key: value}, HOST).applies


@pytest.mark.parametrize("value", ["web-2", "web", "db-1,db-2", "web-1.example", ""])
def test_hostname_values_that_do_not(value: str) -> None:
    m = match({"kubearmor.io/hostname": value}, HOST)
    assert not m.applies
    assert m.reason == f"kubearmor.io/hostname {value!r} does not name this host (web-1.example.com)"


@pytest.mark.parametrize("value,applies", [
    ("web-*", True), ("WEB-?.example.com", True), ("db-*", False), ("web-[0-9]*", True),
    ("^web-[0-9]+\\.example\\.com$", True), ("^web-[0-9]+$", False), ("^db", False),
])
def test_hostnamereg_is_a_glob_or_an_anchored_regex(value: str, applies: bool) -> None:
    m = match({"kubearmor.io/hostnamereg": value}, HOST)
    assert m.applies is applies
    assert (m.reason == "") is applies


def test_other_labels_must_be_equal() -> None:
    assert match({"env": "prod"}, HOST).applies
    wrong = match({"env": "test"}, HOST)
    assert not wrong.applies and wrong.reason == "label 'env' is 'prod' on this host, the policy wants 'test'"
    missing = match({"rack": "r1"}, HOST)
    assert not missing.applies and missing.reason == "this host has no label 'rack' (the policy wants 'r1')"


def test_every_label_must_match_and_every_mismatch_is_named() -> None:
    m = match([("kubearmor.io/hostname", "*"), ("env", "test"), ("rack", "r1")], HOST)
    assert not m.applies
    assert m.reason == ("label 'env' is 'prod' on this host, the policy wants 'test'; "
                        "this host has no label 'rack' (the policy wants 'r1')")
    assert match([("kubearmor.io/hostname", "*"), ("env", "prod")], HOST).applies


def test_detect_uses_uname_unless_overridden() -> None:
    ident = HostIdentity.detect()
    assert ident.hostname == os.uname().nodename
    assert ident.labels["kubearmor.io/hostname"] == ident.hostname
    assert ident.labels["kubernetes.io/os"] == "linux"
    other = HostIdentity.detect(hostname="db-7", labels={"env": "prod"})
    assert other.hostname == "db-7" and other.labels["kubernetes.io/hostname"] == "db-7"
    assert match({"env": "prod", "kubearmor.io/hostname": "db-7"}, other).applies
