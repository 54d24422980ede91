/** @file log.h
 * @brief evlog: the durable event log (LMDB) — open, append, read, wait.
 *
 * @section intro Introduction
 * The log is one LMDB environment in `DATA/log/`.  Every event gets a global,
 * gap-free position (from 1), a revision within its stream (from 0), an id
 * (a UUID: the client's, or a generated UUIDv7) and a commit time in
 * nanoseconds that never decreases with position.  Each event is stored as
 * one msgpack map that any stock msgpack decoder reads (see log/format.c).
 *
 * Appends go through one writer thread that commits every pending append in
 * one LMDB transaction (group commit): with #EVL_SYNC_FULL one fsync
 * acknowledges a whole group, and an acknowledged append survives a crash.
 * A batch (one or more streams, one or more events) is atomic: it commits
 * entirely or not at all, and a failed batch never fails its neighbours in
 * the same group.
 *
 * @section caveats Caveats
 * - One process owns a data directory for writing (a lock on `DATA/LOCK`).
 *   Any number of processes may open it read-only alongside.
 * - An iterator holds an LMDB read transaction: it pins the pages it sees, so
 *   close iterators promptly and never keep one open while waiting for new
 *   events (evl_log_wait()).
 * - A reader process that dies inside a read transaction leaves its LMDB
 *   slot, which pins that snapshot; the writer clears such slots before a
 *   commit, at most once a second (evl_log_stats.stale_readers_cleared).
 * - Event views (#evl_event) point into the LMDB map: they stay valid only
 *   until the next evl_iter_next() or evl_iter_close() on their iterator.
 * - After a failed fsync or commit the log refuses further appends
 *   (#EVL_EREADONLY) until it is reopened: a write whose durability is
 *   unknown is never retried and acknowledged.
 */
#ifndef EVLOG_LOG_H
#define EVLOG_LOG_H

#include "evlog.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evl_log evl_log;
typedef struct evl_iter evl_iter;

/** @name Expected revisions
 * An expected revision is a number (the revision of the stream's last event)
 * or one of these words. @{ */
#define EVL_REV_ANY UINT64_MAX             /**< no check */
#define EVL_REV_NO_STREAM (UINT64_MAX - 1) /**< the stream must have no events */
#define EVL_REV_EXISTS (UINT64_MAX - 2)    /**< the stream must have events */
/** Reported as the current revision of a stream that has no events. */
#define EVL_REV_NONE EVL_REV_NO_STREAM
/** @} */

/** Limits on what an event may be. */
#define EVL_MAX_NAME 255          /**< stream and type names, bytes */
#define EVL_MAX_DEPTH 16          /**< msgpack nesting in data and meta */
#define EVL_DEFAULT_MAX_EVENT (1u << 20) /**< encoded event, bytes */
/** meta.actor and meta.correlation_id are indexed when they are strings of
 * 1..this many bytes (an LMDB key is at most 511); other values are stored
 * but not indexed, and a query for them is answered by a scan. */
#define EVL_MAX_META_INDEXED 255

typedef enum evl_sync {
    EVL_SYNC_FULL = 0, /**< fsync at every commit: an acknowledged append is durable */
    EVL_SYNC_NONE = 1  /**< flush every flush_interval_ms: a process crash or a power
                            cut on storage that keeps write order may lose the last
                            interval and never corrupts; a power cut on storage that
                            reorders writes can corrupt the log (LMDB's MDB_NOSYNC;
                            docs/reliability.md) */
} evl_sync;

/** Options for evl_log_open(); initialise with evl_log_options_init(). */
typedef struct evl_log_options {
    evl_sync sync;            /**< durability policy; default EVL_SYNC_FULL */
    unsigned flush_interval_ms; /**< EVL_SYNC_NONE flush period; default 100 */
    uint64_t map_size;        /**< LMDB map size in bytes; default 256 GiB (sparse) */
    size_t max_event_size;    /**< encoded event limit; default 1 MiB */
    unsigned max_readers;     /**< LMDB reader slots; default 1024 */
    size_t max_group_events;  /**< events per group commit at most; default 8192 */
    size_t journal_lap;       /**< past this many bytes the writer goes on at the start of
                                   the journal's other file (two files, written in turn),
                                   once LMDB holds every frame in it; default 16 MiB */
    unsigned applier_nice;    /**< the applier thread (which puts acknowledged groups
                                   into LMDB) runs this much nicer than its opener, at
                                   most 19, so that on busy CPUs acknowledgements come
                                   first; 0: the same priority; default 10 */
    unsigned apply_linger_ms; /**< EVL_SYNC_FULL: while nothing waits to see new events
                                   (no commit watcher, no evl_log_wait() caller), the
                                   applier lets this long pass between two LMDB commits
                                   so that each carries more events and writes fewer
                                   index pages per event.  Acknowledgements never wait
                                   for it (the journal makes appends durable), and a
                                   read or a waiter makes it commit at once, so reads
                                   still see every acknowledged append; only another
                                   process reading the log sees events up to this much
                                   later.  0: commit as soon as a group is durable;
                                   default 100 */
    int read_only;            /**< open without the writer (no lock, no appends) */
} evl_log_options;

