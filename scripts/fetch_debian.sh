#!/usr/bin/env bash
# Unpack Debian packages into DEST/<package>/ without installing them: apt-get download + dpkg -x.
# Quake-style .pk3 archives (zip files of OGGs) are unzipped beside themselves. Idempotent.
# Usage: scripts/fetch_debian.sh DEST PYTHON PACKAGE...
set -euo pipefail
dest=$1; python=$2; shift 2
mkdir -p "$dest"
for pkg in "$@"; do
    if [ ! -d "$dest/$pkg/usr" ]; then
        deb=$(ls "$dest/${pkg}"_*.deb 2>/dev/null | head -1 || true)
        if [ -z "$deb" ]; then
            (cd "$dest" && apt-get download "$pkg")
            deb=$(ls "$dest/${pkg}"_*.deb | head -1)
        fi
        dpkg -x "$deb" "$dest/$pkg.tmp" && mv "$dest/$pkg.tmp" "$dest/$pkg"
    fi
    find "$dest/$pkg" -name '*.pk3' | while read -r f; do
        [ -d "${f%.pk3}.unzipped" ] || { "$python" -m zipfile -e "$f" "${f%.pk3}.tmp" && mv "${f%.pk3}.tmp" "${f%.pk3}.unzipped"; }
    done
    echo "$pkg: $(find "$dest/$pkg" -type f | wc -l) files, licence file $dest/$pkg/usr/share/doc/$pkg/copyright"
done
