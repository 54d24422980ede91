/* evlog projections / evlog query on a data directory.
 *
 * When no evlogd owns the directory, the CLI runs the projection engine
 * itself until every projection has caught up with the log, then answers:
 * embedded, no server needed.  When evlogd owns it, the CLI reads the
 * projection files evlogd maintains, read-only. */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "evlog/proj.h"

typedef struct session {
    evl_log *log;
    evl_proj_engine *eng; /* NULL: another process runs the projections */
} session;

static void report_line(void *arg, const char *line) {
    (void)arg;
    fprintf(stderr, "evlog: %s\n", line);
}

static int session_open(cli *c, session *s, const char *only) {
    evl_log_options opt;
    evl_log_options_init(&opt);
    memset(s, 0, sizeof *s);
    int rc = evl_log_open(c->data_dir, &opt, &s->log);
    if (rc == EVL_EBUSY) return cli_open(c, 1, &s->log); /* evlogd runs them */
    if (rc) return cli_fail("cannot open %s: %s", c->data_dir, evl_strerror(rc));
    evl_proj_options po = {.dirs = c->proj_dirs, .n_dirs = c->n_proj_dirs, .no_builtin = c->no_builtin,
                           .report = report_line};
    if ((rc = evl_proj_open(s->log, &po, &s->eng))) {
        evl_log_close(s->log);
        return cli_fail("cannot start the projections: %s", evl_strerror(rc));
    }
    uint64_t head = evl_log_head(s->log);
    rc = only ? evl_proj_wait(s->eng, only, head, 3600 * 1000) : evl_proj_wait_all(s->eng, head, 3600 * 1000);
    if (rc && rc != EVL_EFAULTED && rc != EVL_ENOTFOUND)
        return cli_fail("projections did not catch up: %s", evl_strerror(rc));
    return CLI_OK;
}

static void session_close(session *s) {
    evl_proj_close(s->eng);
    evl_log_close(s->log);
}

static char *db_path(cli *c, session *s, const char *name) {
    const char *p = s->eng ? evl_proj_db_path(s->eng, name) : NULL;
    size_t n = strlen(c->data_dir) + strlen(name) + 32;
    char *path = malloc(n);
    if (!path) return NULL;
    if (p) snprintf(path, n, "%s", p);
    else snprintf(path, n, "%s/projections/%s.db", c->data_dir, name);
    return path;
}

/* --param NAME=VALUE: VALUE as JSON when it parses (42, true, null, "x"), else text. */
static int add_param(json_t *params, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) return -1;
    json_error_t je;
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, &je);
    if (!v) v = json_string(eq + 1);
    char *name = strndup(arg, (size_t)(eq - arg));
    json_object_set_new(params, name, v);
    free(name);
    return 0;
}

static void print_table(const json_t *res) {
    const json_t *cols = json_object_get(res, "columns"), *rows = json_object_get(res, "rows");
    size_t nc = json_array_size(cols), nr = json_array_size(rows);
    size_t *w = calloc(nc ? nc : 1, sizeof *w);
    char ***cells = calloc(nr ? nr : 1, sizeof *cells);
    for (size_t c = 0; c < nc; c++) w[c] = strlen(json_string_value(json_array_get(cols, c)));
    for (size_t r = 0; r < nr; r++) {
        cells[r] = calloc(nc ? nc : 1, sizeof **cells);
        for (size_t c = 0; c < nc; c++) {
            const json_t *v = json_array_get(json_array_get(rows, r), c);
            cells[r][c] = json_is_string(v) ? strdup(json_string_value(v))
                          : json_is_null(v) ? strdup("NULL")
                                            : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            size_t l = strlen(cells[r][c]);
            if (l > 60) { cells[r][c][57] = '.'; cells[r][c][58] = '.'; cells[r][c][59] = '.'; cells[r][c][60] = 0; l = 60; }
            if (l > w[c]) w[c] = l;
        }
    }
    for (size_t c = 0; c < nc; c++) printf("%s%-*s", c ? "  " : "", (int)w[c], json_string_value(json_array_get(cols, c)));
    printf("\n");
    for (size_t c = 0; c < nc; c++) {
        printf("%s", c ? "  " : "");
        for (size_t k = 0; k < w[c]; k++) putchar('-');
    }
    printf("\n");
    for (size_t r = 0; r < nr; r++) {
        for (size_t c = 0; c < nc; c++) {
            printf("%s%-*s", c ? "  " : "", (int)w[c], cells[r][c]);
            free(cells[r][c]);
        }
        printf("\n");
        free(cells[r]);
    }
    printf("(%zu row%s%s, as of position %lld)\n", nr, nr == 1 ? "" : "s",
           json_is_true(json_object_get(res, "truncated")) ? ", truncated" : "",
           (long long)json_integer_value(json_object_get(res, "position")));
    free(cells);
    free(w);
}