/** @brief Fill @p opt with the defaults. */
void evl_log_options_init(evl_log_options *opt);

/** @brief Open (creating if needed, unless read-only) the log of data dir @p dir.
 *
 * Creates `dir/` and `dir/log/`, takes the data-dir lock (unless read-only),
 * clears stale LMDB reader slots, and starts the writer thread.
 * @param[in] dir the data directory (the log lives in `dir/log/`).
 * @param[in] opt options, or NULL for the defaults.
 * @param[out] out the new handle; the caller closes it with evl_log_close().
 * @return EVL_OK, or
 * - #EVL_EBUSY another process holds the data directory;
 * - #EVL_ENOTFOUND read-only open of a directory that has no log;
 * - #EVL_EVERSION the log was written by an incompatible format;
 * - #EVL_EFULL, #EVL_ENOMEM, EVL_ESYS(errno) from the file system or LMDB.
 */
int evl_log_open(const char *dir, const evl_log_options *opt, evl_log **out);

/** @brief Stop the writer (pending appends complete first), close LMDB and
 * release the lock.  Iterators must be closed before. NULL is a no-op. */
void evl_log_close(evl_log *log);

/* ------------------------------------------------------------------ append */

/** One event to append.  Pointers are borrowed for the duration of the call. */
typedef struct evl_event_in {
    const char *type;       /**< NUL-terminated, 1..255 bytes printable UTF-8 */
    const uint8_t *id;      /**< 16 bytes, or NULL to generate a UUIDv7 */
    const void *data;       /**< msgpack map, or NULL for an empty map */
    size_t data_len;
    const void *meta;       /**< msgpack map, or NULL for no meta (an empty map) */
    size_t meta_len;
} evl_event_in;

/** The events of one stream within a batch, and the stream's expectation. */
typedef struct evl_stream_in {
    const char *stream;     /**< NUL-terminated, 1..255 bytes printable UTF-8 */
    uint64_t expected;      /**< a revision or EVL_REV_ANY / _NO_STREAM / _EXISTS */
    const evl_event_in *events;
    size_t n_events;        /**< at least 1 */
} evl_stream_in;

/** What the log says about one appended event. */
typedef struct evl_ack {
    uint64_t position;
    uint64_t revision;
    uint8_t id[16];
} evl_ack;

/** The outcome of one append. */
typedef struct evl_append_result {
    int err;                /**< EVL_OK or why the batch was refused */
    int idempotent;         /**< 1: every id was already in the log; the acks are the
                                 original positions and nothing was written */
    size_t stream_index;    /**< with err: the offending stream (index into the batch) */
    size_t event_index;     /**< with err about one event: its index in the whole batch */
    uint64_t current_revision; /**< with EVL_ECONFLICT: that stream's revision now,
                                    EVL_REV_NONE when it has no events */
    size_t n_acks;          /**< events in the batch */
    evl_ack *acks;          /**< one per event, in batch order (streams, then events) */
} evl_append_result;

/** @brief Append a batch atomically and wait for its commit.
 *
 * @param[in] streams the batch: @p n_streams streams, each with its events.
 * @param[out] res the outcome; the caller frees `res->acks` with evl_free()
 *   (it is NULL when the batch was refused before reaching the writer).
 * @return the same code as `res->err`:
 * EVL_OK; #EVL_ECONFLICT (res->stream_index, res->current_revision);
 * #EVL_ESTREAM, #EVL_ETYPE, #EVL_EID, #EVL_EDATA, #EVL_EMETA, #EVL_ETOOBIG,
 * #EVL_EMSGPACK, #EVL_EDEPTH, #EVL_EUTF8 (res->event_index names the event);
 * #EVL_EEMPTY; #EVL_EDUPSTREAM; #EVL_EDUPID, #EVL_EIDMIX, #EVL_EIDREUSE;
 * #EVL_EFULL (nothing of the batch written); #EVL_EREADONLY; #EVL_ERDONLY;
 * #EVL_ECLOSED; #EVL_ENOMEM; EVL_ESYS(errno).
 * @note Thread-safe: any number of threads may append concurrently; that is
 *   what makes group commit pay.
 */
