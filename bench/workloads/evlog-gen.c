/* evlog-gen: append generated service events (gen.h) to a data directory.
 *
 *   evlog-gen --data DIR --events N [--seed S] [--services jobs,tasks,...]
 *             [--rate EVENTS_PER_S] [--sync full|none] [--window BATCHES]
 *
 * A load generator: batches are appended asynchronously, up to --window of
 * them in flight, so that the log's group commit gathers them (one fsync per
 * group, as with many concurrent clients).  The log keeps them in submission
 * order, which the generator needs: an entity is created before its later
 * events and parents before children.  --rate paces the batches.
 *
 * Exactly N events are appended: the last batch is cut after its N-th event
 * (it is the last one, so nothing later depends on the events left out).
 * Without --seed the seed is drawn from the clock and printed, so that runs
 * add new entities and any run can be repeated.
 *
 * Exit status: 0 success, 1 error, 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evlog/evlog.h"
#include "evlog/log.h"
#include "gen.h"

#define MAX_BATCH_STREAMS 8

/* Shared with the writer thread's completion callback. */
typedef struct inflight {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;               /* batches queued, not completed */
    int err;                /* the first failure */
    uint64_t current_revision;
    uint64_t head;          /* highest position acknowledged */
} inflight;

static void on_done(void *arg, const evl_append_result *res) {
    inflight *f = arg;
    pthread_mutex_lock(&f->mu);
    if (res->err && !f->err) {
        f->err = res->err;
        f->current_revision = res->current_revision;
    }
    for (size_t i = 0; i < res->n_acks; i++)
        if (res->acks[i].position > f->head) f->head = res->acks[i].position;
    f->n--;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: evlog-gen --data DIR --events N [--seed S] [--services LIST]\n"
            "                 [--rate EVENTS_PER_S] [--sync full|none] [--window BATCHES]\n"
            "  --services  comma list of jobs,tasks,auth,runs,karr,saas (default: all)\n"
            "  --rate      pace the appends to this many events per second (default: as fast as possible)\n"
            "  --sync      the log's durability (default: full; group commit amortises it)\n"
            "  --window    batches in flight at most (default 1024)\n");
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-') return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    uint64_t n_events = 0, seed = 0, window = 1024;
    bool have_events = false, have_seed = false;
    double rate = 0;
    unsigned services = EVL_GEN_ALL;
    evl_log_options lopt;
    evl_log_options_init(&lopt);

    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},   {"events", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 's'},   {"services", required_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'r'},   {"sync", required_argument, NULL, 'y'},
        {"window", required_argument, NULL, 'w'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "d:n:s:S:r:y:w:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'n':
            if (!parse_u64(optarg, &n_events)) goto bad;
            have_events = true;
            break;
        case 's':
            if (!parse_u64(optarg, &seed)) goto bad;
            have_seed = true;
            break;
        case 'S':
            if (evl_gen_parse_services(optarg, &services)) {
                fprintf(stderr, "evlog-gen: unknown service in '%s' (jobs,tasks,auth,runs,karr,saas,all)\n",
                        optarg);
                return 2;
            }
            break;
        case 'r': {
            char *end;
            rate = strtod(optarg, &end);
            if (end == optarg || *end || !(rate > 0)) goto bad;
            break;
        }
        case 'y':
            if (!strcmp(optarg, "full")) lopt.sync = EVL_SYNC_FULL;
            else if (!strcmp(optarg, "none")) lopt.sync = EVL_SYNC_NONE;
            else goto bad;
            break;
        case 'w':
            if (!parse_u64(optarg, &window) || window == 0) goto bad;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!dir || !have_events || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!have_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
    }

    evl_gen *g = NULL;
    evl_log *log = NULL;
    int rc = evl_gen_new(seed, services, &g);
    if (rc) {
        fprintf(stderr, "evlog-gen: %s\n", evl_strerror(rc));
        return 1;
    }
    if ((rc = evl_log_open(dir, &lopt, &log))) {
        fprintf(stderr, "evlog-gen: %s: %s\n", dir, evl_strerror(rc));
        evl_gen_free(g);
        return 1;
    }
    printf("evlog-gen: seed %" PRIu64 ", services", seed);
    for (unsigned b = 1; b <= EVL_GEN_ALL; b <<= 1)
        if (services & b) printf(" %s", evl_gen_service_name(b));
    printf("\n");
    fflush(stdout);

    inflight f = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    uint64_t sent = 0, batches = 0;
    int64_t t0 = mono_ns();
    while (sent < n_events) {
        const evl_stream_in *gs;
        size_t ns;
        if ((rc = evl_gen_next(g, &gs, &ns))) {
            fprintf(stderr, "evlog-gen: generator: %s\n", evl_strerror(rc));
            break;
        }
        /* the batch, cut after the N-th event when it is the last one */
        evl_stream_in batch[MAX_BATCH_STREAMS];
        size_t nb = 0;
        uint64_t left = n_events - sent, taken = 0;
        for (size_t i = 0; i < ns && nb < MAX_BATCH_STREAMS && taken < left; i++) {
            batch[nb] = gs[i];
            if (batch[nb].n_events > left - taken) batch[nb].n_events = (size_t)(left - taken);
            taken += batch[nb].n_events;
            nb++;
        }
        pthread_mutex_lock(&f.mu);
        while (f.n >= window && !f.err) pthread_cond_wait(&f.cv, &f.mu);
        int failed = f.err;
        if (!failed) f.n++;
        pthread_mutex_unlock(&f.mu);
        if (failed) break;
        if ((rc = evl_log_append_async(log, batch, nb, on_done, &f))) {
            pthread_mutex_lock(&f.mu);
            f.n--;
            pthread_mutex_unlock(&f.mu);
            fprintf(stderr, "evlog-gen: append (%s): %s\n", batch[0].stream, evl_strerror(rc));
            break;
        }
        sent += taken;
        batches++;
        if (rate > 0) {
            int64_t due = t0 + (int64_t)((double)sent * 1e9 / rate);
            int64_t now = mono_ns();
            if (due > now) {
                struct timespec d = {(time_t)((due - now) / 1000000000), (long)((due - now) % 1000000000)};
                while (nanosleep(&d, &d) == -1 && errno == EINTR) {}
            }
        }
    }
    pthread_mutex_lock(&f.mu);
    while (f.n > 0) pthread_cond_wait(&f.cv, &f.mu);
    int err = f.err;
    pthread_mutex_unlock(&f.mu);
    double secs = (double)(mono_ns() - t0) / 1e9;
    if (err) {
        fprintf(stderr, "evlog-gen: append failed: %s", evl_strerror(err));
        if (err == EVL_ECONFLICT)
            fprintf(stderr, " (an entity of this seed is already in the log: use another --seed)");
        fprintf(stderr, "; stopped after %" PRIu64 " events queued, log head %" PRIu64 "\n", sent, f.head);
        rc = err;
    } else if (!rc) {
        char t1[40];
        evl_time_format(evl_gen_clock(g), 0, t1);
        printf("evlog-gen: appended %" PRIu64 " events in %" PRIu64 " batches in %.3f s: %.0f events/s"
               " (log head %" PRIu64 "; simulated time 2025-12-18T10:30:00Z .. %s)\n",
               sent, batches, secs, secs > 0 ? (double)sent / secs : 0.0, f.head, t1);
    }
    evl_log_close(log);
    evl_gen_free(g);
    return rc ? 1 : 0;
bad:
    fprintf(stderr, "evlog-gen: bad value for --%s: '%s'\n",
            c == 'n' ? "events" : c == 's' ? "seed" : c == 'r' ? "rate" : c == 'y' ? "sync" : "window",
            optarg);
    return 2;
}
