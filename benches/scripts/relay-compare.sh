#!/usr/bin/env bash
# Our server against a plain UDP relay, in one run: the server's CPU per forwarded packet
# beside that of `livekit-cli perf udp-relay` (recvmmsg/sendmmsg, no crypto) moving
# datagrams of the same size at the same rate to the same number of receivers.
#
#   bash benches/scripts/relay-compare.sh [options]
#
#   --bin-dir DIR       where livekit-server and livekit-cli are (default target/release)
#   --server PATH, --cli PATH   the two binaries one by one (override --bin-dir)
#   --subscribers LIST  comma-separated receiver counts, one audio publisher each
#                       (default 500)
#   --duration D        measured time per run, e.g. 20s (default 20s)
#   --pairs K           runs of each, alternating ours and the relay (default 2); the order
#                       flips every pair, so that a neighbour's load drifting over the run
#                       does not always land on the same side
#   --threads N         load tester worker threads (default 2)
#   --rate N            participants joining our server per second (default 50)
#   --port P            first port: our server takes P (HTTP) and P+2 (UDP), the relay P+5
#                       (default 17960)
#   --keep DIR          keep logs in DIR instead of a temp dir removed on exit
#
# Everything binds 127.0.0.1. Ours: `livekit-server --dev`, loaded by `livekit-cli perf
# load-test --server-pid PID --audio-publishers 1 --subscribers N`: real clients, ICE, DTLS,
# SRTP (AES-GCM), 20 ms Opus-shaped packets of 80 bytes, forwarded as 108-byte datagrams.
# Relay: `livekit-cli perf udp-relay`, loaded by `livekit-cli perf relay-load-test
# --relay-pid PID --subscribers N`: one socket sending 108-byte datagrams every 20 ms, N
# sockets registered as receivers. Both load tests read the process's CPU time (user and
# system, /proc/PID/stat) over the measured window and divide it by the packets their
# receivers got in it: the "Steady state: ... CPU us per forwarded packet" line, from which
# the table is made. On a machine shared with other work the figures are noisy: compare
# pairs, not single runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="$root/target/release"
subscribers=500
duration=20s
pairs=2
threads=2
rate=50
port=17960
keep=""
server_bin=""
cli_bin=""
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --server) server_bin=$2; shift 2 ;;
    --cli) cli_bin=$2; shift 2 ;;
    --subscribers) subscribers=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
server_bin=${server_bin:-$bin_dir/livekit-server}
cli_bin=${cli_bin:-$bin_dir/livekit-cli}
for b in "$server_bin" "$cli_bin"; do
    [ -x "$b" ] || { echo "missing $b (cargo build --release -p lkr-cli)" >&2; exit 2; }
done
[ "$pairs" -ge 1 ] 2>/dev/null || { echo "--pairs must be at least 1" >&2; exit 2; }

