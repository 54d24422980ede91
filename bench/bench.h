/** @file bench.h
 * @brief Small helpers shared by the benchmarks in bench/: a monotonic clock,
 * latency arrays with percentiles, a tiny aligned-table printer, and the
 * built-in specs as the engine benchmarks run them.
 *
 * Header-only (static functions) so that each benchmark is one .c file.
 */
#ifndef EVLOG_BENCH_H
#define EVLOG_BENCH_H

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evlog/proj.h"

/* -------------------------------------------------------- scratch dirs */

static inline int bench_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "bench: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/** @brief Remove @p dir and everything under it (no-op for NULL or ""). */
static inline void bench_rm_rf(const char *dir)
{
    if (dir && *dir)
        nftw(dir, bench_rm_cb, 32, FTW_DEPTH | FTW_PHYS);
}

/** @brief mkdtemp "BASE/evlog-bench-XXXXXX" into @p out; on failure out is ""
 * and -1 is returned (the reason printed). */
static inline int bench_make_rundir(char *out, size_t n, const char *base)
{
    snprintf(out, n, "%s/evlog-bench-XXXXXX", base);
    if (!mkdtemp(out)) {
        fprintf(stderr, "bench: mkdtemp %s: %s\n", out, strerror(errno));
        out[0] = 0;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ clock */

/** @brief Nanoseconds from CLOCK_MONOTONIC (never jumps with wall-clock changes). */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** @brief Nanoseconds since the Unix epoch from CLOCK_REALTIME (for timestamps). */
static inline int64_t bench_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

/* -------------------------------------------------------------- latencies */

/** A growable array of latencies in nanoseconds. */
typedef struct bench_lat {
    uint64_t *v;
    size_t n, cap;
} bench_lat;

/** @brief Append one sample. @return 0, or -1 when out of memory. */
static inline int bench_lat_add(bench_lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        uint64_t *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = ns;
    return 0;
}

/** @brief Append all of @p src to @p dst. @return 0 or -1 (out of memory). */
static inline int bench_lat_merge(bench_lat *dst, const bench_lat *src)
{
    if (src->n == 0)
        return 0;
    if (dst->n + src->n > dst->cap) {
        size_t cap = dst->n + src->n;
        uint64_t *v = realloc(dst->v, cap * sizeof *v);
        if (!v)
            return -1;
        dst->v = v;
        dst->cap = cap;
    }
    memcpy(dst->v + dst->n, src->v, src->n * sizeof *src->v);
    dst->n += src->n;
    return 0;
}

static inline void bench_lat_free(bench_lat *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

static inline int bench_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/** @brief Sort the samples (ascending); call once before bench_percentile(). */
static inline void bench_lat_sort(bench_lat *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, bench_u64_cmp);
}

/** @brief The @p p-th percentile (0 < p <= 100) of @p n sorted samples,
 * nearest-rank definition: the smallest sample such that at least p% of the
 * samples are <= it.  Returns 0 for an empty array. */
static inline uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return sorted[0];
    /* rank = ceil(p/100 * n), computed without libm */
    double r = p / 100.0 * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static inline int bench_dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
/** @brief Median of a small array of doubles (sorts it in place). */
static inline double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, bench_dbl_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* ------------------------------------------------------------ the printer */

/** A tiny results table: add a header row and data rows of cells (strings),
 * then print it with every column padded to its widest cell.  Column 0 is
 * left-aligned, the others right-aligned. */
#define BENCH_TABLE_MAX_COLS 16
#define BENCH_CELL 64

typedef struct bench_table {
    size_t ncols, nrows, cap;
    char (*cells)[BENCH_CELL]; /* nrows x ncols */
    char **tails;              /* optional free text after each row (not aligned) */
} bench_table;

static inline void bench_table_init(bench_table *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols > BENCH_TABLE_MAX_COLS ? BENCH_TABLE_MAX_COLS : ncols;
}

/** @brief Start a new row. @return its index, or (size_t)-1 when out of memory. */
static inline size_t bench_table_row(bench_table *t)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char(*c)[BENCH_CELL] = realloc(t->cells, cap * t->ncols * BENCH_CELL);
        if (!c)
            return (size_t)-1;
        t->cells = c;
        char **tl = realloc(t->tails, cap * sizeof *tl);
        if (!tl)
            return (size_t)-1;
        t->tails = tl;
        t->cap = cap;
    }
    memset(t->cells[t->nrows * t->ncols], 0, t->ncols * BENCH_CELL);
    t->tails[t->nrows] = NULL;
    return t->nrows++;
}

