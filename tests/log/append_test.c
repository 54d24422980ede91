/* The log through its C API: append and read back, expected revisions,
 * idempotency, validation, atomic batches, indexes, time, limits, locks. */
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "util.h"

static msgpack_sbuffer sb;

static void test_roundtrip(evl_log *log) {
    evl_ack ack;
    pack_data(&sb, 42, "hello");
    OK(append1(log, "job-1", EVL_REV_NO_STREAM, "JobQueued", sb.data, sb.size, NULL, &ack, NULL));
    CHECK(ack.position == 1 && ack.revision == 0);
    pack_data(&sb, 43, "world");
    OK(append1(log, "job-1", 0, "JobStarted", sb.data, sb.size, NULL, &ack, NULL));
    CHECK(ack.position == 2 && ack.revision == 1);
    OK(append1(log, "node-a", EVL_REV_ANY, "NodeRegistered", NULL, 0, NULL, &ack, NULL));
    CHECK(ack.position == 3 && ack.revision == 0);
    CHECK(evl_log_head(log) == 3);
    uint64_t rev;
    OK(evl_log_stream_revision(log, "job-1", &rev));
    CHECK(rev == 1);
    CHECK_RC(evl_log_stream_revision(log, "job-2", &rev), EVL_ENOTFOUND);

    evl_query q = {.stream = "job-1"};
    evl_iter *it;
    evl_event ev;
    OK(evl_iter_open(log, &q, &it));
    OK(evl_iter_next(it, &ev));
    CHECK(ev.position == 1 && ev.revision == 0 && ev.stream_len == 5 && !memcmp(ev.stream, "job-1", 5));
    CHECK(ev.type_len == 9 && !memcmp(ev.type, "JobQueued", 9) && data_n(&ev) == 42);
    CHECK(ev.meta_len == 1 && ev.meta[0] == 0x80);
    CHECK((ev.id[6] >> 4) == 7); /* a generated UUIDv7 */
    int64_t t1 = ev.time_ns;
    OK(evl_iter_next(it, &ev));
    CHECK(ev.position == 2 && data_n(&ev) == 43 && ev.time_ns >= t1);
    CHECK_RC(evl_iter_next(it, &ev), EVL_END);
    evl_iter_close(it);
    /* the stored record is one msgpack value a stock reader accepts */
    uint8_t *raw;
    size_t len;
    OK(evl_log_get(log, 2, &raw, &len));
    OK(evl_mp_check(raw, len, 32, EVL_MP_STRING_KEYS, NULL));
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    CHECK(msgpack_unpack_next(&up, (const char *)raw, len, NULL) == MSGPACK_UNPACK_SUCCESS);
    CHECK(up.data.type == MSGPACK_OBJECT_MAP && up.data.via.map.size == 10);
    CHECK(up.data.via.map.ptr[9].key.via.str.size == 3 && !memcmp(up.data.via.map.ptr[9].key.via.str.ptr, "crc", 3));
    CHECK(up.data.via.map.ptr[0].key.via.str.size == 5 && !memcmp(up.data.via.map.ptr[0].key.via.str.ptr, "chain", 5));
    CHECK(up.data.via.map.ptr[0].val.type == MSGPACK_OBJECT_BIN && up.data.via.map.ptr[0].val.via.bin.size == 32);
    msgpack_unpacked_destroy(&up);
    evl_free(raw);
    CHECK_RC(evl_log_get(log, 99, &raw, &len), EVL_ENOTFOUND);
}

static void test_expectations(evl_log *log) {
    evl_append_result r;
    /* job-1 is at revision 1 */
    CHECK_RC(append1(log, "job-1", EVL_REV_NO_STREAM, "X", NULL, 0, NULL, NULL, &r), EVL_ECONFLICT);
    CHECK(r.current_revision == 1 && r.stream_index == 0);
    CHECK_RC(append1(log, "job-1", 0, "X", NULL, 0, NULL, NULL, &r), EVL_ECONFLICT);
    CHECK(r.current_revision == 1);
    CHECK_RC(append1(log, "job-9", EVL_REV_EXISTS, "X", NULL, 0, NULL, NULL, &r), EVL_ECONFLICT);
    CHECK(r.current_revision == EVL_REV_NONE);
    CHECK_RC(append1(log, "job-9", 0, "X", NULL, 0, NULL, NULL, &r), EVL_ECONFLICT);
    CHECK(r.current_revision == EVL_REV_NONE);
    OK(append1(log, "job-1", EVL_REV_EXISTS, "JobProgressed", NULL, 0, NULL, NULL, &r));
    OK(append1(log, "job-1", 2, "JobProgressed", NULL, 0, NULL, NULL, &r));
    CHECK(evl_log_head(log) == 5); /* refused appends took no position */
}

