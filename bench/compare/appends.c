/* Workloads 1-3 on any system: N client threads append for a fixed window.
 *
 * Single events or batches go to the client's own streams (64 each, taken
 * in turn, expected revision "any"), so no two clients race for a stream
 * and every system does what its events table needs: find the stream's last
 * revision, store the next.  Optimistic concurrency: 1000 hot streams shared
 * by every client, seeded with one event each; a client appends to a random
 * one with the last revision it knows, and on a conflict learns the current
 * one (from the answer, or the system's cheapest read) and retries.
 * Throughput counts acknowledged events whose call returned in the window;
 * afterwards the store must hold exactly the acknowledged events. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_run.h"

#define STREAMS_PER_CLIENT 64

typedef struct worker {
    pthread_t th;
    int idx;
    const cmp_aparams *p;
    const cmp_sys *sys;
    void *cl;
    pthread_barrier_t *bar;
    const uint64_t *seed_rev;
    uint64_t deadline;
    bench_lat lat;
    uint64_t window_events, events, calls, conflicts;
    int failed;
    char err[CMP_ERR_LEN];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    const cmp_aparams *p = w->p;
    uint64_t rng = 0x9e3779b97f4a7c15u * (uint64_t)(w->idx + 1), *known = NULL;
    char stream[64];
    if (p->hot) {
        known = malloc((size_t)p->hot * sizeof *known);
        if (known)
            memcpy(known, w->seed_rev, (size_t)p->hot * sizeof *known);
        else
            w->failed = 1;
    }
    pthread_barrier_wait(w->bar);
    size_t next = (size_t)w->idx * 7919u % p->pool->n;
    for (uint64_t k = 0; !w->failed; k++) {
        uint64_t t0 = bench_now_ns();
        if (t0 >= w->deadline)
            break;
        if (next + (size_t)p->batch > p->pool->n)
            next = 0;
        const cmp_ev *evs = &p->pool->ev[next];
        next += (size_t)p->batch;
        uint64_t rev = 0;
        int rc;
        if (p->hot) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t s = (size_t)(rng % (uint64_t)p->hot);
            snprintf(stream, sizeof stream, "hot-%zu", s);
            for (;;) { /* a command retried until its expectation holds */
                uint64_t c0 = bench_now_ns();
                rc = w->sys->append(w->cl, stream, evs, 1, known[s], &rev, w->err);
                uint64_t c1 = bench_now_ns();
                w->calls++;
                bench_lat_add(&w->lat, c1 - c0);
                if (rc != CMP_CONFLICT || c1 >= w->deadline)
                    break;
                w->conflicts++;
                known[s] = rev;
            }
            if (rc == CMP_OK)
                known[s] = rev;
        } else {
            snprintf(stream, sizeof stream, "c%d-%u", w->idx, (unsigned)(k % STREAMS_PER_CLIENT));
            rc = w->sys->append(w->cl, stream, evs, (size_t)p->batch, CMP_ANY, &rev, w->err);
            w->calls++;
            bench_lat_add(&w->lat, bench_now_ns() - t0);
        }
        if (rc == CMP_OK) {
            uint64_t n = p->hot ? 1 : (uint64_t)p->batch;
            w->events += n;
            if (bench_now_ns() <= w->deadline)
                w->window_events += n;
        } else if (rc == CMP_FAIL) {
            w->failed = 1;
        }
    }
    free(known);
    return NULL;
}

/* The hot streams get one event each before the window; their revisions
 * are what every client knows at the start. */
static int seed_hot(const cmp_sys *sys, cmp_run *r, const cmp_aparams *p, uint64_t *rev)
{
    void *cl = sys->connect(r, 0, r->err);
    if (!cl)
        return -1;
    int rc = 0;
    for (int s = 0; s < p->hot && !rc; s++) {
        char stream[32];
        snprintf(stream, sizeof stream, "hot-%d", s);
        rc = sys->append(cl, stream, &p->pool->ev[(size_t)s % p->pool->n], 1, CMP_ANY, &rev[s],
                         r->err) == CMP_OK
                 ? 0
                 : -1;
    }
    sys->disconnect(cl);
    return rc;
}

int cmp_run_appends(const cmp_env *env, const cmp_sys *sys, const cmp_aparams *p, cmp_res *out)
{
    memset(out, 0, sizeof *out);
    cmp_run r = {.env = env};
    int n = p->clients;
    worker *w = calloc((size_t)n, sizeof *w);
    uint64_t *seed_rev = p->hot ? calloc((size_t)p->hot, sizeof *seed_rev) : NULL;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
    int started = 0, ok = 0;
    if (!w || (p->hot && !seed_rev)) {
        cmp_err(out->err, "out of memory");
        goto out;
    }
    if (sys->start(&r) != 0)
        goto out;
    if (p->hot && seed_hot(sys, &r, p, seed_rev) != 0)
        goto out;
    for (int i = 0; i < n; i++) {
        w[i] = (worker){.idx = i, .p = p, .sys = sys, .bar = &bar, .seed_rev = seed_rev};
        if (!(w[i].cl = sys->connect(&r, i, r.err)))
            goto out;
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&w[i].th, NULL, work, &w[i]) != 0) {
            /* the others wait at the barrier for it: nothing sane is left */
            fprintf(stderr, "compare: pthread_create failed\n");
            exit(1);
        }
        started++;
    }
    uint64_t t0 = bench_now_ns(), deadline = t0 + (uint64_t)(p->seconds * 1e9);
    for (int i = 0; i < started; i++)
        w[i].deadline = deadline; /* published to the threads by the barrier */
    pthread_barrier_wait(&bar);
    for (int i = 0; i < started; i++)
        pthread_join(w[i].th, NULL);
    double window = (double)(deadline - t0) / 1e9;
    bench_lat all = {0};
    uint64_t acked = 0;
    for (int i = 0; i < started; i++) {
        bench_lat_merge(&all, &w[i].lat);
        out->events += w[i].window_events;
        acked += w[i].events;
        out->calls += w[i].calls;
        out->conflicts += w[i].conflicts;
        if (w[i].failed)
            cmp_err(out->err, "client %d: %s", i, w[i].err);
    }
    bench_lat_sort(&all);
    out->ev_s = (double)out->events / window;
    out->p50_ms = (double)bench_percentile(all.v, all.n, 50) / 1e6;
    out->p99_ms = (double)bench_percentile(all.v, all.n, 99) / 1e6;
    bench_lat_free(&all);
    uint64_t seeded = (uint64_t)p->hot;
    if (started == n && !out->err[0] && sys->count(&r, &out->stored) == 0) {
        if (out->stored == acked + seeded)
            ok = 1;
        else
            cmp_err(out->err, "store holds %llu events, %llu acknowledged",
                    (unsigned long long)out->stored, (unsigned long long)(acked + seeded));
    }
out:
    for (int i = 0; w && i < n; i++) {
        if (w[i].cl)
            sys->disconnect(w[i].cl);
        bench_lat_free(&w[i].lat);
    }
    if (r.err[0])
        cmp_err(out->err, "%s", r.err);
    sys->stop(&r);
    pthread_barrier_destroy(&bar);
    free(w);
    free(seed_rev);
    out->valid = ok;
    return ok ? 0 : -1;
}
