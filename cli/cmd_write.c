/* Commands that write: append, import.  They open the log read-write, so
 * they fail at once (EVL_EBUSY) when another process owns the data dir. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* ================================================================ append */

enum { A_EXPECTED = 1, A_ID, A_META };

static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* Parse a command-line JSON argument that must be an object. */
static int load_object(const char *what, const char *text, json_t **out)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j)
        return cli_fail("%s in %s: %s (line %d, column %d)", evl_strerror(EVL_EJSON), what,
                        err.text, err.line, err.column);
    if (!json_is_object(j)) {
        int rc = cli_fail("%s must be a JSON object, not %s", what, json_kind(j));
        json_decref(j);
        return rc;
    }
    *out = j;
    return CLI_OK;
}

static int report_conflict(const char *stream, uint64_t current, uint64_t expected)
{
    char a[24], b[24];
    fprintf(stderr, "evlog: conflict: stream %s is at revision %s, expected %s\n", stream,
            cli_rev_name(current, a), cli_rev_name(expected, b));
    return CLI_CONFLICT;
}

int cmd_append(cli *c, const cli_command *cmd, int argc, char **argv)
{
    static const cli_flag flags[] = {
        {"--expected", 1, A_EXPECTED}, {"--id", 1, A_ID}, {"--meta", 1, A_META}, {0}};
    const char *pos[3] = {0}, *meta_text = NULL, *id_text = NULL;
    int npos = 0;
    uint64_t expected = EVL_REV_ANY;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, flags, &v);
        if (r == CLI_ARG_END)
            break;
        switch (r) {
        case CLI_ARG_POS:
            if (npos == 3)
                return cli_usage(cmd, "unexpected argument '%s'", v);
            pos[npos++] = v;
            break;
        case A_EXPECTED:
            if (evl_json_parse_expected(v, &expected) != EVL_OK)
                return cli_usage(cmd, "--expected takes any, no_stream, exists or a "
                                      "revision number, not '%s'", v);
            break;
        case A_ID:
            id_text = v;
            break;
        case A_META:
            meta_text = v;
            break;
        default:
            return cli_arg_finish(&a, r);
        }
    }
    if (npos < 2)
        return cli_usage(cmd, npos ? "missing TYPE" : "missing STREAM and TYPE");
    const char *stream = pos[0], *type = pos[1];
    uint8_t idbuf[16];
    if (id_text && evl_uuid_parse(id_text, strlen(id_text), idbuf) != EVL_OK)
        return cli_usage(cmd, "--id needs a UUID, not '%s'", id_text);
    /* Checked before opening so that a typo does not create a data dir. */
    if (evl_name_check(stream, strlen(stream)) != EVL_OK)
        return cli_fail("%s: '%s'", evl_strerror(EVL_ESTREAM), stream);
    if (evl_name_check(type, strlen(type)) != EVL_OK)
        return cli_fail("%s: '%s'", evl_strerror(EVL_ETYPE), type);

    json_t *data = NULL, *meta = NULL, *obj = NULL;
    int rc = load_object("DATA_JSON", pos[2] ? pos[2] : "{}", &data);
    if (rc == CLI_OK && meta_text)
        rc = load_object("--meta", meta_text, &meta);
    if (rc != CLI_OK) {
        json_decref(data);
        return rc;
    }
    /* Going through the same parser as HTTP and import keeps one notion of
     * what a valid event is. */
    obj = json_pack("{s:s, s:o}", "type", type, "data", data);
    if (obj && meta)
        json_object_set_new(obj, "meta", meta);
    else
        json_decref(meta);
    if (obj && id_text)
        json_object_set_new(obj, "id", json_string(id_text));
    if (!obj)
        return cli_fail("%s", evl_strerror(EVL_ENOMEM));
    evl_json_in in;
    const char *why = NULL;
    int err = evl_json_parse_event(obj, &in, &why);
    json_decref(obj);
    if (err != EVL_OK) {
        evl_json_in_free(&in);
        return cli_fail("%s", why ? why : evl_strerror(err));
    }

    evl_log *log = NULL;
    if ((rc = cli_open(c, 0, &log)) != CLI_OK) {
        evl_json_in_free(&in);
        return rc;
    }
    evl_event_in ev;
    evl_json_in_view(&in, &ev);
    evl_stream_in s = {stream, expected, &ev, 1};
    evl_append_result res;
    memset(&res, 0, sizeof res);
    err = evl_log_append(log, &s, 1, &res);
    if (err == EVL_OK && res.n_acks == 1) {
        char id[37];
        evl_uuid_format(res.acks[0].id, id);
        json_t *ack = json_pack("{s:s, s:s, s:I, s:I}", "id", id, "stream", stream,
                                "position", (json_int_t)res.acks[0].position, "revision",
                                (json_int_t)res.acks[0].revision);
        if (ack && res.idempotent)
            json_object_set_new(ack, "idempotent", json_true());
        rc = ack ? cli_print_json(stdout, ack, JSON_COMPACT)
                 : cli_fail("%s", evl_strerror(EVL_ENOMEM));
        json_decref(ack);
    } else if (err == EVL_ECONFLICT) {
        rc = report_conflict(stream, res.current_revision, expected);
    } else if (err == EVL_OK) {
        rc = cli_fail("append returned no acknowledgement");
    } else if (err == EVL_EIDREUSE) {
        rc = cli_fail("%s: %s", evl_strerror(err), id_text ? id_text : "(generated)");
    } else {
        rc = cli_fail("%s (stream %s, type %s)", evl_strerror(err), stream, type);
    }
    evl_free(res.acks);
    evl_log_close(log);
    evl_json_in_free(&in);
    return rc;
}

