/* evl_log_options.apply_linger_ms: with nothing waiting to see new events,
 * the applier lets that long pass between LMDB commits; whatever reads or
 * waits gets every acknowledged event at once all the same.
 *
 * The linger here is a minute, so a path that forgot to hurry the applier
 * shows as a wait of a minute, far past every deadline below (each is 20 s,
 * and measured: nothing sleeps to "wait enough"). */
#include <stdatomic.h>
#include <time.h>

#include "log/util.h"

#define LINGER_MS 60000
#define DEADLINE_NS (20 * 1000000000LL)

static msgpack_sbuffer sb;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static evl_log *open_log(const char *name, unsigned linger_ms, size_t lap) {
    evl_log_options o;
    evl_log_options_init(&o);
    CHECK(o.apply_linger_ms == 100); /* the default */
    o.apply_linger_ms = linger_ms;
    o.applier_nice = 0;
    if (lap) o.journal_lap = lap;
    evl_log *log;
    OK(evl_log_open(test_path(name), &o, &log));
    return log;
}

static void append_n(evl_log *log, const char *stream, int from, int n) {
    for (int i = from; i < from + n; i++) {
        pack_data(&sb, i, "lingering applier");
        OK(append1(log, stream, EVL_REV_ANY, "Lingered", sb.data, sb.size, NULL, NULL, NULL));
    }
}

static uint64_t commits_after_read(evl_log *log, uint64_t want_head) {
    int64_t t0 = now_ns();
    evl_log_stats st;
    OK(evl_log_stats_get(log, &st)); /* a read: the applier commits now */
    CHECK(now_ns() - t0 < DEADLINE_NS);
    CHECK(st.head == want_head);
    return st.commits;
}

/* Sequential appends: one commit for the first, then none until a read
 * asks; the read sees all of them.  Without the linger, many commits. */
static void batches_commits(void) {
    evl_log *log = open_log("batched", LINGER_MS, 0);
    append_n(log, "s-1", 0, 200);
    uint64_t c = commits_after_read(log, 200);
    CHECK(c >= 1 && c <= 2);
    int64_t t0 = now_ns();
    CHECK(count_query(log, &(evl_query){.stream = "s-1"}) == 200);
    append_n(log, "s-1", 200, 10);
    CHECK(count_query(log, &(evl_query){.stream = "s-1"}) == 210); /* read-your-writes */
    CHECK(now_ns() - t0 < DEADLINE_NS);
    verify_ok(log, 210);
    evl_log_close(log);

    log = open_log("eager", 0, 0);
    append_n(log, "s-1", 0, 200);
    CHECK(commits_after_read(log, 200) > 2);
    evl_log_close(log);
}

/* A thread in evl_log_wait() gets each event once durable. */
typedef struct waiter {
    evl_log *log;
    uint64_t after, head;
    int rc;
    int64_t took;
} waiter;

static void *wait_main(void *arg) {
    waiter *w = arg;
    int64_t t0 = now_ns();
    w->rc = evl_log_wait(w->log, w->after, (int)(DEADLINE_NS / 1000000), &w->head);
    w->took = now_ns() - t0;
    return NULL;
}

static void waiters_hurry(void) {
    evl_log *log = open_log("waited", LINGER_MS, 0);
    append_n(log, "w-1", 0, 2); /* the first commits, the second lingers */
    /* a waiter that comes after the append */
    waiter w = {log, 1, 0, -1, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, wait_main, &w) == 0);
    pthread_join(t, NULL);
    OK(w.rc);
    CHECK(w.head >= 2 && w.took < DEADLINE_NS);
    /* one that waits before it: started first, the append may still come
     * before it waits, and either way it must return well inside the linger */
    w = (waiter){log, 2, 0, -1, 0};
    CHECK(pthread_create(&t, NULL, wait_main, &w) == 0);
    append_n(log, "w-1", 2, 1);
    pthread_join(t, NULL);
    OK(w.rc);
    CHECK(w.head >= 3 && w.took < DEADLINE_NS);
    evl_log_close(log);
}

/* A commit watcher (the server's feeds, the projections) turns lingering
 * off: it is told of every event as soon as it is durable. */
typedef struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t head;
} seen;

static void on_commit(void *arg, uint64_t head) {
    seen *s = arg;
    pthread_mutex_lock(&s->mu);
    if (head > s->head) s->head = head;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void watchers_hurry(void) {
    evl_log *log = open_log("watched", LINGER_MS, 0);
    seen s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    append_n(log, "v-1", 0, 1);
    OK(evl_log_watch(log, on_commit, &s));
    append_n(log, "v-1", 1, 20);
    int64_t dl = now_ns() + DEADLINE_NS;
    pthread_mutex_lock(&s.mu);
    while (s.head < 21 && now_ns() < dl) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000;
        if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        pthread_cond_timedwait(&s.cv, &s.mu, &ts);
    }
    uint64_t got = s.head;
    pthread_mutex_unlock(&s.mu);
    CHECK(got == 21);
    evl_log_unwatch(log, on_commit, &s);
    evl_log_close(log);
}

/* Closing does not wait out the linger, and what lingered is in LMDB (or
 * the journal) at the next open. */
static void close_applies(void) {
    evl_log *log = open_log("closed", LINGER_MS, 0);
    append_n(log, "c-1", 0, 50);
    int64_t t0 = now_ns();
    evl_log_close(log);
    CHECK(now_ns() - t0 < DEADLINE_NS);
    log = open_log("closed", LINGER_MS, 0);
    CHECK(evl_log_head(log) == 50 && count_query(log, &(evl_query){.stream = "c-1"}) == 50);
    verify_ok(log, 50);
    evl_log_close(log);
}

/* The writer waits for the applier to reuse a journal file: a small lap
 * makes it do so every few appends, and each time it hurries the applier. */
static void journal_wrap_hurries(void) {
    evl_log *log = open_log("wrapped", LINGER_MS, 4096);
    int64_t t0 = now_ns();
    append_n(log, "j-1", 0, 300);
    CHECK(now_ns() - t0 < DEADLINE_NS);
    CHECK(evl_log_head(log) == 300);
    verify_ok(log, 300);
    evl_log_close(log);
}

int main(void) {
    msgpack_sbuffer_init(&sb);
    batches_commits();
    waiters_hurry();
    watchers_hurry();
    close_applies();
    journal_wrap_hurries();
    msgpack_sbuffer_destroy(&sb);
    printf("log_linger: ok\n");
    return 0;
}
