#!/usr/bin/env bash
# Side-by-side load test of two builds of livekit-server on loopback, in one run.
#
#   bash benches/scripts/load-compare.sh BEFORE_DIR AFTER_DIR [SUBSCRIBERS]
#
# Each directory holds a release `livekit-server` and `livekit-cli`. For each build, in
# turn: a server on loopback (--dev), then `livekit-cli perf load-test --server-pid`:
#   idle-short / idle-long: SUBSCRIBERS (default 100) participants join and stay idle for 5 s
#     and for 35 s. Idle cost per participant = CPU difference / 30 s / participants; join
#     cost = (short-run CPU - 5 s of idle) / participants. The load tester reads the server's
#     CPU once its participants have left, so the join cost includes each one's departure.
#   audio: 1 audio publisher -> SUBSCRIBERS subscribers for 20 s (loss, latency, CPU).
# Prints the load tester's summary lines and a table of the derived figures.
set -euo pipefail
before=${1:?before dir}
after=${2:?after dir}
subs=${3:-100}
port=17880
out=$(mktemp -d)

cpu_of() { # "Server (pid N): X CPU s ..." -> X
    sed -n 's/^Server (pid [0-9]*): \([0-9.]*\) CPU s.*/\1/p' "$1" | head -1
}

run() { # name dir scenario args...
    local name=$1 dir=$2 scen=$3
    shift 3
    port=$((port + 10))
    "$dir/livekit-server" --dev --port "$port" --udp-port "$((port + 2))" >"$out/$name-$scen.server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$dir/livekit-cli" --dev --url "http://127.0.0.1:$port" perf load-test --server-pid "$pid" \
        --num-per-second 50 "$@" >"$out/$name-$scen.txt" 2>"$out/$name-$scen.err" || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "== $name $scen"
    grep -E "^(Joined|Join|Received|Forwarding|Server|This load)" "$out/$name-$scen.txt" || cat "$out/$name-$scen.err" | tail -3
}

for name in before after; do
    dir=$before
    [ "$name" = after ] && dir=$after
    run "$name" "$dir" idle-short --subscribers "$subs" --duration 5s
    run "$name" "$dir" idle-long --subscribers "$subs" --duration 35s
    run "$name" "$dir" audio --audio-publishers 1 --subscribers "$subs" --duration 20s
done

echo
printf '%-8s %14s %16s %12s\n' build "join CPU ms" "idle us/part/s" "audio CPU s"
for name in before after; do
    s=$(cpu_of "$out/$name-idle-short.txt")
    l=$(cpu_of "$out/$name-idle-long.txt")
    a=$(cpu_of "$out/$name-audio.txt")
    awk -v n="$name" -v s="$s" -v l="$l" -v a="$a" -v p="$subs" 'BEGIN {
        idle = (l - s) / 30 / p;            # CPU s per participant per second
        join = (s - idle * p * 5) / p;      # CPU s per join
        printf "%-8s %14.2f %16.1f %12s\n", n, join * 1000, idle * 1e6, a
    }'
done
echo "(logs in $out)"