/* ================================================================ import */

/* Events per append batch: large enough that a commit carries many events,
 * small enough that one bad line does not hold up much. */
#define CHUNK_EVENTS 1000
/* Batches in flight at once: the writer commits queued batches together,
 * which keeps imports of interleaved streams (many tiny batches) fast. */
#define WINDOW 64
/* A line this long is not an event (events are at most 1 MiB of msgpack). */
#define MAX_LINE (64u << 20)

/* Lines read with read(2) rather than stdio so that we can tell "no more
 * input for now" (a pipe that is quiet) from "a line is ready". */
typedef struct line_reader {
    int fd;
    char *buf;
    size_t cap, start, end;
    int eof;
    uint64_t lineno;
} line_reader;

static int lr_has_line(const line_reader *r)
{
    if (r->eof)
        return 1;
    return r->end > r->start && memchr(r->buf + r->start, '\n', r->end - r->start);
}

/* True when the next lr_next() would block waiting for the writer. */
static int lr_idle(const line_reader *r)
{
    if (lr_has_line(r))
        return 0;
    struct pollfd p = {r->fd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

/* 1: a line (NUL-terminated, without its newline), 0: end of input,
 * -1: error (message printed). */
static int lr_next(line_reader *r, const char *name, char **line, size_t *len)
{
    for (;;) {
        char *nl = r->end > r->start ? memchr(r->buf + r->start, '\n', r->end - r->start)
                                     : NULL;
        if (nl || (r->eof && r->end > r->start)) {
            char *s = r->buf + r->start;
            size_t n = nl ? (size_t)(nl - s) : r->end - r->start;
            r->start += n + (nl ? 1 : 0);
            s[n] = '\0'; /* buffer keeps a spare byte at the end for this */
            if (n && s[n - 1] == '\r')
                s[--n] = '\0';
            r->lineno++;
            *line = s;
            *len = n;
            return 1;
        }
        if (r->eof)
            return 0;
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end + 1 >= r->cap) {
            if (r->cap >= MAX_LINE) {
                cli_fail("%s:%" PRIu64 ": line longer than %u bytes", name, r->lineno + 1,
                         MAX_LINE);
                return -1;
            }
            size_t ncap = r->cap ? r->cap * 2 : 1 << 16;
            char *nb = realloc(r->buf, ncap);
            if (!nb) {
                cli_fail("%s", evl_strerror(EVL_ENOMEM));
                return -1;
            }
            r->buf = nb;
            r->cap = ncap;
        }
        ssize_t got = read(r->fd, r->buf + r->end, r->cap - r->end - 1);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            cli_fail("cannot read %s: %s", name, strerror(errno));
            return -1;
        }
        if (got == 0)
            r->eof = 1;
        r->end += (size_t)got;
    }
}

/* One append batch: consecutive lines, each stream at most once. */
typedef struct batch {
    struct importer *im;
    evl_json_in *ev;
    uint64_t *line;   /* input line of each event */
    size_t n, cap;
    size_t *run;      /* index of the first event of each stream's run */
    size_t n_runs;
    /* Filled by the completion callback (writer thread), under im->mu. */
    int done, err, idempotent;
    size_t event_index, stream_index;
} batch;

