# dtls-lite developer entry points. On a fresh Debian/Ubuntu machine:
#   make demo    # venv + real DTLS peers, then a demo handshake
#   make test    # venv + real DTLS peers, then the whole test suite (CPython and MicroPython)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dtls-lite-installed
SUDO := $(shell [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && echo sudo)

.PHONY: venv peers mp32 test demo bench footprint clean distclean esp32emu esp32emu-test

venv: $(STAMP)

# Re-run pip only when pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml
	@if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "python3-venv missing: installing it"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; \
	fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# PYTHON: the interpreter of the aiocoap/tinydtls server's own venv (.peers/coapvenv)
peers:
	PYTHON=$(PYTHON) bash tools/install_peers.sh

# Only the 32-bit MicroPython 1.25 unix port (`make peers` builds it too).
mp32:
	bash tools/build_mp32.sh

# pytest's exit status is the result; "no tests collected" (5) is a failure too. In parallel
# (pytest-xdist) on TEST_WORKERS processes; tests that share a costly result (a module's run
# under MicroPython, a compile, a firmware build) are one xdist_group (tests/conftest.py).
TEST_WORKERS ?= 2
test: venv peers
	@echo "make test: tests/esp32emu (the emulated ESP32) runs on its own: make esp32emu-test"
	@$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15 --ignore=tests/esp32emu; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc

# The demo over an emulated link (tools/links.py; default lte-m). Your own server:
#   make demo SERVER=host:port PSK=hex IDENTITY=id   (and LINK=loopback|wifi|lte-m|nb-iot)
demo: venv peers
	$(PY) tools/demo.py $(if $(LINK),--link $(LINK)) $(if $(SERVER),--server $(SERVER)) \
		$(if $(PSK),--psk $(PSK)) $(if $(IDENTITY),--identity $(IDENTITY))

# Every section of tools/bench.py (JSON in bench-results.json); among its targets, issue 13's:
# the full-handshake CPU on MicroPython vs the built-in tls client, and the CPU of a continued
# wake as a new MicroPython process, each beside the old figure from tools/baseline.json.
# The energy section (tools/bench_energy.py, A MODEL) writes bench-battery.png with the plot
# extra (matplotlib); if it cannot be installed the figures still print and the plot is skipped.
PLOT_STAMP := $(VENV)/.dtls-lite-plot
bench: venv peers $(PLOT_STAMP)
	$(PY) tools/bench.py $(if $(LINK),--link $(LINK))

$(PLOT_STAMP): pyproject.toml
	@$(PY) -m pip install -q -e '.[test,plot]' && touch $@ || \
		echo "make bench: the plot extra (matplotlib) did not install: the plot will be skipped"

# Sizes, the import heap per module and the smallest heap per wake kind on the 32-bit
# MicroPython (.mpy and frozen) and the 64-bit one, beside the old figures (tools/baseline.json).
footprint: venv peers
	$(PY) tools/footprint.py --all --json build/footprint.json

# The ESP32's own MicroPython firmware under Espressif's QEMU (tools/esp32emu.py): find or
# build the emulator (ESP32_QEMU, or ESP32_QEMU_SRC [+ ESP32_QEMU_KEYCODEMAPDB] built once into
# .esp32emu/), fetch the firmware (ESP32_FIRMWARE, default PyPI's v1.16 image), prepare the
# flash, then boot, deploy with tools/deploy.py and import the client. Says what is missing
# (exit 3) when it cannot. `make esp32emu-test` then runs the tier (tests/esp32emu, serial).
ESP32EMU_STAMP := $(VENV)/.dtls-lite-esp32emu
esp32emu: venv $(ESP32EMU_STAMP)
	$(PY) tools/esp32emu.py prepare

$(ESP32EMU_STAMP): pyproject.toml
	$(PY) -m pip install -q -e '.[test,esp32emu]'
	@touch $@

esp32emu-test: esp32emu peers
	$(PY) -m pytest -q -rs -p no:cacheprovider tests/esp32emu

# Build and test leftovers; keeps .venv and the built peers (.peers), see distclean.
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis bench-*.json bench-*.png
	find . -path ./$(VENV) -prune -o -path ./.peers -prune -o \
		\( -name __pycache__ -o -name '*.mpy' \) -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) .peers
