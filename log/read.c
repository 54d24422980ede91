/* The read side: iterators over the whole log or one of its indexes, point
 * reads, the head, the time index, and waiting for new commits.
 *
 * An iterator owns one read transaction for its whole life.  Waiting never
 * happens inside one: evl_log_wait() holds no transaction, so a slow or idle
 * reader cannot pin old pages and make the file grow. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log/log_int.h"

enum { SRC_ALL, SRC_STREAM, SRC_INDEX };
/* Filters that a DUPSORT index (key -> be64 position) can serve. */
enum { F_TYPE, F_CAT, F_ACTOR, F_CORR, N_FILTERS };

/* The part of the map an iterator has read records from, given back to the
 * kernel in batches.  A rebuild or an export walks the whole log through
 * LMDB's read-only shared map, and every page it touched would stay mapped
 * into the process: resident memory as large as the log, although those
 * pages are clean page cache.  MADV_DONTNEED on a shared file mapping only
 * unmaps them (the page cache keeps them; the next access, ours or
 * another thread's, maps them again), so a long scan's resident set stays
 * about one batch.
 *
 * A fault does not map one page: the kernel maps the pages around it that
 * are cached too (fault-around, and whole large folios), and between the
 * events table's pages lie the indexes'.  Dropping only the pages records
 * were read from left those neighbours mapped: a full scan's RssFile still
 * grew by a fifth of the log (129 MB for a 632 MB log, 45 MB for 191 MB).
 * So the dropper keeps a window, from the lowest to the highest address
 * read since the last batch, and drops all of it: the neighbours go too,
 * and a window over pages already dropped costs the kernel only a walk
 * over empty page tables.  One madvise per batch instead of one per run of
 * pages (~250 instead of ~100k per million events, each a TLB flush and,
 * with other threads in the process, an IPI to every CPU they ran on).
 *
 * The window's low end goes down to a 2 MiB boundary (a large folio's
 * pages below the first record read) but its high end stops at the last
 * page read: what lies ahead is still to be read.  Addresses of pages
 * never read that fall in the window (other tables) are dropped too;
 * whoever uses them faults them back.  The window is clamped to LMDB's
 * map: MADV_DONTNEED on anonymous memory next to it would zero it. */
/* A walk of the whole events table drops batches of 8 MiB: each madvise
 * costs a TLB flush on every CPU the process ran on, and at 2 MiB those
 * were a fifth of a full scan's time (bench/rebuild --set none, 1M events:
 * 1.6-1.9M events/s at 2 MiB, 2.1-2.3M at 8 MiB, 2.2-2.5M at 16 MiB, with
 * RssFile peaks of ~50, ~70 and ~100 MB).  An index-fed walk (a projector's
 * typed reading) keeps 2 MiB: its records are sparse, so the pages the
 * kernel maps around them fill an address range several times as wide as
 * what was read (8 MiB there took the core projections' rebuild from ~150
 * to ~290 MB of RssFile at 3M events). */
#define DROP_PAGES_SEQ 2048
#define DROP_PAGES 512
#define DROP_ALIGN (2 * 1024 * 1024)

typedef struct dropper {
    uintptr_t map_lo, map_hi;       /* LMDB's map; map_hi 0: not known yet */
    uintptr_t lo, hi;               /* the window [lo, hi); hi 0: none yet */
    uintptr_t plo, phi;             /* the batch before, not yet dropped */
    uintptr_t last;                 /* the page noted last */
    size_t pages;                   /* pages read since the last batch */
    size_t batch;                   /* pages per batch: DROP_PAGES_SEQ or DROP_PAGES */
} dropper;