static void test_idempotency(evl_log *log) {
    uint8_t id1[16], id2[16], id3[16];
    evl_uuid_parse("550e8400-e29b-41d4-a716-446655440001", 36, id1);
    evl_uuid_parse("550e8400-e29b-41d4-a716-446655440002", 36, id2);
    evl_uuid_parse("550e8400-e29b-41d4-a716-446655440003", 36, id3);
    evl_ack a, b;
    evl_append_result r;
    uint64_t head = evl_log_head(log);
    OK(append1(log, "task-42", EVL_REV_ANY, "TaskSubmitted", NULL, 0, id1, &a, &r));
    CHECK(!r.idempotent && !memcmp(a.id, id1, 16));
    /* the repeat answers the original, even with an expectation that would now fail */
    OK(append1(log, "task-42", EVL_REV_NO_STREAM, "TaskSubmitted", NULL, 0, id1, &b, &r));
    CHECK(r.idempotent && b.position == a.position && b.revision == a.revision);
    CHECK(evl_log_head(log) == head + 1);
    /* the same id for another stream or type is an error, not a repeat */
    CHECK_RC(append1(log, "task-43", EVL_REV_ANY, "TaskSubmitted", NULL, 0, id1, NULL, &r), EVL_EIDREUSE);
    CHECK_RC(append1(log, "task-42", EVL_REV_ANY, "TaskKilled", NULL, 0, id1, NULL, &r), EVL_EIDREUSE);
    /* ... and so is the same id with other data or meta: a retry sends the
     * same event, anything else must not be answered as if it were stored */
    {
        uint8_t idd[16];
        evl_uuid_parse("550e8400-e29b-41d4-a716-446655440009", 36, idd);
        const uint8_t d1[] = {0x81, 0xa1, 'n', 0x05};             /* {"n": 5} */
        const uint8_t d1wide[] = {0x81, 0xa1, 'n', 0xcd, 0x00, 0x05}; /* the same, as uint16 */
        const uint8_t d2[] = {0x81, 0xa1, 'n', 0x06};             /* {"n": 6} */
        const uint8_t m1[] = {0x81, 0xa5, 'a', 'c', 't', 'o', 'r', 0xa1, 'x'};
        evl_ack a1, a2;
        OK(append1(log, "task-44", EVL_REV_ANY, "TaskSubmitted", d1, sizeof d1, idd, &a1, &r));
        CHECK(!r.idempotent);
        OK(append1(log, "task-44", EVL_REV_ANY, "TaskSubmitted", d1wide, sizeof d1wide, idd, &a2, &r));
        CHECK(r.idempotent && a2.position == a1.position);
        CHECK_RC(append1(log, "task-44", EVL_REV_ANY, "TaskSubmitted", d2, sizeof d2, idd, NULL, &r), EVL_EIDREUSE);
        CHECK_RC(append1(log, "task-44", EVL_REV_ANY, "TaskSubmitted", NULL, 0, idd, NULL, &r), EVL_EIDREUSE);
        evl_event_in em = {.type = "TaskSubmitted", .id = idd, .data = d1, .data_len = sizeof d1,
                           .meta = m1, .meta_len = sizeof m1};
        evl_stream_in sm = {.stream = "task-44", .expected = EVL_REV_ANY, .events = &em, .n_events = 1};
        CHECK_RC(evl_log_append(log, &sm, 1, &r), EVL_EIDREUSE);
        evl_free(r.acks);
        CHECK(evl_log_head(log) == head + 2);
        head++;
    }
    /* a batch mixing a seen id with a new one */
    evl_event_in evs[2] = {{.type = "TaskSubmitted", .id = id1}, {.type = "TaskApproved", .id = id2}};
    evl_stream_in s = {.stream = "task-42", .expected = EVL_REV_ANY, .events = evs, .n_events = 2};
    CHECK_RC(evl_log_append(log, &s, 1, &r), EVL_EIDMIX);
    evl_free(r.acks);
    /* one id twice in one batch */
    evs[0].id = id3;
    evs[1].id = id3;
    CHECK_RC(evl_log_append(log, &s, 1, &r), EVL_EDUPID);
    evl_free(r.acks);
    CHECK(evl_log_head(log) == head + 1);
    /* a whole batch repeated */
    evs[0].id = id2;
    evs[1].id = id3;
    OK(evl_log_append(log, &s, 1, &r));
    uint64_t p0 = r.acks[0].position, p1 = r.acks[1].position;
    evl_free(r.acks);
    OK(evl_log_append(log, &s, 1, &r));
    CHECK(r.idempotent && r.acks[0].position == p0 && r.acks[1].position == p1);
    evl_free(r.acks);
}

