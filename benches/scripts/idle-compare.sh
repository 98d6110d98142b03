#!/usr/bin/env bash
# An idle connected participant's cost on this machine, beside the floors under it, in one
# run: our server with N participants connected and silent but for their clients' keepalives
# (a `ping` and `ping_req` every 5 s, a STUN consent check every 4 s), against `ws-floor`, a
# bare tokio + tungstenite server answering one message from each of N clients every 5 s
# and echoing a 100-byte datagram from each every 4 s, and `ws-floor --raw 1`, one thread
# of plain epoll echoing the same over TCP and UDP (what the kernel alone costs for the
# same traffic: a message and its answer every 5 s, a datagram and its answer every 4 s).
#
#   bash benches/scripts/idle-compare.sh [--bin-dir DIR] [--participants N] [--pairs K]
#                                        [--measure S] [--port P]
#
#   --bin-dir DIR       livekit-server, livekit-cli and ws-floor (default target/release;
#                       `cargo build --release --bins -p lkr-cli -p lkr-benches`)
#   --server PATH, --cli PATH, --floor PATH   the three binaries one by one
#   --participants N    connected participants / connections (default 1000)
#   --pairs K           runs of each, alternating, the order flipped every pair (default 2)
#   --measure S         seconds measured once everyone has joined (default 20)
#   --port P            our server's HTTP port (default 17970; UDP P+2)
#
# Ours: `livekit-server --dev` and `livekit-cli perf load-test --subscribers N
# --num-per-second 100 --threads 2`; once everyone has joined, each of the server's threads'
# CPU (user and system, /proc/PID/task/*/stat) over the window, summed by thread name: the
# signalling workers (tokio-rt-worker), the media thread and the rest, per participant per
# second. Everything binds 127.0.0.1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="$root/target/release"
n=1000
pairs=2
measure=20
port=17970
server="" cli="" floor_bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --server) server="$2"; shift 2 ;;
        --cli) cli="$2"; shift 2 ;;
        --floor) floor_bin="$2"; shift 2 ;;
        --participants) n="$2"; shift 2 ;;
        --pairs) pairs="$2"; shift 2 ;;
        --measure) measure="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        *) echo "idle-compare: unknown option $1" >&2; exit 2 ;;
    esac
done
server="${server:-$bin_dir/livekit-server}"
cli="${cli:-$bin_dir/livekit-cli}"
floor_bin="${floor_bin:-$bin_dir/ws-floor}"
for b in "$server" "$cli" "$floor_bin"; do
    [ -x "$b" ] || { echo "idle-compare: $b not found" >&2; exit 2; }
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT
hz=$(getconf CLK_TCK)

# Ticks per thread name of process $1: "name ticks" lines (a thread that ends while it is
# read is left out).
ticks() {
    for t in /proc/"$1"/task/*; do
        local name stat
        name="$(tr ' ' _ < "$t/comm" 2> /dev/null)" || continue
        stat="$(cat "$t/stat" 2> /dev/null)" || continue
        printf '%s %s\n' "$name" "$(sed 's/.*) //' <<< "$stat" | awk '{print $12 + $13}')"
    done | awk '{s[$1] += $2} END {for (k in s) print k, s[k]}' | sort
}

ours() {
    "$server" --dev --bind 127.0.0.1 --port "$port" --udp-port $((port + 2)) \
        > "$tmp/server.log" 2>&1 &
    local sp=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/" > /dev/null 2>&1 && break
        sleep 0.1
    done
    # Joins at 100 a second, then every client's first keepalives, then a quiet window or
    # two for the signalling threads to start pacing (they decide every 5 s).
    local settle=$((n / 100 + 20))
    local run=$((settle + measure + 5))
    "$cli" --url "http://127.0.0.1:$port" --dev perf load-test \
        --subscribers "$n" --num-per-second 100 --threads 2 --duration "${run}s" \
        > "$tmp/lt.log" 2>&1 &
    local lp=$!
    sleep "$settle"
    grep -q "joined $n/$n" "$tmp/lt.log" || { echo "idle-compare: not everyone joined" >&2; tail -3 "$tmp/lt.log" >&2; }
    ticks "$sp" > "$tmp/a"
    sleep "$measure"
    ticks "$sp" > "$tmp/b"
    kill "$lp" "$sp" 2> /dev/null || true
    wait "$lp" "$sp" 2> /dev/null || true
    join "$tmp/a" "$tmp/b" | awk -v hz="$hz" -v n="$n" -v m="$measure" '
        { d = ($3 - $2) / hz * 1e6 / m / n; total += d
          if ($1 == "tokio-rt-worker") w += d; else if ($1 == "media") md += d; else rest += d }
        END { printf "ours   %6.1f us/s per participant (signalling workers %.1f, media thread %.1f, other %.1f)\n", total, w, md, rest }'
}

floor() {
    "$floor_bin" --connections "$n" --interval 5 --udp-interval 4 --measure "$measure" --raw "$1" \
        | sed -E 's/.* ([0-9.]+) us\/s per connection; answered ([0-9]+) messages, ([0-9]+) datagrams/\1 \2 \3/' \
        | awk -v what="$2" '{printf "%-6s %6.1f us/s per connection (%s; answered %d messages, %d datagrams)\n", "floor", $1, what, $2, $3}'
}

for p in $(seq "$pairs"); do
    echo "pair $p"
    if [ $((p % 2)) -eq 1 ]; then
        ours; floor 0 "bare WebSocket server, tokio UDP echo"; floor 1 "raw epoll, TCP and UDP echo"
    else
        floor 1 "raw epoll, TCP and UDP echo"; floor 0 "bare WebSocket server, tokio UDP echo"; ours
    fi
done