static void drop_range(uintptr_t lo, uintptr_t hi) {
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* A batch is dropped one batch late: the engine reads a projection's
 * types through one iterator each, merged by position, and what one has
 * just read lies among the pages the others are about to read.  Dropped at
 * once, they would fault them back. */
static void drop_flush(dropper *d) {
    drop_range(d->plo, d->phi);
    d->plo = d->lo;
    d->phi = d->hi;
    /* the next window starts where this one ended: what the last faults
     * mapped beyond it (the rest of a folio) is in the next one */
    d->lo = d->hi;
    d->pages = 0;
}

/* At close: the batch before, and the pages read since when they are many
 * (a projector's typed iterators each read a few thousand scattered
 * records per batch and are closed before their window fills).  A short
 * read (an HTTP page of events) leaves its few pages: a madvise per request
 * would cost more than they do. */
#define DROP_CLOSE_PAGES 64
static void drop_close(dropper *d) {
    drop_range(d->plo, d->phi);
    if (d->pages >= DROP_CLOSE_PAGES) drop_range(d->lo, d->hi);
}

/* The mapping that holds @p p, from /proc/self/maps (LMDB does not say
 * where its map is: mdb_env_info's address is only set with MDB_FIXEDMAP).
 * Asked once per iterator, at its first batch: short reads never pay. */
static int map_around(uintptr_t p, uintptr_t *lo, uintptr_t *hi) {
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    int found = 0;
    if (!f) return 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && p >= a && p < b) {
            *lo = a;
            *hi = b;
            found = 1;
        }
        /* a line longer than the buffer: skip its rest */
        while (!strchr(line, '\n') && fgets(line, sizeof line, f)) {}
    }
    fclose(f);
    return found;
}

static void drop_note(dropper *d, const void *p, size_t len, size_t pg) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    uintptr_t end = (((uintptr_t)p + (len ? len : 1) - 1) & ~(uintptr_t)(pg - 1)) + pg;
    if (a == d->last && end == a + pg) return; /* most records share the page of the one before */
    d->last = a;
    d->pages += (end - a) / pg;
    if (!d->hi) {
        d->lo = a;
        d->hi = end;
    } else {
        if (a < d->lo) d->lo = a;
        if (end > d->hi) d->hi = end;
    }
    if (d->pages < (d->batch ? d->batch : DROP_PAGES)) return;
    if (!d->map_hi && !map_around(a, &d->map_lo, &d->map_hi)) d->map_lo = d->map_hi = 1;
    /* without the map's bounds, the window itself (pages read) is all that is known to be the map's */
    uintptr_t lo = d->lo & ~(uintptr_t)(DROP_ALIGN - 1);
    if (lo >= d->map_lo && d->hi <= d->map_hi) d->lo = lo;
    drop_flush(d);
}

/* A hint, for a forward walk over the events table: LMDB fills a leaf page
 * from its end downwards, so with positions appended in order the next
 * record (its node header, key and value) lies just below this one's node
 * (8-byte header and 8-byte key before the value).  Asking for those cache
 * lines now overlaps their misses with the work on this record: a scan was
 * otherwise waiting on memory in the cursor step and the CRC's first reads.
 * A wrong guess (the page's last record, an overflow page) costs a few
 * useless prefetches; it never reads anything. */
#define PREFETCH_BELOW 1024

static inline void prefetch_next(const void *rec, size_t pg) {
    uintptr_t node = (uintptr_t)rec - 16, lo = node & ~(uintptr_t)(pg - 1);
    if (node < lo + 64) return;
    if (node - lo > PREFETCH_BELOW) lo = node - PREFETCH_BELOW;
    for (uintptr_t a = (node - 1) & ~(uintptr_t)63; a >= lo; a -= 64) __builtin_prefetch((const void *)a);
}

typedef struct filter {
    char *s;              /* NULL: not asked for */
    size_t len;
} filter;

struct evl_iter {
    evl_log *log;
    MDB_txn *txn;
    MDB_cursor *cur;      /* over the source: events, streams, or f[by]'s index */
    MDB_cursor *rec;      /* over events, for the records an index names (NULL until needed) */
    int src, by;
    int started, done, backward;
    uint64_t lo, hi;      /* position bounds, inclusive */
    uint64_t from_rev;
    uint64_t limit, count;
    char *stream;
    size_t stream_len;
    filter f[N_FILTERS];
    dropper drop;
    dropper idrop;              /* the index's pages, for a stream or an index source */
};

