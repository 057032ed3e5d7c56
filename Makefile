# packcam: `make demo` runs a station + web site on a simulated camera; `make test` runs the tests.
# Both set up what they need: system packages (apt) and a Python venv in .venv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
comma  := ,
# The Raspberry Pi branch (Raspberry Pi OS 64-bit, Bookworm or Trixie, Pi 4/5): detected from
# the device tree, or forced with PACKCAM_PI=1 (PACKCAM_PI=0 turns it off). On x86, `make -n -B
# PACKCAM_PI=1 venv` prints exactly the commands a Pi would run (tests/test_makefile_pi.py).
PACKCAM_PI ?= $(shell grep -qs "Raspberry Pi" /proc/device-tree/model && echo 1)
IS_PI  := $(filter 1,$(PACKCAM_PI))
# The release is told by the Python that makes the venv, the thing pip's choice of wheels
# depends on: Python=release for each release the Pi's locks are resolved for (lock.py's
# RELEASES). Trixie's locks end in -trixie. Any other Python stops `make venv` before apt and
# pip (pi-python). PI_PYTHON=3.13 fakes a Trixie Pi (tests/test_makefile_pi.py).
PI_RELEASES := 3.11=Bookworm 3.13=Trixie
ifeq ($(origin PI_PYTHON),undefined)
PI_PYTHON := $(if $(IS_PI),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
endif
PI_RELEASE := $(patsubst $(PI_PYTHON)=%,%,$(filter $(PI_PYTHON)=%,$(PI_RELEASES)))
# The Pi's locks hold aarch64 wheels only. A 32-bit Raspberry Pi OS runs an armhf userland
# (Python included) on the Pi's 64-bit kernel, where `uname -m` says aarch64: dpkg tells
# (pi-arch, before pi-python: its Python can be Trixie's 3.13).
PI_ARCH := $(if $(IS_PI),$(shell dpkg --print-architecture 2>/dev/null))
PI_32BIT := $(filter armhf armel,$(PI_ARCH))
# picamera2, python-evdev and gpiozero/lgpio come from apt (libcamera's bindings cannot be
# built by pip; evdev has no aarch64 wheel and Lite has no python3-dev), so the venv must see
# the system packages. The Pi's locks leave evdev and gpiozero out, so pip builds nothing.
PI_APT_PACKAGES := python3-venv python3-picamera2 python3-evdev python3-gpiozero python3-lgpio
VENV_FLAGS := $(if $(IS_PI),--system-site-packages,)
# On a Pi the venv gets only what a station needs; add `dev` (EXTRAS=dev,pi) to run the tests.
EXTRAS ?= $(if $(IS_PI),pi,dev)
# The venv is installed from the hashed lock for EXTRAS, requirements/<extras, sorted, joined by
# "-">.lock (dev, fleet, pi, fleet-pi, dev-pi; on a Trixie Pi pi-trixie, fleet-pi-trixie,
# dev-pi-trixie), made by `make lock` from pyproject.toml.
space  := $(subst ,, )
LOCK_NAME := $(subst $(space),-,$(sort $(subst $(comma), ,$(EXTRAS))))$(if $(IS_PI),$(if $(filter Trixie,$(PI_RELEASE)),-trixie))
LOCK   := requirements/$(LOCK_NAME).lock
# `make lock` runs uv from its own small venv (uv locked in requirements/tools.lock);
# LOCK_ARGS=--upgrade moves every pin to the newest version pyproject allows,
# LOCK_ARGS=--offline resolves from uv's cache alone.
LOCK_VENV := .venv-lock
LOCK_ARGS ?=
# The lock puts numpy 2 in the venv; apt's simplejpeg (imported by picamera2) is built for
# Bookworm's numpy 1.24 and fails with "numpy.dtype size changed". The lock's PyPI build,
# installed into the venv over it, matches numpy 2 (raspberrypi/picamera2#1088, #1211; why not
# pin numpy instead: docs/raspberry-pi.md). The import check names this as the fix by hand.
# Trixie's apt builds against numpy 2.2, which the lock's newer numpy 2 loads: harmless there.
PI_SIMPLEJPEG := simplejpeg>=1.8.1
PI_IMPORTS := picamera2 evdev gpiozero
# pyzbar needs libzbar0; the overlay needs a font with Chinese glyphs; openssl signs/timestamps;
# alsa-utils (aplay) plays the station's sounds, espeak-ng renders the optional spoken prompts once.
APT_PACKAGES := libzbar0 fonts-wqy-zenhei openssl alsa-utils espeak-ng $(if $(IS_PI),$(PI_APT_PACKAGES),)
# Only the tests need these: Debian's Chromium for the browser tests, systemd-analyze,
# PostgreSQL's initdb/pg_ctl for the fleet tests' throwaway cluster.
TEST_APT_PACKAGES := chromium systemd postgresql
DEMO_ARGS ?=
DOCTOR_ARGS ?=

# apt-get install whatever of the listed packages is missing (sudo when not root). A name is
# there when an installed package has it or provides it: Trixie's libzbar0t64 (Debian 13's
# 64-bit time_t rename) provides libzbar0, which dpkg-query by name does not find.
define apt_ensure
	@have=$$(dpkg-query -W -f='$${Status}|$${Package}|$${Provides}\n' 2>/dev/null | awk -F'|' \
	  '$$1 ~ / ok installed$$/ { print $$2; n = split($$3, p, ", *"); \
	    for (i = 1; i <= n; i++) { split(p[i], w, " "); print w[1] } }'); \
	missing=""; for p in $(1); do \
	  printf '%s\n' "$$have" | grep -qxF "$$p" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: all deps test-deps venv pi-arch pi-python pi-check demo doctor test lint lock lock-check config-docs bench clean FORCE

all: test

deps: .deps-stamp
.deps-stamp: Makefile
	$(call apt_ensure,$(APT_PACKAGES))
	@touch $@

test-deps: .test-deps-stamp
.test-deps-stamp: Makefile
	$(call apt_ensure,$(TEST_APT_PACKAGES))
	@touch $@

# Exactly the lock's versions, each file checked against its hash; then packcam itself, with no
# dependency resolution and no download (setuptools comes from the lock: --no-build-isolation).
# On a Pi, --ignore-installed puts every locked package into the venv even where apt has one
# (numpy 1.24, simplejpeg built for it): apt supplies only what the lock leaves out.
# The stamp names the lock the venv was made from: another EXTRAS installs again.
VENV_LOCK := $(shell cat $(VENV)/.installed 2>/dev/null)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml $(LOCK) $(if $(filter-out $(LOCK_NAME),$(VENV_LOCK)),FORCE,) | $(if $(IS_PI),pi-arch pi-python) .deps-stamp
	$(PYTHON) requirements/lock.py --check $(LOCK_NAME)
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --require-hashes $(if $(IS_PI),--ignore-installed,) -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
ifneq ($(IS_PI),)
	$(call pi_import_check)
endif
	@echo $(LOCK_NAME) > $@

# A Pi whose Python no lock is resolved for (Ubuntu's 3.12, a future release's 3.14): stop at
# once, before apt and pip (a make error, so `make -n` stops too), rather than install a lock
# whose markers and wheels were never checked for that Python.
pi_supported := $(subst $(space)Python, or Python,$(foreach r,$(PI_RELEASES),Python $(word 1,$(subst =, ,$r)) (Raspberry Pi OS $(word 2,$(subst =, ,$r)))))
pi_flash := Flash Raspberry Pi OS Lite (64-bit), Trixie (the Imager's default) or Bookworm (Raspberry Pi OS (other)), then make venv again: docs/raspberry-pi.md, step 1
pi-arch:
	$(if $(PI_32BIT),$(error packcam: this Pi runs a 32-bit Raspberry Pi OS (dpkg says $(PI_32BIT), whatever uname -m says); packcam's Pi locks hold 64-bit (aarch64) wheels only. $(pi_flash)))
pi-python:
	$(if $(PI_RELEASE),,$(error packcam: this Pi's $(PYTHON) is Python $(or $(PI_PYTHON),(no answer)); packcam's Pi locks are for $(pi_supported). $(pi_flash)))

# Only for a lock that does not exist: a rule for an existing one would run under `make -B`
# (and show in `make -n -B venv`) and stop it.
ifeq ($(wildcard $(LOCK)),)
$(LOCK):
	@echo "packcam: no $@ for EXTRAS=$(EXTRAS); the locks are: $(filter-out tools.lock,$(notdir $(wildcard requirements/*.lock)))." >&2
	@echo "  add it to LOCKS in requirements/lock.py, then run make lock" >&2
	@exit 1
endif

# Regenerate the locks after a change to pyproject's dependencies (fast: uv keeps the current
# pins unless LOCK_ARGS=--upgrade, and falls back to its cache when PyPI cannot be reached).
lock: $(LOCK_VENV)/.installed
	$(PYTHON) requirements/lock.py --uv $(LOCK_VENV)/bin/uv $(LOCK_ARGS)

$(LOCK_VENV)/.installed: requirements/tools.lock
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --require-hashes -r requirements/tools.lock
	@touch $@

FORCE:

# Fails when pyproject's dependencies changed since the locks were made.
lock-check:
	$(PYTHON) requirements/lock.py --check

# The last step on a Pi: the hardware libraries import in the venv, or make stops naming the
# one that does not, its error and the fix. `make pi-check` runs it alone.
define pi_import_check
	@for m in $(PI_IMPORTS); do \
	  if ! out=$$($(PY) -c "import $$m" 2>&1); then \
	    echo "packcam: 'import $$m' fails in $(VENV): $$(printf '%s\n' "$$out" | tail -n 1)" >&2; \
	    case "$$out" in *"dtype size changed"*) \
	      echo "  numpy/simplejpeg mismatch: $(PY) -m pip install --force-reinstall --no-deps '$(PI_SIMPLEJPEG)'" >&2;; \
	    *) echo "  install it from apt: sudo apt install $(PI_APT_PACKAGES)," \
	            "and make the venv with --system-site-packages (make clean venv)" >&2;; \
	    esac; \
	    exit 1; \
	  fi; \
	done; echo "picamera2, evdev and gpiozero import in $(VENV)"
endef

pi-check: venv
	$(call pi_import_check)

demo: venv
	$(VENV)/bin/packcam demo $(DEMO_ARGS)

# The station's self-check (camera, scanner, encoder, disk, clock, keys, network), e.g.
# `make doctor DOCTOR_ARGS="--config /etc/packcam/packcam.toml --json"`.
doctor: venv
	$(VENV)/bin/packcam doctor $(DOCTOR_ARGS)

# Everything the tests make in a temp dir (pytest's tmp_path, PostgreSQL and SeaweedFS servers
# and their sockets, Chromium's profile, PulseAudio's runtime dir) goes under one TMPDIR that is
# removed afterwards, whatever the outcome (an interrupt too): a test run leaves nothing in
# /tmp. `make test PYTEST_ARGS="tests/test_x.py -x"` runs a part.
# The tests run in TEST_WORKERS processes (pytest-xdist), a test file to each in turn, so a
# file's module fixtures are made once. Two by default: each worker starts its own PostgreSQL,
# SeaweedFS and Chromium, which a small Pi's memory bounds before its cores do; "auto" takes one
# a CPU core, and TEST_WORKERS=0 runs the tests in this one process (for --pdb, say).
TEST_WORKERS ?= 2
test: venv test-deps
	@t=$$(mktemp -d /tmp/packcam-test-XXXXXX) && trap 'rm -rf "$$t"' EXIT && \
	trap 'exit 130' INT TERM && TMPDIR="$$t" $(PY) -m pytest -q -n $(TEST_WORKERS) \
	  --dist loadfile $(PYTEST_ARGS)

# ruff, then mypy --strict on packcam/, station/, web/ and central/ ([tool.mypy] in
# pyproject.toml), both from the locked venv.
lint: venv lock-check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

# config/packcam.example.toml and docs/configuration.md, written from the config schema in
# station/config.py (tests/test_config_docs.py fails when they differ from it).
config-docs: venv
	$(PY) -m station.configdoc

bench: venv
	$(PY) bench/loop.py --quick

clean:
	rm -rf $(VENV) $(LOCK_VENV) .deps-stamp .test-deps-stamp .pytest_cache .ruff_cache .mypy_cache
