/** @file cmp_run.h
 * @brief evlog-compare's workloads: what a run is given and what it measured. */
#ifndef EVLOG_BENCH_CMP_RUN_H
#define EVLOG_BENCH_CMP_RUN_H

#include <signal.h>
#include <stdio.h>

#include "cmp.h"

/** Parameters of an append run (workloads 1-3). */
typedef struct cmp_aparams {
    int clients;            /* concurrent client threads */
    int batch;              /* events per append */
    int hot;                /* >0: optimistic concurrency on this many shared streams */
    double seconds;
    const cmp_pool *pool;
} cmp_aparams;

/** One run of one system. */
typedef struct cmp_res {
    int valid;
    double ev_s;            /* events/s (workload 6: 0) */
    double p50_ms, p99_ms;  /* one call; workload 6: one delivery */
    uint64_t events;        /* acknowledged in the window (replay: read) */
    uint64_t calls, conflicts, stored;
    double seconds;         /* replay: the scan's time; materialize: the apply's */
    double cpu_s;           /* materialize: CPU seconds of the system under test */
    uint64_t digest;        /* materialize: hash of the tables' key columns */
    uint64_t rows[4];       /* materialize: rows of jobs, tasks, nodes, runs */
    char err[CMP_ERR_LEN];
} cmp_res;

int cmp_run_appends(const cmp_env *env, const cmp_sys *sys, const cmp_aparams *p, cmp_res *out);

/** One configuration of a workload, its systems and every round. */
typedef struct cmp_case {
    char id[24];            /* "w1-net-64": stable, for JSON and the chart */
    char title[96];
    int workload;           /* 1..6 as numbered in the issue */
    int clients, batch, hot;
    uint64_t events;        /* replay: events loaded; feed: published; materialize: applied */
    int n_sys, rounds;
    const cmp_sys *sys[CMP_MAX_SYS];
    int ref[CMP_MAX_SYS];   /* the evlog system a baseline is compared with, or -1 */
    cmp_res r[CMP_MAX_SYS][CMP_MAX_ROUNDS];
    double load_s[CMP_MAX_SYS]; /* replay: time to load (not compared) */
    /* summaries (report.c) */
    double ev[CMP_MAX_SYS], p50[CMP_MAX_SYS], p99[CMP_MAX_SYS];
    double ratio[CMP_MAX_SYS][CMP_MAX_ROUNDS], ratio_med[CMP_MAX_SYS];
    int valid[CMP_MAX_SYS];
} cmp_case;

/** A target of the issue, checked against the medians. */
typedef struct cmp_target {
    const char *text;
    const char *case_id, *a, *b; /* a / b per round (latency: b's p99 / a's p99) */
    double min;                 /* ratio target; or events/s when b is NULL */
    const char *note;           /* why it may not be comparable, or NULL */
    /* result */
    int measured, met;
    double value;
} cmp_target;

/** Workload 5 (materialize.c): load the events once, then every round
 * builds the four tables from scratch on each system of @p c. */
void cmp_run_materialize(const cmp_env *env, cmp_case *c, volatile sig_atomic_t *interrupted);

void cmp_summarise(cmp_case *c);
void cmp_targets(const cmp_case *cs, int n, cmp_target *t, int nt);
void cmp_print(FILE *f, const cmp_env *env, const cmp_case *cs, int n, const cmp_target *t, int nt);
int cmp_write_json(const char *path, const cmp_env *env, const cmp_case *cs, int n,
                   const cmp_target *t, int nt, double total_s);
int cmp_write_chart(const char *path, const cmp_case *cs, int n);

#endif