uint64_t evl__head_from_txn(evl_log *log, MDB_txn *txn) {
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t head = 0;
    if (mdb_cursor_open(txn, log->db_events, &c)) return 0;
    if (mdb_cursor_get(c, &k, &v, MDB_LAST) == 0 && k.mv_size == 8) head = evl__get_be64(k.mv_data);
    mdb_cursor_close(c);
    return head;
}

uint64_t evl_log_head(evl_log *log) {
    if (!log->opt.read_only) {
        evl__read_barrier(log);
        return atomic_load(&log->head);
    }
    MDB_txn *txn;
    if (mdb_txn_begin(log->env, NULL, MDB_RDONLY, &txn)) return 0;
    uint64_t head = evl__head_from_txn(log, txn);
    mdb_txn_abort(txn);
    return head;
}

static int position_at(evl_log *log, MDB_txn *txn, int64_t t, uint64_t *pos) {
    MDB_cursor *c;
    uint8_t tk[8];
    evl__put_be64(tk, t < 0 ? 0 : (uint64_t)t);
    MDB_val k = {8, tk}, v;
    int rc = mdb_cursor_open(txn, log->db_times, &c);
    if (rc) return evl__lmdb_err(rc);
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0) *pos = evl__get_be64(v.mv_data);
    else if (rc == MDB_NOTFOUND) *pos = evl__head_from_txn(log, txn) + 1;
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? EVL_OK : evl__lmdb_err(rc);
}

int evl_log_position_at(evl_log *log, int64_t time_ns, uint64_t *position) {
    MDB_txn *txn;
    evl__read_barrier(log);
    int rc = mdb_txn_begin(log->env, NULL, MDB_RDONLY, &txn);
    if (rc) return evl__lmdb_err(rc);
    rc = position_at(log, txn, time_ns, position);
    mdb_txn_abort(txn);
    return rc;
}

static char *dup_str(const char *s, size_t *len) {
    *len = strlen(s);
    char *d = evl_malloc(*len + 1);
    if (d) memcpy(d, s, *len + 1);
    return d;
}

void evl_iter_close(evl_iter *it) {
    if (!it) return;
    drop_close(&it->drop);
    drop_close(&it->idrop);
    if (it->cur) mdb_cursor_close(it->cur);
    if (it->rec) mdb_cursor_close(it->rec);
    if (it->txn) mdb_txn_abort(it->txn);
    evl_free(it->stream);
    for (int f = 0; f < N_FILTERS; f++) evl_free(it->f[f].s);
    evl_free(it);
}

static MDB_dbi filter_dbi(const evl_log *log, int f) {
    switch (f) {
    case F_TYPE: return log->db_types;
    case F_CAT: return log->db_cats;
    case F_ACTOR: return evl__meta_dbi(log, 0);
    default: return evl__meta_dbi(log, 1);
    }
}

/* How many events f's index holds under its key, through @p c (left on
 * that key): 0 when none, UINT64_MAX when the index cannot serve f. */
static uint64_t index_count(evl_iter *it, int f, MDB_cursor **c) {
    const filter *fl = &it->f[f];
    int meta = f == F_ACTOR || f == F_CORR;
    /* Longer audit values are stored unindexed (meta_idx.c): scan for them.
     * No type or category is longer than a name: nothing can match. */
    size_t max = meta ? EVL_MAX_META_INDEXED : EVL_MAX_NAME;
    if (!fl->s || (meta && !it->log->has_meta_idx)) return UINT64_MAX;
    if (fl->len == 0 || fl->len > max) return meta ? UINT64_MAX : 0;
    MDB_val k = {fl->len, fl->s}, v;
    size_t n = 0;
    if (mdb_cursor_open(it->txn, filter_dbi(it->log, f), c)) return UINT64_MAX;
    if (mdb_cursor_get(*c, &k, &v, MDB_SET_KEY) || mdb_cursor_count(*c, &n)) n = 0;
    return (uint64_t)n;
}

