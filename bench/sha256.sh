#!/bin/sh
# SHA-256 throughput of berth (AUTO and MBEDTLS hashers) against
# `openssl speed -evp sha256 -bytes 65536`, interleaved, RUNS runs each,
# medians in MB/s (10^6 bytes/s). Run from anywhere after building:
#   cmake -S . -B build && cmake --build build && bench/sha256.sh
# Env: BERTH_LIB (default build/libberth.so), RUNS (5), SECS (2).
set -eu
cd "$(dirname "$0")/.."

BERTH_LIB=${BERTH_LIB:-build/libberth.so}
RUNS=${RUNS:-5}
SECS=${SECS:-2}
export BERTH_LIB

if [ ! -f "$BERTH_LIB" ]; then
    echo "sha256.sh: $BERTH_LIB not found; build first:" \
        "cmake -S . -B build && cmake --build build" >&2
    exit 1
fi
if ! command -v luajit >/dev/null; then
    echo "sha256.sh: luajit not found" >&2
    exit 1
fi
HAVE_OPENSSL=1
command -v openssl >/dev/null || HAVE_OPENSSL=0

median() {
    printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"
}

AUTO_IMPL=$(luajit -e 'package.path="lua/?.lua;"..package.path
    io.write(require("berth.digest").auto_impl())')
auto="" mbed="" ossl=""
i=1
while [ "$i" -le "$RUNS" ]; do
    a=$(luajit bench/sha256.lua auto "$SECS")
    m=$(luajit bench/sha256.lua mbedtls "$SECS")
    o=n/a
    if [ "$HAVE_OPENSSL" = 1 ]; then
        # Last line: "sha256  1234567.89k", in 1000s of bytes per second.
        o=$(openssl speed -seconds "$SECS" -evp sha256 -bytes 65536 \
            2>/dev/null | tail -n 1 | awk '{ sub(/k$/, "", $NF);
            printf "%.1f", $NF / 1000 }')
        ossl="$ossl $o"
    fi
    echo "run $i: berth auto ($AUTO_IMPL) $a MB/s, berth mbedtls $m MB/s," \
        "openssl $o MB/s"
    auto="$auto $a" mbed="$mbed $m"
    i=$((i + 1))
done

# shellcheck disable=SC2086
ma=$(median $auto)
# shellcheck disable=SC2086
mm=$(median $mbed)
echo "median of $RUNS x ${SECS}s, 64 KiB updates:"
echo "  berth auto ($AUTO_IMPL)  $ma MB/s"
echo "  berth mbedtls       $mm MB/s"
if [ -n "$ossl" ]; then
    # shellcheck disable=SC2086
    mo=$(median $ossl)
    echo "  openssl -evp        $mo MB/s"
    awk -v a="$ma" -v o="$mo" 'BEGIN {
        printf "  berth auto / openssl = %.3f\n", a / o }'
fi
