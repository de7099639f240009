#!/usr/bin/env bash
# The whole path under load, against a peer measured in the same run (issue 5).
#
#   benches/compare.sh [PHASE...]      PHASE: peer half group scale all (default: peer half)
#
#   peer   RUNS alternating runs of the same load tool (`shortcode-gw load`) against
#          the node-smpp echo peer (benches/peers/echo-smsc.js: submit_sm -> submit_sm_resp,
#          no work, no disk) and against `shortcode-gw serve` on a fresh redb store of
#          ACCOUNTS demo accounts (a copy of one generated template per run). Prints both
#          medians and the ratio gateway/peer.
#   half   RUNS gateway runs at half the median maximum rate of `peer` (open loop,
#          latency from the scheduled send instant): p99 median.
#   group  RUNS in-process runs with group commit (smpp.batch_max 512) and with one
#          commit, one fsync, per request (batch_max 1): medians and the ratio. Also
#          grouped with checkpoints held off (--checkpoint-mib 4096): the log's group
#          commit alone, for as long as memory holds what the log has not checkpointed.
#   scale  SCALE_ACCOUNTS (10,000,000) generated straight into a store (time), `serve`
#          start-up time on it, and its peak RSS under DURATION seconds of load.
#
# Environment (defaults): RUNS=5 DURATION=10 ACCOUNTS=1000000 CONNECTIONS=4 WINDOW=64
#   SMS_RATIO=0.2 SCALE_ACCOUNTS=10000000 GW_PORT=27750 ECHO_PORT=27760 WORK=(mktemp -d)
#   KEEP=1 keeps WORK (stores, logs, every JSON report).
#   GW_BIN=path runs another build of the gateway (serve, in-process runs) against the same
#   load tool, e.g. a branch with a proposed fix; GW_ENV="K=V ..." sets its environment.
# Everything listens on and targets 127.0.0.1 only. Needs cargo, node + npm, python3.
set -euo pipefail

RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
ACCOUNTS=${ACCOUNTS:-1000000}
CONNECTIONS=${CONNECTIONS:-4}
WINDOW=${WINDOW:-64}
SMS_RATIO=${SMS_RATIO:-0.2}
SCALE_ACCOUNTS=${SCALE_ACCOUNTS:-10000000}
GW_PORT=${GW_PORT:-27750}
ECHO_PORT=${ECHO_PORT:-27760}

root=$(cd "$(dirname "$0")/.." && pwd)
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(peer half)
[ "${phases[*]}" = all ] && phases=(peer half group scale)

work=${WORK:-$(mktemp -d -t shortcode-compare.XXXXXX)}
mkdir -p "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

log() { echo "[compare] $*" >&2; }

log "building (release)"
(cd "$root" && cargo build --release --quiet)
bin=$root/target/release/shortcode-gw
gw_bin=${GW_BIN:-$bin}
read -r -a gw_env <<<"${GW_ENV:-}"
log "installing the node-smpp echo peer"
(cd "$root/benches/peers" && { npm ci --no-audit --no-fund --silent || npm install --no-audit --no-fund --silent; }) >&2

cat >"$work/gw.toml" <<EOF
[listen]
addr = "127.0.0.1:$GW_PORT"
peers = [{ system_id = "demo", password = "demo" }]

[service]
# Subscriber traffic only: no nightly run during a measurement.
nightly_at = "off"

[smpp]
# Room for the load tool's window (also the open-loop runs' 1024): no request is throttled.
window_max = $((WINDOW > 1024 ? WINDOW : 1024))
EOF

machine() {
    echo "nproc $(nproc), $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(date -u +%Y-%m-%dT%H:%MZ)"
}

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.01)
sys.exit(1)
EOF
}

# field JSON_FILE EXPR: a value of a load report (python expression on r).
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }

median() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(round(statistics.median(v), 1) if v else 'n/a')" "$@"; }

