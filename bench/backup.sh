#!/usr/bin/env bash
# Backup benchmark: `opsbook backup run` against the pipelines people write by hand, all into
# the same local S3 server (examples/s3_server.rs, s3s-fs + SigV4) from the same Postgres
# sandbox, in one hyperfine run.
#
#   bench/backup.sh                                   # full size: SCALE=50 EVENTS=2000000 RUNS=3
#   SCALE=5 EVENTS=200000 RUNS=2 bench/backup.sh      # quick end-to-end check
#   MODE=rss bench/backup.sh                          # opsbook peak RSS at RSS_SCALES (10 100)
#
# Environment:
#   MODE        compare (default) | rss
#   SCALE       pgbench scale factor for MODE=compare (default 50, ~750 MB of pgbench tables)
#   EVENTS      rows of the less compressible `events` table (default 2000000; 0 = none)
#   RUNS        rounds; each round runs every command once, in turn (default 3)
#   RSS_SCALES  pgbench scales for MODE=rss (default "10 100"; no events table)
#   RSS_EVENTS_PER_SCALE  MODE=rss: also load scale × this many `events` rows (default 0), so
#               the compressed stream, not only the dump, grows with the scale
#   TRANSPORT   how every command reaches Postgres: tcp (default, 127.0.0.1) | socket (the
#               sandbox's Unix socket, as a cron job on the database host connects)
#   KEEP_WORK=1 keep the run's work directory (sandbox, S3 root) instead of deleting it
#   RESULTS     Markdown file to append the summary to (default bench/RESULTS.md)
#   SKIP_BUILD=1 use target/release/opsbook and target/fixtures/examples/s3_server as they are
#               (no cargo build; the server is built in the opt-level 3 `fixtures` profile)
#
# Compared (MODE=compare):
#   floor      pg_dump -Fc -Z0 > /dev/null               what reading the database costs
#   oneliner   pg_dump -Fc | aws s3 cp -                  pg_dump's own gzip, single thread
#   tuned      pg_dump -Fc -Z0 | zstd -3 -T0 | aws s3 cp -   (zstd's default level)
#   tuned-1    pg_dump -Fc -Z0 | zstd -1 -T0 | aws s3 cp -   (opsbook's default level)
#   opsbook    backup run --row-counts estimate           (zstd:1, multipart, SHA-256, manifest)
#   opsbook    backup run --row-counts exact              (reported as the cost of exact counts)
#   opsbook zstd:3  backup run --compression zstd:3 --row-counts estimate (same level as tuned)
#
# Output: a Markdown summary on stdout, appended to bench/RESULTS.md with the command line, date
# and machine. Raw hyperfine JSON and opsbook reports are kept in bench/.work/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

