#!/usr/bin/env bash
# Migration benchmark: `opsbook migrate up` against `sqlx migrate run` (sqlx-cli) applying the
# same N small migrations to a fresh database of the same throwaway Postgres sandbox, then the
# read-only `opsbook migrate check` (CI gate; target < 50 ms) against `sqlx migrate info`.
#
#   bench/migrate.sh                                  # defaults: MIGRATIONS=1000 RUNS=5 CHECK_RUNS=20
#   MIGRATIONS=100 RUNS=2 CHECK_RUNS=5 bench/migrate.sh   # quick end-to-end check
#   SKIP_BUILD=1 bench/migrate.sh                     # rerun with the release binary as it is
#
# Environment:
#   MIGRATIONS  number of generated migrations (default 1000)
#   RUNS        hyperfine runs per command of the apply benchmark (default 5)
#   CHECK_RUNS  hyperfine runs per command of the check benchmark (default 20, after 2 warmups)
#   CHECK_TARGET_MS  the target for the median of `opsbook migrate check` (default 50)
#   KEEP_WORK=1 keep the run's work directory (sandbox, migrations, logs) instead of deleting it
#   RESULTS     Markdown file to append the summary to (default bench/RESULTS.md)
#   SKIP_BUILD=1 use target/release/opsbook as it is (no cargo build)
#
# Needs: sqlx-cli 0.8.6 (`sqlx`), hyperfine, psql (postgresql-client), python3, the Postgres
# server binaries `opsbook sandbox up` uses; /usr/bin/time (GNU time, installed with apt-get when
# missing) for peak RSS.
#
# The migrations (sqlx names `<YYYYMMDDhhmmss>_m<i>.sql`, lint-clean for opsbook, so no
# --allow-unsafe): every third one is `ALTER TABLE t<i-1> ADD COLUMN note text;` (nullable, no
# default), the others `CREATE TABLE t<i> (id bigint PRIMARY KEY, name text);`.
#
# Compared:
#   apply   sqlx migrate run --source DIR --database-url URL
#           opsbook migrate up --migrations DIR --database-url URL -q
#           (hyperfine --prepare drops and recreates the scratch database before every run)
#   check   opsbook migrate check --migrations DIR --database-url URL -q  (all N applied)
#           sqlx migrate info --source DIR --database-url URL             (baseline)
# plus one extra run of each command under /usr/bin/time -v for its peak RSS, and a cross-check
# that each tool accepts the history the other wrote.
#
# Output: a Markdown summary on stdout, appended to bench/RESULTS.md with the command line, date
# and machine. Raw hyperfine JSON is kept in bench/.work/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

