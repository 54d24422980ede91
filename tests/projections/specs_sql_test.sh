#!/usr/bin/env bash
# The built-in projection specs (projections/specs/*.sql), checked with the stock
# sqlite3 tool alone, so that a broken spec fails here before any engine runs it:
#
#   1. the file's directives: one '-- @projection NAME' (NAME = the file's name),
#      then '-- @on TYPE' lines only; nothing a spec may not do (transactions,
#      ATTACH, PRAGMA, the engine's _evl_ tables);
#   2. the DDL (everything before the first '-- @on') runs into a fresh database;
#   3. every handler statement prepares against that database (EXPLAIN, with the
#      parameters unbound), and uses only parameters the engine binds;
#   4. every table has exactly the seed's columns - name, order, type, NOT NULL,
#      default, primary key - and the indexes and foreign keys the seeds list.
#
# The expected schemas below are transcribed from ../shared/seeds/ (see
# docs/events.md for the mapping of each seed); they are deliberately a second
# copy, independent of the specs, so a typo in either shows up as a difference.
#
# Handler statements end with ';' at the end of a line (the splitter relies on it).
set -u

SRC=${EVL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
SPECS=$SRC/projections/specs
SQLITE=${SQLITE3:-sqlite3}

if ! command -v "$SQLITE" >/dev/null 2>&1; then
    echo "SKIP: the sqlite3 tool is not installed (apt-get install sqlite3)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evl-specs.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { checks=$((checks + 1)); }

# ---------------------------------------------------------------- expectations

# table|column|type|notnull|default|pk, in column order, per projection.
expect_columns() {
case $1 in
jobs) cat <<'EOF'
jobs|id|TEXT|0||1
jobs|model|TEXT|1||0
jobs|quantize|TEXT|0||0
jobs|init|BOOLEAN|0||0
jobs|status|TEXT|1|'queued'|0
jobs|created_at|TEXT|1||0
jobs|started_at|TEXT|0||0
jobs|finished_at|TEXT|0||0
jobs|error|TEXT|0||0
jobs|traceback|TEXT|0||0
jobs|local_path|TEXT|0||0
jobs|size_bytes|INTEGER|0||0
jobs|downloaded_bytes|INTEGER|0|0|0
jobs|progress|REAL|0||0
jobs|total_bytes|INTEGER|0||0
jobs|preferred_quantized|BOOLEAN|0||0
EOF
;;
tasks) cat <<'EOF'
tasks|task_id|INTEGER|1||1
tasks|task_type|VARCHAR(255)|1|'command'|0
tasks|batch_id|INTEGER|0||0
tasks|name|VARCHAR(255)|0||0
tasks|owner_id|INTEGER|0||0
tasks|approval_status|VARCHAR(255)|0||0
tasks|approved_by_id|INTEGER|0||0
tasks|approved_at|DATETIME|0||0
tasks|rejection_reason|TEXT|0||0
tasks|command|TEXT|1||0
tasks|arguments|TEXT|1|'[]'|0
tasks|env_vars|TEXT|1|'{}'|0
tasks|required_cores|INTEGER|1|1|0
tasks|required_gpus|TEXT|1|'[]'|0
tasks|required_memory_bytes|INTEGER|0||0
tasks|target_numa_node_id|INTEGER|0||0
tasks|container_name|VARCHAR(255)|0||0
tasks|registry_image|VARCHAR(255)|0||0
tasks|docker_image_name|VARCHAR(255)|0||0
tasks|docker_privileged|INTEGER|1|0|0
tasks|docker_mount_dirs|TEXT|0|'[]'|0
tasks|ssh_port|INTEGER|0||0
tasks|vps_backend|VARCHAR(255)|1|'docker'|0
tasks|vm_image|VARCHAR(255)|0||0
tasks|vm_disk_size|VARCHAR(255)|0||0
tasks|vm_ip|VARCHAR(255)|0||0
tasks|status|VARCHAR(255)|1|'pending'|0
tasks|assigned_node|VARCHAR(255)|0||0
tasks|assignment_suspicion_count|INTEGER|1|0|0
tasks|exit_code|INTEGER|0||0
tasks|error_message|TEXT|0||0
tasks|stdout_path|TEXT|1|''|0
tasks|stderr_path|TEXT|1|''|0
tasks|submitted_at|DATETIME|1||0
tasks|started_at|DATETIME|0||0
tasks|completed_at|DATETIME|0||0
EOF
;;
nodes) cat <<'EOF'
nodes|hostname|VARCHAR(255)|1||1
nodes|url|VARCHAR(255)|1||0
nodes|total_cores|INTEGER|1||0
nodes|memory_total_bytes|INTEGER|0||0
nodes|status|VARCHAR(255)|1|'online'|0
nodes|last_heartbeat|DATETIME|1||0
nodes|cpu_percent|REAL|0||0
nodes|memory_percent|REAL|0||0
nodes|memory_used_bytes|INTEGER|0||0
nodes|current_avg_temp|REAL|0||0
nodes|numa_topology|TEXT|0||0
nodes|gpu_info|TEXT|0||0
nodes|vm_capable|INTEGER|1|0|0
nodes|vfio_gpus|TEXT|0||0
nodes|runner_version|VARCHAR(255)|0||0
EOF
;;
auth) cat <<'EOF'
users|id|INTEGER|1||1
users|username|VARCHAR(50)|1||0
users|display_name|VARCHAR(100)|0||0
users|password_hash|VARCHAR(255)|1||0
users|is_active|INTEGER|1|1|0
users|role|VARCHAR(20)|1|'user'|0
users|created_at|DATETIME|1||0
sessions|id|INTEGER|1||1
sessions|session_id|VARCHAR(64)|1||0
sessions|user_id|INTEGER|1||0
sessions|expires_at|DATETIME|1||0
sessions|created_at|DATETIME|1||0
tokens|id|INTEGER|1||1
tokens|user_id|INTEGER|1||0
tokens|token_hash|VARCHAR(128)|1||0
tokens|name|VARCHAR(100)|1||0
tokens|last_used|DATETIME|0||0
tokens|created_at|DATETIME|1||0
invitations|id|INTEGER|1||1
invitations|token|VARCHAR(64)|1||0
invitations|role|VARCHAR(20)|1|'user'|0
invitations|group_id|INTEGER|0||0
invitations|max_usage|INTEGER|1|1|0
invitations|usage_count|INTEGER|1|0|0
invitations|expires_at|DATETIME|1||0
invitations|created_by_id|INTEGER|0||0
invitations|created_at|DATETIME|1||0
groups|id|INTEGER|1||1
groups|name|VARCHAR(100)|1||0
groups|tier|INTEGER|1|0|0
groups|limits_json|TEXT|1|'{}'|0
groups|created_at|DATETIME|1||0
user_groups|id|INTEGER|1||1
user_groups|user_id|INTEGER|1||0
user_groups|group_id|INTEGER|1||0
user_groups|role_override|VARCHAR(20)|0||0
user_groups|created_at|DATETIME|1||0
vps_assignments|id|INTEGER|1||1
vps_assignments|vps_task_id|INTEGER|1||0
vps_assignments|user_id|INTEGER|1||0
vps_assignments|created_at|DATETIME|1||0
EOF
;;
runs) cat <<'EOF'
runs|id|VARCHAR(12)|1||1
runs|name|VARCHAR(255)|0||0
runs|status|VARCHAR(20)|1||0
runs|config_json|TEXT|1||0
runs|template|VARCHAR(100)|1||0
runs|pid|INTEGER|0||0
runs|pgid|INTEGER|0||0
runs|created_at|DATETIME|1||0
runs|started_at|DATETIME|0||0
runs|completed_at|DATETIME|0||0
runs|error_message|TEXT|0||0
runs|current_erlang|FLOAT|0||0
runs|total_erlangs|INTEGER|0||0
runs|current_iteration|INTEGER|0||0
runs|total_iterations|INTEGER|0||0
EOF
;;
karr) cat <<'EOF'
runs|id|TEXT|0||1
runs|model|TEXT|0||0
runs|engine|TEXT|0||0
runs|suite_name|TEXT|0||0
runs|timestamp|TEXT|0||0
runs|passed|INTEGER|0||0
runs|total_benchmarks|INTEGER|0||0
runs|passed_count|INTEGER|0||0
runs|failed_count|INTEGER|0||0
runs|total_time_seconds|REAL|0||0
runs|kitt_version|TEXT|0||0
runs|raw_json|TEXT|0||0
runs|created_at|TEXT|0||0
benchmarks|id|INTEGER|0||1
benchmarks|run_id|TEXT|0||0
benchmarks|test_name|TEXT|0||0
benchmarks|test_version|TEXT|0||0
benchmarks|run_number|INTEGER|0||0
benchmarks|passed|INTEGER|0||0
benchmarks|timestamp|TEXT|0||0
benchmarks|created_at|TEXT|0||0
metrics|id|INTEGER|0||1
metrics|benchmark_id|INTEGER|0||0
metrics|metric_name|TEXT|0||0
metrics|metric_value|REAL|0||0
hardware|id|INTEGER|0||1
hardware|run_id|TEXT|0||0
hardware|gpu_model|TEXT|0||0
hardware|gpu_vram_gb|INTEGER|0||0
hardware|gpu_count|INTEGER|0||0
hardware|cpu_model|TEXT|0||0
hardware|cpu_cores|INTEGER|0||0
hardware|ram_gb|INTEGER|0||0
hardware|environment_type|TEXT|0||0
hardware|fingerprint|TEXT|0||0
agents|id|TEXT|0||1
agents|name|TEXT|0||0
agents|hostname|TEXT|0||0
agents|port|INTEGER|0||0
agents|token|TEXT|0||0
agents|status|TEXT|0||0
agents|gpu_info|TEXT|0||0
agents|gpu_count|INTEGER|0||0
agents|cpu_info|TEXT|0||0
agents|ram_gb|INTEGER|0||0
agents|environment_type|TEXT|0||0
agents|fingerprint|TEXT|0||0
agents|kitt_version|TEXT|0||0
agents|last_heartbeat|TEXT|0||0
agents|registered_at|TEXT|0||0
agents|notes|TEXT|0||0
agents|tags|TEXT|0||0
web_campaigns|id|TEXT|0||1
web_campaigns|name|TEXT|0||0
web_campaigns|description|TEXT|0||0
web_campaigns|config_json|TEXT|0||0
web_campaigns|status|TEXT|0||0
web_campaigns|agent_id|TEXT|0||0
web_campaigns|created_at|TEXT|0||0
web_campaigns|started_at|TEXT|0||0
web_campaigns|completed_at|TEXT|0||0
web_campaigns|total_runs|INTEGER|0||0
web_campaigns|succeeded|INTEGER|0||0
web_campaigns|failed|INTEGER|0||0
web_campaigns|skipped|INTEGER|0||0
web_campaigns|error|TEXT|0||0
quick_tests|id|TEXT|0||1
quick_tests|agent_id|TEXT|0||0
quick_tests|model_path|TEXT|0||0
quick_tests|engine_name|TEXT|0||0
quick_tests|benchmark_name|TEXT|0||0
quick_tests|suite_name|TEXT|0||0
quick_tests|status|TEXT|0||0
quick_tests|created_at|TEXT|0||0
quick_tests|started_at|TEXT|0||0
quick_tests|completed_at|TEXT|0||0
quick_tests|result_id|TEXT|0||0
quick_tests|error|TEXT|0||0
events|id|INTEGER|0||1
events|event_type|TEXT|0||0
events|source_id|TEXT|0||0
events|data|TEXT|0||0
events|created_at|TEXT|0||0
EOF
;;
saas) cat <<'EOF'
users|id|INTEGER|0||1
users|email|VARCHAR(255)|1||0
users|password_hash|VARCHAR(255)|1||0
users|created_at|TEXT|1|strftime('%Y-%m-%dT%H:%M:%fZ', 'now')|0
users|email_verified|INTEGER|1|0|0
users|verification_token|VARCHAR(255)|0||0
users|reset_token|VARCHAR(255)|0||0
users|reset_token_expires|TEXT|0||0
simulation_jobs|id|INTEGER|0||1
simulation_jobs|user_id|VARCHAR(255)|1||0
simulation_jobs|seed_text|TEXT|1||0
simulation_jobs|goal|TEXT|0||0
simulation_jobs|tier|VARCHAR(20)|0||0
simulation_jobs|credits_charged|INTEGER|1|0|0
simulation_jobs|status|TEXT|1|'PENDING'|0
simulation_jobs|pipeline_stage|INTEGER|0||0
simulation_jobs|result_report|TEXT|0||0
simulation_jobs|result_chat_log|TEXT|0||0
simulation_jobs|result_graph|TEXT|0||0
simulation_jobs|result_structured|TEXT|0||0
simulation_jobs|error_message|TEXT|0||0
simulation_jobs|gpu_provider|VARCHAR(50)|0||0
simulation_jobs|gpu_cost_usd|REAL|0||0
simulation_jobs|created_at|TEXT|1|strftime('%Y-%m-%dT%H:%M:%fZ', 'now')|0
simulation_jobs|completed_at|TEXT|0||0
simulation_jobs|pod_id|VARCHAR(255)|0||0
simulation_jobs|celery_task_id|VARCHAR(255)|0||0
simulation_jobs|workflow_id|VARCHAR(255)|0||0
simulation_jobs|workflow_run_id|VARCHAR(255)|0||0
simulation_jobs|retry_count|INTEGER|1|0|0
simulation_jobs|retry_of|INTEGER|0||0
simulation_jobs|provision_seconds|INTEGER|0||0
simulation_jobs|pipeline_seconds|INTEGER|0||0
simulation_jobs|key_insight|VARCHAR(200)|0||0
simulation_jobs|share_token|VARCHAR(64)|0||0
simulation_jobs|last_heartbeat|TEXT|0||0
simulation_jobs|enrich_web|INTEGER|1|1|0
simulation_jobs|enriched_seed|TEXT|0||0
simulation_jobs|enrichment_citations|TEXT|0||0
simulation_jobs|forecast_days|INTEGER|0||0
simulation_jobs|sim_data_available|INTEGER|1|0|0
simulation_jobs|live_status|TEXT|0||0
simulation_jobs|resume_task_id|VARCHAR(255)|0||0
simulation_jobs|markets_config|TEXT|0||0
model_routing|id|INTEGER|0||1
model_routing|sim_tier|VARCHAR(20)|1||0
model_routing|model_id|VARCHAR(255)|1||0
model_routing|gpu_type|VARCHAR(50)|1||0
model_routing|max_rounds|INTEGER|1|200|0
model_routing|vllm_args|TEXT|0||0
model_routing|target_agents|INTEGER|1|5|0
error_events|id|INTEGER|0||1
error_events|timestamp|TEXT|1|strftime('%Y-%m-%dT%H:%M:%fZ', 'now')|0
error_events|level|VARCHAR(20)|1|'ERROR'|0
error_events|source|VARCHAR(20)|1||0
error_events|message|TEXT|1||0
error_events|traceback|TEXT|0||0
error_events|user_id|VARCHAR(255)|0||0
error_events|job_id|INTEGER|0||0
error_events|request_path|VARCHAR(500)|0||0
EOF
;;
esac
}