/* Pick the source: the stream's index, else the filter index with the
 * fewest entries under its key (one O(1) count each), else the log. */
static int choose_source(evl_iter *it) {
    if (it->stream) {
        it->src = SRC_STREAM;
        if (it->f[F_CAT].s) {
            size_t cl = evl_stream_category(it->stream, it->stream_len);
            if (cl != it->f[F_CAT].len || memcmp(it->stream, it->f[F_CAT].s, cl)) it->done = 1;
        }
        return evl__lmdb_err(mdb_cursor_open(it->txn, it->log->db_streams, &it->cur));
    }
    uint64_t best = UINT64_MAX;
    for (int f = 0; f < N_FILTERS; f++) {
        MDB_cursor *c = NULL;
        uint64_t n = index_count(it, f, &c);
        if (n < best) {
            if (it->cur) mdb_cursor_close(it->cur);
            it->cur = c;
            it->by = f;
            best = n;
        } else if (c) {
            mdb_cursor_close(c);
        }
    }
    if (best == 0) it->done = 1; /* an index says no event has that key */
    if (best != UINT64_MAX) {
        it->src = SRC_INDEX;
        return it->cur ? EVL_OK : evl__lmdb_err(mdb_cursor_open(it->txn, filter_dbi(it->log, it->by), &it->cur));
    }
    it->src = SRC_ALL;
    it->drop.batch = DROP_PAGES_SEQ;
    return evl__lmdb_err(mdb_cursor_open(it->txn, it->log->db_events, &it->cur));
}

int evl_iter_open(evl_log *log, const evl_query *q, evl_iter **out) {
    int rc;
    evl_iter *it = evl_calloc(1, sizeof *it);
    *out = NULL;
    if (!it) return EVL_ENOMEM;
    it->log = log;
    it->backward = q->backward;
    it->limit = q->limit;
    it->from_rev = q->from_revision;
    const char *fs[N_FILTERS] = {q->type, q->category, q->actor, q->correlation_id};
    rc = q->stream && !(it->stream = dup_str(q->stream, &it->stream_len)) ? EVL_ENOMEM : EVL_OK;
    for (int f = 0; f < N_FILTERS && !rc; f++)
        if (fs[f] && !(it->f[f].s = dup_str(fs[f], &it->f[f].len))) rc = EVL_ENOMEM;
    if (rc) goto fail;
    if (it->stream && it->stream_len > EVL_MAX_NAME) it->done = 1; /* no such stream can exist */
    evl__read_barrier(log);
    if ((rc = evl__lmdb_err(mdb_txn_begin(log->env, NULL, MDB_RDONLY, &it->txn)))) goto fail;
    uint64_t head = evl__head_from_txn(log, it->txn);
    /* A writer's own readers see what has been acknowledged, nothing beyond. */
    if (!log->opt.read_only && atomic_load(&log->durable) < head) head = atomic_load(&log->durable);
    it->lo = 1;
    it->hi = head;
    if (q->until_position && q->until_position < it->hi) it->hi = q->until_position;
    if (q->from_position) {
        if (q->backward) { if (q->from_position < it->hi) it->hi = q->from_position; }
        else if (q->from_position > it->lo) it->lo = q->from_position;
    }
    if (q->since_ns) {
        uint64_t p;
        if ((rc = position_at(log, it->txn, q->since_ns, &p))) goto fail;
        if (p > it->lo) it->lo = p;
    }
    if (q->until_ns) {
        uint64_t p;
        if ((rc = position_at(log, it->txn, q->until_ns + 1, &p))) goto fail;
        if (p - 1 < it->hi) it->hi = p - 1;
    }
    if (it->lo > it->hi) it->done = 1;
    if ((rc = choose_source(it))) goto fail;
    *out = it;
    return EVL_OK;
fail:
    evl_iter_close(it);
    return rc;
}

