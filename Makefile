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

# --- packages (docs/packaging.md) ------------------------------------------------------------
# Built from a clean copy of the work tree into dist/; rebuilt when a packaged file changes.
PKG_INPUTS := $(wildcard $(shell git ls-files --cached --others --exclude-standard \
                karmor_host bpf debian rpm systemd config policies docs README.md setup.cfg \
                pyproject.toml tools/gen-manpage.py tools/remove-kernel-state.sh \
                tools/build-deb.sh tools/build-rpm.sh tools/karmor-host-generator.sh 2>/dev/null))
DEB_FILE   := dist/karmor-host_$(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)_amd64.deb
RPM_FILE   := dist/karmor-host-$(shell sed -n 's/^Version: *//p' rpm/karmor-host.spec)-$(shell sed -n 's/^Release: *//p' rpm/karmor-host.spec).x86_64.rpm

.PHONY: deb rpm test-package
deb: $(DEB_FILE)
$(DEB_FILE): $(PKG_INPUTS) | $(STAMPS)/deps
	tools/build-deb.sh dist

rpm: $(RPM_FILE)
$(RPM_FILE): $(PKG_INPUTS) | $(STAMPS)/deps
	tools/build-rpm.sh dist

# The package suite: builds both packages, boots a systemd guest with the .deb (tests/package/).
test-package: venv
	$(VENV)/bin/pytest -q tests/package
