#!/usr/bin/env bash
# Runs every benchmark and writes benchmarks/results.md, benchmarks/results.json and the
# results table of benchmarks/README.md.
#
#   bash benchmarks/run.sh                full run (about 10 minutes)
#   bash benchmarks/run.sh --quick        seconds-long smoke run of every script
#   bash benchmarks/run.sh --soak 600     with the full ten-minute steady-load profile
#   bash benchmarks/run.sh --only decorators collector    a subset (decorators,
#                                         instructions, core, collector, memory, scaling,
#                                         profile, evaluation)
#   bash benchmarks/run.sh --only evaluation   continuous evaluation: the real collector with
#                                         and without a judge of 2 s per call (about 8
#                                         minutes, so not in the default set)
#
# The benchmark environment is benchmarks/.venv (created on first use): llmspans
# installed editable with the collector extra, plus the comparison packages and
# profilers of benchmarks/requirements.txt, which belong to the benchmarks only.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
soak=""
defaults=(decorators instructions core collector memory scaling profile)
only=("${defaults[@]}")
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick="--quick"; shift ;;
        --soak) soak="$2"; shift 2 ;;
        --only) shift; only=(); while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only+=("$1"); shift; done ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

VENV=benchmarks/.venv
PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c "import llmspans.collector, traceloop.sdk, langfuse, rotel, phoenix, psutil, pyinstrument" 2>/dev/null; then
    echo "==> creating the benchmark environment in $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[collector,prometheus]" \
        -r benchmarks/requirements.txt
fi

command="bash benchmarks/run.sh${quick:+ $quick}${soak:+ --soak $soak}"
if [ "${only[*]}" != "${defaults[*]}" ]; then
    command+=" --only ${only[*]}"
fi
# Only the selected benchmarks' results are replaced: a subset run keeps the others'
# results (from an earlier run) in the report.
for name in "${only[@]}"; do
    rm -f "benchmarks/out/$name.json"
done
for name in "${only[@]}"; do
    echo "==> $name"
    case "$name" in
        decorators) timeout 900 "$PY" benchmarks/bench_decorators.py $quick ;;
        instructions) timeout 1800 "$PY" benchmarks/bench_instructions.py $quick ;;
        core) timeout 600 "$PY" benchmarks/bench_core.py $quick ;;
        collector) timeout 1200 "$PY" benchmarks/bench_collector.py $quick ;;
        memory) timeout 2400 "$PY" benchmarks/bench_memory.py $quick ${soak:+--soak "$soak"} ;;
        scaling) timeout 1200 "$PY" benchmarks/bench_scaling.py $quick ;;
        profile) timeout 900 "$PY" benchmarks/bench_profile.py $quick ;;
        evaluation) timeout 1800 "$PY" benchmarks/bench_evaluation.py $quick ;;
        *) echo "unknown benchmark: $name" >&2; exit 2 ;;
    esac
done
echo "==> report"
"$PY" benchmarks/report.py --command "$command" ${quick:+--no-readme}