typedef struct importer {
    evl_log *log;
    const char *name;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *ring[WINDOW];
    size_t head, count;
    uint64_t imported, present;
    int failed;
    /* Batches are pipelined only once one has committed new events.  Until
     * then the file may overlap the log (a rerun after a cut-short import):
     * the batch straddling the overlap fails with EVL_EIDMIX and is redone
     * one event at a time, and nothing queued behind it may commit first. */
    int pipelined;
} importer;

static void batch_free(batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        evl_json_in_free(&b->ev[i]);
    free(b->ev);
    free(b->line);
    free(b->run);
    free(b);
}

static batch *batch_new(importer *im)
{
    batch *b = calloc(1, sizeof *b);
    if (b)
        b->im = im;
    return b;
}

/* Can the event (stream) join the batch without listing a stream twice? */
static int batch_accepts(const batch *b, const char *stream)
{
    if (b->n == 0)
        return 1;
    if (b->n >= CHUNK_EVENTS)
        return 0;
    if (!strcmp(b->ev[b->n - 1].stream, stream))
        return 1;
    for (size_t r = 0; r < b->n_runs; r++)
        if (!strcmp(b->ev[b->run[r]].stream, stream))
            return 0;
    return 1;
}

/* Takes ownership of *in (moved into the batch). */
static int batch_add(batch *b, evl_json_in *in, uint64_t line)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 16;
        evl_json_in *ne = realloc(b->ev, nc * sizeof *ne);
        if (!ne)
            return -1;
        b->ev = ne;
        uint64_t *nl = realloc(b->line, nc * sizeof *nl);
        if (!nl)
            return -1;
        b->line = nl;
        size_t *nr = realloc(b->run, nc * sizeof *nr);
        if (!nr)
            return -1;
        b->run = nr;
        b->cap = nc;
    }
    if (b->n == 0 || strcmp(b->ev[b->n - 1].stream, in->stream))
        b->run[b->n_runs++] = b->n;
    b->ev[b->n] = *in;
    b->line[b->n] = line;
    b->n++;
    memset(in, 0, sizeof *in); /* moved: the caller's copy must not be freed */
    msgpack_sbuffer_init(&in->data);
    msgpack_sbuffer_init(&in->meta);
    return 0;
}

/* The batch as the log wants it; arrays freed by the caller. */
static int batch_view(const batch *b, evl_stream_in **sp, evl_event_in **ep)
{
    evl_stream_in *s = calloc(b->n_runs, sizeof *s);
    evl_event_in *e = calloc(b->n, sizeof *e);
    if (!s || !e) {
        free(s);
        free(e);
        return -1;
    }
    for (size_t i = 0; i < b->n; i++)
        evl_json_in_view(&b->ev[i], &e[i]);
    for (size_t r = 0; r < b->n_runs; r++) {
        size_t first = b->run[r], last = r + 1 < b->n_runs ? b->run[r + 1] : b->n;
        s[r].stream = b->ev[first].stream;
        s[r].expected = EVL_REV_ANY;
        s[r].events = &e[first];
        s[r].n_events = last - first;
    }
    *sp = s;
    *ep = e;
    return 0;
}

static void on_appended(void *arg, const evl_append_result *res)
{
    batch *b = arg;
    importer *im = b->im;
    pthread_mutex_lock(&im->mu);
    b->err = res->err;
    b->idempotent = res->idempotent;
    b->event_index = res->event_index;
    b->stream_index = res->stream_index;
    b->done = 1;
    pthread_cond_broadcast(&im->cv);
    pthread_mutex_unlock(&im->mu);
}

/* The input line an append error is about. */
static uint64_t error_line(const batch *b, int err, size_t event_index, size_t stream_index)
{
    switch (err) {
    case EVL_ESTREAM:
    case EVL_EDUPSTREAM:
        return stream_index < b->n_runs ? b->line[b->run[stream_index]] : b->line[0];
    case EVL_ETYPE: case EVL_EID: case EVL_EDATA: case EVL_EMETA: case EVL_ETOOBIG:
    case EVL_EMSGPACK: case EVL_EDEPTH: case EVL_EUTF8: case EVL_EDUPID:
    case EVL_EIDREUSE:
        return event_index < b->n ? b->line[event_index] : b->line[0];
    }
    return 0;
}

