# Two set-up commands: `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench-baselines data-real data-hedgewars data-renders clean

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

# Real recordings (never committed). Free-licence game soundtracks from Debian, unpacked without installing
# (apt-get download + dpkg -x); licences are read per file from each package's copyright file.
# hedgewars-data is the held-out real-music TEST set: it never enters data/real.
REAL_PACKAGES := warzone2100-music fb-music-high hyperrogue-music asc-music nexuiz-music ufoai-music \
	drascula-music planetblupi-music-ogg
data-real: $(STAMP)
	scripts/fetch_debian.sh data/debian $(BIN)/python $(REAL_PACKAGES)
	$(BIN)/musictok data import $(addprefix data/debian/,$(REAL_PACKAGES)) --out data/real --segment-seconds 30
data-hedgewars: $(STAMP)
	scripts/fetch_debian.sh data/debian $(BIN)/python hedgewars-data
	$(BIN)/musictok data import data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music \
		--out data/hedgewars --split test --segment-seconds 10

# Renders of every music21 work with >= 3 parts, each stem on a SoundFont drawn from the pool (the embedded
# TimGM6mb + two Debian General MIDI SoundFonts, unpacked, not installed) and a programme from the wide
# palette; drums on 30 % of the pieces. Resumable: rerun to continue. 1,981 works, ≈ 130 h of audio: about
# 5 h on one busy core (measured ≈ 26x real time), ≈ 2.5-3 h on two free ones, ≈ 1.7 GB of FLAC per hour of
# audio, so ≈ 200 GB (half with RENDER_ARGS=--no-musdb); see docs/results/corpus-renders.md.
# Try `make data-renders RENDER_ARGS="--limit 3"` first.
SOUNDFONT_PACKAGES := fluid-soundfont-gm musescore-general-soundfont-small
RENDER_ARGS ?=
data-renders: $(STAMP)
	scripts/fetch_debian.sh data/debian $(BIN)/python $(SOUNDFONT_PACKAGES)
	$(BIN)/musictok data build --corpus all --out data/renders --soundfont-pool auto --palette wide \
		--drums-share 0.3 --level-stems $(RENDER_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
