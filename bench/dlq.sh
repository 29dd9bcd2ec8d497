#!/usr/bin/env bash
# Dead-letter replay benchmark: `opsbook dlq-replay replay --concurrency 32` of N dead letters
# against the seeds' manual way — a sequential `curl` loop calling the service's
# `POST /v1/webhooks/dlq/:id/replay` once per id — in the same run, same database, same receiver;
# then the rate accuracy of `--rate`.
#
#   bench/dlq.sh                      # N=10000 RUNS=3 CONCURRENCY=32 RATE=200 RATE_N=2000
#   N=500 RUNS=1 bench/dlq.sh         # quick end-to-end check
#   SKIP_BUILD=1 bench/dlq.sh         # use target/release/opsbook, target/fixtures/examples/dlq_peer as they are
#
# Peers (examples/dlq_peer.rs, one process, built at opt-level 3 in the `fixtures` profile): a
# webhook receiver that answers 200 and counts arrivals (first/last arrival times for the rate),
# and the service's replay endpoint, which per call locks the row (SELECT … FOR UPDATE), POSTs
# its payload to the same receiver with a pooled HTTP client, deletes it on 2xx and commits —
# the same work opsbook does per row, so the baseline pays only for being one synchronous call
# per id.
#
# Setup (not timed): `opsbook sandbox up` in a fresh work directory (throwaway local Postgres on
# 127.0.0.1), `opsbook dlq-replay init`, and before every timed run N rows inserted with one
# INSERT … SELECT generate_series. Each run checks afterwards that the receiver counted N
# arrivals and the table is empty. Peak RSS of opsbook: GNU time -v of each opsbook run.
#
# Output: a Markdown summary on stdout, appended to bench/RESULTS.md (RESULTS=FILE to change)
# with the command line, date and machine.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
N=${N:-10000}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-32}
RATE=${RATE:-200}
RATE_N=${RATE_N:-2000}
RESULTS=${RESULTS:-$SCRIPT_DIR/RESULTS.md}
[[ $RESULTS == /* ]] || RESULTS=$PWD/$RESULTS
INVOKED="N=$N RUNS=$RUNS CONCURRENCY=$CONCURRENCY RATE=$RATE RATE_N=$RATE_N${SKIP_BUILD:+ SKIP_BUILD=$SKIP_BUILD} bench/dlq.sh"

die() { echo "dlq.sh: $*" >&2; exit 1; }
log() { echo "dlq.sh: $*" >&2; }
for tool in curl python3 psql /usr/bin/time; do command -v "$tool" >/dev/null || die "needs $tool"; done

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --quiet --bin opsbook && cargo build --profile fixtures --quiet --example dlq_peer)
fi
OPSBOOK=$ROOT/target/release/opsbook
PEER=$ROOT/target/fixtures/examples/dlq_peer
[[ -x $OPSBOOK && -x $PEER ]] || die "missing $OPSBOOK or $PEER (run without SKIP_BUILD)"

WORK=$(mktemp -d /tmp/opsbook-bench-dlq.XXXXXX)
chmod 755 "$WORK" # the sandbox's server runs as `postgres` when we are root
PEER_PID=""
cleanup() {
    [[ -n $PEER_PID ]] && kill "$PEER_PID" 2>/dev/null || true
    (cd "$WORK" && "$OPSBOOK" sandbox down >/dev/null 2>&1) || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
unset DATABASE_URL OPSBOOK_STORE OPSBOOK_CONFIG OPSBOOK_PROFILE
"$OPSBOOK" sandbox up >sandbox.out 2>sandbox.err || die "sandbox up failed: $(cat sandbox.err)"
# shellcheck disable=SC1091
. .opsbook/sandbox/env
export DATABASE_URL
# libpq variables for psql from the URL, so the password stays out of argv.
eval "$(python3 - "$DATABASE_URL" <<'EOF'
import sys, shlex, urllib.parse as u
p = u.urlsplit(sys.argv[1])
for k, v in (("PGHOST", p.hostname), ("PGPORT", p.port), ("PGUSER", u.unquote(p.username or "")),
             ("PGPASSWORD", u.unquote(p.password or "")), ("PGDATABASE", p.path.lstrip("/"))):
    print(f"export {k}={shlex.quote(str(v))}")
EOF
)"
[[ $PGHOST == 127.0.0.1 ]] || die "the sandbox is at $PGHOST, not 127.0.0.1"
pgq() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RX=127.0.0.1:$(free_port)
SVC=127.0.0.1:$(free_port)
"$PEER" --receiver "$RX" --service "$SVC" --database-url "$DATABASE_URL" >peer.out 2>peer.err &
PEER_PID=$!
for _ in $(seq 100); do grep -q ready peer.out 2>/dev/null && break; sleep 0.1; done
grep -q ready peer.out || die "dlq_peer did not start: $(cat peer.err)"

"$OPSBOOK" dlq-replay init >/dev/null
fill() {
    pgq -c "TRUNCATE opsbook_dead_letters RESTART IDENTITY" \
        -c "INSERT INTO opsbook_dead_letters (target_url, payload, event_type, tenant)
            SELECT 'http://$RX/hooks/' || (g % 4), '{\"order\":' || g || ',\"status\":\"paid\",\"items\":[1,2,3]}',
                   'order.paid', 'acme' FROM generate_series(1, $1) g"
    curl -fsS -X POST "http://$RX/reset" >/dev/null
}
check() { # expected arrivals
    local count left
    count=$(curl -fsS "http://$RX/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
    left=$(pgq -c "SELECT count(*) FROM opsbook_dead_letters")
    [[ $count == "$1" && $left == 0 ]] || die "expected $1 arrivals and an empty table, got $count arrivals and $left rows left"
}
now() { date +%s.%N; }

: >times.tsv
for run in $(seq "$RUNS"); do
    fill "$N"
    t0=$(now)
    /usr/bin/time -v -o "time-$run.txt" "$OPSBOOK" dlq-replay replay --yes --concurrency "$CONCURRENCY" --output json >"replay-$run.json"
    t1=$(now)
    check "$N"
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "time-$run.txt")
    echo -e "opsbook\t$run\t$(python3 -c "print($t1-$t0)")\t$rss" >>times.tsv
    log "run $run: opsbook $(tail -1 times.tsv | cut -f3)s"

    fill "$N"
    pgq -c "SELECT id FROM opsbook_dead_letters ORDER BY id" >ids.txt
    t0=$(now)
    failed=0
    while read -r id; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$SVC/v1/webhooks/dlq/$id/replay") || code=000
        [[ $code == 200 ]] || failed=$((failed + 1))
    done <ids.txt
    t1=$(now)
    ((failed == 0)) || die "the curl loop saw $failed failed replays"
    check "$N"
    echo -e "curl-loop\t$run\t$(python3 -c "print($t1-$t0)")\t-" >>times.tsv
    log "run $run: curl loop $(tail -1 times.tsv | cut -f3)s"
done

fill "$RATE_N"
"$OPSBOOK" dlq-replay replay --yes --concurrency "$CONCURRENCY" --rate "$RATE" --output json >rate.json
check "$RATE_N"
curl -fsS "http://$RX/stats" >rate-stats.json

SUMMARY=$(python3 - "$N" "$RUNS" "$CONCURRENCY" "$RATE" "$RATE_N" <<'EOF'
import json, statistics, sys
n, runs, conc, rate, rate_n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rows = [l.rstrip("\n").split("\t") for l in open("times.tsv")]
ops = [float(r[2]) for r in rows if r[0] == "opsbook"]
loop = [float(r[2]) for r in rows if r[0] == "curl-loop"]
rss = [int(r[3]) for r in rows if r[0] == "opsbook"]
mo, ml = statistics.median(ops), statistics.median(loop)
st = json.load(open("rate-stats.json"))
measured = (st["count"] - 1) / (st["last"] - st["first"])
dev = (measured - rate) / rate * 100
fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print(f"| variant | median s | runs (s) | throughput (dead letters/s) |")
print(f"|---|---:|---|---:|")
print(f"| sequential `curl` loop → `POST /v1/webhooks/dlq/:id/replay` (baseline) | {ml:.2f} | {fmt(loop)} | {n/ml:.0f} |")
print(f"| `opsbook dlq-replay replay --concurrency {conc}` | {mo:.2f} | {fmt(ops)} | {n/mo:.0f} |")
print()
ratio = ml / mo
print(f"- throughput ratio: **{ratio:.1f}×** the curl loop — target ≥ 10×: **{'met' if ratio >= 10 else 'NOT met'}**")
print(f"- peak RSS of opsbook (GNU time -v, max of {len(rss)} runs): {max(rss)/1024:.1f} MiB")
print(f"- `--rate {rate:g}` over {rate_n} dead letters: measured at the receiver {measured:.2f}/s "
      f"((arrivals − 1) ÷ (last − first arrival)), {dev:+.2f}% — target ±5%: **{'met' if abs(dev) <= 5 else 'NOT met'}**")
EOF
)
{
    echo
    echo "## dlq-replay: replay vs a sequential curl loop, and --rate accuracy"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$INVOKED\`"
    echo "- machine: $(nproc) CPUs, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews timings)"
    echo "- opsbook: $("$OPSBOOK" --version), git $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- src examples || echo ' + uncommitted changes')"
    echo "- data: $N rows in opsbook_dead_letters of a sandbox Postgres on 127.0.0.1, 4 target paths on one local receiver (examples/dlq_peer.rs); $RUNS run(s) of each, alternating, each on freshly inserted rows"
    echo
    echo "$SUMMARY"
} | tee -a "$RESULTS"
