/* evlogd --demo: the workload generator feeding the server's own log.
 *
 * The thread appends through the log's C API, as the HTTP appends do, so
 * everything downstream is the real thing: group commit, the projectors, the
 * SSE feeds, /metrics.  It paces itself on a condition variable rather than
 * sleeping, so that a stop wakes it at once.  The seed comes from the clock:
 * a demo restarted on the same data directory adds new entities instead of
 * colliding with the last run's.  A conflict (an entity id of this seed
 * already in the log: rare, see gen.h) starts a generator with the next
 * seed; the abandoned lifecycles stay valid prefixes.  Any other failure
 * (the log full or read-only) ends the demo with one line; the server goes
 * on. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "evlog/evlog.h"
#include "gen.h"
#include "server/demo.h"

struct evlogd_demo {
    evl_log *log;
    double rate;
    void (*say)(void *, const char *);
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int stop;
    uint64_t events;   /* appended so far (read after the join) */
};

static uint64_t clock_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
}


/* Wait until @p due (CLOCK_MONOTONIC) or a stop; 1 when stopping. */
static int wait_until(evlogd_demo *d, const struct timespec *due) {
    pthread_mutex_lock(&d->mu);
    while (!d->stop && pthread_cond_timedwait(&d->cv, &d->mu, due) == 0) {}
    int stop = d->stop;
    pthread_mutex_unlock(&d->mu);
    return stop;
}

static void *run(void *arg) {
    evlogd_demo *d = arg;
    uint64_t seed = clock_seed();
    evl_gen *g = NULL;
    struct timespec due;
    clock_gettime(CLOCK_MONOTONIC, &due);
    int rc = evl_gen_new(seed, EVL_GEN_ALL, &g);
    while (rc == EVL_OK) {
        const evl_stream_in *s;
        size_t n;
        if ((rc = evl_gen_next(g, &s, &n))) break;
        evl_append_result res;
        rc = evl_log_append(d->log, s, n, &res);
        evl_free(res.acks);
        if (rc == EVL_ECONFLICT) {
            evl_gen_free(g);
            g = NULL;
            char line[160];
            snprintf(line, sizeof line, "demo: a generated entity is already in the log; going on with seed %llu",
                     (unsigned long long)++seed);
            d->say(NULL, line);
            rc = evl_gen_new(seed, EVL_GEN_ALL, &g);
            continue;
        }
        if (rc) break;
        for (size_t i = 0; i < n; i++) d->events += s[i].n_events;
        /* the next batch is due when this one's events have had their share of the second */
        uint64_t ns = 0;
        for (size_t i = 0; i < n; i++) ns += (uint64_t)(s[i].n_events * 1e9 / d->rate);
        due.tv_sec += (time_t)(ns / 1000000000u);
        due.tv_nsec += (long)(ns % 1000000000u);
        if (due.tv_nsec >= 1000000000L) {
            due.tv_sec++;
            due.tv_nsec -= 1000000000L;
        }
        if (wait_until(d, &due)) break;
    }
    if (rc) {
        char line[256];
        snprintf(line, sizeof line, "demo: stopped after %llu events: %s", (unsigned long long)d->events,
                 evl_strerror(rc));
        d->say(NULL, line);
    }
    evl_gen_free(g);
    return NULL;
}

int evlogd_demo_start(evl_log *log, double rate, void (*say)(void *, const char *),
                      evlogd_demo **out) {
    *out = NULL;
    evlogd_demo *d = evl_malloc(sizeof *d);
    if (!d) return EVL_ENOMEM;
    *d = (evlogd_demo){.log = log, .rate = rate > 0 ? rate : 20, .say = say};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&d->thread, NULL, run, d)) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        evl_free(d);
        return EVL_EIO;
    }
    *out = d;
    return EVL_OK;
}

void evlogd_demo_stop(evlogd_demo *d) {
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    char line[96];
    snprintf(line, sizeof line, "demo: stopped; it appended %llu events", (unsigned long long)d->events);
    d->say(NULL, line);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    evl_free(d);
}
