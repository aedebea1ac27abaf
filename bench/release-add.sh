#!/usr/bin/env bash
# Benchmark: `airlock release add` of a 1 GiB image versus `openssl dgst
# -sha256` of the same file, measured in the same run. Prints the ratio
# (target <= 1.3). Usage: bash bench/release-add.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
work=$(mktemp -d /var/tmp/airlock-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/airlock" ./cmd/airlock
A="$work/airlock"

head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/image.img"
keys="$work/keys"; mkdir -p "$keys"
for k in root targets snapshot timestamp product; do "$A" key gen --out "$keys/$k.pem" >/dev/null 2>&1; done
"$A" repo init --dir "$work/repo" --root-key "$keys/root.pem" --targets-key "$keys/targets.pem" \
  --snapshot-key "$keys/snapshot.pem" --timestamp-key "$keys/timestamp.pem" >/dev/null 2>&1
"$A" repo delegate --dir "$work/repo" --product acme/bench --key "$keys/product.pem" --threshold 1 \
  --targets-key "$keys/targets.pem" >/dev/null 2>&1

now() { date +%s.%N; }
best_ossl=999999; best_air=999999
for i in $(seq 1 "$RUNS"); do
  cat "$work/image.img" > /dev/null  # warm the page cache for both
  t0=$(now); openssl dgst -sha256 "$work/image.img" >/dev/null; t1=$(now)
  o=$(echo "$t1 - $t0" | bc -l)
  t0=$(now)
  "$A" release add --dir "$work/repo" --product acme/bench --image "$work/image.img" --version "1.0.$i" \
    --security-version 1 --model bench --key "$keys/product.pem" >/dev/null 2>&1
  t1=$(now)
  a=$(echo "$t1 - $t0" | bc -l)
  printf 'run %d: openssl dgst -sha256 %.3fs, airlock release add %.3fs\n' "$i" "$o" "$a"
  best_ossl=$(echo "if ($o < $best_ossl) $o else $best_ossl" | bc -l)
  best_air=$(echo "if ($a < $best_air) $a else $best_air" | bc -l)
done
ratio=$(echo "$best_air / $best_ossl" | bc -l)
printf 'image %d MiB: best openssl %.3fs (%.0f MiB/s), best release add %.3fs (%.0f MiB/s), ratio %.2f (target <= 1.3)\n' \
  "$SIZE_MIB" "$best_ossl" "$(echo "$SIZE_MIB / $best_ossl" | bc -l)" "$best_air" "$(echo "$SIZE_MIB / $best_air" | bc -l)" "$ratio"
