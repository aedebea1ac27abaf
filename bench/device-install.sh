#!/usr/bin/env bash
# Benchmark `airlock device install` against dd, and its peak memory.
#
#   bench/device-install.sh [WORKDIR]
#
# 1. Throughput: install a 256 MiB image from a bundle into a file-backed
#    slot, and copy the same image with `dd if=IMAGE of=SLOT bs=1M
#    conv=fsync`, in the same run. Target: install <= 1.15x dd (issue 13:
#    the release is schema 2, every block verified before it is written,
#    hashed on every core; the slot also receives the 2 MiB hash tree).
# 2. Memory: peak RSS (/usr/bin/time -v) of installing a 1 GiB and a 64 MiB
#    image with the device binary. Target: <= 14 MiB, and the same for both
#    sizes (constant memory).
# 3. Size: the device binary as a device maker ships it
#    (scripts/build-device.sh, amd64). Target: <= 7 MB (7,000,000 bytes).
#    Also printed: the size with only -trimpath -ldflags='-s -w'.
#
# Needs: go, dd, /usr/bin/time (Debian: apt-get install time), ~4 GiB free
# disk in WORKDIR (default: a temp dir, removed afterwards).
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ $# -ge 1 ]]; then
	work=$1
	mkdir -p "$work"
else
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
fi
[[ -x /usr/bin/time ]] || { echo "bench: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }

bin=$work/airlock
go build -o "$bin" ./cmd/airlock
# The device runs cmd/airlock-device: no vendor or server code, which is
# what a device ships and what peak RSS is measured on.
# It is built as shipped (scripts/build-device.sh: cgo off, stripped, no
# HTTP/2, no inlining); its size is also reported for the default flags.
dbin=$work/airlock-device
sh scripts/build-device.sh "$dbin" >/dev/null
dsize=$(stat -c %s "$dbin")
CGO_ENABLED=0 GOARCH=amd64 go build -trimpath -ldflags='-s -w' -o "$work/plain" ./cmd/airlock-device
psize=$(stat -c %s "$work/plain")
a() { "$bin" "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; return 1; }; }
d() { "$dbin" "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; return 1; }; }

# A repository with one product and throwaway keys.
keys=$work/keys
mkdir -p "$keys"
for k in root targets snapshot timestamp product; do a key gen --out "$keys/$k.pem"; done
a repo init --dir "$work/repo" --root-key "$keys/root.pem" --targets-key "$keys/targets.pem" \
	--snapshot-key "$keys/snapshot.pem" --timestamp-key "$keys/timestamp.pem"
a repo delegate --dir "$work/repo" --product acme/bench --key "$keys/product.pem.pub" --threshold 1 \
	--targets-key "$keys/targets.pem"
a repo publish --dir "$work/repo" --snapshot-key "$keys/snapshot.pem" --timestamp-key "$keys/timestamp.pem"

# release VERSION SIZE_MIB: an image of random data, its bundle in $work/VERSION.bundle
release() {
	local v=$1 mib=$2
	head -c $((mib << 20)) /dev/urandom >"$work/img-$v"
	a release add --dir "$work/repo" --product acme/bench --image "$work/img-$v" --version "$v" \
		--security-version 1 --model bench --key "$keys/product.pem"
	a repo publish --dir "$work/repo" --snapshot-key "$keys/snapshot.pem" --timestamp-key "$keys/timestamp.pem"
	a bundle create --dir "$work/repo" --product acme/bench --version "$v" --out "$work/$v.bundle"
}

# device NAME IMAGE_MIB: a fresh simulated device without an image, its
# slots large enough for the image and its hash tree (1/128 of it)
device() {
	rm -rf "${work:?}/$1"
	a device init --dir "$work/$1" --root "$work/repo/public/metadata/1.root.json" --model bench \
		--hw-rev 1 --product acme/bench --slot-size $((($2 + $2 / 64 + 1) << 20))
}

now() { date +%s.%N; }

echo "== throughput: 256 MiB image (best of ${RUNS:=3})"
release 1.0.0 256
install_s=999999
dd_s=999999
for i in $(seq 1 "$RUNS"); do
	device dev256 256
	sync
	t0=$(now)
	d device install --dir "$work/dev256" --bundle "$work/1.0.0.bundle"
	t1=$(now)
	# The same install with the default flags (inlining on, HTTP/2 in): what
	# the size flags of scripts/build-device.sh cost in speed.
	device dev256 256
	sync
	t4=$(now)
	"$work/plain" device install --dir "$work/dev256" --bundle "$work/1.0.0.bundle" >/dev/null 2>"$work/last.err" ||
		{ cat "$work/last.err" >&2; exit 1; }
	t5=$(now)
	rm -f "$work/dd-slot"
	sync
	t2=$(now)
	dd if="$work/img-1.0.0" of="$work/dd-slot" bs=1M conv=fsync status=none
	t3=$(now)
	i_s=$(echo "$t1 - $t0" | bc -l)
	d_s=$(echo "$t3 - $t2" | bc -l)
	p_s=$(echo "$t5 - $t4" | bc -l)
	printf 'run %d: install %.3f s (default flags %.3f s), dd %.3f s\n' "$i" "$i_s" "$p_s" "$d_s"
	install_s=$(echo "if ($i_s < $install_s) $i_s else $install_s" | bc -l)
	plain_s=$(echo "if ($p_s < ${plain_s:-999999}) $p_s else ${plain_s:-999999}" | bc -l)
	dd_s=$(echo "if ($d_s < $dd_s) $d_s else $dd_s" | bc -l)
done
ratio=$(echo "$install_s / $dd_s" | bc -l)
rm -f "$work/img-1.0.0" "$work/dd-slot" "$work/plain"

echo "== memory: 64 MiB and 1 GiB images"
rss() { # rss NAME VERSION SLOT_MIB -> peak RSS in KiB
	device "$1" "$3"
	/usr/bin/time -v "$dbin" device install --dir "$work/$1" --bundle "$work/$2.bundle" 2>&1 >/dev/null |
		awk -F': ' '/Maximum resident set size/ {print $2}'
}
release 1.1.0 64
rss64=$(rss dev64 1.1.0 64)
rm -rf "$work/dev64" "$work/img-1.1.0"
release 1.2.0 1024
rss1g=$(rss dev1g 1.2.0 1024)
rm -rf "$work/dev1g" "$work/img-1.2.0"

printf '\n== summary\n'
printf 'install 256 MiB:  %.3f s\n' "$install_s"
printf 'dd 256 MiB:       %.3f s\n' "$dd_s"
printf 'install/dd ratio: %.2f (target <= 1.15)\n' "$ratio"
printf 'install, default build flags: %.3f s (shipped / default: %.2f)\n' "$plain_s" "$(echo "$install_s / $plain_s" | bc -l)"
printf 'peak RSS 64 MiB:  %d KiB\n' "$rss64"
printf 'peak RSS 1 GiB:   %d KiB (target <= 14336 KiB)\n' "$rss1g"
printf 'RSS 1 GiB / 64 MiB: %.2f (target ~1.0: constant memory)\n' "$(echo "$rss1g / $rss64" | bc -l)"
printf 'device binary:    %d bytes (scripts/build-device.sh, amd64; target <= 7000000)\n' "$dsize"
printf 'device binary:    %d bytes (stripped only: -trimpath -ldflags=-s -w)\n' "$psize"
