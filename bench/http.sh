#!/usr/bin/env bash
# `berth serve` against Debian's docker-registry (CNCF Distribution 2.8.2)
# on this machine, same workload, same run; medians of RUNS runs, and the
# ratio berth / docker-registry next to the project's targets.
#
#   bash bench/http.sh                      # from the repository root
#   RUNS=3 BERTH_BENCH_OUT=results.md bash bench/http.sh
#
# Installs what it lacks (apt-get update once, then docker-registry, wrk,
# apache2-utils (ab), curl; bin/setup when build/libberth.so is missing).
# All servers listen on 127.0.0.1 only; all load is bounded in time or
# count; everything it starts (servers, temp dir) is removed on exit, also
# on Ctrl-C. Takes about 13 minutes with the defaults on 2 cores (most of
# it the 2 x 5 wrk/ab measurements of DURATION + WARMUP s per run).
#
# Workload, each run, the two servers in alternating order:
#   upload, monolithic   POST, then PUT ?digest= with the whole blob  MiB/s
#                        and (berth only: Distribution 2.8 lacks it)
#                        POST ?digest= with the whole blob; each form
#                        twice a run, in ABBA order
#   upload, chunked      POST, PATCH CHUNK_MIB chunks, PUT ?digest=   MiB/s
#   blob GET, large      the SIZE_MIB blob, GETS times, curl, median  MiB/s
#                        (interleaved with the other servers' GETs; one
#                        GET varies 0.09-0.26 s here, hence 15 of them)
#                        and the same file from a plain nginx (static);
#                        berth against static: the median of the ratios
#                        of the RUNS x GETS pairs of GETs in one round
#   blob GET 4 KiB       wrk, CONNS connections, DURATION s           req/s
#   blob HEAD 4 KiB      ab -k -i (wrk 4.1 hangs on HEAD responses)   req/s
#   manifest GET by tag  wrk, Accept: OCI image manifest              req/s
#   manifest PUT         wrk, the same manifest to the same tag       req/s
#   tags/list            wrk, a repository with NTAGS tags            req/s
#   peak memory          sum of VmHWM of the server processes at the end
# Every upload has a fresh digest (the first bytes of the blob change) and
# starts after a sync (no writeback of an earlier one under way).
# Each wrk and ab measurement follows a WARMUP s run of the same request.
# Memory: VmHWM counts shared pages (libraries) in each process, so the
# nginx master and workers each count them; Pss (now) is also shown.
#
# Environment (defaults): RUNS (5), DURATION (10), WARMUP (2), CONNS (16),
# THREADS (2, wrk threads), SIZE_MIB (256), CHUNK_MIB (16), GETS (15),
# NTAGS (1000), WORKERS (2, berth's and static nginx's worker processes),
# BERTH_FSYNC (unset: berth's default, "full"; or none|data), REGISTRY_CACHE
# (inmemory, as Debian's default config; "none" for no descriptor cache),
# PREFAULT (1: before each upload body, write and delete a file as large,
# see prefault() below; 0: raw), BERTH_BENCH_OUT (also write the table
# there, markdown), KEEP (1: keep the temp dir).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
SIZE_MIB=${SIZE_MIB:-256}
CHUNK_MIB=${CHUNK_MIB:-16}
GETS=${GETS:-15}
NTAGS=${NTAGS:-1000}
WORKERS=${WORKERS:-2}
BERTH_FSYNC=${BERTH_FSYNC:-}
REGISTRY_CACHE=${REGISTRY_CACHE:-inmemory}
BERTH_BENCH_OUT=${BERTH_BENCH_OUT:-}
KEEP=${KEEP:-0}
PREFAULT=${PREFAULT:-1}

log() { printf '%s\n' "$*" >&2; }
die() { log "http.sh: $*"; exit 1; }

