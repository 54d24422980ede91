/* Commands that read events: read, tail, export.  They open the log
 * read-only, so they work while an evlogd (or an import) owns the data dir. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* How often a follower looks at the stop flag while no event arrives. */
#define FOLLOW_POLL_MS 250

static int stopping(const cli *c)
{
    return c->stop && *c->stop;
}

/* Print every event @p q selects. */
static int print_query(cli *c, evl_log *log, const evl_query *q)
{
    evl_iter *it = NULL;
    int err = evl_iter_open(log, q, &it);
    if (err != EVL_OK)
        return cli_fail("cannot read the log: %s", evl_strerror(err));
    int rc = CLI_OK;
    evl_event ev;
    uint64_t prev = 0;
    while (rc == CLI_OK && !stopping(c)) {
        err = evl_iter_next(it, &ev);
        if (err == EVL_END)
            break;
        if (err != EVL_OK) {
            rc = cli_fail("%s (after position %" PRIu64 ")", evl_strerror(err), prev);
            break;
        }
        rc = cli_print_event(stdout, &ev);
        prev = ev.position;
    }
    evl_iter_close(it);
    return rc;
}

/* ================================================================= read */

enum { R_FROM = 1, R_LIMIT, R_BACKWARD, R_TYPE, R_CATEGORY, R_ACTOR, R_CORRELATION, R_SINCE, R_UNTIL };

/* --until POS|TIME: a number is a position, anything else an ISO-8601 time
 * (as for GET /events and evlog replay).  -1 after a usage message. */
static int until_flag(const cli_command *cmd, const char *v, evl_query *q)
{
    uint64_t pos;
    if (cli_parse_u64(v, &pos) == 0) {
        q->until_position = pos;
        if (pos > 0)
            return 0; /* 0 would mean "the head" to the query, "nothing" to a user */
    } else if (evl_time_parse(v, strlen(v), &q->until_ns) == EVL_OK) {
        return 0;
    }
    cli_usage(cmd, "--until wants a position (from 1) or an ISO-8601 time, got '%s'", v);
    return -1;
}

int cmd_read(cli *c, const cli_command *cmd, int argc, char **argv)
{
    static const cli_flag flags[] = {{"--from", 1, R_FROM},
                                     {"--limit", 1, R_LIMIT},
                                     {"--backward", 0, R_BACKWARD},
                                     {"--type", 1, R_TYPE},
                                     {"--category", 1, R_CATEGORY},
                                     {"--actor", 1, R_ACTOR},
                                     {"--correlation-id", 1, R_CORRELATION},
                                     {"--since", 1, R_SINCE},
                                     {"--until", 1, R_UNTIL},
                                     {0}};
    const char *stream = NULL;
    evl_query q;
    memset(&q, 0, sizeof q);
    uint64_t from = 0;
    int has_from = 0;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END)
            break;
        switch (r) {
        case CLI_ARG_POS:
            if (stream)
                return cli_usage(cmd, "unexpected argument '%s'", v);
            stream = v;
            break;
        case R_FROM:
            if (cli_flag_u64(cmd, "--from", v, &from))
                return CLI_USAGE;
            has_from = 1;
            break;
        case R_LIMIT:
            if (cli_flag_u64(cmd, "--limit", v, &q.limit))
                return CLI_USAGE;
            break;
        case R_BACKWARD:
            q.backward = 1;
            break;
        case R_TYPE:
            q.type = v;
            break;
        case R_CATEGORY:
            q.category = v;
            break;
        case R_ACTOR:
            q.actor = v;
            break;
        case R_CORRELATION:
            q.correlation_id = v;
            break;
        case R_SINCE:
            if (evl_time_parse(v, strlen(v), &q.since_ns) != EVL_OK)
                return cli_usage(cmd, "--since wants an ISO-8601 time, got '%s'", v);
            break;
        case R_UNTIL:
            if (until_flag(cmd, v, &q))
                return CLI_USAGE;
            break;
        default:
            return cli_arg_finish(&a, r);
        }
    }
    /* Without a stream the whole log is read, and a filter says which part:
     * a bare `evlog read` is more likely a forgotten STREAM than a wish to
     * print everything (that is `evlog export`). */
    if (!stream && !q.type && !q.category && !q.actor && !q.correlation_id)
        return cli_usage(cmd, "missing STREAM (or --actor, --correlation-id, --type, --category)");
    if (stream && evl_name_check(stream, strlen(stream)) != EVL_OK)
        return cli_fail("%s: '%s'", evl_strerror(EVL_ESTREAM), stream);
    if (stream) {
        q.stream = stream;
        q.from_revision = has_from ? from : q.backward ? EVL_REV_ANY : 0;
    } else {
        q.from_position = from; /* 0: the start, or the end when backward */
    }

    evl_log *log = NULL;
    int rc = cli_open(c, 1, &log);
    if (rc != CLI_OK)
        return rc;
    uint64_t rev;
    int err = stream ? evl_log_stream_revision(log, stream, &rev) : EVL_OK;
    if (err == EVL_ENOTFOUND)
        rc = cli_fail("stream not found: %s", stream);
    else if (err != EVL_OK)
        rc = cli_fail("cannot read stream %s: %s", stream, evl_strerror(err));
    else
        rc = print_query(c, log, &q);
    evl_log_close(log);
    return rc;
}

