#!/usr/bin/env bash
# Debian's headless Chromium for the browser test of the HTML report (tests/test_report_browser.py), unpacked
# into DEST without installing anything: apt-get download + dpkg -x, ≈ 95 MB, a few seconds. The libraries
# listed are those chromium-headless-shell needs beyond a Debian 12 system with the project's own
# dependencies; on another system the test says which one is missing and skips.
# Never fails `make test`: without apt-get (or a mirror) there is no browser, and the test skips.
# Usage: scripts/fetch_chromium.sh [DEST=data/chromium]
set -uo pipefail
dest=${1:-data/chromium}
[ -x "$dest/usr/lib/chromium/chromium-headless-shell" ] && exit 0
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    echo "fetch_chromium: no apt-get/dpkg here; the browser test of the HTML report will skip"; exit 0
fi
PACKAGES="chromium-headless-shell chromium-common libopenh264-7 libxnvctrl0 libpulse0 libasyncns0 libsndfile1
    libogg0 libvorbis0a libvorbisenc2 libflac12 libopus0 libmpg123-0 libmp3lame0 libharfbuzz-subset0 libminizip1
    libdouble-conversion3"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$dest.tmp"' EXIT
# shellcheck disable=SC2086
if ! (cd "$tmp" && apt-get download $PACKAGES >/dev/null 2>&1); then
    echo "fetch_chromium: apt-get download failed; the browser test of the HTML report will skip"; exit 0
fi
mkdir -p "$dest.tmp"
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dest.tmp"; done
mv "$dest.tmp" "$dest"
echo "fetch_chromium: $dest/usr/lib/chromium/chromium-headless-shell ($(du -sh "$dest" | cut -f1))"
