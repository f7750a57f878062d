#!/usr/bin/env bash
# A newcomer's first `make run`, timed to the printed result: a fresh clone of this checkout's
# HEAD in a new temporary directory, with empty pip and uv caches and fresh dataset homes
# (O2O_HOME, MINARI_DATASETS_PATH), so the install, the dataset and the trial are all made anew.
# Run it on a quiet machine; it prints each line of `make run` with the second it appeared at,
# then the install's, the quickstart's and the total wall time.
#
#   bash benchmarks/first_run.sh
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d -t o2o-first-run-XXXX)
git clone -q "$repo" "$work/o2o"
cd "$work/o2o"
export O2O_HOME=$work/home MINARI_DATASETS_PATH=$work/minari PIP_CACHE_DIR=$work/pip UV_CACHE_DIR=$work/uv
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t0=$EPOCHREALTIME
make install
t1=$EPOCHREALTIME
make run 2>&1 | while IFS= read -r line; do printf '%7s  %s\n' "$(seconds "$t1" "$EPOCHREALTIME")" "$line"; done
t2=$EPOCHREALTIME
echo "install $(seconds "$t0" "$t1") s, quickstart $(seconds "$t1" "$t2") s, total $(seconds "$t0" "$t2") s"
echo "(the clone, its venv and its data are in $work: remove it when done)"
