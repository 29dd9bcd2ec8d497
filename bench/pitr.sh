#!/usr/bin/env bash
# PITR benchmark: what point-in-time recovery through pgBackRest achieves, measured with opsbook's
# own drills, beside the logical (pg_dump) path on the same database, in one run.
#
#   bench/pitr.sh                                  # full size: SCALE=50 EVENTS=2000000 RUNS=3
#   SCALE=5 EVENTS=200000 RUNS=2 LOAD_SECONDS=60 DRILLS=3 bench/pitr.sh   # quick check
#
# Part 1, RPO under load: a steady pgbench write load (LOAD_TPS transactions/s for LOAD_SECONDS)
# on the sandbox cluster archiving through pgBackRest with the default archive_timeout (60 s);
# a canary row every CANARY_EVERY seconds (inserted directly: `pitr status --canary`, which the
# shipped pitr-canary runbook runs every 5 min, also switches WAL, which would archive on the
# canaries' clock); and DRILLS drills to `latest` spread over the load, each as if the
# server had died at that moment. The measured RPO of a drill = its start − the newest canary
# it restored; it includes up to CANARY_EVERY of canary spacing, so it is an upper bound on the
# data lost. Reported: median, p95 and max.
#
# Part 2, side by side on the benchmark database (pgbench SCALE + EVENTS rows), RUNS rounds:
#   floor         pg_dump -Fc -Z0 > /dev/null
#   logical       opsbook backup run (zstd:1, local store)
#   physical      opsbook pitr backup --type full (pgBackRest, zst, process-max 2)
#   logical RTO   opsbook restore-drill --ephemeral (download + pg_restore + row counts)
#   PITR RTO      opsbook restore-drill --pitr --target latest (pgbackrest restore + recovery)
# Medians, ratios and peak RSS (/usr/bin/time -v, opsbook and its children).
#
# Environment: SCALE (50), EVENTS (2000000), RUNS (3), LOAD_SECONDS (300), LOAD_TPS (200),
# CANARY_EVERY (10), DRILLS (10), KEEP_WORK=1 (keep bench/.work/pitr-*), RESULTS
# (bench/RESULTS.md), SKIP_BUILD=1 (use target/release/opsbook as it is).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
SCALE=${SCALE:-50}
EVENTS=${EVENTS:-2000000}
RUNS=${RUNS:-3}
LOAD_SECONDS=${LOAD_SECONDS:-300}
LOAD_TPS=${LOAD_TPS:-200}
CANARY_EVERY=${CANARY_EVERY:-10}
DRILLS=${DRILLS:-10}
KEEP_WORK=${KEEP_WORK:-0}
RESULTS=${RESULTS:-$SCRIPT_DIR/RESULTS.md}
[[ $RESULTS == /* ]] || RESULTS=$PWD/$RESULTS
INVOKED="SCALE=$SCALE EVENTS=$EVENTS RUNS=$RUNS LOAD_SECONDS=$LOAD_SECONDS LOAD_TPS=$LOAD_TPS CANARY_EVERY=$CANARY_EVERY DRILLS=$DRILLS bench/pitr.sh"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'pitr.sh: %s\n' "$*" >&2; exit 1; }
for v in SCALE EVENTS RUNS LOAD_SECONDS LOAD_TPS CANARY_EVERY DRILLS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer"
done
((SCALE >= 1 && RUNS >= 1 && DRILLS >= 1 && CANARY_EVERY >= 1)) || die "SCALE, RUNS, DRILLS and CANARY_EVERY must be at least 1"

# ---------------------------------------------------------------- tools
command -v pgbackrest >/dev/null || die "pgBackRest not found: apt-get install -y pgbackrest"
command -v python3 >/dev/null || die "python3 not found"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install -y time"
PGBIN=""
for d in /usr/lib/postgresql/*/bin; do [[ -x $d/pgbench && -x $d/pg_dump && -x $d/psql ]] && PGBIN=$d; done
[[ -n $PGBIN ]] || die "no /usr/lib/postgresql/*/bin with pgbench, pg_dump and psql (apt-get install postgresql postgresql-contrib)"

cd "$ROOT"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building opsbook (release)"
    cargo build --release --bin opsbook >&2 || die "cargo build --release failed"
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x $TARGET_DIR/release/opsbook ]] || die "no $TARGET_DIR/release/opsbook"