/* A client that sends back an id the log generated (copied from an ack or
 * a read) gets the original, also while that event is journaled but not
 * yet in LMDB: the writer keeps no table of its own ids and finds such a
 * copy by the mark every id it generates carries (writer.c find_id).
 * A loader thread keeps the applier behind, so most copies are sent while
 * their event is pending (head < its position). */
typedef struct loader {
    evl_log *log;
    atomic_int stop;
} loader;

static void *load_main(void *arg) {
    loader *l = arg;
    static const uint8_t d[] = {0x81, 0xa1, 'n', 0x01};
    evl_event_in ev[200];
    for (int i = 0; i < 200; i++) ev[i] = (evl_event_in){.type = "Loaded", .data = d, .data_len = sizeof d};
    evl_stream_in s = {.stream = "load-1", .expected = EVL_REV_ANY, .events = ev, .n_events = 200};
    while (!atomic_load(&l->stop)) {
        evl_append_result r;
        if (evl_log_append(l->log, &s, 1, &r) != EVL_OK) abort();
        evl_free(r.acks);
    }
    return NULL;
}

static void test_generated_ids_copied(evl_log *log) {
    loader l = {log, 0};
    evl_log *ro;
    evl_log_options ropt;
    evl_log_options_init(&ropt);
    ropt.read_only = 1;
    OK(evl_log_open(evl_log_dir(log), &ropt, &ro));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, load_main, &l) == 0);
    const uint8_t d1[] = {0x81, 0xa1, 'n', 0x07}, d2[] = {0x81, 0xa1, 'n', 0x08};
    int pending = 0;
    for (int i = 0; i < 300; i++) {
        evl_ack a = {0}, b = {0};
        evl_append_result r;
        OK(append1(log, "copied-1", EVL_REV_ANY, "Copied", d1, sizeof d1, NULL, &a, &r));
        CHECK(!r.idempotent);
        OK(append1(log, "copied-1", EVL_REV_ANY, "Copied", d1, sizeof d1, a.id, &b, &r));
        CHECK(r.idempotent && b.position == a.position && b.revision == a.revision);
        pending += evl_log_head(ro) < a.position; /* LMDB's head, no read barrier */
        CHECK_RC(append1(log, "copied-1", EVL_REV_ANY, "Copied", d2, sizeof d2, a.id, NULL, &r), EVL_EIDREUSE);
        /* an id with the same mark that the log never gave out is new */
        uint8_t other[16];
        memcpy(other, a.id, 16);
        other[9] ^= 0x5a;
        OK(append1(log, "copied-1", EVL_REV_ANY, "Copied", d1, sizeof d1, other, &b, &r));
        CHECK(!r.idempotent && b.position > a.position);
        OK(append1(log, "copied-1", EVL_REV_ANY, "Copied", d1, sizeof d1, other, &a, &r));
        CHECK(r.idempotent && a.position == b.position);
    }
    atomic_store(&l.stop, 1);
    pthread_join(t, NULL);
    evl_log_close(ro);
    fprintf(stderr, "generated ids copied back: %d of 300 while pending\n", pending);
    CHECK(pending > 0); /* the case this is about happened */
    verify_ok(log, evl_log_head(log));
}