/* Position the source cursor on its first entry (in iteration order) and
 * return the position it names, or 0 at the end. */
static int src_first(evl_iter *it, uint64_t *pos, MDB_val *rec) {
    MDB_val k, v;
    uint8_t pk[8];
    int rc;
    switch (it->src) {
    case SRC_ALL:
        evl__put_be64(pk, it->backward ? it->hi : it->lo);
        k.mv_size = 8;
        k.mv_data = pk;
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);
        if (it->backward) {
            if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST);
            else if (rc == 0 && evl__get_be64(k.mv_data) > it->hi)
                rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV);
        }
        if (rc == 0) { *pos = evl__get_be64(k.mv_data); *rec = v; }
        return rc;
    case SRC_STREAM: {
        /* entries are (revision, position) under the stream's key */
        uint64_t rev = it->from_rev;
        if (it->backward && rev == EVL_REV_ANY) rev = UINT64_MAX;
        if (!it->backward && rev >= EVL_REV_EXISTS) rev = 0;
        uint8_t seek[16];
        evl__stream_entry(seek, rev, it->backward ? UINT64_MAX : 0);
        k.mv_size = it->stream_len;
        k.mv_data = it->stream;
        v.mv_size = 16;
        v.mv_data = seek;
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_GET_BOTH_RANGE);
        if (it->backward) {
            if (rc == MDB_NOTFOUND) {
                rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_KEY);
                if (rc == 0) rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST_DUP);
            } else if (rc == 0 && evl__get_be64(v.mv_data) > rev) {
                rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV_DUP);
            }
        }
        if (rc == 0) *pos = evl__get_be64((uint8_t *)v.mv_data + 8);
        return rc;
    }
    default: { /* SRC_INDEX: a DUPSORT list of positions under one key */
        k.mv_size = it->f[it->by].len;
        k.mv_data = it->f[it->by].s;
        evl__put_be64(pk, it->backward ? it->hi : it->lo);
        v.mv_size = 8;
        v.mv_data = pk;
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_GET_BOTH_RANGE);
        if (it->backward) {
            if (rc == MDB_NOTFOUND) {
                rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_KEY);
                if (rc == 0) rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST_DUP);
            } else if (rc == 0 && evl__get_be64(v.mv_data) > it->hi) {
                rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV_DUP);
            }
        }
        if (rc == 0) *pos = evl__get_be64(v.mv_data);
        return rc;
    }
    }
}

static int src_next(evl_iter *it, uint64_t *pos, MDB_val *rec) {
    MDB_val k, v;
    int rc;
    switch (it->src) {
    case SRC_ALL:
        rc = mdb_cursor_get(it->cur, &k, &v, it->backward ? MDB_PREV : MDB_NEXT);
        if (rc == 0) { *pos = evl__get_be64(k.mv_data); *rec = v; }
        return rc;
    case SRC_STREAM:
        rc = mdb_cursor_get(it->cur, &k, &v, it->backward ? MDB_PREV_DUP : MDB_NEXT_DUP);
        if (rc == 0) *pos = evl__get_be64((uint8_t *)v.mv_data + 8);
        break;
    default:
        rc = mdb_cursor_get(it->cur, &k, &v, it->backward ? MDB_PREV_DUP : MDB_NEXT_DUP);
        if (rc == 0) *pos = evl__get_be64(v.mv_data);
        break;
    }
    /* a long walk of an index maps its pages as the events' do */
    if (rc == 0) drop_note(&it->idrop, v.mv_data, v.mv_size, it->log->os_page);
    return rc;
}

/* Is meta[evl__meta_keys[i]] the string @p want? */
static int meta_is(const evl_event *ev, int i, const filter *want) {
    evl_mp m;
    evl_mp_val v;
    const evl_meta_key *k = &evl__meta_keys[i];
    return evl_mp_map_find(ev->meta, ev->meta_len, k->key, k->len, &m) == EVL_OK &&
           evl_mp_read(&m, &v) == EVL_OK && v.kind == EVL_MP_STR && v.v.s.len == want->len &&
           memcmp(v.v.s.ptr, want->s, want->len) == 0;
}

