# packcam: `make demo` runs a station + web site on a simulated camera; `make test` runs the tests.
# Both set up what they need: system packages (apt) and a Python venv in .venv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
comma  := ,
# On a Raspberry Pi the venv must see apt's python3-picamera2 (it is not installable from PyPI).
IS_PI  := $(shell grep -qs "Raspberry Pi" /proc/device-tree/model && echo 1)
VENV_FLAGS := $(if $(IS_PI),--system-site-packages,)
EXTRAS := $(if $(IS_PI),dev$(comma)pi,dev)
# pyzbar needs libzbar0; the overlay needs a font with Chinese glyphs; openssl signs/timestamps.
APT_PACKAGES := libzbar0 fonts-wqy-zenhei openssl $(if $(IS_PI),python3-picamera2,)
# Only the tests need these: Debian's Chromium for the browser tests, systemd-analyze,
# PostgreSQL's initdb/pg_ctl for the fleet tests' throwaway cluster.
TEST_APT_PACKAGES := chromium systemd postgresql
DEMO_ARGS ?=

# apt-get install whatever of the listed packages is missing (sudo when not root).
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: all deps test-deps venv demo test lint bench clean

all: test

deps: .deps-stamp
.deps-stamp: Makefile
	$(call apt_ensure,$(APT_PACKAGES))
	@touch $@

test-deps: .test-deps-stamp
.test-deps-stamp: Makefile
	$(call apt_ensure,$(TEST_APT_PACKAGES))
	@touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | .deps-stamp
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

demo: venv
	$(VENV)/bin/packcam demo $(DEMO_ARGS)

test: venv test-deps
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: venv
	$(PY) bench/loop.py --quick

clean:
	rm -rf $(VENV) .deps-stamp .test-deps-stamp .pytest_cache .ruff_cache
