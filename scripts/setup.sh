#!/usr/bin/env bash
# Sets up a fresh machine: system packages (tests only) and the project's virtualenv.
#   scripts/setup.sh demo    the library with its demo (and the collector the demo runs)
#   scripts/setup.sh test    everything the test suite needs (Prometheus, Alertmanager,
#                            Phoenix, the instrumented client libraries, linters)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"
PYTHON="${PYTHON:-python3}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "$what" = test ]; then
    if ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
        echo "==> installing Prometheus and Alertmanager (Debian packages)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            prometheus prometheus-alertmanager >/dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi

if [ "$what" = test ]; then
    extras="demo,prometheus,dev,integrations,backend"
else
    extras="demo"
fi
echo "==> installing llmspans[$extras] into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]"