/* The filters that the source does not already guarantee. */
static int matches(const evl_iter *it, const evl_event *ev) {
    int by = it->src == SRC_INDEX ? it->by : -1;
    const filter *f = it->f;
    if (f[F_TYPE].s && by != F_TYPE &&
        (ev->type_len != f[F_TYPE].len || memcmp(ev->type, f[F_TYPE].s, f[F_TYPE].len)))
        return 0;
    if (f[F_CAT].s && by != F_CAT && it->src != SRC_STREAM) {
        size_t cl = evl_stream_category(ev->stream, ev->stream_len);
        if (cl != f[F_CAT].len || memcmp(ev->stream, f[F_CAT].s, cl)) return 0;
    }
    if (f[F_ACTOR].s && by != F_ACTOR && !meta_is(ev, 0, &f[F_ACTOR])) return 0;
    if (f[F_CORR].s && by != F_CORR && !meta_is(ev, 1, &f[F_CORR])) return 0;
    return 1;
}

int evl_iter_next(evl_iter *it, evl_event *ev) {
    for (;;) {
        if (it->done || (it->limit && it->count >= it->limit)) return EVL_END;
        uint64_t pos = 0;
        MDB_val v = {0, NULL}; /* the record itself, when the source is the events table */
        int rc = it->started ? src_next(it, &pos, &v) : src_first(it, &pos, &v);
        it->started = 1;
        if (rc == MDB_NOTFOUND) { it->done = 1; return EVL_END; }
        if (rc) { it->done = 1; return evl__lmdb_err(rc); }
        /* Sources other than the stream index are in position order, so
         * leaving the range ends the walk; a stream's revisions are too. */
        if (pos < it->lo) {
            if (it->backward) { it->done = 1; return EVL_END; }
            continue;
        }
        if (pos > it->hi) {
            if (!it->backward) { it->done = 1; return EVL_END; }
            continue;
        }
        if (it->src != SRC_ALL) {
            /* One cursor for all the lookups: the positions an index gives
             * come in order, and LMDB looks a key up within the cursor's
             * current leaf page when it lies there (several events of a
             * type share one), instead of descending from the root as
             * mdb_get does each time. */
            uint8_t pk[8];
            evl__put_be64(pk, pos);
            MDB_val k = {8, pk};
            rc = it->rec ? 0 : mdb_cursor_open(it->txn, it->log->db_events, &it->rec);
            if (rc == 0) rc = mdb_cursor_get(it->rec, &k, &v, MDB_SET_KEY);
            if (rc) { it->done = 1; return rc == MDB_NOTFOUND ? EVL_ECORRUPT : evl__lmdb_err(rc); }
        }
        if (it->src == SRC_ALL && !it->backward) prefetch_next(v.mv_data, it->log->os_page);
        drop_note(&it->drop, v.mv_data, v.mv_size, it->log->os_page);
        if (evl_log_decode(v.mv_data, v.mv_size, ev) || ev->position != pos) {
            it->done = 1;
            return EVL_ECORRUPT;
        }
        if (!matches(it, ev)) continue;
        it->count++;
        return EVL_OK;
    }
}

int evl_log_get(evl_log *log, uint64_t position, uint8_t **raw, size_t *len) {
    MDB_txn *txn;
    uint8_t pk[8];
    evl__put_be64(pk, position);
    MDB_val k = {8, pk}, v;
    evl_event ev;
    *raw = NULL;
    *len = 0;
    evl__read_barrier(log);
    int rc = mdb_txn_begin(log->env, NULL, MDB_RDONLY, &txn);
    if (rc) return evl__lmdb_err(rc);
    rc = mdb_get(txn, log->db_events, &k, &v);
    if (rc) {
        mdb_txn_abort(txn);
        return evl__lmdb_err(rc);
    }
    if (evl_log_decode(v.mv_data, v.mv_size, &ev) || ev.position != position) {
        mdb_txn_abort(txn);
        return EVL_ECORRUPT;
    }
    *raw = evl_malloc(v.mv_size);
    if (*raw) {
        memcpy(*raw, v.mv_data, v.mv_size);
        *len = v.mv_size;
    }
    mdb_txn_abort(txn);
    return *raw ? EVL_OK : EVL_ENOMEM;
}