int cmd_query(cli *c, const cli_command *cmd, int argc, char **argv) {
    static const cli_flag flags[] = {{"--param", 1, 1}, {"--json", 0, 2}, {"--limit", 1, 3}, {0}};
    const char *name = NULL, *sql = NULL;
    int as_json = 0;
    uint64_t limit = 0;
    json_t *params = json_object();
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END) break;
        if (r == 1) {
            if (add_param(params, v)) { json_decref(params); return cli_usage(cmd, "--param wants NAME=VALUE, got '%s'", v); }
        } else if (r == 2) {
            as_json = 1;
        } else if (r == 3) {
            if (cli_flag_u64(cmd, "--limit", v, &limit) != CLI_OK) { json_decref(params); return CLI_USAGE; }
        } else if (r == CLI_ARG_POS && !name) {
            name = v;
        } else if (r == CLI_ARG_POS && !sql) {
            sql = v;
        } else {
            json_decref(params);
            if (r == CLI_ARG_POS) return cli_usage(cmd, "unexpected argument '%s'", v);
            return cli_arg_finish(&a, r);
        }
    }
    if (!name || !sql) { json_decref(params); return cli_usage(cmd, "needs PROJECTION and SQL"); }
    session s;
    int rc = session_open(c, &s, name);
    if (rc != CLI_OK) { json_decref(params); return rc; }
    char *path = db_path(c, &s, name), err[512];
    json_t *res = NULL;
    evl_proj_query_opts qo = {.max_rows = limit, .timeout_ms = 30000};
    if (s.eng && !evl_proj_db_path(s.eng, name)) {
        rc = cli_fail("no projection named %s", name);
    } else if (access(path, F_OK) != 0) {
        rc = cli_fail("no projection named %s in %s", name, c->data_dir);
    } else {
        int e = evl_proj_query_file(path, sql, params, &qo, &res, err, sizeof err);
        if (e) rc = cli_fail("query failed: %s", err);
        else if (as_json) rc = cli_print_json(stdout, res, JSON_COMPACT);
        else print_table(res);
    }
    json_decref(res);
    json_decref(params);
    free(path);
    session_close(&s);
    return rc;
}

/* Status from the files alone (evlogd owns the engine). */
static int file_status(cli *c, session *s, json_t *list) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/projections", c->data_dir);
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    uint64_t head = evl_log_head(s->log);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]->d_name);
        if (l > 3 && !strcmp(names[i]->d_name + l - 3, ".db")) {
            char path[8192], err[256];
            json_t *res = NULL, *tabs = NULL;
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            if (evl_proj_query_file(path, "SELECT projection, position, spec_hash, events_applied, fault_position, fault_type, error"
                                    " FROM _evl_checkpoint",
                                    NULL, NULL, &res, err, sizeof err) == EVL_OK) {
                json_t *row = json_array_get(json_object_get(res, "rows"), 0);
                json_int_t cp = json_integer_value(json_array_get(row, 1));
                int faulted = json_is_string(json_array_get(row, 6));
                json_t *o = json_pack("{s:O,s:s,s:I,s:I,s:I,s:I,s:O,s:o}", "name", json_array_get(row, 0),
                                      "state", faulted ? "faulted" : (uint64_t)cp >= head ? "live" : "catching_up", "checkpoint", cp,
                                      "head", (json_int_t)head, "lag", (json_int_t)(head > (uint64_t)cp ? head - (uint64_t)cp : 0),
                                      "events_applied", json_integer_value(json_array_get(row, 3)),
                                      "spec_hash", json_array_get(row, 2), "tables", json_object());
                if (evl_proj_query_file(path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
                                              "AND name NOT LIKE '\\_evl\\_%' ESCAPE '\\' ORDER BY name", NULL, NULL, &tabs, err, sizeof err) == EVL_OK) {
                    size_t k;
                    json_t *t;
                    json_array_foreach(json_object_get(tabs, "rows"), k, t) {
                        const char *tn = json_string_value(json_array_get(t, 0));
                        char sql[300];
                        json_t *cnt = NULL;
                        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", tn);
                        if (evl_proj_query_file(path, sql, NULL, NULL, &cnt, err, sizeof err) == EVL_OK)
                            json_object_set(json_object_get(o, "tables"), tn,
                                            json_array_get(json_array_get(json_object_get(cnt, "rows"), 0), 0));
                        json_decref(cnt);
                    }
                }
                json_decref(tabs);
                if (faulted) {
                    json_object_set(o, "fault_position", json_array_get(row, 4));
                    json_object_set(o, "fault_type", json_array_get(row, 5));
                }
                json_object_set(o, "error", json_array_get(row, 6));
                json_array_append_new(list, o);
            }
            json_decref(res);
        }
        free(names[i]);
    }
    if (n >= 0) free(names);
    return CLI_OK;
}

