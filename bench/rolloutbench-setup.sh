# Sourced by bench/rollout.sh and bench/scale.sh (not run on its own): the
# work directory ($work: WORK=DIR keeps it, otherwise a temporary one under
# /var/tmp named after $1, removed on exit), the file-descriptor limit and
# the build of airlock and rolloutbench into it.
#
# Callers cd to the repository root first, then:
#
#   . bench/rolloutbench-setup.sh rollout

if [[ -n ${WORK:-} ]]; then
	work=$WORK
	mkdir -p "$work"
	keep=1
else
	work=$(mktemp -d "/var/tmp/airlock-$1.XXXXXX")
	keep=0
fi
cleanup() { if [[ $keep == 0 ]]; then rm -rf "$work"; else echo "bench: kept $work" >&2; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# One connection per poll cycle in flight, on both sides, and a margin.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== building" >&2
go build -o "$work/airlock" ./cmd/airlock
go build -o "$work/rolloutbench" ./bench/rolloutbench
