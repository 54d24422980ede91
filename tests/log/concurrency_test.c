/* Concurrent appenders.
 * 1. Ten threads race on one stream, each appending with the revision it
 *    last saw: exactly one winner per revision; every loser is told the
 *    stream's true current revision.
 * 2. Many threads on many streams, single events and batches: positions
 *    gap-free, each stream's revisions contiguous, every ack present once. */
#include "util.h"

#define RACERS 10
#define ROUNDS 200

typedef struct racer {
    evl_log *log;
    int id;
    int wins, conflicts;
} racer;

static void *race(void *arg) {
    racer *r = arg;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t expected = EVL_REV_NO_STREAM;
    while (r->wins + r->conflicts < ROUNDS) {
        evl_append_result res;
        pack_data(&sb, r->id, "race");
        int rc = append1(r->log, "hot-1", expected, "Raced", sb.data, sb.size, NULL, NULL, &res);
        if (rc == EVL_OK) {
            r->wins++;
            expected = expected == EVL_REV_NO_STREAM ? 0 : expected + 1;
        } else {
            CHECK_RC(rc, EVL_ECONFLICT);
            r->conflicts++;
            CHECK(res.current_revision != EVL_REV_NONE);
            /* the reported revision is real: it is never behind what we expected */
            CHECK(expected == EVL_REV_NO_STREAM || res.current_revision > expected);
            expected = res.current_revision;
        }
    }
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

#define WRITERS 16
#define PER_WRITER 400
#define STREAMS 37

typedef struct writer {
    evl_log *log;
    int id;
    uint64_t *positions; /* every position acknowledged to this writer */
    size_t n;
} writer;

static void *write_many(void *arg) {
    writer *w = arg;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    w->positions = calloc(PER_WRITER * 3, sizeof *w->positions);
    for (int i = 0; i < PER_WRITER; i++) {
        char s1[32], s2[32];
        snprintf(s1, sizeof s1, "acct-%d", (w->id * 7 + i) % STREAMS);
        snprintf(s2, sizeof s2, "acct-%d", (w->id * 7 + i + 1) % STREAMS);
        pack_data(&sb, w->id * 100000 + i, "many");
        evl_append_result res;
        if (i % 4 == 3) { /* a two-stream batch of three events */
            evl_event_in e[3] = {{.type = "Debited", .data = sb.data, .data_len = sb.size},
                                 {.type = "Noted", .data = sb.data, .data_len = sb.size},
                                 {.type = "Credited", .data = sb.data, .data_len = sb.size}};
            evl_stream_in s[2] = {{.stream = s1, .expected = EVL_REV_ANY, .events = e, .n_events = 2},
                                  {.stream = s2, .expected = EVL_REV_ANY, .events = e + 2, .n_events = 1}};
            OK(evl_log_append(w->log, s, 2, &res));
            CHECK(res.acks[1].position == res.acks[0].position + 1 && res.acks[1].revision == res.acks[0].revision + 1);
            CHECK(res.acks[2].position == res.acks[1].position + 1); /* a batch is contiguous */
            for (int k = 0; k < 3; k++) w->positions[w->n++] = res.acks[k].position;
            evl_free(res.acks);
        } else {
            evl_ack ack = {0};
            OK(append1(w->log, s1, EVL_REV_ANY, "Noted", sb.data, sb.size, NULL, &ack, NULL));
            w->positions[w->n++] = ack.position;
        }
    }
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    evl_log *log;
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.sync = EVL_SYNC_NONE; /* the logic under test is the same; spare the disk */
    OK(evl_log_open(test_path("data"), &opt, &log));

    pthread_t t[WRITERS];
    racer rs[RACERS];
    for (int i = 0; i < RACERS; i++) {
        rs[i] = (racer){log, i, 0, 0};
        CHECK(pthread_create(&t[i], NULL, race, &rs[i]) == 0);
    }
    int wins = 0, conflicts = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(t[i], NULL);
        wins += rs[i].wins;
        conflicts += rs[i].conflicts;
    }
    uint64_t rev;
    OK(evl_log_stream_revision(log, "hot-1", &rev));
    CHECK(rev + 1 == (uint64_t)wins);  /* one winner per revision */
    CHECK(evl_log_head(log) == (uint64_t)wins);
    printf("race: %d wins, %d conflicts\n", wins, conflicts);
    verify_ok(log, (uint64_t)wins);

    uint64_t base = evl_log_head(log);
    writer ws[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        ws[i] = (writer){log, i, NULL, 0};
        CHECK(pthread_create(&t[i], NULL, write_many, &ws[i]) == 0);
    }
    size_t total = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        total += ws[i].n;
    }
    uint64_t *all = malloc(total * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < WRITERS; i++) {
        memcpy(all + k, ws[i].positions, ws[i].n * sizeof *all);
        k += ws[i].n;
        free(ws[i].positions);
    }
    qsort(all, total, sizeof *all, cmp_u64);
    for (size_t i = 0; i < total; i++) CHECK(all[i] == base + 1 + i); /* each once, no gaps */
    CHECK(evl_log_head(log) == base + total);
    free(all);
    /* per-stream revisions contiguous, read through the stream index */
    for (int s = 0; s < STREAMS; s++) {
        char name[32];
        snprintf(name, sizeof name, "acct-%d", s);
        evl_iter *it;
        evl_event ev;
        uint64_t want = 0, last_pos = 0;
        OK(evl_iter_open(log, &(evl_query){.stream = name}, &it));
        while (evl_iter_next(it, &ev) == EVL_OK) {
            CHECK(ev.revision == want++ && ev.position > last_pos);
            last_pos = ev.position;
        }
        evl_iter_close(it);
        CHECK(want > 0);
    }
    evl_log_stats st;
    OK(evl_log_stats_get(log, &st));
    printf("many: %zu events in %llu commits (%.1f events per group commit)\n", total,
           (unsigned long long)st.commits, (double)st.appended_events / (double)st.commits);
    verify_ok(log, base + total);
    evl_log_close(log);
    TEST_PASS();
}