# ---------------------------------------------------------------- work dir
mkdir -p "$SCRIPT_DIR/.work"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d "$SCRIPT_DIR/.work/pitr-$STAMP-XXXX")
# The sandbox server, pgBackRest and the drill clusters run as `postgres` when we are root.
chmod 755 "$SCRIPT_DIR/.work" "$WORK"
mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/state" "$WORK/tmp"
chmod 777 "$WORK/tmp"
cp -p "$TARGET_DIR/release/opsbook" "$WORK/bin/"
OPSBOOK=$WORK/bin/opsbook
LOAD_PID=""
cleanup() {
    local rc=$?
    set +e
    [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null
    (cd "$WORK" && "$OPSBOOK" sandbox down >/dev/null 2>&1)
    if ((rc != 0)); then echo "pitr.sh: failed (exit $rc); logs in $WORK/logs" >&2
    elif [[ $KEEP_WORK != 1 ]]; then rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
cd "$WORK"
unset DATABASE_URL OPSBOOK_STORE OPSBOOK_CONFIG OPSBOOK_PROFILE PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD
export OPSBOOK_STATE_DIR=$WORK/state TMPDIR=$WORK/tmp NO_COLOR=1

log "starting the sandbox"
"$OPSBOOK" sandbox up >"$WORK/logs/sandbox.out" 2>&1 || die "sandbox up failed: $(cat "$WORK/logs/sandbox.out")"
set -a; . "$WORK/.opsbook/sandbox/env"; set +a
eval "$(python3 - "$DATABASE_URL" <<'EOF'
import shlex, sys
from urllib.parse import urlsplit, unquote
u = urlsplit(sys.argv[1])
vals = (u.hostname, u.port or 5432, unquote(u.username or "postgres"), unquote(u.password or ""), unquote(u.path.lstrip("/")))
print("export PGHOST=%s PGPORT=%s PGUSER=%s PGPASSWORD=%s PGDATABASE=%s" % tuple(shlex.quote(str(v)) for v in vals))
EOF
)"
[[ $PGHOST == 127.0.0.1 ]] || die "the sandbox is at '$PGHOST', not 127.0.0.1"
psqlq() { "$PGBIN/psql" -XqAt -v ON_ERROR_STOP=1 "$@"; }

log "loading pgbench scale $SCALE and $EVENTS events rows"
"$PGBIN/pgbench" -i -q -s "$SCALE" >"$WORK/logs/pgbench-init.log" 2>&1 || die "pgbench -i failed"
psqlq -v events="$EVENTS" >/dev/null <<'SQL'
CREATE TABLE events (id bigserial PRIMARY KEY, a text NOT NULL, b text NOT NULL, doc jsonb NOT NULL);
INSERT INTO events (a, b, doc)
SELECT md5(random()::text), md5(random()::text),
       jsonb_build_object('user_id', (random() * 1000000)::int, 'at', now() - random() * interval '365 days',
                          'amount', round((random() * 1000)::numeric, 2), 'session', substr(md5(random()::text), 1, 16))
FROM generate_series(1, :events);
VACUUM ANALYZE;
SQL
DB_SIZE=$(psqlq -c "select pg_size_pretty(pg_database_size(current_database()))")

log "pitr setup (restart to turn archiving on)"
"$OPSBOOK" pitr setup --restart --yes >"$WORK/logs/setup.out" 2>&1 || die "pitr setup failed: $(tail -5 "$WORK/logs/setup.out")"

# ---------------------------------------------------------------- part 2: side by side
# run NAME CMD...: one timed run (wall seconds and peak RSS in KiB appended to $WORK/times).
run() {
    local name=$1; shift
    local t0 t1 rss
    sync
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$WORK/rss" "$@" >"$WORK/logs/$name.last" 2>&1 || die "$name failed: $(tail -5 "$WORK/logs/$name.last")"
    t1=$(date +%s.%N)
    rss=$(tail -1 "$WORK/rss")
    echo "$name $(python3 -c "print($t1 - $t0)") $rss" >>"$WORK/times"
}
: >"$WORK/times"
for ((i = 1; i <= RUNS; i++)); do
    log "round $i/$RUNS"
    run floor bash -c "'$PGBIN/pg_dump' -Fc -Z0 > /dev/null"
    run logical "$OPSBOOK" backup run --row-counts estimate
    run physical "$OPSBOOK" pitr backup --type full
    run logical-rto "$OPSBOOK" restore-drill --ephemeral
    "$OPSBOOK" pitr status --canary >/dev/null
    sleep 3
    run pitr-rto "$OPSBOOK" restore-drill --pitr --target latest
done

# ---------------------------------------------------------------- part 1: RPO under load
log "RPO under load: ${LOAD_TPS} tps for ${LOAD_SECONDS}s, a canary every ${CANARY_EVERY}s, $DRILLS drills to latest"
: >"$WORK/rpo"
"$OPSBOOK" pitr status --canary >/dev/null # creates the canary table
HIST0=$(psqlq -c "select count(*) from pgbench_history")
LOAD_T0=$(date +%s)
# The load lasts until the last drill is done (at least LOAD_SECONDS); canaries go on as long.
"$PGBIN/pgbench" -n -c 2 -j 2 -R "$LOAD_TPS" -T 86400 >"$WORK/logs/pgbench-load.log" 2>&1 &
LOAD_PID=$!
# Canary rows without the WAL switch `pitr status --canary` adds: a switch every few seconds
# would archive on the canaries' clock and hide what archive_timeout and the load achieve.
(
    while [[ ! -e $WORK/stop ]]; do
        psqlq -c "INSERT INTO opsbook_pitr_canary DEFAULT VALUES" >/dev/null 2>&1 || true
        sleep "$CANARY_EVERY"
    done
) &
CANARY_PID=$!
GAP=$((LOAD_SECONDS / DRILLS))
for ((i = 1; i <= DRILLS; i++)); do
    # Each drill starts at a random moment of its slot (a drill longer than a slot delays the next).
    sleep "$((GAP / 2 + RANDOM % (GAP / 2 + 1)))"
    "$OPSBOOK" restore-drill --pitr --target latest --output json >"$WORK/logs/drill-$i.json" 2>"$WORK/logs/drill-$i.err" ||
        die "PITR drill $i failed: $(tail -3 "$WORK/logs/drill-$i.err")"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["measured_rpo_seconds"])' "$WORK/logs/drill-$i.json" >>"$WORK/rpo"
