/** @file mat.h
 * @brief Workload 5 of evlog-compare: materialise the jobs, tasks, nodes and
 * runs tables from generated events, with evlog's projection engine, with
 * the same statements run into SQLite by a plain loop (bench/limit.c), and
 * with the same statements translated to PostgreSQL and issued by a libpq
 * client (mat_pg.c).  Shared here: what every system is checked against. */
#ifndef EVLOG_BENCH_MAT_H
#define EVLOG_BENCH_MAT_H

#include <stddef.h>
#include <stdint.h>

#include "limit.h"

#define MAT_N 4               /* jobs, tasks, nodes, runs */
#define MAT_BATCH 10000       /* events per transaction: the engine's default batch_events */

/** One materialised table and the key columns its digest covers: no float
 * column (SQLite and PostgreSQL print floats differently), ordered by the
 * primary key in byte order on both. */
typedef struct mat_table {
    const char *name;         /* the projection and its table */
    const char *cols;         /* the digest's columns */
    const char *key;          /* ORDER BY */
    int text_key;             /* 1: PostgreSQL orders it COLLATE "C" */
} mat_table;

extern const mat_table mat_tables[MAT_N];

/** Running digest of rows given as text (NULL: a NULL value). */
typedef struct mat_digest {
    uint64_t h;
} mat_digest;
void mat_digest_init(mat_digest *d, const char *table);
void mat_digest_value(mat_digest *d, const char *v, size_t len);
void mat_digest_row_end(mat_digest *d);

#ifdef CMP_HAVE_PG
/** One PostgreSQL round: the four tables dropped and created (the spec's DDL
 * translated), then every event's statements (from the precomputed
 * programs, translated) issued one round trip each, MAT_BATCH events per
 * transaction.  @p cpu: the client's plus its server backend's CPU seconds.
 * @return 0, or -1 with the reason in err. */
int mat_pg_round(const char *conninfo, program *const progs[MAT_N], double *secs, double *cpu,
                 uint64_t *digest, uint64_t rows[MAT_N], char *err, size_t errn);
#endif

#endif
