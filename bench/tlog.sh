#!/usr/bin/env bash
# Transparency log benchmark: bench/tlogbench appends N release entries
# (airlock/log-entry/v1, about 600 bytes each) to a tessera POSIX log in a
# temporary directory, as `repo publish` does, and reports:
#   - append throughput of one publish of N entries (until integrated and a
#     signed checkpoint covers them), and the latency of SINGLE publishes of
#     one entry each;
#   - the checkpoint's size and the log's size on disk;
#   - inclusion and consistency proof sizes at the final size (built from
#     tiles, as a device or monitor does) and the time to check one.
# No witnesses: their round trip is network time, not the log's.
#
#   bench/tlog.sh                 # N=10000
#   N=1000 SINGLE=5 bench/tlog.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
SINGLE=${SINGLE:-20}
go run ./bench/tlogbench -n "$N" -single "$SINGLE"