int evl_log_stream_revision(evl_log *log, const char *stream, uint64_t *revision) {
    MDB_txn *txn;
    MDB_cursor *c;
    size_t len = strlen(stream);
    if (len == 0 || len > EVL_MAX_NAME) return EVL_ENOTFOUND;
    evl__read_barrier(log);
    int rc = mdb_txn_begin(log->env, NULL, MDB_RDONLY, &txn);
    if (rc) return evl__lmdb_err(rc);
    if ((rc = mdb_cursor_open(txn, log->db_streams, &c)) == 0) {
        rc = evl__stream_head(c, stream, len, revision, NULL);
        mdb_cursor_close(c);
    } else {
        rc = evl__lmdb_err(rc);
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Another process writes the log: watch data.mdb for its page writes. */
static int wait_other_process(evl_log *log, uint64_t after, int timeout_ms, uint64_t *head) {
    pthread_mutex_lock(&log->ino_mu);
    if (log->ino_fd < 0) {
        log->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (log->ino_fd >= 0) {
            size_t n = strlen(log->dir) + 16;
            char *path = evl_malloc(n);
            if (path) {
                snprintf(path, n, "%s/log/data.mdb", log->dir);
                inotify_add_watch(log->ino_fd, path, IN_MODIFY);
                evl_free(path);
            }
        }
    }
    int fd = log->ino_fd;
    pthread_mutex_unlock(&log->ino_mu);
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : evl__mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        uint64_t h = evl_log_head(log);
        if (head) *head = h;
        if (h > after) return EVL_OK;
        int64_t left = deadline == INT64_MAX ? -1 : (deadline - evl__mono_ns()) / 1000000;
        if (deadline != INT64_MAX && left <= 0) return EVL_ETIMEDOUT;
        /* without inotify, fall back to a short period */
        int wait_ms = fd < 0 ? 50 : (left < 0 || left > 1000 ? 1000 : (int)left);
        if (fd >= 0) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, wait_ms) > 0) {
                char buf[4096];
                while (read(fd, buf, sizeof buf) > 0) {}
            }
        } else {
            struct timespec ts = {0, wait_ms * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

int evl_log_wait(evl_log *log, uint64_t after, int timeout_ms, uint64_t *head) {
    if (log->opt.read_only) return wait_other_process(log, after, timeout_ms, head);
    struct timespec ts;
    int rc = EVL_OK;
    if (timeout_ms >= 0) {
        int64_t d = evl__mono_ns() + (int64_t)timeout_ms * 1000000;
        ts.tv_sec = d / 1000000000;
        ts.tv_nsec = d % 1000000000;
    }
    pthread_mutex_lock(&log->mu);
    /* a waiter wants each event as soon as it is durable: the applier does
     * not linger while one waits (apply.c) */
    log->a_waiters++;
    if (atomic_load(&log->durable) > atomic_load(&log->head)) pthread_cond_signal(&log->apply_cv);
    while (atomic_load(&log->head) <= after && !log->stopping) {
        if (timeout_ms < 0) pthread_cond_wait(&log->head_cv, &log->mu);
        else if (pthread_cond_timedwait(&log->head_cv, &log->mu, &ts) == ETIMEDOUT) break;
    }
    log->a_waiters--;
    uint64_t h = atomic_load(&log->head);
    if (h <= after) rc = log->stopping ? EVL_ECLOSED : EVL_ETIMEDOUT;
    pthread_mutex_unlock(&log->mu);
    if (head) *head = h;
    return rc;
}