# table|index|unique|columns (a UNIQUE column constraint shows as index UNIQUE).
expect_indexes() {
case $1 in
jobs|nodes) : ;;
tasks) cat <<'EOF'
tasks|tasks_approval_status|0|approval_status
tasks|tasks_assigned_node|0|assigned_node
tasks|tasks_batch_id|0|batch_id
tasks|tasks_owner_id|0|owner_id
EOF
;;
auth) cat <<'EOF'
groups|groups_name|1|name
invitations|invitations_created_by_id|0|created_by_id
invitations|invitations_group_id|0|group_id
invitations|invitations_token|1|token
sessions|sessions_session_id|1|session_id
sessions|sessions_user_id|0|user_id
tokens|tokens_token_hash|1|token_hash
tokens|tokens_user_id|0|user_id
user_groups|user_groups_group_id|0|group_id
user_groups|user_groups_user_id|0|user_id
user_groups|user_groups_user_id_group_id|1|user_id,group_id
users|users_username|1|username
vps_assignments|vps_assignments_user_id|0|user_id
vps_assignments|vps_assignments_vps_task_id|0|vps_task_id
vps_assignments|vps_assignments_vps_task_id_user_id|1|vps_task_id,user_id
EOF
;;
runs) cat <<'EOF'
runs|ix_runs_status|0|status
EOF
;;
karr) cat <<'EOF'
agents|UNIQUE|1|name
benchmarks|idx_benchmarks_run_id|0|run_id
events|idx_events_created_at|0|created_at
events|idx_events_event_type|0|event_type
events|idx_events_source_id|0|source_id
hardware|idx_hardware_run_id|0|run_id
metrics|idx_metrics_benchmark_id|0|benchmark_id
runs|idx_runs_engine|0|engine
runs|idx_runs_model|0|model
runs|idx_runs_suite_name|0|suite_name
runs|idx_runs_timestamp|0|timestamp
EOF
;;
saas) cat <<'EOF'
model_routing|UNIQUE|1|sim_tier
simulation_jobs|ix_simulation_jobs_pod_id|0|pod_id
simulation_jobs|ix_simulation_jobs_share_token|1|share_token
simulation_jobs|ix_simulation_jobs_user_id|0|user_id
simulation_jobs|ix_simulation_jobs_workflow_id|0|workflow_id
users|ix_users_email|1|email
EOF
;;
esac
}