for v in RUNS DURATION CONNS THREADS SIZE_MIB CHUNK_MIB GETS NTAGS WORKERS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer"
[ "$THREADS" -le "$CONNS" ] || die "THREADS must be at most CONNS"
case "$BERTH_FSYNC" in ""|none|data|full) ;; *) die "BERTH_FSYNC: none|data|full" ;; esac
case "$REGISTRY_CACHE" in inmemory|none) ;; *) die "REGISTRY_CACHE: inmemory|none" ;; esac
case "$PREFAULT" in 0|1) ;; *) die "PREFAULT: 0|1" ;; esac
if [ -n "$BERTH_BENCH_OUT" ]; then
  # Resolved now: the script changes no directory later, but be explicit.
  case "$BERTH_BENCH_OUT" in /*) ;; *) BERTH_BENCH_OUT=$PWD/$BERTH_BENCH_OUT ;; esac
fi

START_TIME=$SECONDS

# ---------------------------------------------------------------- setup --

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_missing() {
  if [ ! -f build/libberth.so ]; then
    log "http.sh: build/libberth.so missing: bin/setup"
    bin/setup
  fi
  local missing=() cmd pkg
  for cmd in docker-registry:docker-registry wrk:wrk ab:apache2-utils \
      curl:curl nginx:nginx ss:iproute2; do
    pkg=${cmd#*:}
    command -v "${cmd%%:*}" >/dev/null || missing+=("$pkg")
  done
  [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] ||
    missing+=(libnginx-mod-http-lua)
  if [ ${#missing[@]} -gt 0 ]; then
    log "http.sh: installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq \
      -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
  fi
}
install_missing

WORK=$(mktemp -d /tmp/berth-http-bench.XXXXXX)
PIDS=()     # servers: nginx masters and docker-registry
CHILD=""    # the load generator running now

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null || true
  fi
  local pid f
  # nginx masters by their pid files too, should bin/berth have forked.
  for f in "$WORK/berth/.berth-run/nginx.pid" "$WORK/static/nginx.pid"; do
    [ -f "$f" ] && PIDS+=("$(cat "$f")")
  done
  for pid in "${PIDS[@]}"; do
    stop_pid "$pid"
  done
  if [ "$KEEP" = 1 ]; then
    log "http.sh: kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command in the background and wait for it, so that a signal runs
# the trap at once; its stdout goes to $1, its stdin is $RUN_IN (an
# asynchronous command's would be /dev/null).
run_to() {
  local out=$1 rc=0
  shift
  "$@" < "${RUN_IN:-/dev/null}" > "$out" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}

free_port() {
  local port i
  for i in $(seq 50); do
    port=$((20000 + RANDOM % 25000))
    if ! ss -Hltn "sport = :$port" | grep -q .; then
      case " ${USED_PORTS:-} " in *" $port "*) continue ;; esac
      USED_PORTS="${USED_PORTS:-} $port"
      echo "$port"
      return
    fi
  done
  die "no free port"
}

wait_http() { # url pid logfile name
  local i code
  for i in $(seq 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    [ "$code" = 200 ] && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  cat "$3" >&2 || true
  die "$4 did not start ($1)"
}

BERTH_PORT=$(free_port)
REG_PORT=$(free_port)
STATIC_PORT=$(free_port)
BERTH=http://127.0.0.1:$BERTH_PORT
REG=http://127.0.0.1:$REG_PORT
STATIC=http://127.0.0.1:$STATIC_PORT

# berth: bin/berth serve as shipped; its access log goes to stdout, which
# is /dev/null here, as docker-registry's.
berth_args=(--listen "127.0.0.1:$BERTH_PORT" --root "$WORK/berth"
  --workers "$WORKERS" --delete)
# as docker-registry below: root's workers would be the user berth, who
# cannot reach $WORK (mktemp -d)
[ "$(id -u)" -eq 0 ] && berth_args+=(--user root)
if [ -n "$BERTH_FSYNC" ]; then
  printf 'store = { fsync = "%s" }\n' "$BERTH_FSYNC" > "$WORK/berth.conf.lua"
  berth_args+=(--config "$WORK/berth.conf.lua")
fi
setsid bin/berth serve "${berth_args[@]}" \
  > /dev/null 2> "$WORK/berth.log" < /dev/null &
PIDS+=($!)
wait_http "$BERTH/v2/" "$!" "$WORK/berth.log" "berth serve"

# docker-registry: Debian's default configuration (in-memory descriptor
# cache) with the store, address and log level of the brief.
mkdir -p "$WORK/registry"
{
  echo "version: 0.1"
  echo "log:"
  echo "  level: error"
  echo "storage:"
  echo "  filesystem:"
  echo "    rootdirectory: $WORK/registry"
  echo "  delete:"
  echo "    enabled: true"
  if [ "$REGISTRY_CACHE" = inmemory ]; then
    echo "  cache:"
    echo "    blobdescriptor: inmemory"
  fi
  echo "http:"
  echo "  addr: 127.0.0.1:$REG_PORT"
} > "$WORK/registry.yml"
setsid docker-registry serve "$WORK/registry.yml" \
  > /dev/null 2> "$WORK/registry.log" < /dev/null &
PIDS+=($!)
REG_PID=$!
wait_http "$REG/v2/" "$REG_PID" "$WORK/registry.log" "docker-registry"

# Plain nginx serving berth's blob directory: the same file, the same
# sendfile settings as berth serve's nginx.
mkdir -p "$WORK/static/tmp"
{
  [ "$(id -u)" -eq 0 ] && echo "user root root;"
  echo "worker_processes $WORKERS;"
  echo "pid $WORK/static/nginx.pid;"
  echo "error_log stderr error;"
  echo "events { worker_connections 1024; }"
  echo "http {"
  echo "  access_log /dev/stdout;"
  echo "  sendfile on;"
  echo "  tcp_nopush on;"
  echo "  keepalive_requests 10000;"
  for t in client_body proxy fastcgi uwsgi scgi; do
    echo "  ${t}_temp_path $WORK/static/tmp/$t;"
  done
  echo "  types { }"
  echo "  default_type application/octet-stream;"
  echo "  server {"
  echo "    listen 127.0.0.1:$STATIC_PORT;"
  echo "    location / { root $WORK/berth/docker/registry/v2/blobs; }"
  echo "  }"
  echo "}"
} > "$WORK/static/nginx.conf"
setsid nginx -p "$WORK/static" -c "$WORK/static/nginx.conf" \
  -g "daemon off;" > /dev/null 2> "$WORK/static.log" < /dev/null &
PIDS+=($!)
mkdir -p "$WORK/berth/docker/registry/v2/blobs"
# Any answer will do here: 404 until the blob exists.
for i in $(seq 100); do
  c=$(curl -s -o /dev/null -w '%{http_code}' "$STATIC/" || true)
  [ "$c" != 000 ] && break
  sleep 0.1
done
[ "$c" != 000 ] || { cat "$WORK/static.log" >&2; die "static nginx did not start"; }

# ------------------------------------------------------------- payloads --

log "http.sh: berth $BERTH, docker-registry $REG, nginx static $STATIC"
log "http.sh: making a ${SIZE_MIB} MiB blob in $WORK"
BIG=$WORK/big
head -c $((SIZE_MIB * 1048576)) /dev/urandom > "$BIG"
split -b $((CHUNK_MIB * 1048576)) -d -a 4 "$BIG" "$WORK/chunk."
CHUNKS=("$WORK"/chunk.*)
BIG_BYTES=$((SIZE_MIB * 1048576))

# Give the large blob (and its first chunk) new first bytes: a new digest.
STAMP_N=0
restamp() {
  STAMP_N=$((STAMP_N + 1))
  local s
  s=$(printf '%-32.32s' "berth-bench $$ $STAMP_N $RANDOM$RANDOM")
  printf '%s' "$s" | dd of="$BIG" bs=32 count=1 conv=notrunc status=none
  printf '%s' "$s" | dd of="${CHUNKS[0]}" bs=32 count=1 conv=notrunc \
    status=none
  BIG_DIGEST=sha256:$(sha256sum "$BIG" | cut -d' ' -f1)
}

sum() { awk '{ s += $1 } END { printf "%.6f\n", s }'; }

# curl_req OUTFILE curl-args...: one request; OUTFILE gets
# "<status> <time_total> <size_download>"; headers in $WORK/hdr.
curl_req() {
  local out=$1
  shift
  run_to "$out" curl -sS -D "$WORK/hdr" -o /dev/null \
    -w '%{http_code} %{time_total} %{size_download}' "$@"
}

# On a VM whose balloon reports free pages to the host (virtio-balloon, as
# here), a write into pages the guest has not touched lately costs a host
# fault per page: ~0.6 s per 256 MiB of page cache, for either server,
# and at random. PREFAULT=1 writes and deletes a file as large as the
# body just before sending it, so the server's page cache lands on pages
# the guest has just freed, as on a machine without a balloon.
prefault() { # bytes
  [ "$PREFAULT" = 1 ] && [ "$1" -gt 1048576 ] || return 0
  dd if=/dev/zero of="$WORK/prefault" bs=1M \
    count=$(( $1 / 1048576 * 9 / 8 + 1 )) status=none
  rm -f "$WORK/prefault"
}

# body_req OUTFILE METHOD URL FILE [curl-args...]: one request whose body
# is FILE, streamed (curl -T -; --data-binary @file would read it into
# curl's memory first), with a Content-Length and no Expect.
body_req() {
  local out=$1 method=$2 url=$3 file=$4 size
  shift 4
  size=$(stat -c %s "$file")
  # No dirty data from the upload before: docker-registry does not fsync,
  # so its writeback would fall on whichever upload comes next.
  sync
  prefault "$size"
  RUN_IN=$file run_to "$out" curl -sS -D "$WORK/hdr" -o /dev/null \
    -w '%{http_code} %{time_total} %{size_download}' -X "$method" \
    -H 'Expect:' -H 'Transfer-Encoding:' \
    -H 'Content-Type: application/octet-stream' \
    -H "Content-Length: $size" "$@" -T - "$url"
}

status_of() { cut -d' ' -f1 "$1"; }
time_of() { cut -d' ' -f2 "$1"; }

location() { # base -> absolute URL from the last response's Location
  local loc
  loc=$(awk 'tolower($1) == "location:" { print $2 }' "$WORK/hdr" |
    tr -d '\r' | tail -n 1)
  [ -n "$loc" ] || die "no Location header"
  case "$loc" in
    http://*|https://*) echo "$loc" ;;
    *) echo "$1$loc" ;;
  esac
}

# Results come back in RES (no subshell: a signal stops the load at once).
# mono_upload base repo file digest -> RES = seconds
# The single-request form: POST ?digest= with the whole body. Distribution
# 2.8 does not implement it (it answers 202 and ignores the body), so
# put_upload is the form it gets measured with.
mono_upload() {
  local r=$WORK/req
  body_req "$r" POST "$1/v2/$2/blobs/uploads/?digest=$4" "$3"
  [ "$(status_of "$r")" = 201 ] ||
    die "monolithic upload to $1: HTTP $(status_of "$r")"
  RES=$(time_of "$r")
}

# put_upload base repo file digest -> RES = seconds (both requests)
# The two-request monolithic form: POST, then PUT ?digest= with the body.
put_upload() {
  local r=$WORK/req t url
  curl_req "$r" -X POST --data-binary '' "$1/v2/$2/blobs/uploads/"
  [ "$(status_of "$r")" = 202 ] ||
    die "upload start on $1: HTTP $(status_of "$r")"
  t=$(time_of "$r")
  url=$(location "$1")
  case "$url" in *\?*) url="$url&digest=$4" ;; *) url="$url?digest=$4" ;; esac
  body_req "$r" PUT "$url" "$3"
  [ "$(status_of "$r")" = 201 ] ||
    die "monolithic PUT to $1: HTTP $(status_of "$r")"
  RES=$(awk -v a="$t" -v b="$(time_of "$r")" 'BEGIN { printf "%.6f\n", a + b }')
}

# chunked_upload base repo digest -> RES = seconds (sum over the requests)
chunked_upload() {
  local r=$WORK/req times=$WORK/times url off=0 size c
  : > "$times"
  curl_req "$r" -X POST --data-binary '' "$1/v2/$2/blobs/uploads/"
  [ "$(status_of "$r")" = 202 ] ||
    die "upload start on $1: HTTP $(status_of "$r")"
  time_of "$r" >> "$times"; echo >> "$times"
  url=$(location "$1")
  for c in "${CHUNKS[@]}"; do
    size=$(stat -c %s "$c")
    body_req "$r" PATCH "$url" "$c" \
      -H "Content-Range: $off-$((off + size - 1))"
    [ "$(status_of "$r")" = 202 ] ||
      die "PATCH on $1: HTTP $(status_of "$r")"
    time_of "$r" >> "$times"; echo >> "$times"
    off=$((off + size))
    url=$(location "$1")
  done
  case "$url" in *\?*) url="$url&digest=$3" ;; *) url="$url?digest=$3" ;; esac
  curl_req "$r" -X PUT --data-binary '' \
    -H 'Content-Type: application/octet-stream' "$url"
  [ "$(status_of "$r")" = 201 ] ||
    die "upload commit on $1: HTTP $(status_of "$r")"
  time_of "$r" >> "$times"; echo >> "$times"
  RES=$(sum < "$times")
}

# big_get url timesfile: one download of the large blob; its seconds are
# appended to timesfile.
big_get() {
  local r=$WORK/req
  curl_req "$r" "$1"
  [ "$(status_of "$r")" = 200 ] || die "GET $1: HTTP $(status_of "$r")"
  [ "$(cut -d' ' -f3 "$r")" = "$BIG_BYTES" ] ||
    die "GET $1: $(cut -d' ' -f3 "$r") bytes, not $BIG_BYTES"
  time_of "$r" >> "$2"
  echo >> "$2"
}

mibs() { awk -v b="$BIG_BYTES" -v t="$1" 'BEGIN { printf "%.1f\n", b / t / 1048576 }'; }

NOTES=()

# wrk_rps name url [method [bodyfile]] -> RES = req/s
# WRK_HDRS (header lines, newline-separated) is passed as is.
wrk_rps() {
  local name=$1 url=$2 method=${3:-GET} body=${4:-} out=$WORK/wrk line
  if [ "$WARMUP" -gt 0 ]; then
    WRK_METHOD=$method WRK_BODY=$body WRK_HEADERS=${WRK_HDRS:-} \
      run_to "$out" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" \
      --timeout 10s -s bench/http_wrk.lua "$url" || true
  fi
  WRK_METHOD=$method WRK_BODY=$body WRK_HEADERS=${WRK_HDRS:-} \
    run_to "$out" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
    --timeout 10s -s bench/http_wrk.lua "$url" ||
    die "wrk failed on $url: $(cat "$out")"
  line=$(grep '^BENCH ' "$out") || die "no wrk summary for $url: $(cat "$out")"
  local non2xx errors rps
  non2xx=$(sed 's/.* non2xx=\([0-9]*\).*/\1/' <<< "$line")
  errors=$(sed 's/.* errors=\([0-9]*\).*/\1/' <<< "$line")
  rps=$(sed 's/.* rps=\([0-9.]*\).*/\1/' <<< "$line")
  if [ "$non2xx" != 0 ] || [ "$errors" != 0 ]; then
    NOTES+=("$name: $non2xx error responses, $errors socket errors ($url)")
    log "  WARNING: $name: $non2xx error responses, $errors socket errors"
  fi
  log "  $name: $rps req/s ($line)"
  RES=$rps
}