int cmd_projections(cli *c, const cli_command *cmd, int argc, char **argv) {
    static const cli_flag flags[] = {{"--json", 0, 1}, {0}};
    int as_json = 0;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END) break;
        if (r == 1) { as_json = 1; continue; }
        if (r == CLI_ARG_POS) return cli_usage(cmd, "unexpected argument '%s'", v);
        return cli_arg_finish(&a, r);
    }
    session s;
    int rc = session_open(c, &s, NULL);
    if (rc != CLI_OK) return rc;
    json_t *list = json_array();
    if (s.eng) {
        evl_proj_status *st;
        size_t n;
        if ((rc = evl_proj_status_get(s.eng, NULL, &st, &n))) {
            session_close(&s);
            json_decref(list);
            return cli_fail("status: %s", evl_strerror(rc));
        }
        for (size_t i = 0; i < n; i++) {
            json_t *tabs = json_object();
            for (size_t t = 0; t < st[i].n_tables; t++)
                json_object_set_new(tabs, st[i].tables[t].name, json_integer((json_int_t)st[i].tables[t].rows));
            json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:o}", "name", st[i].name, "file", st[i].file,
                                  "state", evl_proj_state_name(st[i].state), "checkpoint", (json_int_t)st[i].checkpoint,
                                  "head", (json_int_t)st[i].head, "lag", (json_int_t)st[i].lag,
                                  "events_applied", (json_int_t)st[i].events_applied, "spec_hash", st[i].spec_hash,
                                  "tables", tabs);
            if (st[i].state == EVL_PROJ_FAULTED) {
                json_object_set_new(o, "fault_position", json_integer((json_int_t)st[i].fault_position));
                json_object_set_new(o, "fault_type", st[i].fault_type ? json_string(st[i].fault_type) : json_null());
            }
            json_object_set_new(o, "error", st[i].error ? json_string(st[i].error) : json_null());
            json_array_append_new(list, o);
        }
        evl_proj_status_free(st, n);
    } else {
        file_status(c, &s, list);
    }
    session_close(&s);
    if (as_json) {
        rc = cli_print_json(stdout, list, JSON_COMPACT);
    } else {
        printf("%-12s %-12s %10s %8s %10s  %s\n", "NAME", "STATE", "CHECKPOINT", "LAG", "APPLIED", "ROWS");
        size_t i;
        json_t *o;
        json_array_foreach(list, i, o) {
            char rows[512] = "";
            size_t off = 0;
            const char *k;
            json_t *v;
            json_object_foreach(json_object_get(o, "tables"), k, v)
                if (off < sizeof rows)
                    off += (size_t)snprintf(rows + off, sizeof rows - off, "%s%s=%lld", off ? " " : "", k,
                                            (long long)json_integer_value(v));
            printf("%-12s %-12s %10lld %8lld %10lld  %s\n", json_string_value(json_object_get(o, "name")),
                   json_string_value(json_object_get(o, "state")),
                   (long long)json_integer_value(json_object_get(o, "checkpoint")),
                   (long long)json_integer_value(json_object_get(o, "lag")),
                   (long long)json_integer_value(json_object_get(o, "events_applied")), rows);
            const json_t *e = json_object_get(o, "error");
            if (json_is_string(e)) printf("  error at position %lld: %s\n",
                                          (long long)json_integer_value(json_object_get(o, "fault_position")), json_string_value(e));
        }
    }
    json_decref(list);
    return rc;
}

