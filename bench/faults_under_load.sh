#!/usr/bin/env bash
# Every fault test (pytest -m faults), RUNS times in a row, with a CPU-heavy process beside it: a timing
# dependence (a test that passes alone and fails on a loaded machine) shows up here (issue 29). Prints
# each run's wall time and result; exits 1 when any run failed. docs/reliability.md records the times.
#
#   bench/faults_under_load.sh [RUNS] [pytest arguments...]      # default: 3 runs
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
python=${PYTHON:-python}

# One busy loop, a whole core's worth of load; this PID alone is stopped at the end.
"$python" -c "while True: pass" &
load=$!
trap 'kill "$load" 2>/dev/null || true' EXIT
echo "load: PID $load busy-looping; $(nproc) CPU(s); $(date -u +%Y-%m-%dT%H:%MZ)"

failed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if "$python" -m pytest -m faults -q -p no:cacheprovider "$@" > "/tmp/faults_under_load.$$.$i.log" 2>&1; then
        result=passed
    else
        result=FAILED
        failed=1
    fi
    seconds=$(($(date +%s) - start))
    summary=$(tail -n 1 "/tmp/faults_under_load.$$.$i.log")
    echo "run $i: $result in ${seconds} s ($summary); log /tmp/faults_under_load.$$.$i.log"
done
exit "$failed"
