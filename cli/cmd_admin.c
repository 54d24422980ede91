/* Commands about the log as a whole: verify, stats, backup (read-only). */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "evlog/proj.h"

/* ================================================================ verify */

typedef struct progress {
    int last_pct;
} progress;

static int on_progress(void *arg, uint64_t done, uint64_t total)
{
    progress *p = arg;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct != p->last_pct) { /* one redraw per percent, not per event */
        p->last_pct = pct;
        fprintf(stderr, "\rverifying: %" PRIu64 "/%" PRIu64 " events (%d%%)", done, total,
                pct);
        fflush(stderr);
    }
    return 0;
}

/* The hash of the spec that would build projection @p name now, or "". */
static void current_hash(cli *c, const char *name, char out[17])
{
    evl_proj_spec *sp = cli_find_spec(c, name);
    snprintf(out, 17, "%s", sp ? evl_proj_spec_hash(sp) : "");
    evl_proj_spec_free(sp);
}

/* Each projection file: its checkpoint must not be ahead of the log (that
 * would mean the log lost events the table has seen), and a spec that
 * changed since the file was built is reported (it will be rebuilt). */
static int verify_projections(cli *c, evl_log *log, uint64_t head)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/projections", c->data_dir);
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort), rc = CLI_OK;
    for (int i = 0; i < n; i++) {
        const char *f = names[i]->d_name;
        size_t l = strlen(f);
        if (l > 3 && !strcmp(f + l - 3, ".db")) {
            char path[8192], err[256], now[17];
            json_t *res = NULL;
            snprintf(path, sizeof path, "%s/%s", dir, f);
            if (evl_proj_query_file(path, "SELECT projection, position, spec_hash FROM _evl_checkpoint", NULL,
                                    NULL, &res, err, sizeof err) != EVL_OK) {
                printf("projection file %s: unreadable: %s\n", f, err);
                rc = CLI_ERR;
            } else {
                json_t *row = json_array_get(json_object_get(res, "rows"), 0);
                const char *name = json_string_value(json_array_get(row, 0));
                uint64_t cp = (uint64_t)json_integer_value(json_array_get(row, 1));
                const char *hash = json_string_value(json_array_get(row, 2));
                current_hash(c, name ? name : "", now);
                /* a server may be appending beside us: the head read now,
                 * after the checkpoint, bounds every checkpoint it wrote */
                if (cp > head) head = evl_log_head(log);
                if (cp > head) {
                    printf("projection %s: checkpoint %" PRIu64 " is ahead of the log's head %" PRIu64 "\n",
                           name, cp, head);
                    rc = CLI_ERR;
                } else {
                    printf("projection %s: checkpoint %" PRIu64 " of %" PRIu64 "%s\n", name, cp, head,
                           !now[0] ? " (no spec of that name loaded)"
                           : hash && strcmp(hash, now) ? " (spec changed since it was built: it will be rebuilt)"
                                                       : "");
                }
            }
            json_decref(res);
        }
        free(names[i]);
    }
    if (n >= 0) free(names);
    return rc;
}

int cmd_verify(cli *c, const cli_command *cmd, int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, NULL, &v);
        if (r == CLI_ARG_END)
            break;
        if (r == CLI_ARG_POS)
            return cli_usage(cmd, "unexpected argument '%s'", v);
        return cli_arg_finish(&a, r);
    }
    evl_log *log = NULL;
    int rc = cli_open(c, 1, &log);
    if (rc != CLI_OK)
        return rc;
    char problem[512] = "";
    uint64_t n = 0;
    progress p = {-1};
    /* Progress is for a person watching; in scripts and logs it is noise. */
    int tty = isatty(STDERR_FILENO);
    int err = evl_log_verify(log, problem, sizeof problem, &n, tty ? on_progress : NULL, &p);
    if (tty && p.last_pct >= 0)
        fputs("\r\033[K", stderr);
    uint64_t head = evl_log_head(log);
    if (err != EVL_OK) {
        evl_log_close(log);
        printf("verify failed: %s\n", err == EVL_ECORRUPT && problem[0] ? problem
                                                                       : evl_strerror(err));
        return CLI_ERR;
    }
    printf("ok: %" PRIu64 " events verified\n", n);
    rc = verify_projections(c, log, head);
    evl_log_close(log);
    return rc;
}

