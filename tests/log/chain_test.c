/* The hash chain (log/format.c, log/chain.c): digests at a position stay
 * the same as the log grows and across reopen; changing one byte of a
 * stored record, the CRC recomputed, makes verify name exactly that
 * position (data, chain value, first and last record); without the CRC
 * recomputed the CRC names it; a full rewrite that recomputes the chain
 * passes verify but changes the digest an auditor kept; records from
 * before the chain; and a transaction that fails (map full) does not
 * advance the chain. */
#include <inttypes.h>

#include "tamper.h"
#include "util.h"

static msgpack_sbuffer sb;

static void append_n(evl_log *log, int from, int n) {
    for (int i = from; i < from + n; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "job-%d", i % 4);
        pack_data(&sb, i, "hello"); /* ends with a string: a flipped last byte stays valid msgpack */
        OK(append1(log, stream, EVL_REV_ANY, "JobQueued", sb.data, sb.size, NULL, NULL, NULL));
    }
}

static evl_digest digest(evl_log *log, uint64_t at) {
    evl_digest d;
    OK(evl_log_digest(log, at, &d));
    return d;
}

/* verify on a read-only handle: the problem sentence, "" when it passes. */
static const char *verify_dir(const char *dir) {
    static char problem[512];
    evl_log_options o;
    evl_log *log;
    evl_log_options_init(&o);
    o.read_only = 1;
    OK(evl_log_open(dir, &o, &log));
    int rc = evl_log_verify(log, problem, sizeof problem, NULL, NULL, NULL);
    evl_log_close(log);
    CHECK(rc == EVL_OK || rc == EVL_ECORRUPT);
    if (rc == EVL_OK) problem[0] = 0;
    return problem;
}

static void expect_break(const char *dir, uint64_t pos, const char *what) {
    const char *p = verify_dir(dir);
    char want[64];
    snprintf(want, sizeof want, "position %" PRIu64 ": %s", pos, what);
    if (strncmp(p, want, strlen(want))) {
        fprintf(stderr, "verify said \"%s\", want \"%s...\"\n", p, want);
        CHECK(0);
    }
}

static void flip(const char *dir, uint64_t pos, long off, int fix_crc) {
    CHECK(tamper_records(dir, pos, pos, tamper_flip, &off, fix_crc, 0) == 0);
}

static void test_digests_and_tamper(void) {
    const char *dir = test_path("chain");
    evl_log *log;
    OK(evl_log_open(dir, NULL, &log));
    CHECK_RC(evl_log_digest(log, 0, &(evl_digest){0}), EVL_ENOTFOUND); /* empty */
    append_n(log, 1, 30);
    evl_digest d10 = digest(log, 10), d30 = digest(log, 30), head = digest(log, 0);
    CHECK(head.position == 30 && !memcmp(head.hash, d30.hash, 32));
    CHECK(d10.position == 10 && memcmp(d10.hash, d30.hash, 32));
    CHECK_RC(evl_log_digest(log, 31, &(evl_digest){0}), EVL_ENOTFOUND);
    /* the chain value is the one stored in the record */
    uint8_t *raw;
    size_t len;
    evl_event ev;
    OK(evl_log_get(log, 10, &raw, &len));
    OK(evl_log_decode(raw, len, &ev));
    CHECK(ev.chain && !memcmp(ev.chain, d10.hash, 32) && ev.chain == raw + 9);
    evl_free(raw);
    /* a digest does not move as the log grows, nor across reopen */
    append_n(log, 31, 10);
    CHECK(!memcmp(digest(log, 10).hash, d10.hash, 32) && !memcmp(digest(log, 30).hash, d30.hash, 32));
    CHECK(memcmp(digest(log, 0).hash, d30.hash, 32) && digest(log, 0).position == 40);
    evl_log_close(log);
    OK(evl_log_open(dir, NULL, &log));
    append_n(log, 41, 5); /* the writer picks the chain up from the last record */
    CHECK(!memcmp(digest(log, 10).hash, d10.hash, 32) && !memcmp(digest(log, 30).hash, d30.hash, 32));
    verify_ok(log, 45);
    evl_log_close(log);
    CHECK(verify_dir(dir)[0] == 0);

    /* one byte of data, CRC recomputed: the chain names that very record,
     * first, middle and last (the head is covered too) */
    uint64_t at[] = {1, 17, 45};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        flip(dir, at[i], -1, 1);
        expect_break(dir, at[i], "hash chain broken");
        flip(dir, at[i], -1, 1); /* and back */
        CHECK(verify_dir(dir)[0] == 0);
    }
    /* the stored chain value itself, and a byte of the stream name */
    flip(dir, 8, 9, 1);
    expect_break(dir, 8, "hash chain broken");
    flip(dir, 8, 9, 1);
    /* after the chain: "position" (9), 9 (1), "stream" (7), str header (1): "job-1" */
    flip(dir, 9, 41 + 9 + 1 + 7 + 1 + 1, 1);
    expect_break(dir, 9, "hash chain broken");
    flip(dir, 9, 41 + 9 + 1 + 7 + 1 + 1, 1);
    /* CRC not recomputed: the CRC catches it first, at that position */
    flip(dir, 23, -1, 0);
    expect_break(dir, 23, "record does not decode or fails its CRC");
    flip(dir, 23, -1, 0);
    CHECK(verify_dir(dir)[0] == 0);

    /* a full rewrite: record 5 changed and every chain value after it
     * recomputed.  verify cannot tell; the digest kept elsewhere can. */
    long off = -1;
    CHECK(tamper_records(dir, 5, 5, tamper_flip, &off, 1, 1) == 0);
    CHECK(verify_dir(dir)[0] == 0);
    evl_log_options o;
    evl_log_options_init(&o);
    o.read_only = 1;
    OK(evl_log_open(dir, &o, &log));
    CHECK(!memcmp(digest(log, 4).hash, digest(log, 4).hash, 32));
    CHECK(memcmp(digest(log, 10).hash, d10.hash, 32) && memcmp(digest(log, 30).hash, d30.hash, 32));
    evl_log_close(log);
}