static void test_validation(evl_log *log) {
    evl_append_result r;
    uint64_t head = evl_log_head(log);
    char big[300];
    memset(big, 'x', sizeof big);
    big[256] = 0;
    CHECK_RC(append1(log, "", EVL_REV_ANY, "T", NULL, 0, NULL, NULL, &r), EVL_ESTREAM);
    CHECK_RC(append1(log, big, EVL_REV_ANY, "T", NULL, 0, NULL, NULL, &r), EVL_ESTREAM);
    CHECK_RC(append1(log, "bad\tname", EVL_REV_ANY, "T", NULL, 0, NULL, NULL, &r), EVL_ESTREAM);
    CHECK_RC(append1(log, "bad\xff", EVL_REV_ANY, "T", NULL, 0, NULL, NULL, &r), EVL_ESTREAM);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, "", NULL, 0, NULL, NULL, &r), EVL_ETYPE);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, big, NULL, 0, NULL, NULL, &r), EVL_ETYPE);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, "T", "\x93\x01\x02\x03", 4, NULL, NULL, &r), EVL_EDATA);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, "T", "\x81\x01\x02", 3, NULL, NULL, &r), EVL_EDATA);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, "T", "\xdd\xff\x00\x00\x00", 5, NULL, NULL, &r), EVL_EMSGPACK);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, "T", "\x81\xa1k", 3, NULL, NULL, &r), EVL_EMSGPACK);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, "T", "\x80\x80", 2, NULL, NULL, &r), EVL_EMSGPACK);
    CHECK_RC(append1(log, "s", EVL_REV_ANY, "T", "\x81\xa1k\xa1\xff", 5, NULL, NULL, &r), EVL_EUTF8);
    {
        evl_event_in ev = {.type = "T", .meta = "\x01", .meta_len = 1};
        evl_stream_in s = {.stream = "s", .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
        CHECK_RC(evl_log_append(log, &s, 1, &r), EVL_EMETA);
        CHECK_RC(evl_log_append(log, &s, 0, &r), EVL_EEMPTY);
        s.n_events = 0;
        CHECK_RC(evl_log_append(log, &s, 1, &r), EVL_EEMPTY);
    }
    {   /* the size limit: just over 1 MiB of data */
        size_t n = (1u << 20) + 16;
        uint8_t *d = malloc(n);
        d[0] = 0x81; d[1] = 0xa1; d[2] = 'k'; d[3] = 0xc6;
        uint32_t blen = (uint32_t)(n - 8);
        d[4] = (uint8_t)(blen >> 24); d[5] = (uint8_t)(blen >> 16); d[6] = (uint8_t)(blen >> 8); d[7] = (uint8_t)blen;
        memset(d + 8, 0, n - 8);
        CHECK_RC(append1(log, "s", EVL_REV_ANY, "T", d, n, NULL, NULL, &r), EVL_ETOOBIG);
        free(d);
    }
    {   /* the error names the offending event of a batch */
        evl_event_in evs[3] = {{.type = "A"}, {.type = "B"}, {.type = ""}};
        evl_stream_in s = {.stream = "s", .expected = EVL_REV_ANY, .events = evs, .n_events = 3};
        CHECK_RC(evl_log_append(log, &s, 1, &r), EVL_ETYPE);
        CHECK(r.event_index == 2);
    }
    CHECK(evl_log_head(log) == head);
}

static void test_atomic_batch(evl_log *log) {
    evl_append_result r;
    uint64_t head = evl_log_head(log), rev;
    evl_event_in e1[2] = {{.type = "A"}, {.type = "B"}}, e2[1] = {{.type = "C"}};
    evl_stream_in s[3] = {
        {.stream = "order-1", .expected = EVL_REV_NO_STREAM, .events = e1, .n_events = 2},
        {.stream = "order-2", .expected = EVL_REV_NO_STREAM, .events = e2, .n_events = 1},
        {.stream = "job-1", .expected = 0, .events = e2, .n_events = 1}, /* wrong */
    };
    CHECK_RC(evl_log_append(log, s, 3, &r), EVL_ECONFLICT);
    CHECK(r.stream_index == 2 && r.current_revision == 3);
    evl_free(r.acks);
    CHECK(evl_log_head(log) == head);
    CHECK_RC(evl_log_stream_revision(log, "order-1", &rev), EVL_ENOTFOUND);
    s[2].expected = 3;
    OK(evl_log_append(log, s, 3, &r));
    CHECK(r.n_acks == 4);
    CHECK(r.acks[0].position == head + 1 && r.acks[0].revision == 0);
    CHECK(r.acks[1].position == head + 2 && r.acks[1].revision == 1);
    CHECK(r.acks[2].position == head + 3 && r.acks[3].revision == 4);
    evl_free(r.acks);
    /* the same stream twice in a batch */
    s[1].stream = "order-1";
    CHECK_RC(evl_log_append(log, s, 2, &r), EVL_EDUPSTREAM);
    evl_free(r.acks);
}

