#!/usr/bin/env bash
# Object copy benchmark: `opsbook backup objects` against `rclone sync`, both copying the same
# bucket between two local S3 servers (examples/s3_server.rs: s3s-fs + SigV4, separate roots and
# keys), first into an empty destination, then again with nothing changed.
#
#   bench/objects.sh                          # OBJECTS=2000 RUNS=3
#   OBJECTS=200 RUNS=1 bench/objects.sh       # quick end-to-end check
#
# Environment:
#   OBJECTS      objects in the source bucket (default 2000), sizes 1 KiB–20 MiB: 85% 1–100 KiB,
#                12% 100 KiB–2 MiB, 3% 2–20 MiB, log-uniform within each band, random bytes
#   RUNS         timed runs per tool and scenario (default 3); medians are reported
#   CONCURRENCY  objects in flight for both tools (opsbook --concurrency, rclone --transfers and
#                --checkers; default 8)
#   SEED         seed of the size distribution (default 1)
#   OPSBOOK_FLAGS extra `backup objects` flags, e.g. "--part-size 32MiB"
#   RCLONE_FLAGS extra rclone flags, e.g. "-vv" to see what it does, or "--size-only"
#   KEEP_WORK=1  keep the work directory (server roots, logs)
#   SERVER_DIR   put both servers' roots under this directory instead, e.g. /dev/shm, so disk
#                writeback on a shared machine does not add noise to either tool's timings
#   SKIP_BUILD=1 use target/release/opsbook and target/fixtures/examples/s3_server as they are
#   RESULTS      Markdown file to append the summary to (default bench/RESULTS.md)
#
# Each run: time -v around the whole command (wall time, peak RSS). "first" runs start from an
# empty destination (and, for opsbook, no inventory and no journal); "no-change" runs follow a
# complete copy. Runs of the two tools alternate so load drift hits both alike.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OBJECTS=${OBJECTS:-2000}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-8}
SEED=${SEED:-1}
KEEP_WORK=${KEEP_WORK:-0}
RESULTS=${RESULTS:-$SCRIPT_DIR/RESULTS.md}
[[ $RESULTS == /* ]] || RESULTS=$PWD/$RESULTS
INVOKED="OBJECTS=$OBJECTS RUNS=$RUNS CONCURRENCY=$CONCURRENCY SEED=$SEED${OPSBOOK_FLAGS:+ OPSBOOK_FLAGS=\"$OPSBOOK_FLAGS\"}${RCLONE_FLAGS:+ RCLONE_FLAGS=\"$RCLONE_FLAGS\"}${SERVER_DIR:+ SERVER_DIR=$SERVER_DIR} bench/objects.sh"

for v in OBJECTS RUNS CONCURRENCY SEED; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "objects.sh: $v must be a non-negative integer" >&2; exit 2; }
done
((OBJECTS >= 1 && RUNS >= 1 && CONCURRENCY >= 1)) || { echo "objects.sh: OBJECTS, RUNS, CONCURRENCY must be ≥ 1" >&2; exit 2; }
command -v rclone >/dev/null || { echo "objects.sh: rclone is missing: apt-get install -y rclone" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "objects.sh: /usr/bin/time is missing: apt-get install -y time" >&2; exit 1; }

log() { printf '\n==> %s\n' "$*" >&2; }

cd "$ROOT"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release --bin opsbook; cargo build --profile fixtures --example s3_server"
    cargo build --release --bin opsbook >&2
    cargo build --profile fixtures --example s3_server >&2
fi
OPSBOOK=$ROOT/target/release/opsbook
S3_SERVER=$ROOT/target/fixtures/examples/s3_server

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$ROOT/bench/.work/objects-$STAMP
mkdir -p "$WORK"
# The servers' roots: in the work directory, or under SERVER_DIR (e.g. /dev/shm).
if [[ -n ${SERVER_DIR:-} ]]; then ROOTS=$SERVER_DIR/opsbook-objects-$STAMP; else ROOTS=$WORK; fi
mkdir -p "$ROOTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ $KEEP_WORK == 1 ]] || rm -rf "$WORK" "$ROOTS"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # NAME -> sets NAME_ENDPOINT, NAME_KEY, NAME_SECRET
    local name=$1 port key secret
    port=$(free_port)
    key="BENCH${name^^}$RANDOM$RANDOM"
    secret=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
    mkdir -p "$ROOTS/$name-root/bench"
    "$S3_SERVER" --root "$ROOTS/$name-root" --addr "127.0.0.1:$port" --access-key "$key" --secret-key "$secret" \
        >"$WORK/$name-server.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        grep -q "listening on" "$WORK/$name-server.log" && break
        sleep 0.1
    done
    grep -q "listening on" "$WORK/$name-server.log" || { echo "objects.sh: the $name S3 server did not start" >&2; exit 1; }
    printf -v "${name^^}_ENDPOINT" '%s' "http://127.0.0.1:$port"
    printf -v "${name^^}_KEY" '%s' "$key"
    printf -v "${name^^}_SECRET" '%s' "$secret"
}

log "starting two S3 servers"
start_server src
start_server dst

log "writing $OBJECTS objects into the source bucket"
python3 - "$ROOTS/src-root/bench/media" "$OBJECTS" "$SEED" "$WORK/source-bytes" <<'PY'
import math, os, random, sys
root, n, seed, total_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(seed)
KIB, MIB = 1024, 1024 * 1024
bands = [(0.85, KIB, 100 * KIB), (0.12, 100 * KIB, 2 * MIB), (0.03, 2 * MIB, 20 * MIB)]
total = 0
for i in range(n):
    r, acc = rng.random(), 0.0
    for share, lo, hi in bands:
        acc += share
        if r <= acc:
            break
    size = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    path = os.path.join(root, f"{['photos', 'receipts', 'pdfs'][i % 3]}/{i // 100:03d}/obj-{i:05d}.bin")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    total += size
print(f"{n} objects, {total} bytes", file=sys.stderr)
with open(total_file, "w") as f:
    f.write(str(total))
PY
SOURCE_BYTES=$(cat "$WORK/source-bytes")

cat >"$WORK/opsbook.toml" <<EOF
[profiles.default.stores.src]
url = "s3://bench/media"
endpoint = "$SRC_ENDPOINT"
region = "us-east-1"
access_key = "$SRC_KEY"
secret_key = "env:BENCH_SRC_SECRET"
path_style = true

[profiles.default.stores.dst]
url = "s3://bench/opsbook"
endpoint = "$DST_ENDPOINT"
region = "us-east-1"
access_key = "$DST_KEY"
secret_key = "env:BENCH_DST_SECRET"
path_style = true
EOF
export BENCH_SRC_SECRET=$SRC_SECRET BENCH_DST_SECRET=$DST_SECRET
# Both endpoints are plain HTTP; rclone 1.60 refuses to start when AWS_CA_BUNDLE is set.
unset AWS_CA_BUNDLE AWS_PROFILE AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
export OPSBOOK_STATE_DIR=$WORK/state
for side in SRC DST; do
    endpoint=${side}_ENDPOINT key=${side}_KEY secret=${side}_SECRET
    export "RCLONE_CONFIG_${side}_TYPE=s3" "RCLONE_CONFIG_${side}_PROVIDER=Other" \
        "RCLONE_CONFIG_${side}_ENDPOINT=${!endpoint}" "RCLONE_CONFIG_${side}_ACCESS_KEY_ID=${!key}" \
        "RCLONE_CONFIG_${side}_SECRET_ACCESS_KEY=${!secret}" "RCLONE_CONFIG_${side}_REGION=us-east-1" \
        "RCLONE_CONFIG_${side}_FORCE_PATH_STYLE=true"
done

OPSBOOK_CMD=("$OPSBOOK" --config "$WORK/opsbook.toml" --output json backup objects --from src --to dst
    --store "$WORK/inventories" --concurrency "$CONCURRENCY" ${OPSBOOK_FLAGS:-})
RCLONE_CMD=(rclone sync src:bench/media dst:bench/rclone --transfers "$CONCURRENCY" --checkers "$CONCURRENCY"
    --config /dev/null ${RCLONE_FLAGS:-})

reset_opsbook() { rm -rf "$ROOTS/dst-root/bench/opsbook" "$WORK/inventories" "$WORK/state"; sync; }
reset_rclone() { rm -rf "$ROOTS/dst-root/bench/rclone"; sync; }

# timed TOOL SCENARIO RUN CMD...: appends "tool scenario run seconds rss_kib" to $WORK/times
timed() {
    local tool=$1 scenario=$2 run=$3
    shift 3
    local out="$WORK/$tool-$scenario-$run"
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$out.time" "$@" >"$out.out" 2>"$out.err" || {
        echo "objects.sh: $tool $scenario run $run failed:" >&2
        tail -20 "$out.err" >&2
        exit 1
    }
    end=$(date +%s.%N)
    local rss
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out.time")
    echo "$tool $scenario $run $(echo "$end - $start" | bc) $rss" >>"$WORK/times"
    log "$tool $scenario run $run: $(echo "$end - $start" | bc) s, peak RSS $rss KiB"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$RUNS"); do
    reset_opsbook
    timed opsbook first "$run" "${OPSBOOK_CMD[@]}"
    timed opsbook no-change "$run" "${OPSBOOK_CMD[@]}"
    reset_rclone
    timed rclone first "$run" "${RCLONE_CMD[@]}"
    timed rclone no-change "$run" "${RCLONE_CMD[@]}"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

log "checking both copies"
for tool in opsbook rclone; do
    count=$(find "$ROOTS/dst-root/bench/$tool" -type f | wc -l)
    bytes=$(find "$ROOTS/dst-root/bench/$tool" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
    [[ $count == "$OBJECTS" && $bytes == "$SOURCE_BYTES" ]] ||
        { echo "objects.sh: $tool's copy has $count objects, $bytes bytes; expected $OBJECTS, $SOURCE_BYTES" >&2; exit 1; }
done
(cd "$ROOTS/src-root/bench/media" && find . -type f -exec sha256sum {} + | sort -k2) >"$WORK/src.sha"
for tool in opsbook rclone; do
    (cd "$ROOTS/dst-root/bench/$tool" && find . -type f -exec sha256sum {} + | sort -k2) | cmp -s - "$WORK/src.sha" ||
        { echo "objects.sh: $tool's copy differs from the source" >&2; exit 1; }
done
copied=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["copied"])' "$WORK/opsbook-no-change-1.out")
[[ $copied == 0 ]] || { echo "objects.sh: opsbook copied $copied objects on a no-change run" >&2; exit 1; }

SUMMARY=$(python3 - "$WORK/times" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def pick(tool, scenario, col):
    return [float(r[col]) for r in rows if r[0] == tool and r[1] == scenario]
out = ["| scenario | opsbook median s | rclone median s | ratio opsbook/rclone | opsbook peak RSS | rclone peak RSS |",
       "|---|---:|---:|---:|---:|---:|"]
for scenario in ["first", "no-change"]:
    o, r = pick("opsbook", scenario, 3), pick("rclone", scenario, 3)
    orss, rrss = max(pick("opsbook", scenario, 4)), max(pick("rclone", scenario, 4))
    mo, mr = statistics.median(o), statistics.median(r)
    label = {"first": "first copy (empty destination)", "no-change": "no-change run"}[scenario]
    out.append(f"| {label} | {mo:.2f} | {mr:.2f} | **{mo / mr:.2f}×** | {orss / 1024:.1f} MiB | {rrss / 1024:.1f} MiB |")
out.append("")
for tool in ["opsbook", "rclone"]:
    for scenario in ["first", "no-change"]:
        out.append(f"- {tool} {scenario}, per run: " + ", ".join(f"{x:.2f}" for x in pick(tool, scenario, 3)))
print("\n".join(out))
PY
)

{
    echo
    echo "## backup objects vs rclone sync ($STAMP)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$INVOKED\`"
    echo "- machine: $(nproc) CPUs, kernel $(uname -r); load average (1/5/15) at the start $LOAD_START, at the end $LOAD_END — other work on the machine skews timings"
    echo "- opsbook: $("$OPSBOOK" --version), release build; rclone: $(rclone version | head -1)"
    echo "- data: $OBJECTS objects, $SOURCE_BYTES bytes ($(echo "scale=1; $SOURCE_BYTES / 1048576" | bc) MiB) of random bytes, 1 KiB–20 MiB (85% 1–100 KiB, 12% 100 KiB–2 MiB, 3% 2–20 MiB), seed $SEED"
    echo "- servers: two \`examples/s3_server\` processes (s3s-fs + SigV4) on 127.0.0.1, separate roots ($([[ -n ${SERVER_DIR:-} ]] && echo "under $SERVER_DIR" || echo "on disk, in the work directory")) and keys; both tools read from one and write to the other"
    echo "- opsbook: \`backup objects --from src --to dst --concurrency $CONCURRENCY${OPSBOOK_FLAGS:+ $OPSBOOK_FLAGS}\` (stores from opsbook.toml; default 8 MiB parts; SHA-256 of every object; inventory to a local directory)"
    echo "- rclone: \`rclone sync src:bench/media dst:bench/rclone --transfers $CONCURRENCY --checkers $CONCURRENCY${RCLONE_FLAGS:+ $RCLONE_FLAGS}\` (defaults otherwise: size + modification time)"
    echo "- $RUNS runs per tool and scenario, alternating; time: wall clock of the whole command; peak RSS: \`/usr/bin/time -v\` maximum resident set size (max over runs)"
    echo "- both copies checked after the runs: object count, bytes and SHA-256 of every object equal the source; opsbook's no-change run copied 0 objects"
    echo
    echo "$SUMMARY"
} | tee -a "$RESULTS"
