
use builtin;
use str;

set edit:completion:arg-completer[opsbook] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'opsbook'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'opsbook'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand backup 'Streaming database backups to S3/R2 or a local directory: run, list, verify, prune'
            cand migrate 'Schema migrations (sqlx-compatible history): up, status, check, validate, dry-run, lint, new, baseline'
            cand pitr 'Point-in-time recovery through pgBackRest: setup, backup, status, check, expire'
            cand restore 'Restore a dump backup into a new database: pick it (id, latest, --before TIME), verify it, create the database, restore, compare row counts; a failed restore drops it again'
            cand restore-drill 'Prove a backup restores: download and check it, restore into a scratch database or a throwaway cluster, compare row counts, run checks and migrations, sample the media bucket, measure RTO/RPO, clean up'
            cand provision 'Plan and apply a new environment from the profile''s [provision] table: database, roles, grants, extensions, bucket, secrets in the .env file, migrations, seeds'
            cand rotate-secrets 'Rotate secrets with a journaled create → set → test → finish → revoke protocol: PostgreSQL passwords (single or alternating logins), random keys, password hashes, S3 access keys (IAM), gateway credentials (HTTP); stores: .env, AWS Secrets Manager, Vault'
            cand promote-check 'The promotion checklist: secrets, database TLS, CSP, HSTS, CORS, headers, telemetry, rate limits, backups, migrations, health and metrics — concurrently, with waivers'
            cand dlq-replay 'Dead-letter queue: list, stats (alert threshold), replay with rate limits, retries, signing and claim-once guarantees, purge with an archive'
            cand run 'Run a runbook: declarative TOML steps with a journal, resumable after a failure'
            cand runbook 'List, show, validate runbooks, or print the format''s JSON Schema'
            cand sandbox 'A throwaway local Postgres cluster with an example database, plus a local store'
            cand schedule 'Print crontab entries, systemd units or Kubernetes CronJobs that run runbooks on their schedule'
            cand completions 'Print a shell completion script'
            cand man 'Write man pages (one per command) to a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;backup'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand run 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last'
            cand list 'List complete backups (reads manifests only)'
            cand verify 'Check a backup''s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails'
            cand prune 'Delete backups outside the retention policy, orphaned objects and stale uploads'
            cand objects 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;backup;run'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Backup set name (a path segment in the store) [default: main]'
            cand --parallel 'With --all: how many sets run at once'
            cand --compression 'Compression: zstd or zstd:LEVEL (1-19) [default: zstd:1, the fastest; higher levels spend more CPU for smaller backups]'
            cand --encrypt-to 'Encrypt to this age recipient (age1…); repeat for several'
            cand --row-counts 'Per-table row counts recorded in the manifest [default: exact]'
            cand --notify-url 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error'
            cand --metrics-file 'Prometheus textfile to update (last run, success, duration and the job''s figures)'
            cand --part-size 'Upload part size (e.g. 16MiB); every part but the last has exactly this size (R2 requires it) [default: 8MiB, larger for databases over ~64 GiB to stay under 10,000 parts]'
            cand --upload-concurrency 'Parts uploaded at once; peak memory is about part size × (this + 1) plus ~20 MiB [default: 2]'
            cand --keep-last 'Keep the N newest backups'
            cand --keep-hourly 'Keep the newest backup of each of the last N hours that have one'
            cand --keep-daily 'Keep the newest backup of each of the last N days that have one'
            cand --keep-weekly 'Keep the newest backup of each of the last N ISO weeks that have one'
            cand --keep-monthly 'Keep the newest backup of each of the last N months that have one'
            cand --keep-yearly 'Keep the newest backup of each of the last N years that have one'
            cand --keep-within 'Keep every backup within this duration of the newest one (e.g. 14d, 36h)'
            cand --min-keep 'Never keep fewer than the N newest backups'
            cand --tz 'Time zone in which days, weeks, months and years are counted [default: profile''s time_zone, else UTC]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --all 'Back up every set declared in the profile ([profiles.NAME.sets.SET]); continues past failures and exits with the worst outcome'
            cand --globals 'Also store `pg_dumpall --globals-only` (roles, tablespaces) without role passwords'
            cand --globals-with-passwords 'With --globals: include role password hashes (needs superuser)'
            cand --prune 'Prune the set by its retention policy after the new backup is complete'
            cand --force 'Allow deleting more than half of the set''s backups'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;backup;list'= {
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Only this set [default: every set in the store]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;backup;verify'= {
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Backup set name [default: main]'
            cand --identity 'age identity file (AGE-SECRET-KEY-1…) for --deep on encrypted backups'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --deep 'Also decrypt, decompress and read the archive with pg_restore --list'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;backup;prune'= {
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Backup set name [default: main]'
            cand --keep-last 'Keep the N newest backups'
            cand --keep-hourly 'Keep the newest backup of each of the last N hours that have one'
            cand --keep-daily 'Keep the newest backup of each of the last N days that have one'
            cand --keep-weekly 'Keep the newest backup of each of the last N ISO weeks that have one'
            cand --keep-monthly 'Keep the newest backup of each of the last N months that have one'
            cand --keep-yearly 'Keep the newest backup of each of the last N years that have one'
            cand --keep-within 'Keep every backup within this duration of the newest one (e.g. 14d, 36h)'
            cand --min-keep 'Never keep fewer than the N newest backups'
            cand --tz 'Time zone in which days, weeks, months and years are counted [default: profile''s time_zone, else UTC]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --force 'Allow deleting more than half of the set''s backups'
            cand --dry-run 'Show the plan with a reason per backup; delete nothing'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;backup;objects'= {
            cand --from 'The store to copy: s3://bucket/prefix, file:///path, a directory, or the name of a [profiles.NAME.stores.STORE] table (its endpoint and credentials apply to URLs under it)'
            cand --to 'Where the copy lives: a second provider (s3://…) or a local directory; same forms as --from'
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Object set name: inventories are stored under this set [default: media]'
            cand --concurrency 'Objects copied at once [default: 8]'
            cand --retain-deleted 'How long a copy is kept after its source is deleted (e.g. 30d, 12h, 0s) [default: 30d]'
            cand --max-bytes 'Copy at most about this many bytes in this run (e.g. 50GiB); the rest is left for the next run'
            cand --part-size 'Multipart part size [default: 8MiB]. Objects larger than this go multipart, except that S3 destinations taking unsigned bodies (HTTPS, loopback) stream objects up to --multipart-threshold in one PutObject'
            cand --multipart-threshold 'Largest object streamed in a single PutObject, without holding it in memory, where the destination allows it [default: 64MiB; at most 5GiB]'
            cand --retries 'Retries per object after 5xx answers, throttling, timeouts or broken connections, with exponential backoff [default: 4]'
            cand --notify-url 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error'
            cand --metrics-file 'Prometheus textfile to update (last run, success, duration and the job''s figures)'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --delete-extraneous 'Remove copies whose source was deleted, once the source has been gone for --retain-deleted. Without it, such copies are kept'
            cand --dry-run 'Show what would be copied and removed; copy, remove and write nothing'
            cand --force 'Go ahead even when the run would mark or remove more than half of the copy''s objects as deleted at the source (refused otherwise: a wrong or emptied --from looks like that)'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;backup;help'= {
            cand run 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last'
            cand list 'List complete backups (reads manifests only)'
            cand verify 'Check a backup''s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails'
            cand prune 'Delete backups outside the retention policy, orphaned objects and stale uploads'
            cand objects 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;backup;help;run'= {
        }
        &'opsbook;backup;help;list'= {
        }
        &'opsbook;backup;help;verify'= {
        }
        &'opsbook;backup;help;prune'= {
        }
        &'opsbook;backup;help;objects'= {
        }
        &'opsbook;backup;help;help'= {
        }
        &'opsbook;migrate'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand up 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe'
            cand status 'Applied, pending, changed and missing migrations, and other tools'' history tables'
            cand check 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only'
            cand validate 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift'
            cand dry-run 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails'
            cand lint 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors'
            cand new 'Create the next timestamped migration file'
            cand baseline 'Record migrations up to VERSION as applied without running them (existing schemas)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;migrate;up'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --lock-wait 'How long to wait for the migration lock before exiting 4 [default: 60s]'
            cand --lock-timeout 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]'
            cand --statement-timeout 'statement_timeout set for every migration [default: the server''s]'
            cand --target 'Apply up to and including this version'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --allow-unsafe 'Apply even when pending migrations have lint errors'
            cand --ignore-missing 'Go on when applied migrations have no file (e.g. deploying an older branch)'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;status'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --lock-wait 'How long to wait for the migration lock before exiting 4 [default: 60s]'
            cand --lock-timeout 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]'
            cand --statement-timeout 'statement_timeout set for every migration [default: the server''s]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;check'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --lock-wait 'How long to wait for the migration lock before exiting 4 [default: 60s]'
            cand --lock-timeout 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]'
            cand --statement-timeout 'statement_timeout set for every migration [default: the server''s]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;validate'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --lock-wait 'How long to wait for the migration lock before exiting 4 [default: 60s]'
            cand --lock-timeout 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]'
            cand --statement-timeout 'statement_timeout set for every migration [default: the server''s]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --repair-cosmetic 'Record the new checksum of files whose change is only cosmetic (whitespace, line endings, BOM, comments), so sqlx and opsbook accept them again'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;dry-run'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --lock-wait 'How long to wait for the migration lock before exiting 4 [default: 60s]'
            cand --lock-timeout 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]'
            cand --statement-timeout 'statement_timeout set for every migration [default: the server''s]'
            cand --target 'Dry-run up to and including this version'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;lint'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --lock-wait 'How long to wait for the migration lock before exiting 4 [default: 60s]'
            cand --lock-timeout 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]'
            cand --statement-timeout 'statement_timeout set for every migration [default: the server''s]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --pending 'Lint only the migrations the database has not applied yet'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;new'= {
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --reversible 'Create an .up.sql/.down.sql pair'
            cand --flyway 'Use a Flyway name (V<version>__<name>.sql) [default: the directory''s style]'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;baseline'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --lock-wait 'How long to wait for the migration lock before exiting 4 [default: 60s]'
            cand --lock-timeout 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]'
            cand --statement-timeout 'statement_timeout set for every migration [default: the server''s]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;migrate;help'= {
            cand up 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe'
            cand status 'Applied, pending, changed and missing migrations, and other tools'' history tables'
            cand check 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only'
            cand validate 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift'
            cand dry-run 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails'
            cand lint 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors'
            cand new 'Create the next timestamped migration file'
            cand baseline 'Record migrations up to VERSION as applied without running them (existing schemas)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;migrate;help;up'= {
        }
        &'opsbook;migrate;help;status'= {
        }
        &'opsbook;migrate;help;check'= {
        }
        &'opsbook;migrate;help;validate'= {
        }
        &'opsbook;migrate;help;dry-run'= {
        }
        &'opsbook;migrate;help;lint'= {
        }
        &'opsbook;migrate;help;new'= {
        }
        &'opsbook;migrate;help;baseline'= {
        }
        &'opsbook;migrate;help;help'= {
        }
        &'opsbook;pitr'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand setup 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host'
            cand backup 'Take a physical backup under the stanza''s lock, with the profile''s pings and metrics'
            cand status 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target'
            cand check 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem'
            cand expire 'Expire backups by the profile''s retention, never the one the newest drill restored'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;pitr;setup'= {
            cand --stanza 'pgBackRest stanza [default: profile''s pitr.stanza, else main]'
            cand --pg-path 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]'
            cand --repo 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --dry-run 'Show the plan; change nothing'
            cand --restart 'Restart PostgreSQL when archive_mode needs it (asks first; --yes in scripts)'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;pitr;backup'= {
            cand --stanza 'pgBackRest stanza [default: profile''s pitr.stanza, else main]'
            cand --pg-path 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]'
            cand --repo 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]'
            cand --type 'Backup type [default: incr, or full when there is none to build on]'
            cand --notify-url 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error'
            cand --metrics-file 'Prometheus textfile to update (last run, success, duration and the job''s figures)'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;pitr;status'= {
            cand --stanza 'pgBackRest stanza [default: profile''s pitr.stanza, else main]'
            cand --pg-path 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]'
            cand --repo 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --canary 'First write a canary row (the time now) and switch WAL, so a later PITR drill can prove the point it reaches; run it from cron every few minutes'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;pitr;check'= {
            cand --stanza 'pgBackRest stanza [default: profile''s pitr.stanza, else main]'
            cand --pg-path 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]'
            cand --repo 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;pitr;expire'= {
            cand --stanza 'pgBackRest stanza [default: profile''s pitr.stanza, else main]'
            cand --pg-path 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]'
            cand --repo 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --dry-run 'Show what would be expired; expire nothing'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;pitr;help'= {
            cand setup 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host'
            cand backup 'Take a physical backup under the stanza''s lock, with the profile''s pings and metrics'
            cand status 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target'
            cand check 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem'
            cand expire 'Expire backups by the profile''s retention, never the one the newest drill restored'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;pitr;help;setup'= {
        }
        &'opsbook;pitr;help;backup'= {
        }
        &'opsbook;pitr;help;status'= {
        }
        &'opsbook;pitr;help;check'= {
        }
        &'opsbook;pitr;help;expire'= {
        }
        &'opsbook;pitr;help;help'= {
        }
        &'opsbook;restore'= {
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Backup set [default: main]'
            cand --backup 'latest, or a backup id (or unique prefix) [default: latest]'
            cand --before 'Restore the newest backup whose snapshot is older than TIME (RFC 3339, e.g. 2026-12-07T03:10:00Z, or "YYYY-MM-DD HH:MM[:SS]" in UTC)'
            cand --target-url 'Server on which the new database is created'
            cand --into 'Name of the new database to create and restore into; an existing database is refused and left untouched. A failed or interrupted restore drops it again'
            cand --jobs 'pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local file first (parallel restore needs a seekable file)'
            cand --identity 'age identity file for encrypted backups'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --dry-run 'Print the plan (backup, server, database) and touch nothing'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;restore-drill'= {
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Backup set [default: main]'
            cand --backup 'latest, random, or a backup id (or unique prefix)'
            cand --seed 'Seed for --backup random and object sampling (reported, so a drill can be repeated)'
            cand --target-url 'Server to restore on: the drill creates opsbook_drill_<id> there and drops it afterwards; it never touches a database it did not create'
            cand --target-time 'With --pitr: recover to this time (RFC 3339, e.g. 2026-12-07T03:10:00Z; no zone means UTC; or an age such as 20m), `latest` (the end of the archived WAL) or `random[:24h]` (a random time in that window, reported) [default: latest]'
            cand --target 'With --pitr: recover to this time (RFC 3339, e.g. 2026-12-07T03:10:00Z; no zone means UTC; or an age such as 20m), `latest` (the end of the archived WAL) or `random[:24h]` (a random time in that window, reported) [default: latest]'
            cand --stanza 'With --pitr: the pgBackRest stanza [default: profile''s pitr.stanza, else main]'
            cand --migrations 'Apply these migrations to the restored database: newer ones must apply cleanly'
            cand --check-sql 'SQL assertions; every statement must return true or a non-zero count'
            cand --objects 'Media bucket to sample (s3://bucket[/prefix]): HEAD and a ranged GET per sampled key'
            cand --sample 'How many objects to sample [default: 20]'
            cand --objects-query 'Take keys from this query over the restored database (first column) instead of a listing, e.g. "SELECT image_key FROM products"'
            cand --objects-inventory 'Check sampled objects against the newest inventory of this object set (`backup objects --set`): each listed key is read whole and its size and SHA-256 compared'
            cand --rpo-target 'Fail when the newest backup''s snapshot is older than this (e.g. 26h)'
            cand --rto-target 'Fail when download + restore + verify takes longer than this (e.g. 30m)'
            cand --jobs 'pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local file first (parallel restore needs a seekable file)'
            cand --spool-dir 'Where to spool the archive with --jobs > 1 [default: the system temp dir]'
            cand --report 'Write a Markdown report here'
            cand --junit 'Write JUnit XML here (one test case per step)'
            cand --identity 'age identity file for encrypted backups'
            cand --notify-url 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error'
            cand --metrics-file 'Prometheus textfile to update (last run, success, duration and the job''s figures)'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --ephemeral 'Restore into a throwaway local cluster (initdb; runs as `postgres` when root)'
            cand --pitr 'Drill point-in-time recovery instead of a dump: pgBackRest restores the stanza into a throwaway local cluster, recovers to --target-time and proves it with canary rows'
            cand --globals 'With --ephemeral: also restore the backup''s globals (roles), keeping owners and grants'
            cand --presign 'Read sampled objects through presigned URLs'
            cand --keep 'Leave the restored database or cluster in place (the report says where)'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;provision'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand plan 'Compare the profile''s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing'
            cand apply 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;provision;plan'= {
            cand --admin-database-url 'Superuser/admin connection used to create roles and the database [default: the profile''s admin_database_url]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;provision;apply'= {
            cand --admin-database-url 'Superuser/admin connection used to create roles and the database [default: the profile''s admin_database_url]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;provision;help'= {
            cand plan 'Compare the profile''s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing'
            cand apply 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;provision;help;plan'= {
        }
        &'opsbook;provision;help;apply'= {
        }
        &'opsbook;provision;help;help'= {
        }
        &'opsbook;rotate-secrets'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand plan 'Which secrets are due (no value yet, never rotated, or older than max_age)'
            cand run 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs'
            cand status 'Age, last rotation, next due, strategy and fingerprint of every secret'
            cand rollback 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;rotate-secrets;plan'= {
            cand --admin-database-url 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;rotate-secrets;run'= {
            cand --admin-database-url 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --due 'Rotate every secret that is due'
            cand --resume 'Finish rotations a crash or failure left part-way'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;rotate-secrets;status'= {
            cand --admin-database-url 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;rotate-secrets;rollback'= {
            cand --admin-database-url 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;rotate-secrets;help'= {
            cand plan 'Which secrets are due (no value yet, never rotated, or older than max_age)'
            cand run 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs'
            cand status 'Age, last rotation, next due, strategy and fingerprint of every secret'
            cand rollback 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;rotate-secrets;help;plan'= {
        }
        &'opsbook;rotate-secrets;help;run'= {
        }
        &'opsbook;rotate-secrets;help;status'= {
        }
        &'opsbook;rotate-secrets;help;rollback'= {
        }
        &'opsbook;rotate-secrets;help;help'= {
        }
        &'opsbook;promote-check'= {
            cand --app-url 'The API''s base URL (health, metrics, CORS, rate limits)'
            cand --web-url 'The website''s URL (CSP, HSTS, security headers) [default: --app-url]'
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --env-file 'The environment''s .env file (JWT_SECRET, required variables, OTLP endpoint)'
            cand --compare-env-file 'Another environment''s .env file (e.g. staging''s): jwt-secret fails when its JWT_SECRET is the same (compared by fingerprint, never printed)'
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --set 'Backup set for backup-retention [default: main]'
            cand --migrations 'Migrations directory [default: profile''s migrate.dir, else ./migrations]'
            cand --only 'Only these checks (comma-separated ids)'
            cand --skip 'Skip these checks (comma-separated ids)'
            cand --ca-file 'Extra CA certificate (PEM) trusted for HTTPS checks'
            cand --timeout 'Per-check timeout'
            cand --junit 'Write JUnit XML here (one test case per check)'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;dlq-replay'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand init 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist'
            cand list 'List dead letters (oldest first) matching the filters'
            cand stats 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)'
            cand replay 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed'
            cand purge 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;dlq-replay;init'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --source-url 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)'
            cand --token-env 'Environment variable holding the API''s bearer token (http source)'
            cand --tenant-header 'Header carrying --tenant to the API [default: X-Tenant-Id]'
            cand --table 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;dlq-replay;list'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --source-url 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)'
            cand --token-env 'Environment variable holding the API''s bearer token (http source)'
            cand --tenant-header 'Header carrying --tenant to the API [default: X-Tenant-Id]'
            cand --table 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]'
            cand --id 'Only these ids (repeatable)'
            cand --since 'Failed at or after: RFC 3339, a date, or an age such as 24h'
            cand --until 'Failed before: RFC 3339, a date, or an age such as 1h'
            cand --endpoint 'Target URL glob (* and ?); without wildcards, a substring'
            cand --event 'Event type, exactly'
            cand --tenant 'Tenant, exactly (also sent as the tenant header to an http source)'
            cand --limit 'At most this many, oldest first'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --payloads 'Include payloads (JSON output only; they may hold personal data)'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;dlq-replay;stats'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --source-url 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)'
            cand --token-env 'Environment variable holding the API''s bearer token (http source)'
            cand --tenant-header 'Header carrying --tenant to the API [default: X-Tenant-Id]'
            cand --table 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]'
            cand --id 'Only these ids (repeatable)'
            cand --since 'Failed at or after: RFC 3339, a date, or an age such as 24h'
            cand --until 'Failed before: RFC 3339, a date, or an age such as 1h'
            cand --endpoint 'Target URL glob (* and ?); without wildcards, a substring'
            cand --event 'Event type, exactly'
            cand --tenant 'Tenant, exactly (also sent as the tenant header to an http source)'
            cand --limit 'At most this many, oldest first'
            cand --max 'Exit 1 when the DLQ holds more than N dead letters [default: the profile''s max, else 50]'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;dlq-replay;replay'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --source-url 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)'
            cand --token-env 'Environment variable holding the API''s bearer token (http source)'
            cand --tenant-header 'Header carrying --tenant to the API [default: X-Tenant-Id]'
            cand --table 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]'
            cand --id 'Only these ids (repeatable)'
            cand --since 'Failed at or after: RFC 3339, a date, or an age such as 24h'
            cand --until 'Failed before: RFC 3339, a date, or an age such as 1h'
            cand --endpoint 'Target URL glob (* and ?); without wildcards, a substring'
            cand --event 'Event type, exactly'
            cand --tenant 'Tenant, exactly (also sent as the tenant header to an http source)'
            cand --limit 'At most this many, oldest first'
            cand --rate 'Requests per second over all endpoints (retries included) [default: unlimited]'
            cand --endpoint-rate 'Requests per second to any one endpoint (scheme://host:port)'
            cand --concurrency 'Deliveries in flight at once (each holds a database connection) [default: 8]'
            cand --retries 'Retries per dead letter after the first attempt (5xx, 408, 429, timeouts, connection errors)'
            cand --timeout 'Timeout of one request (to the targets, or to the http source''s API)'
            cand --connect-timeout 'Connect timeout of one request'
            cand --breaker 'Consecutive failed deliveries that stop replaying to an endpoint for this run (0: never)'
            cand --signing-secret-env 'Environment variable with the Standard Webhooks secret(s), whsec_<base64>, several separated by spaces while rotating: signs every delivery'
            cand --confirm-above 'Ask for confirmation when more than N dead letters would be replayed'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --dry-run 'Show the plan and send nothing'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;dlq-replay;purge'= {
            cand --database-url 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments'
            cand --source-url 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)'
            cand --token-env 'Environment variable holding the API''s bearer token (http source)'
            cand --tenant-header 'Header carrying --tenant to the API [default: X-Tenant-Id]'
            cand --table 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]'
            cand --store 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path'
            cand --older-than 'Delete dead letters that failed longer ago than this, e.g. 30d'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;dlq-replay;help'= {
            cand init 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist'
            cand list 'List dead letters (oldest first) matching the filters'
            cand stats 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)'
            cand replay 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed'
            cand purge 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;dlq-replay;help;init'= {
        }
        &'opsbook;dlq-replay;help;list'= {
        }
        &'opsbook;dlq-replay;help;stats'= {
        }
        &'opsbook;dlq-replay;help;replay'= {
        }
        &'opsbook;dlq-replay;help;purge'= {
        }
        &'opsbook;dlq-replay;help;help'= {
        }
        &'opsbook;run'= {
            cand --param 'A parameter value; repeat for several'
            cand --resume 'Continue run RUN_ID after its last successful step, with the same parameters'
            cand --from 'Start at this step; earlier steps are skipped'
            cand --ack 'Acknowledge a manual step without a terminal; repeat for several'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand --dry-run 'Show what each step would do; built-in actions plan without side effects, shell steps are shown, not run'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;runbook'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List the runbooks in a directory with their description and schedule'
            cand show 'Show a runbook''s parameters and steps'
            cand validate 'Check runbooks without running them; every problem is reported with file, line and column'
            cand schema 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;runbook;list'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;runbook;show'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;runbook;validate'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;runbook;schema'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;runbook;help'= {
            cand list 'List the runbooks in a directory with their description and schedule'
            cand show 'Show a runbook''s parameters and steps'
            cand validate 'Check runbooks without running them; every problem is reported with file, line and column'
            cand schema 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;runbook;help;list'= {
        }
        &'opsbook;runbook;help;show'= {
        }
        &'opsbook;runbook;help;validate'= {
        }
        &'opsbook;runbook;help;schema'= {
        }
        &'opsbook;runbook;help;help'= {
        }
        &'opsbook;sandbox'= {
            cand --dir 'Sandbox directory'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand up 'Create (or restart) the sandbox and print the environment to export'
            cand down 'Stop the sandbox and delete its cluster, store and env file'
            cand status 'Show whether the sandbox exists and runs'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;sandbox;up'= {
            cand --dir 'Sandbox directory'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;sandbox;down'= {
            cand --dir 'Sandbox directory'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;sandbox;status'= {
            cand --dir 'Sandbox directory'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;sandbox;help'= {
            cand up 'Create (or restart) the sandbox and print the environment to export'
            cand down 'Stop the sandbox and delete its cluster, store and env file'
            cand status 'Show whether the sandbox exists and runs'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;sandbox;help;up'= {
        }
        &'opsbook;sandbox;help;down'= {
        }
        &'opsbook;sandbox;help;status'= {
        }
        &'opsbook;sandbox;help;help'= {
        }
        &'opsbook;schedule'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand crontab 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir'
            cand systemd 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook'
            cand k8s 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;schedule;crontab'= {
            cand --workdir 'Directory the runs start in; runbook paths inside it are written relative to it [default: the current directory]'
            cand --bin 'The opsbook executable to run [default: the absolute path of this executable]'
            cand --env-file 'KEY=VALUE file with the runs'' settings and secrets (DATABASE_URL, OPSBOOK_STORE, ...), loaded at every run; its values are never copied into the schedule'
            cand --log-dir 'Directory of the runs'' logs, one NAME.log per runbook'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;schedule;systemd'= {
            cand --workdir 'Directory the runs start in; runbook paths inside it are written relative to it [default: the current directory]'
            cand --bin 'The opsbook executable to run [default: the absolute path of this executable]'
            cand --env-file 'KEY=VALUE file with the runs'' settings and secrets (DATABASE_URL, OPSBOOK_STORE, ...), loaded at every run; its values are never copied into the schedule'
            cand --out 'Write the unit files into this directory (created when missing) instead of printing them'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;schedule;k8s'= {
            cand --image 'Container image with the opsbook binary'
            cand --secret 'Secret whose keys become the container''s environment (DATABASE_URL, OPSBOOK_STORE, ...)'
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;schedule;help'= {
            cand crontab 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir'
            cand systemd 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook'
            cand k8s 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;schedule;help;crontab'= {
        }
        &'opsbook;schedule;help;systemd'= {
        }
        &'opsbook;schedule;help;k8s'= {
        }
        &'opsbook;schedule;help;help'= {
        }
        &'opsbook;completions'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;man'= {
            cand --config 'Configuration file [default: ./opsbook.toml when present]'
            cand --profile 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]'
            cand --output 'Output format of stdout: human tables and lines, or exactly one JSON document'
            cand --color 'When to use colour on stderr'
            cand --log-format 'Log line format on stderr: text for people, JSON lines for log shippers'
            cand -y 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --yes 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
            cand --no-input 'Never prompt; fail with exit 5 when a confirmation would be needed'
            cand -v 'More log output (-v info, -vv debug, -vvv trace)'
            cand --verbose 'More log output (-v info, -vv debug, -vvv trace)'
            cand -q 'Less output: no progress, only errors on stderr'
            cand --quiet 'Less output: no progress, only errors on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'opsbook;help'= {
            cand backup 'Streaming database backups to S3/R2 or a local directory: run, list, verify, prune'
            cand migrate 'Schema migrations (sqlx-compatible history): up, status, check, validate, dry-run, lint, new, baseline'
            cand pitr 'Point-in-time recovery through pgBackRest: setup, backup, status, check, expire'
            cand restore 'Restore a dump backup into a new database: pick it (id, latest, --before TIME), verify it, create the database, restore, compare row counts; a failed restore drops it again'
            cand restore-drill 'Prove a backup restores: download and check it, restore into a scratch database or a throwaway cluster, compare row counts, run checks and migrations, sample the media bucket, measure RTO/RPO, clean up'
            cand provision 'Plan and apply a new environment from the profile''s [provision] table: database, roles, grants, extensions, bucket, secrets in the .env file, migrations, seeds'
            cand rotate-secrets 'Rotate secrets with a journaled create → set → test → finish → revoke protocol: PostgreSQL passwords (single or alternating logins), random keys, password hashes, S3 access keys (IAM), gateway credentials (HTTP); stores: .env, AWS Secrets Manager, Vault'
            cand promote-check 'The promotion checklist: secrets, database TLS, CSP, HSTS, CORS, headers, telemetry, rate limits, backups, migrations, health and metrics — concurrently, with waivers'
            cand dlq-replay 'Dead-letter queue: list, stats (alert threshold), replay with rate limits, retries, signing and claim-once guarantees, purge with an archive'
            cand run 'Run a runbook: declarative TOML steps with a journal, resumable after a failure'
            cand runbook 'List, show, validate runbooks, or print the format''s JSON Schema'
            cand sandbox 'A throwaway local Postgres cluster with an example database, plus a local store'
            cand schedule 'Print crontab entries, systemd units or Kubernetes CronJobs that run runbooks on their schedule'
            cand completions 'Print a shell completion script'
            cand man 'Write man pages (one per command) to a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'opsbook;help;backup'= {
            cand run 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last'
            cand list 'List complete backups (reads manifests only)'
            cand verify 'Check a backup''s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails'
            cand prune 'Delete backups outside the retention policy, orphaned objects and stale uploads'
            cand objects 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups'
        }
        &'opsbook;help;backup;run'= {
        }
        &'opsbook;help;backup;list'= {
        }
        &'opsbook;help;backup;verify'= {
        }
        &'opsbook;help;backup;prune'= {
        }
        &'opsbook;help;backup;objects'= {
        }
        &'opsbook;help;migrate'= {
            cand up 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe'
            cand status 'Applied, pending, changed and missing migrations, and other tools'' history tables'
            cand check 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only'
            cand validate 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift'
            cand dry-run 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails'
            cand lint 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors'
            cand new 'Create the next timestamped migration file'
            cand baseline 'Record migrations up to VERSION as applied without running them (existing schemas)'
        }
        &'opsbook;help;migrate;up'= {
        }
        &'opsbook;help;migrate;status'= {
        }
        &'opsbook;help;migrate;check'= {
        }
        &'opsbook;help;migrate;validate'= {
        }
        &'opsbook;help;migrate;dry-run'= {
        }
        &'opsbook;help;migrate;lint'= {
        }
        &'opsbook;help;migrate;new'= {
        }
        &'opsbook;help;migrate;baseline'= {
        }
        &'opsbook;help;pitr'= {
            cand setup 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host'
            cand backup 'Take a physical backup under the stanza''s lock, with the profile''s pings and metrics'
            cand status 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target'
            cand check 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem'
            cand expire 'Expire backups by the profile''s retention, never the one the newest drill restored'
        }
        &'opsbook;help;pitr;setup'= {
        }
        &'opsbook;help;pitr;backup'= {
        }
        &'opsbook;help;pitr;status'= {
        }
        &'opsbook;help;pitr;check'= {
        }
        &'opsbook;help;pitr;expire'= {
        }
        &'opsbook;help;restore'= {
        }
        &'opsbook;help;restore-drill'= {
        }
        &'opsbook;help;provision'= {
            cand plan 'Compare the profile''s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing'
            cand apply 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing'
        }
        &'opsbook;help;provision;plan'= {
        }
        &'opsbook;help;provision;apply'= {
        }
        &'opsbook;help;rotate-secrets'= {
            cand plan 'Which secrets are due (no value yet, never rotated, or older than max_age)'
            cand run 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs'
            cand status 'Age, last rotation, next due, strategy and fingerprint of every secret'
            cand rollback 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)'
        }
        &'opsbook;help;rotate-secrets;plan'= {
        }
        &'opsbook;help;rotate-secrets;run'= {
        }
        &'opsbook;help;rotate-secrets;status'= {
        }
        &'opsbook;help;rotate-secrets;rollback'= {
        }
        &'opsbook;help;promote-check'= {
        }
        &'opsbook;help;dlq-replay'= {
            cand init 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist'
            cand list 'List dead letters (oldest first) matching the filters'
            cand stats 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)'
            cand replay 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed'
            cand purge 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise'
        }
        &'opsbook;help;dlq-replay;init'= {
        }
        &'opsbook;help;dlq-replay;list'= {
        }
        &'opsbook;help;dlq-replay;stats'= {
        }
        &'opsbook;help;dlq-replay;replay'= {
        }
        &'opsbook;help;dlq-replay;purge'= {
        }
        &'opsbook;help;run'= {
        }
        &'opsbook;help;runbook'= {
            cand list 'List the runbooks in a directory with their description and schedule'
            cand show 'Show a runbook''s parameters and steps'
            cand validate 'Check runbooks without running them; every problem is reported with file, line and column'
            cand schema 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)'
        }
        &'opsbook;help;runbook;list'= {
        }
        &'opsbook;help;runbook;show'= {
        }
        &'opsbook;help;runbook;validate'= {
        }
        &'opsbook;help;runbook;schema'= {
        }
        &'opsbook;help;sandbox'= {
            cand up 'Create (or restart) the sandbox and print the environment to export'
            cand down 'Stop the sandbox and delete its cluster, store and env file'
            cand status 'Show whether the sandbox exists and runs'
        }
        &'opsbook;help;sandbox;up'= {
        }
        &'opsbook;help;sandbox;down'= {
        }
        &'opsbook;help;sandbox;status'= {
        }
        &'opsbook;help;schedule'= {
            cand crontab 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir'
            cand systemd 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook'
            cand k8s 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook'
        }
        &'opsbook;help;schedule;crontab'= {
        }
        &'opsbook;help;schedule;systemd'= {
        }
        &'opsbook;help;schedule;k8s'= {
        }
        &'opsbook;help;completions'= {
        }
        &'opsbook;help;man'= {
        }
        &'opsbook;help;help'= {
        }
    ]
    $completions[$command]
}