# table|column|references table|references column|on delete
expect_fks() {
case $1 in
auth) cat <<'EOF'
invitations|created_by_id|users|id|SET NULL
invitations|group_id|groups|id|SET NULL
sessions|user_id|users|id|CASCADE
tokens|user_id|users|id|CASCADE
user_groups|group_id|groups|id|CASCADE
user_groups|user_id|users|id|CASCADE
vps_assignments|user_id|users|id|CASCADE
EOF
;;
karr) cat <<'EOF'
benchmarks|run_id|runs|id|CASCADE
hardware|run_id|runs|id|CASCADE
metrics|benchmark_id|benchmarks|id|CASCADE
quick_tests|agent_id|agents|id|NO ACTION
quick_tests|result_id|runs|id|NO ACTION
web_campaigns|agent_id|agents|id|NO ACTION
EOF
;;
*) : ;;
esac
}

# The parameters the engine binds besides :field and $field (include/evlog/proj.h).
AT_PARAMS=" @stream @type @position @revision @id @time @time_ns @category @data @meta "
ALL_SPECS="jobs tasks nodes auth runs karr saas"

# ---------------------------------------------------------------- the checks

for name in $ALL_SPECS; do
    spec=$SPECS/$name.sql
    if [ ! -f "$spec" ]; then fail "$name: $spec is missing"; continue; fi
    db=$tmp/$name.db

    failed_before=$failures

    # 1. directives
    projection=$(sed -n 's/^[[:space:]]*--[[:space:]]*@projection[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$spec")
    if [ "$projection" != "$name" ]; then
        fail "$name.sql: '-- @projection $name' expected once, found '${projection}'"
    else pass; fi
    bad=$(grep -n '^[[:space:]]*--[[:space:]]*@' "$spec" | grep -v -E '^[0-9]+:[[:space:]]*--[[:space:]]*@(projection|on|history)([[:space:]]|$)')
    if [ -n "$bad" ]; then fail "$name.sql: unknown directive: $bad"; else pass; fi
    noncomment=$(sed -e 's/--.*$//' "$spec")
    if grep -n -i -E '\b(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|ATTACH|DETACH|PRAGMA|VACUUM)\b' <<<"$noncomment" \
        | grep -v -i -E 'BEGIN[[:space:]]*$' >/dev/null; then
        fail "$name.sql: transactions, ATTACH and PRAGMA are the engine's, not a spec's"
    else pass; fi
    if grep -n '_evl_' <<<"$noncomment" >/dev/null; then
        fail "$name.sql: the _evl_ prefix belongs to the engine's tables"
    else pass; fi

    # 2. the DDL, into a fresh database
    awk '/^[ \t]*--[ \t]*@on([ \t]|$)/ { exit } { print }' "$spec" > "$tmp/$name.ddl.sql"
    if ! out=$("$SQLITE" -bail "$db" < "$tmp/$name.ddl.sql" 2>&1); then
        fail "$name.sql: the DDL does not run: $out"
        continue
    fi
    pass

    # 3. every handler statement prepares; parameters are ones the engine binds.
    #    The splitter emits "LINE<TAB>STATEMENT<NUL>" per statement.
    awk '
        BEGIN { inh = 0; buf = "" }
        /^[ \t]*--[ \t]*@on([ \t]|$)/ {
            if (buf != "") { printf "UNTERMINATED\t%d\n", start > "/dev/stderr"; bad = 1; buf = "" }
            inh = 1; next
        }
        !inh { next }
        /^[ \t]*--/ { next }
        /^[ \t]*$/ { if (buf == "") next }
        {
            if (buf == "") start = NR
            buf = buf $0 "\n"
            if ($0 ~ /;[ \t]*$/) { printf "%d\t%s%c", start, buf, 0; buf = "" }
        }
        END { if (buf != "") { printf "UNTERMINATED\t%d\n", start > "/dev/stderr"; bad = 1 } exit bad }
    ' "$spec" > "$tmp/$name.stmts" 2> "$tmp/$name.split.err"
    if [ -s "$tmp/$name.split.err" ]; then
        fail "$name.sql: a handler statement does not end with ';' at the end of a line ($(cat "$tmp/$name.split.err"))"
    fi
    n_stmts=0
    while IFS=$'\t' read -r -d '' line stmt; do
        n_stmts=$((n_stmts + 1))
        if ! out=$("$SQLITE" -readonly -bail "$db" "EXPLAIN $stmt" 2>&1 >/dev/null) || [ -n "$out" ]; then
            fail "$name.sql:$line: does not prepare: $out"
            continue
        fi
        # parameters, with string literals and comments removed first
        code=$(sed -e "s/'[^']*'//g" -e 's/--.*$//' <<<"$stmt")
        for p in $(grep -o -E '@[A-Za-z_][A-Za-z0-9_]*' <<<"$code" | sort -u); do
            case "$AT_PARAMS" in
                *" $p "*) ;;
                *) fail "$name.sql:$line: unknown parameter $p (the engine binds$AT_PARAMS)";;
            esac
        done
        if grep -q -E '(^|[^A-Za-z0-9_])\?[0-9]*' <<<"$code"; then
            fail "$name.sql:$line: positional parameter: use :field, \$field or @name"
        fi
        pass
    done < "$tmp/$name.stmts"
    n_handlers=$(grep -c -E '^[[:space:]]*--[[:space:]]*@on([[:space:]]|$)' "$spec")
    if [ "$n_stmts" -lt 1 ] || [ "$n_handlers" -lt 1 ]; then
        fail "$name.sql: no handlers"
    fi
    [ "$failures" -eq "$failed_before" ] &&
        echo "ok $name.sql: DDL runs; $n_handlers @on lines, $n_stmts handler statements prepare"

    # 4. the seed's tables, columns, indexes and foreign keys
    tables=$(expect_columns "$name" | cut -d'|' -f1 | awk '!seen[$0]++')
    want_tables=$(sort <<<"$tables")
    have_tables=$("$SQLITE" "$db" "SELECT name FROM sqlite_master WHERE type = 'table'
                                   AND name NOT LIKE 'sqlite_%' ORDER BY name")
    if [ "$want_tables" != "$have_tables" ]; then
        fail "$name.sql: tables differ from the seed's"
        diff <(echo "$want_tables") <(echo "$have_tables") | sed 's/^/    /'
    else pass; fi
    have_cols=""
    for t in $tables; do
        have_cols+=$("$SQLITE" "$db" "SELECT '$t', name, type, \"notnull\", COALESCE(dflt_value, ''), pk
                                      FROM pragma_table_info('$t') ORDER BY cid")$'\n'
    done
    if ! diff <(expect_columns "$name") <(printf '%s' "$have_cols") > "$tmp/$name.cols.diff"; then
        fail "$name.sql: columns differ from the seed's (< seed, > spec):"
        sed 's/^/    /' "$tmp/$name.cols.diff"
    else pass; fi
    have_idx=$("$SQLITE" "$db" "
        SELECT m.name, CASE il.origin WHEN 'u' THEN 'UNIQUE' ELSE il.name END, il.\"unique\",
               (SELECT group_concat(ii.name, ',') FROM pragma_index_info(il.name) AS ii)
          FROM sqlite_master AS m, pragma_index_list(m.name) AS il
         WHERE m.type = 'table' AND il.origin IN ('c', 'u')
         ORDER BY m.name, 2")
    if ! diff <(expect_indexes "$name") <([ -n "$have_idx" ] && echo "$have_idx") > "$tmp/$name.idx.diff"; then
        fail "$name.sql: indexes differ from the seed's (< seed, > spec):"
        sed 's/^/    /' "$tmp/$name.idx.diff"
    else pass; fi
    have_fk=$("$SQLITE" "$db" "
        SELECT m.name, fk.\"from\", fk.\"table\", fk.\"to\", fk.on_delete
          FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS fk
         WHERE m.type = 'table' ORDER BY m.name, fk.\"from\"")
    if ! diff <(expect_fks "$name") <([ -n "$have_fk" ] && echo "$have_fk") > "$tmp/$name.fk.diff"; then
        fail "$name.sql: foreign keys differ from the seed's (< seed, > spec):"
        sed 's/^/    /' "$tmp/$name.fk.diff"
    else pass; fi
    # foreign keys must point at tables that exist (SQLite only checks when enforcing)
    dangling=$("$SQLITE" "$db" "
        SELECT m.name || '.' || fk.\"from\" || ' -> ' || fk.\"table\"
          FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS fk
         WHERE m.type = 'table'
           AND fk.\"table\" NOT IN (SELECT name FROM sqlite_master WHERE type = 'table')")
    if [ -n "$dangling" ]; then fail "$name.sql: foreign key to a missing table: $dangling"; else pass; fi
    [ "$failures" -eq "$failed_before" ] &&
        echo "ok $name.sql: $(wc -w <<<"$tables") tables match the seed"
done

# Every spec in the directory is covered above (a new one needs expectations here).
for spec in "$SPECS"/*.sql; do
    base=$(basename "$spec" .sql)
    case " $ALL_SPECS " in
        *" $base "*) ;;
        *) fail "$base.sql: a built-in spec with no expectations in $(basename "$0")";;
    esac
done

# Event types must be unique across projections unless deliberately shared:
# a type handled by two specs would be applied by both.
dups=$(grep -h -E '^[[:space:]]*--[[:space:]]*@on[[:space:]]' "$SPECS"/*.sql \
        | awk '{print $NF}' | grep -v '^\*$' | sort | uniq -d)
if [ -n "$dups" ]; then
    # the same type twice in one file is an error too; across files, name them
    for t in $dups; do
        files=$(grep -l -E "^[[:space:]]*--[[:space:]]*@on[[:space:]]+$t[[:space:]]*\$" "$SPECS"/*.sql | xargs -n1 basename | tr '\n' ' ')
        fail "event type $t has handlers in more than one place: $files"
    done
else pass; fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s), $checks checks passed"
    exit 1
fi
echo "PASS: $checks checks"
