# Two set-up commands: `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench-baselines clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU wheel on disk; anything else downloads gigabytes.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# tinysoundfont's only dependency is pyaudio (live playback, needs PortAudio headers); rendering needs none of it.
	$(BIN)/python -m pip install --quiet --no-deps tinysoundfont==0.3.7
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/musictok demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Optional, for `musictok bench`'s speed rows: EnCodec and DAC from PyPI. --no-deps because both require
# torchaudio, whose newest wheel here (2.11.0) pins another torch (a multi-GB download); the bench stubs that
# import, which their models never call (file I/O and resampling). The rest is DAC's import chain.
BASELINES := encodec==0.1.1 einops==0.8.2 descript-audio-codec==1.0.0 descript-audiotools==0.7.2 \
	argbind==0.3.9 docstring_parser==0.18.0 flatten-dict==0.5.0 ffmpy==1.0.0 importlib_resources==7.1.0 \
	julius==0.2.8 tqdm==4.70.1 tensorboard==2.21.0 protobuf==7.36.2 absl-py==2.5.1 randomname==0.2.1
bench-baselines: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps $(BASELINES)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
