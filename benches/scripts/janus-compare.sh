#!/usr/bin/env bash
# Side by side with Janus, in one run: Janus VideoRoom (Debian package `janus`) and our
# livekit-server, in turn, in one private network namespace, under the same load from our
# own client stack, and one table per scenario.
#
#   bash benches/scripts/janus-compare.sh [options]
#
#   --bin-dir DIR       where livekit-server and livekit-cli are (default target/release)
#   --server PATH, --cli PATH   the two binaries one by one (override --bin-dir)
#   --duration D        measured time per run, e.g. 20s (default 15s)
#   --scenarios LIST    comma-separated, from v10 (1 video -> 10), v100 (1 video -> 100),
#                       a500 (1 audio -> 500) (default v10,v100,a500)
#   --resolution R      video: high (720p, 1.7 Mbit/s), medium (360p, 500 kbit/s) or low
#                       (default high); one layer for both servers
#   --rate N            participants joining per second (default 50)
#   --janus-loops N     Janus `event_loops` (0: Janus's default, a thread per handle;
#                       default 2, one per core here)
#   --keep DIR          keep logs and configs in DIR instead of a temp dir removed on exit
#   --gro               also run ours with the load tester's sockets reading segmented runs
#                       whole (`perf load-test --udp-gro`): one more row, "ours-gro"
#   --split             servers and load tester as two hosts: two namespaces joined by the
#                       veth pair, the servers pinned to the first core and the load tester to
#                       the second, each side's received packets processed on its own core
#                       (RPS), segmentation done in software on the servers' side (see below)
#
# The namespace has lo and a veth pair, lkjan-a 10.77.80.1/24 <-> lkjan-b 10.77.80.2/24, and
# no route out: nothing leaves it. Both servers bind 10.77.80.1 (Janus does not gather
# loopback candidates, and takes one UDP port per peer connection from 20000-40000); the
# load tester runs in the namespace too. Janus runs with only the HTTP transport and the
# VideoRoom plugin, ICE lite, no STUN/TURN, IPv4 only. Both servers negotiate
# SRTP_AEAD_AES_128_GCM with our client (its DTLS offers AES-128-GCM first; the Janus run
# prints the profile it got).
#
# After both, a plain UDP relay (`livekit-cli perf udp-relay`: recvmmsg/sendmmsg, no
# crypto, no allocation per packet) on the same address is driven by `perf relay-load-test`
# with the same number of receivers and datagrams at the rate our server forwarded them to
# each subscriber in its run (audio: the 108 bytes our server sends; video: 1128 bytes, a
# full packet, so if anything dearer than the average forwarded one). It is the floor set by
# the kernel: what moving these datagrams costs with no media server work at all, one
# datagram per system-call header. (Ours sends a subscriber's run of datagrams as one
# segmented header, UDP GSO, so it can go below that floor.) The relay's sender sends a
# video frame's packets back to back (rate / frame rate at a time), as a publisher does.
#
# Then the same relay once more doing what any server forwarding SRTP must do at least for
# each copy, the "floor" row: `perf udp-relay --segment --seal` seals each receiver's copy
# with SRTP AES-128-GCM under a context of its own (the server's own SRTP code) and sends
# each receiver's copies of a frame as one segmented send (the server's own send code); its
# receivers open what they get (`--sealed`). It leaves out what a server also does (the
# publisher's packets decrypted once, RTCP, rewriting headers, bookkeeping), so Janus / floor
# bounds the ratio any server built on these sockets and this crypto could reach here.
#
# With `--gro`, ours runs a second time with the load tester's sockets asking for UDP_GRO:
# on one machine a sender is charged for splitting its segmented runs and queueing each
# datagram on its receiver's socket (and waking the receiver), work that in a deployment
# the network card and the subscribers' own hosts do; a receiver reading runs whole spares
# the server most of it. Janus sends no runs, so it would gain nothing from it, while it is
# charged for the receivers' per-datagram work all the same: the main ratio stays the
# one with plain receivers, and this row says how much of ours is that delivery work.
#
# With `--split`, the servers (and relays) run in one namespace on core 0 and the load tester
# in another on core 1, the veth pair between them (lkjan-a in the servers' namespace,
# lkjan-b in the load tester's), and each veth end's receive processing is steered (RPS) to
# its own side's core. Without it, everything shares the cores and every datagram a server
# sends to a subscriber on this machine is also received, queued and its receiver woken on
# the sender's account (loopback delivery runs in the sender's context), work that in a
# deployment the subscribers' hosts do; with it, a server is charged for what it would be
# charged on a host of its own: its system calls, its UDP/IP stack down to the device, and
# its share of the processing of what it receives. The servers' veth end has UDP
# segmentation offload turned off, so a segmented send is split in software on the servers'
# core, as on a network card without it (one with it would spare the server that too). Both
# servers are measured so; the ratio compares like with like, and a run without `--split`
# (the default) is the one the earlier figures in the README come from.
#
# Per run, `--server-pid` makes the load tester read the server's CPU time over the measured
# window (everyone joined, media flowing) and its peak RSS (VmHWM), and the table divides
# that CPU time by the packets the subscribers received in the window. Below the table, the
# datagrams the load tester's own sockets dropped in each run (SO_RXQ_OVFL): loss up to that
# count is the load tester's, not the server's.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="$root/target/release"
duration=15s
scenarios=v10,v100,a500
resolution=high
rate=50
loops=2
keep=""
gro=""
split=""
server_bin=""
cli_bin=""
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --server) server_bin=$2; shift 2 ;;
    --cli) cli_bin=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --resolution) resolution=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --janus-loops) loops=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --gro) gro=1; shift ;;
    --split) split=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
