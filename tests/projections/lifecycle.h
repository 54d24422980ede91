/* Helpers of the built-in projections' lifecycle tests (lifecycle_*_test.c).
 *
 * Each test opens a fresh data directory with the log and the engine running
 * the built-in specs (default options), appends hand-written events, waits
 * for the projection, and compares whole rows — every column, by name and in
 * table order — with expected JSON:
 *
 *   ev(&f, "job-1", "JobQueued", "{'id':'1','model':'gpt2','at':'%s'}", T0);
 *   expect_table(&f, "jobs", "SELECT * FROM jobs WHERE id = '1'",
 *                "[{'id':'1','model':'gpt2', ...every column...}]");
 *
 * JSON text here is written with single quotes, turned into double quotes
 * before parsing (write "\\u0027" in C for an apostrophe); both strings are printf
 * formats.  In an expected row:
 * - an object or an array means "a TEXT column holding JSON": the cell must
 *   be text that parses, equals that value, and is byte for byte its compact
 *   form (what the event carried: maps and lists bind as compact JSON with
 *   their key order);
 * - true / false mean the integers 1 / 0 (SQLite's booleans);
 * - an integer must be an integer and a real a real (1.0 is not 1): this
 *   checks the columns' affinities too.
 * Every mismatching cell is printed (query, row, column, got, want). */
#ifndef EVL_TEST_LIFECYCLE_H
#define EVL_TEST_LIFECYCLE_H

#include <jansson.h>
#include <msgpack.h>
#include <stdarg.h>

#include "evlog/json.h"
#include "evlog/proj.h"
#include "test.h"

#define LC_WAIT_MS 10000

typedef struct fx {
    evl_log *log;
    evl_proj_engine *e;
    uint64_t last;          /* position of the last event appended */
    unsigned clock;         /* seconds after 2025-12-18T08:00:00Z, for tick() */
} fx;

/* Printed with a failed comparison: which step of which lifecycle. */
static char lc_context[256];

#if defined(__GNUC__)
#define LC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LC_PRINTF(a, b)
#endif

/* A fresh data dir, the log, the engine with the built-in specs. */
static inline void fx_open(fx *f, const char *name) {
    f->last = 0;
    f->clock = 0;
    OK(evl_log_open(test_path(name), NULL, &f->log));
    OK(evl_proj_open(f->log, NULL, &f->e));
}

static inline void fx_close(fx *f) {
    evl_proj_close(f->e);
    evl_log_close(f->log);
}

/* vsnprintf into a new buffer, then ' -> ". */
static inline char *lc_vfmt(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    CHECK(n >= 0);
    char *s = malloc((size_t)n + 1);
    CHECK(s);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    for (char *p = s; *p; p++)
        if (*p == '\'') *p = '"';
    return s;
}

static inline json_t *lc_parse(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    if (!j) fprintf(stderr, "bad JSON in the test at %d:%d (%s): %s\n", je.line, je.column, je.text, text);
    CHECK(j);
    return j;
}

/* Pack one event's data JSON (an object) as msgpack into @p sb (initialised here). */
static inline void lc_pack(msgpack_sbuffer *sb, const char *json) {
    json_t *d = lc_parse(json);
    CHECK(json_is_object(d));
    msgpack_sbuffer_init(sb);
    OK(evl_json_to_msgpack(d, sb));
    json_decref(d);
}

static inline int lc_append(fx *f, const char *stream, uint64_t expected, const char *type, const char *json) {
    msgpack_sbuffer sb;
    lc_pack(&sb, json);
    evl_event_in e = {.type = type, .data = sb.data, .data_len = sb.size};
    evl_stream_in s = {.stream = stream, .expected = expected, .events = &e, .n_events = 1};
    evl_append_result r;
    int rc = evl_log_append(f->log, &s, 1, &r);
    if (rc == EVL_OK) f->last = r.acks[0].position;
    evl_free(r.acks);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Append one event with an expected revision; returns the log's code (the
 * position of a success is in f->last). */
static inline LC_PRINTF(5, 6) int ev_x(fx *f, const char *stream, uint64_t expected, const char *type,
                                       const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *json = lc_vfmt(fmt, ap);
    va_end(ap);
    int rc = lc_append(f, stream, expected, type, json);
    free(json);
    return rc;
}