MIGRATIONS=${MIGRATIONS:-1000}
RUNS=${RUNS:-5}
CHECK_RUNS=${CHECK_RUNS:-20}
CHECK_TARGET_MS=${CHECK_TARGET_MS:-50}
KEEP_WORK=${KEEP_WORK:-0}
RESULTS=${RESULTS:-$SCRIPT_DIR/RESULTS.md}
[[ $RESULTS == /* ]] || RESULTS=$PWD/$RESULTS # the script changes directory later
INVOKED="MIGRATIONS=$MIGRATIONS RUNS=$RUNS CHECK_RUNS=$CHECK_RUNS${SKIP_BUILD:+ SKIP_BUILD=$SKIP_BUILD} bench/migrate.sh${*:+ $*}"
SCRATCH_DB=bench_migrate

for v in MIGRATIONS RUNS CHECK_RUNS CHECK_TARGET_MS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "migrate.sh: $v must be a positive integer" >&2; exit 2; }
done

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'migrate.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "checking tools"
export PATH=$PATH:$HOME/.cargo/bin
SQLX_HINT="cargo install sqlx-cli --version 0.8.6 --locked --no-default-features --features postgres,rustls"
command -v sqlx >/dev/null || die "sqlx (sqlx-cli) not found on PATH or in ~/.cargo/bin; install it with:
    $SQLX_HINT"
SQLX=$(command -v sqlx)
sqlx migrate --help >/dev/null 2>&1 || die "'$SQLX migrate' does not work (is it sqlx-cli?); reinstall with:
    $SQLX_HINT"
command -v hyperfine >/dev/null || die "hyperfine not found; install it with: apt-get install hyperfine (or: cargo install --locked hyperfine)"
command -v python3 >/dev/null || die "python3 not found (apt-get install python3)"
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time for the peak RSS measurements"
    if command -v apt-get >/dev/null && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >&2; then :; fi
    [[ -x /usr/bin/time ]] || echo "migrate.sh: warning: /usr/bin/time is missing (apt-get install time); peak RSS will be reported as missing" >&2
fi
find_psql() {
    local p best=""
    for p in /usr/lib/postgresql/*/bin/psql; do [[ -x $p ]] && best=$p; done # highest version last (glob order)
    [[ -n $best ]] && { echo "$best"; return; }
    command -v psql
}
PSQL=$(find_psql) || die "psql not found in /usr/lib/postgresql/*/bin or on PATH (apt-get install postgresql-client)"

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    log "SKIP_BUILD=1: using the release binary as it is"
else
    log "building opsbook (release)"
    mkdir -p "$SCRIPT_DIR/.work"
    CARGO_LOG=$SCRIPT_DIR/.work/cargo-migrate.log
    # cargo waits by itself while another build holds the target directory's lock.
    cargo build --release --bin opsbook >"$CARGO_LOG" 2>&1 || { tail -n 40 "$CARGO_LOG" >&2; die "cargo build --release --bin opsbook failed"; }
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OPSBOOK=$TARGET_DIR/release/opsbook
[[ -x $OPSBOOK ]] || die "built binary not found: $OPSBOOK"
"$OPSBOOK" migrate --help >/dev/null 2>&1 || die "$OPSBOOK has no 'migrate' command: rebuild it (run without SKIP_BUILD=1)"

# ---------------------------------------------------------------- work dir, cleanup
WORK_BASE=$SCRIPT_DIR/.work
mkdir -p "$WORK_BASE"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d "$WORK_BASE/migrate-$STAMP-XXXX")
# The sandbox's server runs as the `postgres` OS user when we are root: it must reach its dir.
chmod 755 "$WORK_BASE" "$WORK"
mkdir -p "$WORK/logs" "$WORK/state" "$WORK/bin" "$WORK/migrations"
# The target directory is shared: copy the binary so a rebuild elsewhere cannot swap it mid-run.
cp -p "$OPSBOOK" "$WORK/bin/"
OPSBOOK=$WORK/bin/opsbook
SANDBOX_UP=0
cleanup() {
    local rc=$?
    set +e
    if ((SANDBOX_UP)); then "$OPSBOOK" sandbox down --dir "$WORK/sandbox" >/dev/null 2>&1 || echo "migrate.sh: sandbox down failed; remove $WORK/sandbox by hand" >&2; fi
    if ((rc != 0)); then
        echo "migrate.sh: failed (exit $rc); logs in $WORK/logs" >&2
    elif [[ $KEEP_WORK == 1 ]]; then
        echo "migrate.sh: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$WORK" # no stray opsbook.toml or .env (sqlx-cli reads one) from the caller's cwd

# The tools see only what we set here: the database URL is always given with --database-url.
unset DATABASE_URL OPSBOOK_STORE OPSBOOK_CONFIG OPSBOOK_PROFILE OPSBOOK_NOTIFY_URL OPSBOOK_METRICS_FILE \
    PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGSSLMODE PGOPTIONS
export OPSBOOK_STATE_DIR=$WORK/state
export NO_COLOR=1

# ---------------------------------------------------------------- Postgres sandbox
log "starting the Postgres sandbox"
SANDBOX_UP=1
"$OPSBOOK" sandbox up --dir "$WORK/sandbox" >"$WORK/logs/sandbox.out" 2>"$WORK/logs/sandbox.err" ||
    die "opsbook sandbox up failed: $(cat "$WORK/logs/sandbox.err")"
SANDBOX_URL=$(sed -n "s/^export DATABASE_URL='\(.*\)'\$/\1/p" "$WORK/logs/sandbox.out")
[[ -n $SANDBOX_URL ]] || die "no DATABASE_URL in the output of sandbox up: $(cat "$WORK/logs/sandbox.out")"
# psql gets the password through PGPASSWORD from a 0600 file, never argv; the two migration tools
# get the scratch database's URL (a throwaway sandbox password) with --database-url.
(
    umask 077
    python3 - "$SANDBOX_URL" "$SCRATCH_DB" >"$WORK/pgenv" <<'EOF'
import shlex, sys
from urllib.parse import urlsplit, urlunsplit, unquote
u = urlsplit(sys.argv[1])
host, port = u.hostname or "", u.port or 5432
user, password = unquote(u.username or "postgres"), unquote(u.password or "")
print("export PGHOST=%s PGPORT=%s PGUSER=%s PGPASSWORD=%s PGDATABASE=postgres" % tuple(
    shlex.quote(str(v)) for v in (host, port, user, password)))
print("SCRATCH_URL=%s" % shlex.quote(urlunsplit(u._replace(path="/" + sys.argv[2]))))
EOF
)
# shellcheck disable=SC1091
. "$WORK/pgenv"
[[ $PGHOST == 127.0.0.1 ]] || die "the sandbox is at '$PGHOST', not 127.0.0.1: refusing to benchmark anywhere else"
export SCRATCH_URL
# The hyperfine --prepare step and the script's own queries.
cat >"$WORK/bin/reset-scratch" <<EOF
#!/usr/bin/env bash
# Drops and recreates the scratch database $SCRATCH_DB of the sandbox.
set -euo pipefail
. $(printf %q "$WORK/pgenv")
PGOPTIONS='-c client_min_messages=warning' exec $(printf %q "$PSQL") -XqAt -v ON_ERROR_STOP=1 -c 'DROP DATABASE IF EXISTS $SCRATCH_DB WITH (FORCE)' -c 'CREATE DATABASE $SCRATCH_DB' >/dev/null
EOF
chmod 700 "$WORK/bin/reset-scratch"
RESET=$WORK/bin/reset-scratch
pgq() { # $1 = database, rest = psql args; PG* variables from pgenv
    local db=$1
    shift
    (. "$WORK/pgenv" && "$PSQL" -XqAt -v ON_ERROR_STOP=1 -d "$db" "$@")
}
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE # not for the migration tools
pgq postgres -c 'select 1' >/dev/null || die "cannot connect to the sandbox"
SERVER_VERSION=$(pgq postgres -c 'show server_version')
SANDBOX_SETTINGS=$(pgq postgres -c "select string_agg(name || '=' || setting, ', ' order by name) from pg_settings where name in ('fsync', 'synchronous_commit', 'shared_buffers')")

# ---------------------------------------------------------------- migrations
log "generating $MIGRATIONS migrations in $WORK/migrations"
python3 - "$WORK/migrations" "$MIGRATIONS" <<'EOF'
import datetime, os, sys
d, n = sys.argv[1], int(sys.argv[2])
t0 = datetime.datetime(2025, 1, 1)
for i in range(1, n + 1):
    version = (t0 + datetime.timedelta(minutes=i)).strftime("%Y%m%d%H%M%S")
    if i % 3 == 0:
        sql = f"ALTER TABLE t{i - 1} ADD COLUMN note text;\n"
    else:
        sql = f"CREATE TABLE t{i} (id bigint PRIMARY KEY, name text);\n"
    with open(os.path.join(d, f"{version}_m{i}.sql"), "w") as f:
        f.write(sql)
EOF
MDIR=$WORK/migrations
TABLES=$(python3 -c "import sys; n=int(sys.argv[1]); print(sum(1 for i in range(1, n + 1) if i % 3))" "$MIGRATIONS")
"$OPSBOOK" migrate lint --migrations "$MDIR" --output json >"$WORK/logs/lint.json" 2>"$WORK/logs/lint.stderr" ||
    die "opsbook migrate lint reports errors in the generated migrations: $(head -c 2000 "$WORK/logs/lint.json") $(tail -n 5 "$WORK/logs/lint.stderr")"
LINT=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d files, %d errors, %d warnings" % (d["files"], d["errors"], d["warnings"]))' "$WORK/logs/lint.json") ||
    die "unexpected output of opsbook migrate lint --output json: $(head -c 2000 "$WORK/logs/lint.json")"
log "lint: $LINT"

# ---------------------------------------------------------------- commands
Q_MDIR=$(printf %q "$MDIR")
Q_SQLX=$(printf %q "$SQLX")
Q_OPS=$(printf %q "$OPSBOOK")
L=$(printf %q "$WORK/logs")
SQLX_RUN="$Q_SQLX migrate run --source $Q_MDIR --database-url \"\$SCRATCH_URL\""
OPS_UP="$Q_OPS migrate up --migrations $Q_MDIR --database-url \"\$SCRATCH_URL\" -q"
SQLX_INFO="$Q_SQLX migrate info --source $Q_MDIR --database-url \"\$SCRATCH_URL\""
OPS_CHECK="$Q_OPS migrate check --migrations $Q_MDIR --database-url \"\$SCRATCH_URL\" -q"

# One run of "$2" under /usr/bin/time -v (stdout to $1): sets RUN_SECS and RUN_RSS_KIB ("" when
# GNU time is missing). Fails the script when the command fails.
timed_run() {
    local out=$1 cmd=$2 tlog=$WORK/logs/time-$RANDOM.log start end
    start=$(date +%s.%N)
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -v -o "$tlog" bash -c "exec $cmd" >"$out" 2>>"$WORK/logs/timed.stderr" || {
            tail -n 20 "$out" "$WORK/logs/timed.stderr" >&2
            die "failed: $cmd"
        }
        RUN_RSS_KIB=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tlog")
    else
        bash -c "exec $cmd" >"$out" 2>>"$WORK/logs/timed.stderr" || { tail -n 20 "$out" "$WORK/logs/timed.stderr" >&2; die "failed: $cmd"; }
        RUN_RSS_KIB=""
    fi
    end=$(date +%s.%N)
    RUN_SECS=$(python3 -c "print(f'{$end - $start:.3f}')")
}

# What the scratch database holds after an apply: "<history rows> <ok rows> <tables tN> <note columns> <sum of execution_time in s>".
scratch_state() {
    pgq "$SCRATCH_DB" -F' ' -c "select (select count(*) from _sqlx_migrations), (select count(*) from _sqlx_migrations where success),
        (select count(*) from pg_tables where schemaname = 'public' and tablename ~ '^t[0-9]+\$'),
        (select count(*) from information_schema.columns where table_schema = 'public' and column_name = 'note'),
        (select round(sum(execution_time) / 1e9, 3) from _sqlx_migrations)"
}
verify_state() { # $1 = tool
    local rows ok tables notes exec_s
    read -r rows ok tables notes exec_s < <(scratch_state)
    [[ $rows == "$MIGRATIONS" && $ok == "$MIGRATIONS" && $tables == "$TABLES" && $notes == $((MIGRATIONS - TABLES)) ]] ||
        die "$1 left the scratch database in an unexpected state: $rows history rows ($ok ok), $tables tables, $notes note columns; expected $MIGRATIONS, $TABLES, $((MIGRATIONS - TABLES))"
    EXEC_SECS=$exec_s
}

# ---------------------------------------------------------------- single runs: correctness, RSS, compatibility
log "one run of each apply under /usr/bin/time -v (checks the result, peak RSS)"
"$RESET"
timed_run "$WORK/logs/sqlx-run.out" "$SQLX_RUN"
SQLX_RUN_SECS=$RUN_SECS SQLX_RUN_RSS=$RUN_RSS_KIB
verify_state "sqlx migrate run"
SQLX_EXEC_SECS=$EXEC_SECS
# opsbook must accept sqlx's history as fully applied.
if eval "$OPS_CHECK" >"$WORK/logs/compat-ops-check.out" 2>&1; then COMPAT_OPS="yes"; else COMPAT_OPS="NO (exit $?; see logs/compat-ops-check.out)"; fi

"$RESET"
timed_run "$WORK/logs/opsbook-up.out" "$OPS_UP"
OPS_UP_SECS=$RUN_SECS OPS_UP_RSS=$RUN_RSS_KIB
verify_state "opsbook migrate up"
OPS_EXEC_SECS=$EXEC_SECS
# sqlx must see opsbook's history as fully applied with the same checksums.
eval "$SQLX_INFO" >"$WORK/logs/compat-sqlx-info.out" 2>&1 || die "sqlx migrate info failed after opsbook migrate up: $(tail -n 5 "$WORK/logs/compat-sqlx-info.out")"
INSTALLED=$(grep -c '/installed' "$WORK/logs/compat-sqlx-info.out" || true)
DIFFERENT=$(grep -ci 'different checksum' "$WORK/logs/compat-sqlx-info.out" || true)
if [[ $INSTALLED == "$MIGRATIONS" && $DIFFERENT == 0 ]]; then COMPAT_SQLX="yes"; else COMPAT_SQLX="NO ($INSTALLED installed, $DIFFERENT with a different checksum; see logs/compat-sqlx-info.out)"; fi
SIDE_ROWS=$(pgq "$SCRATCH_DB" -c 'select count(*) from _opsbook_migrations')
log "compatibility: opsbook check accepts sqlx's history: $COMPAT_OPS; sqlx info accepts opsbook's: $COMPAT_SQLX"

# The database stays fully applied (by opsbook) for the check benchmark.
timed_run "$WORK/logs/opsbook-check.out" "$OPS_CHECK"
OPS_CHECK_RSS=$RUN_RSS_KIB
timed_run "$WORK/logs/sqlx-info.out" "$SQLX_INFO"
SQLX_INFO_RSS=$RUN_RSS_KIB

# ---------------------------------------------------------------- hyperfine: apply
HF_APPLY=$WORK_BASE/hyperfine-migrate-apply-$STAMP.json
HF_CHECK=$WORK_BASE/hyperfine-migrate-check-$STAMP.json
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "hyperfine (apply): $RUNS runs per command, scratch database recreated before each"
if ! hyperfine --shell=bash --runs "$RUNS" --prepare "$(printf %q "$RESET")" --export-json "$HF_APPLY" --style basic \
    -n "sqlx migrate run" "$SQLX_RUN 2>>$L/hf-sqlx-run.stderr" \
    -n "opsbook migrate up" "$OPS_UP 2>>$L/hf-opsbook-up.stderr" >&2; then
    for f in "$WORK"/logs/hf-*.stderr; do [[ -s $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    die "hyperfine (apply) failed"
fi
# The last prepared run was opsbook's, so the scratch database is fully applied by opsbook again.
verify_state "opsbook migrate up (last hyperfine run)"

# ---------------------------------------------------------------- hyperfine: check
log "hyperfine (check): 2 warmups + $CHECK_RUNS runs per command on the fully applied database"
if ! hyperfine --shell=bash --warmup 2 --runs "$CHECK_RUNS" --export-json "$HF_CHECK" --style basic \
    -n "opsbook migrate check" "$OPS_CHECK 2>>$L/hf-opsbook-check.stderr" \
    -n "sqlx migrate info" "$SQLX_INFO 2>>$L/hf-sqlx-info.stderr" >&2; then
    for f in "$WORK"/logs/hf-*.stderr; do [[ -s $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    die "hyperfine (check) failed"
fi

# ---------------------------------------------------------------- summary
machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$INVOKED\`"
    echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r)"
    echo "- opsbook: $("$OPSBOOK" --version 2>/dev/null | head -n1), binary built $(date -u -r "$OPSBOOK" '+%Y-%m-%d %H:%M UTC') (tree now: git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit yet')$([[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ' + uncommitted changes'))"
    echo "- load average (1/5/15 min) at the start of the timed runs: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg) — other work on the machine skews the timings"
    echo "- tools: $("$SQLX" --version 2>/dev/null | head -n1), $(hyperfine --version), $("$PSQL" --version); sandbox server PostgreSQL $SERVER_VERSION ($SANDBOX_SETTINGS)"
    echo
    echo '```'
    echo "\$ free -g"
    free -g
    echo '```'
}

summary=$WORK/summary.md
HF_APPLY=$HF_APPLY HF_CHECK=$HF_CHECK MIGRATIONS=$MIGRATIONS TABLES=$TABLES RUNS=$RUNS CHECK_RUNS=$CHECK_RUNS \
    CHECK_TARGET_MS=$CHECK_TARGET_MS LINT=$LINT SIDE_ROWS=$SIDE_ROWS \
    SQLX_RUN_RSS=$SQLX_RUN_RSS OPS_UP_RSS=$OPS_UP_RSS OPS_CHECK_RSS=$OPS_CHECK_RSS SQLX_INFO_RSS=$SQLX_INFO_RSS \
    SQLX_RUN_SECS=$SQLX_RUN_SECS OPS_UP_SECS=$OPS_UP_SECS SQLX_EXEC_SECS=$SQLX_EXEC_SECS OPS_EXEC_SECS=$OPS_EXEC_SECS \
    COMPAT_OPS=$COMPAT_OPS COMPAT_SQLX=$COMPAT_SQLX \
    HF_APPLY_NAME="bench/.work/$(basename "$HF_APPLY")" HF_CHECK_NAME="bench/.work/$(basename "$HF_CHECK")" \
    python3 >"$summary" <<'EOF'
import json, os
e = os.environ
apply = {r["command"]: r for r in json.load(open(e["HF_APPLY"]))["results"]}
check = {r["command"]: r for r in json.load(open(e["HF_CHECK"]))["results"]}
n, tables = int(e["MIGRATIONS"]), int(e["TABLES"])

def rss(kib):
    return f"{int(kib) / 1024:.1f} MiB" if kib else "missing (/usr/bin/time)"

def row(r, base, kib, unit):
    f = 1000 if unit == "ms" else 1
    fmt = (lambda x: f"{x * f:.1f}") if unit == "ms" else (lambda x: f"{x:.3f}")
    ratio = "1.00× (baseline)" if r is base else f"**{r['median'] / base['median']:.2f}×**"
    return (f"| `{r['command']}` | {fmt(r['median'])} | {fmt(r['min'])} | {fmt(r['max'])} | "
            f"{fmt(r['mean'])} ± {fmt(r['stddev'] or 0)} | {ratio} | {rss(kib)} |")

s_run, o_up = apply["sqlx migrate run"], apply["opsbook migrate up"]
o_chk, s_info = check["opsbook migrate check"], check["sqlx migrate info"]
print(f"{n} generated sqlx-style migrations ({tables} `CREATE TABLE t<i> (id bigint PRIMARY KEY, name text)`, "
      f"{n - tables} `ALTER TABLE t<i-1> ADD COLUMN note text`), one per file, lint-clean for opsbook "
      f"(`opsbook migrate lint`: {e['LINT']}). One throwaway sandbox cluster on 127.0.0.1; the scratch "
      f"database is dropped and recreated before every apply run (hyperfine `--prepare`, not timed).")
print()
print(f"Apply: {e['RUNS']} runs per command.")
print()
print("| command | median s | min s | max s | mean ± σ s | ratio to sqlx | peak RSS |")
print("|---|---:|---:|---:|---:|---:|---:|")
print(row(s_run, s_run, e["SQLX_RUN_RSS"], "s"))
print(row(o_up, s_run, e["OPS_UP_RSS"], "s"))
print()
print(f"Check (all {n} applied by opsbook): 2 warmups + {e['CHECK_RUNS']} runs per command.")
print()
print("| command | median ms | min ms | max ms | mean ± σ ms | ratio to sqlx | peak RSS |")
print("|---|---:|---:|---:|---:|---:|---:|")
print(row(s_info, s_info, e["SQLX_INFO_RSS"], "ms"))
print(row(o_chk, s_info, e["OPS_CHECK_RSS"], "ms"))
print()
r = o_up["median"] / s_run["median"]
print(f"- apply, medians: opsbook/sqlx **{r:.2f}×** ({o_up['median'] - s_run['median']:+.2f} s; "
      f"{s_run['median'] / n * 1000:.2f} ms vs {o_up['median'] / n * 1000:.2f} ms per migration)")
cm = o_chk["median"] * 1000
target = float(e["CHECK_TARGET_MS"])
print(f"- `opsbook migrate check` median **{cm:.1f} ms** — target < {target:g} ms: "
      f"**{'met' if cm < target else 'NOT met'}**; `sqlx migrate info` {s_info['median'] * 1000:.1f} ms")
sr, orr = float(e["SQLX_RUN_SECS"]), float(e["OPS_UP_SECS"])
se, oe = float(e["SQLX_EXEC_SECS"]), float(e["OPS_EXEC_SECS"])
print(f"- where the time goes (the one /usr/bin/time run of each): sum of `_sqlx_migrations.execution_time` "
      f"(each migration's transaction incl. its history rows and commit) sqlx {se:.3f} s of {sr:.3f} s wall, "
      f"opsbook {oe:.3f} s of {orr:.3f} s wall; the rest is start-up, reading/checksumming (opsbook: and linting) "
      f"the files, connecting, locking and reading the history")
print(f"- compatibility: `opsbook migrate check` accepts the history `sqlx migrate run` wrote: {e['COMPAT_OPS']}; "
      f"`sqlx migrate info` shows all {n} installed, same checksums, after `opsbook migrate up`: {e['COMPAT_SQLX']} "
      f"(opsbook also wrote {e['SIDE_ROWS']} rows to `_opsbook_migrations`)")
print(f"- peak RSS: `/usr/bin/time -v` Maximum resident set size of one extra run of each command")
print()
print(f"Raw hyperfine results: `{e['HF_APPLY_NAME']}`, `{e['HF_CHECK_NAME']}`")
EOF

emit() { # $1 = title, $2 = summary file: print, and append to RESULTS.md
    local out
    out=$({ echo "## $1 — $(date -u +%Y-%m-%d)"; echo; machine_info; echo; cat "$2"; echo; })
    printf '%s\n' "$out"
    if [[ ! -s $RESULTS ]]; then
        printf '# opsbook benchmark results\n\nAppended by the scripts in `bench/` (see their headers for what is measured and how to run them).\n\n' >"$RESULTS"
    fi
    printf '%s\n\n' "$out" >>"$RESULTS"
    log "appended to $RESULTS"
}
emit "Migration benchmark" "$summary"
