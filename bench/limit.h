/** @file limit.h
 * @brief The limit shared by bench/project and bench/rebuild (limit.c): every
 * event decoded once, before timing, into the statements its handlers run
 * and their values; a timed loop that only binds and steps them into SQLite.
 */
#ifndef EVLOG_BENCH_LIMIT_H
#define EVLOG_BENCH_LIMIT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "evlog/log.h"
#include "evlog/proj.h"
/* The parsed spec's handlers, statements and parameter plans: the limit runs
 * exactly the statements the engine prepares, byte for byte. */
#include "projections/proj_int.h"

enum { V_NULL, V_INT, V_REAL, V_TEXT, V_BLOB };

/** One bound value, decoded before timing. */
typedef struct val {
    int kind;
    int len;
    union {
        sqlite3_int64 i;
        double d;
        const void *p;
    } u;
} val;

/** One statement to run: a flat statement index and its first value. */
typedef struct op {
    uint32_t stmt;
    uint32_t nval;
    size_t val;
} op;

/** Stable storage for the text and blobs the values point to. */
typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
} chunk;

/** What the limit runs: the spec's statements (flattened, handler by
 * handler) and, per event, the statements its handlers run with their values. */
typedef struct program {
    const evl_proj_spec *spec;
    size_t n_stmts;
    const char **sql;
    size_t *first_stmt; /* per handler: its first flat statement */
    op *ops;
    size_t n_ops, cap_ops;
    val *vals;
    size_t n_vals, cap_vals;
    size_t *ev_first; /* per event: its first op; ev_first[n_events] = n_ops */
    size_t n_events;
    uint64_t matched; /* events that matched a handler */
    chunk *arena;
} program;

/** Keep the first error in dst (later ones are consequences). */
void set_err(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/** CPU seconds (user + system) of the whole process so far. */
double cpu_now(void);
/** Unlink an SQLite file and its -wal and -shm. */
void remove_db(const char *path);
/** malloc / realloc that exit on failure. */
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);

/** Read the whole log once and decode every event into the statements its
 * handlers run and their values.  @return 0, or -1 (the reason on stderr). */
int build_program(evl_log *log, const evl_proj_spec *spec, program *pg);
void free_program(program *pg);
/** One limit run: the precomputed statements bound and stepped in
 * transactions of @p batch events on a fresh file at @p path, opened as
 * the engine opens its files.  @return 0, or -1 with the reason in err. */
int limit_run(const program *pg, const char *path, size_t batch, double *secs, double *cpu, char *err,
              size_t errn);
/** A hash of every row of every table of @p spec in file @p path (rowid
 * order), to check that two systems produced the same tables. */
int table_digest(const char *path, const evl_proj_spec *spec, uint64_t *hash, uint64_t *rows);

#endif