server_bin=${server_bin:-$bin_dir/livekit-server}
cli_bin=${cli_bin:-$bin_dir/livekit-cli}
for b in "$server_bin" "$cli_bin"; do
    [ -x "$b" ] || { echo "missing $b (cargo build --release -p lkr-cli)" >&2; exit 2; }
done
janus_bin=$(command -v janus || true)
[ -n "$janus_bin" ] || { echo "janus is not installed (apt-get install janus)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (it creates a network namespace)" >&2; exit 2; }
janus_lib=$(dirname "$(dirname "$(readlink -f "$(ls /usr/lib/*/janus/plugins/libjanus_videoroom.so | head -1)")")")

ns="lkjan$$"
ns_cli=$ns
if [ -n "$split" ]; then
    [ "$(nproc)" -ge 2 ] || { echo "--split needs two cores" >&2; exit 2; }
    ns_cli="lkjanc$$"
fi
ip_srv=10.77.80.1
ip_peer=10.77.80.2
if [ -n "$keep" ]; then
    out=$keep
    mkdir -p "$out"
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/lkjan-XXXXXX")
fi

cleanup() {
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    sleep 0.3
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    if [ "$ns_cli" != "$ns" ]; then
        pids=$(ip netns pids "$ns_cli" 2>/dev/null || true)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        ip netns del "$ns_cli" 2>/dev/null || true
    fi
    [ -z "$keep" ] && rm -rf "$out"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
nsx() { ip netns exec "$ns" "$@"; }
nsx ip link set lo up
# How the servers and the load tester are started: their namespace (and core, with --split).
srv=(ip netns exec "$ns")
cli=(ip netns exec "$ns")
if [ -n "$split" ]; then
    ip netns add "$ns_cli"
    nsc() { ip netns exec "$ns_cli" "$@"; }
    nsc ip link set lo up
    nsx ip link add lkjan-a type veth peer name lkjan-b netns "$ns_cli"
    nsx ip addr add "$ip_srv/24" dev lkjan-a
    nsc ip addr add "$ip_peer/24" dev lkjan-b
    nsx ip link set lkjan-a up
    nsc ip link set lkjan-b up
    nsx ethtool -K lkjan-a tx-udp-segmentation off >/dev/null
    nsx sh -c 'echo 1 > /sys/class/net/lkjan-a/queues/rx-0/rps_cpus'
    nsc sh -c 'echo 2 > /sys/class/net/lkjan-b/queues/rx-0/rps_cpus'
    srv+=(taskset -c 0)
    cli=(ip netns exec "$ns_cli" taskset -c 1)
else
    nsx ip link add lkjan-a type veth peer name lkjan-b
    nsx ip addr add "$ip_srv/24" dev lkjan-a
    nsx ip addr add "$ip_peer/24" dev lkjan-b
    nsx ip link set lkjan-a up
    nsx ip link set lkjan-b up
fi

# Janus's configuration: only what this run loads.
cfg="$out/janus"
mkdir -p "$cfg/plugins" "$cfg/transports" "$cfg/events" "$cfg/loggers"
ln -sf "$janus_lib/plugins/libjanus_videoroom.so" "$cfg/plugins/"
ln -sf "$janus_lib/transports/libjanus_http.so" "$cfg/transports/"
cat >"$cfg/janus.jcfg" <<EOF
general: {
	configs_folder = "$cfg"
	plugins_folder = "$cfg/plugins"
	transports_folder = "$cfg/transports"
	events_folder = "$cfg/events"
	loggers_folder = "$cfg/loggers"
	debug_level = 3
	interface = "$ip_srv"
	admin_secret = "lkjan-admin"
	session_timeout = 0
	event_loops = $loops
	exit_on_dl_error = true
}
media: {
	ipv6 = false
	rtp_port_range = "20000-40000"
}
nat: {
	ice_lite = true
	ice_enforce_list = "lkjan-a"
	ignore_mdns = true
	nice_debug = false
}
plugins: {
}
transports: {
}
events: {
	broadcast = false
}
EOF
cat >"$cfg/janus.transport.http.jcfg" <<EOF
general: {
	json = "plain"
	base_path = "/janus"
	http = true
	ip = "$ip_srv"
	port = 18000
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
EOF
cat >"$cfg/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF

# "Received N packets; lost L (X%)" etc. -> fields for the table.
field() { # file sed-expression
    sed -n "$2" "$1" | head -1
}
summary() { # name file -> one table row
    local name=$1 f=$2 us user pk lost loss p50 p99 mem
    us=$(us_of "$f")
    user=$(user_of "$f")
    pk=$(field "$f" 's/^Steady state: \([0-9]*\) packets forwarded.*/\1/p')
    lost=$(field "$f" 's/^Received [0-9]* packets; lost \([0-9]*\) .*/\1/p')
    loss=$(field "$f" 's/^Received [0-9]* packets; lost [0-9]* (\([0-9.]*%\)).*/\1/p')
    p50=$(field "$f" 's/^Forwarding latency (ms): p50 \([0-9.]*\),.*/\1/p')
    p99=$(field "$f" 's/^Forwarding latency (ms): .*p99 \([0-9.]*\),.*/\1/p')
    mem=$(field "$f" 's/^\(Server\|Relay\) (pid [0-9]*): .*peak memory \([0-9.]*\) MB$/\2/p')
    printf '%-7s %12s %12s %12s %8s %9s %9s %9s %12s\n' "$name" "${us:--}" "${user:--}" "${pk:--}" \
        "${lost:--}" "${loss:--}" "${p50:--}" "${p99:--}" "${mem:--}"
}
us_of() { field "$1" 's/^Steady state: .*; \([0-9.]*\) CPU us per forwarded packet (.*/\1/p'; }
user_of() { field "$1" 's/^Steady state: .* CPU us per forwarded packet (\([0-9.]*\) user)$/\1/p'; }

wait_http() { # url
    for _ in $(seq 100); do
        nsx curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    return 1
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

# (The servers are started without the nsx function: `$!` must be their own pid.)
run_janus() { # scenario load-args...
    local scen=$1
    shift
    "${srv[@]}" nice -n 10 "$janus_bin" -F "$cfg" -C "$cfg/janus.jcfg" >"$out/janus-$scen.log" 2>&1 &
    local pid=$!
    if ! wait_http "http://$ip_srv:18000/janus/info"; then
        echo "Janus did not start; its log:" >&2
        tail -20 "$out/janus-$scen.log" >&2
        exit 1
    fi
    "${cli[@]}" nice -n 10 "$cli_bin" perf janus-load-test --janus-url "http://$ip_srv:18000/janus" \
        --server-pid "$pid" --num-per-second "$rate" --duration "$duration" \
        --video-resolution "$resolution" "$@" >"$out/janus-$scen.txt" 2>"$out/janus-$scen.err" || true
    stop_pid "$pid"
}

run_ours() { # name scenario load-args...
    local name=$1 scen=$2
    shift 2
    "${srv[@]}" nice -n 10 "$server_bin" --dev --bind "$ip_srv" --node-ip "$ip_srv" --port 18010 \
        --udp-port 18012 >"$out/$name-$scen.log" 2>&1 &
    local pid=$!
    if ! wait_http "http://$ip_srv:18010/"; then
        echo "livekit-server did not start; its log:" >&2
        tail -20 "$out/$name-$scen.log" >&2
        exit 1
    fi
    "${cli[@]}" nice -n 10 "$cli_bin" --dev --url "http://$ip_srv:18010" perf load-test \
        --server-pid "$pid" --num-per-second "$rate" --duration "$duration" --no-simulcast \
        --video-resolution "$resolution" "$@" >"$out/$name-$scen.txt" 2>"$out/$name-$scen.err" || true
    stop_pid "$pid"
}

run_relay() { # name scenario subscribers datagram-size rate burst [relay flags]
    local name=$1 scen=$2 subs=$3 size=$4 rate_pps=$5 burst=$6
    shift 6
    local sealed=()
    [[ " $* " == *" --seal "* ]] && sealed=(--sealed)
    "${srv[@]}" nice -n 10 "$cli_bin" perf udp-relay --bind "$ip_srv:18020" "$@" \
        >"$out/$name-$scen.log" 2>&1 &
    local pid=$!
    sleep 0.3
    "${cli[@]}" nice -n 10 "$cli_bin" perf relay-load-test --relay "$ip_srv:18020" --relay-pid "$pid" \
        --subscribers "$subs" --duration "$duration" --datagram-size "$size" --rate "$rate_pps" \
        --burst "$burst" "${sealed[@]}" >"$out/$name-$scen.txt" 2>"$out/$name-$scen.err" || true
    stop_pid "$pid"
}

echo "janus-compare: $(nproc) cores, $(uname -r), Janus $("$janus_bin" --version 2>/dev/null | sed -n 's/^Janus version: [0-9]* (\(.*\))/\1/p'), event_loops=$loops, duration $duration, video $resolution (one layer)${split:+, split: servers on core 0, load tester on core 1, two namespaces}"
IFS=, read -ra list <<<"$scenarios"
for scen in "${list[@]}"; do
    case "$scen" in
    v10) title="1 -> 10 video"; subs=10; size=1128; load=(--video-publishers 1 --subscribers 10) ;;
    v100) title="1 -> 100 video"; subs=100; size=1128; load=(--video-publishers 1 --subscribers 100) ;;
    a500) title="1 -> 500 audio"; subs=500; size=108; load=(--audio-publishers 1 --subscribers 500) ;;
    *) echo "unknown scenario $scen" >&2; exit 2 ;;
    esac
    run_janus "$scen" "${load[@]}"
    run_ours ours "$scen" "${load[@]}"
    rows=(janus ours relay)
    if [ -n "$gro" ]; then
        run_ours ours-gro "$scen" "${load[@]}" --udp-gro
        rows=(janus ours ours-gro relay)
    fi
    # The relay sends each receiver as many datagrams a second as our server forwarded to
    # each subscriber (audio: 50).
    pps=$(sed -n 's/^Steady state: \([0-9]*\) packets forwarded in \([0-9.]*\) s.*/\1 \2/p' \
        "$out/ours-$scen.txt" | awk -v n="$subs" 'NR == 1 && $2 > 0 { r = int($1 / $2 / n + 0.5); print (r > 0 ? r : 1) }')
    pps=${pps:-50}
    # A video frame's packets leave the publisher together (30 frames a second, 15 at low).
    burst=1
    if [ "$size" != 108 ]; then
        fps=30
        [ "$resolution" = low ] && fps=15
        burst=$(awk -v p="$pps" -v f="$fps" 'BEGIN { b = int(p / f + 0.5); print (b < 1 ? 1 : (b > 64 ? 64 : b)) }')
    fi
    run_relay relay "$scen" "$subs" "$size" "$pps" "$burst"
    run_relay floor "$scen" "$subs" "$size" "$pps" "$burst" --segment --seal
    rows+=(floor)
    echo
    echo "== $title, $duration measured"
    for name in "${rows[@]}"; do
        f="$out/$name-$scen.txt"
        if ! grep -q '^Steady state' "$f" 2>/dev/null; then
            echo "$name: the load test failed:"
            tail -5 "$out/$name-$scen.err" "$f" 2>/dev/null | sed 's/^/  /'
        fi
        grep -E '^  join failed' "$f" 2>/dev/null | head -3 || true
    done
    grep -h '^SRTP profile' "$out/janus-$scen.txt" 2>/dev/null | sed 's/^/janus /' || true
    printf '%-7s %12s %12s %12s %8s %9s %9s %9s %12s\n' server "CPU us/pkt" "user us/pkt" \
        "fwd packets" lost loss "p50 ms" "p99 ms" "peak RSS MB"
    summary janus "$out/janus-$scen.txt"
    summary ours "$out/ours-$scen.txt"
    [ -n "$gro" ] && summary ours-gro "$out/ours-gro-$scen.txt"
    summary relay "$out/relay-$scen.txt"
    summary floor "$out/floor-$scen.txt"
    echo "(relay, floor: ${size}-byte datagrams, $pps a second to each of $subs receivers, $burst back to back; floor: each copy sealed, each receiver's copies of a burst in one segmented send)"
    # Loss the load tester's own sockets caused (SO_RXQ_OVFL) is not the server's.
    jd=$(field "$out/janus-$scen.txt" 's/^load tester socket drops: \([0-9]*\)$/\1/p')
    od=$(field "$out/ours-$scen.txt" 's/^load tester socket drops: \([0-9]*\)$/\1/p')
    echo "load tester socket drops: janus ${jd:--}, ours ${od:--}"
    j=$(us_of "$out/janus-$scen.txt")
    o=$(us_of "$out/ours-$scen.txt")
    ju=$(user_of "$out/janus-$scen.txt")
    ou=$(user_of "$out/ours-$scen.txt")
    r=$(us_of "$out/relay-$scen.txt")
    if [ -n "$j" ] && [ -n "$o" ]; then
        awk -v j="$j" -v o="$o" -v ju="$ju" -v ou="$ou" 'BEGIN {
            if (o <= 0) { print "Janus/ours: ours measured 0 CPU (too short a run)"; exit }
            printf "Janus spent %.1fx the CPU per forwarded packet that we did", j / o
            if (ou > 0) printf " (user space alone: %.1fx)", ju / ou
            else printf " (our user time was below /proc'"'"'s 10 ms ticks)"
            printf "\n" }'
    fi
    if [ -n "$j" ] && [ -n "$o" ] && [ -n "$r" ]; then
        awk -v j="$j" -v o="$o" -v r="$r" 'BEGIN {
            if (r > 0)
                printf "The plain relay spent %.2f us per packet: Janus / relay = %.1fx (the most a server sending one datagram per header could save), ours / relay = %.2fx\n", r, j / r, o / r }'
    fi
    fl=$(us_of "$out/floor-$scen.txt")
    if [ -n "$j" ] && [ -n "$o" ] && [ -n "$fl" ]; then
        awk -v j="$j" -v o="$o" -v f="$fl" 'BEGIN {
            if (f > 0)
                printf "The floor (sealing, segmenting relay) spent %.2f us per packet: Janus / floor = %.1fx (the most a server built on these sockets and this SRTP could reach here), ours / floor = %.2fx\n", f, j / f, o / f }'
    fi
    g=""
    [ -n "$gro" ] && g=$(us_of "$out/ours-gro-$scen.txt")
    if [ -n "$g" ] && [ -n "$j" ] && [ -n "$o" ]; then
        awk -v j="$j" -v o="$o" -v g="$g" 'BEGIN {
            if (g > 0)
                printf "With receivers reading runs whole (UDP_GRO): ours %.2f us per packet, %.2fx the plain-receiver figure; Janus / ours-gro = %.1fx (Janus not re-run: it sends no runs)\n", g, g / o, j / g }'
    fi
done
[ -n "$keep" ] && echo "(logs in $out)"
exit 0