/* Append one event (expected revision: any); returns its position. */
static inline LC_PRINTF(4, 5) uint64_t ev(fx *f, const char *stream, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *json = lc_vfmt(fmt, ap);
    va_end(ap);
    int rc = lc_append(f, stream, EVL_REV_ANY, type, json);
    if (rc) fprintf(stderr, "append %s %s: %s\n", stream, type, evl_strerror(rc));
    CHECK(rc == EVL_OK);
    free(json);
    return f->last;
}

/* One atomic batch of n events given as stream, expected revision, type and
 * data JSON (no formats).  Consecutive events of the same stream form one
 * stream of the batch (the first one's expected revision applies). */
typedef struct lc_batch_ev { const char *stream; uint64_t expected; const char *type; const char *json; } lc_batch_ev;

static inline int batch(fx *f, const lc_batch_ev *b, size_t n) {
    msgpack_sbuffer sb[16];
    evl_event_in e[16];
    evl_stream_in s[16];
    size_t ns = 0;
    CHECK(n >= 1 && n <= 16);
    for (size_t i = 0; i < n; i++) {
        char *json = strdup(b[i].json);
        CHECK(json);
        for (char *p = json; *p; p++)
            if (*p == '\'') *p = '"';
        lc_pack(&sb[i], json);
        free(json);
        e[i] = (evl_event_in){.type = b[i].type, .data = sb[i].data, .data_len = sb[i].size};
        if (ns && !strcmp(s[ns - 1].stream, b[i].stream))
            s[ns - 1].n_events++;
        else
            s[ns++] = (evl_stream_in){.stream = b[i].stream, .expected = b[i].expected, .events = &e[i], .n_events = 1};
    }
    evl_append_result r;
    int rc = evl_log_append(f->log, s, ns, &r);
    if (rc == EVL_OK) f->last = r.acks[n - 1].position;
    evl_free(r.acks);
    for (size_t i = 0; i < n; i++) msgpack_sbuffer_destroy(&sb[i]);
    return rc;
}

/* Wait until projection @p proj has applied everything appended so far. */
static inline void sync_proj(fx *f, const char *proj) {
    int rc = evl_proj_wait(f->e, proj, f->last, LC_WAIT_MS);
    if (rc) {
        evl_proj_status *st;
        size_t n;
        if (evl_proj_status_get(f->e, proj, &st, &n) == EVL_OK) {
            fprintf(stderr, "%s: %s at %llu (%s): %s\n", proj, evl_proj_state_name(st[0].state),
                    (unsigned long long)st[0].fault_position, st[0].fault_type ? st[0].fault_type : "-",
                    st[0].error ? st[0].error : "-");
            evl_proj_status_free(st, n);
        }
    }
    CHECK_RC(rc, EVL_OK);
}

/* The commit time of the event at @p pos as @time binds it (ISO-8601, ms, Z). */
static inline void time_of(fx *f, uint64_t pos, char out[40]) {
    uint8_t *raw;
    size_t len;
    evl_event e;
    OK(evl_log_get(f->log, pos, &raw, &len));
    OK(evl_log_decode(raw, len, &e));
    evl_time_format(e.time_ns, 3, out);
    evl_free(raw);
}

/* Does the cell @p got match @p want (rules at the top of this file)? */
static inline int lc_cell_ok(const json_t *got, const json_t *want) {
    if (json_is_object(want) || json_is_array(want)) {
        if (!json_is_string(got)) return 0;
        json_error_t je;
        json_t *parsed = json_loads(json_string_value(got), JSON_DECODE_ANY, &je);
        char *compact = json_dumps(want, JSON_COMPACT);
        int ok = parsed && json_equal(parsed, want) && compact && !strcmp(compact, json_string_value(got));
        free(compact);
        json_decref(parsed);
        return ok;
    }
    if (json_is_boolean(want))
        return json_is_integer(got) && json_integer_value(got) == (json_is_true(want) ? 1 : 0);
    if (json_is_real(want)) return json_is_real(got) && json_real_value(got) == json_real_value(want);
    return json_equal(got, want);
}

/* Run @p sql (read-only) on projection @p proj; the rows, as objects keyed
 * by column in the statement's column order, must be exactly @p want (an array). */
