# packcam: `make demo` runs a station + web site on a simulated camera; `make test` runs the tests.
# Both set up what they need: system packages (libzbar0, a CJK font) and a venv in .venv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# On a Raspberry Pi the venv must see apt's python3-picamera2.
IS_PI  := $(shell grep -qs "Raspberry Pi" /proc/device-tree/model && echo 1)
VENV_FLAGS := $(if $(IS_PI),--system-site-packages,)
EXTRAS := $(if $(IS_PI),dev$(comma)pi,dev)
comma  := ,
APT_PACKAGES := libzbar0 fonts-wqy-zenhei
DEMO_ARGS ?=

.PHONY: all deps venv demo test lint bench clean

all: test

# System libraries: pyzbar needs libzbar0; the overlay needs a font with Chinese glyphs.
deps: .deps-stamp
.deps-stamp:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | .deps-stamp
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

demo: venv
	$(VENV)/bin/packcam demo $(DEMO_ARGS)

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: venv
	$(PY) bench/loop.py --quick

clean:
	rm -rf $(VENV) .deps-stamp .pytest_cache .ruff_cache
