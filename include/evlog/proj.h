/** @file proj.h
 * @brief evlog: SQL projections — spec files, projector threads, status, queries.
 *
 * A projection is one `.sql` file:
 * @code
 * -- @projection jobs
 * CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, ...);
 * -- @on JobQueued
 * INSERT INTO jobs (id, status, created_at) VALUES (:id, 'queued', @time);
 * -- @on JobSucceeded
 * -- @on JobFailed
 * UPDATE jobs SET finished_at = @time WHERE id = :id;
 * @endcode
 * DDL comes first, then handlers: each `-- @on TYPE` line (or `-- @on *`,
 * every type) introduces SQL statements run in order for each event of that
 * type; consecutive `@on` lines share one body.  Parameters bind from the
 * event: `:field` a top-level data field (maps and arrays as JSON text,
 * booleans as 0/1), `$field` a meta field, and `@stream @type @position
 * @revision @id @time @time_ns @category @data @meta` (`@time` ISO-8601 UTC
 * with milliseconds and `Z`; `@data`/`@meta` the whole map as JSON).  A field
 * the event lacks binds NULL.
 *
 * Each projection lives in `DATA/projections/NAME.db` (SQLite, WAL), fed by
 * its own thread in batches; the checkpoint (last applied position, spec
 * hash, events applied) is written in the same SQLite transaction as the
 * rows, so after a crash it resumes at exactly the next event.  A handler
 * error faults that projection alone.
 *
 * @section caveats Caveats
 * - The engine needs the data directory's lock: open the log read-write.
 *   Readers in other processes use evl_proj_query_file() on the `.db` file.
 * - A spec whose hash differs from the one its file was built with is
 *   rebuilt from position 1 beside the old table, which keeps serving (fed
 *   by the spec it was built with, stored in the file) until the rebuilt
 *   one takes over; see evl_proj_rebuild().
 */
#ifndef EVLOG_PROJ_H
#define EVLOG_PROJ_H

#include <jansson.h>

#include "log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evl_proj_spec evl_proj_spec;
typedef struct evl_proj_engine evl_proj_engine;

#define EVL_PROJ_MAX_NAME 63

/** @brief Parse and check a projection file: directives, DDL, every handler
 * statement prepared against the DDL, every parameter name known.
 * @param[in] file the name used in messages ("jobs.sql", "builtin:jobs.sql").
 * @param[out] out the spec; the caller frees it with evl_proj_spec_free().
 * @param[out] err on #EVL_ESPEC, "FILE:LINE: problem" (NUL-terminated, at most @p errlen).
 * @return EVL_OK, #EVL_ESPEC, #EVL_ENOMEM. */
int evl_proj_spec_parse(const char *src, size_t len, const char *file, evl_proj_spec **out,
                        char *err, size_t errlen);
void evl_proj_spec_free(evl_proj_spec *spec);
/** The projection's name (borrowed). */
const char *evl_proj_spec_name(const evl_proj_spec *spec);
/** 16 hex digits identifying the spec's content (borrowed). */
const char *evl_proj_spec_hash(const evl_proj_spec *spec);
/** Where the spec came from ("builtin:jobs.sql", a path) (borrowed). */
const char *evl_proj_spec_file(const evl_proj_spec *spec);

/** Built-in specs compiled into the library: name ("jobs.sql") and text. */
typedef struct evl_proj_builtin {
    const char *file;
    const char *text;
    size_t len;
} evl_proj_builtin;
/** @brief The built-in specs (static storage); @p n receives their count. */
const evl_proj_builtin *evl_proj_builtins(size_t *n);

/** Receives one line per notable thing (a broken file skipped, a rebuild,
 * a fault).  Called from any thread. */
typedef void (*evl_proj_report_fn)(void *arg, const char *line);

typedef struct evl_proj_options {
    const char *const *dirs;  /**< extra spec directories (every *.sql in each) */
    size_t n_dirs;
    int no_builtin;           /**< leave the built-in specs out */
    size_t batch_events;      /**< events per SQLite transaction at most; default 10000 */
    evl_proj_report_fn report;
    void *report_arg;
    int no_readahead;         /**< apply long batches in the projector's thread alone, without a
                                   reader thread ahead of it (a machine with one CPU never has one) */
} evl_proj_options;

