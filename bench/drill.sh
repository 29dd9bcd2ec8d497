#!/usr/bin/env bash
# Restore-drill benchmark: the restore phase of `opsbook restore-drill` (download + decompress +
# pg_restore of a backup from a local directory store) against stock `pg_restore -j2` of a
# `pg_dump -Fc -Z0` file of the same database, both into the same throwaway Postgres sandbox on
# 127.0.0.1, in one hyperfine session.
#
#   bench/drill.sh                          # full size: SCALE=50 RUNS=3
#   SCALE=2 RUNS=2 bench/drill.sh           # quick end-to-end check
#   SKIP_BUILD=1 bench/drill.sh             # rerun with target/release/opsbook as it is
#
# Environment:
#   SCALE       pgbench scale factor (default 50, ~750 MB of pgbench tables)
#   RUNS        hyperfine runs per command (default 3)
#   KEEP_WORK=1 keep the run's work directory (sandbox, store, dump, reports) instead of deleting it
#   RESULTS     Markdown file to append the summary to (default bench/RESULTS.md)
#   SKIP_BUILD=1 use target/release/opsbook as it is (no cargo build)
#   WAIT_OTHERS  1 (default): before loading data and before timing, wait until no `hyperfine` and
#               no `bench/migrate.sh` process of someone else runs (polled every WAIT_POLL s,
#               default 10), so two benchmarks on a small machine do not distort each other; 0 = off
#
# Needs: hyperfine, python3, /usr/bin/time (GNU time; installed with apt-get when missing), the
# PostgreSQL binaries in /usr/lib/postgresql/*/bin (pgbench, pg_dump, pg_restore, psql; the
# highest version there) and the server binaries `opsbook sandbox up` uses.
#
# Setup (not timed): `opsbook sandbox up` in a fresh work directory (its env file gives
# DATABASE_URL and OPSBOOK_STORE, a local directory store), `pgbench -i -s SCALE` into the
# sandbox database, `opsbook backup run --set bench` (default zstd), and once
# `pg_dump -Fc -Z0 -f WORK/base.dump` of the same database.
#
# Compared (hyperfine --runs RUNS; every --prepare drops bench_restore, CHECKPOINTs and syncs, not timed):
#   pg_restore -j2     pg_restore -j2 --no-owner --no-privileges --exit-on-error -d <bench_restore>
#                      WORK/base.dump  (--prepare also creates bench_restore; password in PGPASSWORD)
#   opsbook --jobs 1   opsbook restore-drill --store $OPSBOOK_STORE --set bench --target-url <admin
#                      URL> --output json --jobs 1   (streams the archive into one pg_restore)
#   opsbook --jobs 2   … --jobs 2   (spools the decoded archive to a file, then pg_restore -j2)
# The restore phase of a drill comes from its JSON report: --jobs 1: the "restore" step (it spans
# from the start of the download to pg_restore's exit; the two overlap); --jobs 2: "download" +
# "restore". pg_restore -j2's restore phase is its hyperfine wall time. The whole drill (select,
# scratch database, restore, row counts, cleanup, drill record) is hyperfine's wall time.
# Peak RSS: one extra run of each under /usr/bin/time -v.
#
# Output: a Markdown summary on stdout, appended to bench/RESULTS.md with the command line, date
# and machine. Raw hyperfine JSON and the drill reports are kept in bench/.work/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SCALE=${SCALE:-50}
RUNS=${RUNS:-3}
KEEP_WORK=${KEEP_WORK:-0}
WAIT_OTHERS=${WAIT_OTHERS:-1}
WAIT_POLL=${WAIT_POLL:-10}
RESULTS=${RESULTS:-$SCRIPT_DIR/RESULTS.md}
[[ $RESULTS == /* ]] || RESULTS=$PWD/$RESULTS # the script changes directory later
INVOKED="SCALE=$SCALE RUNS=$RUNS${SKIP_BUILD:+ SKIP_BUILD=$SKIP_BUILD}$([[ $KEEP_WORK == 1 ]] && echo ' KEEP_WORK=1') bench/drill.sh${*:+ $*}"
RESTORE_DB=bench_restore
TARGET_RATIO=1.15

for v in SCALE RUNS WAIT_POLL; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "drill.sh: $v must be a positive integer" >&2; exit 2; }
done

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'drill.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- other benchmarks
# True when $1 is this script or one of its descendants.
is_mine() {
    local p=$1 ppid
    while [[ -n $p && $p != 0 && $p != 1 ]]; do
        [[ $p == "$$" ]] && return 0
        ppid=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null) || return 1
        p=$ppid
    done
    return 1
}
# PIDs of hyperfine and bench/migrate.sh processes that are not ours (the brackets keep the
# pattern from matching a command line that merely contains it).
foreign_bench_pids() {
    local pid
    for pid in $(pgrep -f '[h]yperfine|[b]ench/migrate\.sh' || true); do
        is_mine "$pid" || echo "$pid"
    done
}
wait_for_quiet() { # $1 = what we are about to do
    [[ $WAIT_OTHERS == 1 ]] || return 0
    local pids waited=0
    while pids=$(foreign_bench_pids) && [[ -n $pids ]]; do
        if ((waited == 0)); then
            log "before $1: waiting for other benchmarks to finish (polling every ${WAIT_POLL}s):"
            # shellcheck disable=SC2086
            ps -o pid=,args= -p "$(echo $pids | tr ' ' ,)" 2>/dev/null | cut -c1-160 >&2 || true
        fi
        sleep "$WAIT_POLL"
        waited=$((waited + WAIT_POLL))
    done
    ((waited == 0)) || log "no other benchmark running any more (waited ~${waited}s)"
}

# ---------------------------------------------------------------- tools
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "checking tools"
command -v hyperfine >/dev/null || die "hyperfine not found; install it with: apt-get install hyperfine (or: cargo install --locked hyperfine)"
command -v python3 >/dev/null || die "python3 not found (apt-get install python3)"
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time for the peak RSS measurements"
    command -v apt-get >/dev/null || die "/usr/bin/time is missing and there is no apt-get to install it"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >&2 || die "apt-get install time failed"
    [[ -x /usr/bin/time ]] || die "/usr/bin/time still missing after apt-get install time"
fi
find_pgbin() { # the highest /usr/lib/postgresql/N/bin holding every client tool we need
    local d best="" best_major=0 major
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/pgbench && -x $d/pg_dump && -x $d/pg_restore && -x $d/psql ]] || continue
        major=$(basename "$(dirname "$d")")
        [[ $major =~ ^[0-9]+$ ]] || continue
        if ((major > best_major)); then best=$d; best_major=$major; fi
    done
    [[ -n $best ]] || return 1
    echo "$best"
}
PGBIN=$(find_pgbin) || die "no /usr/lib/postgresql/*/bin with pgbench, pg_dump, pg_restore and psql (apt-get install postgresql postgresql-contrib)"
PGBENCH=$PGBIN/pgbench PG_DUMP=$PGBIN/pg_dump PG_RESTORE=$PGBIN/pg_restore PSQL=$PGBIN/psql

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    log "SKIP_BUILD=1: using the release binary as it is"
else
    log "building opsbook (release)"
    mkdir -p "$SCRIPT_DIR/.work"
    CARGO_LOG=$SCRIPT_DIR/.work/cargo-drill.log
    # cargo waits by itself while another build holds the target directory's lock.
    cargo build --release --bin opsbook >"$CARGO_LOG" 2>&1 || { tail -n 40 "$CARGO_LOG" >&2; die "cargo build --release --bin opsbook failed"; }
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OPSBOOK=$TARGET_DIR/release/opsbook
[[ -x $OPSBOOK ]] || die "built binary not found: $OPSBOOK"
"$OPSBOOK" restore-drill --help 2>/dev/null | grep -q -- '--jobs' || die "$OPSBOOK has no 'restore-drill --jobs': rebuild it (run without SKIP_BUILD=1)"

# ---------------------------------------------------------------- work dir, cleanup
WORK_BASE=$SCRIPT_DIR/.work
mkdir -p "$WORK_BASE"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d "$WORK_BASE/drill-$STAMP-XXXX")
# The sandbox's server runs as the `postgres` OS user when we are root: it must reach its dir.
chmod 755 "$WORK_BASE" "$WORK"
mkdir -p "$WORK/logs" "$WORK/state" "$WORK/bin" "$WORK/reports"
# The target directory is shared: copy the binary so a rebuild elsewhere cannot swap it mid-run.
cp -p "$OPSBOOK" "$WORK/bin/"
OPSBOOK=$WORK/bin/opsbook
export OPSBOOK
SANDBOX_UP=0
MONITOR_PID=""
cleanup() {
    local rc=$?
    set +e
    if [[ -n $MONITOR_PID ]]; then kill "$MONITOR_PID" 2>/dev/null; wait "$MONITOR_PID" 2>/dev/null; fi
    if ((SANDBOX_UP)); then (cd "$WORK" && "$OPSBOOK" sandbox down >/dev/null 2>&1) || echo "drill.sh: sandbox down failed; remove $WORK/.opsbook/sandbox by hand" >&2; fi
    if ((rc != 0)); then
        echo "drill.sh: failed (exit $rc); logs in $WORK/logs" >&2
    elif [[ $KEEP_WORK == 1 ]]; then
        echo "drill.sh: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$WORK" # a fresh directory: no stray opsbook.toml from the caller's cwd; the sandbox goes to .opsbook/sandbox

# The tools see only what we set here.
unset DATABASE_URL OPSBOOK_STORE OPSBOOK_CONFIG OPSBOOK_PROFILE OPSBOOK_NOTIFY_URL OPSBOOK_METRICS_FILE \
    OPSBOOK_SANDBOX_DIR OPSBOOK_AGE_IDENTITY AWS_PROFILE AWS_ENDPOINT_URL S3_ENDPOINT R2_ENDPOINT \
    PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGSSLMODE PGOPTIONS
export OPSBOOK_STATE_DIR=$WORK/state
export NO_COLOR=1

# ---------------------------------------------------------------- Postgres sandbox
wait_for_quiet "starting the sandbox and loading data"
log "starting the Postgres sandbox in $WORK/.opsbook/sandbox"
SANDBOX_UP=1
"$OPSBOOK" sandbox up >"$WORK/logs/sandbox.out" 2>"$WORK/logs/sandbox.err" ||
    die "opsbook sandbox up failed: $(cat "$WORK/logs/sandbox.err")"
[[ -f $WORK/.opsbook/sandbox/env ]] || die "no $WORK/.opsbook/sandbox/env after sandbox up: $(cat "$WORK/logs/sandbox.out")"
set -a
# shellcheck disable=SC1091
. "$WORK/.opsbook/sandbox/env"
set +a
[[ -n ${DATABASE_URL:-} && -n ${OPSBOOK_STORE:-} ]] || die "the sandbox env file has no DATABASE_URL or OPSBOOK_STORE"
[[ -d $OPSBOOK_STORE ]] || die "OPSBOOK_STORE=$OPSBOOK_STORE is not a local directory"
# libpq variables for psql, pgbench, pg_dump and pg_restore (password in PGPASSWORD, never argv);
# ADMIN_URL (database postgres, with the throwaway sandbox password) for opsbook --target-url;
# RESTORE_URL (no password) for pg_restore -d.
(
    umask 077
    python3 - "$DATABASE_URL" "$RESTORE_DB" >"$WORK/pgenv" <<'EOF'
import shlex, sys
from urllib.parse import urlsplit, urlunsplit, unquote, quote
u = urlsplit(sys.argv[1])
host, port = u.hostname or "", u.port or 5432
user, password = unquote(u.username or "postgres"), unquote(u.password or "")
db = unquote(u.path.lstrip("/")) or "postgres"
q = shlex.quote
print("export PGHOST=%s PGPORT=%s PGUSER=%s PGPASSWORD=%s PGDATABASE=%s" % tuple(q(str(v)) for v in (host, port, user, password, db)))
print("ADMIN_URL=%s" % q(urlunsplit(u._replace(path="/postgres"))))
netloc = "%s@%s:%s" % (quote(user, safe=""), host, port)
print("RESTORE_URL=%s" % q(urlunsplit((u.scheme, netloc, "/" + sys.argv[2], "", ""))))
EOF
)
# shellcheck disable=SC1091
. "$WORK/pgenv"
[[ $PGHOST == 127.0.0.1 ]] || die "the sandbox is at '$PGHOST', not 127.0.0.1: refusing to benchmark anywhere else"
export ADMIN_URL RESTORE_URL PG_RESTORE PSQL
pgq() { "$PSQL" -XqAt -v ON_ERROR_STOP=1 "$@"; }
pgq -c 'select 1' >/dev/null || die "cannot connect to the sandbox ($PGHOST:$PGPORT/$PGDATABASE)"
SERVER_VERSION=$(pgq -c 'show server_version')
SANDBOX_SETTINGS=$(pgq -c "select string_agg(name || '=' || setting || coalesce(unit, ''), ', ' order by name) from pg_settings where name in ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'maintenance_work_mem', 'full_page_writes')")

# The hyperfine --prepare steps (not timed): drop the target, optionally recreate it, CHECKPOINT
# and sync, so one run's dirty buffers and page cache (the sandbox runs with fsync=off) are not
# written back during the next.
cat >"$WORK/bin/prepare" <<EOF
#!/usr/bin/env bash
# prepare [create]: drops $RESTORE_DB (and leftover drill databases), recreates it with 'create', CHECKPOINT, sync.
set -euo pipefail
. $(printf %q "$WORK/pgenv")
export PGOPTIONS='-c client_min_messages=warning'
psql=$(printf %q "$PSQL")
\$psql -XqAt -v ON_ERROR_STOP=1 -d postgres -c 'DROP DATABASE IF EXISTS $RESTORE_DB WITH (FORCE)' >/dev/null
for db in \$(\$psql -XqAt -d postgres -c "select datname from pg_database where datname like 'opsbook\\_drill\\_%'"); do
    \$psql -XqAt -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS \"\$db\" WITH (FORCE)" >/dev/null
done
if [[ \${1:-} == create ]]; then \$psql -XqAt -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE $RESTORE_DB' >/dev/null; fi
\$psql -XqAt -v ON_ERROR_STOP=1 -d postgres -c CHECKPOINT >/dev/null
sync
EOF
chmod 700 "$WORK/bin/prepare"
PREPARE=$WORK/bin/prepare

pretty_bytes() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }

# ---------------------------------------------------------------- data, backup, baseline dump
log "loading data: pgbench -i -s $SCALE"
t0=$SECONDS
"$PGBENCH" -i -q -s "$SCALE" >"$WORK/logs/pgbench.log" 2>&1 || die "pgbench -i failed: $(tail -n 20 "$WORK/logs/pgbench.log")"
pgq -c 'VACUUM ANALYZE' >/dev/null
DB_BYTES=$(pgq -c 'select pg_database_size(current_database())')
log "loaded in $((SECONDS - t0)) s; database $PGDATABASE: $(pretty_bytes "$DB_BYTES")"

# opsbook gets only the URL and store from the sandbox env file, no libpq variables.
OPSENV="env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD"
log "opsbook backup run --set bench (store $OPSBOOK_STORE)"
$OPSENV "$OPSBOOK" backup run --set bench --output json >"$WORK/backup.json" 2>"$WORK/logs/backup.stderr" ||
    { tail -n 30 "$WORK/backup.json" "$WORK/logs/backup.stderr" >&2; die "opsbook backup run failed"; }

log "baseline dump: pg_dump -Fc -Z0 -f $WORK/base.dump (not timed)"
"$PG_DUMP" -Fc -Z0 -f "$WORK/base.dump" 2>"$WORK/logs/pg_dump.stderr" || die "pg_dump failed: $(cat "$WORK/logs/pg_dump.stderr")"
BASE_BYTES=$(stat -c %s "$WORK/base.dump")
log "base.dump: $(pretty_bytes "$BASE_BYTES")"

# ---------------------------------------------------------------- timed runs
wait_for_quiet "timing"
# Watch for other benchmarks starting while we time, and for compiler processes (cargo build or
# test elsewhere) — reported, not prevented.
: >"$WORK/logs/interference.log"
: >"$WORK/logs/compilers.log"
(
    trap - EXIT INT TERM
    while sleep "$WAIT_POLL"; do
        for pid in $(foreign_bench_pids); do
            echo "$(date -u +%H:%M:%S) $(ps -o args= -p "$pid" 2>/dev/null | cut -c1-120)"
        done >>"$WORK/logs/interference.log"
        n=$(pgrep -c -x 'rustc|rust-lld|cc|ld|cargo' 2>/dev/null || true)
        if ((n > 0)); then echo "$(date -u +%H:%M:%S) $n compiler/cargo processes, load $(cut -d' ' -f1 /proc/loadavg)" >>"$WORK/logs/compilers.log"; fi
    done
) &
MONITOR_PID=$!

HF_JSON=$WORK_BASE/hyperfine-drill-$STAMP.json
L=$(printf %q "$WORK/logs")
R=$(printf %q "$WORK/reports")
P=$(printf %q "$PREPARE")
DRILL="$OPSENV \"\$OPSBOOK\" restore-drill --store \"\$OPSBOOK_STORE\" --set bench --target-url \"\$ADMIN_URL\" --output json"
BASELINE="\"\$PG_RESTORE\" -j2 --no-owner --no-privileges --exit-on-error -d \"\$RESTORE_URL\" $(printf %q "$WORK/base.dump")"
log "hyperfine: $RUNS runs per command"
LOAD_TIMED=$(cut -d' ' -f1-3 /proc/loadavg)
# Each drill writes its own report (named by the run's start time, so they sort by run).
if ! hyperfine --shell=bash --runs "$RUNS" --export-json "$HF_JSON" --style basic \
    --prepare "$P create" --prepare "$P" --prepare "$P" \
    -n "pg_restore -j2" "$BASELINE 2>>$L/pg_restore.stderr" \
    -n "opsbook --jobs 1" "$DRILL --jobs 1 >$R/jobs1-\$(date +%s%N).json 2>>$L/drill-jobs1.stderr" \
    -n "opsbook --jobs 2" "$DRILL --jobs 2 >$R/jobs2-\$(date +%s%N).json 2>>$L/drill-jobs2.stderr" >&2; then
    for f in "$WORK"/logs/*.stderr "$WORK"/reports/*.json; do
        if [[ -s $f ]]; then echo "--- $f" >&2; tail -n 20 "$f" >&2; fi
    done
    die "hyperfine failed"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- peak RSS
# One extra run of a command under /usr/bin/time -v. Sets RSS_KIB (Maximum resident set size: the
# larger of the process and its biggest reaped descendant) and OWN_KIB (VmHWM of the top process
# itself, sampled every 0.1 s until it exits; may miss a peak in its last 0.1 s).
rss_run() { # $1 = label, $2 = stdout file, rest = command
    local label=$1 out=$2 tlog=$WORK/logs/time-$1.log tpid cpid hwm
    shift 2
    OWN_KIB=0
    /usr/bin/time -v -o "$tlog" "$@" >"$out" 2>>"$WORK/logs/rss-$label.stderr" &
    tpid=$!
    cpid=""
    while kill -0 "$tpid" 2>/dev/null; do
        [[ -n $cpid ]] || cpid=$(pgrep -P "$tpid" | head -n1 || true)
        if [[ -n $cpid ]]; then
            hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$cpid/status" 2>/dev/null || true)
            if [[ -n $hwm ]] && ((hwm > OWN_KIB)); then OWN_KIB=$hwm; fi
        fi
        sleep 0.1
    done
    wait "$tpid" || { tail -n 20 "$out" "$WORK/logs/rss-$label.stderr" "$tlog" >&2; die "$label failed under /usr/bin/time"; }
    RSS_KIB=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tlog")
    [[ -n $RSS_KIB ]] || die "no Maximum resident set size in $tlog"
}
log "peak RSS: one more run of each under /usr/bin/time -v"
"$PREPARE" create
rss_run pg_restore "$WORK/logs/rss-pg_restore.out" "$PG_RESTORE" -j2 --no-owner --no-privileges --exit-on-error -d "$RESTORE_URL" "$WORK/base.dump"
RSS_BASE=$RSS_KIB OWN_BASE=$OWN_KIB
"$PREPARE"
rss_run jobs1 "$WORK/rss-jobs1.json" $OPSENV "$OPSBOOK" restore-drill --store "$OPSBOOK_STORE" --set bench --target-url "$ADMIN_URL" --output json --jobs 1
RSS_J1=$RSS_KIB OWN_J1=$OWN_KIB
"$PREPARE"
rss_run jobs2 "$WORK/rss-jobs2.json" $OPSENV "$OPSBOOK" restore-drill --store "$OPSBOOK_STORE" --set bench --target-url "$ADMIN_URL" --output json --jobs 2
RSS_J2=$RSS_KIB OWN_J2=$OWN_KIB
"$PREPARE"
kill "$MONITOR_PID" 2>/dev/null || true
wait "$MONITOR_PID" 2>/dev/null || true
MONITOR_PID=""

mkdir -p "$WORK_BASE/drill-reports-$STAMP"
cp "$WORK"/reports/*.json "$WORK/rss-jobs1.json" "$WORK/rss-jobs2.json" "$WORK/backup.json" "$WORK_BASE/drill-reports-$STAMP/"

# ---------------------------------------------------------------- summary
summary=$WORK/summary.md
HF_JSON=$HF_JSON REPORTS=$WORK/reports BACKUP=$WORK/backup.json RUNS=$RUNS SCALE=$SCALE DB_BYTES=$DB_BYTES \
    BASE_BYTES=$BASE_BYTES RSS_BASE=$RSS_BASE OWN_BASE=$OWN_BASE RSS_J1=$RSS_J1 OWN_J1=$OWN_J1 RSS_J2=$RSS_J2 \
    OWN_J2=$OWN_J2 TARGET_RATIO=$TARGET_RATIO INTERFERENCE=$WORK/logs/interference.log COMPILERS=$WORK/logs/compilers.log POLL=$WAIT_POLL \
    HF_NAME="bench/.work/$(basename "$HF_JSON")" REPORTS_NAME="bench/.work/drill-reports-$STAMP/" python3 >"$summary" <<'EOF'
import glob, json, os, statistics, sys
e = os.environ
runs = int(e["RUNS"])
hf = {r["command"]: r for r in json.load(open(e["HF_JSON"]))["results"]}

def step(report, name):
    s = [x for x in report["steps"] if x["name"] == name]
    if not s:
        sys.exit(f"drill.sh: no '{name}' step in a drill report")
    return s[0]

def reports(prefix, mode):
    out = []
    for path in sorted(glob.glob(os.path.join(e["REPORTS"], prefix + "-*.json"))):
        r = json.load(open(path))
        if not r.get("ok") or r.get("restore_mode") != mode:
            sys.exit(f"drill.sh: {path}: ok={r.get('ok')}, restore_mode={r.get('restore_mode')!r} (want ok, {mode!r})")
        for name in ("download", "restore", "rto"):
            if step(r, name)["outcome"] != "passed":
                sys.exit(f"drill.sh: {path}: step {name} did not pass: {step(r, name)['detail']}")
        out.append(r)
    if len(out) != runs:
        sys.exit(f"drill.sh: {len(out)} drill reports for {prefix}, expected {runs}")
    return out

j1, j2 = reports("jobs1", "stream"), reports("jobs2", "spool -j 2")
phase = {
    "pg_restore -j2": hf["pg_restore -j2"]["times"],
    "opsbook --jobs 1": [step(r, "restore")["seconds"] for r in j1],
    "opsbook --jobs 2": [step(r, "download")["seconds"] + step(r, "restore")["seconds"] for r in j2],
}
med = {k: statistics.median(v) for k, v in phase.items()}
base = med["pg_restore -j2"]
rss = {"pg_restore -j2": (e["RSS_BASE"], e["OWN_BASE"]), "opsbook --jobs 1": (e["RSS_J1"], e["OWN_J1"]),
       "opsbook --jobs 2": (e["RSS_J2"], e["OWN_J2"])}
def mib(kib): return f"{int(kib) / 1024:.1f} MiB"
def size(n): return f"{n / 2**20:,.1f} MiB"

backup = json.load(open(e["BACKUP"]))["backup"]
data = [o for o in backup["objects"] if o["role"] == "data"][0]
c = backup.get("compression") or {}
comp = f"{c.get('algorithm', '?')}:{c['level']}" if "level" in c else c.get("algorithm", "?")
print(f"Data: pgbench scale {e['SCALE']} (+ the sandbox's small `shop` example schema) in one database of "
      f"{size(int(e['DB_BYTES']))}. `opsbook backup run --set bench` (local directory store, default "
      f"compression {comp}): archive {size(data['size'])} of {size(data['raw_size'])} raw "
      f"pg_dump output; baseline `pg_dump -Fc -Z0` file {size(int(e['BASE_BYTES']))}. {runs} runs per command in one "
      f"hyperfine session; each run restores into a fresh database of the same sandbox server "
      f"(hyperfine --prepare drops it, CHECKPOINTs and syncs, not timed).")
print()
print("Restore phase (seconds): pg_restore -j2 = its wall time; opsbook --jobs 1 (stream) = the report's "
      "\"restore\" step (download and restore overlap; it spans from the start of the download to pg_restore's exit); "
      "opsbook --jobs 2 (spool) = \"download\" (read + SHA-256 + zstd decode to a spool file) + \"restore\" "
      "(pg_restore -j2 of the spool file).")
print()
print("| variant | restore phase median s | min s | max s | ratio vs pg_restore -j2 | whole command median s (hyperfine) | peak RSS (time -v) | peak RSS, top process only |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, label in (("pg_restore -j2", "`pg_restore -j2` of a local -Z0 file (baseline)"),
                    ("opsbook --jobs 1", "`opsbook restore-drill --jobs 1` (stream)"),
                    ("opsbook --jobs 2", "`opsbook restore-drill --jobs 2` (spool)")):
    v = phase[name]
    ratio = "1.00× (baseline)" if name == "pg_restore -j2" else f"**{med[name] / base:.2f}×**"
    print(f"| {label} | {med[name]:.2f} | {min(v):.2f} | {max(v):.2f} | {ratio} | {hf[name]['median']:.2f} | "
          f"{mib(rss[name][0])} | {mib(rss[name][1])} |")
print()
def col(rs, name): return ", ".join(f"{step(r, name)['seconds']:.2f}" for r in rs)
print("Per run (in run order), from the drill reports:")
print()
print(f"- pg_restore -j2 wall: {', '.join(f'{t:.2f}' for t in phase['pg_restore -j2'])}")
print(f"- --jobs 1: restore (incl. download) {col(j1, 'restore')}; download {col(j1, 'download')}; rto {col(j1, 'rto')}")
print(f"- --jobs 2: download {col(j2, 'download')}; restore {col(j2, 'restore')}; rto {col(j2, 'rto')}")
print(f"- whole drill (hyperfine): --jobs 1 {', '.join(f'{t:.2f}' for t in hf['opsbook --jobs 1']['times'])}; "
      f"--jobs 2 {', '.join(f'{t:.2f}' for t in hf['opsbook --jobs 2']['times'])}")
print()
best = min(("opsbook --jobs 1", "opsbook --jobs 2"), key=lambda k: med[k])
other = "opsbook --jobs 2" if best == "opsbook --jobs 1" else "opsbook --jobs 1"
target = float(e["TARGET_RATIO"])
r = med[best] / base
mode = {"opsbook --jobs 1": "--jobs 1 (stream)", "opsbook --jobs 2": "--jobs 2 (spool)"}
print(f"- faster opsbook mode: **{mode[best]}**, restore phase median {med[best]:.2f} s vs {med[other]:.2f} s "
      f"for {mode[other]} ({med[other] / med[best]:.2f}×)")
print(f"- best opsbook variant vs `pg_restore -j2`: **{r:.2f}×** ({med[best] - base:+.2f} s) — target ≤ {target:.2f}×: "
      f"**{'met' if r <= target else 'not met'}**")
rto1 = statistics.median(step(x, "rto")["seconds"] for x in j1)
rto2 = statistics.median(step(x, "rto")["seconds"] for x in j2)
print(f"- RTO (drill's \"rto\" step: download + restore + row counts) medians: --jobs 1 {rto1:.2f} s, --jobs 2 {rto2:.2f} s; "
      f"whole command medians: --jobs 1 {hf['opsbook --jobs 1']['median']:.2f} s, --jobs 2 {hf['opsbook --jobs 2']['median']:.2f} s")
print("- peak RSS: `/usr/bin/time -v` Maximum resident set size of one extra run of each (the larger of the process "
      "and its biggest reaped descendant: pg_restore and its -j workers); \"top process only\": VmHWM of opsbook "
      "(or the pg_restore leader) itself, sampled every 0.1 s")
lines = [l for l in open(e["INTERFERENCE"]).read().splitlines() if l.strip()]
if lines:
    print(f"- **warning**: other benchmark processes ran while timing ({len(lines)} samples, first: `{lines[0]}`)")
else:
    print(f"- no other hyperfine or bench/migrate.sh process seen while timing (polled every {e['POLL']} s)")
comp = [l for l in open(e["COMPILERS"]).read().splitlines() if l.strip()]
if comp:
    print(f"- **note**: cargo/rustc/linker processes (other work on the machine) were running in {len(comp)} of the "
          f"{e['POLL']} s samples while timing (e.g. `{comp[0]}`): the timings are skewed by that much")
else:
    print("- no cargo/rustc/linker process seen while timing")
print()
print(f"Raw hyperfine results: `{e['HF_NAME']}`; drill reports: `{e['REPORTS_NAME']}`")
EOF

machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$INVOKED\`"
    echo "- machine: $(nproc) CPUs (nproc; $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r)"
    echo "- opsbook: $("$OPSBOOK" --version 2>/dev/null | head -n1), binary built $(date -u -r "$OPSBOOK" '+%Y-%m-%d %H:%M UTC') (tree now: git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit yet')$([[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ' + uncommitted changes'))"
    echo "- load average (1/5/15 min) at the start: $LOAD_START; when timing started: $LOAD_TIMED; after the timed runs: $LOAD_END — other work on the machine skews the timings"
    echo "- tools: $("$PG_RESTORE" --version) (the baseline's; opsbook picks its own pg_restore ≥ the dump's major version, here from: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ' | sed 's/ $//')), $(hyperfine --version); sandbox server PostgreSQL $SERVER_VERSION ($SANDBOX_SETTINGS)"
    echo
    echo '```'
    echo "\$ free -g"
    free -g
    echo '```'
}

out=$({ echo "## Restore-drill benchmark — $(date -u +%Y-%m-%d)"; echo; machine_info; echo; cat "$summary"; })
printf '%s\n' "$out"
if [[ ! -s $RESULTS ]]; then
    printf '# opsbook benchmark results\n\nAppended by the scripts in `bench/` (see their headers for what is measured and how to run them).\n\n' >"$RESULTS"
elif [[ $(tail -c 2 "$RESULTS" | od -An -c | tr -d ' ') != '\n\n' ]]; then
    # Start the new section after a blank line, whatever the previous one ended with.
    if [[ $(tail -c 1 "$RESULTS" | od -An -c | tr -d ' ') == '\n' ]]; then echo >>"$RESULTS"; else printf '\n\n' >>"$RESULTS"; fi
fi
printf '%s\n\n' "$out" >>"$RESULTS"
log "appended to $RESULTS"