done
touch "$WORK/stop"
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
LOAD_PID=""
wait "$CANARY_PID" 2>/dev/null || true
LOAD_ELAPSED=$(($(date +%s) - LOAD_T0))
TPS=$(python3 -c "print(round(($(psqlq -c 'select count(*) from pgbench_history') - $HIST0) / $LOAD_ELAPSED))")

# ---------------------------------------------------------------- summary
SUMMARY=$WORK/summary.md
python3 - "$WORK/times" "$WORK/rpo" >"$SUMMARY" <<EOF
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, secs, rss = line.split()
    rows.setdefault(name, []).append((float(secs), int(rss)))
med = {k: statistics.median(s for s, _ in v) for k, v in rows.items()}
rss = {k: max(r for _, r in v) for k, v in rows.items()}
print("Data: pgbench scale $SCALE + \`events\` $EVENTS rows; database $DB_SIZE. $RUNS runs of each, in turn, in one session.")
print()
print("| command | what | median s | min–max s | peak RSS |")
print("|---|---|---:|---:|---:|")
what = {"floor": "\`pg_dump -Fc -Z0 > /dev/null\`", "logical": "\`opsbook backup run\` (pg_dump + zstd:1 + SHA-256)",
        "physical": "\`opsbook pitr backup --type full\` (pgBackRest)", "logical-rto": "\`restore-drill --ephemeral\` (dump)",
        "pitr-rto": "\`restore-drill --pitr --target latest\`"}
for k in ["floor", "logical", "physical", "logical-rto", "pitr-rto"]:
    s = [x for x, _ in rows[k]]
    print(f"| {k} | {what[k]} | {med[k]:.2f} | {min(s):.2f}–{max(s):.2f} | {rss[k] / 1024:.0f} MiB |")
print()
print(f"- physical full backup vs logical backup: **{med['physical'] / med['logical']:.2f}×**; vs the pg_dump floor: {med['physical'] / med['floor']:.2f}×")
print(f"- PITR restore (RTO) vs the logical drill: **{med['pitr-rto'] / med['logical-rto']:.2f}×**")
rpo = sorted(float(x) for x in open(sys.argv[2]) if x.strip())
p95 = rpo[min(len(rpo) - 1, max(0, round(0.95 * len(rpo)) - 1))]
print(f"- RPO under load ($LOAD_TPS tps requested, $TPS tps achieved over ${LOAD_ELAPSED} s, archive_timeout 60 s, a canary every ${CANARY_EVERY} s), {len(rpo)} drills to latest: "
      f"median **{statistics.median(rpo):.1f} s**, p95 **{p95:.1f} s**, max {rpo[-1]:.1f} s (goal: p95 ≤ 90 s)")
print(f"- measured RPOs: {', '.join(f'{x:.1f}' for x in rpo)}")
EOF
cat "$SUMMARY"
{
    printf '\n## PITR benchmark — %s\n\n' "$(date -u +%Y-%m-%d)"
    printf -- '- date: %s\n- command: `%s`\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$INVOKED"
    printf -- '- machine: %s CPUs, load before the run: %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf -- '- opsbook: %s (git %s)\n- tools: %s, %s\n\n' "$("$OPSBOOK" --version)" "$(git -C "$ROOT" rev-parse --short HEAD)" "$(pgbackrest version)" "$("$PGBIN/pg_dump" --version)"
    cat "$SUMMARY"
} >>"$RESULTS"
log "appended to $RESULTS"