/** @brief Set cell (@p row, @p col) with printf formatting (truncated to 63 bytes). */
static inline void bench_table_set(bench_table *t, size_t row, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void bench_table_set(bench_table *t, size_t row, size_t col, const char *fmt, ...)
{
    if (row >= t->nrows || col >= t->ncols)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->cells[row * t->ncols + col], BENCH_CELL, fmt, ap);
    va_end(ap);
}

/** @brief Free text printed after row @p row (e.g. a marker); copied. */
static inline void bench_table_tail(bench_table *t, size_t row, const char *text)
{
    if (row >= t->nrows)
        return;
    free(t->tails[row]);
    t->tails[row] = text ? strdup(text) : NULL;
}

/** @brief Print the table; a dashed rule follows row 0 (the header). */
static inline void bench_table_print(const bench_table *t, FILE *f)
{
    size_t w[BENCH_TABLE_MAX_COLS] = {0}, total = 0;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t l = strlen(t->cells[r * t->ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    for (size_t c = 0; c < t->ncols; c++)
        total += w[c] + (c ? 2 : 0);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c == 0)
                fprintf(f, "%-*s", (int)w[c], s);
            else
                fprintf(f, "  %*s", (int)w[c], s);
        }
        if (t->tails[r])
            fprintf(f, "  %s", t->tails[r]);
        fputc('\n', f);
        if (r == 0) {
            for (size_t i = 0; i < total; i++)
                fputc('-', f);
            fputc('\n', f);
        }
    }
}

static inline void bench_table_free(bench_table *t)
{
    for (size_t r = 0; r < t->nrows; r++)
        free(t->tails[r]);
    free(t->tails);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------- built-in specs */

/* Built-in spec NAME ("jobs") as the engine benchmarks run it: without its
 * `-- @history` lines.  bench/project and bench/rebuild compare the engine
 * with the limit (the same statements straight into SQLite), which keeps
 * no history; what history costs is bench/history's measurement.  The
 * copies are made once and live as long as the process (static storage,
 * like the built-ins themselves). */
static inline const evl_proj_builtin *bench_builtin(const char *name)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static evl_proj_builtin copy[64];
    static size_t n_copy;
    const evl_proj_builtin *found = NULL;
    char file[128];
    snprintf(file, sizeof file, "%s.sql", name);
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n_copy && !found; i++)
        if (strcmp(copy[i].file, file) == 0)
            found = &copy[i];
    size_t nb;
    const evl_proj_builtin *b = evl_proj_builtins(&nb);
    for (size_t i = 0; i < nb && !found && n_copy < 64; i++) {
        if (strcmp(b[i].file, file) != 0)
            continue;
        char *text = malloc(b[i].len + 1);
        if (!text)
            break;
        size_t n = 0;
        for (const char *s = b[i].text, *end = s + b[i].len; s < end;) {
            const char *eol = memchr(s, '\n', (size_t)(end - s));
            eol = eol ? eol + 1 : end;
            if (!(eol - s >= 12 && memcmp(s, "-- @history ", 12) == 0)) {
                memcpy(text + n, s, (size_t)(eol - s));
                n += (size_t)(eol - s);
            }
            s = eol;
        }
        text[n] = 0;
        copy[n_copy] = (evl_proj_builtin){.file = b[i].file, .text = text, .len = n};
        found = &copy[n_copy++];
    }
    pthread_mutex_unlock(&mu);
    return found;
}

#endif
