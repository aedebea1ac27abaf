#!/usr/bin/env bash
# Throughput of the verity hash tree (package verity): Build (the whole
# tree of an image) and Tree.Check (every block, in 1 MiB batches), each on
# one core and on every core, against `openssl dgst -sha256` of the same
# file in the same run (page cache warm for all). Prints MB/s (10^6 bytes/s,
# as `go test -bench` does) and the ratio to openssl; > 1 is faster.
#
#   bench/verity.sh [MiB]     (default 256)
#
# Needs: go, openssl, awk, ~MiB of free space in $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-256}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=$work/image
head -c $((mib << 20)) /dev/urandom >"$data"
cat "$data" >/dev/null

now() { date +%s.%N; }
best=
for _ in 1 2 3; do
	s=$(now)
	openssl dgst -sha256 "$data" >/dev/null
	e=$(now)
	best=$(awk -v s="$s" -v e="$e" -v b="$best" 'BEGIN { t = e - s; if (b == "" || t < b) b = t; print b }')
done
openssl_mbs=$(awk -v t="$best" -v m="$mib" 'BEGIN { printf "%.1f", m * 1048576 / t / 1e6 }')

VERITY_BENCH_FILE=$data go test -run '^$' -bench '^Benchmark(Build|Check|SHA256)$' \
	-benchtime=3x -count=3 ./verity >"$work/bench.txt"

echo "image: $mib MiB; cores: $(nproc); $(go version | cut -d' ' -f3); $(openssl version | cut -d' ' -f1-2)"
printf '%-28s %10s %8s\n' measure MB/s "/openssl"
printf '%-28s %10s %8s\n' "openssl dgst -sha256" "$openssl_mbs" 1.00
# Best of the -count runs for each benchmark.
awk -v o="$openssl_mbs" '
	$1 ~ /^Benchmark/ { name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) if ($(i + 1) == "MB/s" && $i > best[name]) best[name] = $i
		if (!(name in seen)) { seen[name] = 1; order[++n] = name } }
	END { for (i = 1; i <= n; i++) printf "%-28s %10.1f %8.2f\n", "go " order[i], best[order[i]], best[order[i]] / o }
' "$work/bench.txt"