# ab_rps name url -> RES = req/s of HEAD requests. wrk 4.1 cannot measure
# HEAD: its parser waits for the body a Content-Length announces, so no
# request completes. ab -i sends HEAD and knows there is no body.
ab_rps() {
  local name=$1 url=$2 out=$WORK/ab rps failed non2xx
  if [ "$WARMUP" -gt 0 ]; then
    run_to "$out" ab -q -k -i -c "$CONNS" -t "$WARMUP" -n 100000000 \
      "$url" 2>&1 || true
  fi
  run_to "$out" ab -q -k -i -c "$CONNS" -t "$DURATION" -n 100000000 \
    -s 10 "$url" 2>&1 || die "ab failed on $url: $(cat "$out")"
  rps=$(awk '/^Requests per second:/ { print $4 }' "$out")
  failed=$(awk '/^Failed requests:/ { print $3 }' "$out")
  non2xx=$(awk '/^Non-2xx responses:/ { print $3 }' "$out")
  [ -n "$rps" ] || die "no ab summary for $url: $(cat "$out")"
  if [ "${failed:-0}" != 0 ] || [ "${non2xx:-0}" != 0 ]; then
    NOTES+=("$name: ${non2xx:-0} error responses, ${failed:-0} failed ($url)")
    log "  WARNING: $name: ${non2xx:-0} error responses, ${failed:-0} failed"
  fi
  log "  $name: $rps req/s (ab -k -i -c $CONNS -t $DURATION:" \
    "$(awk '/^Complete requests:/ { print $3 }' "$out") requests)"
  RES=$rps
}