/** @brief Load the specs, open or create each projection's SQLite file, and
 * start one projector thread per projection.  Broken spec files are
 * reported and skipped.
 * @param[out] out the engine; close it with evl_proj_close() before the log.
 * @return EVL_OK, #EVL_ERDONLY (a read-only log), #EVL_ENOMEM, EVL_ESYS(errno). */
int evl_proj_open(evl_log *log, const evl_proj_options *opt, evl_proj_engine **out);

/** @brief Stop every projector (each finishes its batch and checkpoints) and
 * close.  NULL is a no-op. */
void evl_proj_close(evl_proj_engine *eng);

typedef enum evl_proj_state {
    EVL_PROJ_CATCHING_UP, EVL_PROJ_LIVE, EVL_PROJ_REBUILDING, EVL_PROJ_FAULTED
} evl_proj_state;
/** "catching_up", "live", "rebuilding", "faulted". */
const char *evl_proj_state_name(evl_proj_state s);

typedef struct evl_proj_table_rows {
    char *name;
    uint64_t rows;
} evl_proj_table_rows;

typedef struct evl_proj_status {
    char *name;
    char *file;                 /**< where the spec came from */
    evl_proj_state state;
    uint64_t checkpoint;        /**< last applied position */
    uint64_t head;              /**< the log's head when the status was taken */
    uint64_t lag;               /**< head - checkpoint */
    uint64_t events_applied;    /**< events that matched a handler, since the file was built */
    char spec_hash[17];
    size_t n_tables;
    evl_proj_table_rows *tables; /**< rows per table */
    uint64_t fault_position;    /**< with state faulted: the event that failed */
    char *fault_type;           /**< its type */
    char *error;                /**< SQLite's message (with the spec line), or NULL */
    uint64_t generation;        /**< rebuilds swapped in since the engine opened */
    /* A rebuild in progress (state rebuilding): */
    int rebuild_active;
    char rebuild_hash[17];      /**< the spec being built */
    uint64_t rebuild_position;  /**< the shadow's checkpoint */
    uint64_t rebuild_applied;   /**< events its handlers applied */
    double rebuild_seconds;     /**< since it started */
    double rebuild_rate;        /**< positions per second so far */
    double rebuild_eta;         /**< seconds to the head at that rate; -1 unknown */
    char *rebuild_error;        /**< why the last rebuild failed (the old table still serves), or NULL */
} evl_proj_status;

/** @brief Status of every projection (or of @p name only, when not NULL).
 * @param[out] out an array the caller frees with evl_proj_status_free().
 * @return EVL_OK, #EVL_ENOTFOUND (no such projection), #EVL_ENOMEM. */
int evl_proj_status_get(evl_proj_engine *eng, const char *name, evl_proj_status **out, size_t *n);
void evl_proj_status_free(evl_proj_status *st, size_t n);

/** @brief Wait until projection @p name has applied @p position (read your
 * own writes).  @return EVL_OK, #EVL_ETIMEDOUT, #EVL_EFAULTED, #EVL_ENOTFOUND. */
int evl_proj_wait(evl_proj_engine *eng, const char *name, uint64_t position, int timeout_ms);

/** @brief Wait until every projection has applied @p position or faulted.
 * @return EVL_OK or #EVL_ETIMEDOUT. */
int evl_proj_wait_all(evl_proj_engine *eng, uint64_t position, int timeout_ms);

/** @brief Rebuild projection @p name from position 1 with its current
 * spec, without downtime.
 *
 * A shadow file is built by a thread of its own (no journal, no syncs: it
 * is rebuilt rather than recovered) while the old file keeps serving
 * queries and keeps being fed.  When the shadow reaches the head, the
 * projector catches it up once more, makes it durable and swaps it in by
 * renaming a symlink over `NAME.db`: a query sees the old table or the new
 * one, never a half-built one, and no event is applied twice or skipped
 * across the swap.  A rebuild whose new spec fails on an event leaves the
 * old table serving (status: rebuild_error).  A crash mid-rebuild leaves
 * the old file serving; the next start-up starts the rebuild again.
 * @return EVL_OK (started, or one already on its way), #EVL_ENOTFOUND, #EVL_ENOMEM. */
