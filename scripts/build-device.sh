#!/bin/sh
# build-device.sh builds the device binary as it ships: cmd/airlock-device,
# statically linked (cgo off), stripped, without HTTP/2 and without
# inlining, for GOARCH (default amd64; e.g. arm64, arm with GOARM=7).
#
#   sh scripts/build-device.sh [OUT]        (default OUT: ./airlock-device)
#
# Why each flag (measured by bench/device-install.sh, docs/benchmarks.md):
#   CGO_ENABLED=0            no libc: one static file for any root filesystem
#   -trimpath                no build paths in the binary (reproducible)
#   -ldflags='-s -w'         no symbol table or DWARF (the device has no debugger)
#   -tags nethttpomithttp2   the agent speaks HTTP/1.1 to the server and to
#                            plain repository mirrors; net/http's bundled
#                            HTTP/2 is ~400 KB of code a device never runs
#   -gcflags=all=-l          no inlining: ~9 % less code, for ~4-5 % of
#                            install time (installs are bound by SHA-256 in
#                            assembly and the disk; bench/device-install.sh
#                            times both builds in the same run)
#   GOAMD64=v2 (amd64 only)  x86-64-v2 (SSE4.2, POPCNT: Intel since 2008,
#                            Atom since Silvermont, AMD since 2011): slightly
#                            less code; for an older CPU run the script with
#                            GOAMD64=v1 (the binary is a few KB larger)
# internal/depaware lists the device's dependencies with the same tags.
set -eu
cd "$(dirname "$0")/.."
out=${1:-airlock-device}
CGO_ENABLED=0 GOOS=${GOOS:-linux} GOARCH=${GOARCH:-amd64} GOAMD64=${GOAMD64:-v2} go build -trimpath \
	-tags nethttpomithttp2 -gcflags=all=-l -ldflags='-s -w' -o "$out" ./cmd/airlock-device
echo "build-device.sh: wrote $out ($(wc -c <"$out") bytes, ${GOOS:-linux}/${GOARCH:-amd64}, GOAMD64=${GOAMD64:-v2})"