/* ================================================================ digest */

int cmd_digest(cli *c, const cli_command *cmd, int argc, char **argv)
{
    static const cli_flag flags[] = {{"--at", 1, 1}, {"--projection", 1, 2}, {0}};
    uint64_t at = 0;
    const char *proj = NULL;
    int have_at = 0;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END)
            break;
        if (r == 1) {
            if (cli_flag_u64(cmd, "--at", v, &at) != CLI_OK)
                return CLI_USAGE;
            if (at == 0)
                return cli_usage(cmd, "--at wants a position from 1");
            have_at = 1;
        } else if (r == 2) {
            proj = v;
        } else if (r == CLI_ARG_POS) {
            return cli_usage(cmd, "unexpected argument '%s'", v);
        } else {
            return cli_arg_finish(&a, r);
        }
    }
    if (proj && have_at)
        return cli_usage(cmd, "--at is for the log's digest; a projection's is at its checkpoint");
    if (proj)
        return cli_proj_digest(c, proj);
    evl_log *log = NULL;
    int rc = cli_open(c, 1, &log);
    if (rc != CLI_OK)
        return rc;
    evl_digest d;
    uint64_t head = evl_log_head(log);
    int err = evl_log_digest(log, at, &d);
    evl_log_close(log);
    if (err == EVL_ENOTFOUND) {
        if (head == 0)
            return cli_fail("the log is empty: no digest yet");
        if (at > head)
            return cli_fail("position %" PRIu64 " is past the head %" PRIu64, at, head);
        return cli_fail("position %" PRIu64 " predates the hash chain", at ? at : head);
    }
    if (err != EVL_OK)
        return cli_fail("digest: %s", evl_strerror(err));
    char hex[2 * EVL_CHAIN_LEN + 1];
    for (int i = 0; i < EVL_CHAIN_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", d.hash[i]);
    printf("{\"position\":%" PRIu64 ",\"hash\":\"%s\"}\n", d.position, hex);
    return cli_flush(stdout);
}

/* ================================================================= stats */

static const char *human_bytes(uint64_t b, char buf[32])
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%" PRIu64 " B", b);
    else
        snprintf(buf, 32, "%.1f %s", v, units[u]);
    return buf;
}

static json_t *time_or_null(uint64_t head, int64_t ns)
{
    char t[40];
    if (head == 0)
        return json_null();
    size_t n = evl_time_format(ns, 9, t);
    return json_stringn(t, n);
}

static int stats_json(const evl_log_stats *st)
{
    json_t *j = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:I}", "head",
        (json_int_t)st->head, "streams", (json_int_t)st->streams, "types",
        (json_int_t)st->types, "categories", (json_int_t)st->categories, "used_bytes",
        (json_int_t)st->used_bytes, "file_bytes", (json_int_t)st->file_bytes, "map_size",
        (json_int_t)st->map_size, "first_time", time_or_null(st->head, st->first_time_ns),
        "last_time", time_or_null(st->head, st->last_time_ns), "first_time_ns",
        (json_int_t)st->first_time_ns, "last_time_ns", (json_int_t)st->last_time_ns);
    if (!j)
        return cli_fail("%s", evl_strerror(EVL_ENOMEM));
    int rc = cli_print_json(stdout, j, JSON_COMPACT);
    json_decref(j);
    return rc;
}

static void stats_table(const evl_log_stats *st, const char *dir)
{
    char b[32], t[40];
    printf("%-12s %s\n", "data dir", dir);
    printf("%-12s %" PRIu64 "\n", "head", st->head);
    printf("%-12s %" PRIu64 "\n", "streams", st->streams);
    printf("%-12s %" PRIu64 "\n", "types", st->types);
    printf("%-12s %" PRIu64 "\n", "categories", st->categories);
    printf("%-12s %s\n", "used bytes", human_bytes(st->used_bytes, b));
    printf("%-12s %s\n", "file bytes", human_bytes(st->file_bytes, b));
    printf("%-12s %s\n", "map size", human_bytes(st->map_size, b));
    if (st->head) {
        evl_time_format(st->first_time_ns, 9, t);
        printf("%-12s %s\n", "first event", t);
        evl_time_format(st->last_time_ns, 9, t);
        printf("%-12s %s\n", "last event", t);
    } else {
        printf("%-12s %s\n", "first event", "-");
        printf("%-12s %s\n", "last event", "-");
    }
}