static void test_queries(evl_log *log) {
    /* a fresh set of events across categories and types */
    for (int i = 0; i < 30; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "%s-%d", i % 3 == 0 ? "run" : "bench", i % 5);
        pack_data(&sb, i, "q");
        OK(append1(log, stream, EVL_REV_ANY, i % 2 ? "Odd" : "Even", sb.data, sb.size, NULL, NULL, NULL));
    }
    uint64_t head = evl_log_head(log);
    CHECK(count_query(log, &(evl_query){.type = "Odd"}) == 15);
    CHECK(count_query(log, &(evl_query){.category = "run"}) == 10);
    CHECK(count_query(log, &(evl_query){.category = "run", .type = "Even"}) == 5);
    CHECK(count_query(log, &(evl_query){.category = "bench", .stream = "run-0"}) == 0);
    CHECK(count_query(log, &(evl_query){.from_position = head - 9}) == 10);
    CHECK(count_query(log, &(evl_query){.from_position = 2, .until_position = 4}) == 3);
    CHECK(count_query(log, &(evl_query){.limit = 7}) == 7);
    CHECK(count_query(log, &(evl_query){.type = "Odd", .from_position = head - 9}) == 5);
    CHECK(count_query(log, &(evl_query){.type = "NoSuch"}) == 0);
    CHECK(count_query(log, &(evl_query){.stream = "nope"}) == 0);
    /* backward: newest first, over every source */
    evl_iter *it;
    evl_event ev;
    OK(evl_iter_open(log, &(evl_query){.backward = 1, .limit = 3}, &it));
    OK(evl_iter_next(it, &ev));
    CHECK(ev.position == head);
    OK(evl_iter_next(it, &ev));
    CHECK(ev.position == head - 1);
    evl_iter_close(it);
    OK(evl_iter_open(log, &(evl_query){.type = "Even", .backward = 1}, &it));
    uint64_t last = UINT64_MAX, n = 0;
    while (evl_iter_next(it, &ev) == EVL_OK) { CHECK(ev.position < last); last = ev.position; n++; }
    evl_iter_close(it);
    CHECK(n >= 15);
    OK(evl_iter_open(log, &(evl_query){.type = "Even", .backward = 1, .from_position = head - 2}, &it));
    OK(evl_iter_next(it, &ev));
    CHECK(ev.position <= head - 2 && ev.position >= head - 3);
    evl_iter_close(it);
    /* a stream forward from a revision, and backward from the end and from a revision */
    OK(evl_iter_open(log, &(evl_query){.stream = "bench-1", .from_revision = 2}, &it));
    OK(evl_iter_next(it, &ev));
    CHECK(ev.revision == 2);
    evl_iter_close(it);
    OK(evl_iter_open(log, &(evl_query){.stream = "bench-1", .backward = 1, .from_revision = EVL_REV_ANY}, &it));
    OK(evl_iter_next(it, &ev));
    uint64_t top = ev.revision;
    OK(evl_iter_next(it, &ev));
    CHECK(ev.revision == top - 1);
    evl_iter_close(it);
    OK(evl_iter_open(log, &(evl_query){.stream = "bench-1", .backward = 1, .from_revision = 1}, &it));
    OK(evl_iter_next(it, &ev));
    CHECK(ev.revision == 1);
    OK(evl_iter_next(it, &ev));
    CHECK(ev.revision == 0);
    CHECK_RC(evl_iter_next(it, &ev), EVL_END);
    evl_iter_close(it);
    /* a stream whose name is a prefix of another's stays separate */
    OK(append1(log, "bench-10", EVL_REV_ANY, "Even", NULL, 0, NULL, NULL, NULL));
    OK(append1(log, "bench-", EVL_REV_ANY, "Even", NULL, 0, NULL, NULL, NULL));
    CHECK(count_query(log, &(evl_query){.stream = "bench-1"}) == 4);
    CHECK(count_query(log, &(evl_query){.stream = "bench-10"}) == 1);
    head = evl_log_head(log);
    /* time range through the time index */
    uint64_t p;
    uint8_t *raw;
    size_t len;
    OK(evl_log_get(log, head, &raw, &len));
    OK(evl_log_decode(raw, len, &ev));
    int64_t t_head = ev.time_ns;
    evl_free(raw);
    OK(evl_log_position_at(log, t_head, &p));
    CHECK(p <= head);
    OK(evl_log_get(log, p, &raw, &len));
    OK(evl_log_decode(raw, len, &ev));
    CHECK(ev.time_ns == t_head);
    evl_free(raw);
    if (p > 1) {
        OK(evl_log_get(log, p - 1, &raw, &len));
        OK(evl_log_decode(raw, len, &ev));
        CHECK(ev.time_ns < t_head);
        evl_free(raw);
    }
    OK(evl_log_position_at(log, t_head + 1, &p));
    CHECK(p == head + 1);
    OK(evl_log_position_at(log, 0, &p));
    CHECK(p == 1);
    CHECK(count_query(log, &(evl_query){.until_ns = t_head - 1}) + count_query(log, &(evl_query){.since_ns = t_head}) == head);
}