MODE=${MODE:-compare}
SCALE=${SCALE:-50}
EVENTS=${EVENTS:-2000000}
RUNS=${RUNS:-3}
RSS_SCALES=${RSS_SCALES:-"10 100"}
RSS_EVENTS_PER_SCALE=${RSS_EVENTS_PER_SCALE:-0}
KEEP_WORK=${KEEP_WORK:-0}
TRANSPORT=${TRANSPORT:-tcp}
RESULTS=${RESULTS:-$SCRIPT_DIR/RESULTS.md}
[[ $RESULTS == /* ]] || RESULTS=$PWD/$RESULTS # the script changes directory later
if [[ $MODE == rss ]]; then
    INVOKED="MODE=rss RSS_SCALES=\"$RSS_SCALES\" RSS_EVENTS_PER_SCALE=$RSS_EVENTS_PER_SCALE bench/backup.sh${*:+ $*}"
else
    INVOKED="MODE=compare SCALE=$SCALE EVENTS=$EVENTS RUNS=$RUNS bench/backup.sh${*:+ $*}"
fi
[[ $TRANSPORT == tcp ]] || INVOKED="TRANSPORT=$TRANSPORT $INVOKED"

case $MODE in compare | rss) ;; *) echo "backup.sh: MODE must be compare or rss, not '$MODE'" >&2; exit 2 ;; esac
case $TRANSPORT in tcp | socket) ;; *) echo "backup.sh: TRANSPORT must be tcp or socket, not '$TRANSPORT'" >&2; exit 2 ;; esac
for v in SCALE EVENTS RUNS RSS_EVENTS_PER_SCALE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "backup.sh: $v must be a non-negative integer" >&2; exit 2; }
done
for s in $RSS_SCALES; do [[ $s =~ ^[1-9][0-9]*$ ]] || { echo "backup.sh: RSS_SCALES must be positive integers" >&2; exit 2; }; done
((SCALE >= 1 && RUNS >= 1)) || { echo "backup.sh: SCALE and RUNS must be at least 1" >&2; exit 2; }

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'backup.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "missing $*, and no apt-get to install it"
    if ((APT_UPDATED == 0)); then apt-get update -qq >&2; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "checking tools"
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v zstd >/dev/null || missing+=(zstd)
command -v python3 >/dev/null || missing+=(python3)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

find_pgbench() {
    if command -v pgbench >/dev/null; then command -v pgbench; return; fi
    local p
    for p in /usr/lib/postgresql/*/bin/pgbench; do [[ -x $p ]] && { echo "$p"; return; }; done
    return 1
}
PGBENCH=$(find_pgbench) || { apt_install postgresql-contrib; PGBENCH=$(find_pgbench) || die "pgbench not found after installing postgresql-contrib"; }
for t in pg_dump psql; do command -v $t >/dev/null || die "$t not found (install postgresql-client)"; done
if ! command -v aws >/dev/null; then
    log "installing awscli (pip)"
    python3 -m pip install -q awscli >&2 || pip install -q awscli >&2
    hash -r
    command -v aws >/dev/null || die "aws not on PATH after pip install awscli"
fi

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    log "SKIP_BUILD=1: using the release binaries as they are"
else
    log "building opsbook (release) and the S3 server (fixtures profile)"
    mkdir -p "$SCRIPT_DIR/.work"
    CARGO_LOG=$SCRIPT_DIR/.work/cargo.log
    # cargo waits by itself while another build holds the target directory's lock.
    cargo build --release >"$CARGO_LOG" 2>&1 || { tail -n 40 "$CARGO_LOG" >&2; die "cargo build --release failed"; }
    cargo build --profile fixtures --example s3_server >>"$CARGO_LOG" 2>&1 || { tail -n 40 "$CARGO_LOG" >&2; die "cargo build --profile fixtures --example s3_server failed"; }
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OPSBOOK=$TARGET_DIR/release/opsbook
S3_SERVER=$TARGET_DIR/fixtures/examples/s3_server
[[ -x $OPSBOOK && -x $S3_SERVER ]] || die "built binaries not found: $OPSBOOK, $S3_SERVER"

# ---------------------------------------------------------------- work dir, cleanup
WORK_BASE=$SCRIPT_DIR/.work
mkdir -p "$WORK_BASE"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d "$WORK_BASE/run-$STAMP-XXXX")
# The sandbox's server runs as the `postgres` OS user when we are root: it must reach its dir.
chmod 755 "$WORK_BASE" "$WORK"
mkdir -p "$WORK/s3/bench" "$WORK/logs" "$WORK/state" "$WORK/bin"
# The target directory is shared: copy the binaries so a rebuild elsewhere cannot swap them mid-run.
cp -p "$OPSBOOK" "$S3_SERVER" "$WORK/bin/"
OPSBOOK=$WORK/bin/opsbook
S3_SERVER=$WORK/bin/s3_server
export OPSBOOK
S3_PID=""
SANDBOX_UP=0
cleanup() {
    local rc=$?
    set +e
    if ((SANDBOX_UP)); then "$OPSBOOK" sandbox down --dir "$WORK/sandbox" >/dev/null 2>&1 || echo "backup.sh: sandbox down failed; remove $WORK/sandbox by hand" >&2; fi
    if [[ -n $S3_PID ]]; then kill "$S3_PID" 2>/dev/null; wait "$S3_PID" 2>/dev/null; fi
    if ((rc != 0)); then
        echo "backup.sh: failed (exit $rc); logs in $WORK/logs" >&2
    elif [[ $KEEP_WORK == 1 ]]; then
        echo "backup.sh: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$WORK" # no stray opsbook.toml from the caller's cwd

# opsbook and aws see only what we set here.
unset DATABASE_URL OPSBOOK_STORE OPSBOOK_CONFIG OPSBOOK_PROFILE OPSBOOK_NOTIFY_URL OPSBOOK_METRICS_FILE \
    AWS_PROFILE AWS_SESSION_TOKEN R2_ENDPOINT R2_ACCESS_KEY_ID R2_SECRET_ACCESS_KEY R2_BUCKET PGSERVICE
export OPSBOOK_STATE_DIR=$WORK/state
export AWS_EC2_METADATA_DISABLED=true
export AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-credentials
export AWS_CONFIG_FILE=$WORK/aws-config
printf '[default]\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
: >"$AWS_SHARED_CREDENTIALS_FILE"

# ---------------------------------------------------------------- S3 server
S3_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=bench-access-key
export AWS_SECRET_ACCESS_KEY=bench-secret-key-$RANDOM$RANDOM
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export S3_ENDPOINT=$AWS_ENDPOINT_URL
log "starting S3 server on $S3_ENDPOINT (root $WORK/s3)"
"$S3_SERVER" --root "$WORK/s3" --addr "127.0.0.1:$S3_PORT" \
    --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" >"$WORK/logs/s3_server.log" 2>&1 &
S3_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break
    kill -0 "$S3_PID" 2>/dev/null || die "S3 server exited: $(cat "$WORK/logs/s3_server.log")"
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null || die "S3 server did not listen on 127.0.0.1:$S3_PORT"
echo "s3 smoke test" >"$WORK/smoke.txt"
aws s3 cp --only-show-errors "$WORK/smoke.txt" s3://bench/smoke.txt --endpoint-url "$S3_ENDPOINT" >&2 || die "aws s3 cp to the local S3 server failed"
aws s3 rm --only-show-errors s3://bench/smoke.txt --endpoint-url "$S3_ENDPOINT" >&2

# ---------------------------------------------------------------- Postgres sandbox
log "starting the Postgres sandbox"
SANDBOX_UP=1
"$OPSBOOK" sandbox up --dir "$WORK/sandbox" >"$WORK/logs/sandbox.out" 2>"$WORK/logs/sandbox.err" ||
    die "opsbook sandbox up failed: $(cat "$WORK/logs/sandbox.err")"
# The sandbox's env file (0600) holds the URL with its password; what `sandbox up` prints masks it.
DATABASE_URL=$(sed -n "s/^DATABASE_URL=//p; s/^export DATABASE_URL=//p" "$WORK/sandbox/env" | head -1 | sed "s/^'\(.*\)'\$/\1/")
[[ -n $DATABASE_URL ]] || die "no DATABASE_URL in $WORK/sandbox/env after sandbox up: $(cat "$WORK/logs/sandbox.out")"
export DATABASE_URL
# pg_dump, psql and pgbench get the password through PGPASSWORD, never argv. With
# TRANSPORT=socket every command connects through the sandbox's socket directory instead, and
# opsbook gets libpq's socket URL form (`postgres://user:pw@/db?host=DIR&port=N`).
SOCK_DIR=
[[ $TRANSPORT == socket ]] && SOCK_DIR=$WORK/sandbox/pg/sock
eval "$(python3 - "$DATABASE_URL" "$SOCK_DIR" <<'EOF'
import shlex, sys
from urllib.parse import urlsplit, unquote, quote
u = urlsplit(sys.argv[1])
host, port = u.hostname or "127.0.0.1", u.port or 5432
user, db = unquote(u.username or "postgres"), unquote(u.path.lstrip("/") or "postgres")
password = unquote(u.password or "")
sock = sys.argv[2]
if sock:
    host = sock
    url = "postgres://%s:%s@/%s?host=%s&port=%s" % (quote(user, safe=""), quote(password, safe=""), quote(db, safe=""), quote(sock, safe="/"), port)
    print("export DATABASE_URL=%s" % shlex.quote(url))
print("export PGHOST=%s PGPORT=%s PGUSER=%s PGDATABASE=%s PGPASSWORD=%s" % tuple(
    shlex.quote(str(v)) for v in (host, port, user, db, password)))
print("export DSN=%s" % shlex.quote("host=%s port=%s user=%s dbname=%s" % (host, port, user, db)))
EOF
)"
if [[ -n $SOCK_DIR && ! -S $SOCK_DIR/.s.PGSQL.$PGPORT ]]; then
    die "TRANSPORT=socket: the sandbox has no Unix socket at $SOCK_DIR/.s.PGSQL.$PGPORT (opsbook leaves it out when the path is over 107 bytes: run from a shorter checkout path)"
