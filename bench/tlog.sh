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

# Device side: what one install's transparency check costs (offline: parse
# and verify a bundle's log proof; online: build the proof from the served
# log files, local here, and verify it), for a 10,000-entry log with two
# witness cosignatures and a device holding the 5,000-entry checkpoint, as
# a ratio to one Ed25519 signature check measured in the same run.
echo "== device-side verification (go test -bench, tlog)"
out=$(go test -run '^$' -bench 'DeviceVerify|OnlineProve|Ed25519VerifyBaseline' -benchtime 200x ./tlog)
echo "$out" | grep '^Benchmark'
echo "$out" | awk '
	/^BenchmarkDeviceVerify/ { dev = $3 }
	/^BenchmarkOnlineProve/ { onl = $3 }
	/^BenchmarkEd25519VerifyBaseline/ { base = $3 }
	END {
		if (base == 0) { print "bench: no baseline" > "/dev/stderr"; exit 1 }
		printf "offline (bundle) check: %.3f ms per install, %.1fx one Ed25519 verify\n", dev / 1e6, dev / base
		printf "online check (build + verify): %.3f ms per install, %.1fx one Ed25519 verify\n", onl / 1e6, onl / base
	}'
