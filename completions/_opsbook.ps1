
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'opsbook' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'opsbook'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'opsbook' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Streaming database backups to S3/R2 or a local directory: run, list, verify, prune')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Schema migrations (sqlx-compatible history): up, status, check, validate, dry-run, lint, new, baseline')
            [CompletionResult]::new('pitr', 'pitr', [CompletionResultType]::ParameterValue, 'Point-in-time recovery through pgBackRest: setup, backup, status, check, expire')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Restore a dump backup into a new database: pick it (id, latest, --before TIME), verify it, create the database, restore, compare row counts; a failed restore drops it again')
            [CompletionResult]::new('restore-drill', 'restore-drill', [CompletionResultType]::ParameterValue, 'Prove a backup restores: download and check it, restore into a scratch database or a throwaway cluster, compare row counts, run checks and migrations, sample the media bucket, measure RTO/RPO, clean up')
            [CompletionResult]::new('provision', 'provision', [CompletionResultType]::ParameterValue, 'Plan and apply a new environment from the profile''s [provision] table: database, roles, grants, extensions, bucket, secrets in the .env file, migrations, seeds')
            [CompletionResult]::new('rotate-secrets', 'rotate-secrets', [CompletionResultType]::ParameterValue, 'Rotate secrets with a journaled create → set → test → finish → revoke protocol: PostgreSQL passwords (single or alternating logins), random keys, password hashes, S3 access keys (IAM), gateway credentials (HTTP); stores: .env, AWS Secrets Manager, Vault')
            [CompletionResult]::new('promote-check', 'promote-check', [CompletionResultType]::ParameterValue, 'The promotion checklist: secrets, database TLS, CSP, HSTS, CORS, headers, telemetry, rate limits, backups, migrations, health and metrics — concurrently, with waivers')
            [CompletionResult]::new('dlq-replay', 'dlq-replay', [CompletionResultType]::ParameterValue, 'Dead-letter queue: list, stats (alert threshold), replay with rate limits, retries, signing and claim-once guarantees, purge with an archive')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a runbook: declarative TOML steps with a journal, resumable after a failure')
            [CompletionResult]::new('runbook', 'runbook', [CompletionResultType]::ParameterValue, 'List, show, validate runbooks, or print the format''s JSON Schema')
            [CompletionResult]::new('sandbox', 'sandbox', [CompletionResultType]::ParameterValue, 'A throwaway local Postgres cluster with an example database, plus a local store')
            [CompletionResult]::new('schedule', 'schedule', [CompletionResultType]::ParameterValue, 'Print crontab entries, systemd units or Kubernetes CronJobs that run runbooks on their schedule')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Write man pages (one per command) to a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;backup' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List complete backups (reads manifests only)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a backup''s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete backups outside the retention policy, orphaned objects and stale uploads')
            [CompletionResult]::new('objects', 'objects', [CompletionResultType]::ParameterValue, 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;backup;run' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Backup set name (a path segment in the store) [default: main]')
            [CompletionResult]::new('--parallel', '--parallel', [CompletionResultType]::ParameterName, 'With --all: how many sets run at once')
            [CompletionResult]::new('--compression', '--compression', [CompletionResultType]::ParameterName, 'Compression: zstd or zstd:LEVEL (1-19) [default: zstd:1, the fastest; higher levels spend more CPU for smaller backups]')
            [CompletionResult]::new('--encrypt-to', '--encrypt-to', [CompletionResultType]::ParameterName, 'Encrypt to this age recipient (age1…); repeat for several')
            [CompletionResult]::new('--row-counts', '--row-counts', [CompletionResultType]::ParameterName, 'Per-table row counts recorded in the manifest [default: exact]')
            [CompletionResult]::new('--notify-url', '--notify-url', [CompletionResultType]::ParameterName, 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Prometheus textfile to update (last run, success, duration and the job''s figures)')
            [CompletionResult]::new('--part-size', '--part-size', [CompletionResultType]::ParameterName, 'Upload part size (e.g. 16MiB); every part but the last has exactly this size (R2 requires it) [default: 8MiB, larger for databases over ~64 GiB to stay under 10,000 parts]')
            [CompletionResult]::new('--upload-concurrency', '--upload-concurrency', [CompletionResultType]::ParameterName, 'Parts uploaded at once; peak memory is about part size × (this + 1) plus ~20 MiB [default: 2]')
            [CompletionResult]::new('--keep-last', '--keep-last', [CompletionResultType]::ParameterName, 'Keep the N newest backups')
            [CompletionResult]::new('--keep-hourly', '--keep-hourly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N hours that have one')
            [CompletionResult]::new('--keep-daily', '--keep-daily', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N days that have one')
            [CompletionResult]::new('--keep-weekly', '--keep-weekly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N ISO weeks that have one')
            [CompletionResult]::new('--keep-monthly', '--keep-monthly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N months that have one')
            [CompletionResult]::new('--keep-yearly', '--keep-yearly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N years that have one')
            [CompletionResult]::new('--keep-within', '--keep-within', [CompletionResultType]::ParameterName, 'Keep every backup within this duration of the newest one (e.g. 14d, 36h)')
            [CompletionResult]::new('--min-keep', '--min-keep', [CompletionResultType]::ParameterName, 'Never keep fewer than the N newest backups')
            [CompletionResult]::new('--tz', '--tz', [CompletionResultType]::ParameterName, 'Time zone in which days, weeks, months and years are counted [default: profile''s time_zone, else UTC]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Back up every set declared in the profile ([profiles.NAME.sets.SET]); continues past failures and exits with the worst outcome')
            [CompletionResult]::new('--globals', '--globals', [CompletionResultType]::ParameterName, 'Also store `pg_dumpall --globals-only` (roles, tablespaces) without role passwords')
            [CompletionResult]::new('--globals-with-passwords', '--globals-with-passwords', [CompletionResultType]::ParameterName, 'With --globals: include role password hashes (needs superuser)')
            [CompletionResult]::new('--prune', '--prune', [CompletionResultType]::ParameterName, 'Prune the set by its retention policy after the new backup is complete')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Allow deleting more than half of the set''s backups')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;backup;list' {
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Only this set [default: every set in the store]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;backup;verify' {
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Backup set name [default: main]')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'age identity file (AGE-SECRET-KEY-1…) for --deep on encrypted backups')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--deep', '--deep', [CompletionResultType]::ParameterName, 'Also decrypt, decompress and read the archive with pg_restore --list')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;backup;prune' {
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Backup set name [default: main]')
            [CompletionResult]::new('--keep-last', '--keep-last', [CompletionResultType]::ParameterName, 'Keep the N newest backups')
            [CompletionResult]::new('--keep-hourly', '--keep-hourly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N hours that have one')
            [CompletionResult]::new('--keep-daily', '--keep-daily', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N days that have one')
            [CompletionResult]::new('--keep-weekly', '--keep-weekly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N ISO weeks that have one')
            [CompletionResult]::new('--keep-monthly', '--keep-monthly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N months that have one')
            [CompletionResult]::new('--keep-yearly', '--keep-yearly', [CompletionResultType]::ParameterName, 'Keep the newest backup of each of the last N years that have one')
            [CompletionResult]::new('--keep-within', '--keep-within', [CompletionResultType]::ParameterName, 'Keep every backup within this duration of the newest one (e.g. 14d, 36h)')
            [CompletionResult]::new('--min-keep', '--min-keep', [CompletionResultType]::ParameterName, 'Never keep fewer than the N newest backups')
            [CompletionResult]::new('--tz', '--tz', [CompletionResultType]::ParameterName, 'Time zone in which days, weeks, months and years are counted [default: profile''s time_zone, else UTC]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Allow deleting more than half of the set''s backups')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show the plan with a reason per backup; delete nothing')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;backup;objects' {
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'The store to copy: s3://bucket/prefix, file:///path, a directory, or the name of a [profiles.NAME.stores.STORE] table (its endpoint and credentials apply to URLs under it)')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Where the copy lives: a second provider (s3://…) or a local directory; same forms as --from')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Object set name: inventories are stored under this set [default: media]')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Objects copied at once [default: 8]')
            [CompletionResult]::new('--retain-deleted', '--retain-deleted', [CompletionResultType]::ParameterName, 'How long a copy is kept after its source is deleted (e.g. 30d, 12h, 0s) [default: 30d]')
            [CompletionResult]::new('--max-bytes', '--max-bytes', [CompletionResultType]::ParameterName, 'Copy at most about this many bytes in this run (e.g. 50GiB); the rest is left for the next run')
            [CompletionResult]::new('--part-size', '--part-size', [CompletionResultType]::ParameterName, 'Multipart part size [default: 8MiB]. Objects larger than this go multipart, except that S3 destinations taking unsigned bodies (HTTPS, loopback) stream objects up to --multipart-threshold in one PutObject')
            [CompletionResult]::new('--multipart-threshold', '--multipart-threshold', [CompletionResultType]::ParameterName, 'Largest object streamed in a single PutObject, without holding it in memory, where the destination allows it [default: 64MiB; at most 5GiB]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries per object after 5xx answers, throttling, timeouts or broken connections, with exponential backoff [default: 4]')
            [CompletionResult]::new('--notify-url', '--notify-url', [CompletionResultType]::ParameterName, 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Prometheus textfile to update (last run, success, duration and the job''s figures)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--delete-extraneous', '--delete-extraneous', [CompletionResultType]::ParameterName, 'Remove copies whose source was deleted, once the source has been gone for --retain-deleted. Without it, such copies are kept')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be copied and removed; copy, remove and write nothing')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Go ahead even when the run would mark or remove more than half of the copy''s objects as deleted at the source (refused otherwise: a wrong or emptied --from looks like that)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;backup;help' {
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List complete backups (reads manifests only)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a backup''s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete backups outside the retention policy, orphaned objects and stale uploads')
            [CompletionResult]::new('objects', 'objects', [CompletionResultType]::ParameterValue, 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;backup;help;run' {
            break
        }
        'opsbook;backup;help;list' {
            break
        }
        'opsbook;backup;help;verify' {
            break
        }
        'opsbook;backup;help;prune' {
            break
        }
        'opsbook;backup;help;objects' {
            break
        }
        'opsbook;backup;help;help' {
            break
        }
        'opsbook;migrate' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Applied, pending, changed and missing migrations, and other tools'' history tables')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift')
            [CompletionResult]::new('dry-run', 'dry-run', [CompletionResultType]::ParameterValue, 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails')
            [CompletionResult]::new('lint', 'lint', [CompletionResultType]::ParameterValue, 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors')
            [CompletionResult]::new('new', 'new', [CompletionResultType]::ParameterValue, 'Create the next timestamped migration file')
            [CompletionResult]::new('baseline', 'baseline', [CompletionResultType]::ParameterValue, 'Record migrations up to VERSION as applied without running them (existing schemas)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;migrate;up' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--lock-wait', '--lock-wait', [CompletionResultType]::ParameterName, 'How long to wait for the migration lock before exiting 4 [default: 60s]')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]')
            [CompletionResult]::new('--statement-timeout', '--statement-timeout', [CompletionResultType]::ParameterName, 'statement_timeout set for every migration [default: the server''s]')
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'Apply up to and including this version')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--allow-unsafe', '--allow-unsafe', [CompletionResultType]::ParameterName, 'Apply even when pending migrations have lint errors')
            [CompletionResult]::new('--ignore-missing', '--ignore-missing', [CompletionResultType]::ParameterName, 'Go on when applied migrations have no file (e.g. deploying an older branch)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;status' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--lock-wait', '--lock-wait', [CompletionResultType]::ParameterName, 'How long to wait for the migration lock before exiting 4 [default: 60s]')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]')
            [CompletionResult]::new('--statement-timeout', '--statement-timeout', [CompletionResultType]::ParameterName, 'statement_timeout set for every migration [default: the server''s]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;check' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--lock-wait', '--lock-wait', [CompletionResultType]::ParameterName, 'How long to wait for the migration lock before exiting 4 [default: 60s]')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]')
            [CompletionResult]::new('--statement-timeout', '--statement-timeout', [CompletionResultType]::ParameterName, 'statement_timeout set for every migration [default: the server''s]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;validate' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--lock-wait', '--lock-wait', [CompletionResultType]::ParameterName, 'How long to wait for the migration lock before exiting 4 [default: 60s]')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]')
            [CompletionResult]::new('--statement-timeout', '--statement-timeout', [CompletionResultType]::ParameterName, 'statement_timeout set for every migration [default: the server''s]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--repair-cosmetic', '--repair-cosmetic', [CompletionResultType]::ParameterName, 'Record the new checksum of files whose change is only cosmetic (whitespace, line endings, BOM, comments), so sqlx and opsbook accept them again')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;dry-run' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--lock-wait', '--lock-wait', [CompletionResultType]::ParameterName, 'How long to wait for the migration lock before exiting 4 [default: 60s]')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]')
            [CompletionResult]::new('--statement-timeout', '--statement-timeout', [CompletionResultType]::ParameterName, 'statement_timeout set for every migration [default: the server''s]')
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'Dry-run up to and including this version')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;lint' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--lock-wait', '--lock-wait', [CompletionResultType]::ParameterName, 'How long to wait for the migration lock before exiting 4 [default: 60s]')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]')
            [CompletionResult]::new('--statement-timeout', '--statement-timeout', [CompletionResultType]::ParameterName, 'statement_timeout set for every migration [default: the server''s]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--pending', '--pending', [CompletionResultType]::ParameterName, 'Lint only the migrations the database has not applied yet')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;new' {
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--reversible', '--reversible', [CompletionResultType]::ParameterName, 'Create an .up.sql/.down.sql pair')
            [CompletionResult]::new('--flyway', '--flyway', [CompletionResultType]::ParameterName, 'Use a Flyway name (V<version>__<name>.sql) [default: the directory''s style]')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;baseline' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--lock-wait', '--lock-wait', [CompletionResultType]::ParameterName, 'How long to wait for the migration lock before exiting 4 [default: 60s]')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]')
            [CompletionResult]::new('--statement-timeout', '--statement-timeout', [CompletionResultType]::ParameterName, 'statement_timeout set for every migration [default: the server''s]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;migrate;help' {
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Applied, pending, changed and missing migrations, and other tools'' history tables')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift')
            [CompletionResult]::new('dry-run', 'dry-run', [CompletionResultType]::ParameterValue, 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails')
            [CompletionResult]::new('lint', 'lint', [CompletionResultType]::ParameterValue, 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors')
            [CompletionResult]::new('new', 'new', [CompletionResultType]::ParameterValue, 'Create the next timestamped migration file')
            [CompletionResult]::new('baseline', 'baseline', [CompletionResultType]::ParameterValue, 'Record migrations up to VERSION as applied without running them (existing schemas)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;migrate;help;up' {
            break
        }
        'opsbook;migrate;help;status' {
            break
        }
        'opsbook;migrate;help;check' {
            break
        }
        'opsbook;migrate;help;validate' {
            break
        }
        'opsbook;migrate;help;dry-run' {
            break
        }
        'opsbook;migrate;help;lint' {
            break
        }
        'opsbook;migrate;help;new' {
            break
        }
        'opsbook;migrate;help;baseline' {
            break
        }
        'opsbook;migrate;help;help' {
            break
        }
        'opsbook;pitr' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Take a physical backup under the stanza''s lock, with the profile''s pings and metrics')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem')
            [CompletionResult]::new('expire', 'expire', [CompletionResultType]::ParameterValue, 'Expire backups by the profile''s retention, never the one the newest drill restored')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;pitr;setup' {
            [CompletionResult]::new('--stanza', '--stanza', [CompletionResultType]::ParameterName, 'pgBackRest stanza [default: profile''s pitr.stanza, else main]')
            [CompletionResult]::new('--pg-path', '--pg-path', [CompletionResultType]::ParameterName, 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]')
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show the plan; change nothing')
            [CompletionResult]::new('--restart', '--restart', [CompletionResultType]::ParameterName, 'Restart PostgreSQL when archive_mode needs it (asks first; --yes in scripts)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;pitr;backup' {
            [CompletionResult]::new('--stanza', '--stanza', [CompletionResultType]::ParameterName, 'pgBackRest stanza [default: profile''s pitr.stanza, else main]')
            [CompletionResult]::new('--pg-path', '--pg-path', [CompletionResultType]::ParameterName, 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]')
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]')
            [CompletionResult]::new('--type', '--type', [CompletionResultType]::ParameterName, 'Backup type [default: incr, or full when there is none to build on]')
            [CompletionResult]::new('--notify-url', '--notify-url', [CompletionResultType]::ParameterName, 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Prometheus textfile to update (last run, success, duration and the job''s figures)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;pitr;status' {
            [CompletionResult]::new('--stanza', '--stanza', [CompletionResultType]::ParameterName, 'pgBackRest stanza [default: profile''s pitr.stanza, else main]')
            [CompletionResult]::new('--pg-path', '--pg-path', [CompletionResultType]::ParameterName, 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]')
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--canary', '--canary', [CompletionResultType]::ParameterName, 'First write a canary row (the time now) and switch WAL, so a later PITR drill can prove the point it reaches; run it from cron every few minutes')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;pitr;check' {
            [CompletionResult]::new('--stanza', '--stanza', [CompletionResultType]::ParameterName, 'pgBackRest stanza [default: profile''s pitr.stanza, else main]')
            [CompletionResult]::new('--pg-path', '--pg-path', [CompletionResultType]::ParameterName, 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]')
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;pitr;expire' {
            [CompletionResult]::new('--stanza', '--stanza', [CompletionResultType]::ParameterName, 'pgBackRest stanza [default: profile''s pitr.stanza, else main]')
            [CompletionResult]::new('--pg-path', '--pg-path', [CompletionResultType]::ParameterName, 'The cluster''s data directory [default: profile''s pitr.pg_path, else the sandbox''s]')
            [CompletionResult]::new('--repo', '--repo', [CompletionResultType]::ParameterName, 'Repository: s3://bucket/prefix or a directory [default: profile''s pitr.repo, else `pitr` beside the store]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be expired; expire nothing')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;pitr;help' {
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Take a physical backup under the stanza''s lock, with the profile''s pings and metrics')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem')
            [CompletionResult]::new('expire', 'expire', [CompletionResultType]::ParameterValue, 'Expire backups by the profile''s retention, never the one the newest drill restored')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;pitr;help;setup' {
            break
        }
        'opsbook;pitr;help;backup' {
            break
        }
        'opsbook;pitr;help;status' {
            break
        }
        'opsbook;pitr;help;check' {
            break
        }
        'opsbook;pitr;help;expire' {
            break
        }
        'opsbook;pitr;help;help' {
            break
        }
        'opsbook;restore' {
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Backup set [default: main]')
            [CompletionResult]::new('--backup', '--backup', [CompletionResultType]::ParameterName, 'latest, or a backup id (or unique prefix) [default: latest]')
            [CompletionResult]::new('--before', '--before', [CompletionResultType]::ParameterName, 'Restore the newest backup whose snapshot is older than TIME (RFC 3339, e.g. 2026-12-07T03:10:00Z, or "YYYY-MM-DD HH:MM[:SS]" in UTC)')
            [CompletionResult]::new('--target-url', '--target-url', [CompletionResultType]::ParameterName, 'Server on which the new database is created')
            [CompletionResult]::new('--into', '--into', [CompletionResultType]::ParameterName, 'Name of the new database to create and restore into; an existing database is refused and left untouched. A failed or interrupted restore drops it again')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local file first (parallel restore needs a seekable file)')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'age identity file for encrypted backups')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the plan (backup, server, database) and touch nothing')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;restore-drill' {
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Backup set [default: main]')
            [CompletionResult]::new('--backup', '--backup', [CompletionResultType]::ParameterName, 'latest, random, or a backup id (or unique prefix)')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'Seed for --backup random and object sampling (reported, so a drill can be repeated)')
            [CompletionResult]::new('--target-url', '--target-url', [CompletionResultType]::ParameterName, 'Server to restore on: the drill creates opsbook_drill_<id> there and drops it afterwards; it never touches a database it did not create')
            [CompletionResult]::new('--target-time', '--target-time', [CompletionResultType]::ParameterName, 'With --pitr: recover to this time (RFC 3339, e.g. 2026-12-07T03:10:00Z; no zone means UTC; or an age such as 20m), `latest` (the end of the archived WAL) or `random[:24h]` (a random time in that window, reported) [default: latest]')
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'With --pitr: recover to this time (RFC 3339, e.g. 2026-12-07T03:10:00Z; no zone means UTC; or an age such as 20m), `latest` (the end of the archived WAL) or `random[:24h]` (a random time in that window, reported) [default: latest]')
            [CompletionResult]::new('--stanza', '--stanza', [CompletionResultType]::ParameterName, 'With --pitr: the pgBackRest stanza [default: profile''s pitr.stanza, else main]')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Apply these migrations to the restored database: newer ones must apply cleanly')
            [CompletionResult]::new('--check-sql', '--check-sql', [CompletionResultType]::ParameterName, 'SQL assertions; every statement must return true or a non-zero count')
            [CompletionResult]::new('--objects', '--objects', [CompletionResultType]::ParameterName, 'Media bucket to sample (s3://bucket[/prefix]): HEAD and a ranged GET per sampled key')
            [CompletionResult]::new('--sample', '--sample', [CompletionResultType]::ParameterName, 'How many objects to sample [default: 20]')
            [CompletionResult]::new('--objects-query', '--objects-query', [CompletionResultType]::ParameterName, 'Take keys from this query over the restored database (first column) instead of a listing, e.g. "SELECT image_key FROM products"')
            [CompletionResult]::new('--objects-inventory', '--objects-inventory', [CompletionResultType]::ParameterName, 'Check sampled objects against the newest inventory of this object set (`backup objects --set`): each listed key is read whole and its size and SHA-256 compared')
            [CompletionResult]::new('--rpo-target', '--rpo-target', [CompletionResultType]::ParameterName, 'Fail when the newest backup''s snapshot is older than this (e.g. 26h)')
            [CompletionResult]::new('--rto-target', '--rto-target', [CompletionResultType]::ParameterName, 'Fail when download + restore + verify takes longer than this (e.g. 30m)')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local file first (parallel restore needs a seekable file)')
            [CompletionResult]::new('--spool-dir', '--spool-dir', [CompletionResultType]::ParameterName, 'Where to spool the archive with --jobs > 1 [default: the system temp dir]')
            [CompletionResult]::new('--report', '--report', [CompletionResultType]::ParameterName, 'Write a Markdown report here')
            [CompletionResult]::new('--junit', '--junit', [CompletionResultType]::ParameterName, 'Write JUnit XML here (one test case per step)')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'age identity file for encrypted backups')
            [CompletionResult]::new('--notify-url', '--notify-url', [CompletionResultType]::ParameterName, 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Prometheus textfile to update (last run, success, duration and the job''s figures)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Restore into a throwaway local cluster (initdb; runs as `postgres` when root)')
            [CompletionResult]::new('--pitr', '--pitr', [CompletionResultType]::ParameterName, 'Drill point-in-time recovery instead of a dump: pgBackRest restores the stanza into a throwaway local cluster, recovers to --target-time and proves it with canary rows')
            [CompletionResult]::new('--globals', '--globals', [CompletionResultType]::ParameterName, 'With --ephemeral: also restore the backup''s globals (roles), keeping owners and grants')
            [CompletionResult]::new('--presign', '--presign', [CompletionResultType]::ParameterName, 'Read sampled objects through presigned URLs')
            [CompletionResult]::new('--keep', '--keep', [CompletionResultType]::ParameterName, 'Leave the restored database or cluster in place (the report says where)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;provision' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Compare the profile''s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing')
            [CompletionResult]::new('apply', 'apply', [CompletionResultType]::ParameterValue, 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;provision;plan' {
            [CompletionResult]::new('--admin-database-url', '--admin-database-url', [CompletionResultType]::ParameterName, 'Superuser/admin connection used to create roles and the database [default: the profile''s admin_database_url]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;provision;apply' {
            [CompletionResult]::new('--admin-database-url', '--admin-database-url', [CompletionResultType]::ParameterName, 'Superuser/admin connection used to create roles and the database [default: the profile''s admin_database_url]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;provision;help' {
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Compare the profile''s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing')
            [CompletionResult]::new('apply', 'apply', [CompletionResultType]::ParameterValue, 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;provision;help;plan' {
            break
        }
        'opsbook;provision;help;apply' {
            break
        }
        'opsbook;provision;help;help' {
            break
        }
        'opsbook;rotate-secrets' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Which secrets are due (no value yet, never rotated, or older than max_age)')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Age, last rotation, next due, strategy and fingerprint of every secret')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;rotate-secrets;plan' {
            [CompletionResult]::new('--admin-database-url', '--admin-database-url', [CompletionResultType]::ParameterName, 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;rotate-secrets;run' {
            [CompletionResult]::new('--admin-database-url', '--admin-database-url', [CompletionResultType]::ParameterName, 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--due', '--due', [CompletionResultType]::ParameterName, 'Rotate every secret that is due')
            [CompletionResult]::new('--resume', '--resume', [CompletionResultType]::ParameterName, 'Finish rotations a crash or failure left part-way')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;rotate-secrets;status' {
            [CompletionResult]::new('--admin-database-url', '--admin-database-url', [CompletionResultType]::ParameterName, 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;rotate-secrets;rollback' {
            [CompletionResult]::new('--admin-database-url', '--admin-database-url', [CompletionResultType]::ParameterName, 'Admin connection for postgres-password secrets [default: the profile''s admin_database_url]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;rotate-secrets;help' {
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Which secrets are due (no value yet, never rotated, or older than max_age)')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Age, last rotation, next due, strategy and fingerprint of every secret')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;rotate-secrets;help;plan' {
            break
        }
        'opsbook;rotate-secrets;help;run' {
            break
        }
        'opsbook;rotate-secrets;help;status' {
            break
        }
        'opsbook;rotate-secrets;help;rollback' {
            break
        }
        'opsbook;rotate-secrets;help;help' {
            break
        }
        'opsbook;promote-check' {
            [CompletionResult]::new('--app-url', '--app-url', [CompletionResultType]::ParameterName, 'The API''s base URL (health, metrics, CORS, rate limits)')
            [CompletionResult]::new('--web-url', '--web-url', [CompletionResultType]::ParameterName, 'The website''s URL (CSP, HSTS, security headers) [default: --app-url]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--env-file', '--env-file', [CompletionResultType]::ParameterName, 'The environment''s .env file (JWT_SECRET, required variables, OTLP endpoint)')
            [CompletionResult]::new('--compare-env-file', '--compare-env-file', [CompletionResultType]::ParameterName, 'Another environment''s .env file (e.g. staging''s): jwt-secret fails when its JWT_SECRET is the same (compared by fingerprint, never printed)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Backup set for backup-retention [default: main]')
            [CompletionResult]::new('--migrations', '--migrations', [CompletionResultType]::ParameterName, 'Migrations directory [default: profile''s migrate.dir, else ./migrations]')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Only these checks (comma-separated ids)')
            [CompletionResult]::new('--skip', '--skip', [CompletionResultType]::ParameterName, 'Skip these checks (comma-separated ids)')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Extra CA certificate (PEM) trusted for HTTPS checks')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Per-check timeout')
            [CompletionResult]::new('--junit', '--junit', [CompletionResultType]::ParameterName, 'Write JUnit XML here (one test case per check)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;dlq-replay' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List dead letters (oldest first) matching the filters')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;dlq-replay;init' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--source-url', '--source-url', [CompletionResultType]::ParameterName, 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)')
            [CompletionResult]::new('--token-env', '--token-env', [CompletionResultType]::ParameterName, 'Environment variable holding the API''s bearer token (http source)')
            [CompletionResult]::new('--tenant-header', '--tenant-header', [CompletionResultType]::ParameterName, 'Header carrying --tenant to the API [default: X-Tenant-Id]')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;dlq-replay;list' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--source-url', '--source-url', [CompletionResultType]::ParameterName, 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)')
            [CompletionResult]::new('--token-env', '--token-env', [CompletionResultType]::ParameterName, 'Environment variable holding the API''s bearer token (http source)')
            [CompletionResult]::new('--tenant-header', '--tenant-header', [CompletionResultType]::ParameterName, 'Header carrying --tenant to the API [default: X-Tenant-Id]')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]')
            [CompletionResult]::new('--id', '--id', [CompletionResultType]::ParameterName, 'Only these ids (repeatable)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Failed at or after: RFC 3339, a date, or an age such as 24h')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Failed before: RFC 3339, a date, or an age such as 1h')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Target URL glob (* and ?); without wildcards, a substring')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Event type, exactly')
            [CompletionResult]::new('--tenant', '--tenant', [CompletionResultType]::ParameterName, 'Tenant, exactly (also sent as the tenant header to an http source)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many, oldest first')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--payloads', '--payloads', [CompletionResultType]::ParameterName, 'Include payloads (JSON output only; they may hold personal data)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;dlq-replay;stats' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--source-url', '--source-url', [CompletionResultType]::ParameterName, 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)')
            [CompletionResult]::new('--token-env', '--token-env', [CompletionResultType]::ParameterName, 'Environment variable holding the API''s bearer token (http source)')
            [CompletionResult]::new('--tenant-header', '--tenant-header', [CompletionResultType]::ParameterName, 'Header carrying --tenant to the API [default: X-Tenant-Id]')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]')
            [CompletionResult]::new('--id', '--id', [CompletionResultType]::ParameterName, 'Only these ids (repeatable)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Failed at or after: RFC 3339, a date, or an age such as 24h')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Failed before: RFC 3339, a date, or an age such as 1h')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Target URL glob (* and ?); without wildcards, a substring')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Event type, exactly')
            [CompletionResult]::new('--tenant', '--tenant', [CompletionResultType]::ParameterName, 'Tenant, exactly (also sent as the tenant header to an http source)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many, oldest first')
            [CompletionResult]::new('--max', '--max', [CompletionResultType]::ParameterName, 'Exit 1 when the DLQ holds more than N dead letters [default: the profile''s max, else 50]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;dlq-replay;replay' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--source-url', '--source-url', [CompletionResultType]::ParameterName, 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)')
            [CompletionResult]::new('--token-env', '--token-env', [CompletionResultType]::ParameterName, 'Environment variable holding the API''s bearer token (http source)')
            [CompletionResult]::new('--tenant-header', '--tenant-header', [CompletionResultType]::ParameterName, 'Header carrying --tenant to the API [default: X-Tenant-Id]')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]')
            [CompletionResult]::new('--id', '--id', [CompletionResultType]::ParameterName, 'Only these ids (repeatable)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Failed at or after: RFC 3339, a date, or an age such as 24h')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Failed before: RFC 3339, a date, or an age such as 1h')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Target URL glob (* and ?); without wildcards, a substring')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Event type, exactly')
            [CompletionResult]::new('--tenant', '--tenant', [CompletionResultType]::ParameterName, 'Tenant, exactly (also sent as the tenant header to an http source)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many, oldest first')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'Requests per second over all endpoints (retries included) [default: unlimited]')
            [CompletionResult]::new('--endpoint-rate', '--endpoint-rate', [CompletionResultType]::ParameterName, 'Requests per second to any one endpoint (scheme://host:port)')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Deliveries in flight at once (each holds a database connection) [default: 8]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries per dead letter after the first attempt (5xx, 408, 429, timeouts, connection errors)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Timeout of one request (to the targets, or to the http source''s API)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Connect timeout of one request')
            [CompletionResult]::new('--breaker', '--breaker', [CompletionResultType]::ParameterName, 'Consecutive failed deliveries that stop replaying to an endpoint for this run (0: never)')
            [CompletionResult]::new('--signing-secret-env', '--signing-secret-env', [CompletionResultType]::ParameterName, 'Environment variable with the Standard Webhooks secret(s), whsec_<base64>, several separated by spaces while rotating: signs every delivery')
            [CompletionResult]::new('--confirm-above', '--confirm-above', [CompletionResultType]::ParameterName, 'Ask for confirmation when more than N dead letters would be replayed')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show the plan and send nothing')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;dlq-replay;purge' {
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments')
            [CompletionResult]::new('--source-url', '--source-url', [CompletionResultType]::ParameterName, 'The service''s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)')
            [CompletionResult]::new('--token-env', '--token-env', [CompletionResultType]::ParameterName, 'Environment variable holding the API''s bearer token (http source)')
            [CompletionResult]::new('--tenant-header', '--tenant-header', [CompletionResultType]::ParameterName, 'Header carrying --tenant to the API [default: X-Tenant-Id]')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Dead-letter table, optionally schema-qualified [default: the profile''s, else opsbook_dead_letters]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path')
            [CompletionResult]::new('--older-than', '--older-than', [CompletionResultType]::ParameterName, 'Delete dead letters that failed longer ago than this, e.g. 30d')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;dlq-replay;help' {
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List dead letters (oldest first) matching the filters')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;dlq-replay;help;init' {
            break
        }
        'opsbook;dlq-replay;help;list' {
            break
        }
        'opsbook;dlq-replay;help;stats' {
            break
        }
        'opsbook;dlq-replay;help;replay' {
            break
        }
        'opsbook;dlq-replay;help;purge' {
            break
        }
        'opsbook;dlq-replay;help;help' {
            break
        }
        'opsbook;run' {
            [CompletionResult]::new('--param', '--param', [CompletionResultType]::ParameterName, 'A parameter value; repeat for several')
            [CompletionResult]::new('--resume', '--resume', [CompletionResultType]::ParameterName, 'Continue run RUN_ID after its last successful step, with the same parameters')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Start at this step; earlier steps are skipped')
            [CompletionResult]::new('--ack', '--ack', [CompletionResultType]::ParameterName, 'Acknowledge a manual step without a terminal; repeat for several')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what each step would do; built-in actions plan without side effects, shell steps are shown, not run')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;runbook' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the runbooks in a directory with their description and schedule')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a runbook''s parameters and steps')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check runbooks without running them; every problem is reported with file, line and column')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;runbook;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;runbook;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;runbook;validate' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;runbook;schema' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;runbook;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the runbooks in a directory with their description and schedule')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a runbook''s parameters and steps')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check runbooks without running them; every problem is reported with file, line and column')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;runbook;help;list' {
            break
        }
        'opsbook;runbook;help;show' {
            break
        }
        'opsbook;runbook;help;validate' {
            break
        }
        'opsbook;runbook;help;schema' {
            break
        }
        'opsbook;runbook;help;help' {
            break
        }
        'opsbook;sandbox' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Sandbox directory')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Create (or restart) the sandbox and print the environment to export')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop the sandbox and delete its cluster, store and env file')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the sandbox exists and runs')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;sandbox;up' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Sandbox directory')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;sandbox;down' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Sandbox directory')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;sandbox;status' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Sandbox directory')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;sandbox;help' {
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Create (or restart) the sandbox and print the environment to export')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop the sandbox and delete its cluster, store and env file')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the sandbox exists and runs')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;sandbox;help;up' {
            break
        }
        'opsbook;sandbox;help;down' {
            break
        }
        'opsbook;sandbox;help;status' {
            break
        }
        'opsbook;sandbox;help;help' {
            break
        }
        'opsbook;schedule' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('crontab', 'crontab', [CompletionResultType]::ParameterValue, 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir')
            [CompletionResult]::new('systemd', 'systemd', [CompletionResultType]::ParameterValue, 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook')
            [CompletionResult]::new('k8s', 'k8s', [CompletionResultType]::ParameterValue, 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;schedule;crontab' {
            [CompletionResult]::new('--workdir', '--workdir', [CompletionResultType]::ParameterName, 'Directory the runs start in; runbook paths inside it are written relative to it [default: the current directory]')
            [CompletionResult]::new('--bin', '--bin', [CompletionResultType]::ParameterName, 'The opsbook executable to run [default: the absolute path of this executable]')
            [CompletionResult]::new('--env-file', '--env-file', [CompletionResultType]::ParameterName, 'KEY=VALUE file with the runs'' settings and secrets (DATABASE_URL, OPSBOOK_STORE, ...), loaded at every run; its values are never copied into the schedule')
            [CompletionResult]::new('--log-dir', '--log-dir', [CompletionResultType]::ParameterName, 'Directory of the runs'' logs, one NAME.log per runbook')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;schedule;systemd' {
            [CompletionResult]::new('--workdir', '--workdir', [CompletionResultType]::ParameterName, 'Directory the runs start in; runbook paths inside it are written relative to it [default: the current directory]')
            [CompletionResult]::new('--bin', '--bin', [CompletionResultType]::ParameterName, 'The opsbook executable to run [default: the absolute path of this executable]')
            [CompletionResult]::new('--env-file', '--env-file', [CompletionResultType]::ParameterName, 'KEY=VALUE file with the runs'' settings and secrets (DATABASE_URL, OPSBOOK_STORE, ...), loaded at every run; its values are never copied into the schedule')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Write the unit files into this directory (created when missing) instead of printing them')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;schedule;k8s' {
            [CompletionResult]::new('--image', '--image', [CompletionResultType]::ParameterName, 'Container image with the opsbook binary')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Secret whose keys become the container''s environment (DATABASE_URL, OPSBOOK_STORE, ...)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;schedule;help' {
            [CompletionResult]::new('crontab', 'crontab', [CompletionResultType]::ParameterValue, 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir')
            [CompletionResult]::new('systemd', 'systemd', [CompletionResultType]::ParameterValue, 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook')
            [CompletionResult]::new('k8s', 'k8s', [CompletionResultType]::ParameterValue, 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;schedule;help;crontab' {
            break
        }
        'opsbook;schedule;help;systemd' {
            break
        }
        'opsbook;schedule;help;k8s' {
            break
        }
        'opsbook;schedule;help;help' {
            break
        }
        'opsbook;completions' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;man' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file [default: ./opsbook.toml when present]')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of stdout: human tables and lines, or exactly one JSON document')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr: text for people, JSON lines for log shippers')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to confirmation prompts (required for destructive steps without a terminal)')
            [CompletionResult]::new('--no-input', '--no-input', [CompletionResultType]::ParameterName, 'Never prompt; fail with exit 5 when a confirmation would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less output: no progress, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'opsbook;help' {
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Streaming database backups to S3/R2 or a local directory: run, list, verify, prune')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Schema migrations (sqlx-compatible history): up, status, check, validate, dry-run, lint, new, baseline')
            [CompletionResult]::new('pitr', 'pitr', [CompletionResultType]::ParameterValue, 'Point-in-time recovery through pgBackRest: setup, backup, status, check, expire')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Restore a dump backup into a new database: pick it (id, latest, --before TIME), verify it, create the database, restore, compare row counts; a failed restore drops it again')
            [CompletionResult]::new('restore-drill', 'restore-drill', [CompletionResultType]::ParameterValue, 'Prove a backup restores: download and check it, restore into a scratch database or a throwaway cluster, compare row counts, run checks and migrations, sample the media bucket, measure RTO/RPO, clean up')
            [CompletionResult]::new('provision', 'provision', [CompletionResultType]::ParameterValue, 'Plan and apply a new environment from the profile''s [provision] table: database, roles, grants, extensions, bucket, secrets in the .env file, migrations, seeds')
            [CompletionResult]::new('rotate-secrets', 'rotate-secrets', [CompletionResultType]::ParameterValue, 'Rotate secrets with a journaled create → set → test → finish → revoke protocol: PostgreSQL passwords (single or alternating logins), random keys, password hashes, S3 access keys (IAM), gateway credentials (HTTP); stores: .env, AWS Secrets Manager, Vault')
            [CompletionResult]::new('promote-check', 'promote-check', [CompletionResultType]::ParameterValue, 'The promotion checklist: secrets, database TLS, CSP, HSTS, CORS, headers, telemetry, rate limits, backups, migrations, health and metrics — concurrently, with waivers')
            [CompletionResult]::new('dlq-replay', 'dlq-replay', [CompletionResultType]::ParameterValue, 'Dead-letter queue: list, stats (alert threshold), replay with rate limits, retries, signing and claim-once guarantees, purge with an archive')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a runbook: declarative TOML steps with a journal, resumable after a failure')
            [CompletionResult]::new('runbook', 'runbook', [CompletionResultType]::ParameterValue, 'List, show, validate runbooks, or print the format''s JSON Schema')
            [CompletionResult]::new('sandbox', 'sandbox', [CompletionResultType]::ParameterValue, 'A throwaway local Postgres cluster with an example database, plus a local store')
            [CompletionResult]::new('schedule', 'schedule', [CompletionResultType]::ParameterValue, 'Print crontab entries, systemd units or Kubernetes CronJobs that run runbooks on their schedule')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Write man pages (one per command) to a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'opsbook;help;backup' {
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List complete backups (reads manifests only)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a backup''s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete backups outside the retention policy, orphaned objects and stale uploads')
            [CompletionResult]::new('objects', 'objects', [CompletionResultType]::ParameterValue, 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups')
            break
        }
        'opsbook;help;backup;run' {
            break
        }
        'opsbook;help;backup;list' {
            break
        }
        'opsbook;help;backup;verify' {
            break
        }
        'opsbook;help;backup;prune' {
            break
        }
        'opsbook;help;backup;objects' {
            break
        }
        'opsbook;help;migrate' {
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Applied, pending, changed and missing migrations, and other tools'' history tables')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift')
            [CompletionResult]::new('dry-run', 'dry-run', [CompletionResultType]::ParameterValue, 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails')
            [CompletionResult]::new('lint', 'lint', [CompletionResultType]::ParameterValue, 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors')
            [CompletionResult]::new('new', 'new', [CompletionResultType]::ParameterValue, 'Create the next timestamped migration file')
            [CompletionResult]::new('baseline', 'baseline', [CompletionResultType]::ParameterValue, 'Record migrations up to VERSION as applied without running them (existing schemas)')
            break
        }
        'opsbook;help;migrate;up' {
            break
        }
        'opsbook;help;migrate;status' {
            break
        }
        'opsbook;help;migrate;check' {
            break
        }
        'opsbook;help;migrate;validate' {
            break
        }
        'opsbook;help;migrate;dry-run' {
            break
        }
        'opsbook;help;migrate;lint' {
            break
        }
        'opsbook;help;migrate;new' {
            break
        }
        'opsbook;help;migrate;baseline' {
            break
        }
        'opsbook;help;pitr' {
            [CompletionResult]::new('setup', 'setup', [CompletionResultType]::ParameterValue, 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Take a physical backup under the stanza''s lock, with the profile''s pings and metrics')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem')
            [CompletionResult]::new('expire', 'expire', [CompletionResultType]::ParameterValue, 'Expire backups by the profile''s retention, never the one the newest drill restored')
            break
        }
        'opsbook;help;pitr;setup' {
            break
        }
        'opsbook;help;pitr;backup' {
            break
        }
        'opsbook;help;pitr;status' {
            break
        }
        'opsbook;help;pitr;check' {
            break
        }
        'opsbook;help;pitr;expire' {
            break
        }
        'opsbook;help;restore' {
            break
        }
        'opsbook;help;restore-drill' {
            break
        }
        'opsbook;help;provision' {
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Compare the profile''s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing')
            [CompletionResult]::new('apply', 'apply', [CompletionResultType]::ParameterValue, 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing')
            break
        }
        'opsbook;help;provision;plan' {
            break
        }
        'opsbook;help;provision;apply' {
            break
        }
        'opsbook;help;rotate-secrets' {
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Which secrets are due (no value yet, never rotated, or older than max_age)')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Age, last rotation, next due, strategy and fingerprint of every secret')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)')
            break
        }
        'opsbook;help;rotate-secrets;plan' {
            break
        }
        'opsbook;help;rotate-secrets;run' {
            break
        }
        'opsbook;help;rotate-secrets;status' {
            break
        }
        'opsbook;help;rotate-secrets;rollback' {
            break
        }
        'opsbook;help;promote-check' {
            break
        }
        'opsbook;help;dlq-replay' {
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List dead letters (oldest first) matching the filters')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise')
            break
        }
        'opsbook;help;dlq-replay;init' {
            break
        }
        'opsbook;help;dlq-replay;list' {
            break
        }
        'opsbook;help;dlq-replay;stats' {
            break
        }
        'opsbook;help;dlq-replay;replay' {
            break
        }
        'opsbook;help;dlq-replay;purge' {
            break
        }
        'opsbook;help;run' {
            break
        }
        'opsbook;help;runbook' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the runbooks in a directory with their description and schedule')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a runbook''s parameters and steps')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check runbooks without running them; every problem is reported with file, line and column')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)')
            break
        }
        'opsbook;help;runbook;list' {
            break
        }
        'opsbook;help;runbook;show' {
            break
        }
        'opsbook;help;runbook;validate' {
            break
        }
        'opsbook;help;runbook;schema' {
            break
        }
        'opsbook;help;sandbox' {
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Create (or restart) the sandbox and print the environment to export')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop the sandbox and delete its cluster, store and env file')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the sandbox exists and runs')
            break
        }
        'opsbook;help;sandbox;up' {
            break
        }
        'opsbook;help;sandbox;down' {
            break
        }
        'opsbook;help;sandbox;status' {
            break
        }
        'opsbook;help;schedule' {
            [CompletionResult]::new('crontab', 'crontab', [CompletionResultType]::ParameterValue, 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir')
            [CompletionResult]::new('systemd', 'systemd', [CompletionResultType]::ParameterValue, 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook')
            [CompletionResult]::new('k8s', 'k8s', [CompletionResultType]::ParameterValue, 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook')
            break
        }
        'opsbook;help;schedule;crontab' {
            break
        }
        'opsbook;help;schedule;systemd' {
            break
        }
        'opsbook;help;schedule;k8s' {
            break
        }
        'opsbook;help;completions' {
            break
        }
        'opsbook;help;man' {
            break
        }
        'opsbook;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
