#!/usr/bin/env bash
# Build the test data of the delta-update benchmark (bench/delta.sh): a
# realistic firmware pair and a synthetic worst case, as ext4 images.
#
#   bench/delta/mkimages.sh [--quick] OUTDIR
#
# OUTDIR receives:
#   old.img      a minimal Debian 12 (bookworm) root filesystem as ext4
#   new.img      the same packages after a real security update of a few of
#                them (UPDATES below), same image size
#   random.img   the worst case: random bytes, the size of new.img (a
#                deterministic AES-CTR stream, so it is the same every run)
#   old.txt, new.txt   the package versions in each image (name version)
#   params       what the images were built from; a later run with the same
#                parameters reuses OUTDIR instead of building again
#
# How: the packages are downloaded from the Debian registry this machine's
# apt is configured for (`apt-get download`, no root needed for that step)
# into a cache, ${XDG_CACHE_HOME:-~/.cache}/airlock-bench/debs, never into
# the repository; each image's packages are unpacked with `dpkg-deb -x` into
# an empty directory (no maintainer scripts run, no debootstrap), and
# `mke2fs -t ext4 -b 4096 -O ^has_journal -d ROOT` turns it into an image.
# Nothing needs root privileges except what apt itself may ask for.
#
# Reproducible: the same inputs give the same image bytes. mke2fs gets a fixed
# UUID and directory hash seed and E2FSPROGS_FAKE_TIME; file mtimes are the
# packages' own, clamped to the image's SOURCE_DATE_EPOCH; atime, ctime and
# crtime of every inode (which mke2fs 1.47.0 copies from the unpacked files,
# i.e. the time of unpacking) are set to SOURCE_DATE_EPOCH with debugfs. The
# two releases have different epochs (EPOCH_OLD, EPOCH_NEW), as two builds of
# a real release pipeline would, so every inode's ctime differs between
# old.img and new.img.
#
# Packages (PACKAGES, about 120 binary packages, 150 MiB unpacked, in a 192 MiB
# image): libc, coreutils, bash, busybox, systemd and udev, util-linux,
# OpenSSL, OpenSSH, curl, iproute2, tzdata, CA certificates and their
# libraries. Every package not in UPDATES is the version apt's candidate is at
# the time of the run, the same in both images.
#
# The update (UPDATES): versions of bookworm (12.x point release) in old.img,
# of bookworm-security in new.img, as this machine's registry offered them
# on 2026-12-07 (`apt-cache madison PKG`):
#   libssl3, openssl  3.0.20-1~deb12u2        -> 3.0.22-1~deb12u2
#   zlib1g            1:1.2.13.dfsg-1         -> 1:1.2.13.dfsg-1+deb12u1
#   liblzma5          5.4.1-1+deb12u1         -> 5.4.1-1+deb12u2
#   libexpat1         2.5.0-1+deb12u2         -> 2.5.0-1+deb12u5
# When the registry no longer has one of these versions, the script stops
# and says so: pick two versions from `apt-cache madison PKG` and set
# DELTA_UPDATES to "pkg=oldver=newver ..." (an epoch's colon included).
#
# --quick: about 25 packages (libc, busybox, OpenSSL, …; ~30 MiB unpacked)
# in a 48 MiB image, the same update, for a fast run.
#
# Environment: DELTA_UPDATES (above), DELTA_IMAGE_MIB (image size),
# XDG_CACHE_HOME. Needs: apt-get, dpkg-deb, mke2fs and debugfs (e2fsprogs),
# openssl (for random.img), sha256sum.
set -euo pipefail