fi
psql -XqAt -c 'select 1' >/dev/null || die "cannot connect to the sandbox ($DSN)"
# opsbook gets only --database-url: the libpq variables above are for pg_dump, psql and pgbench.
OPS="env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD \"\$OPSBOOK\" backup run --database-url \"\$DATABASE_URL\" --store s3://bench/ops --set bench --output json"

pretty_bytes() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }
db_size() { psql -XqAt -c 'select pg_database_size(current_database())'; }
file_size() { stat -c %s "$1"; }
machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$INVOKED\`"
    echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r)"
    echo "- opsbook: $("$OPSBOOK" --version 2>/dev/null | head -n1), binary built $(date -u -r "$OPSBOOK" '+%Y-%m-%d %H:%M UTC') (tree now: git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit yet')$([[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ' + uncommitted changes'))"
    echo "- load average (1/5/15 min) at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) — other work on the machine skews the timings"
    echo "- Postgres connection for every command: $([[ -n $SOCK_DIR ]] && echo "Unix socket (TRANSPORT=socket)" || echo "TCP 127.0.0.1 (TRANSPORT=tcp)")"
    echo "- tools: $(pg_dump --version), zstd $(zstd --version | grep -o 'v[0-9][0-9.]*' | head -n1), $(aws --version 2>&1 | cut -d' ' -f1,4), $(hyperfine --version)"
    echo
    echo '```'
    echo "\$ free -g"
    free -g
    echo '```'
}