static inline void expect_json(fx *f, const char *proj, const char *sql, const json_t *want) {
    CHECK(json_is_array(want));
    json_t *res;
    char err[512];
    int rc = evl_proj_query(f->e, proj, sql, NULL, NULL, &res, err, sizeof err);
    if (rc) fprintf(stderr, "%s: query %s: %s\n", proj, sql, err);
    CHECK(rc == EVL_OK);
    json_t *cols = json_object_get(res, "columns"), *rows = json_object_get(res, "rows");
    int bad = 0;
    if (json_array_size(rows) != json_array_size(want)) {
        char *g = json_dumps(rows, JSON_COMPACT);
        fprintf(stderr, "%s: %s\n  %zu rows, want %zu\n  got rows %s\n", proj, sql, json_array_size(rows),
                json_array_size(want), g);
        free(g);
        bad = 1;
    }
    for (size_t r = 0; !bad && r < json_array_size(want); r++) {
        json_t *wrow = json_array_get(want, r), *grow = json_array_get(rows, r);
        CHECK(json_is_object(wrow));
        if (json_object_size(wrow) != json_array_size(cols)) {
            fprintf(stderr, "%s: %s\n  row %zu: the query has %zu columns, the expected row %zu\n", proj, sql, r,
                    json_array_size(cols), json_object_size(wrow));
            bad = 1;
        }
        size_t c = 0;
        for (void *it = json_object_iter((json_t *)wrow); it; it = json_object_iter_next((json_t *)wrow, it), c++) {
            const char *key = json_object_iter_key(it);
            const char *col = json_string_value(json_array_get(cols, c));
            json_t *wv = json_object_iter_value(it), *gv = json_array_get(grow, c);
            if (!col || strcmp(col, key)) {
                fprintf(stderr, "%s: %s\n  row %zu column %zu is '%s', want '%s'\n", proj, sql, r, c,
                        col ? col : "(none)", key);
                bad = 1;
                continue;
            }
            if (!lc_cell_ok(gv, wv)) {
                char *g = json_dumps(gv, JSON_ENCODE_ANY), *w = json_dumps(wv, JSON_ENCODE_ANY);
                fprintf(stderr, "%s: %s\n  row %zu column %s: got %s, want %s\n", proj, sql, r, key, g, w);
                free(g);
                free(w);
                bad = 1;
            }
        }
    }
    if (bad && lc_context[0]) fprintf(stderr, "  (%s)\n", lc_context);
    CHECK(!bad);
    json_decref(res);
}

/* expect_json() with the expected rows as (single-quoted) JSON text. */
static inline LC_PRINTF(4, 5) void expect_table(fx *f, const char *proj, const char *sql, const char *want_fmt, ...) {
    va_list ap;
    va_start(ap, want_fmt);
    char *wtext = lc_vfmt(want_fmt, ap);
    va_end(ap);
    json_t *want = lc_parse(wtext);
    expect_json(f, proj, sql, want);
    json_decref(want);
    free(wtext);
}

/* A model of one row: every column with its expected value, in table order.
 * row_set() changes the named columns (which must exist), so each step of a
 * lifecycle states what it changes and expect_row() checks all the rest
 * stayed as they were. */
static inline LC_PRINTF(1, 2) json_t *row_new(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *text = lc_vfmt(fmt, ap);
    va_end(ap);
    json_t *row = lc_parse(text);
    CHECK(json_is_object(row));
    free(text);
    return row;
}

/* Any JSON value (single-quoted text, a format). */
static inline LC_PRINTF(1, 2) json_t *json_new(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *text = lc_vfmt(fmt, ap);
    va_end(ap);
    json_t *j = lc_parse(text);
    free(text);
    return j;
}

static inline LC_PRINTF(2, 3) void row_set(json_t *row, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *text = lc_vfmt(fmt, ap);
    va_end(ap);
    json_t *patch = lc_parse(text);
    CHECK(json_is_object(patch));
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v) {
        if (!json_object_get(row, k)) fprintf(stderr, "row_set: no column '%s' in the model\n", k);
        CHECK(json_object_get(row, k));
        json_object_set(row, k, v);
    }
    json_decref(patch);
    free(text);
}

/* The single row @p sql selects is exactly @p row. */
static inline void expect_row(fx *f, const char *proj, const char *sql, const json_t *row) {
    json_t *want = json_array();
    json_array_append(want, (json_t *)row);
    expect_json(f, proj, sql, want);
    json_decref(want);
}

/* The single integer a query returns. */
static inline long long q_int(fx *f, const char *proj, const char *sql) {
    json_t *res;
    char err[512];
    int rc = evl_proj_query(f->e, proj, sql, NULL, NULL, &res, err, sizeof err);
    if (rc) fprintf(stderr, "%s: query %s: %s\n", proj, sql, err);
    CHECK(rc == EVL_OK);
    json_t *v = json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0);
    CHECK(json_is_integer(v));
    long long n = json_integer_value(v);
    json_decref(res);
    return n;
}