int evl_log_append(evl_log *log, const evl_stream_in *streams, size_t n_streams,
                   evl_append_result *res);

/** Completion callback of evl_log_append_async().  It runs on the writer
 * thread: keep it short (signal another thread).  @p res and its acks are
 * borrowed for the duration of the call. */
typedef void (*evl_append_cb)(void *arg, const evl_append_result *res);

/** @brief Append without waiting: the batch is validated and copied before
 * this returns, so the caller may free its inputs at once.
 * @return EVL_OK when queued (@p cb will be called exactly once), or a
 *   validation error (then @p cb is never called).
 */
int evl_log_append_async(evl_log *log, const evl_stream_in *streams, size_t n_streams,
                         evl_append_cb cb, void *arg);

/* ------------------------------------------------------------------- read */

/** A borrowed view of a stored event: valid until the next evl_iter_next()
 * or evl_iter_close() on the iterator that produced it. */
typedef struct evl_event {
    uint64_t position;
    uint64_t revision;
    int64_t time_ns;           /**< commit time, ns since the Unix epoch, UTC */
    uint8_t id[16];
    const char *stream;        /**< not NUL-terminated */
    size_t stream_len;
    const char *type;          /**< not NUL-terminated */
    size_t type_len;
    const uint8_t *data;       /**< msgpack map */
    size_t data_len;
    const uint8_t *meta;       /**< msgpack map */
    size_t meta_len;
    const uint8_t *raw;        /**< the whole stored record */
    size_t raw_len;
    const uint8_t *chain;      /**< its hash-chain value (#EVL_CHAIN_LEN bytes), NULL in
                                    a record from before the chain (see evl_log_digest()) */
} evl_event;

/** What to read.  Zero-initialise, then set what you need; all filters
 * combine (AND).  One index serves the query and the other filters are
 * checked per event: the stream index when @c stream is set, else the one
 * of the type, category, actor and correlation indexes that holds the
 * fewest events under the key asked for, else the whole log in position
 * order.  Whatever the index, events come in position order.
 *
 * The actor and correlation indexes exist in every log a writer has opened
 * since they were introduced (opening read-write creates and fills them).
 * A read-only handle on an older log that lacks them still answers @c actor
 * and @c correlation_id, by scanning the log (slower, same events). */
typedef struct evl_query {
    const char *stream;        /**< only this stream */
    const char *type;          /**< only this event type */
    const char *category;      /**< only streams whose category (text before the
                                    first '-') is this */
    const char *actor;         /**< only events whose meta.actor is this string */
    const char *correlation_id; /**< only events whose meta.correlation_id is this string */
    uint64_t from_position;    /**< first position (forward) or last (backward); 0 = start/end */
    uint64_t until_position;   /**< stop after this position (forward); 0 = head */
    uint64_t from_revision;    /**< with stream: first revision to read (backward: last);
                                    EVL_REV_ANY = the end when backward */
    int64_t since_ns;          /**< only events with time >= since_ns (0 = no bound) */
    int64_t until_ns;          /**< only events with time <= until_ns (0 = no bound) */
    int backward;              /**< newest first */
    uint64_t limit;            /**< at most this many events; 0 = no limit */
} evl_query;

/** @brief Open an iterator over the events @p q selects.
 * @param[out] out the iterator; the caller closes it with evl_iter_close().
 * @return EVL_OK, #EVL_ENOMEM, #EVL_EINVAL, or an LMDB error.  A stream with
 *   no events gives an iterator that yields nothing. */
int evl_iter_open(evl_log *log, const evl_query *q, evl_iter **out);

/** @brief Next event.
 * @return EVL_OK (@p ev filled), #EVL_END, or #EVL_ECORRUPT when a record
 *   fails its CRC or does not decode (the iterator stays usable only for close). */
int evl_iter_next(evl_iter *it, evl_event *ev);

/** @brief Close an iterator and end its read transaction. NULL is a no-op. */
void evl_iter_close(evl_iter *it);

/** @brief Copy the stored record at @p position.
 * @param[out] raw a copy of the msgpack record; the caller frees it with evl_free().
 * @return EVL_OK, #EVL_ENOTFOUND, #EVL_ECORRUPT. */
int evl_log_get(evl_log *log, uint64_t position, uint8_t **raw, size_t *len);