# One instrumented opsbook run under /usr/bin/time -v: writes the JSON report to $1, sets
# RUN_SECS and RUN_RSS_KIB (Maximum resident set size).
opsbook_rss_run() {
    local report=$1 rows=$2 tlog=$WORK/logs/time-$RANDOM.log start end
    start=$(date +%s.%N)
    if ! eval "/usr/bin/time -v -o \"\$tlog\" $OPS --row-counts $rows" >"$report" 2>>"$WORK/logs/opsbook-rss.stderr"; then
        tail -n 20 "$report" "$WORK/logs/opsbook-rss.stderr" "$tlog" >&2
        die "opsbook backup run failed under /usr/bin/time"
    fi
    end=$(date +%s.%N)
    RUN_SECS=$(python3 -c "print(f'{$end - $start:.2f}')")
    RUN_RSS_KIB=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tlog")
    [[ -n $RUN_RSS_KIB ]] || die "no Maximum resident set size in $tlog"
}

# A field of the data object in an opsbook JSON report.
report_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); o=[x for x in d["backup"]["objects"] if x["role"]=="data"][0]; print(o[sys.argv[2]])' "$1" "$2"; }

# (Re)creates `events` with $1 rows of less compressible data (two md5 tokens and a small JSON
# document per row), then VACUUM ANALYZE.
load_events() {
    psql -XqA -v ON_ERROR_STOP=1 -v events="$1" >/dev/null <<'SQL'
    DROP TABLE IF EXISTS events;
    CREATE TABLE events (id bigserial PRIMARY KEY, a text NOT NULL, b text NOT NULL, doc jsonb NOT NULL);
    INSERT INTO events (a, b, doc)
    SELECT md5(random()::text), md5(random()::text),
           jsonb_build_object(
               'user_id', (random() * 1000000)::int,
               'kind', (ARRAY['click', 'view', 'purchase', 'signup', 'refund'])[1 + floor(random() * 5)::int],
               'at', now() - random() * interval '365 days',
               'amount', round((random() * 1000)::numeric, 2),
               'session', substr(md5(random()::text), 1, 16))
    FROM generate_series(1, :events);
    VACUUM ANALYZE;
SQL
}

