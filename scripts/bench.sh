#!/usr/bin/env bash
# Runs the benchmark matrix of the benchmark contract: every workload at concurrency 1 and 50,
# as a wasm component and as the native baseline, each in a fresh data dir, with the disk's
# fsync rate measured just before each run. Writes the JSON lines to bench-results.jsonl and a
# Markdown table to bench-results.md.
#
#   scripts/bench.sh                   # N = 20000 jobs, 100000 sleepers (the contract's sizes)
#   JOBS=5000 SLEEPERS=20000 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-20000}
SLEEPERS=${SLEEPERS:-100000}
DURABILITY=${DURABILITY:-immediate}
OUT_JSON=${OUT_JSON:-bench-results.jsonl}
OUT_MD=${OUT_MD:-bench-results.md}

rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release -p stepwise
BIN=target/release/stepwise
cargo build --release --target wasm32-wasip2 -p example-bench-jobs --target-dir target/guests
COMPONENT=target/guests/wasm32-wasip2/release/example_bench_jobs.wasm

# fsync/s on the filesystem the data dirs live on, over one second.
fsync_rate() {
  python3 - "${TMPDIR:-/tmp}" <<'PY'
import os, sys, time, tempfile
fd, path = tempfile.mkstemp(dir=sys.argv[1])
n, start = 0, time.time()
while time.time() - start < 1.0:
    os.write(fd, b"x" * 512)
    os.fsync(fd)
    n += 1
os.close(fd); os.unlink(path)
print(n)
PY
}

: > "$OUT_JSON"
run() { # workload concurrency jobs [--native]
  local rate line
  rate=$(fsync_rate)
  echo ">> $1 c=$2 n=$3 ${4:-wasm} (fsync/s just before: $rate)" >&2
  line=$("$BIN" bench "$1" --concurrency "$2" --jobs "$3" --durability "$DURABILITY" \
         --component "$COMPONENT" ${4:-})
  echo "$line" | python3 -c 'import json,sys; r=json.load(sys.stdin); r["fsync_per_s_before"]=int(sys.argv[1]); print(json.dumps(r))' "$rate" >> "$OUT_JSON"
}

for c in 1 50; do
  for w in noop steps3 retry10; do
    run "$w" "$c" "$JOBS"
    run "$w" "$c" "$JOBS" --native
  done
  run sleepers "$c" "$SLEEPERS"
  run sleepers "$c" "$SLEEPERS" --native
done
run replay1000 1 1000
run replay1000 1 1000 --native
run instantiate 1 10000
run enqueue_idem 1 "$JOBS"
run noisy 50 2000

python3 - "$OUT_JSON" > "$OUT_MD" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cols = ["workload", "handler", "concurrency", "jobs", "jobs_per_s", "p50_ms", "p99_ms",
        "commits", "rows_per_commit", "fsync_per_s_before", "extra"]
skip = set(cols) | {"system", "durability", "note", "wall_s"}
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    extra = ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
    print("| " + " | ".join(str(r.get(c, "")) if c != "extra" else extra for c in cols) + " |")
PY
cat "$OUT_MD"
