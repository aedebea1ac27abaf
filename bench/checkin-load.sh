#!/usr/bin/env bash
# Check-in load benchmark: N simulated devices against `airlock serve`, with
# nginx serving the same repository's timestamp.json as the baseline.
#
#   bench/checkin-load.sh            # N=10000 devices
#   N=500 bench/checkin-load.sh      # quick run
#   CONCURRENCY=1000 ENROLL_CONCURRENCY=50 DB=postgres://... bench/checkin-load.sh
#
# 1. Builds airlock and bench/loadgen, makes a repository (throwaway keys) and
#    an enrollment token with N uses.
# 2. Starts `airlock serve` (SQLite in the data dir unless DB is set) and nginx
#    (worker_processes 2, HTTPS with airlock's server certificate, serving
#    REPO/public at /repo/), both on free 127.0.0.1 ports, as separate
#    processes: the load generator and the servers share the machine's cores,
#    as in any loopback test.
# 3. loadgen enrolls N devices (ENROLL_CONCURRENCY in flight), checks each in
#    once (the first check-in writes the device's slot and first contact;
#    measured on its own), then runs three steady-state check-in rounds with
#    one connection and client certificate per device (CONCURRENCY in
#    flight): new connection + full TLS handshake, keep-alive,
#    new connection + TLS session resumption; then the same three rounds
#    fetching /repo/metadata/timestamp.json from nginx (baseline) and from
#    airlock. Prints requests/s, p50/p90/p99, errors, server CPU and ratios.
#
# Needs: go, nginx (Debian: apt-get install nginx), curl. Exits non-zero if
# any request failed. WORK=DIR keeps the work directory (logs, database).
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-10000}
CONCURRENCY=${CONCURRENCY:-1000}
ENROLL_CONCURRENCY=${ENROLL_CONCURRENCY:-50}
NGINX=${NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "bench: $NGINX missing (apt-get install nginx)" >&2; exit 1; }

if [[ -n ${WORK:-} ]]; then
	work=$WORK
	mkdir -p "$work"
	keep=1
else
	work=$(mktemp -d /var/tmp/airlock-checkin.XXXXXX)
	keep=0
fi
chmod 755 "$work" # nginx workers (user nobody) read REPO/public
airlock_pid=
nginx_pid=
cleanup() {
	[[ -n $airlock_pid ]] && kill "$airlock_pid" 2>/dev/null && wait "$airlock_pid" 2>/dev/null || true
	[[ -n $nginx_pid ]] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
	if [[ $keep == 0 ]]; then rm -rf "$work"; else echo "bench: kept $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each process (loadgen, airlock, an nginx worker) holds at most one
# connection per device at a time: N fds and a margin each.
need=$((2 * N + 4096))
hard=$(ulimit -Hn)
[[ $hard != unlimited && $hard -lt $need ]] && need=$hard
ulimit -n "$need"
[[ $need -ge $((N + 2048)) ]] || { echo "bench: ulimit -n $need is too low for N=$N (hard limit $hard)" >&2; exit 1; }

echo "== building" >&2
go build -o "$work/airlock" ./cmd/airlock
go build -o "$work/loadgen" ./bench/loadgen
A=$work/airlock
a() { "$A" "$@" 2>"$work/last.err" || { cat "$work/last.err" >&2; return 1; }; }

echo "== repository and enrollment token" >&2
keys=$work/keys
mkdir -p "$keys"
for k in root targets snapshot timestamp; do a key gen --out "$keys/$k.pem" >/dev/null; done
a repo init --dir "$work/repo" --root-key "$keys/root.pem" --targets-key "$keys/targets.pem" \
	--snapshot-key "$keys/snapshot.pem" --timestamp-key "$keys/timestamp.pem" >/dev/null
a repo publish --dir "$work/repo" --snapshot-key "$keys/snapshot.pem" --timestamp-key "$keys/timestamp.pem" >/dev/null
[[ -s $work/repo/public/metadata/timestamp.json ]] || { echo "bench: no timestamp.json" >&2; exit 1; }

data=$work/data
db_flag=()
[[ -n ${DB:-} ]] && db_flag=(--db "$DB")
token=$(a server enroll-token create --data "$data" "${db_flag[@]}" --uses "$N" --ttl 2h)

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}
wait_https() { # URL: until it answers (any TLS), at most 30 s
	for _ in $(seq 300); do
		curl -sk -o /dev/null --max-time 2 "$1" && return 0
		sleep 0.1
	done
	echo "bench: $1 did not come up" >&2
	return 1
}

echo "== starting airlock serve" >&2
aport=$(free_port)
"$A" serve --data "$data" --repo "$work/repo" --listen "127.0.0.1:$aport" "${db_flag[@]}" \
	--shutdown-timeout 5s >"$work/airlock.out" 2>"$work/airlock.log" &
airlock_pid=$!
wait_https "https://127.0.0.1:$aport/repo/metadata/timestamp.json"

echo "== starting nginx" >&2
nport=$(free_port)
mkdir -p "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile $need;
events { worker_connections $((N + 1024)); }
http {
	access_log off;
	keepalive_timeout 600s;
	keepalive_requests 100000;
	client_body_temp_path $work/nginx/tmp;
	proxy_temp_path $work/nginx/tmp;
	fastcgi_temp_path $work/nginx/tmp;
	uwsgi_temp_path $work/nginx/tmp;
	scgi_temp_path $work/nginx/tmp;
	types { application/json json; }
	server {
		listen 127.0.0.1:$nport ssl backlog=4096; # as Go (somaxconn)
		ssl_certificate $data/server.pem;
		ssl_certificate_key $data/server.key;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_session_cache shared:SSL:50m;
		ssl_session_tickets on;
		location /repo/ {
			alias $work/repo/public/;
			add_header Cache-Control no-cache;
		}
	}
}
EOF
"$NGINX" -c "$work/nginx/nginx.conf" -p "$work/nginx" \
	-g "daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;" &
nginx_pid=$!
wait_https "https://127.0.0.1:$nport/repo/metadata/timestamp.json"
nginx_pids=$nginx_pid
for p in $(pgrep -P "$nginx_pid"); do nginx_pids+=,$p; done

echo "== load: N=$N, $(nproc) cores, $("$NGINX" -v 2>&1), $(go version | cut -d' ' -f3)" >&2
"$work/loadgen" --airlock "https://127.0.0.1:$aport" --nginx "https://127.0.0.1:$nport" \
	--ca "$data/ca.pem" --token "$token" -n "$N" --concurrency "$CONCURRENCY" \
	--enroll-concurrency "$ENROLL_CONCURRENCY" --airlock-pid "$airlock_pid" --nginx-pids "$nginx_pids"
echo "airlock server peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$airlock_pid/status")"
