/** @file rebuild.h
 * @brief bench/rebuild: the results of one run, shared by the measuring part
 * (rebuild.c) and the report (rebuild_out.c).
 */
#ifndef EVLOG_BENCH_REBUILD_H
#define EVLOG_BENCH_REBUILD_H

#include <stdint.h>
#include <stdio.h>

#include "rss.h"

#define RB_MAX_PROJ 4
#define RB_MAX_ROUNDS 16
#define RB_RATIO_TARGET 0.8   /* rebuild >= 0.8x the limit */
#define RB_SCAN_TARGET 2e6    /* log scan >= 2M events/s */

/** One timed phase of one round. */
typedef struct rb_phase {
    int valid;
    double secs, cpu_secs;    /* wall and process CPU (user + system) */
    double events_per_s;      /* events in the log / secs */
    rss_peak rss;
    char error[240];
} rb_phase;

enum { PH_LIVE, PH_REBUILD, PH_LIMIT, N_PH };

/** Per projection and round. */
typedef struct rb_proj_fig {
    double rebuild_secs;      /* the engine's own figure (its report line); 0 unknown */
    double limit_secs, limit_cpu;
    uint64_t matched, statements; /* what the limit's program holds */
    uint64_t live_digest, rebuild_digest, limit_digest;
    uint64_t live_rows, rebuild_rows, limit_rows;
} rb_proj_fig;

/** A set: one projection alone, or the four core ones together. */
typedef struct rb_set {
    const char *name;         /* "alone" or "core" */
    int n_proj;
    const char *proj[RB_MAX_PROJ];
    int rounds;
    rb_phase ph[N_PH][RB_MAX_ROUNDS];
    rb_proj_fig pf[RB_MAX_PROJ][RB_MAX_ROUNDS];
    /* summarised */
    double med[N_PH];         /* median events/s per phase */
    double med_secs[N_PH];
    double ratio_limit[RB_MAX_ROUNDS], ratio_live[RB_MAX_ROUNDS];
    /* CPU seconds, the other way round (limit / rebuild, live / rebuild): on
     * a shared machine they tell cost apart from time lost to others */
    double cpu_ratio[RB_MAX_ROUNDS], cpu_live_ratio[RB_MAX_ROUNDS];
    double ratio_limit_med, ratio_live_med, cpu_ratio_med, cpu_live_ratio_med;
    uint64_t hwm_kb[N_PH], anon_kb[N_PH], file_kb[N_PH]; /* largest over rounds */
    int valid, same_tables;
} rb_set;

/** The log scan (read + decode, no SQL). */
typedef struct rb_scan {
    int rounds;
    rb_phase r[RB_MAX_ROUNDS];
    uint64_t fields;          /* data fields walked per round */
    double med;
    uint64_t hwm_kb, anon_kb, file_kb;
} rb_scan;

typedef struct rb_run {
    char date[32];
    const char *tmp;
    long cpus;
    uint64_t events, head, seed;
    double log_mb, fill_secs, total_secs;
    int quick, rounds, live_batch, limit_batch;
    const char *alone;
} rb_run;

/* rebuild_out.c */
void rb_summarise(rb_set *s);
void rb_scan_summarise(rb_scan *sc);
void rb_print(FILE *f, const rb_run *run, const rb_scan *sc, const rb_set *sets, int n);
int rb_write_json(const char *file, const rb_run *run, const rb_scan *sc, const rb_set *sets, int n);

#endif