static int import_error(importer *im, const batch *b, int err, size_t ei, size_t si)
{
    uint64_t line = error_line(b, err, ei, si);
    if (line)
        return cli_fail("%s:%" PRIu64 ": %s", im->name, line, evl_strerror(err));
    return cli_fail("%s: lines %" PRIu64 "-%" PRIu64 ": %s", im->name, b->line[0],
                    b->line[b->n - 1], evl_strerror(err));
}

/* Some ids of the batch are in the log and some are not (an earlier import
 * was cut short), or the file repeats an event: one event at a time then
 * sorts out which are new. */
static int import_one_by_one(importer *im, batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        evl_event_in e;
        evl_json_in_view(&b->ev[i], &e);
        evl_stream_in s = {b->ev[i].stream, EVL_REV_ANY, &e, 1};
        evl_append_result res;
        memset(&res, 0, sizeof res);
        int err = evl_log_append(im->log, &s, 1, &res);
        evl_free(res.acks);
        if (err != EVL_OK)
            return cli_fail("%s:%" PRIu64 ": %s", im->name, b->line[i], evl_strerror(err));
        if (res.idempotent)
            im->present++;
        else
            im->imported++;
    }
    return CLI_OK;
}

static int drain(importer *im);

/* Wait for the oldest batch in flight and account for it. */
static int complete_oldest(importer *im)
{
    batch *b = im->ring[im->head];
    pthread_mutex_lock(&im->mu);
    while (!b->done)
        pthread_cond_wait(&im->cv, &im->mu);
    pthread_mutex_unlock(&im->mu);
    im->ring[im->head] = NULL;
    im->head = (im->head + 1) % WINDOW;
    im->count--;

    int rc = CLI_OK;
    if (im->failed) {
        /* Already reporting an error: only count what did commit. */
        if (b->err == EVL_OK)
            *(b->idempotent ? &im->present : &im->imported) += b->n;
    } else if (b->err == EVL_OK) {
        *(b->idempotent ? &im->present : &im->imported) += b->n;
        im->pipelined = !b->idempotent;
    } else if (b->err == EVL_EIDMIX || b->err == EVL_EDUPID) {
        /* Batches queued behind this one commit first whatever we do (only
         * possible once pipelined, when the file and the log overlap in a
         * strange way); let them, then go on one batch at a time. */
        im->pipelined = 0;
        rc = drain(im);
        if (rc == CLI_OK)
            rc = import_one_by_one(im, b);
    } else {
        rc = import_error(im, b, b->err, b->event_index, b->stream_index);
    }
    if (rc != CLI_OK)
        im->failed = 1;
    batch_free(b);
    return rc;
}

static int drain(importer *im)
{
    int rc = CLI_OK;
    while (im->count) {
        int r = complete_oldest(im);
        if (rc == CLI_OK)
            rc = r;
    }
    return rc;
}

/* Queue a batch (ownership passes to the importer). */
static int submit(importer *im, batch *b)
{
    if (b->n == 0) {
        batch_free(b);
        return CLI_OK;
    }
    int rc = CLI_OK;
    if (im->count == WINDOW && (rc = complete_oldest(im)) != CLI_OK) {
        batch_free(b);
        return rc;
    }
    evl_stream_in *s = NULL;
    evl_event_in *e = NULL;
    if (batch_view(b, &s, &e) != 0) {
        batch_free(b);
        return cli_fail("%s", evl_strerror(EVL_ENOMEM));
    }
    int err = evl_log_append_async(im->log, s, b->n_runs, on_appended, b);
    if (err == EVL_OK) {
        im->ring[(im->head + im->count) % WINDOW] = b;
        im->count++;
        if (!im->pipelined)
            rc = drain(im);
    } else {
        /* Refused before queueing, so nothing was written; the synchronous
         * call refuses it the same way but also names the event. */
        rc = drain(im);
        if (rc == CLI_OK) {
            evl_append_result res;
            memset(&res, 0, sizeof res);
            int err2 = evl_log_append(im->log, s, b->n_runs, &res);
            evl_free(res.acks);
            if (err2 == EVL_OK)
                *(res.idempotent ? &im->present : &im->imported) += b->n;
            else if (err2 == EVL_EIDMIX || err2 == EVL_EDUPID)
                rc = import_one_by_one(im, b);
            else
                rc = import_error(im, b, err2, res.event_index, res.stream_index);
            if (rc != CLI_OK)
                im->failed = 1;
        }
        batch_free(b);
    }
    free(s);
    free(e);
    return rc;
}

