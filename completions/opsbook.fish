# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_opsbook_global_optspecs
    string join \n config= profile= output= y/yes no-input color= log-format= v/verbose q/quiet h/help V/version
end

function __fish_opsbook_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_opsbook_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_opsbook_using_subcommand
    set -l cmd (__fish_opsbook_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c opsbook -n "__fish_opsbook_needs_command" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_needs_command" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_needs_command" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_needs_command" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_needs_command" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_needs_command" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_needs_command" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_needs_command" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_needs_command" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opsbook -n "__fish_opsbook_needs_command" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "backup" -d 'Streaming database backups to S3/R2 or a local directory: run, list, verify, prune'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "migrate" -d 'Schema migrations (sqlx-compatible history): up, status, check, validate, dry-run, lint, new, baseline'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "pitr" -d 'Point-in-time recovery through pgBackRest: setup, backup, status, check, expire'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "restore" -d 'Restore a dump backup into a new database: pick it (id, latest, --before TIME), verify it, create the database, restore, compare row counts; a failed restore drops it again'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "restore-drill" -d 'Prove a backup restores: download and check it, restore into a scratch database or a throwaway cluster, compare row counts, run checks and migrations, sample the media bucket, measure RTO/RPO, clean up'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "provision" -d 'Plan and apply a new environment from the profile\'s [provision] table: database, roles, grants, extensions, bucket, secrets in the .env file, migrations, seeds'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "rotate-secrets" -d 'Rotate secrets with a journaled create → set → test → finish → revoke protocol: PostgreSQL passwords (single or alternating logins), random keys, password hashes, S3 access keys (IAM), gateway credentials (HTTP); stores: .env, AWS Secrets Manager, Vault'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "promote-check" -d 'The promotion checklist: secrets, database TLS, CSP, HSTS, CORS, headers, telemetry, rate limits, backups, migrations, health and metrics — concurrently, with waivers'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "dlq-replay" -d 'Dead-letter queue: list, stats (alert threshold), replay with rate limits, retries, signing and claim-once guarantees, purge with an archive'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "run" -d 'Run a runbook: declarative TOML steps with a journal, resumable after a failure'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "runbook" -d 'List, show, validate runbooks, or print the format\'s JSON Schema'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "sandbox" -d 'A throwaway local Postgres cluster with an example database, plus a local store'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "schedule" -d 'Print crontab entries, systemd units or Kubernetes CronJobs that run runbooks on their schedule'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "man" -d 'Write man pages (one per command) to a directory'
complete -c opsbook -n "__fish_opsbook_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -f -a "run" -d 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -f -a "list" -d 'List complete backups (reads manifests only)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -f -a "verify" -d 'Check a backup\'s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -f -a "prune" -d 'Delete backups outside the retention policy, orphaned objects and stale uploads'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -f -a "objects" -d 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and not __fish_seen_subcommand_from run list verify prune objects help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l set -d 'Backup set name (a path segment in the store) [default: main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l parallel -d 'With --all: how many sets run at once' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l compression -d 'Compression: zstd or zstd:LEVEL (1-19) [default: zstd:1, the fastest; higher levels spend more CPU for smaller backups]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l encrypt-to -d 'Encrypt to this age recipient (age1…); repeat for several' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l row-counts -d 'Per-table row counts recorded in the manifest [default: exact]' -r -f -a "exact\t'count(*) per table inside the dump\'s snapshot: exactly what the dump holds'
estimate\t'Planner statistics: free, approximate'
off\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l notify-url -d 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l metrics-file -d 'Prometheus textfile to update (last run, success, duration and the job\'s figures)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l part-size -d 'Upload part size (e.g. 16MiB); every part but the last has exactly this size (R2 requires it) [default: 8MiB, larger for databases over ~64 GiB to stay under 10,000 parts]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l upload-concurrency -d 'Parts uploaded at once; peak memory is about part size × (this + 1) plus ~20 MiB [default: 2]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l keep-last -d 'Keep the N newest backups' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l keep-hourly -d 'Keep the newest backup of each of the last N hours that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l keep-daily -d 'Keep the newest backup of each of the last N days that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l keep-weekly -d 'Keep the newest backup of each of the last N ISO weeks that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l keep-monthly -d 'Keep the newest backup of each of the last N months that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l keep-yearly -d 'Keep the newest backup of each of the last N years that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l keep-within -d 'Keep every backup within this duration of the newest one (e.g. 14d, 36h)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l min-keep -d 'Never keep fewer than the N newest backups' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l tz -d 'Time zone in which days, weeks, months and years are counted [default: profile\'s time_zone, else UTC]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l all -d 'Back up every set declared in the profile ([profiles.NAME.sets.SET]); continues past failures and exits with the worst outcome'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l globals -d 'Also store `pg_dumpall --globals-only` (roles, tablespaces) without role passwords'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l globals-with-passwords -d 'With --globals: include role password hashes (needs superuser)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l prune -d 'Prune the set by its retention policy after the new backup is complete'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l force -d 'Allow deleting more than half of the set\'s backups'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l set -d 'Only this set [default: every set in the store]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l set -d 'Backup set name [default: main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l identity -d 'age identity file (AGE-SECRET-KEY-1…) for --deep on encrypted backups' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l deep -d 'Also decrypt, decompress and read the archive with pg_restore --list'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l set -d 'Backup set name [default: main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-last -d 'Keep the N newest backups' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-hourly -d 'Keep the newest backup of each of the last N hours that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-daily -d 'Keep the newest backup of each of the last N days that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-weekly -d 'Keep the newest backup of each of the last N ISO weeks that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-monthly -d 'Keep the newest backup of each of the last N months that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-yearly -d 'Keep the newest backup of each of the last N years that have one' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-within -d 'Keep every backup within this duration of the newest one (e.g. 14d, 36h)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l min-keep -d 'Never keep fewer than the N newest backups' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l tz -d 'Time zone in which days, weeks, months and years are counted [default: profile\'s time_zone, else UTC]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l force -d 'Allow deleting more than half of the set\'s backups'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l dry-run -d 'Show the plan with a reason per backup; delete nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l from -d 'The store to copy: s3://bucket/prefix, file:///path, a directory, or the name of a [profiles.NAME.stores.STORE] table (its endpoint and credentials apply to URLs under it)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l to -d 'Where the copy lives: a second provider (s3://…) or a local directory; same forms as --from' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l set -d 'Object set name: inventories are stored under this set [default: media]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l concurrency -d 'Objects copied at once [default: 8]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l retain-deleted -d 'How long a copy is kept after its source is deleted (e.g. 30d, 12h, 0s) [default: 30d]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l max-bytes -d 'Copy at most about this many bytes in this run (e.g. 50GiB); the rest is left for the next run' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l part-size -d 'Multipart part size [default: 8MiB]. Objects larger than this go multipart, except that S3 destinations taking unsigned bodies (HTTPS, loopback) stream objects up to --multipart-threshold in one PutObject' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l multipart-threshold -d 'Largest object streamed in a single PutObject, without holding it in memory, where the destination allows it [default: 64MiB; at most 5GiB]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l retries -d 'Retries per object after 5xx answers, throttling, timeouts or broken connections, with exponential backoff [default: 4]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l notify-url -d 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l metrics-file -d 'Prometheus textfile to update (last run, success, duration and the job\'s figures)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l delete-extraneous -d 'Remove copies whose source was deleted, once the source has been gone for --retain-deleted. Without it, such copies are kept'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l dry-run -d 'Show what would be copied and removed; copy, remove and write nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l force -d 'Go ahead even when the run would mark or remove more than half of the copy\'s objects as deleted at the source (refused otherwise: a wrong or emptied --from looks like that)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from objects" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "run" -d 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "list" -d 'List complete backups (reads manifests only)'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check a backup\'s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Delete backups outside the retention policy, orphaned objects and stale uploads'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "objects" -d 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups'
complete -c opsbook -n "__fish_opsbook_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "up" -d 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "status" -d 'Applied, pending, changed and missing migrations, and other tools\' history tables'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "check" -d 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "validate" -d 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "dry-run" -d 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "lint" -d 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "new" -d 'Create the next timestamped migration file'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "baseline" -d 'Record migrations up to VERSION as applied without running them (existing schemas)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and not __fish_seen_subcommand_from up status check validate dry-run lint new baseline help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l lock-wait -d 'How long to wait for the migration lock before exiting 4 [default: 60s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l lock-timeout -d 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l statement-timeout -d 'statement_timeout set for every migration [default: the server\'s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l target -d 'Apply up to and including this version' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l allow-unsafe -d 'Apply even when pending migrations have lint errors'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l ignore-missing -d 'Go on when applied migrations have no file (e.g. deploying an older branch)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from up" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l lock-wait -d 'How long to wait for the migration lock before exiting 4 [default: 60s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l lock-timeout -d 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l statement-timeout -d 'statement_timeout set for every migration [default: the server\'s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l lock-wait -d 'How long to wait for the migration lock before exiting 4 [default: 60s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l lock-timeout -d 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l statement-timeout -d 'statement_timeout set for every migration [default: the server\'s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l lock-wait -d 'How long to wait for the migration lock before exiting 4 [default: 60s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l lock-timeout -d 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l statement-timeout -d 'statement_timeout set for every migration [default: the server\'s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l repair-cosmetic -d 'Record the new checksum of files whose change is only cosmetic (whitespace, line endings, BOM, comments), so sqlx and opsbook accept them again'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from validate" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l lock-wait -d 'How long to wait for the migration lock before exiting 4 [default: 60s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l lock-timeout -d 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l statement-timeout -d 'statement_timeout set for every migration [default: the server\'s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l target -d 'Dry-run up to and including this version' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from dry-run" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l lock-wait -d 'How long to wait for the migration lock before exiting 4 [default: 60s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l lock-timeout -d 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l statement-timeout -d 'statement_timeout set for every migration [default: the server\'s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l pending -d 'Lint only the migrations the database has not applied yet'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from lint" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l reversible -d 'Create an .up.sql/.down.sql pair'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l flyway -d 'Use a Flyway name (V<version>__<name>.sql) [default: the directory\'s style]'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from new" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l lock-wait -d 'How long to wait for the migration lock before exiting 4 [default: 60s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l lock-timeout -d 'lock_timeout set for every migration; a timeout is retried with backoff [default: 5s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l statement-timeout -d 'statement_timeout set for every migration [default: the server\'s]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from baseline" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "up" -d 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "status" -d 'Applied, pending, changed and missing migrations, and other tools\' history tables'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "check" -d 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "validate" -d 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "dry-run" -d 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "lint" -d 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "new" -d 'Create the next timestamped migration file'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "baseline" -d 'Record migrations up to VERSION as applied without running them (existing schemas)'
complete -c opsbook -n "__fish_opsbook_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -f -a "setup" -d 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -f -a "backup" -d 'Take a physical backup under the stanza\'s lock, with the profile\'s pings and metrics'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -f -a "status" -d 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -f -a "check" -d 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -f -a "expire" -d 'Expire backups by the profile\'s retention, never the one the newest drill restored'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and not __fish_seen_subcommand_from setup backup status check expire help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l stanza -d 'pgBackRest stanza [default: profile\'s pitr.stanza, else main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l pg-path -d 'The cluster\'s data directory [default: profile\'s pitr.pg_path, else the sandbox\'s]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l repo -d 'Repository: s3://bucket/prefix or a directory [default: profile\'s pitr.repo, else `pitr` beside the store]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l dry-run -d 'Show the plan; change nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l restart -d 'Restart PostgreSQL when archive_mode needs it (asks first; --yes in scripts)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from setup" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l stanza -d 'pgBackRest stanza [default: profile\'s pitr.stanza, else main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l pg-path -d 'The cluster\'s data directory [default: profile\'s pitr.pg_path, else the sandbox\'s]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l repo -d 'Repository: s3://bucket/prefix or a directory [default: profile\'s pitr.repo, else `pitr` beside the store]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l type -d 'Backup type [default: incr, or full when there is none to build on]' -r -f -a "full\t''
diff\t''
incr\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l notify-url -d 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l metrics-file -d 'Prometheus textfile to update (last run, success, duration and the job\'s figures)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from backup" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l stanza -d 'pgBackRest stanza [default: profile\'s pitr.stanza, else main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l pg-path -d 'The cluster\'s data directory [default: profile\'s pitr.pg_path, else the sandbox\'s]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l repo -d 'Repository: s3://bucket/prefix or a directory [default: profile\'s pitr.repo, else `pitr` beside the store]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l canary -d 'First write a canary row (the time now) and switch WAL, so a later PITR drill can prove the point it reaches; run it from cron every few minutes'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l stanza -d 'pgBackRest stanza [default: profile\'s pitr.stanza, else main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l pg-path -d 'The cluster\'s data directory [default: profile\'s pitr.pg_path, else the sandbox\'s]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l repo -d 'Repository: s3://bucket/prefix or a directory [default: profile\'s pitr.repo, else `pitr` beside the store]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l stanza -d 'pgBackRest stanza [default: profile\'s pitr.stanza, else main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l pg-path -d 'The cluster\'s data directory [default: profile\'s pitr.pg_path, else the sandbox\'s]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l repo -d 'Repository: s3://bucket/prefix or a directory [default: profile\'s pitr.repo, else `pitr` beside the store]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l dry-run -d 'Show what would be expired; expire nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from expire" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from help" -f -a "setup" -d 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from help" -f -a "backup" -d 'Take a physical backup under the stanza\'s lock, with the profile\'s pings and metrics'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from help" -f -a "status" -d 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from help" -f -a "check" -d 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from help" -f -a "expire" -d 'Expire backups by the profile\'s retention, never the one the newest drill restored'
complete -c opsbook -n "__fish_opsbook_using_subcommand pitr; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l set -d 'Backup set [default: main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l backup -d 'latest, or a backup id (or unique prefix) [default: latest]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l before -d 'Restore the newest backup whose snapshot is older than TIME (RFC 3339, e.g. 2026-12-07T03:10:00Z, or "YYYY-MM-DD HH:MM[:SS]" in UTC)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l target-url -d 'Server on which the new database is created' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l into -d 'Name of the new database to create and restore into; an existing database is refused and left untouched. A failed or interrupted restore drops it again' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l jobs -d 'pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local file first (parallel restore needs a seekable file)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l identity -d 'age identity file for encrypted backups' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l dry-run -d 'Print the plan (backup, server, database) and touch nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l set -d 'Backup set [default: main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l backup -d 'latest, random, or a backup id (or unique prefix)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l seed -d 'Seed for --backup random and object sampling (reported, so a drill can be repeated)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l target-url -d 'Server to restore on: the drill creates opsbook_drill_<id> there and drops it afterwards; it never touches a database it did not create' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l target-time -l target -d 'With --pitr: recover to this time (RFC 3339, e.g. 2026-12-07T03:10:00Z; no zone means UTC; or an age such as 20m), `latest` (the end of the archived WAL) or `random[:24h]` (a random time in that window, reported) [default: latest]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l stanza -d 'With --pitr: the pgBackRest stanza [default: profile\'s pitr.stanza, else main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l migrations -d 'Apply these migrations to the restored database: newer ones must apply cleanly' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l check-sql -d 'SQL assertions; every statement must return true or a non-zero count' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l objects -d 'Media bucket to sample (s3://bucket[/prefix]): HEAD and a ranged GET per sampled key' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l sample -d 'How many objects to sample [default: 20]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l objects-query -d 'Take keys from this query over the restored database (first column) instead of a listing, e.g. "SELECT image_key FROM products"' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l objects-inventory -d 'Check sampled objects against the newest inventory of this object set (`backup objects --set`): each listed key is read whole and its size and SHA-256 compared' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l rpo-target -d 'Fail when the newest backup\'s snapshot is older than this (e.g. 26h)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l rto-target -d 'Fail when download + restore + verify takes longer than this (e.g. 30m)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l jobs -d 'pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local file first (parallel restore needs a seekable file)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l spool-dir -d 'Where to spool the archive with --jobs > 1 [default: the system temp dir]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l report -d 'Write a Markdown report here' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l junit -d 'Write JUnit XML here (one test case per step)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l identity -d 'age identity file for encrypted backups' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l notify-url -d 'Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l metrics-file -d 'Prometheus textfile to update (last run, success, duration and the job\'s figures)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l ephemeral -d 'Restore into a throwaway local cluster (initdb; runs as `postgres` when root)'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l pitr -d 'Drill point-in-time recovery instead of a dump: pgBackRest restores the stanza into a throwaway local cluster, recovers to --target-time and proves it with canary rows'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l globals -d 'With --ephemeral: also restore the backup\'s globals (roles), keeping owners and grants'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l presign -d 'Read sampled objects through presigned URLs'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l keep -d 'Leave the restored database or cluster in place (the report says where)'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand restore-drill" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -f -a "plan" -d 'Compare the profile\'s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -f -a "apply" -d 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and not __fish_seen_subcommand_from plan apply help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -l admin-database-url -d 'Superuser/admin connection used to create roles and the database [default: the profile\'s admin_database_url]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from plan" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -l admin-database-url -d 'Superuser/admin connection used to create roles and the database [default: the profile\'s admin_database_url]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from apply" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from help" -f -a "plan" -d 'Compare the profile\'s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from help" -f -a "apply" -d 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand provision; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -f -a "plan" -d 'Which secrets are due (no value yet, never rotated, or older than max_age)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -f -a "run" -d 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -f -a "status" -d 'Age, last rotation, next due, strategy and fingerprint of every secret'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -f -a "rollback" -d 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and not __fish_seen_subcommand_from plan run status rollback help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -l admin-database-url -d 'Admin connection for postgres-password secrets [default: the profile\'s admin_database_url]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from plan" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l admin-database-url -d 'Admin connection for postgres-password secrets [default: the profile\'s admin_database_url]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l due -d 'Rotate every secret that is due'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l resume -d 'Finish rotations a crash or failure left part-way'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -l admin-database-url -d 'Admin connection for postgres-password secrets [default: the profile\'s admin_database_url]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -l admin-database-url -d 'Admin connection for postgres-password secrets [default: the profile\'s admin_database_url]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from rollback" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from help" -f -a "plan" -d 'Which secrets are due (no value yet, never rotated, or older than max_age)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from help" -f -a "run" -d 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from help" -f -a "status" -d 'Age, last rotation, next due, strategy and fingerprint of every secret'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)'
complete -c opsbook -n "__fish_opsbook_using_subcommand rotate-secrets; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l app-url -d 'The API\'s base URL (health, metrics, CORS, rate limits)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l web-url -d 'The website\'s URL (CSP, HSTS, security headers) [default: --app-url]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l env-file -d 'The environment\'s .env file (JWT_SECRET, required variables, OTLP endpoint)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l compare-env-file -d 'Another environment\'s .env file (e.g. staging\'s): jwt-secret fails when its JWT_SECRET is the same (compared by fingerprint, never printed)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l set -d 'Backup set for backup-retention [default: main]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l migrations -d 'Migrations directory [default: profile\'s migrate.dir, else ./migrations]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l only -d 'Only these checks (comma-separated ids)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l skip -d 'Skip these checks (comma-separated ids)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l ca-file -d 'Extra CA certificate (PEM) trusted for HTTPS checks' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l timeout -d 'Per-check timeout' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l junit -d 'Write JUnit XML here (one test case per check)' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand promote-check" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -f -a "init" -d 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -f -a "list" -d 'List dead letters (oldest first) matching the filters'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -f -a "stats" -d 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -f -a "replay" -d 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -f -a "purge" -d 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and not __fish_seen_subcommand_from init list stats replay purge help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l source-url -d 'The service\'s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l token-env -d 'Environment variable holding the API\'s bearer token (http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l tenant-header -d 'Header carrying --tenant to the API [default: X-Tenant-Id]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l table -d 'Dead-letter table, optionally schema-qualified [default: the profile\'s, else opsbook_dead_letters]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from init" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l source-url -d 'The service\'s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l token-env -d 'Environment variable holding the API\'s bearer token (http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l tenant-header -d 'Header carrying --tenant to the API [default: X-Tenant-Id]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l table -d 'Dead-letter table, optionally schema-qualified [default: the profile\'s, else opsbook_dead_letters]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l id -d 'Only these ids (repeatable)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l since -d 'Failed at or after: RFC 3339, a date, or an age such as 24h' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l until -d 'Failed before: RFC 3339, a date, or an age such as 1h' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l endpoint -d 'Target URL glob (* and ?); without wildcards, a substring' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l event -d 'Event type, exactly' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l tenant -d 'Tenant, exactly (also sent as the tenant header to an http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l limit -d 'At most this many, oldest first' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l payloads -d 'Include payloads (JSON output only; they may hold personal data)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l source-url -d 'The service\'s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l token-env -d 'Environment variable holding the API\'s bearer token (http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l tenant-header -d 'Header carrying --tenant to the API [default: X-Tenant-Id]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l table -d 'Dead-letter table, optionally schema-qualified [default: the profile\'s, else opsbook_dead_letters]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l id -d 'Only these ids (repeatable)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l since -d 'Failed at or after: RFC 3339, a date, or an age such as 24h' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l until -d 'Failed before: RFC 3339, a date, or an age such as 1h' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l endpoint -d 'Target URL glob (* and ?); without wildcards, a substring' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l event -d 'Event type, exactly' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l tenant -d 'Tenant, exactly (also sent as the tenant header to an http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l limit -d 'At most this many, oldest first' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l max -d 'Exit 1 when the DLQ holds more than N dead letters [default: the profile\'s max, else 50]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from stats" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l source-url -d 'The service\'s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l token-env -d 'Environment variable holding the API\'s bearer token (http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l tenant-header -d 'Header carrying --tenant to the API [default: X-Tenant-Id]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l table -d 'Dead-letter table, optionally schema-qualified [default: the profile\'s, else opsbook_dead_letters]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l id -d 'Only these ids (repeatable)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l since -d 'Failed at or after: RFC 3339, a date, or an age such as 24h' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l until -d 'Failed before: RFC 3339, a date, or an age such as 1h' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l endpoint -d 'Target URL glob (* and ?); without wildcards, a substring' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l event -d 'Event type, exactly' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l tenant -d 'Tenant, exactly (also sent as the tenant header to an http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l limit -d 'At most this many, oldest first' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l rate -d 'Requests per second over all endpoints (retries included) [default: unlimited]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l endpoint-rate -d 'Requests per second to any one endpoint (scheme://host:port)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l concurrency -d 'Deliveries in flight at once (each holds a database connection) [default: 8]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l retries -d 'Retries per dead letter after the first attempt (5xx, 408, 429, timeouts, connection errors)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l timeout -d 'Timeout of one request (to the targets, or to the http source\'s API)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l connect-timeout -d 'Connect timeout of one request' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l breaker -d 'Consecutive failed deliveries that stop replaying to an endpoint for this run (0: never)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l signing-secret-env -d 'Environment variable with the Standard Webhooks secret(s), whsec_<base64>, several separated by spaces while rotating: signs every delivery' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l confirm-above -d 'Ask for confirmation when more than N dead letters would be replayed' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l dry-run -d 'Show the plan and send nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from replay" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l database-url -d 'PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...). The password is passed to child tools through the environment, never their arguments' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l source-url -d 'The service\'s DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks (lists GET …/dlq, replays POST …/dlq/:id/replay)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l token-env -d 'Environment variable holding the API\'s bearer token (http source)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l tenant-header -d 'Header carrying --tenant to the API [default: X-Tenant-Id]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l table -d 'Dead-letter table, optionally schema-qualified [default: the profile\'s, else opsbook_dead_letters]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l store -d 'Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l older-than -d 'Delete dead letters that failed longer ago than this, e.g. 30d' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from purge" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from help" -f -a "init" -d 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from help" -f -a "list" -d 'List dead letters (oldest first) matching the filters'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from help" -f -a "stats" -d 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from help" -f -a "replay" -d 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from help" -f -a "purge" -d 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise'
complete -c opsbook -n "__fish_opsbook_using_subcommand dlq-replay; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l param -d 'A parameter value; repeat for several' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l resume -d 'Continue run RUN_ID after its last successful step, with the same parameters' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l from -d 'Start at this step; earlier steps are skipped' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l ack -d 'Acknowledge a manual step without a terminal; repeat for several' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l dry-run -d 'Show what each step would do; built-in actions plan without side effects, shell steps are shown, not run'
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand run" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -f -a "list" -d 'List the runbooks in a directory with their description and schedule'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -f -a "show" -d 'Show a runbook\'s parameters and steps'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -f -a "validate" -d 'Check runbooks without running them; every problem is reported with file, line and column'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -f -a "schema" -d 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and not __fish_seen_subcommand_from list show validate schema help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from validate" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from schema" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the runbooks in a directory with their description and schedule'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a runbook\'s parameters and steps'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from help" -f -a "validate" -d 'Check runbooks without running them; every problem is reported with file, line and column'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from help" -f -a "schema" -d 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)'
complete -c opsbook -n "__fish_opsbook_using_subcommand runbook; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -l dir -d 'Sandbox directory' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -f -a "up" -d 'Create (or restart) the sandbox and print the environment to export'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -f -a "down" -d 'Stop the sandbox and delete its cluster, store and env file'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -f -a "status" -d 'Show whether the sandbox exists and runs'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and not __fish_seen_subcommand_from up down status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l dir -d 'Sandbox directory' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l dir -d 'Sandbox directory' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l dir -d 'Sandbox directory' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "up" -d 'Create (or restart) the sandbox and print the environment to export'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "down" -d 'Stop the sandbox and delete its cluster, store and env file'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show whether the sandbox exists and runs'
complete -c opsbook -n "__fish_opsbook_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -f -a "crontab" -d 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -f -a "systemd" -d 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -f -a "k8s" -d 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and not __fish_seen_subcommand_from crontab systemd k8s help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l workdir -d 'Directory the runs start in; runbook paths inside it are written relative to it [default: the current directory]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l bin -d 'The opsbook executable to run [default: the absolute path of this executable]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l env-file -d 'KEY=VALUE file with the runs\' settings and secrets (DATABASE_URL, OPSBOOK_STORE, ...), loaded at every run; its values are never copied into the schedule' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l log-dir -d 'Directory of the runs\' logs, one NAME.log per runbook' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from crontab" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l workdir -d 'Directory the runs start in; runbook paths inside it are written relative to it [default: the current directory]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l bin -d 'The opsbook executable to run [default: the absolute path of this executable]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l env-file -d 'KEY=VALUE file with the runs\' settings and secrets (DATABASE_URL, OPSBOOK_STORE, ...), loaded at every run; its values are never copied into the schedule' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l out -d 'Write the unit files into this directory (created when missing) instead of printing them' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l image -d 'Container image with the opsbook binary' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l secret -d 'Secret whose keys become the container\'s environment (DATABASE_URL, OPSBOOK_STORE, ...)' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from k8s" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "crontab" -d 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "systemd" -d 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "k8s" -d 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook'
complete -c opsbook -n "__fish_opsbook_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand completions" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -l config -d 'Configuration file [default: ./opsbook.toml when present]' -r -F
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -l profile -d 'Profile of the configuration file to use ([profiles.NAME]) [default: "default"]' -r
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -l output -d 'Output format of stdout: human tables and lines, or exactly one JSON document' -r -f -a "human\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -l log-format -d 'Log line format on stderr: text for people, JSON lines for log shippers' -r -f -a "text\t''
json\t''"
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -s y -l yes -d 'Answer yes to confirmation prompts (required for destructive steps without a terminal)'
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -l no-input -d 'Never prompt; fail with exit 5 when a confirmation would be needed'
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace)'
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -s q -l quiet -d 'Less output: no progress, only errors on stderr'
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -s h -l help -d 'Print help'
complete -c opsbook -n "__fish_opsbook_using_subcommand man" -s V -l version -d 'Print version'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "backup" -d 'Streaming database backups to S3/R2 or a local directory: run, list, verify, prune'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "migrate" -d 'Schema migrations (sqlx-compatible history): up, status, check, validate, dry-run, lint, new, baseline'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "pitr" -d 'Point-in-time recovery through pgBackRest: setup, backup, status, check, expire'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "restore" -d 'Restore a dump backup into a new database: pick it (id, latest, --before TIME), verify it, create the database, restore, compare row counts; a failed restore drops it again'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "restore-drill" -d 'Prove a backup restores: download and check it, restore into a scratch database or a throwaway cluster, compare row counts, run checks and migrations, sample the media bucket, measure RTO/RPO, clean up'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "provision" -d 'Plan and apply a new environment from the profile\'s [provision] table: database, roles, grants, extensions, bucket, secrets in the .env file, migrations, seeds'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "rotate-secrets" -d 'Rotate secrets with a journaled create → set → test → finish → revoke protocol: PostgreSQL passwords (single or alternating logins), random keys, password hashes, S3 access keys (IAM), gateway credentials (HTTP); stores: .env, AWS Secrets Manager, Vault'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "promote-check" -d 'The promotion checklist: secrets, database TLS, CSP, HSTS, CORS, headers, telemetry, rate limits, backups, migrations, health and metrics — concurrently, with waivers'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "dlq-replay" -d 'Dead-letter queue: list, stats (alert threshold), replay with rate limits, retries, signing and claim-once guarantees, purge with an archive'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "run" -d 'Run a runbook: declarative TOML steps with a journal, resumable after a failure'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "runbook" -d 'List, show, validate runbooks, or print the format\'s JSON Schema'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "sandbox" -d 'A throwaway local Postgres cluster with an example database, plus a local store'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "schedule" -d 'Print crontab entries, systemd units or Kubernetes CronJobs that run runbooks on their schedule'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "man" -d 'Write man pages (one per command) to a directory'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and not __fish_seen_subcommand_from backup migrate pitr restore restore-drill provision rotate-secrets promote-check dlq-replay run runbook sandbox schedule completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "run" -d 'Dump the database (pg_dump, custom format) through zstd and optional age encryption straight into the store; the manifest is written last'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "list" -d 'List complete backups (reads manifests only)'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "verify" -d 'Check a backup\'s objects against its manifest (size, SHA-256); --deep also decodes the archive and reads it with pg_restore --list. Exit 1 when a check fails'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "prune" -d 'Delete backups outside the retention policy, orphaned objects and stale uploads'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "objects" -d 'Copy an object store (the media bucket) to a second provider or a local directory, incrementally, and write an inventory (key, size, SHA-256) beside the backups'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "up" -d 'Apply pending migrations in order, each in its own transaction with lock_timeout set; refuses files with lint errors unless --allow-unsafe'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "status" -d 'Applied, pending, changed and missing migrations, and other tools\' history tables'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "check" -d 'CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "validate" -d 'Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "dry-run" -d 'Run pending migrations inside a transaction, report the locks each takes and its time, then roll back. Exit 1 when one fails'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "lint" -d 'Zero-downtime lint (squawk rules) of migration files; exit 1 on errors'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "new" -d 'Create the next timestamped migration file'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "baseline" -d 'Record migrations up to VERSION as applied without running them (existing schemas)'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from pitr" -f -a "setup" -d 'Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then prove archiving works with `pgbackrest check`. Runs on the database host'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from pitr" -f -a "backup" -d 'Take a physical backup under the stanza\'s lock, with the profile\'s pings and metrics'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from pitr" -f -a "status" -d 'The RPO now: archive lag and failures, WAL range, newest backups, last restorable point. Exit 1 when archiving fails or lags past rpo_target'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from pitr" -f -a "check" -d 'Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any problem'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from pitr" -f -a "expire" -d 'Expire backups by the profile\'s retention, never the one the newest drill restored'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from provision" -f -a "plan" -d 'Compare the profile\'s [provision] table with what exists: resource, current, desired, action (create / update / none / skipped). Changes nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from provision" -f -a "apply" -d 'Show the plan, confirm (--yes without a terminal), apply in order; stops at the first failure saying what was and was not done. Running it again changes nothing'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from rotate-secrets" -f -a "plan" -d 'Which secrets are due (no value yet, never rotated, or older than max_age)'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from rotate-secrets" -f -a "run" -d 'Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from rotate-secrets" -f -a "status" -d 'Age, last rotation, next due, strategy and fingerprint of every secret'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from rotate-secrets" -f -a "rollback" -d 'Put the previous value back (random values, access keys and gateway credentials, and alternating logins, within their grace period)'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from dlq-replay" -f -a "init" -d 'Create the default dead-letter table (opsbook_dead_letters) if it does not exist'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from dlq-replay" -f -a "list" -d 'List dead letters (oldest first) matching the filters'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from dlq-replay" -f -a "stats" -d 'Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the alert for cron)'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from dlq-replay" -f -a "replay" -d 'Replay dead letters: a plan first, confirmation above --confirm-above on a terminal (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1 when any delivery failed'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from dlq-replay" -f -a "purge" -d 'Delete dead letters older than --older-than, after archiving them as JSON Lines to the store. Destructive: confirmed on a terminal, --yes otherwise'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from runbook" -f -a "list" -d 'List the runbooks in a directory with their description and schedule'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from runbook" -f -a "show" -d 'Show a runbook\'s parameters and steps'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from runbook" -f -a "validate" -d 'Check runbooks without running them; every problem is reported with file, line and column'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from runbook" -f -a "schema" -d 'Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions)'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "up" -d 'Create (or restart) the sandbox and print the environment to export'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "down" -d 'Stop the sandbox and delete its cluster, store and env file'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "status" -d 'Show whether the sandbox exists and runs'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "crontab" -d 'Crontab entries: one commented line per scheduled runbook, logging to --log-dir'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "systemd" -d 'systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook'
complete -c opsbook -n "__fish_opsbook_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "k8s" -d 'Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook'
