#!/bin/sh
# The 100x study: slaballoc notifications per remote free, default mode vs
# SLABALLOC_NOTIFY=every, on the prodcons workload; cross-checked with strace.
# Writes bench/results/notify.md. Env: SLABALLOC_SO, RUNS, SCALE, QUICK=1.
set -e
cd "$(dirname "$0")/.."
exec python3 bench/notify_study.py "$@"