# ---------------------------------------------------------- fixtures --

REPO=bench/app
TAGREPO=bench/tags
SMALL=$WORK/small
CONFIG=$WORK/config.json
MANIFEST=$WORK/manifest.json
head -c 4096 /dev/urandom > "$SMALL"
SMALL_DIGEST=sha256:$(sha256sum "$SMALL" | cut -d' ' -f1)
printf '%s' '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' \
  > "$CONFIG"
CONFIG_DIGEST=sha256:$(sha256sum "$CONFIG" | cut -d' ' -f1)
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":4096}]}' \
  "$MT_MANIFEST" "$CONFIG_DIGEST" "$(stat -c %s "$CONFIG")" "$SMALL_DIGEST" \
  > "$MANIFEST"

put_manifest() { # base repo tag
  local r=$WORK/req
  curl_req "$r" -X PUT -H "Content-Type: $MT_MANIFEST" \
    --data-binary @"$MANIFEST" "$1/v2/$2/manifests/$3"
  [ "$(status_of "$r")" = 201 ] ||
    die "manifest PUT $1 $2:$3: HTTP $(status_of "$r")"
}

# NTAGS tags through the API: one curl, one connection, -T with a URL glob.
put_tags() { # base repo
  local last width out=$WORK/tags.status
  last=$(printf '%04d' "$NTAGS")
  width=${#last}
  run_to "$out" curl -sS -o /dev/null -w '%{http_code}\n' \
    -H "Content-Type: $MT_MANIFEST" -T "$MANIFEST" \
    "$1/v2/$2/manifests/t[$(printf "%0${width}d" 1)-$last]"
  local ok
  ok=$(grep -c '^201$' "$out" || true)
  [ "$ok" = "$NTAGS" ] || die "tags on $1: $ok of $NTAGS PUTs returned 201"
}

for base in "$BERTH" "$REG"; do
  for repo in "$REPO" "$TAGREPO"; do
    put_upload "$base" "$repo" "$SMALL" "$SMALL_DIGEST"
    put_upload "$base" "$repo" "$CONFIG" "$CONFIG_DIGEST"
  done
  put_manifest "$base" "$REPO" latest
  t0=$SECONDS
  put_tags "$base" "$TAGREPO"
  log "http.sh: $NTAGS tags on $base in $((SECONDS - t0)) s"
done

# Check the fixtures answer alike on both.
for base in "$BERTH" "$REG"; do
  c=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' \
    -H "Accept: $MT_MANIFEST" "$base/v2/$REPO/manifests/latest")
  [ "$c" = "200 $MT_MANIFEST" ] || die "manifest GET on $base: $c"
  n=$(curl -s "$base/v2/$TAGREPO/tags/list" | grep -o '"t[0-9]*"' | wc -l)
  [ "$n" = "$NTAGS" ] || die "tags/list on $base: $n tags, not $NTAGS"
  c=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' \
    "$base/v2/$REPO/blobs/$SMALL_DIGEST")
  [ "$c" = "200 4096" ] || die "4 KiB blob GET on $base: $c"
done

# ---------------------------------------------------------------- runs --

declare -A R   # R[op,server] = space-separated values, one per run
add() { R[$1,$2]="${R[$1,$2]:-} $3"; }

for run in $(seq "$RUNS"); do
  if [ $((run % 2)) = 1 ]; then order="berth registry"; else order="registry berth"; fi
  log "http.sh: run $run of $RUNS ($order)"
  for s in $order; do
    if [ "$s" = berth ]; then base=$BERTH; else base=$REG; fi
    # Each monolithic form twice, first and last in turn (ABBA): the first
    # upload of a sequence is measured faster here, whichever it is.
    forms="put post post put"
    [ "$s" = registry ] && forms="put put"
    [ "$s" = berth ] && [ $((run % 2)) = 0 ] && forms="post put put post"
    for form in $forms; do
      restamp
      if [ "$form" = put ]; then
        put_upload "$base" "$REPO" "$BIG" "$BIG_DIGEST"
        log "  $s monolithic upload, POST + PUT: $(mibs "$RES") MiB/s ($RES s)"
      else
        mono_upload "$base" "$REPO" "$BIG" "$BIG_DIGEST"
        log "  $s monolithic upload, POST ?digest=: $(mibs "$RES") MiB/s ($RES s)"
      fi
      add "$form" "$s" "$(mibs "$RES")"
    done
    if [ "$s" = berth ]; then BERTH_BIG=$BIG_DIGEST; else REG_BIG=$BIG_DIGEST; fi
    restamp
    chunked_upload "$base" "$REPO" "$BIG_DIGEST"
    add chunked "$s" "$(mibs "$RES")"
    log "  $s chunked upload: $(mibs "$RES") MiB/s ($RES s)"
  done
  # Large GETs interleaved (berth, registry, static, then static first,
  # ...), so that the noise of a shared machine falls on all three alike.
  hex=${BERTH_BIG#sha256:}
  declare -A GETURL=([berth]=$BERTH/v2/$REPO/blobs/$BERTH_BIG
    [registry]=$REG/v2/$REPO/blobs/$REG_BIG
    [static]=$STATIC/sha256/${hex:0:2}/$hex/data)
  for s in $order static; do
    curl -s -o /dev/null "${GETURL[$s]}"   # the first read after the upload
    : > "$WORK/get.$s"
  done
  for i in $(seq "$GETS"); do
    # each server first, middle and last in turn
    case $((i % 3)) in
      1) round="$order static" ;;
      2) round="static $order" ;;
      0) round="${order% *} static ${order#* }" ;;
    esac
    for s in $round; do
      big_get "${GETURL[$s]}" "$WORK/get.$s"
    done
  done
  # The median GET, not the mean: one GET slowed by a neighbour on this
  # shared machine would otherwise weigh on one server only.
  for s in $order static; do
    RES=$(grep . "$WORK/get.$s" | sort -g | awk -v b="$BIG_BYTES" '
      { t[NR] = $1 }
      END {
        m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
        printf "%.1f\n", b / m / 1048576
      }')
    add get "$s" "$RES"
    log "  $s ${SIZE_MIB} MiB blob GET: $RES MiB/s (median of $GETS GETs)"
  done
  # berth against static GET by GET: each pair ran in the same round.
  paste -d' ' "$WORK/get.berth" "$WORK/get.static" | awk 'NF == 2 && $1 > 0 {
    printf "%.4f\n", $2 / $1 }' >> "$WORK/get.pairs"
  for s in $order; do
    if [ "$s" = berth ]; then base=$BERTH; else base=$REG; fi
    WRK_HDRS='' wrk_rps "$s 4 KiB blob GET" \
      "$base/v2/$REPO/blobs/$SMALL_DIGEST"
    add get4k "$s" "$RES"
    ab_rps "$s blob HEAD" "$base/v2/$REPO/blobs/$SMALL_DIGEST"
    add head "$s" "$RES"
    WRK_HDRS="Accept: $MT_MANIFEST" wrk_rps "$s manifest GET" \
      "$base/v2/$REPO/manifests/latest"
    add mget "$s" "$RES"
    WRK_HDRS="Content-Type: $MT_MANIFEST" wrk_rps "$s manifest PUT" \
      "$base/v2/$REPO/manifests/put" PUT "$MANIFEST"
    add mput "$s" "$RES"
    WRK_HDRS='' wrk_rps "$s tags/list ($NTAGS)" "$base/v2/$TAGREPO/tags/list"
    add tags "$s" "$RES"
  done