/* The spec that would build projection @p name: built-ins first, then each
 * --projections directory, as the engine loads them (a later duplicate is
 * skipped there).  NULL when there is none. */
evl_proj_spec *cli_find_spec(cli *c, const char *name)
{
    char err[512];
    evl_proj_spec *sp;
    size_t nb;
    const evl_proj_builtin *b = evl_proj_builtins(&nb);
    for (size_t i = 0; !c->no_builtin && i < nb; i++) {
        if (evl_proj_spec_parse(b[i].text, b[i].len, b[i].file, &sp, err, sizeof err) != EVL_OK) continue;
        if (!strcmp(evl_proj_spec_name(sp), name)) return sp;
        evl_proj_spec_free(sp);
    }
    for (size_t d = 0; d < c->n_proj_dirs; d++) {
        struct dirent **names;
        int n = scandir(c->proj_dirs[d], &names, NULL, alphasort);
        sp = NULL;
        for (int i = 0; i < n; i++) {
            size_t l = strlen(names[i]->d_name);
            if (!sp && l > 4 && !strcmp(names[i]->d_name + l - 4, ".sql")) {
                char path[8192];
                snprintf(path, sizeof path, "%s/%s", c->proj_dirs[d], names[i]->d_name);
                FILE *f = fopen(path, "rb");
                char *text = NULL;
                size_t len = 0;
                if (f) {
                    FILE *m = open_memstream(&text, &len);
                    char chunk[8192];
                    size_t r;
                    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, r, m);
                    fclose(m);
                    fclose(f);
                    if (evl_proj_spec_parse(text, len, path, &sp, err, sizeof err) == EVL_OK &&
                        strcmp(evl_proj_spec_name(sp), name)) {
                        evl_proj_spec_free(sp);
                        sp = NULL;
                    }
                    free(text);
                }
            }
            free(names[i]);
        }
        if (n >= 0) free(names);
        if (sp) return sp;
    }
    return NULL;
}

int cmd_replay(cli *c, const cli_command *cmd, int argc, char **argv)
{
    static const cli_flag flags[] = {{"--projection", 1, 1}, {"--until", 1, 2}, {"--out", 1, 3}, {0}};
    const char *name = NULL, *until = NULL, *out = NULL;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END) break;
        if (r == 1) name = v;
        else if (r == 2) until = v;
        else if (r == 3) out = v;
        else if (r == CLI_ARG_POS) return cli_usage(cmd, "unexpected argument '%s'", v);
        else return cli_arg_finish(&a, r);
    }
    if (!name || !until || !out) return cli_usage(cmd, "needs --projection, --until and --out");
    evl_log *log;
    int rc = cli_open(c, 1, &log); /* a read view is all it needs: works beside evlogd */
    if (rc != CLI_OK) return rc;
    uint64_t pos = 0;
    int64_t t;
    if (cli_parse_u64(until, &pos) == 0) {
        /* a position */
    } else if (evl_time_parse(until, strlen(until), &t) == EVL_OK) {
        /* the last position committed at or before that time, through the time index */
        uint64_t first_after;
        if (evl_log_position_at(log, t + 1, &first_after) != EVL_OK) {
            evl_log_close(log);
            return cli_fail("cannot read the time index");
        }
        pos = first_after - 1;
    } else {
        evl_log_close(log);
        return cli_usage(cmd, "--until wants a position or an ISO-8601 time, got '%s'", until);
    }
    evl_proj_spec *sp = cli_find_spec(c, name);
    if (!sp) {
        evl_log_close(log);
        return cli_fail("no projection named %s (built-in or in --projections)", name);
    }
    char err[1024];
    uint64_t at = 0;
    int e = evl_proj_build(log, sp, pos, out, &at, err, sizeof err);
    evl_proj_spec_free(sp);
    evl_log_close(log);
    if (e) return cli_fail("replay of %s failed: %s", name, err);
    printf("%s: %s as of position %" PRIu64 "\n", out, name, at);
    return CLI_OK;
}

