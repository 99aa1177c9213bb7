# Two set-up commands: `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench-baselines data-real data-hedgewars data-renders clean

# Exact versions come from constraints.txt (the tested set); pyproject.toml only declares compatible ranges.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU wheel on disk; anything else downloads gigabytes.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	# tinysoundfont's only dependency is pyaudio (live playback, needs PortAudio headers); rendering needs none of it.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt tinysoundfont
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/musictok demo

# The HTML report's browser test runs Debian's headless Chromium, unpacked into data/chromium (≈ 95 MB, seconds;
# skipped where apt-get cannot fetch it, with the reason; .ci/run sets MUSICTOK_REQUIRE_BROWSER=1, which turns that skip into a failure).
test: $(STAMP) data/chromium
	$(BIN)/python -m pytest -q

data/chromium:
	scripts/fetch_chromium.sh data/chromium

# Optional, for `musictok bench`'s speed rows: EnCodec and DAC from PyPI (the `bench` extra names them), at the
# versions in constraints.txt. --no-deps because both require torchaudio, and the newest (2.11.0) fails to load
# beside torch 2.13; the bench stubs that import, which their models never call (file I/O and resampling).
# The rest is DAC's import chain.
BASELINES := encodec einops descript-audio-codec descript-audiotools argbind docstring_parser flatten-dict ffmpy \
	importlib_resources julius tqdm tensorboard protobuf absl-py randomname
bench-baselines: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt $(BASELINES)

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