done

# -------------------------------------------------------------- memory --

hwm_kb() { # pids... -> sum of VmHWM in kB
  local p s=0 v
  for p in "$@"; do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
pss_kb() {
  local p s=0 v
  for p in "$@"; do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
BMASTER=$(cat "$WORK/berth/.berth-run/nginx.pid")
mapfile -t BPIDS < <(echo "$BMASTER"; pgrep -P "$BMASTER" || true)
MEM_B=$(hwm_kb "${BPIDS[@]}")
MEM_R=$(hwm_kb "$REG_PID")
PSS_B=$(pss_kb "${BPIDS[@]}")
PSS_R=$(pss_kb "$REG_PID")
kb_mib() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }

# --------------------------------------------------------------- table --

median() { # values... -> median
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2];
    else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'; }
# meets ratio op bound -> "met" | "NOT met"
meets() {
  awk -v r="$1" -v op="$2" -v b="$3" 'BEGIN {
    ok = (op == ">=") ? (r >= b) : (r < b); print ok ? "met" : "NOT met" }'
}

CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MACHINE="$(nproc) CPUs, ${CPU:-unknown CPU}, $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC')"
VERSIONS="$(docker-registry --version 2>&1 | awk '{ print $NF }'), $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), $(curl --version | head -n 1 | awk '{ print $1, $2 }')"
SETTINGS="runs $RUNS (medians), wrk -t$THREADS -c$CONNS -d${DURATION}s after ${WARMUP}s warm-up, blob ${SIZE_MIB} MiB (chunks ${CHUNK_MIB} MiB, GET x$GETS), $NTAGS tags, berth $WORKERS workers fsync ${BERTH_FSYNC:-full (default)}, docker-registry cache ${REGISTRY_CACHE}, prefault $PREFAULT"

ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); }