typedef struct async_box {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int err;
    uint64_t pos;
} async_box;

static void async_done(void *arg, const evl_append_result *res) {
    async_box *b = arg;
    pthread_mutex_lock(&b->mu);
    b->err = res->err;
    b->pos = res->n_acks ? res->acks[0].position : 0;
    b->done = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* What the commit watcher saw.  Watchers run on the log's writer thread
 * once the applier has made a commit readable, so after the append was
 * acknowledged: the test waits for the call, with a deadline. */
typedef struct seen_box {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t head;
} seen_box;

static void commit_seen(void *arg, uint64_t head) {
    seen_box *s = arg;
    pthread_mutex_lock(&s->mu);
    s->head = head;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static uint64_t wait_seen(seen_box *s, uint64_t want) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&s->mu);
    while (s->head < want && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0) {}
    uint64_t h = s->head;
    pthread_mutex_unlock(&s->mu);
    return h;
}

static void test_async_and_wait(evl_log *log) {
    async_box b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1, 0};
    seen_box seen = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    uint64_t head = evl_log_head(log), h;
    OK(evl_log_watch(log, commit_seen, &seen));
    CHECK_RC(evl_log_wait(log, head, 10, &h), EVL_ETIMEDOUT);
    CHECK(h == head);
    {   /* inputs are copied: scribble over them right after the call */
        char stream[16] = "async-1", type[16] = "Pinged";
        pack_data(&sb, 7, "async");
        evl_event_in ev = {.type = type, .data = sb.data, .data_len = sb.size};
        evl_stream_in s = {.stream = stream, .expected = EVL_REV_NO_STREAM, .events = &ev, .n_events = 1};
        OK(evl_log_append_async(log, &s, 1, async_done, &b));
        memset(stream, 'z', 15);
        memset(type, 'z', 15);
        pack_data(&sb, 99, "zzzzz");
    }
    pthread_mutex_lock(&b.mu);
    while (!b.done) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    OK(b.err);
    CHECK(b.pos == head + 1);
    OK(evl_log_wait(log, head, 1000, &h));
    CHECK(h == head + 1 && wait_seen(&seen, head + 1) == head + 1);
    evl_log_unwatch(log, commit_seen, &seen);
    evl_iter *it;
    evl_event ev;
    OK(evl_iter_open(log, &(evl_query){.stream = "async-1"}, &it));
    OK(evl_iter_next(it, &ev));
    CHECK(ev.type_len == 6 && !memcmp(ev.type, "Pinged", 6) && data_n(&ev) == 7);
    evl_iter_close(it);
    /* validation errors are reported at once and the callback never runs */
    evl_event_in bad = {.type = ""};
    evl_stream_in s = {.stream = "async-1", .expected = EVL_REV_ANY, .events = &bad, .n_events = 1};
    CHECK_RC(evl_log_append_async(log, &s, 1, async_done, &b), EVL_ETYPE);
}

