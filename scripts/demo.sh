#!/usr/bin/env bash
# The README's first command: set up, then run the demo (collector + example pipelines + report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec .venv/bin/llmspans demo "$@"