ops=(put chunked get get4k head mget mput tags)
declare -A LABEL=(
  [put]="upload ${SIZE_MIB} MiB, POST + PUT whole body (MiB/s)"
  [chunked]="upload ${SIZE_MIB} MiB, ${CHUNK_MIB} MiB chunks (MiB/s)"
  [get]="blob GET ${SIZE_MIB} MiB (MiB/s)"
  [get4k]="blob GET 4 KiB (req/s)"
  [head]="blob HEAD 4 KiB, ab (req/s)"
  [mget]="manifest GET by tag (req/s)"
  [mput]="manifest PUT, same tag (req/s)"
  [tags]="tags/list, $NTAGS tags (req/s)"
)
declare -A TARGET=([put]=3 [get4k]=20 [mget]=10 [tags]=3)
for op in "${ops[@]}"; do
  b=$(median ${R[$op,berth]})
  g=$(median ${R[$op,registry]})
  q=$(ratio "$b" "$g")
  if [ -n "${TARGET[$op]:-}" ]; then
    row "${LABEL[$op]}" "$b" "$g" "$q" ">= ${TARGET[$op]}x" \
      "$(meets "$q" ">=" "${TARGET[$op]}")"
  else
    row "${LABEL[$op]}" "$b" "$g" "$q" "-" "-"
  fi