/* ================================================================ rebuild */

/* One progress line: a bar redrawn in place on a terminal, else a line now and then. */
static void rebuild_progress(const evl_proj_status *s, int tty)
{
    uint64_t head = s->head ? s->head : 1;
    double frac = s->rebuild_active ? (double)s->rebuild_position / (double)head : 1.0;
    if (frac > 1) frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    char eta[32] = "?";
    if (s->rebuild_eta >= 0) snprintf(eta, sizeof eta, "%.0fs", s->rebuild_eta);
    fprintf(stderr, "%srebuilding %s [%s] %3.0f%% %" PRIu64 "/%" PRIu64 " %.0f events/s ETA %s%s", tty ? "\r" : "",
            s->name, bar, frac * 100, s->rebuild_position, s->head, s->rebuild_rate, eta, tty ? "\033[K" : "\n");
    fflush(stderr);
}

int cmd_rebuild(cli *c, const cli_command *cmd, int argc, char **argv)
{
    const char *name = NULL;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, NULL, &v);
        if (r == CLI_ARG_END) break;
        if (r == CLI_ARG_POS && !name) { name = v; continue; }
        if (r == CLI_ARG_POS) return cli_usage(cmd, "unexpected argument '%s'", v);
        return cli_arg_finish(&a, r);
    }
    if (!name) return cli_usage(cmd, "needs a projection NAME");
    evl_log_options lo;
    evl_log_options_init(&lo);
    evl_log *log;
    int rc = evl_log_open(c->data_dir, &lo, &log);
    if (rc == EVL_EBUSY)
        return cli_fail("an evlogd runs on %s: ask it to rebuild with\n"
                        "  curl -X POST http://HOST:PORT/projections/%s/rebuild\n"
                        "and follow the progress with GET /projections/%s", c->data_dir, name, name);
    if (rc) return cli_fail("cannot open %s: %s", c->data_dir, evl_strerror(rc));
    evl_proj_options po = {.dirs = c->proj_dirs, .n_dirs = c->n_proj_dirs, .no_builtin = c->no_builtin,
                           .report = report_line};
    evl_proj_engine *eng;
    if ((rc = evl_proj_open(log, &po, &eng))) {
        evl_log_close(log);
        return cli_fail("cannot start the projections: %s", evl_strerror(rc));
    }
    if ((rc = evl_proj_rebuild(eng, name))) {
        evl_proj_close(eng);
        evl_log_close(log);
        return rc == EVL_ENOTFOUND ? cli_fail("no projection named %s (built-in or in --projections)", name)
                                   : cli_fail("cannot rebuild %s: %s", name, evl_strerror(rc));
    }
    int tty = isatty(STDERR_FILENO);
    int64_t next_line = 0;
    for (;;) {
        rc = evl_proj_rebuild_wait(eng, name, tty ? 200 : 1000);
        if (rc != EVL_ETIMEDOUT) break;
        evl_proj_status *st;
        size_t n;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        if ((tty || now >= next_line) && evl_proj_status_get(eng, name, &st, &n) == EVL_OK) {
            rebuild_progress(&st[0], tty);
            evl_proj_status_free(st, n);
            next_line = now + 5000000000LL;
        }
    }
    if (tty) fputs("\r\033[K", stderr);
    evl_proj_status *st = NULL;
    size_t n = 0;
    if (rc == EVL_OK) rc = evl_proj_wait(eng, name, evl_log_head(log), 3600 * 1000);
    int out = CLI_OK;
    if (evl_proj_status_get(eng, name, &st, &n) != EVL_OK || n != 1) {
        out = cli_fail("cannot read the status of %s", name);
    } else if (rc == EVL_EFAULTED && st[0].rebuild_error) {
        out = cli_fail("rebuild of %s failed: %s (the old table still serves)", name, st[0].rebuild_error);
    } else if (rc) {
        out = cli_fail("rebuild of %s: %s%s%s", name, evl_strerror(rc), st[0].error ? ": " : "", st[0].error ? st[0].error : "");
    } else {
        printf("rebuilt %s: checkpoint %" PRIu64 " of %" PRIu64 ", %" PRIu64 " events applied, spec %s\n", name,
               st[0].checkpoint, st[0].head, st[0].events_applied, st[0].spec_hash);
    }
    evl_proj_status_free(st, n);
    evl_proj_close(eng);
    evl_log_close(log);
    return out;
}

