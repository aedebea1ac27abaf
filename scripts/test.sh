#!/usr/bin/env bash
# Runs every Airlock test. On a fresh Debian machine (as root) it first
# installs what the tests use: U-Boot env tools, GRUB env tools, libfaketime,
# OpenSSL, zstd, PostgreSQL, nginx, SoftHSM2, Chromium (dashboard test),
# systemd-analyze (the shipped units: verify, security exposure), zsh and fish
# (completion tests), veritysetup (cryptsetup-bin: the verity package's tree
# is checked byte for byte against it), and the sqlite3 and curl commands the
# documentation's examples use (internal/doctest). It also builds versitygw,
# the S3-compatible server the object storage tests run (internal/objstore/
# s3test), and transparency-dev's omniwitness, the witness the transparency
# log tests run (internal/witnesstest), from the Go module proxy into
# ~/.cache/airlock-test once.
#   AIRLOCK_ARTIFACTS=DIR  where tests save artifacts (dashboard screenshot) Usage: bash scripts/test.sh [-short]
#   FUZZTIME=10s   how long each fuzz target runs (0 to skip fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(libubootenv-tool grub-common faketime openssl zstd time postgresql nginx libnginx-mod-stream softhsm2 opensc chromium fonts-liberation systemd zsh fish sqlite3 curl cryptsetup-bin)
need=()
command -v fw_printenv >/dev/null || need+=(libubootenv-tool)
command -v grub-editenv >/dev/null || need+=(grub-common)
command -v faketime >/dev/null || need+=(faketime)
command -v openssl >/dev/null || need+=(openssl)
command -v zstd >/dev/null || need+=(zstd)
[ -x /usr/bin/time ] || need+=(time)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)   # replicas behind nginx (bench/rolloutbench)
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v chromium >/dev/null || need+=(chromium)
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
command -v sqlite3 >/dev/null || need+=(sqlite3)   # docs/runbooks (internal/doctest)
command -v curl >/dev/null || need+=(curl)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v veritysetup >/dev/null || [ -x /usr/sbin/veritysetup ] || need+=(cryptsetup-bin)   # verity
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
  else
    echo "test.sh: missing ${need[*]}; run as root or: sudo apt-get install ${PKGS[*]}" >&2
    exit 1
  fi
fi
# Tests that need one of the tools above fail (instead of skipping) when it is missing.
export AIRLOCK_REQUIRE_TOOLS=1

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt needed:"; echo "$bad"; exit 1; fi
echo "== go vet"
go vet ./...
echo "== go build (cgo off; the device binary is cmd/airlock-device)"
CGO_ENABLED=0 go build -o /dev/null ./cmd/...
echo "== dependency lists (cmd/*/depaware.txt; refresh: sh scripts/depaware.sh)"
go test -count=1 -run '^TestDependencies$' ./cmd/airlock ./cmd/airlock-device

echo "== versitygw (S3 server for internal/objstore/s3test)"
vgw_version=$(sed -n 's/^const Version = "\(.*\)"$/\1/p' internal/objstore/s3test/s3test.go)
vgw_dir="${XDG_CACHE_HOME:-$HOME/.cache}/airlock-test/versitygw-$vgw_version"
if [ -z "${AIRLOCK_VERSITYGW:-}" ] && ! command -v versitygw >/dev/null && [ ! -x "$vgw_dir/versitygw" ]; then
  mkdir -p "$vgw_dir"
  tmp=$(mktemp -d "$vgw_dir/.build-XXXXXX")
  (cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 go install "github.com/versity/versitygw/cmd/versitygw@$vgw_version")
  mv "$tmp/versitygw" "$vgw_dir/versitygw"
  rmdir "$tmp"
fi

echo "== omniwitness (C2SP tlog-witness witnesses for the transparency log tests: internal/witnesstest)"
ow_version=$(sed -n 's/^const Version = "\(.*\)"$/\1/p' internal/witnesstest/witnesstest.go)
ow_dir="${XDG_CACHE_HOME:-$HOME/.cache}/airlock-test/omniwitness-$ow_version"
if [ -z "${AIRLOCK_OMNIWITNESS:-}" ] && ! command -v omniwitness >/dev/null && [ ! -x "$ow_dir/omniwitness" ]; then
  mkdir -p "$ow_dir"
  tmp=$(mktemp -d "$ow_dir/.build-XXXXXX")
  (cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 go install "github.com/transparency-dev/witness/cmd/omniwitness@$ow_version")
  mv "$tmp/omniwitness" "$ow_dir/omniwitness"
  rmdir "$tmp"
fi

echo "== go test"
go test -count=1 -timeout 20m "$@" ./...

FUZZTIME=${FUZZTIME:-8s}
if [ "$FUZZTIME" != 0 ]; then
  echo "== fuzz ($FUZZTIME each)"
  grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
    pkg=./$(dirname "${f#./}")
    for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
      echo "-- $pkg $fn"
      out=$(mktemp)
      # A crasher is written to testdata/fuzz and fails the run at once. A
      # fuzzing-engine hiccup without a failing input (Go reports "context
      # deadline exceeded" when -fuzztime ends during a slow input on a
      # loaded machine) is retried, twice at most.
      tries=0
      until go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" "$pkg" >"$out" 2>&1; do
        tail -40 "$out"
        tries=$((tries + 1))
        if grep -q "Failing input written to" "$out" || [ "$tries" -ge 3 ]; then
          rm -f "$out"; echo "fuzz $fn failed"; exit 1
        fi
        echo "(retrying: the failure wrote no failing input)"
      done
      tail -2 "$out"; rm -f "$out"
    done
  done
fi
echo "test.sh: all tests passed"