done
# berth's single-request upload against docker-registry's only monolithic
# form (it lacks POST ?digest=).
b=$(median ${R[post,berth]})
g=$(median ${R[put,registry]})
q=$(ratio "$b" "$g")
row "upload ${SIZE_MIB} MiB, berth POST ?digest= vs registry POST + PUT (MiB/s)" \
  "$b" "$g" "$q" ">= 3x" "$(meets "$q" ">=" 3)"
# The ratio is the median over every pair of GETs made in the same round
# (RUNS x GETS pairs): one GET here varies by a factor of two from one
# second to the next, which a ratio of two medians would carry.
b=$(median ${R[get,berth]})
st=$(median ${R[get,static]})
q=$(sort -g "$WORK/get.pairs" | awk '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.2f\n", m }')
row "blob GET ${SIZE_MIB} MiB: berth vs nginx static, paired GETs (MiB/s)" \
  "$b" "$st (nginx static)" "$q" ">= 0.95x" "$(meets "$q" ">=" 0.95)"
q=$(ratio "$MEM_B" "$MEM_R")
row "peak memory, sum of VmHWM (MiB)" "$(kb_mib "$MEM_B")" \
  "$(kb_mib "$MEM_R")" "$q" "< 0.5x" "$(meets "$q" "<" 0.5)"
