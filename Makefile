# karmor-host developer entry points. `make run` and `make test` work as root on a
# fresh Debian 12 machine: they install what is missing first and skip what is there.
SHELL := /bin/bash
.DELETE_ON_ERROR:

PY        := /usr/bin/python3
VENV      := .venv
VPY       := $(VENV)/bin/python
STAMPS    := .make
BPF_OUT   := bpf/.output

.PHONY: all deps venv bpf run test test-unit test-kernel bench clean

all: venv bpf

$(STAMPS):
	mkdir -p $@

# Debian packages (compilers, libbpf, Debian-only Python bindings).
$(STAMPS)/deps: debian-packages.txt tools/install-deps.sh | $(STAMPS)
	tools/install-deps.sh debian-packages.txt
	touch $@
deps: $(STAMPS)/deps

# The venv sees Debian's python3-systemd, python3-libapparmor and python3-selinux.
$(STAMPS)/venv: requirements.txt setup.cfg pyproject.toml $(STAMPS)/deps
	test -x $(VPY) || $(PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@
venv: $(STAMPS)/venv

bpf: $(STAMPS)/deps
	$(MAKE) -C bpf

run: venv bpf
	tools/ensure-journald.sh
	exec $(VENV)/bin/karmor-host run --config config/karmor-host.dev.yaml --policy-dir policies

test: venv bpf
	tools/ensure-journald.sh
	$(VENV)/bin/pytest -q tests

test-unit: venv
	$(VENV)/bin/pytest -q tests/unit

# Only the VM suite: boots Debian's kernel in QEMU once per configuration (docs/vm-testing.md).
.PHONY: test-vm
test-vm: venv bpf
	$(VENV)/bin/pytest -q tests/vm

bench: venv bpf
	$(VPY) -m bench

clean:
	$(MAKE) -C bpf clean
	rm -rf $(STAMPS) $(VENV) *.egg-info
