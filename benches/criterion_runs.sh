#!/usr/bin/env bash
# Run criterion benches RUNS times and print, per benchmark, the median over
# the runs of criterion's own median estimate (ns per iteration) and the
# throughput it implies (elements/s) — the figures of benches/RESULTS.md.
#
#   benches/criterion_runs.sh [BENCH...]     BENCH: pdu ussd engine store (default: all)
#
# Environment: RUNS=5, CRITERION_ARGS (extra args after `--`, e.g.
# "--warm-up-time 1 --measurement-time 3"); SHORTCODE_BENCH_ACCOUNTS for store.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(pdu ussd engine store)
read -r -a extra <<<"${CRITERION_ARGS:-}"
out=$(mktemp -d -t criterion-runs.XXXXXX)
trap 'rm -rf "$out"' EXIT

echo "nproc $(nproc), $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(date -u +%Y-%m-%dT%H:%MZ), $RUNS runs"
for b in "${benches[@]}"; do
    for n in $(seq 1 "$RUNS"); do
        echo "[criterion_runs] $b run $n/$RUNS" >&2
        (cd "$root" && cargo bench --quiet --bench "$b" -- ${extra[@]+"${extra[@]}"} >/dev/null 2>&1)
        # Snapshot every estimate this run wrote.
        python3 - "$root/target/criterion" "$out/$b.$n.json" <<'EOF'
import json, os, sys
root, dest = sys.argv[1], sys.argv[2]
found = {}
for dirpath, _, files in os.walk(root):
    if dirpath.endswith(os.sep + "new") and "estimates.json" in files and "benchmark.json" in files:
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        tp = bench.get("throughput") or {}
        elems = tp.get("Elements") or tp.get("Bytes") or 1
        found[bench["full_id"]] = {
            "median_ns": est["median"]["point_estimate"],
            "elements": elems,
            "mtime": os.path.getmtime(os.path.join(dirpath, "estimates.json")),
        }
json.dump(found, open(dest, "w"))
EOF
    done
    python3 - "$out" "$b" "$RUNS" <<'EOF'
import json, statistics, sys
out, b, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
snaps = [json.load(open(f"{out}/{b}.{n}.json")) for n in range(1, runs + 1)]
last = snaps[-1]
# Benchmarks this bench target wrote in its last run (newest files).
newest = max(v["mtime"] for v in last.values())
ids = sorted(k for k, v in last.items() if v["mtime"] >= newest - 3600 and all(k in s for s in snaps)
             and len({s[k]["mtime"] for s in snaps}) == runs)
print(f"\n{b}: benchmark | median ns/iter over {runs} runs | elements/iter | elements/s | runs (ns)")
for k in ids:
    vals = [s[k]["median_ns"] for s in snaps]
    med = statistics.median(vals)
    el = last[k]["elements"]
    print(f"{k} | {med:,.0f} | {el} | {el / med * 1e9:,.0f} | {' '.join(f'{v:,.0f}' for v in vals)}")
EOF
done
