#!/usr/bin/env bash
# Create one virtual environment per serving-benchmark peer, under build/bench-venvs/<peer>/,
# from the pinned requirements in bench/peers/<peer>.txt. Idempotent: a venv whose pins have
# not changed since it was built is left alone. Usage: bench/peers/setup.sh [peer ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
    peers=(fastapi-sklearn bentoml-sklearn mlserver triton)
fi
status=0
for peer in "${peers[@]}"; do
    pins="bench/peers/$peer.txt"
    venv="build/bench-venvs/$peer"
    if [ ! -f "$pins" ]; then
        echo "setup: no $pins" >&2
        exit 2
    fi
    stamp="$venv/.pins.sha256"
    want=$(sha256sum "$pins" | cut -d' ' -f1)
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        echo "setup: $venv is up to date"
        continue
    fi
    echo "setup: building $venv from $pins"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    if "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins"; then
        "$venv/bin/pip" freeze --disable-pip-version-check > "$venv/freeze.txt"
        echo "$want" > "$stamp"
    else
        echo "setup: pip install failed for $peer (venv left without a stamp)" >&2
        status=1
    fi
done
exit $status