int cmd_stats(cli *c, const cli_command *cmd, int argc, char **argv)
{
    static const cli_flag flags[] = {{"--json", 0, 1}, {0}};
    int as_json = 0;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END)
            break;
        if (r == 1) {
            as_json = 1;
            continue;
        }
        if (r == CLI_ARG_POS)
            return cli_usage(cmd, "unexpected argument '%s'", v);
        return cli_arg_finish(&a, r);
    }
    evl_log *log = NULL;
    int rc = cli_open(c, 1, &log);
    if (rc != CLI_OK)
        return rc;
    evl_log_stats st;
    memset(&st, 0, sizeof st);
    int err = evl_log_stats_get(log, &st);
    evl_log_close(log);
    if (err != EVL_OK)
        return cli_fail("cannot read statistics: %s", evl_strerror(err));
    if (as_json)
        return stats_json(&st);
    stats_table(&st, c->data_dir);
    return CLI_OK;
}

/* ================================================================ backup */

/* The specs the projection files were built with (each file stores its
 * own), except the built-in ones, into DEST/specs: a restore needs them to
 * rebuild the same tables.  Returns how many were written, or -1. */
static int backup_specs(cli *c, const char *dest)
{
    char dir[4096], path[4096 + 512];
    snprintf(dir, sizeof dir, "%s/projections", c->data_dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n >= 0) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".db") || de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        json_t *res;
        char err[256];
        if (evl_proj_query_file(path, "SELECT projection, spec_file, spec FROM _evl_checkpoint WHERE id = 1", NULL,
                                NULL, &res, err, sizeof err) != EVL_OK)
            continue; /* not a projection file, or one older than stored specs */
        json_t *row = json_array_get(json_object_get(res, "rows"), 0);
        const char *name = json_string_value(json_array_get(row, 0));
        const char *file = json_string_value(json_array_get(row, 1));
        const char *text = json_string_value(json_array_get(row, 2));
        if (name && text && !(file && !strncmp(file, "builtin:", 8))) {
            snprintf(path, sizeof path, "%s/specs", dest);
            mkdir(path, 0755);
            snprintf(path, sizeof path, "%s/specs/%s.sql", dest, name);
            FILE *f = fopen(path, "w");
            if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
                cli_fail("cannot write %s: %s", path, strerror(errno));
                n = -1;
            } else {
                n++;
            }
        }
        json_decref(res);
    }
    closedir(d);
    return n;
}

int cmd_backup(cli *c, const cli_command *cmd, int argc, char **argv)
{
    const char *dest = NULL;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, NULL, &v);
        if (r == CLI_ARG_END)
            break;
        if (r == CLI_ARG_POS && !dest) {
            dest = v;
            continue;
        }
        if (r == CLI_ARG_POS)
            return cli_usage(cmd, "unexpected argument '%s'", v);
        return cli_arg_finish(&a, r);
    }
    if (!dest)
        return cli_usage(cmd, "needs DEST_DIR");
    evl_log *log = NULL;
    int rc = cli_open(c, 1, &log); /* read-only: works beside a running evlogd */
    if (rc != CLI_OK)
        return rc;
    uint64_t head = 0;
    int err = evl_log_backup(log, dest, &head);
    evl_log_close(log);
    if (err == EVL_EBUSY)
        return cli_fail("%s already holds a log; back up into a new directory", dest);
    if (err != EVL_OK)
        return cli_fail("backup to %s failed: %s", dest, evl_strerror(err));
    int specs = backup_specs(c, dest);
    if (specs < 0)
        return CLI_ERR;
    if (specs > 0)
        printf("backed up %s to %s (at least %" PRIu64 " events, %d projection spec%s in %s/specs); restore with: "
               "evlogd --data %s --projections %s/specs\n",
               c->data_dir, dest, head, specs, specs == 1 ? "" : "s", dest, dest, dest);
    else
        printf("backed up %s to %s (at least %" PRIu64 " events); restore with: evlogd --data %s\n",
               c->data_dir, dest, head, dest);
    return CLI_OK;
}