static void test_before_the_chain(void) {
    const char *dir = test_path("legacy");
    evl_log *log;
    OK(evl_log_open(dir, NULL, &log));
    append_n(log, 1, 3);
    evl_log_close(log);
    /* records 1..3 as a log from before the chain wrote them */
    CHECK(tamper_records(dir, 1, 3, tamper_unchain, NULL, 1, 0) == 0);
    const char *p = verify_dir(dir);
    if (p[0]) fprintf(stderr, "verify: %s\n", p);
    CHECK(p[0] == 0);
    OK(evl_log_open(dir, NULL, &log));
    CHECK_RC(evl_log_digest(log, 0, &(evl_digest){0}), EVL_ENOTFOUND);
    append_n(log, 4, 2); /* the chain starts at 4, from zeros */
    CHECK_RC(evl_log_digest(log, 2, &(evl_digest){0}), EVL_ENOTFOUND);
    CHECK(digest(log, 5).position == 5);
    verify_ok(log, 5);
    evl_log_close(log);
    /* dropping the chain of a chained record breaks it there */
    CHECK(tamper_records(dir, 5, 5, tamper_unchain, NULL, 1, 0) == 0);
    expect_break(dir, 5, "hash chain broken: the record has no chain value");
}

static void test_failed_commit_keeps_chain(void) {
    const char *dir = test_path("full");
    evl_log_options o;
    evl_log *log;
    evl_log_options_init(&o);
    o.map_size = 1 << 20;
    o.sync = EVL_SYNC_NONE;
    OK(evl_log_open(dir, &o, &log));
    static char big[60000];
    memset(big, 'x', sizeof big - 1);
    int rc = EVL_OK, n = 0;
    while (rc == EVL_OK && n < 1000) {
        pack_data(&sb, n++, big);
        rc = append1(log, "big-1", EVL_REV_ANY, "Big", sb.data, sb.size, NULL, NULL, NULL);
    }
    CHECK_RC(rc, EVL_EFULL);
    /* every acknowledged event is in LMDB (the writer's room estimate
     * refused the big one, LMDB never ran out) */
    CHECK(evl_log_head(log) == (uint64_t)n - 1);
    /* something small still fits; its chain follows the last committed record */
    pack_data(&sb, 0, "s");
    OK(append1(log, "small-1", EVL_REV_ANY, "Small", sb.data, sb.size, NULL, NULL, NULL));
    verify_ok(log, (uint64_t)n);
    evl_log_close(log);
}

int main(void) {
    msgpack_sbuffer_init(&sb);
    test_digests_and_tamper();
    test_before_the_chain();
    test_failed_commit_keeps_chain();
    msgpack_sbuffer_destroy(&sb);
    printf("chain_test: ok\n");
    return 0;
}
