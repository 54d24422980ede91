/* Allocation failure sweep (issue 7): fail the Nth allocation through
 * evl_malloc/evl_calloc/evl_realloc, for N = 1, 2, ... until the operation
 * completes without meeting the fault, over the append, read, SSE, query
 * and projection paths, once (the Nth only) and persistently (the Nth and
 * every one after it).  Each run must end in success or a clean error (a
 * 4xx/5xx problem, a closed connection, an EVL_E* code), never a crash or a
 * hang, and the state after it must be consistent: an append is all or
 * nothing, and a 201 means the events are there.  Under ASan the process
 * exits through a full shutdown, so LeakSanitizer sees every leak a failure
 * path left behind.
 *
 * Only evl_malloc fails: jansson, libevent, msgpack-c and SQLite keep their
 * own allocators.  (Routing jansson through the hook with
 * json_set_alloc_funcs was tried: Debian's jansson 2.14 json_loads() itself
 * crashes when an allocation inside it fails, so that would test jansson.)
 *
 * Needs a build with -DEVL_ALLOC_FAULTS=ON (the ASan build of
 * scripts/test.sh); without it the test is not registered. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include "common/common_int.h"
#include "evlog/json.h"
#include "evlog/proj.h"
#include "server/srv.h"
#include "test.h"

#ifndef EVL_ALLOC_FAULTS
#error "alloc_fault_test needs -DEVL_ALLOC_FAULTS=ON"
#endif

#define MAX_N 20000 /* no operation here makes that many allocations */

static int g_persist; /* the sweep in progress fails every allocation after the Nth */
static evl_log *g_log;
static evl_proj_engine *g_eng;
static evl_srv *g_srv;
static int g_port;

/* ------------------------------------------------------------- HTTP */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_srv(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(s, (struct sockaddr *)&a, sizeof a) == 0);
    return s;
}

/* Read into buf until @p done says so, the peer closes, or the deadline.
 * @return bytes read; *closed set when the peer closed. */
typedef int (*done_fn)(const char *buf, size_t n);
static size_t read_until(int s, char *buf, size_t cap, done_fn done, int timeout_ms, int *closed) {
    size_t n = 0;
    int64_t end = now_ms() + timeout_ms;
    *closed = 0;
    while (n + 1 < cap && !(n && done(buf, n))) {
        int left = (int)(end - now_ms());
        if (left <= 0) break;
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) continue;
        ssize_t k = recv(s, buf + n, cap - 1 - n, 0);
        if (k <= 0) {
            *closed = 1;
            break;
        }
        n += (size_t)k;
        buf[n] = '\0';
    }
    buf[n] = '\0';
    return n;
}

static int whole_response(const char *b, size_t n) {
    const char *h = strstr(b, "\r\n\r\n");
    if (!h) return 0;
    const char *cl = strcasestr(b, "Content-Length:");
    if (!cl || cl > h) return 0;
    return (size_t)(h + 4 - b) + strtoul(cl + 15, NULL, 10) <= n;
}

/* One request on a fresh connection.  @return the status, 0 when the server
 * closed without an answer (allowed under a fault), and the body in @p body. */
static int http(const char *method, const char *path, const char *ctype, const char *body,
                size_t body_len, char *out, size_t cap) {
    int s = connect_srv();
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, ctype ? ctype : "application/json", body_len);
    /* A server that cannot allocate the connection closes it at once: the
     * request may then not even go out, which is the same clean failure. */
    if (send(s, head, (size_t)hl, MSG_NOSIGNAL) != hl ||
        (body_len && send(s, body, body_len, MSG_NOSIGNAL) != (ssize_t)body_len)) {
        CHECK(errno == EPIPE || errno == ECONNRESET);
        close(s);
        return 0;
    }
    int closed;
    size_t n = read_until(s, out, cap, whole_response, 10000, &closed);
    close(s);
    if (!n) {
        /* a closed connection is a clean failure; silence until the deadline is a hang */
        if (!closed) fprintf(stderr, "%s %s: no answer within 10 s (a hang)\n", method, path);
        CHECK(closed);
        return 0;
    }
    CHECK(whole_response(out, n));
    int status = 0;
    CHECK(sscanf(out, "HTTP/1.1 %d", &status) == 1);
    char *b = strstr(out, "\r\n\r\n") + 4;
    memmove(out, b, strlen(b) + 1);
    return status;
}

