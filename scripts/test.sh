#!/usr/bin/env bash
# The README's test command: set up a fresh machine, lint, type-check, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff"
ruff check .
echo "==> mypy --strict"
mypy
echo "==> pytest"
pytest -q -p no:cacheprovider "$@"