stop() { # stop PID: SIGTERM, wait
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

load() { # load OUT.json ARGS...: run the load tool, summary to stderr
    local out=$1
    shift
    "$bin" load --connections "$CONNECTIONS" --window "${LOAD_WINDOW:-$WINDOW}" \
        --sms-ratio "$SMS_RATIO" --subscribers "$ACCOUNTS" "$@" >"$out" 2>"$out.err" ||
        { cat "$out.err" >&2; return 1; }
    tail -1 "$out.err" >&2
}

template() {
    if [ ! -f "$work/template/gateway.redb" ]; then
        log "generating the template store: $ACCOUNTS demo accounts"
        "$bin" --data-dir "$work/template" load --generate "$ACCOUNTS" >"$work/template.json"
        cat "$work/template.json" >&2
    fi
}

echo_run() { # echo_run N
    node "$root/benches/peers/echo-smsc.js" "$ECHO_PORT" >"$work/echo.$1.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_port "$ECHO_PORT" 10 || { log "echo peer did not start"; cat "$work/echo.$1.log" >&2; exit 1; }
    load "$work/echo.$1.json" --addr "127.0.0.1:$ECHO_PORT" --mode echo --duration-s "$DURATION"
    stop "$pid"
}

gw_start() { # gw_start DIR LOG: serve on DIR in the background; sets GW_PID
    env ${gw_env[@]+"${gw_env[@]}"} RUST_LOG=warn "$gw_bin" --data-dir "$1" serve --config "$work/gw.toml" >"$2" 2>&1 &
    GW_PID=$!
    pids+=("$GW_PID")
}

gw_run() { # gw_run N [LOAD ARGS...]
    local n=$1
    shift
    rm -rf "$work/run"
    cp -r "$work/template" "$work/run"
    sync # the copy's dirty pages would otherwise be written back during the run
    gw_start "$work/run" "$work/gw.$n.log"
    local pid=$GW_PID
    wait_port "$GW_PORT" 30 || { log "gateway did not start"; cat "$work/gw.$n.log" >&2; exit 1; }
    load "$work/gw.$n.json" --addr "127.0.0.1:$GW_PORT" --mode gateway --duration-s "$DURATION" "$@"
    stop "$pid"
}

peer_phase() {
    template
    local echo_rps=() gw_rps=() gw_p99=() echo_p99=()
    for n in $(seq 1 "$RUNS"); do
        # Alternate which goes first, so neither always runs on a warmer machine.
        if [ $((n % 2)) -eq 1 ]; then echo_run "$n"; gw_run "$n"; else gw_run "$n"; echo_run "$n"; fi
        for f in "$work/echo.$n.json" "$work/gw.$n.json"; do
            [ "$(field "$f" "r['failed']")" = 0 ] || log "WARNING: failures in $f: $(field "$f" "r['errors']")"
        done
        echo_rps+=("$(field "$work/echo.$n.json" "r['requests_per_s']")")
        echo_p99+=("$(field "$work/echo.$n.json" "r['latency_all']['p99_us']")")
        gw_rps+=("$(field "$work/gw.$n.json" "r['requests_per_s']")")
        gw_p99+=("$(field "$work/gw.$n.json" "r['latency_all']['p99_us']")")
    done
    local e g
    e=$(median "${echo_rps[@]}")
    g=$(median "${gw_rps[@]}")
    GW_MAX=$g
    echo "== peer: $(machine); $RUNS runs x ${DURATION}s, ${CONNECTIONS}x${WINDOW} outstanding, sms_ratio $SMS_RATIO"
    echo "echo peer (node-smpp) req/s: ${echo_rps[*]} -> median $e (p99 us median $(median "${echo_p99[@]}"))"
    echo "gateway (redb, $ACCOUNTS accounts) durable req/s: ${gw_rps[*]} -> median $g (p99 us median $(median "${gw_p99[@]}"))"
    echo "ratio gateway/peer: $(python3 -c "print(round($g / $e, 3))")"
}

half_phase() {
    template
    if [ -z "${GW_MAX:-}" ]; then
        log "measuring the gateway's maximum rate (closed loop)"
        gw_run max
        GW_MAX=$(field "$work/gw.max.json" "r['requests_per_s']")
    fi
    local rate p99s=() p50s=() got=() sched=()
    rate=$(python3 -c "print(round($GW_MAX / 2))")
    for n in $(seq 1 "$RUNS"); do
        LOAD_WINDOW=1024 gw_run "half.$n" --rate "$rate"
        p99s+=("$(field "$work/gw.half.$n.json" "r['latency_all']['p99_us']")")
        p50s+=("$(field "$work/gw.half.$n.json" "r['latency_all']['p50_us']")")
        got+=("$(field "$work/gw.half.$n.json" "r['requests_per_s']")")
        sched+=("$(field "$work/gw.half.$n.json" "r['latency_scheduled']['p99_us']")")
    done
    echo "== half: $(machine); gateway at $rate req/s (half of $GW_MAX), $RUNS runs x ${DURATION}s"
    echo "achieved req/s: ${got[*]}"
    echo "p50 us: ${p50s[*]} -> median $(median "${p50s[@]}")"
    echo "p99 us: ${p99s[*]} -> median $(median "${p99s[@]}")"
    echo "p99 us from the schedule (incl. ~1 ms pacing-timer slack): ${sched[*]} -> median $(median "${sched[@]}")"
}

group_phase() {
    template
    local grouped=() held=() held_rss=() single=() plain=() jpc=()
    for n in $(seq 1 "$RUNS"); do
        # 512: grouped; 512held: grouped, no checkpoint during the run; 1: one
        # log fdatasync per request; 1nolog: one redb transaction + fdatasync
        # per request (no log, no grouping).
        for variant in 512 512held 1 1nolog; do
            local bm=${variant%nolog} extra=()
            bm=${bm%held}
            [ "$variant" = 1nolog ] && extra=(--no-log)
            [ "$variant" = 512held ] && extra=(--checkpoint-mib 4096)
            rm -rf "$work/run"
            cp -r "$work/template" "$work/run"
            sync # the copy's dirty pages would otherwise be written back during the run
            env ${gw_env[@]+"${gw_env[@]}"} "$gw_bin" --data-dir "$work/run" load --in-process --batch-max "$bm" "${extra[@]}" \
                --connections "$CONNECTIONS" --window "$WINDOW" --sms-ratio "$SMS_RATIO" \
                --subscribers "$ACCOUNTS" --duration-s "$DURATION" \
                >"$work/group.$variant.$n.json" 2>"$work/group.$variant.$n.json.err"
            tail -1 "$work/group.$variant.$n.json.err" >&2
        done
        grouped+=("$(field "$work/group.512.$n.json" "r['requests_per_s']")")
        jpc+=("$(field "$work/group.512.$n.json" "r['commits']['jobs_per_commit']")/$(field "$work/group.512.$n.json" "r['commits']['jobs_per_sync']")")
        held+=("$(field "$work/group.512held.$n.json" "r['requests_per_s']")")
        held_rss+=("$(field "$work/group.512held.$n.json" "r.get('peak_rss_mib')")")
        single+=("$(field "$work/group.1.$n.json" "r['requests_per_s']")")
        plain+=("$(field "$work/group.1nolog.$n.json" "r['requests_per_s']")")
    done
    local g s
    g=$(median "${grouped[@]}")
    s=$(median "${single[@]}")
    echo "== group: $(machine); in-process gateway, redb behind the write-ahead log, $ACCOUNTS accounts, $RUNS runs x ${DURATION}s"
    echo "grouped (batch_max 512) req/s: ${grouped[*]} -> median $g (jobs per batch/per fdatasync: ${jpc[*]})"
    echo "one log fdatasync per request (batch_max 1) req/s: ${single[*]} -> median $s"
    local p
    p=$(median "${plain[@]}")
    echo "one redb commit + fdatasync per request (--no-log, batch_max 1) req/s: ${plain[*]} -> median $p"
    echo "ratio grouped/single (log): $(python3 -c "print(round($g / $s, 2))")"
    echo "ratio grouped/single (redb, no log): $(python3 -c "print(round($g / $p, 2))")"
    local h
    h=$(median "${held[@]}")
    echo "grouped, checkpoints held off (--checkpoint-mib 4096) req/s: ${held[*]} -> median $h (peak RSS MiB: ${held_rss[*]})"
    echo "ratio held-off grouped/single (log): $(python3 -c "print(round($h / $s, 2))") (the group commit alone; not sustained)"
}

scale_phase() {
    local dir=$work/scale
    rm -rf "$dir"
    log "generating $SCALE_ACCOUNTS accounts straight into a redb store"
    local g0 g1 t0
    g0=$(date +%s.%N)
    "$bin" --data-dir "$dir" load --generate "$SCALE_ACCOUNTS" >"$work/scale.gen.json"
    g1=$(date +%s.%N)
    cat "$work/scale.gen.json" >&2
    local size
    size=$(du -sh "$dir" | cut -f1)
    t0=$(date +%s.%N)
    gw_start "$dir" "$work/scale.gw.log"
    local pid=$GW_PID
    wait_port "$GW_PORT" 60 || { log "gateway did not start"; cat "$work/scale.gw.log" >&2; exit 1; }
    local t2
    t2=$(date +%s.%N)
    local rss_idle
    rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    # Sample RSS every 0.5 s while the load runs; keep the maximum.
    (peak=0; while kill -0 "$pid" 2>/dev/null; do
        r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$work/scale.rss"
        sleep 0.5; done) &
    local sampler=$!
    ACCOUNTS=$SCALE_ACCOUNTS load "$work/scale.load.json" --addr "127.0.0.1:$GW_PORT" --mode gateway \
        --duration-s "$((DURATION * 3))"
    local hwm
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    stop "$pid"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    echo "== scale: $(machine)"
    echo "generate $SCALE_ACCOUNTS accounts: $(python3 -c "print(round($g1 - $g0, 1))") s wall ($size on disk)"
    echo "serve start-up to listening: $(python3 -c "print(round($t2 - $t0, 2))") s"
    echo "RSS idle after start: $((rss_idle / 1024)) MiB; peak (VmHWM) after $((DURATION * 3)) s of load: $((hwm / 1024)) MiB"
    echo "load on it: $(field "$work/scale.load.json" "r['requests_per_s']") req/s, p99 $(field "$work/scale.load.json" "r['latency_all']['p99_us']") us, failed $(field "$work/scale.load.json" "r['failed']")"
}

for p in "${phases[@]}"; do
    case $p in
    peer) peer_phase ;;
    half) half_phase ;;
    group) group_phase ;;
    scale) scale_phase ;;
    *) log "unknown phase $p (peer half group scale all)"; exit 2 ;;
    esac
done
