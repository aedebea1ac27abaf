#!/usr/bin/env bash
# Staged rollout benchmark: N simulated devices (airlock sim's engine, in
# director mode) against `airlock serve` as its own process, on this machine.
#
#   bench/rollout.sh                      # N=10000 devices
#   N=1000 POLL=5s bench/rollout.sh       # quick run
#   STAGES='canary:100,10%,50%,100%' CONCURRENCY=200 WORK=/var/tmp/rb bench/rollout.sh
#
# bench/rolloutbench makes a repository with releases 1.0.0 and 1.1.0 (2 KiB
# images), the server's database (an enrollment token for N devices, admin
# users with TOTP), starts `airlock serve --poll-interval $POLL`, provisions N
# in-memory devices on 1.0.0 and enrolls them, registers 1.1.0, creates and
# starts the rollout over the admin API and waits until it completes. It
# prints the total rollout time, the server's CPU time (utime+stime from
# /proc/PID/stat) and peak RSS (VmHWM), check-ins per second during the
# rollout and the database size. The devices and the server share the
# machine's cores. WORK=DIR keeps the work directory (server log, database).
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-10000}
POLL=${POLL:-10s}
STAGES=${STAGES:-canary:100,10%,50%,100%}
CONCURRENCY=${CONCURRENCY:-200}
FAIL_RATE=${FAIL_RATE:-0}
TIMEOUT=${TIMEOUT:-30m}

. bench/rolloutbench-setup.sh rollout

"$work/rolloutbench" -airlock "$work/airlock" -work "$work" -n "$N" -poll-interval "$POLL" \
	-stages "$STAGES" -concurrency "$CONCURRENCY" -fail-rate "$FAIL_RATE" -timeout "$TIMEOUT"