usage() { echo "usage: $0 [--quick] OUTDIR" >&2; exit 2; }
quick=0
if [[ ${1:-} == --quick ]]; then quick=1; shift; fi
[[ $# -eq 1 ]] || usage
out=$1

for t in apt-get dpkg-deb mke2fs debugfs openssl sha256sum; do
	command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$t" >/dev/null || {
		echo "mkimages: $t not found; install it: apt-get install apt dpkg e2fsprogs openssl coreutils" >&2
		exit 1
	}
done
export PATH=$PATH:/usr/sbin:/sbin

# Both images: a minimal device root filesystem.
PACKAGES_QUICK="base-files base-passwd busybox dash libc6 libc-bin libgcc-s1 libcrypt1
	libssl3 openssl zlib1g liblzma5 libexpat1 libzstd1 libbz2-1.0 liblz4-1 libmd0
	libbsd0 libedit2 libtinfo6 ncurses-base ca-certificates tzdata libpcre2-8-0 libselinux1"
PACKAGES_FULL="$PACKAGES_QUICK
	bash bsdutils coreutils dbus debianutils diffutils e2fsprogs findutils gpgv grep gzip hostname
	init-system-helpers iproute2 kmod less libacl1 libapparmor1 libattr1 libaudit1
	libaudit-common libblkid1 libbpf1 libcap2 libcap-ng0 libcom-err2 libcryptsetup12
	libdb5.3 libdbus-1-3 libdevmapper1.02.1 libelf1 libext2fs2 libfdisk1 libgcrypt20 libgmp10
	libgnutls30 libgpg-error0 libhogweed6 libidn2-0 libip4tc2 libjson-c5 libkmod2 libmnl0
	libmount1 libncursesw6 libnettle8 libp11-kit0 libpam-modules libpam-modules-bin
	libpam-runtime libpam0g libseccomp2 libsemanage-common libsmartcols1 libss2 libstdc++6
	libsystemd0 libsystemd-shared libtasn1-6 libudev1 libunistring2 libuuid1 libxtables12
	login logsave mount ncurses-bin passwd procps libproc2-0 sed systemd systemd-sysv
	systemd-timesyncd sysvinit-utils tar udev util-linux openssh-server openssh-client
	openssh-sftp-server libwrap0 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0
	libkeyutils1 ucf runit-helper curl libcurl4 libnghttp2-14 libpsl5 librtmp1 libssh2-1
	libldap-2.5-0 libsasl2-2 libsasl2-modules-db libbrotli1"
# The security update between the two images: pkg=old=new.
UPDATES=${DELTA_UPDATES:-"libssl3=3.0.20-1~deb12u2=3.0.22-1~deb12u2
	openssl=3.0.20-1~deb12u2=3.0.22-1~deb12u2
	zlib1g=1:1.2.13.dfsg-1=1:1.2.13.dfsg-1+deb12u1
	liblzma5=5.4.1-1+deb12u1=5.4.1-1+deb12u2
	libexpat1=2.5.0-1+deb12u2=2.5.0-1+deb12u5"}
EPOCH_OLD=1793491200 # 2026-11-01 00:00 UTC
EPOCH_NEW=1796083200 # 2026-12-01 00:00 UTC
UUID_FS=5d1f0a4e-7c1b-4f7e-9b1a-a1b2c3d4e5f6
HASH_SEED=0f4c9a2e-3b6d-4e8f-a1c2-d3e4f5a6b7c8

if ((quick)); then
	packages=$PACKAGES_QUICK
	mib=${DELTA_IMAGE_MIB:-48}
else
	packages=$PACKAGES_FULL
	mib=${DELTA_IMAGE_MIB:-192}
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/airlock-bench/debs
mkdir -p "$cache" "$out"
out=$(cd "$out" && pwd)

params="mkimages $(sha256sum <"$0" | cut -c1-16) quick=$quick mib=$mib updates=$(echo $UPDATES) packages=$(echo $packages)"
if [[ -f $out/params && $(cat "$out/params") == "$params" && -f $out/old.img && -f $out/new.img && -f $out/random.img ]]; then
	echo "mkimages: reusing $out (same parameters)" >&2
	exit 0
fi
rm -f "$out/params" "$out/old.img" "$out/new.img" "$out/random.img"

# specs SIDE: the apt package specifications of one image (SIDE old or new).
specs() {
	local side=$1 p u name old new pinned
	for p in $packages; do
		pinned=
		for u in $UPDATES; do
			name=${u%%=*}
			[[ $name == "$p" ]] || continue
			old=${u#*=}
			new=${old#*=}
			old=${old%%=*}
			if [[ $side == old ]]; then pinned=$p=$old; else pinned=$p=$new; fi
		done
		echo "${pinned:-$p}"
	done
}

# fetch SIDE: download the debs of one image into the cache (those not
# there yet) and print their file names, in package order.
fetch() {
	local side=$1 uris missing=() line url file size hash
	# (From an empty directory: apt leaves out packages already in the current one.)
	mkdir -p "$work/empty"
	if ! uris=$(cd "$work/empty" && apt-get download --print-uris $(specs "$side") 2>&1); then
		echo "$uris" >&2
		echo "mkimages: apt-get could not find a package of the $side image; run 'apt-get update'," >&2
		echo "  and if a version of UPDATES is gone, choose two from 'apt-cache madison PKG' and set" >&2
		echo "  DELTA_UPDATES='pkg=oldver=newver ...'" >&2
		return 1
	fi
	while read -r url file size hash; do
		[[ $url == \'http* ]] || continue
		if [[ ! -f $cache/$file ]] || ! echo "${hash#SHA256:}  $cache/$file" | sha256sum -c --status; then
			missing+=("$file")
		fi
	done <<<"$uris"
	if ((${#missing[@]})); then
		echo "mkimages: downloading ${#missing[@]} packages into $cache" >&2
		(cd "$cache" && apt-get download -q $(specs "$side") >/dev/null 2>&1) || {
			echo "mkimages: apt-get download failed" >&2
			return 1
		}
	fi
	# apt names a file name_version_arch.deb with the epoch's colon as %3a.
	while read -r url file size hash; do
		[[ $url == \'http* ]] || continue
		echo "${hash#SHA256:}  $cache/$file" | sha256sum -c --status || {
			echo "mkimages: $file in $cache does not match the registry's SHA-256" >&2
			return 1
		}
		echo "$file"
	done <<<"$uris"
}

# build SIDE EPOCH: unpack one image's packages and make its ext4 image.
build() {
	local side=$1 epoch=$2 root=$work/root-$1 f n cmds=$work/debugfs-$1
	rm -rf "$root"
	mkdir -p "$root"
	: >"$out/$side.txt.tmp"
	fetch "$side" >"$work/files-$side"
	while read -r f; do
		dpkg-deb -x "$cache/$f" "$root"
		dpkg-deb -W --showformat='${Package} ${Version}\n' "$cache/$f" >>"$out/$side.txt.tmp"
	done <"$work/files-$side"
	n=$(wc -l <"$work/files-$side")
	# Clamp mtimes to the release's epoch (as tar --clamp-mtime would).
	find "$root" -newermt "@$epoch" -exec touch -h -d "@$epoch" {} +
	E2FSPROGS_FAKE_TIME=$epoch mke2fs -q -F -t ext4 -b 4096 -I 256 -O ^has_journal \
		-U "$UUID_FS" -E "hash_seed=$HASH_SEED,root_owner=0:0" -L rootfs \
		-d "$root" "$out/$side.img.tmp" "${mib}M" >/dev/null
	# atime/ctime/crtime: the release's epoch (debugfs commands by path; a
	# path with a double quote or a newline cannot be quoted for debugfs).
	if find "$root" -name '*"*' -o -name $'*\n*' | grep -q .; then
		echo "mkimages: a path in $side has a quote or newline" >&2
		return 1
	fi
	{
		echo "sif / atime $epoch"; echo "sif / ctime $epoch"; echo "sif / crtime $epoch"
		echo "sif /lost+found atime $epoch"; echo "sif /lost+found ctime $epoch"; echo "sif /lost+found crtime $epoch"
		find "$root" -mindepth 1 -printf '%P\n' | LC_ALL=C sort | while IFS= read -r f; do
			printf 'sif "/%s" atime %s\nsif "/%s" ctime %s\nsif "/%s" crtime %s\n' "$f" "$epoch" "$f" "$epoch" "$f" "$epoch"
			printf 'sif "/%s" atime_extra 0\nsif "/%s" ctime_extra 0\nsif "/%s" crtime_extra 0\n' "$f" "$f" "$f"
		done
	} >"$cmds"
	E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$cmds" "$out/$side.img.tmp" >"$work/debugfs-$side.log" 2>&1
	if grep -v '^debugfs' "$work/debugfs-$side.log" | grep -q .; then
		echo "mkimages: debugfs reported errors (see below)" >&2
		grep -v '^debugfs' "$work/debugfs-$side.log" | head >&2
		return 1
	fi
	e2fsck -fn "$out/$side.img.tmp" >"$work/fsck-$side.log" 2>&1 || {
		cat "$work/fsck-$side.log" >&2
		echo "mkimages: e2fsck found errors in $side.img" >&2
		return 1
	}
	mv "$out/$side.txt.tmp" "$out/$side.txt"
	mv "$out/$side.img.tmp" "$out/$side.img"
	echo "mkimages: $side.img: $n packages, $(du -sm "$root" | cut -f1) MiB unpacked, ${mib} MiB image" >&2
	rm -rf "$root"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build old "$EPOCH_OLD"
build new "$EPOCH_NEW"
# The worst case: incompressible, nothing in common with old.img.
head -c $((mib << 20)) /dev/zero |
	openssl enc -aes-256-ctr -nosalt -pass pass:airlock-delta-worst-case -pbkdf2 >"$out/random.img"
echo "$params" >"$out/params"
diff "$out/old.txt" "$out/new.txt" | sed -n 's/^> /mkimages: updated: /p' >&2 || true