emit() { # $1 = title, $2 = summary file: print, and append to RESULTS.md
    local out
    out=$({ echo "## $1 — $(date -u +%Y-%m-%d)"; echo; machine_info; echo; cat "$2"; echo; })
    printf '%s\n' "$out"
    if [[ ! -s $RESULTS ]]; then
        printf '# opsbook backup benchmark results\n\nAppended by `bench/backup.sh` (see its header for what is measured and how to run it).\n\n' >"$RESULTS"
    fi
    printf '%s\n\n' "$out" >>"$RESULTS"
    log "appended to $RESULTS"
}

# ================================================================ MODE=rss
if [[ $MODE == rss ]]; then
    summary=$WORK/summary.md
    {
        if ((RSS_EVENTS_PER_SCALE > 0)); then
            echo "opsbook peak RSS as the database grows: pgbench plus \`events\` (scale × $RSS_EVENTS_PER_SCALE rows)."
        else
            echo "opsbook peak RSS as the database grows (pgbench only, no events table)."
        fi
        echo
        echo "| pgbench scale | events rows | database | pg_dump -Z0 output | stored (default level) | parts × part size | wall time | peak RSS |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    } >"$summary"
    for s in $RSS_SCALES; do
        log "MODE=rss: pgbench -i -s $s"
        t0=$SECONDS
        "$PGBENCH" -i -q -s "$s" >"$WORK/logs/pgbench-$s.log" 2>&1 || die "pgbench -i failed: $(tail -n 20 "$WORK/logs/pgbench-$s.log")"
        if ((RSS_EVENTS_PER_SCALE > 0)); then
            load_events $((s * RSS_EVENTS_PER_SCALE))
        else
            psql -XqA -v ON_ERROR_STOP=1 -c 'DROP TABLE IF EXISTS events' -c 'VACUUM ANALYZE' >/dev/null
        fi
        log "loaded in $((SECONDS - t0)) s; database $(pretty_bytes "$(db_size)")"
        pg_dump -Fc -Z0 -d "$DSN" >/dev/null # warm the page cache
        log "MODE=rss: opsbook backup run at scale $s"
        opsbook_rss_run "$WORK/report-rss-$s.json" estimate
        stored=$(report_field "$WORK/report-rss-$s.json" size)
        part=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup"]["part_size"])' "$WORK/report-rss-$s.json")
        printf '| %s | %s | %s | %s | %s | %s | %s s | %s MiB |\n' "$s" "$((s * RSS_EVENTS_PER_SCALE))" "$(pretty_bytes "$(db_size)")" \
            "$(pretty_bytes "$(report_field "$WORK/report-rss-$s.json" raw_size)")" "$(pretty_bytes "$stored")" \
            "$(((stored + part - 1) / part)) × $((part >> 20)) MiB" "$RUN_SECS" "$((RUN_RSS_KIB / 1024))" >>"$summary"
        cp "$WORK/report-rss-$s.json" "$WORK_BASE/opsbook-rss-s$s-$STAMP.json"
    done
    {
        echo
        echo "Peak RSS: \`/usr/bin/time -v\` Maximum resident set size of \`opsbook backup run --row-counts estimate\`"
        echo "(the larger of opsbook itself and its biggest reaped child, pg_dump); default --part-size and --upload-concurrency."
        echo "pgbench data compresses ~100:1, so without events the stored object is only a few parts:"
        echo "set RSS_EVENTS_PER_SCALE (e.g. 20000) to make the upload side (part buffers) grow with the data as well."
    } >>"$summary"
    emit "Backup benchmark, MODE=rss" "$summary"
    exit 0
fi

# ================================================================ MODE=compare
log "loading data: pgbench -i -s $SCALE, events = $EVENTS rows"
t0=$SECONDS
"$PGBENCH" -i -q -s "$SCALE" >"$WORK/logs/pgbench.log" 2>&1 || die "pgbench -i failed: $(tail -n 20 "$WORK/logs/pgbench.log")"
load_events "$EVENTS"
DB_BYTES=$(db_size)
log "loaded in $((SECONDS - t0)) s; database $(pretty_bytes "$DB_BYTES")"
pg_dump -Fc -Z0 -d "$DSN" >/dev/null # warm the page cache so the first timed command is not penalised

HF_JSON=$WORK_BASE/hyperfine-$STAMP.json
L=$(printf %q "$WORK/logs")
R=$(printf %q "$WORK")
log "hyperfine: $RUNS rounds, every command once per round"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds rather than all runs of one command in a row: this VM's speed drifts over minutes, and
# interleaving spreads the drift over every command instead of favouring the ones that run
# first. `sync` before each run flushes the previous run's stored object, so its write-back does
# not land on the next command. Every command appends its stderr to a log so a failure can be
# explained; pipefail makes a failing pg_dump fail its pipeline.
for round in $(seq "$RUNS"); do
    log "round $round of $RUNS"
    if ! hyperfine --shell=bash --runs 1 --prepare sync --export-json "$WORK/hyperfine-round-$round.json" --style basic \
        -n floor "set -o pipefail; pg_dump -Fc -Z0 -d \"\$DSN\" >/dev/null 2>>$L/floor.stderr" \
        -n oneliner "set -o pipefail; pg_dump -Fc -d \"\$DSN\" 2>>$L/oneliner.stderr | aws s3 cp --only-show-errors - s3://bench/oneliner.dump --endpoint-url \"\$S3_ENDPOINT\" 2>>$L/oneliner.stderr" \
        -n tuned "set -o pipefail; pg_dump -Fc -Z0 -d \"\$DSN\" 2>>$L/tuned.stderr | zstd -q -3 -T0 2>>$L/tuned.stderr | aws s3 cp --only-show-errors - s3://bench/tuned.dump.zst --endpoint-url \"\$S3_ENDPOINT\" 2>>$L/tuned.stderr" \
        -n tuned-1 "set -o pipefail; pg_dump -Fc -Z0 -d \"\$DSN\" 2>>$L/tuned-1.stderr | zstd -q -1 -T0 2>>$L/tuned-1.stderr | aws s3 cp --only-show-errors - s3://bench/tuned-1.dump.zst --endpoint-url \"\$S3_ENDPOINT\" 2>>$L/tuned-1.stderr" \
        -n "opsbook (estimate)" "$OPS --row-counts estimate >$R/report-estimate.json 2>>$L/opsbook-estimate.stderr" \
        -n "opsbook (exact)" "$OPS --row-counts exact >$R/report-exact.json 2>>$L/opsbook-exact.stderr" \
        -n "opsbook zstd:3" "$OPS --compression zstd:3 --row-counts estimate >$R/report-zstd3.json 2>>$L/opsbook-zstd3.stderr" >&2; then
        for f in "$WORK"/logs/*.stderr "$WORK"/report-*.json; do
            if [[ -s $f ]]; then echo "--- $f" >&2; tail -n 20 "$f" >&2; fi
        done
        die "hyperfine failed"
    fi
done
# One result per command over all rounds, in hyperfine's own JSON shape.
python3 - "$HF_JSON" "$WORK"/hyperfine-round-*.json <<'EOF'
import json, statistics, sys
merged = {}
for path in sys.argv[2:]:
    for r in json.load(open(path))["results"]:
        merged.setdefault(r["command"], []).extend(r["times"])
results = [{"command": c, "times": t, "mean": statistics.mean(t), "median": statistics.median(t),
            "stddev": statistics.stdev(t) if len(t) > 1 else None, "min": min(t), "max": max(t)}
           for c, t in merged.items()]
json.dump({"results": results}, open(sys.argv[1], "w"), indent=2)
EOF
cp "$WORK/report-estimate.json" "$WORK_BASE/opsbook-estimate-$STAMP.json"
cp "$WORK/report-exact.json" "$WORK_BASE/opsbook-exact-$STAMP.json"

log "peak RSS: one more opsbook run (estimate) under /usr/bin/time -v"
opsbook_rss_run "$WORK/report-rss.json" estimate

ONELINER_BYTES=$(file_size "$WORK/s3/bench/oneliner.dump")
TUNED_BYTES=$(file_size "$WORK/s3/bench/tuned.dump.zst")
TUNED1_BYTES=$(file_size "$WORK/s3/bench/tuned-1.dump.zst")
# Cross-check with what an S3 client sees.
TUNED_LISTED=$(aws s3 ls s3://bench/tuned.dump.zst --endpoint-url "$S3_ENDPOINT" | awk '{print $3}')
[[ $TUNED_LISTED == "$TUNED_BYTES" ]] || echo "backup.sh: warning: S3 lists tuned.dump.zst as '$TUNED_LISTED' bytes, the file has $TUNED_BYTES" >&2
OPS_KEY=$(report_field "$WORK/report-estimate.json" key)
OPS_SIZE=$(report_field "$WORK/report-estimate.json" size)
OPS_FILE=$WORK/s3/bench/ops/$OPS_KEY
if [[ ! -f $OPS_FILE ]]; then
    echo "backup.sh: warning: opsbook's data object $OPS_KEY is not at $OPS_FILE" >&2
elif [[ $(file_size "$OPS_FILE") != "$OPS_SIZE" ]]; then
    echo "backup.sh: warning: opsbook reports $OPS_SIZE bytes for $OPS_KEY, the stored file has $(file_size "$OPS_FILE")" >&2
fi

summary=$WORK/summary.md
HF_JSON=$HF_JSON EST=$WORK/report-estimate.json EXACT=$WORK/report-exact.json ZSTD3=$WORK/report-zstd3.json \
    ONELINER_BYTES=$ONELINER_BYTES TUNED_BYTES=$TUNED_BYTES TUNED1_BYTES=$TUNED1_BYTES DB_BYTES=$DB_BYTES RSS_KIB=$RUN_RSS_KIB RSS_SECS=$RUN_SECS SCALE=$SCALE EVENTS=$EVENTS \
    HF_NAME="bench/.work/$(basename "$HF_JSON")" python3 >"$summary" <<'EOF'
import json, os
e = os.environ
hf = {r["command"]: r for r in json.load(open(e["HF_JSON"]))["results"]}
def data(path):
    return [o for o in json.load(open(path))["backup"]["objects"] if o["role"] == "data"][0]
ops, ops_exact, ops3 = data(e["EST"]), data(e["EXACT"]), data(e["ZSTD3"])
level = json.load(open(e["EST"]))["backup"]["compression"]["level"]
raw, ops_b = ops["raw_size"], ops["size"]
part = json.load(open(e["EST"]))["backup"]["part_size"]
oneliner_b, tuned_b, db_b = int(e["ONELINER_BYTES"]), int(e["TUNED_BYTES"]), int(e["DB_BYTES"])
tuned1_b = int(e["TUNED1_BYTES"])

def mib(n): return f"{n / 2**20:,.1f} MiB"
med = {k: v["median"] for k, v in hf.items()}
floor = med["floor"]
def row(name, what, stored=None):
    r = hf[name]
    cells = [name, what, f"{r['median']:.2f}", f"{r['mean']:.2f} ± {r['stddev'] or 0:.2f}",
             f"{r['min']:.2f}–{r['max']:.2f}", f"{r['median'] / floor:.2f}×",
             f"{mib(stored)} ({stored / raw:.1%})" if stored is not None else "—"]
    return "| " + " | ".join(cells) + " |"

print(f"Data: pgbench scale {e['SCALE']} + `events` {int(e['EVENTS']):,} rows; database {mib(db_b)}; "
      f"`pg_dump -Fc -Z0` output {mib(raw)}. {len(hf['floor']['times'])} rounds, each command once per round "
      f"(`sync` before each run), one local S3 server (s3s-fs, SigV4).")
print()
print("| command | pipeline | median s | mean ± σ s | min–max s | × floor | stored (of raw) |")
print("|---|---|---:|---:|---:|---:|---:|")
print(row("floor", r"`pg_dump -Fc -Z0 > /dev/null`"))
print(row("oneliner", r"`pg_dump -Fc \| aws s3 cp -`", oneliner_b))
print(row("tuned", r"`pg_dump -Fc -Z0 \| zstd -3 -T0 \| aws s3 cp -`", tuned_b))
print(row("tuned-1", r"`pg_dump -Fc -Z0 \| zstd -1 -T0 \| aws s3 cp -`", tuned1_b))
print(row("opsbook (estimate)", f"`opsbook backup run --row-counts estimate` (default zstd:{level})", ops_b))
print(row("opsbook (exact)", "`opsbook backup run --row-counts exact`", ops_exact["size"]))
print(row("opsbook zstd:3", "`opsbook backup run --compression zstd:3 --row-counts estimate`", ops3["size"]))
print()
o, t, l, x = med["opsbook (estimate)"], med["tuned"], med["oneliner"], med["opsbook (exact)"]
t1, o3 = med["tuned-1"], med["opsbook zstd:3"]
print(f"- vs floor (medians): opsbook/floor **{o / floor:.2f}×**, oneliner/floor {l / floor:.2f}×, tuned/floor {t / floor:.2f}×, "
      f"tuned-1/floor {t1 / floor:.2f}×, opsbook zstd:3/floor {o3 / floor:.2f}×")
print(f"- opsbook vs tuned: **{o / t:.2f}×** ({o - t:+.2f} s); opsbook vs oneliner: **{o / l:.2f}×** ({o - l:+.2f} s)")
print(f"- same level: opsbook vs tuned-1 (zstd 1): **{o / t1:.2f}×**; opsbook zstd:3 vs tuned (zstd 3): **{o3 / t:.2f}×**")
print(f"- cost of `--row-counts exact` over estimate: {x - o:+.2f} s ({x / o - 1:+.1%})")
def versus(a, b):  # exact bytes: a rounded 1.000× must not hide a larger object
    return f"{a:,} B vs {b:,} B = **{a / b:.4f}×** ({a - b:+,} B)"
print(f"- stored at the same level: zstd 1, opsbook vs tuned-1 {versus(ops_b, tuned1_b)}; "
      f"zstd 3, opsbook zstd:3 vs tuned {versus(ops3['size'], tuned_b)}; "
      f"oneliner (pg_dump's gzip) {mib(oneliner_b)}")
print(f"- throughput (raw dump bytes / median time): floor {raw / floor / 2**20:.0f} MiB/s, "
      f"oneliner {raw / l / 2**20:.0f} MiB/s, tuned {raw / t / 2**20:.0f} MiB/s, opsbook {raw / o / 2**20:.0f} MiB/s")
print(f"- opsbook peak RSS: **{int(e['RSS_KIB']) / 1024:.0f} MiB** (`/usr/bin/time -v`, one extra estimate run of "
      f"{e['RSS_SECS']} s; max of opsbook and pg_dump; {-(-ops_b // part)} parts of {part / 2**20:g} MiB, default --upload-concurrency)")
print()
print(f"Raw hyperfine results: `{e['HF_NAME']}`")
EOF
emit "Backup benchmark" "$summary"