/* ================================================================ history */

static void print_history(const json_t *res) {
    size_t i, k;
    const json_t *e, *ch;
    json_array_foreach(json_object_get(res, "entries"), i, e) {
        const json_t *actor = json_object_get(e, "actor");
        printf("%" JSON_INTEGER_FORMAT " %s %s %s %s\n", json_integer_value(json_object_get(e, "position")),
               json_string_value(json_object_get(e, "time")), json_string_value(json_object_get(e, "type")),
               json_is_string(actor) ? json_string_value(actor) : "-", json_string_value(json_object_get(e, "op")));
        json_array_foreach(json_object_get(e, "changes"), k, ch) {
            char *o = json_dumps(json_object_get(ch, "old"), JSON_ENCODE_ANY | JSON_COMPACT);
            char *n = json_dumps(json_object_get(ch, "new"), JSON_ENCODE_ANY | JSON_COMPACT);
            printf("    %s: %s -> %s\n", json_string_value(json_object_get(ch, "column")), o ? o : "?", n ? n : "?");
            free(o);
            free(n);
        }
    }
}

int cmd_history(cli *c, const cli_command *cmd, int argc, char **argv) {
    static const cli_flag flags[] = {{"--column", 1, 1}, {"--json", 0, 2}, {0}};
    const char *pos[3] = {0}, *column = NULL;
    int as_json = 0, n = 0;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END) break;
        if (r == 1) column = v;
        else if (r == 2) as_json = 1;
        else if (r == CLI_ARG_POS && n < 3) pos[n++] = v;
        else if (r == CLI_ARG_POS) return cli_usage(cmd, "unexpected argument '%s'", v);
        else return cli_arg_finish(&a, r);
    }
    if (n < 3) return cli_usage(cmd, "needs PROJECTION TABLE KEY");
    session s;
    int rc = session_open(c, &s, pos[0]);
    if (rc != CLI_OK) return rc;
    char *path = db_path(c, &s, pos[0]), err[512];
    json_t *res = NULL;
    if (s.eng && !evl_proj_db_path(s.eng, pos[0])) {
        rc = cli_fail("no projection named %s", pos[0]);
    } else if (!path || access(path, F_OK) != 0) {
        rc = cli_fail("no projection named %s in %s", pos[0], c->data_dir);
    } else if (evl_proj_history_file(s.log, path, pos[1], pos[2], column, &res, err, sizeof err)) {
        rc = cli_fail("history of %s %s %s: %s", pos[0], pos[1], pos[2], err);
    } else if (as_json) {
        rc = cli_print_json(stdout, res, JSON_COMPACT);
    } else {
        print_history(res);
        rc = cli_flush(stdout);
    }
    json_decref(res);
    free(path);
    session_close(&s);
    return rc;
}

/* evlog digest --projection NAME: bring it up to date (when no evlogd owns
 * the directory), then hash its tables. */
int cli_proj_digest(cli *c, const char *name) {
    session s;
    int rc = session_open(c, &s, name);
    if (rc != CLI_OK) return rc;
    char *path = db_path(c, &s, name), err[512];
    evl_proj_digest d;
    if (!path) {
        rc = cli_fail("out of memory");
    } else if ((s.eng && !evl_proj_db_path(s.eng, name)) || access(path, F_OK) != 0) {
        rc = cli_fail("no projection named %s in %s", name, c->data_dir);
    } else if ((s.eng ? evl_proj_digest_get(s.eng, name, &d, err, sizeof err)
                      : evl_proj_digest_file(path, &d, err, sizeof err)) != EVL_OK) {
        rc = cli_fail("digest of %s failed: %s", name, err);
    } else {
        char hex[65];
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d.hash[i]);
        json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:I}", "projection", name, "position",
                              (json_int_t)d.position, "hash", hex, "tables", (json_int_t)d.tables,
                              "rows", (json_int_t)d.rows);
        rc = o ? cli_print_json(stdout, o, JSON_COMPACT) : cli_fail("out of memory");
        json_decref(o);
    }
    free(path);
    session_close(&s);
    return rc;
}