static int blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return 0;
    return 1;
}

static int import_lines(importer *im, line_reader *r)
{
    batch *b = batch_new(im);
    if (!b)
        return cli_fail("%s", evl_strerror(EVL_ENOMEM));
    int rc = CLI_OK;
    /* A bad line stops the import, but the good lines before it are still
     * committed: rerunning the fixed file then picks up where this stopped. */
    int bad_input = 0;
    for (;;) {
        /* Commit what we have before blocking on a quiet pipe, so a slow
         * producer's events do not sit unacknowledged in memory. */
        if ((b->n || im->count) && lr_idle(r)) {
            rc = submit(im, b);
            b = NULL;
            if (rc == CLI_OK)
                rc = drain(im);
            if (rc != CLI_OK)
                break;
            if (!(b = batch_new(im))) {
                rc = cli_fail("%s", evl_strerror(EVL_ENOMEM));
                break;
            }
        }
        char *line;
        size_t len;
        int got = lr_next(r, im->name, &line, &len);
        if (got <= 0) {
            rc = got < 0 ? CLI_ERR : CLI_OK;
            bad_input = got < 0;
            break;
        }
        if (blank(line))
            continue;
        json_error_t jerr;
        json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
        if (!j) {
            rc = cli_fail("%s:%" PRIu64 ": %s: %s", im->name, r->lineno,
                          evl_strerror(EVL_EJSON), jerr.text);
            bad_input = 1;
            break;
        }
        evl_json_in in;
        const char *why = NULL;
        int err = evl_json_parse_event(j, &in, &why);
        json_decref(j);
        if (err == EVL_OK && !in.stream) {
            err = EVL_EJSON;
            why = "the event has no \"subject\" (its stream)";
        }
        if (err != EVL_OK) {
            evl_json_in_free(&in);
            rc = cli_fail("%s:%" PRIu64 ": %s", im->name, r->lineno,
                          why ? why : evl_strerror(err));
            bad_input = 1;
            break;
        }
        if (!batch_accepts(b, in.stream)) {
            rc = submit(im, b);
            b = batch_new(im);
            if (rc == CLI_OK && !b)
                rc = cli_fail("%s", evl_strerror(EVL_ENOMEM));
            if (rc != CLI_OK) {
                evl_json_in_free(&in);
                break;
            }
        }
        if (batch_add(b, &in, r->lineno) != 0) {
            evl_json_in_free(&in);
            rc = cli_fail("%s", evl_strerror(EVL_ENOMEM));
            break;
        }
    }
    if (b && (rc == CLI_OK || bad_input)) {
        int sr = submit(im, b);
        b = NULL;
        if (rc == CLI_OK)
            rc = sr;
    }
    batch_free(b);
    int dr = drain(im);
    return rc == CLI_OK ? dr : rc;
}

int cmd_import(cli *c, const cli_command *cmd, int argc, char **argv)
{
    const char *file = NULL;
    cli_args a;
    cli_args_init(&a, c, cmd, argc, argv);
    for (;;) {
        const char *v = NULL;
        int r = cli_arg_next(&a, NULL, &v);
        if (r == CLI_ARG_END)
            break;
        if (r != CLI_ARG_POS)
            return cli_arg_finish(&a, r);
        if (file)
            return cli_usage(cmd, "unexpected argument '%s'", v);
        file = v;
    }
    if (!file)
        return cli_usage(cmd, "missing FILE (use - for stdin)");

    line_reader r = {0};
    r.fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : 0;
    if (r.fd < 0)
        return cli_fail("cannot open %s: %s", file, strerror(errno));
    importer im;
    memset(&im, 0, sizeof im);
    im.name = strcmp(file, "-") ? file : "stdin";
    int rc = cli_open(c, 0, &im.log);
    if (rc == CLI_OK) {
        pthread_mutex_init(&im.mu, NULL);
        pthread_cond_init(&im.cv, NULL);
        rc = import_lines(&im, &r);
        evl_log_close(im.log);
        pthread_cond_destroy(&im.cv);
        pthread_mutex_destroy(&im.mu);
        fprintf(stderr, "imported %" PRIu64 ", already present %" PRIu64 "\n", im.imported,
                im.present);
    }
    if (r.fd != 0)
        close(r.fd);
    free(r.buf);
    return rc;
}