/* ================================================================= tail */

enum { T_FROM = 1, T_TYPE, T_CATEGORY, T_ACTOR, T_CORRELATION, T_LIMIT, T_FOLLOW };

/* The last @p n matching events up to @p head, printed oldest first. */
static int print_last(cli *c, evl_log *log, const evl_query *filter, uint64_t head, uint64_t n)
{
    if (head == 0 || n == 0)
        return CLI_OK;
    evl_query q = *filter;
    q.backward = 1;
    q.from_position = head; /* not 0 ("the end"): a commit racing us must not
                               be printed twice once we follow */
    q.limit = n;
    evl_iter *it = NULL;
    int err = evl_iter_open(log, &q, &it);
    if (err != EVL_OK)
        return cli_fail("cannot read the log: %s", evl_strerror(err));
    /* Newest first from the index; keep the rendered lines to print them in
     * log order. */
    char **lines = NULL;
    size_t count = 0, cap = 0;
    int rc = CLI_OK;
    evl_event ev;
    while ((err = evl_iter_next(it, &ev)) == EVL_OK) {
        json_t *j = evl_json_event(&ev);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!s) {
            rc = cli_fail("event at position %" PRIu64 " cannot be shown as JSON",
                          ev.position);
            break;
        }
        if (count == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nl = realloc(lines, nc * sizeof *nl);
            if (!nl) {
                free(s);
                rc = cli_fail("%s", evl_strerror(EVL_ENOMEM));
                break;
            }
            lines = nl;
            cap = nc;
        }
        lines[count++] = s;
    }
    evl_iter_close(it);
    if (rc == CLI_OK && err != EVL_END)
        rc = cli_fail("%s", evl_strerror(err));
    for (size_t i = count; i-- > 0;) {
        if (rc == CLI_OK) {
            fputs(lines[i], stdout);
            fputc('\n', stdout);
        }
        free(lines[i]);
    }
    free(lines);
    return rc == CLI_OK ? cli_flush(stdout) : rc;
}

/* Print events as they commit, from after @p cursor, until a signal or the
 * reader of stdout goes away. */
static int follow(cli *c, evl_log *log, const evl_query *filter, uint64_t cursor)
{
    while (!stopping(c)) {
        uint64_t head = 0;
        /* Bounded waits so that the stop flag is seen even if the wait is
         * not interrupted by the signal. */
        int err = evl_log_wait(log, cursor, FOLLOW_POLL_MS, &head);
        if (err == EVL_ETIMEDOUT)
            continue;
        if (err == EVL_ECLOSED)
            break;
        if (err != EVL_OK)
            return cli_fail("waiting for events: %s", evl_strerror(err));
        /* A fresh iterator per batch: an open one would pin LMDB pages for as
         * long as nothing new arrives. */
        evl_query q = *filter;
        q.from_position = cursor + 1;
        q.until_position = head;
        int rc = print_query(c, log, &q);
        if (rc == CLI_OK)
            rc = cli_flush(stdout);
        if (rc != CLI_OK)
            return rc;
        cursor = head;
    }
    return CLI_OK;
}