/* Overwrite one byte of a stored record behind the log's back. */
static void corrupt_record(const char *dir, uint64_t pos) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, (size_t)1 << 30);
    CHECK(mdb_env_open(env, path, 0, 0644) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "events", 0, &dbi) == 0);
    uint8_t k8[8] = {0, 0, 0, 0, 0, 0, (uint8_t)(pos >> 8), (uint8_t)pos};
    MDB_val k = {8, k8}, v;
    CHECK(mdb_get(txn, dbi, &k, &v) == 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size / 2] ^= 0x01;
    MDB_val nv = {v.mv_size, copy};
    CHECK(mdb_put(txn, dbi, &k, &nv, 0) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    free(copy);
}

static void test_map_full(void) {
    evl_log_options opt;
    evl_log *log;
    evl_log_options_init(&opt);
    opt.map_size = 1 << 20; /* 1 MiB: fills after a few thousand events */
    OK(evl_log_open(test_path("tiny"), &opt, &log));
    char pad[2000];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    uint64_t acked = 0;
    int rc = EVL_OK;
    for (int i = 0; i < 10000 && rc == EVL_OK; i++) {
        pack_data(&sb, i, pad);
        char stream[32];
        snprintf(stream, sizeof stream, "fill-%d", i % 50);
        rc = append1(log, stream, EVL_REV_ANY, "Filled", sb.data, sb.size, NULL, NULL, NULL);
        if (rc == EVL_OK) acked++;
    }
    CHECK_RC(rc, EVL_EFULL);
    /* The writer refuses what its estimate of the map's room cannot hold,
     * counting groups the applier has not put in LMDB yet at their
     * estimate: once they are in, the estimate is the map itself and
     * refuses the same event every time. */
    do {
        CHECK(evl_log_head(log) == acked); /* every acknowledged event applied: none stuck */
        pack_data(&sb, (int)acked, pad);
        rc = append1(log, "fill-0", EVL_REV_ANY, "Filled", sb.data, sb.size, NULL, NULL, NULL);
        if (rc == EVL_OK) acked++;
    } while (rc == EVL_OK);
    CHECK_RC(rc, EVL_EFULL);
    CHECK(acked > 10 && evl_log_head(log) == acked);
    /* the log is not read-only: a small event may still fit, a big one still fails cleanly */
    pack_data(&sb, 1, pad);
    CHECK_RC(append1(log, "fill-0", EVL_REV_ANY, "Filled", sb.data, sb.size, NULL, NULL, NULL), EVL_EFULL);
    verify_ok(log, acked);
    /* a little more room (how much the fill left depends on where the last
     * big event stopped): room for the small events, not for a 600 kB one */
    evl_log_close(log);
    opt.map_size = (1 << 20) + (128 << 10);
    OK(evl_log_open(test_path("tiny"), &opt, &log));
    {   /* in one group, a batch that does not fit fails alone: its neighbours commit */
        async_box boxes[41];
        uint8_t *huge = malloc(600000);
        huge[0] = 0x81; huge[1] = 0xa1; huge[2] = 'k'; huge[3] = 0xc6;
        huge[4] = 0; huge[5] = 0x09; huge[6] = 0x27; huge[7] = 0xb8; /* bin32 of 599992 */
        memset(huge + 8, 'h', 600000 - 8);
        for (int i = 0; i < 41; i++) {
            boxes[i] = (async_box){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1, 0};
            evl_event_in ev = {.type = "Tiny"};
            if (i == 20) { ev.data = huge; ev.data_len = 600000; }
            evl_stream_in s = {.stream = "fill-tiny", .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
            OK(evl_log_append_async(log, &s, 1, async_done, &boxes[i]));
        }
        int ok = 0;
        for (int i = 0; i < 41; i++) {
            pthread_mutex_lock(&boxes[i].mu);
            while (!boxes[i].done) pthread_cond_wait(&boxes[i].cv, &boxes[i].mu);
            pthread_mutex_unlock(&boxes[i].mu);
            if (i == 20) CHECK_RC(boxes[i].err, EVL_EFULL);
            else ok += boxes[i].err == EVL_OK;
        }
        free(huge);
        CHECK(ok > 0); /* the small ones fit while the map had room */
        acked += (uint64_t)ok;
        CHECK(evl_log_head(log) == acked);
        verify_ok(log, acked);
    }
    evl_log_close(log);
    /* everything acknowledged is there after reopening with room */
    opt.map_size = 64 << 20;
    OK(evl_log_open(test_path("tiny"), &opt, &log));
    CHECK(evl_log_head(log) == acked);
    verify_ok(log, acked);
    OK(append1(log, "fill-0", EVL_REV_ANY, "Filled", sb.data, sb.size, NULL, NULL, NULL));
    evl_log_close(log);
}

int main(void) {
    evl_log *log, *other, *ro;
    msgpack_sbuffer_init(&sb);
    const char *dir = test_path("data");
    CHECK_RC(evl_log_open(dir, &(evl_log_options){.read_only = 1, .map_size = 1 << 20, .max_readers = 8}, &ro), EVL_ENOTFOUND);
    OK(evl_log_open(dir, NULL, &log));
    CHECK(evl_log_head(log) == 0);
    CHECK_RC(evl_log_open(dir, NULL, &other), EVL_EBUSY);
    test_roundtrip(log);
    test_expectations(log);
    test_idempotency(log);
    test_generated_ids_copied(log);
    test_validation(log);
    test_atomic_batch(log);
    test_queries(log);
    test_async_and_wait(log);
    verify_ok(log, evl_log_head(log));

    /* a read-only handle beside the writer sees its commits */
    evl_log_options ropt;
    evl_log_options_init(&ropt);
    ropt.read_only = 1;
    OK(evl_log_open(dir, &ropt, &ro));
    uint64_t head = evl_log_head(log), h;
    CHECK(evl_log_head(ro) == head);
    CHECK_RC(append1(ro, "x", EVL_REV_ANY, "T", NULL, 0, NULL, NULL, NULL), EVL_ERDONLY);
    OK(append1(log, "x", EVL_REV_ANY, "T", NULL, 0, NULL, NULL, NULL));
    OK(evl_log_wait(ro, head, 5000, &h));
    CHECK(h == head + 1);
    evl_log_stats st;
    OK(evl_log_stats_get(log, &st));
    CHECK(st.head == head + 1 && st.streams > 10 && st.types > 5 && st.categories >= 5);
    CHECK(st.commits > 0 && st.appended_events > 0 && st.used_bytes > 0 && st.last_time_ns >= st.first_time_ns);
    evl_log_close(ro);

    /* time never goes back, across a reopen too */
    uint8_t *raw;
    size_t len;
    evl_event ev;
    OK(evl_log_get(log, head + 1, &raw, &len));
    OK(evl_log_decode(raw, len, &ev));
    int64_t t_last = ev.time_ns;
    evl_free(raw);
    evl_log_close(log);
    OK(evl_log_open(dir, NULL, &log));
    CHECK(evl_log_head(log) == head + 1);
    evl_ack ack;
    OK(append1(log, "x", EVL_REV_ANY, "T", NULL, 0, NULL, &ack, NULL));
    OK(evl_log_get(log, ack.position, &raw, &len));
    OK(evl_log_decode(raw, len, &ev));
    CHECK(ev.time_ns >= t_last);
    evl_free(raw);
    verify_ok(log, head + 2);
    evl_log_close(log);

    /* a flipped byte fails the CRC: reads and verify name the position */
    corrupt_record(dir, 3);
    OK(evl_log_open(dir, &ropt, &ro));
    char problem[256];
    CHECK_RC(evl_log_verify(ro, problem, sizeof problem, NULL, NULL, NULL), EVL_ECORRUPT);
    CHECK(strstr(problem, "position 3") != NULL);
    CHECK_RC(evl_log_get(ro, 3, &raw, &len), EVL_ECORRUPT);
    evl_iter *it;
    OK(evl_iter_open(ro, &(evl_query){0}, &it));
    OK(evl_iter_next(it, &ev));
    OK(evl_iter_next(it, &ev));
    CHECK_RC(evl_iter_next(it, &ev), EVL_ECORRUPT);
    evl_iter_close(it);
    evl_log_close(ro);

    test_map_full();
    msgpack_sbuffer_destroy(&sb);
    TEST_PASS();
}