/* A failure under a fault must be a server-side status with a problem body. */
static void check_clean_failure(const char *what, int status, const char *body) {
    if (status == 0) return;
    if (status < 500 || !strstr(body, "\"status\":")) {
        fprintf(stderr, "%s: %d %s\n", what, status, body);
        CHECK(!"a clean 5xx problem");
    }
}

static size_t count_of(const char *body, const char *needle) {
    size_t n = 0;
    for (const char *p = body; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* ------------------------------------------------------------ the sweep */

typedef struct sweep_stats { unsigned long runs, failed_runs, injected; } sweep_stats;

/* Run op(n) under "fail the n-th allocation" for n = 1, 2, ... until a run
 * meets no fault; op returns 1 on success, 0 on a clean failure, and checks
 * its own invariants. */
static sweep_stats sweep(const char *name, int persist, int (*op)(unsigned long n)) {
    sweep_stats st = {0, 0, 0};
    int64_t t0 = now_ms();
    for (unsigned long n = 1;; n++) {
        CHECK(n < MAX_N);
        g_persist = persist;
        evl_alloc_fault_arm(n, persist);
        int ok = op(n);
        unsigned long inj = evl_alloc_fault_disarm();
        st.runs++;
        st.injected += inj;
        if (!ok) st.failed_runs++;
        if (inj == 0) {
            if (!ok) fprintf(stderr, "%s: failed with no fault injected (n=%lu)\n", name, n);
            CHECK(ok);
            break;
        }
    }
    printf("%-26s %-10s N=1..%-4lu %4lu runs failed cleanly, %4lu allocations failed, %.1fs\n",
           name, persist ? "persistent" : "once", st.runs, st.failed_runs, st.injected,
           (double)(now_ms() - t0) / 1000);
    fflush(stdout);
    return st;
}

/* ------------------------------------------------------------ operations */

static char g_buf[1 << 20];

static int op_append_json(unsigned long n) {
    char path[64], body[256];
    snprintf(path, sizeof path, "/streams/af%d-%lu", g_persist, n);
    int bl = snprintf(body, sizeof body,
                      "[{\"type\":\"A\",\"data\":{\"k\":%lu,\"s\":\"x\"},\"meta\":{\"actor\":\"u\"}},"
                      "{\"type\":\"B\",\"data\":{\"a\":[1,2,{\"b\":null}]}}]", n);
    int st = http("POST", path, NULL, body, (size_t)bl, g_buf, sizeof g_buf);
    evl_alloc_fault_disarm();
    /* all or nothing, and a 201 means both are there */
    uint64_t rev = 0;
    snprintf(path, sizeof path, "af%d-%lu", g_persist, n);
    int rc = evl_log_stream_revision(g_log, path, &rev);
    int written = rc == EVL_OK && rev != EVL_REV_NONE;
    CHECK(!written || rev == 1);
    if (st == 201) CHECK(written);
    else check_clean_failure("append", st, g_buf);
    return st == 201;
}

static int op_append_multi(unsigned long n) {
    char body[512];
    int bl = snprintf(body, sizeof body,
                      "{\"streams\":[{\"stream\":\"am1%d-%lu\",\"expected_revision\":\"no_stream\","
                      "\"events\":[{\"type\":\"A\",\"data\":{}}]},{\"stream\":\"am2%d-%lu\","
                      "\"events\":[{\"type\":\"B\",\"data\":{\"x\":1}}]}]}", g_persist, n, g_persist, n);
    int st = http("POST", "/append", NULL, body, (size_t)bl, g_buf, sizeof g_buf);
    evl_alloc_fault_disarm();
    char s1[64], s2[64];
    snprintf(s1, sizeof s1, "am1%d-%lu", g_persist, n);
    snprintf(s2, sizeof s2, "am2%d-%lu", g_persist, n);
    uint64_t r1 = EVL_REV_NONE, r2 = EVL_REV_NONE;
    evl_log_stream_revision(g_log, s1, &r1);
    evl_log_stream_revision(g_log, s2, &r2);
    CHECK((r1 == EVL_REV_NONE) == (r2 == EVL_REV_NONE)); /* atomic across streams */
    if (st == 201) CHECK(r1 == 0 && r2 == 0);
    else check_clean_failure("multi append", st, g_buf);
    return st == 201;
}

static int op_append_msgpack(unsigned long n) {
    /* [{"type":"M","data":{"n":7}}] */
    static const char mp[] = "\x91\x82\xa4type\xa1M\xa4" "data\x81\xa1n\x07";
    char path[64];
    snprintf(path, sizeof path, "/streams/amp%d-%lu", g_persist, n);
    int st = http("POST", path, "application/msgpack", mp, sizeof mp - 1, g_buf, sizeof g_buf);
    if (st != 201) check_clean_failure("msgpack append", st, g_buf);
    return st == 201;
}

static int op_read_stream(unsigned long n) {
    int st = http("GET", "/streams/seed-1?limit=50", NULL, "", 0, g_buf, sizeof g_buf);
    if (st == 200) CHECK(count_of(g_buf, "\"subject\":\"seed-1\"") == 20);
    else check_clean_failure("read stream", st, g_buf);
    return st == 200;
}

static int op_read_events(unsigned long n) {
    int st = http("GET", "/events?from=1&limit=20&category=seed", NULL, "", 0, g_buf, sizeof g_buf);
    if (st == 200) CHECK(count_of(g_buf, "\"type\":\"Seeded\"") == 20);
    else check_clean_failure("read events", st, g_buf);
    return st == 200;
}

static int op_read_event_mp(unsigned long n) {
    int s = connect_srv();
    static const char req[] = "GET /events/3 HTTP/1.1\r\nHost: x\r\nAccept: application/msgpack\r\n"
                              "Connection: close\r\n\r\n";
    CHECK(send(s, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1));
    int closed;
    size_t got = read_until(s, g_buf, sizeof g_buf, whole_response, 10000, &closed);
    close(s);
    CHECK(got || closed);
    return got && !strncmp(g_buf, "HTTP/1.1 200", 12);
}

static int g_sse_want;
static int sse_enough(const char *b, size_t n) {
    if (strncmp(b, "HTTP/1.1 200", n < 12 ? n : 12)) return whole_response(b, n); /* refused */
    return (int)count_of(b, "\nid: ") >= g_sse_want;
}

static int op_sse(unsigned long n) {
    int s = connect_srv();
    static const char req[] = "GET /subscribe?from=1&category=seed HTTP/1.1\r\nHost: x\r\n"
                              "Accept: text/event-stream\r\n\r\n";
    CHECK(send(s, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1));
    int closed;
    g_sse_want = 20;
    size_t got = read_until(s, g_buf, sizeof g_buf, sse_enough, 10000, &closed);
    close(s);
    if (!got && !closed) fprintf(stderr, "subscribe (fault at allocation %lu, persist %d): no answer and no close within 10 s (a hang)\n", n, g_persist);
    CHECK(got || closed);
    if (!got) return 0;
    if (strncmp(g_buf, "HTTP/1.1 200", 12)) {
        int st = 0;
        sscanf(g_buf, "HTTP/1.1 %d", &st);
        check_clean_failure("subscribe", st, strstr(g_buf, "\r\n\r\n") ? strstr(g_buf, "\r\n\r\n") : "");
        return 0;
    }
    /* whatever arrived is in order and without gaps: ids 1.. of the seed events */
    size_t k = 0;
    for (const char *p = g_buf; (p = strstr(p, "\nid: ")); p++) {
        unsigned long id = strtoul(p + 5, NULL, 10);
        CHECK(id == k + 1);
        k++;
    }
    if (k < 20) CHECK(closed); /* it ended early: then the server closed it */
    return k >= 20;
}

static int op_query(unsigned long n) {
    static const char body[] = "{\"sql\":\"SELECT count(*), max(n) FROM seen WHERE s = :s\","
                               "\"params\":{\"s\":\"seed-1\"},\"min_position\":3}";
    int st = http("POST", "/projections/sweep/query", NULL, body, sizeof body - 1, g_buf, sizeof g_buf);
    if (st == 200) CHECK(strstr(g_buf, "\"rows\":[[20,19]]"));
    else check_clean_failure("query", st, g_buf);
    return st == 200;
}

static int op_projections(unsigned long n) {
    int st = http("GET", "/projections", NULL, "", 0, g_buf, sizeof g_buf);
    if (st != 200) check_clean_failure("projections", st, g_buf);
    return st == 200;
}

static int op_metrics(unsigned long n) {
    int st = http("GET", "/metrics", NULL, "", 0, g_buf, sizeof g_buf);
    if (st != 200) check_clean_failure("metrics", st, g_buf);
    return st == 200;
}

/* The library alone: a JSON event in, msgpack out, appended, read back. */
static int op_lib_roundtrip(unsigned long n) {
    json_error_t je;
    json_t *j = json_loads("{\"type\":\"L\",\"data\":{\"a\":{\"b\":[1,\"two\",3.5]}},"
                           "\"meta\":{\"correlation_id\":\"c-1\"}}", 0, &je);
    if (!j) return 0;
    evl_json_in in;
    const char *why;
    int rc = evl_json_parse_event(j, &in, &why);
    json_decref(j);
    if (rc) {
        CHECK(rc == EVL_ENOMEM);
        evl_json_in_free(&in);
        return 0;
    }
    evl_event_in ev;
    evl_json_in_view(&in, &ev);
    char stream[64];
    snprintf(stream, sizeof stream, "lib%d-%lu", g_persist, n);
    evl_stream_in s = {.stream = stream, .expected = EVL_REV_NO_STREAM, .events = &ev, .n_events = 1};
    evl_append_result res;
    rc = evl_log_append(g_log, &s, 1, &res);
    evl_json_in_free(&in);
    evl_free(res.acks);
    if (rc) {
        if (rc != EVL_ENOMEM) fprintf(stderr, "append: %s\n", evl_errname(rc));
        CHECK(rc == EVL_ENOMEM);
        return 0;
    }
    evl_query q = {.stream = stream};
    evl_iter *it;
    if ((rc = evl_iter_open(g_log, &q, &it))) {
        CHECK(rc == EVL_ENOMEM);
        return 0;
    }
    evl_event e;
    int ok = 0;
    while ((rc = evl_iter_next(it, &e)) == EVL_OK) {
        json_t *out = evl_json_event(&e);
        if (out) ok = 1;
        json_decref(out);
    }
    CHECK(rc == EVL_END || rc == EVL_ENOMEM);
    evl_iter_close(it);
    return ok && rc == EVL_END;
}

static const char SPEC[] =
    "-- @projection sweep\n"
    "CREATE TABLE seen (pos INTEGER PRIMARY KEY, s TEXT, n INTEGER, obj TEXT, actor TEXT);\n"
    "-- @on Seeded\n"
    "INSERT INTO seen VALUES (@position, @stream, :n, :obj, $actor);\n";

static const char SPEC2[] =
    "-- @projection sweep2\n"
    "CREATE TABLE seen (pos INTEGER PRIMARY KEY, s TEXT, n INTEGER, obj TEXT, actor TEXT);\n"
    "-- @on Seeded\n"
    "INSERT INTO seen VALUES (@position, @stream, :n, :obj, $actor);\n";

static int op_spec_parse(unsigned long n) {
    evl_proj_spec *sp = NULL;
    char err[256];
    int rc = evl_proj_spec_parse(SPEC, sizeof SPEC - 1, "sweep.sql", &sp, err, sizeof err);
    evl_proj_spec_free(sp);
    if (rc) CHECK(rc == EVL_ENOMEM || rc == EVL_ESPEC);
    return rc == EVL_OK;
}

/* The projector under faults: a new engine over the whole log (open, load
 * the spec, replay every event), then status and a query.  A failure leaves
 * the projection faulted with a message or makes open fail; either way the
 * engine closes cleanly, and a later engine without faults converges. */
static const char *g_specdir;
static const char *g_specdir2, *g_datadir;
static int op_projector(unsigned long n) {
    /* its own projection (sweep2), from scratch every time: the whole replay is swept */
    static const char *const ext[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char f[600];
        snprintf(f, sizeof f, "%s/projections/sweep2.db%s", g_datadir, ext[i]);
        unlink(f);
    }
    evl_proj_options po = {.dirs = &g_specdir2, .n_dirs = 1, .no_builtin = 1};
    evl_proj_engine *e = NULL;
    int rc = evl_proj_open(g_log, &po, &e);
    if (rc) {
        CHECK(rc == EVL_ENOMEM || rc >= EVL_ESYS_BASE);
        CHECK(e == NULL);
        return 0;
    }
    int ok = evl_proj_wait(e, "sweep2", evl_log_head(g_log), 5000) == EVL_OK;
    json_t *res = NULL;
    char err[256];
    if (ok) ok = evl_proj_query(e, "sweep2", "SELECT count(*), sum(n) FROM seen", NULL, NULL, &res,
                                err, sizeof err) == EVL_OK;
    if (ok) { /* and when it says it is done, the table is right */
        char *rows = json_dumps(json_object_get(res, "rows"), JSON_COMPACT);
        CHECK(rows && !strcmp(rows, "[[20,190]]"));
        free(rows);
    }
    json_decref(res);
    evl_proj_status *st = NULL;
    size_t ns = 0;
    if (evl_proj_status_get(e, NULL, &st, &ns) == EVL_OK) {
        for (size_t i = 0; i < ns; i++)
            if (st[i].state == EVL_PROJ_FAULTED) {
                if (getenv("EVL_TEST_VERBOSE"))
                    fprintf(stderr, "n=%lu: %s faulted at %llu: %s\n", n, st[i].name,
                            (unsigned long long)st[i].fault_position, st[i].error ? st[i].error : "(null)");
                /* a fault says why (unless every allocation fails from then on) */
                CHECK(g_persist || (st[i].error && *st[i].error));
                ok = 0;
            }
        evl_proj_status_free(st, ns);
    } else {
        ok = 0;
    }
    evl_proj_close(e);
    return ok;
}

/* ------------------------------------------------------------------ main */

static void seed(void) {
    for (int i = 0; i < 20; i++) {
        char data[64];
        int dl = snprintf(data, sizeof data, "\x82\xa1n%c\xa3obj\x81\xa1k\xc3", i);
        evl_event_in ev = {.type = "Seeded", .data = data, .data_len = (size_t)dl};
        evl_stream_in s = {.stream = "seed-1", .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
        evl_append_result r;
        OK(evl_log_append(g_log, &s, 1, &r));
        evl_free(r.acks);
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *dir = g_datadir = test_path("data");
    g_specdir = test_path("specs");
    g_specdir2 = test_path("specs2");
    for (int i = 0; i < 2; i++) {
        const char *d = i ? g_specdir2 : g_specdir;
        CHECK(mkdir(d, 0755) == 0);
        char specfile[512];
        snprintf(specfile, sizeof specfile, "%s/sweep.sql", d);
        FILE *f = fopen(specfile, "w");
        CHECK(f);
        fputs(i ? SPEC2 : SPEC, f);
        fclose(f);
    }

    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE; /* durability is not what this test is about: keep it fast */
    lo.flush_interval_ms = 1000;
    OK(evl_log_open(dir, &lo, &g_log));
    seed();
    evl_proj_options po = {.dirs = &g_specdir, .n_dirs = 1, .no_builtin = 1};
    OK(evl_proj_open(g_log, &po, &g_eng));
    OK(evl_proj_wait(g_eng, "sweep", evl_log_head(g_log), 10000));
    evl_srv_config cfg;
    evl_srv_config_init(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 1;
    cfg.pool_threads = 2;
    char err[256];
    OK(evl_srv_open(g_log, g_eng, &cfg, &g_srv, err, sizeof err));
    g_port = atoi(strrchr(evl_srv_address(g_srv), ':') + 1);

    /* the paths of the issue, each once and persistently */
    int (*ops[])(unsigned long) = {op_lib_roundtrip, op_spec_parse, op_append_json,
                                   op_append_multi, op_append_msgpack, op_read_stream,
                                   op_read_events, op_read_event_mp, op_sse, op_query,
                                   op_projections, op_metrics, op_projector};
    const char *names[] = {"library json/append/read", "spec parse", "HTTP append (JSON)",
                           "HTTP multi-stream append", "HTTP append (msgpack)", "HTTP read stream",
                           "HTTP read events", "HTTP one event (msgpack)", "SSE catch-up",
                           "HTTP query", "HTTP projections", "HTTP metrics", "projector replay"};
    unsigned long total_runs = 0, total_inj = 0;
    for (int persist = 0; persist <= 1; persist++)
        for (size_t i = 0; i < EVL_ARRAY_LEN(ops); i++) {
            const char *only = getenv("EVL_SWEEP_ONLY"); /* debugging: one path */
            if (only && !strstr(names[i], only)) continue;
            sweep_stats s = sweep(names[i], persist, ops[i]);
            total_runs += s.runs;
            total_inj += s.injected;
        }
    /* after all of it: the server answers, everything is consistent */
    CHECK(op_read_stream(0) && op_sse(0) && op_query(0) && op_append_json(MAX_N));
    char problem[256];
    uint64_t nev = 0;
    OK(evl_log_verify(g_log, problem, sizeof problem, &nev, NULL, NULL));
    printf("alloc fault sweep: %lu runs, %lu allocations failed, %llu events, log verifies\n",
           total_runs, total_inj, (unsigned long long)nev);
    evl_srv_stop(g_srv);
    evl_srv_close(g_srv);
    evl_proj_close(g_eng);
    evl_log_close(g_log);
    TEST_PASS();
}
