#!/usr/bin/env bash
# Set up the environment, then run the default study or the test suite.
#
#   ./pipeline.sh run  [snakemake arguments...]   runs the pipeline, prints the report's path
#   ./pipeline.sh test [pytest arguments...]      lints, then runs every test tier
#
# The environment is a virtualenv in .venv (override with VENV=...). torch is
# installed first: TORCH_SPEC picks the release (default torch==2.13.0) and
# TORCH_INDEX_URL, if set, the index to take it from (for example PyTorch's
# CPU-only wheel index on a machine without a GPU, to avoid a multi-GB CUDA
# build). Everything else comes from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.pipeline-installed"
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
        return
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        "$VENV/bin/python" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
    fi
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    touch "$stamp"
}

# Lint and format checks: ruff on the Python, snakefmt on the Snakefile and the
# rules, and Snakemake's own linter; any finding fails the test command.
lint() {
    ruff check .
    ruff format --check .
    snakefmt --check Snakefile rules
    snakemake --lint
}

command=${1:-}
shift || true
case "$command" in
    run)
        setup
        # Rules call `python -m workflow.<stage>`: the environment's python.
        export PATH="$PWD/$VENV/bin:$PATH"
        # Snakemake reports a YAML syntax error in a config file without its file and line: check first.
        # The check reads the config files and --config entries as Snakemake will (workflow/cli_args.py),
        # and refuses what Snakemake would silently drop (a second --configfile flag) or misread.
        python -m workflow.config --check "$@"
        snakemake --cores "${CORES:-all}" "$@"
        echo "report: $PWD/results/report/index.html"
        ;;
    test)
        setup
        export PATH="$PWD/$VENV/bin:$PATH"
        # In CI (as root) the real-Slurm and real-browser tests must run: start a
        # one-node cluster and install Debian's chromium for the report test.
        if [ -n "${CI:-}" ] && [ "$(id -u)" = 0 ]; then
            .ci/slurm-cluster.sh
            export REQUIRE_SLURM=1
            if ! command -v chromium >/dev/null; then
                apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
            fi
            export REQUIRE_BROWSER=1
        fi
        lint
        # Every tier: the unit tests and the pipeline, Slurm, fault and browser
        # markers (plain `pytest` runs the unit tier alone). A -m given here wins.
        # --durations: the slowest tests in the log, to see where CI's time goes.
        python -m pytest -m "" --durations=25 "$@"
        ;;
    *)
        echo "usage: $0 run|test [arguments...]" >&2
        exit 2
        ;;
esac