row "memory now, sum of Pss (MiB, info)" "$(kb_mib "$PSS_B")" \
  "$(kb_mib "$PSS_R")" "$(ratio "$PSS_B" "$PSS_R")" "-" "-"

ELAPSED=$((SECONDS - START_TIME))

print_text() {
  local r
  echo
  echo "berth serve vs docker-registry: $MACHINE"
  echo "$VERSIONS"
  echo "$SETTINGS"
  echo
  {
    echo "operation|berth|docker-registry|ratio|target|result"
    for r in "${ROWS[@]}"; do echo "$r"; done
  } | awk -F'|' '
    { for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NR; nf = NF }
    END {
      for (r = 1; r <= n; r++) {
        line = ""
        for (i = 1; i <= nf; i++) {
          f = (i == 1) ? "%-" w[i] "s" : "%" w[i] "s"
          line = line (i > 1 ? " | " : "") sprintf(f, c[r, i])
        }
        print line
        if (r == 1) { s = ""; for (i = 1; i <= nf; i++) { d = ""; for (k = 0; k < w[i]; k++) d = d "-"; s = s (i > 1 ? "-+-" : "") d } print s }
      }
    }'
  echo
  for r in "${NOTES[@]+"${NOTES[@]}"}"; do echo "note: $r"; done
  echo "per run (berth / docker-registry):"
  for op in "${ops[@]}"; do
    echo "  $op:${R[$op,berth]} /${R[$op,registry]}"
  done
  echo "  post (berth only):${R[post,berth]}"
  echo "  get static:${R[get,static]}"
  echo "took ${ELAPSED} s"
}

print_md() {
  local r
  echo "berth serve vs docker-registry: $MACHINE"
  echo
  echo "$VERSIONS; $SETTINGS"
  echo
  echo "| operation | berth | docker-registry | ratio | target | result |"
  echo "|---|---:|---:|---:|---|---|"
  for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
  for r in "${NOTES[@]+"${NOTES[@]}"}"; do echo; echo "note: $r"; done
}

print_text
if [ -n "$BERTH_BENCH_OUT" ]; then
  print_md > "$BERTH_BENCH_OUT"
  log "http.sh: wrote $BERTH_BENCH_OUT"
fi
