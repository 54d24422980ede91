/* The journal (log/journal.c): what is acknowledged before the applier put
 * it in LMDB comes back at the next open, read-write or read-only; replay
 * stops at a torn frame, a frame of another run, and a run that does not
 * join LMDB's head; a small lap wraps without losing anything.
 *
 * The journals are real ones: log A writes 15 events in two sessions; a
 * copy of A's LMDB file taken after the first session, with A's journal
 * beside it, is a log whose applier had not applied the second session
 * when the process died.  Frames are then edited per the format in
 * journal.c. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/util.h"

uint32_t evl__crc32c(uint32_t crc, const void *buf, size_t len); /* common/crc32c.c */

#define HDR 32

static msgpack_sbuffer sb;

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob slurp(const char *path) {
    blob b = {0};
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    b.n = (size_t)st.st_size;
    b.p = malloc(b.n + 1);
    CHECK(b.p && read(fd, b.p, b.n) == (ssize_t)b.n);
    close(fd);
    return b;
}

static void spill(const char *path, const uint8_t *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static const char *at(const char *dir, const char *file) {
    static char b[4][600];
    static int i;
    char *s = b[i++ & 3];
    snprintf(s, 600, "%s/%s", dir, file);
    return s;
}

/* A log whose LMDB file is @p lmdb's and whose journal is @p jnl (and,
 * when given, @p jnl1 its second file). */
static const char *make_dir2(const char *name, const blob *lmdb, const blob *jnl, const blob *jnl1) {
    const char *dir = test_path(name);
    CHECK(mkdir(dir, 0755) == 0 && mkdir(at(dir, "log"), 0755) == 0);
    spill(at(dir, "log/data.mdb"), lmdb->p, lmdb->n);
    if (jnl) spill(at(dir, "log/data.mdb-journal"), jnl->p, jnl->n);
    if (jnl1) spill(at(dir, "log/data.mdb-journal-1"), jnl1->p, jnl1->n);
    return dir;
}

static const char *make_dir(const char *name, const blob *lmdb, const blob *jnl) {
    return make_dir2(name, lmdb, jnl, NULL);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

/* Offset of frame @p k of the run at offset 0. */
static size_t frame_at(const blob *j, int k) {
    size_t off = 0;
    for (int i = 0; i < k; i++) off += HDR + be32(j->p + off + 4);
    CHECK(off + HDR <= j->n);
    return off;
}

static void reseal(blob *j, size_t off) {
    uint32_t len = be32(j->p + off + 4);
    put_be32(j->p + off + 28, evl__crc32c(evl__crc32c(0, j->p + off, 28), j->p + off + HDR, len));
}

static blob copy(const blob *b) {
    blob c = {malloc(b->n + 1), b->n};
    CHECK(c.p);
    memcpy(c.p, b->p, b->n);
    return c;
}

/* Open @p dir, check its head, that records 1..head equal A's byte for
 * byte, and that it verifies. */
static void expect_log(const char *dir, int read_only, uint64_t head, blob *ref) {
    evl_log_options o;
    evl_log *log;
    evl_log_options_init(&o);
    o.read_only = read_only;
    OK(evl_log_open(dir, &o, &log));
    if (evl_log_head(log) != head) {
        fprintf(stderr, "%s (%s): head %llu, want %llu\n", dir, read_only ? "ro" : "rw",
                (unsigned long long)evl_log_head(log), (unsigned long long)head);
        exit(1);
    }
    for (uint64_t p = 1; p <= head; p++) {
        uint8_t *raw;
        size_t len;
        OK(evl_log_get(log, p, &raw, &len));
        CHECK(len == ref[p].n && memcmp(raw, ref[p].p, len) == 0);
        evl_free(raw);
    }
    verify_ok(log, head);
    evl_log_close(log);
}

int main(void) {
    msgpack_sbuffer_init(&sb);
    evl_log *log;
    const char *a = test_path("a");
    blob ref[16];

    /* A: 10 events, closed: LMDB holds them */
    OK(evl_log_open(a, NULL, &log));
    for (int i = 0; i < 10; i++) {
        pack_data(&sb, i, "first session");
        OK(append1(log, i % 2 ? "jnl-odd" : "jnl-even", EVL_REV_ANY, "Noted", sb.data, sb.size, NULL, NULL, NULL));
    }
    evl_log_close(log);
    blob lmdb10 = slurp(at(a, "log/data.mdb"));

    /* A's second session: frames [11-12] [13] [14] [15] from offset 0 */
    OK(evl_log_open(a, NULL, &log));
    {
        evl_event_in ev[2] = {{.type = "Paired"}, {.type = "Paired"}};
        evl_stream_in s = {.stream = "jnl-odd", .expected = 4, .events = ev, .n_events = 2};
        evl_append_result res;
        pack_data(&sb, 11, "second session");
        ev[0].data = ev[1].data = sb.data;
        ev[0].data_len = ev[1].data_len = sb.size;
        OK(evl_log_append(log, &s, 1, &res));
        CHECK(res.acks[0].position == 11 && res.acks[1].revision == 6);
        evl_free(res.acks);
    }
    for (int i = 13; i <= 15; i++) {
        pack_data(&sb, i, "second session");
        OK(append1(log, "jnl-even", EVL_REV_ANY, "Noted", sb.data, sb.size, NULL, NULL, NULL));
    }
    for (uint64_t p = 1; p <= 15; p++) OK(evl_log_get(log, p, &ref[p].p, &ref[p].n));
    evl_log_close(log);
    blob jnl = slurp(at(a, "log/data.mdb-journal"));
    CHECK(be32(jnl.p) == 0x45564c4a && be32(jnl.p + 24) == 2); /* "EVLJ", the 2-event frame first */

    /* reopening A applies nothing twice */
    expect_log(a, 0, 15, ref);

    /* LMDB from after the first session + the journal: the second session
     * comes back, read-only first (no writer runs: it applies it) */
    const char *b1 = make_dir("b1", &lmdb10, &jnl);
    expect_log(b1, 1, 15, ref);
    expect_log(b1, 0, 15, ref);
    /* and the writer goes on from there: stream heads and ids included */
    OK(evl_log_open(b1, NULL, &log));
    pack_data(&sb, 16, "after replay");
    CHECK_RC(append1(log, "jnl-odd", 5, "Late", sb.data, sb.size, NULL, NULL, NULL), EVL_ECONFLICT);
    evl_ack ack = {0};
    OK(append1(log, "jnl-odd", 6, "Late", sb.data, sb.size, NULL, &ack, NULL));
    CHECK(ack.position == 16 && ack.revision == 7);
    {   /* an id replayed from the journal is known: a retry is idempotent */
        evl_event ev;
        OK(evl_log_decode(ref[13].p, ref[13].n, &ev));
        evl_append_result res;
        evl_event_in in = {.type = "Noted", .id = ev.id, .data = ev.data, .data_len = ev.data_len};
        evl_stream_in s = {.stream = "jnl-even", .expected = EVL_REV_ANY, .events = &in, .n_events = 1};
        OK(evl_log_append(log, &s, 1, &res));
        CHECK(res.idempotent && res.acks[0].position == 13);
        evl_free(res.acks);
    }
    evl_log_close(log);

    /* a torn frame ends the replay: [14]'s payload damaged */
    blob j2 = copy(&jnl);
    j2.p[frame_at(&j2, 2) + HDR + 10] ^= 0x40;
    expect_log(make_dir("b2", &lmdb10, &j2), 0, 13, ref);

    /* a frame of another run ends it: [13] with another epoch (sealed) */
    blob j3 = copy(&jnl);
    size_t f1 = frame_at(&j3, 1);
    j3.p[f1 + 8] ^= 0x01;
    reseal(&j3, f1);
    expect_log(make_dir("b3", &lmdb10, &j3), 0, 12, ref);

    /* a run that does not join LMDB's head is not applied: [11-12] gone */
    size_t f1b = frame_at(&jnl, 1);
    blob j4 = {jnl.p + f1b, jnl.n - f1b};
    expect_log(make_dir("b4", &lmdb10, &j4), 0, 10, ref);

    /* an empty journal file, or none: nothing to do */
    blob none = {jnl.p, 0};
    expect_log(make_dir("b5", &lmdb10, &none), 0, 10, ref);

    /* a 4 KiB lap: the file is reused from its start many times over */
    {
        evl_log_options o;
        evl_log_options_init(&o);
        o.journal_lap = 4096;
        const char *w = test_path("wrap");
        OK(evl_log_open(w, &o, &log));
        for (int i = 0; i < 300; i++) {
            pack_data(&sb, i, "wrapping the journal around its lap, many times over");
            uint64_t expected = i == 0 ? EVL_REV_NO_STREAM : (uint64_t)i - 1;
            OK(append1(log, "wrap-1", expected, "Wrapped", sb.data, sb.size, NULL, NULL, NULL));
        }
        CHECK(evl_log_head(log) == 300);
        verify_ok(log, 300);
        evl_log_close(log);
        struct stat st;
        CHECK(stat(at(w, "log/data.mdb-journal"), &st) == 0 && st.st_size < 4096 + 1024);
        CHECK(stat(at(w, "log/data.mdb-journal-1"), &st) == 0 && st.st_size < 4096 + 1024);
        OK(evl_log_open(w, &o, &log));
        CHECK(evl_log_head(log) == 300 && count_query(log, &(evl_query){.stream = "wrap-1"}) == 300);
        evl_log_close(log);
    }

    /* Two files: past its lap the writer goes on in the other file without
     * waiting for the applier.  LMDB from before a session whose frames
     * fill the first file and part of the second comes back whole from
     * both; from the second alone it does not join, and without the second
     * it stops where the first ends. */
    {
        evl_log_options o;
        evl_log_options_init(&o);
        o.journal_lap = 4096;
        const char *w = test_path("two");
        OK(evl_log_open(w, &o, &log));
        for (int i = 1; i <= 10; i++) {
            pack_data(&sb, i, "first session");
            OK(append1(log, "two-1", EVL_REV_ANY, "Noted", sb.data, sb.size, NULL, NULL, NULL));
        }
        evl_log_close(log);
        blob lm = slurp(at(w, "log/data.mdb"));
        OK(evl_log_open(w, &o, &log));
        int n = 10;
        struct stat st;
        /* until the second file has a frame, and a few more */
        for (int more = 5; more > 0; n++) {
            pack_data(&sb, n + 1, "second session, across both journal files");
            OK(append1(log, "two-1", EVL_REV_ANY, "Noted", sb.data, sb.size, NULL, NULL, NULL));
            if (stat(at(w, "log/data.mdb-journal-1"), &st) == 0 && st.st_size > HDR) more--;
            CHECK(n < 200);
        }
        blob tw[201];
        for (uint64_t p = 1; p <= (uint64_t)n; p++) OK(evl_log_get(log, p, &tw[p].p, &tw[p].n));
        evl_log_close(log);
        blob f0 = slurp(at(w, "log/data.mdb-journal")), f1 = slurp(at(w, "log/data.mdb-journal-1"));
        /* both hold a run: the first from 11, the second after it */
        CHECK(be32(f0.p) == 0x45564c4a && be32(f1.p) == 0x45564c4a);
        uint64_t f1_first = 0;
        for (int k = 0; k < 8; k++) f1_first = f1_first << 8 | f1.p[16 + k];
        CHECK(f1_first > 11 && f1_first <= (uint64_t)n);
        expect_log(make_dir2("two-both", &lm, &f0, &f1), 1, (uint64_t)n, tw);
        expect_log(make_dir2("two-both-rw", &lm, &f0, &f1), 0, (uint64_t)n, tw);
        /* the files listed the other way round are the same journal */
        expect_log(make_dir2("two-swapped", &lm, &f1, &f0), 0, (uint64_t)n, tw);
        expect_log(make_dir2("two-second", &lm, NULL, &f1), 0, 10, tw);
        expect_log(make_dir2("two-first", &lm, &f0, NULL), 0, f1_first - 1, tw);
        /* reopening empties both files: a run left there is never joined */
        OK(evl_log_open(w, &o, &log));
        evl_log_close(log);
        blob z0 = slurp(at(w, "log/data.mdb-journal")), z1 = slurp(at(w, "log/data.mdb-journal-1"));
        CHECK(be32(z0.p) == 0 && be32(z1.p) == 0);
        for (uint64_t p = 1; p <= (uint64_t)n; p++) evl_free(tw[p].p);
        free(lm.p);
        free(f0.p);
        free(f1.p);
        free(z0.p);
        free(z1.p);
    }
    /* Grouped indexes: the applier puts each key's index entries of a
     * whole transaction with one call, the keys in LMDB's order.  One
     * append of 1000 events to one stream (types in blocks, one actor) and
     * a second stream in the same group: every index holds exactly its
     * events, and the log verifies. */
    {
        const char *w = test_path("runs");
        OK(evl_log_open(w, NULL, &log));
        static evl_event_in ev[1000];
        static const uint8_t meta[] = {0x81, 0xa5, 'a', 'c', 't', 'o', 'r', 0xa2, 'a', 'l'};
        pack_data(&sb, 7, "run");
        for (int i = 0; i < 1000; i++)
            ev[i] = (evl_event_in){.type = i < 300 || i > 300 ? "RunA" : "RunB", .data = sb.data,
                                   .data_len = sb.size, .meta = meta, .meta_len = sizeof meta};
        evl_event_in other = {.type = "RunB", .data = sb.data, .data_len = sb.size};
        evl_stream_in in[2] = {{.stream = "runs-1", .expected = EVL_REV_NO_STREAM, .events = ev, .n_events = 1000},
                               {.stream = "runs-2", .expected = EVL_REV_NO_STREAM, .events = &other, .n_events = 1}};
        evl_append_result res;
        OK(evl_log_append(log, in, 2, &res));
        evl_free(res.acks);
        OK(evl_log_append(log, in, 1, &res) == EVL_ECONFLICT ? EVL_OK : EVL_EINVAL); /* runs-1 exists */
        evl_free(res.acks);
        in[0].expected = 999;
        in[0].n_events = 600;
        OK(evl_log_append(log, in, 1, &res)); /* 600 more: the runs go on after the first */
        evl_free(res.acks);
        CHECK(count_query(log, &(evl_query){.stream = "runs-1"}) == 1600);
        CHECK(count_query(log, &(evl_query){.stream = "runs-2"}) == 1);
        CHECK(count_query(log, &(evl_query){.type = "RunA"}) == 1598);
        CHECK(count_query(log, &(evl_query){.type = "RunB"}) == 3);
        CHECK(count_query(log, &(evl_query){.category = "runs"}) == 1601);
        CHECK(count_query(log, &(evl_query){.actor = "al"}) == 1600);
        uint64_t rev;
        OK(evl_log_stream_revision(log, "runs-1", &rev));
        CHECK(rev == 1599);
        verify_ok(log, 1601);
        evl_log_close(log);
    }
    /* Grouped indexes across frames: 1200 single appends that cycle over
     * streams named as prefixes of one another ("g" < "g-1" < "g-10" in
     * LMDB's order, "g-1" and "g-1x" in the same category), three types
     * and an actor on every third.  The live applier takes them in
     * transactions of whatever frames are waiting; replayed from the
     * journal onto LMDB from before, all 1200 frames go into one
     * transaction.  Both times each index holds exactly its events in
     * position order (verify), and counts and heads are right.  Every
     * 100th event brings its own id, some below the generated ones (the
     * applier puts the ids sorted, appending those past the index's last
     * key): a retry of each is answered as a repeat. */
    {
        static const char *const names[] = {"g-10", "g", "g-1x", "h-1", "g-1", "gg"};
        static const char *const types[] = {"Made", "Moved", "M"};
        static const uint8_t actor[] = {0x81, 0xa5, 'a', 'c', 't', 'o', 'r', 0xa3, 'b', 'o', 'b'};
        const char *w = test_path("groups");
        OK(evl_log_open(w, NULL, &log));
        pack_data(&sb, 0, "before");
        OK(append1(log, "g-1", EVL_REV_NO_STREAM, "Made", sb.data, sb.size, NULL, NULL, NULL));
        evl_log_close(log);
        blob lm = slurp(at(w, "log/data.mdb"));
        OK(evl_log_open(w, NULL, &log));
        uint8_t cid[12][16]; /* every 100th event brings its own id, in no order */
        for (int i = 0; i < 1200; i++) {
            pack_data(&sb, i, "grouped");
            evl_event_in ev = {.type = types[i % 3], .data = sb.data, .data_len = sb.size,
                               .meta = i % 3 == 0 ? actor : NULL, .meta_len = sizeof actor};
            if (i % 100 == 0) {
                memset(cid[i / 100], 0x5a, 16);
                cid[i / 100][0] = (uint8_t)(i / 100 * 97);
                cid[i / 100][15] = (uint8_t)i;
                ev.id = cid[i / 100];
            }
            evl_stream_in in = {.stream = names[i % 6], .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
            evl_append_result res;
            OK(evl_log_append(log, &in, 1, &res));
            evl_free(res.acks);
        }
        blob gref[1202];
        for (uint64_t p = 1; p <= 1201; p++) OK(evl_log_get(log, p, &gref[p].p, &gref[p].n));
        evl_log_close(log);
        blob f0 = slurp(at(w, "log/data.mdb-journal")), f1 = slurp(at(w, "log/data.mdb-journal-1"));
        const char *dirs[2] = {w, make_dir2("groups-replayed", &lm, &f0, &f1)};
        for (int d = 0; d < 2; d++) {
            expect_log(dirs[d], 0, 1201, gref);
            OK(evl_log_open(dirs[d], NULL, &log));
            for (int k = 0; k < 6; k++)
                CHECK(count_query(log, &(evl_query){.stream = names[k]}) == 200 + (k == 4));
            CHECK(count_query(log, &(evl_query){.category = "g"}) == 801);
            CHECK(count_query(log, &(evl_query){.category = "h"}) == 200);
            CHECK(count_query(log, &(evl_query){.category = "gg"}) == 200);
            CHECK(count_query(log, &(evl_query){.category = "g-1x"}) == 0);
            CHECK(count_query(log, &(evl_query){.type = "M"}) == 400);
            CHECK(count_query(log, &(evl_query){.type = "Made"}) == 401);
            CHECK(count_query(log, &(evl_query){.actor = "bob"}) == 400);
            uint64_t rev;
            OK(evl_log_stream_revision(log, "g-1", &rev));
            CHECK(rev == 200);
            OK(evl_log_stream_revision(log, "gg", &rev));
            CHECK(rev == 199);
            for (int i = 0; i < 1200; i += 100) { /* the ids index holds them: a retry is a repeat */
                pack_data(&sb, i, "grouped");
                evl_append_result res;
                evl_event_in ev = {.type = types[i % 3], .id = cid[i / 100], .data = sb.data, .data_len = sb.size,
                                   .meta = i % 3 == 0 ? actor : NULL, .meta_len = sizeof actor};
                evl_stream_in in = {.stream = names[i % 6], .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
                OK(evl_log_append(log, &in, 1, &res));
                CHECK(res.idempotent && res.acks[0].position == (uint64_t)i + 2);
                evl_free(res.acks);
            }
            evl_log_close(log);
        }
        for (uint64_t p = 1; p <= 1201; p++) evl_free(gref[p].p);
        free(lm.p);
        free(f0.p);
        free(f1.p);
    }
    free(lmdb10.p);
    free(jnl.p);
    free(j2.p);
    free(j3.p);
    for (uint64_t p = 1; p <= 15; p++) evl_free(ref[p].p);
    msgpack_sbuffer_destroy(&sb);
    TEST_PASS();
}