int cmd_tail(cli *c, const cli_command *cmd, int argc, char **argv)
{
    static const cli_flag flags[] = {{"--from", 1, T_FROM},
                                     {"--type", 1, T_TYPE},
                                     {"--category", 1, T_CATEGORY},
                                     {"--actor", 1, T_ACTOR},
                                     {"--correlation-id", 1, T_CORRELATION},
                                     {"--limit", 1, T_LIMIT},
                                     {"-n", 1, T_LIMIT},
                                     {"-f", 0, T_FOLLOW},
                                     {"--follow", 0, T_FOLLOW},
                                     {0}};
    evl_query q;
    memset(&q, 0, sizeof q);
    uint64_t from = 0, limit = 10;
    int has_from = 0, follow_mode = 0;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END)
            break;
        switch (r) {
        case CLI_ARG_POS:
            return cli_usage(cmd, "unexpected argument '%s'", v);
        case T_FROM:
            if (cli_flag_u64(cmd, "--from", v, &from))
                return CLI_USAGE;
            has_from = 1;
            break;
        case T_TYPE:
            q.type = v;
            break;
        case T_CATEGORY:
            q.category = v;
            break;
        case T_ACTOR:
            q.actor = v;
            break;
        case T_CORRELATION:
            q.correlation_id = v;
            break;
        case T_LIMIT:
            if (cli_flag_u64(cmd, "--limit", v, &limit))
                return CLI_USAGE;
            break;
        case T_FOLLOW:
            follow_mode = 1;
            break;
        default:
            return cli_arg_finish(&a, r);
        }
    }
    if (follow_mode)
        cli_catch_signals(c);

    evl_log *log = NULL;
    int rc = cli_open(c, 1, &log);
    if (rc != CLI_OK)
        return rc;
    uint64_t head = evl_log_head(log), cursor = head;
    if (!has_from) {
        rc = print_last(c, log, &q, head, limit);
    } else {
        if (head > 0 && head >= from) {
            evl_query fq = q;
            fq.from_position = from;
            fq.until_position = head;
            rc = print_query(c, log, &fq);
            if (rc == CLI_OK)
                rc = cli_flush(stdout);
        } else if (from > head) {
            cursor = from - 1; /* wait for POS itself */
        }
    }
    if (rc == CLI_OK && follow_mode)
        rc = follow(c, log, &q, cursor);
    evl_log_close(log);
    return rc;
}

/* =============================================================== export */

enum { E_FROM = 1, E_UNTIL };

int cmd_export(cli *c, const cli_command *cmd, int argc, char **argv)
{
    static const cli_flag flags[] = {{"--from", 1, E_FROM}, {"--until", 1, E_UNTIL}, {0}};
    evl_query q;
    memset(&q, 0, sizeof q);
    int has_until = 0;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END)
            break;
        switch (r) {
        case CLI_ARG_POS:
            return cli_usage(cmd, "unexpected argument '%s'", v);
        case E_FROM:
            if (cli_flag_u64(cmd, "--from", v, &q.from_position))
                return CLI_USAGE;
            break;
        case E_UNTIL:
            if (cli_flag_u64(cmd, "--until", v, &q.until_position))
                return CLI_USAGE;
            has_until = 1;
            break;
        default:
            return cli_arg_finish(&a, r);
        }
    }
    evl_log *log = NULL;
    int rc = cli_open(c, 1, &log);
    if (rc != CLI_OK)
        return rc;
    /* until 0 would mean "the head" to the query; to a user it means nothing. */
    if (!(has_until && (q.until_position == 0 || q.until_position < q.from_position)))
        rc = print_query(c, log, &q); /* one iterator: one consistent snapshot */
    evl_log_close(log);
    return rc;
}