/** @brief Decode a stored record into a view pointing into @p raw, checking its CRC.
 * @return EVL_OK or #EVL_ECORRUPT. */
int evl_log_decode(const uint8_t *raw, size_t len, evl_event *ev);

/** @brief The revision of @p stream's last event.
 * @return EVL_OK, or #EVL_ENOTFOUND when the stream has no events. */
int evl_log_stream_revision(evl_log *log, const char *stream, uint64_t *revision);

/** @brief The last committed position (0 for an empty log).  For a read-only
 * handle this reads LMDB, so it sees another process's commits. */
uint64_t evl_log_head(evl_log *log);

/** @brief The first position whose commit time is >= @p time_ns (through the
 * time index), or head+1 when there is none. */
int evl_log_position_at(evl_log *log, int64_t time_ns, uint64_t *position);

/** @brief Block until the head passes @p after, the timeout expires, or the log closes.
 * Holds no read transaction while it waits.  A read-only handle watches the
 * log file for another process's commits (inotify).
 * @param[in] timeout_ms -1 waits for ever.
 * @param[out] head the head when it returns (may be NULL).
 * @return EVL_OK (head > after), #EVL_ETIMEDOUT, #EVL_ECLOSED. */
int evl_log_wait(evl_log *log, uint64_t after, int timeout_ms, uint64_t *head);

/** Commit notification: runs on the writer thread after each commit, with the
 * new head.  Keep it short (event_active(), a write to an eventfd). */
typedef void (*evl_commit_cb)(void *arg, uint64_t head);

/** @brief Register @p cb for commit notifications.  Wakeups may merge: a
 * listener re-reads from its own position, it never counts calls.
 * @return EVL_OK or #EVL_ENOMEM. */
int evl_log_watch(evl_log *log, evl_commit_cb cb, void *arg);
/** @brief Remove a registration made by evl_log_watch() (same cb and arg);
 * when it returns the callback is not running and will not run again. */
void evl_log_unwatch(evl_log *log, evl_commit_cb cb, void *arg);

/* ------------------------------------------------------------ inspection */

/** Commit-duration histogram: upper bounds in microseconds of its buckets
 * (the last bucket, one more, is +Inf). */
#define EVL_COMMIT_BUCKETS 14
#define EVL_COMMIT_BOUNDS_US {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, \
                              100000, 250000, 500000, 1000000, 2500000}

typedef struct evl_log_stats {
    uint64_t head;             /**< last position */
    uint64_t streams;          /**< streams with events */
    uint64_t types;            /**< distinct event types */
    uint64_t categories;       /**< distinct categories */
    uint64_t map_size;         /**< LMDB map size, bytes */
    uint64_t used_bytes;       /**< pages in use x page size */
    uint64_t file_bytes;       /**< size of data.mdb on disk (sparse: what is allocated) */
    int64_t first_time_ns, last_time_ns;
    uint64_t readers;          /**< LMDB reader slots in use now (all processes) */
    /* Since open, this process (zero for read-only handles): */
    uint64_t groups;           /**< group commits: journal frames written, acknowledging
                                    their appends (EVL_SYNC_FULL: once synced; one fsync
                                    may cover several frames written meanwhile) */
    uint64_t commits;          /**< LMDB write transactions committed by the applier,
                                    each holding one or more groups */
    uint64_t appends;          /**< batches acknowledged */
    uint64_t appended_events;
    uint64_t appended_bytes;
    uint64_t conflicts;
    uint64_t syncs;            /**< fsyncs made by the writer (commit or flush) */
    uint64_t commit_us[EVL_COMMIT_BUCKETS + 1]; /**< group commits per duration bucket (from
                                                     the journal write to the end of the
                                                     fsync that covers it: what an appender
                                                     waits for; not cumulative) */
    uint64_t commit_us_sum;    /**< total group commit time, microseconds */
    int read_only_error;       /**< non-zero: the failure that made the log read-only */
    uint64_t stale_readers_cleared; /**< reader slots of dead processes cleared by the writer */
} evl_log_stats;

/** @brief Fill @p st. */
int evl_log_stats_get(evl_log *log, evl_log_stats *st);

/** @name Hash chain (tamper evidence)
 * Every record carries its link in a SHA-256 hash chain over positions:
 * h_0 is 32 zero bytes and h_n = SHA-256(h_{n-1} || the bytes of record n
 * after its chain value and before its crc trailer); see log/format.c and
 * docs/audit.md.  h_n, the digest at position n, stands for the whole log
 * up to n: an auditor who wrote it down can later show that positions 1..n
 * were not rewritten (evl_log_verify() recomputes the chain, and the digest
 * at n must still be the recorded one).  Records from before the chain have
 * no chain value; the chain then starts after them, from 32 zero bytes.
 * @{ */