/* Projection @p proj is live, not faulted, and has applied everything. */
static inline void expect_live(fx *f, const char *proj) {
    sync_proj(f, proj);
    evl_proj_status *st;
    size_t n;
    OK(evl_proj_status_get(f->e, proj, &st, &n));
    CHECK(n == 1 && st[0].state != EVL_PROJ_FAULTED && st[0].checkpoint >= f->last && !st[0].error);
    evl_proj_status_free(st, n);
}

/* Projection @p proj faulted at @p pos on an event of @p type, with an error
 * naming @p what; the other built-ins kept going. */
static inline void expect_fault(fx *f, const char *proj, uint64_t pos, const char *type, const char *what) {
    CHECK_RC(evl_proj_wait(f->e, proj, pos, LC_WAIT_MS), EVL_EFAULTED);
    evl_proj_status *st;
    size_t n;
    OK(evl_proj_status_get(f->e, proj, &st, &n));
    if (n != 1 || st[0].state != EVL_PROJ_FAULTED || st[0].fault_position != pos || !st[0].error ||
        !strstr(st[0].error, what))
        fprintf(stderr, "%s: state %s at %llu, error %s; want a fault at %llu naming '%s'\n", proj,
                evl_proj_state_name(st[0].state), (unsigned long long)st[0].fault_position,
                st[0].error ? st[0].error : "-", (unsigned long long)pos, what);
    CHECK(n == 1 && st[0].state == EVL_PROJ_FAULTED && st[0].fault_position == pos);
    CHECK(st[0].checkpoint == pos - 1 && !strcmp(st[0].fault_type, type));
    CHECK(st[0].error && strstr(st[0].error, what));
    evl_proj_status_free(st, n);
    OK(evl_proj_status_get(f->e, NULL, &st, &n));
    CHECK(n == 7); /* the seven built-ins */
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(st[i].name, proj)) continue;
        int rc = evl_proj_wait(f->e, st[i].name, pos, LC_WAIT_MS);
        if (rc == EVL_EFAULTED) { /* only by an earlier fault of its own */
            evl_proj_status *o;
            size_t on;
            OK(evl_proj_status_get(f->e, st[i].name, &o, &on));
            CHECK(o[0].fault_position < pos);
            evl_proj_status_free(o, on);
        } else {
            CHECK_RC(rc, EVL_OK);
        }
    }
    evl_proj_status_free(st, n);
}

/* The next source time: 2025-12-18T08:00:00Z plus one second per call. */
static inline const char *tick(fx *f) {
    static char buf[4][32];
    static int i;
    unsigned t = 8 * 3600 + f->clock++;
    char *b = buf[i++ & 3];
    snprintf(b, 32, "2025-12-18T%02u:%02u:%02uZ", t / 3600, t / 60 % 60, t % 60);
    return b;
}

/* row_set() with a patch that is not a format: "$AT" stands for @p at. */
static inline void row_patch(json_t *row, const char *patch, const char *at) {
    char text[4096];
    size_t o = 0;
    for (const char *p = patch; *p; p++) {
        if (!strncmp(p, "$AT", 3)) {
            o += (size_t)snprintf(text + o, sizeof text - o, "%s", at);
            p += 2;
        } else if (o + 1 < sizeof text) {
            text[o++] = *p == '\'' ? '"' : *p;
        }
        CHECK(o + 1 < sizeof text);
    }
    text[o] = 0;
    row_set(row, "%s", text);
}

/* One step of a lifecycle: an event (its data besides the entity's key and
 * `at`), and the columns it changes ("{}": the event is ignored). */
typedef struct step { const char *type, *data, *changes; } step;

/* Append each step's event on @p stream with @p key (a JSON member such as
 * "'id':'abc'") and the next tick() as `at`; after each, the row @p sql
 * selects must be the model with the step's changes. */
static inline void walk(fx *f, const char *proj, const char *sql, const char *stream, const char *key,
                        json_t *model, const step *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char *at = tick(f);
        ev(f, stream, s[i].type, "{%s,'at':'%s'%s%s}", key, at, s[i].data[0] ? "," : "", s[i].data);
        sync_proj(f, proj);
        row_patch(model, s[i].changes, at);
        snprintf(lc_context, sizeof lc_context, "%s step %zu: %s %s", stream, i, s[i].type, s[i].data);
        expect_row(f, proj, sql, model);
        lc_context[0] = 0;
    }
}
#define WALK(f, proj, sql, stream, key, model, steps) \
    walk(f, proj, sql, stream, key, model, steps, sizeof(steps) / sizeof((steps)[0]))

#endif