int evl_proj_rebuild(evl_proj_engine *eng, const char *name);

/** @brief Wait until no rebuild of @p name is pending or running.
 * @return EVL_OK (the last one swapped in, or there was none), #EVL_EFAULTED
 *   (the last one failed: see rebuild_error), #EVL_ETIMEDOUT, #EVL_ECLOSED, #EVL_ENOTFOUND. */
int evl_proj_rebuild_wait(evl_proj_engine *eng, const char *name, int timeout_ms);

/** @brief Read the spec files again (the built-ins and the options' dirs,
 * which must still be valid): a projection whose spec changed is rebuilt as
 * by evl_proj_rebuild(), a new file starts a new projection; one whose file
 * is gone keeps running until the engine is reopened.  What happens is
 * reported through the options' report function.
 * @param[out] changed how many projections were added or are rebuilding (may be NULL).
 * @return EVL_OK, #EVL_ENOMEM, EVL_ESYS(errno). */
int evl_proj_reload(evl_proj_engine *eng, size_t *changed);

/** @brief The SQLite file of projection @p name (borrowed), or NULL. */
const char *evl_proj_db_path(evl_proj_engine *eng, const char *name);

/** @brief Point-in-time replay: build @p spec's tables as they stood at
 * position @p until (0: before any event; past the head: the head) into the
 * standalone SQLite file @p out
 * (replaced if it exists; rollback-journal mode, readable by the stock
 * sqlite3 tool).  Runs in the calling thread; needs only a read view of the
 * log, so it works on a read-only handle beside a running evlogd.
 * @param[out] position the position the file reflects (may be NULL).
 * @param[out] err on failure, why (NUL-terminated, at most @p errlen).
 * @return EVL_OK, #EVL_ESQL (a handler failed: err names the event),
 *   #EVL_ENOMEM, EVL_ESYS(errno). */
int evl_proj_build(evl_log *log, const evl_proj_spec *spec, uint64_t until, const char *out,
                   uint64_t *position, char *err, size_t errlen);

/** Limits of a query. */
typedef struct evl_proj_query_opts {
    size_t max_rows;      /**< default 10000; more rows set "truncated": true */
    int timeout_ms;       /**< default 5000; then #EVL_ELIMIT */
} evl_proj_query_opts;

/** @brief Run one read-only SQL statement against a projection file.
 *
 * The connection is read-only, an authorizer refuses ATTACH, PRAGMA and
 * extension loading, a statement that would write is refused before it
 * runs, and a progress handler enforces the time limit.
 * @param[in] params a JSON object (named `:x`/`@x`/`$x` parameters, keys
 *   with or without the prefix) or array (positional `?`), or NULL.
 * @param[out] result `{"columns":[...],"rows":[[...],...],"position":CHECKPOINT,
 *   "truncated":false}`; the caller json_decref()s it.
 * @param[out] err a sentence on failure (NUL-terminated, at most @p errlen).
 * @return EVL_OK, #EVL_ESQL (does not prepare, or fails), #EVL_EWRITESQL,
 *   #EVL_ELIMIT, #EVL_ENOTFOUND (no such file), #EVL_EINVAL (bad params). */
int evl_proj_query_file(const char *db_path, const char *sql, const json_t *params,
                        const evl_proj_query_opts *opts, json_t **result, char *err,
                        size_t errlen);

/** A projection's content digest (evl_proj_digest_file()). */
typedef struct evl_proj_digest {
    uint64_t position;        /**< the checkpoint the tables stood at */
    uint64_t tables, rows;    /**< what was hashed */
    uint8_t hash[32];         /**< SHA-256 of the canonical encoding */
} evl_proj_digest;

/** @brief A content hash of a projection file's tables in a canonical order.
 *
 * Tables by name (leaving out `sqlite_*` and evlog's own `_evl_*` tables),
 * each with its column names, its rows ordered by primary key then every
 * other column, values typed (NULL, integer, real bits, text, blob): two
 * files with the same rows give the same hash whatever their pages or
 * rowids.  The encoding is documented in projections/digest.c and
 * docs/audit.md.  Read in one read transaction with the checkpoint.
 * @param[out] err a sentence on failure (NUL-terminated, at most @p errlen).
 * @return EVL_OK, #EVL_ENOTFOUND (no such file), #EVL_ESQL, #EVL_ENOMEM. */
