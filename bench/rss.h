/** @file rss.h
 * @brief Peak resident memory of one phase of a benchmark, told apart by kind.
 *
 * The kernel keeps one high-water mark (VmHWM); writing "5" to
 * /proc/self/clear_refs resets it to the current RSS, so a phase can have a
 * peak of its own.  VmHWM does not say what the memory is: a log read
 * through LMDB's map is file-backed (RssFile: page cache mapped into the
 * process, reclaimable, and as large as the part of the log that was read),
 * while what the code allocates is RssAnon.  So a sampler thread also reads
 * RssAnon and RssFile every few milliseconds and keeps the largest of each.
 *
 * Header-only, like bench.h.
 */
#ifndef EVLOG_BENCH_RSS_H
#define EVLOG_BENCH_RSS_H

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define RSS_SAMPLE_NS 5000000L /* 5 ms: short phases still get a few samples */

typedef struct rss_now {
    uint64_t hwm_kb, rss_kb, anon_kb, file_kb;
} rss_now;

/** A phase's figures: kernel peak, sampled peaks per kind, RSS at the start. */
typedef struct rss_peak {
    int reset_ok;             /* 0: clear_refs refused, hwm is the peak since the process started */
    uint64_t hwm_kb;          /* VmHWM at the end of the phase */
    uint64_t start_kb;        /* VmRSS when the phase began */
    uint64_t anon_kb, file_kb; /* largest RssAnon, RssFile seen by the sampler */
    uint64_t samples;
} rss_peak;

static inline int rss_read(rss_now *n)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    memset(n, 0, sizeof *n);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "VmHWM: %llu", &v) == 1)
            n->hwm_kb = v;
        else if (sscanf(line, "VmRSS: %llu", &v) == 1)
            n->rss_kb = v;
        else if (sscanf(line, "RssAnon: %llu", &v) == 1)
            n->anon_kb = v;
        else if (sscanf(line, "RssFile: %llu", &v) == 1)
            n->file_kb = v;
    }
    fclose(f);
    return 0;
}

typedef struct rss_meter {
    pthread_t th;
    atomic_int stop;
    rss_peak *out;
} rss_meter;

static inline void rss_take(rss_peak *p)
{
    rss_now n;
    if (rss_read(&n) != 0)
        return;
    if (n.anon_kb > p->anon_kb)
        p->anon_kb = n.anon_kb;
    if (n.file_kb > p->file_kb)
        p->file_kb = n.file_kb;
    p->samples++;
}

static inline void *rss_meter_main(void *arg)
{
    rss_meter *m = arg;
    struct timespec ts = {0, RSS_SAMPLE_NS};
    while (!atomic_load(&m->stop)) {
        rss_take(m->out);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/** @brief Start a phase: hand freed heap back to the system (so an earlier
 * phase's allocations are not counted), reset the high-water mark, start
 * the sampler. */
static inline void rss_begin(rss_meter *m, rss_peak *p)
{
    memset(p, 0, sizeof *p);
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        p->reset_ok = fputs("5", f) >= 0;
        p->reset_ok &= fclose(f) == 0;
    }
    rss_now n;
    rss_read(&n);
    p->start_kb = n.rss_kb;
    m->out = p;
    atomic_store(&m->stop, 0);
    rss_take(p);
    if (pthread_create(&m->th, NULL, rss_meter_main, m) != 0)
        m->out = NULL; /* no sampler: the start and end samples only */
}

/** @brief End the phase: stop the sampler, take the last sample and VmHWM. */
static inline void rss_end(rss_meter *m, rss_peak *p)
{
    if (m->out) {
        atomic_store(&m->stop, 1);
        pthread_join(m->th, NULL);
    }
    rss_take(p);
    rss_now n;
    if (rss_read(&n) == 0)
        p->hwm_kb = n.hwm_kb;
}

#endif
