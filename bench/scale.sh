#!/usr/bin/env bash
# Scale benchmark: N light simulated devices (package sim's LightFleet: each
# an identity from the real enrollment API, a version and the real device
# API over mutual TLS) in PROCS worker processes, against REPLICAS `airlock
# serve` processes on one PostgreSQL database behind nginx (stream, TLS
# passthrough), through a staged rollout.
#
#   bench/scale.sh                          # N=100000, 3 replicas, 4 processes
#   N=20000 POLL=60s bench/scale.sh
#   N=2000 REPLICAS=2 PROCS=2 POLL=1s STAGES=canary:20,50%,100% bench/scale.sh
#
# bench/rolloutbench (-light -procs) makes a repository with releases 1.0.0
# and 1.1.0 (2 KiB images), a throwaway PostgreSQL cluster (initdb/pg_ctl:
# PostgreSQL's server binaries must be installed) with an enrollment token
# for N devices, starts the replicas and nginx, enrolls the devices (each
# generates a P-256 key; the server signs its certificate), registers 1.1.0
# and runs the rollout until it completes and every device states 1.1.0 on
# a check-in. On an assignment a light device fetches the director's
# timestamp, snapshot and targets and the payload, checks the payload's
# length and SHA-256 (no signature checks: that is the one part of a real
# agent it leaves out) and reports downloading, installed and committed.
#
# It prints: the enrollment time and rate (and the servers' CPU for it),
# the rollout time and the time until every device runs 1.1.0, check-ins
# per second and per server CPU-second (utime+stime of the replicas from
# /proc/PID/stat), check-in latency p50/p90/p99 as the devices saw it (a
# bounded histogram, merged over the processes), each replica's CPU time
# and peak RSS (VmHWM), the simulator's CPU time and the PostgreSQL
# database's size per device (pg_database_size). The devices, the
# replicas, nginx and PostgreSQL share this machine's cores: run it on an
# otherwise idle machine and note its load. WORK=DIR keeps the work
# directory (replica logs, nginx config).
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-100000}
REPLICAS=${REPLICAS:-3}
PROCS=${PROCS:-4}
POLL=${POLL:-60s}
STAGES=${STAGES:-canary:100,1%,10%,50%,100%}
CONCURRENCY=${CONCURRENCY:-100}
FAIL_RATE=${FAIL_RATE:-0}
TIMEOUT=${TIMEOUT:-30m}

. bench/rolloutbench-setup.sh scale
echo "== load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$work/rolloutbench" -airlock "$work/airlock" -work "$work" -light -procs "$PROCS" -n "$N" \
	-db postgres -replicas "$REPLICAS" -poll-interval "$POLL" -stages "$STAGES" \
	-concurrency "$CONCURRENCY" -fail-rate "$FAIL_RATE" -wait-all -timeout "$TIMEOUT"
echo "== load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