int evl_proj_digest_file(const char *db_path, evl_proj_digest *out, char *err, size_t errlen);

/** @brief evl_proj_digest_file() on projection @p name of a running engine
 * (safe against a rebuild swapping the file, like evl_proj_query()). */
int evl_proj_digest_get(evl_proj_engine *eng, const char *name, evl_proj_digest *out, char *err,
                    size_t errlen);

/** @brief evl_proj_query_file() on projection @p name of a running engine. */
int evl_proj_query(evl_proj_engine *eng, const char *name, const char *sql,
                   const json_t *params, const evl_proj_query_opts *opts, json_t **result,
                   char *err, size_t errlen);

/** @brief The field-level history of one row of a `-- @history TABLE` table.
 *
 * Reads `_evl_history` in @p db_path (one snapshot with the checkpoint) and
 * the log's event at each position.
 * @param[in] log the log the projection is built from (a read-only handle is enough).
 * @param[in] key the row's PRIMARY KEY value as text (42, "job-1").
 * @param[in] column only the changes of this column, or NULL for all.
 * @param[out] out `{"table","key","column"?,"position": CHECKPOINT,"entries":[{"position",
 *   "op": "insert"|"update"|"delete","time","type","stream","actor","changes":[{"column","old",
 *   "new"},...]},...]}`, oldest first; an unknown key has no entries.  The caller json_decref()s it.
 * @param[out] err a sentence on failure.
 * @return EVL_OK, #EVL_ENOTFOUND (no such file, or the table keeps no history),
 *   #EVL_EINVAL (no such column), #EVL_ESQL, #EVL_ENOMEM, a log read error. */
int evl_proj_history_file(evl_log *log, const char *db_path, const char *table, const char *key,
                          const char *column, json_t **out, char *err, size_t errlen);

/** @brief evl_proj_history_file() on projection @p name of a running engine. */
int evl_proj_history(evl_proj_engine *eng, const char *name, const char *table, const char *key,
                     const char *column, json_t **out, char *err, size_t errlen);

/** Point-in-time queries: a cache of temporary replays (replay/asof.c). */
typedef struct evl_proj_asof evl_proj_asof;

typedef struct evl_proj_asof_stats {
    uint64_t hits, misses;      /**< queries answered from a kept build / that needed one */
    uint64_t builds;            /**< replays built */
    uint64_t evictions;         /**< kept builds deleted to stay within bounds */
    uint64_t entries, bytes;    /**< kept now */
} evl_proj_asof_stats;

/** @brief A cache of point-in-time builds in `DATA/asof/` (emptied now:
 * what a crash left there), for the projections of @p eng.
 * @param max_entries most builds kept (0: 1); @p max_bytes most bytes kept in all (0: no bound).
 * @param[out] out close it with evl_proj_asof_close() before the engine.
 * @return EVL_OK, #EVL_ENOMEM, EVL_ESYS(errno). */
int evl_proj_asof_open(evl_proj_engine *eng, size_t max_entries, uint64_t max_bytes, evl_proj_asof **out);

/** @brief Delete every kept build and the directory.  NULL is a no-op. */
void evl_proj_asof_close(evl_proj_asof *cache);

/** @brief evl_proj_query_file() against projection @p name as it stood at
 * @p position (past the head: the head), built with the spec its served
 * table is built with, as evl_proj_build() builds it; the build is kept for
 * the next query at the same position (key: name, spec hash, position).
 * The answer's "position" is the build's.  Thread-safe.
 * @param[out] cached 1 when a kept build answered.
 * @return as evl_proj_query_file(), and #EVL_ENOTFOUND (no such projection),
 *   #EVL_ESQL (a handler failed while building: err names the event). */
int evl_proj_asof_query(evl_proj_asof *cache, const char *name, uint64_t position, const char *sql,
                        const json_t *params, const evl_proj_query_opts *opts, json_t **result, int *cached,
                        char *err, size_t errlen);

/** @brief The cache's counters. */
void evl_proj_asof_stats_get(evl_proj_asof *cache, evl_proj_asof_stats *st);

#ifdef __cplusplus
}
#endif
#endif