ip=127.0.0.1
http_port=$port
udp_port=$((port + 2))
relay_port=$((port + 5))
if [ -n "$keep" ]; then
    out=$keep
    mkdir -p "$out"
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/lkrelay-XXXXXX")
fi
running="" # the server or relay of the run under way, if any
cleanup() {
    [ -n "$running" ] && kill "$running" 2>/dev/null || true
    [ -z "$keep" ] && rm -rf "$out"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { # file sed-expression
    sed -n "$2" "$1" | head -1
}
us_of() { field "$1" 's/^Steady state: .*; \([0-9.]*\) CPU us per forwarded packet (.*/\1/p'; }
user_of() { field "$1" 's/^Steady state: .* CPU us per forwarded packet (\([0-9.]*\) user)$/\1/p'; }
pk_of() { field "$1" 's/^Steady state: \([0-9]*\) packets forwarded.*/\1/p'; }
lost_of() { field "$1" 's/^Received [0-9]* packets; lost \([0-9]*\) .*/\1/p'; }
loss_of() { field "$1" 's/^Received [0-9]* packets; lost [0-9]* (\([0-9.]*%\)).*/\1/p'; }
drops_of() { field "$1" 's/^load tester socket drops: \([0-9]*\)$/\1/p'; }

stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

run_ours() { # subscribers tag
    local n=$1 tag=$2
    "$server_bin" --dev --bind "$ip" --node-ip "$ip" --port "$http_port" --udp-port "$udp_port" \
        >"$out/$tag.log" 2>&1 &
    local pid=$!
    running=$pid
    local up=""
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://$ip:$http_port/" && { up=1; break; }
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "livekit-server did not start; its log:" >&2
        tail -20 "$out/$tag.log" >&2
        exit 1
    fi
    "$cli_bin" --dev --url "http://$ip:$http_port" perf load-test --server-pid "$pid" \
        --audio-publishers 1 --subscribers "$n" --duration "$duration" --threads "$threads" \
        --num-per-second "$rate" >"$out/$tag.txt" 2>"$out/$tag.err" || true
    stop_pid "$pid"
    wait "$pid" 2>/dev/null || true
    running=""
}

run_relay() { # subscribers tag
    local n=$1 tag=$2
    "$cli_bin" perf udp-relay --bind "$ip:$relay_port" >"$out/$tag.log" 2>&1 &
    local pid=$!
    running=$pid
    local up=""
    for _ in $(seq 100); do
        grep -q '^udp-relay: listening' "$out/$tag.log" 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "the relay did not start; its log:" >&2
        tail -20 "$out/$tag.log" >&2
        exit 1
    fi
    "$cli_bin" perf relay-load-test --relay "$ip:$relay_port" --relay-pid "$pid" \
        --subscribers "$n" --duration "$duration" --threads "$threads" \
        >"$out/$tag.txt" 2>"$out/$tag.err" || true
    stop_pid "$pid"
    wait "$pid" 2>/dev/null || true
    running=""
}

row() { # label file
    local us user pk lost loss drops
    us=$(us_of "$2"); user=$(user_of "$2"); pk=$(pk_of "$2")
    lost=$(lost_of "$2"); loss=$(loss_of "$2"); drops=$(drops_of "$2")
    printf '%-14s %11s %12s %12s %8s %9s %13s\n' "$1" "${us:--}" "${user:--}" "${pk:--}" \
        "${lost:--}" "${loss:--}" "${drops:--}"
}
header() {
    printf '%-14s %11s %12s %12s %8s %9s %13s\n' run "CPU us/pkt" "user us/pkt" \
        "fwd packets" lost loss "socket drops"
}
ratio() { # ours-file relay-file -> "3.10 4.20" (total, user; "-" where the relay's is 0)
    local o r ou ru
    o=$(us_of "$1"); r=$(us_of "$2"); ou=$(user_of "$1"); ru=$(user_of "$2")
    [ -n "$o" ] && [ -n "$r" ] || return 0
    # /proc counts CPU time in 10 ms ticks: a short run of the relay can show none at all.
    awk -v o="$o" -v r="$r" -v ou="${ou:-0}" -v ru="${ru:-0}" 'BEGIN {
        if (r <= 0) exit
        if (ru > 0) printf "%.2f %.2f\n", o / r, ou / ru
        else printf "%.2f -\n", o / r }'
}

echo "relay-compare: $(nproc) cores, $(uname -r), 1 audio publisher, duration $duration, $pairs pairs, load tester threads $threads"
IFS=, read -ra counts <<<"$subscribers"
summary=()
for n in "${counts[@]}"; do
    for p in $(seq "$pairs"); do
        if [ $((p % 2)) = 1 ]; then order="ours relay"; else order="relay ours"; fi
        for who in $order; do
            "run_$who" "$n" "$who-$n-$p"
        done
        echo
        echo "== 1 audio -> $n subscribers, $duration measured, pair $p (${order/ /, then })"
        for who in ours relay; do
            f="$out/$who-$n-$p.txt"
            if ! grep -q '^Steady state' "$f" 2>/dev/null; then
                echo "$who: the load test failed:"
                tail -5 "$out/$who-$n-$p.err" "$f" 2>/dev/null | sed 's/^/  /'
            fi
        done
        header
        row ours "$out/ours-$n-$p.txt"
        row relay "$out/relay-$n-$p.txt"
        grep -h '^udp-relay: received' "$out/relay-$n-$p.log" 2>/dev/null | sed 's/^/relay counters: /;s/udp-relay: //' || true
        r=$(ratio "$out/ours-$n-$p.txt" "$out/relay-$n-$p.txt")
        if [ -n "$r" ]; then
            read -r total user <<<"$r"
            if [ "$user" = - ]; then
                echo "ours/relay: ${total}x CPU per forwarded packet (user space alone: -, the relay's user CPU time was below a clock tick)"
            else
                echo "ours/relay: ${total}x CPU per forwarded packet (user space alone: ${user}x)"
            fi
            summary+=("$n $p $(us_of "$out/ours-$n-$p.txt") $(us_of "$out/relay-$n-$p.txt") $total $user $(loss_of "$out/ours-$n-$p.txt") $(loss_of "$out/relay-$n-$p.txt")")
        else
            echo "ours/relay: not measured (a load test failed, or the relay's CPU time was below a clock tick)"
        fi
    done
done

echo
echo "== Summary: CPU us per forwarded packet, ours vs plain UDP relay"
printf '%-12s %5s %10s %10s %12s %11s %10s %10s\n' subscribers pair ours relay "ours/relay" "user ratio" "ours loss" "relay loss"
for s in "${summary[@]}"; do
    read -r n p o r t u ol rl <<<"$s"
    [ "$u" = - ] || u="${u}x"
    printf '%-12s %5s %10s %10s %11s %11s %10s %10s\n' "$n" "$p" "$o" "$r" "${t}x" "$u" "$ol" "$rl"
done
[ -n "$keep" ] && echo "(logs in $out)"
exit 0