#define EVL_CHAIN_LEN 32

/** The chain head at one position. */
typedef struct evl_digest {
    uint64_t position;
    uint8_t hash[EVL_CHAIN_LEN];
} evl_digest;

/** @brief The digest (h_n) at position @p at, or at the head when @p at is 0.
 * It is the chain value stored in that record; evl_log_verify() is what
 * recomputes the chain from the records.
 * @return EVL_OK; #EVL_ENOTFOUND when the log is empty, @p at is past the head,
 *   or that record predates the chain; #EVL_ECORRUPT; an LMDB error. */
int evl_log_digest(evl_log *log, uint64_t at, evl_digest *out);
/** @} */

/** Called by evl_log_verify() as it goes; return non-zero to stop. */
typedef int (*evl_verify_progress)(void *arg, uint64_t done, uint64_t total);

/** @brief Check the whole log: positions gap-free from 1, every record decodes
 * and passes its CRC, the hash chain recomputes to every record's stored
 * value (the first position whose content no longer matches is named; a
 * record without a chain value after a chained one breaks it too), times
 * non-decreasing, each stream's revisions contiguous
 * from 0, and every index entry (streams, heads, ids, types, categories,
 * actors, correlations, times) consistent with the records, in both directions.
 * @param[out] problem on #EVL_ECORRUPT a sentence naming the first problem
 *   found (position, stream, index); at most @p problem_len bytes, NUL-terminated.
 * @param[out] n_events number of events checked (may be NULL).
 * @return EVL_OK, #EVL_ECORRUPT, or an I/O error. */
int evl_log_verify(evl_log *log, char *problem, size_t problem_len, uint64_t *n_events,
                   evl_verify_progress progress, void *arg);

/** @brief Hot backup: a consistent, compacted copy of the log into
 * `dest/log/` (mdb_env_copy2 with MDB_CP_COMPACT), taken from one read
 * snapshot while appends go on.  `dest` is created; `dest/log` must not hold
 * a log already.  Restoring is opening `dest` as a data directory.
 * @param[out] head the last position in the copy (may be NULL).
 * @return EVL_OK, #EVL_EBUSY (dest already has a log), EVL_ESYS(errno). */
int evl_log_backup(evl_log *log, const char *dest, uint64_t *head);

/** @brief The directory this log was opened on (borrowed). */
const char *evl_log_dir(const evl_log *log);

/* ------------------------------------------------------------- helpers */

/** @brief Check a stream or type name: 1..255 bytes, valid UTF-8, no control
 * characters.  @return EVL_OK or EVL_EINVAL. */
int evl_name_check(const char *s, size_t len);

/** @brief The category of a stream: the bytes before the first '-', or the
 * whole name when it has none.  @return its length (a prefix of @p stream). */
size_t evl_stream_category(const char *stream, size_t len);

/** @brief Generate a UUIDv7 (time-ordered, random tail). */
void evl_uuid_v7(uint8_t out[16]);
/** @brief Generate @p n UUIDv7s (same millisecond, independent random
 * tails) with one read of the kernel's random source per 25 ids. */
void evl_uuid_v7_n(uint8_t (*out)[16], size_t n);
/** @brief Format as 36 chars + NUL, lower-case hex. */
void evl_uuid_format(const uint8_t id[16], char out[37]);
/** @brief Parse the 36-char form (or 32 hex digits). @return EVL_OK or #EVL_EID. */
int evl_uuid_parse(const char *s, size_t len, uint8_t out[16]);

/** @brief Format ns since the epoch as ISO-8601 UTC, e.g.
 * "2026-11-23T10:30:00.123456789Z" (@p digits fraction digits: 0, 3, 6 or 9).
 * @return the length written (out needs 40 bytes). */
size_t evl_time_format(int64_t ns, int digits, char out[40]);
/** @brief Parse ISO-8601 / RFC 3339 ("2026-11-23T10:30:00Z", fractions,
 * "+02:00" offsets, or a date alone) into ns since the epoch.
 * @return EVL_OK or #EVL_EINVAL (malformed, or outside what int64
 *   nanoseconds hold: 1677-09-21 .. 2262-04-11). */
int evl_time_parse(const char *s, size_t len, int64_t *ns);

#ifdef __cplusplus
}
#endif
#endif
