/* Private structures of projections/: the parsed spec and the engine. */
#ifndef EVL_PROJ_INT_H
#define EVL_PROJ_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>

#include "common/common_int.h"
#include "evlog/mp.h"
#include "evlog/proj.h"

/* Where a parameter's value comes from. */
typedef enum param_kind {
    P_DATA, P_META, P_STREAM, P_TYPE, P_POSITION, P_REVISION, P_ID, P_TIME, P_TIME_NS,
    P_CATEGORY, P_DATA_JSON, P_META_JSON
} param_kind;

typedef struct spec_param {
    param_kind kind;
    char *key;           /* P_DATA / P_META: the field name */
    size_t key_len;
} spec_param;

typedef struct spec_stmt {
    char *sql;
    int line;            /* in the spec file, for messages */
    size_t n_params;     /* = sqlite3_bind_parameter_count(); params[i] binds index i+1 */
    spec_param *params;
} spec_stmt;

typedef struct spec_handler {
    char **types;        /* the @on types (not "*") */
    size_t n_types;
    int wildcard;        /* has "@on *" */
    int line;
    spec_stmt *stmts;
    size_t n_stmts;
} spec_handler;

/* A `-- @history TABLE [KEY_COLUMN] [EXCEPT COLUMN, ...]` line, checked
 * against the DDL: the table's columns in declaration order (what the
 * pre-update hook numbers), its key and the columns it does not record. */
typedef struct spec_history {
    char *table;
    int line;
    char **cols;
    size_t n_cols;
    int pk;              /* index of the key column: the single PRIMARY KEY, or the
                            UNIQUE column the line names (`-- @history TABLE COLUMN`) */
    char *key;           /* the column the line names, or NULL */
    char **except;       /* the columns after EXCEPT, as written */
    size_t n_except;
    unsigned char *skip; /* n_cols flags: 1 = an EXCEPT column, never recorded (NULL: none) */
} spec_history;

struct evl_proj_spec {
    char *name;
    char *file;
    char *text;          /* the source, kept so that a file can carry the spec it was built with */
    size_t len;
    char hash[17];
    char *ddl;
    spec_handler *handlers;
    size_t n_handlers;
    char **tables;       /* tables the DDL creates (for row counts) */
    size_t n_tables;
    spec_history *hist;  /* the @history tables, in file order */
    size_t n_hist;
};

/* sqlite.c */
int evl__proj_sqlite_err(int rc);
/* sqlite3_open_v2 (no mutex: one connection per thread) after the
 * process-wide SQLite settings; *db as sqlite3_open_v2 leaves it. */
int evl__proj_sqlite_open(const char *path, int flags, sqlite3 **db);
/* Open a projection file for writing (the projector) with our PRAGMAs. */
int evl__proj_open_writer(const char *path, sqlite3 **out, char *err, size_t errlen);
/* Refuse what specs and queries may not do (ATTACH, PRAGMA, transactions). */
int evl__proj_authorizer(void *arg, int action, const char *a, const char *b, const char *c,
                         const char *d);
/* Read the checkpoint row: position, spec hash, events applied. */
int evl__proj_read_checkpoint(sqlite3 *db, uint64_t *pos, char hash[17], uint64_t *applied);
/* Bind one msgpack value read at m to parameter i. */
int evl__proj_bind_mp(sqlite3_stmt *st, int i, const uint8_t *p, const uint8_t *end);


/* ------------------------------------------------------------ engine internals
 * Shared by engine.c (threads, batches, set-up), plan.c (the spec compiled
 * into lookup tables, and binding), jsontext.c (msgpack -> JSON text) and
 * status.c (status, waits). */
/* ------------------------------------------------------------ the plan
 *
 * At set-up each projector turns its spec into lookup tables, so that an
 * event costs one hash probe to find its handlers, one pass over its data
 * map to find every field its statements bind, and no allocation:
 * - types: event type -> the handlers to run, in file order (the `@on *`
 *   handlers merged in), and the wildcard list for every other type;
 * - keys: each distinct `:field` (and `$field`) gets a slot; one walk of
 *   the event's map fills the slots, and a parameter binds from its slot. */

typedef struct buf { char *p; size_t len, cap; } buf;

/* An open-addressing set of names: name -> index (0..n-1), -1 when absent. */
typedef struct nametab {
    uint32_t mask;          /* table size - 1 (a power of two), 0 when empty */
    int32_t *tab;
    const char **name;      /* per index, borrowed from the spec */
    uint32_t *len;
    uint32_t *hash;         /* per index: its hash_name(), compared before the bytes */
    uint32_t n;
} nametab;

typedef struct plan {
    nametab types;          /* the @on types */
    uint32_t *tfirst, *tn;  /* per type: its handlers are hlist[tfirst .. tfirst + tn) */
    uint32_t *hlist;
    uint32_t wfirst, wn;    /* the wildcard handlers: what any other type runs */
    nametab data, meta;     /* :field and $field names -> slots */
    const uint8_t **dval, **mval; /* per event: where each slot's value starts, or NULL */
    int32_t ***slot;        /* [handler][statement][param]: slot of a P_DATA / P_META param */
    uint8_t *need_data, *need_meta; /* per handler: does it bind a :field / $field? */
    uint64_t *dmask, *mmask;    /* per handler: the slots it binds (when there are at most 64) */
    buf *json;              /* per parameter index: JSON text bound SQLITE_STATIC */
    size_t n_json;
    /* @time text: the date and time of day change once a second, so keep
     * them and rewrite only the milliseconds. */
    int64_t t_sec;
    char t_text[40];
    int t_len, t_prefix;    /* t_prefix: bytes before the ".mmm" */
    int t_valid;
} plan;

typedef struct rebuild rebuild;
typedef struct proj_hist proj_hist;

typedef struct proj {
    evl_proj_engine *eng;
    char *name;                 /* stable: a rebuild replaces the spec, never the name */
    evl_proj_spec *spec;        /* what the served file is built with; other threads read it under eng->mu */
    char *path;                 /* DIR/NAME.db: a symlink to the served generation after the first rebuild */
    pthread_t thread;
    int started;
    /* Shared, under eng->mu. */
    evl_proj_state state;
    uint64_t checkpoint, applied;
    uint64_t fault_pos;
    char *fault_type, *error;
    pthread_cond_t cv;          /* the checkpoint moved, the projection faulted, or a rebuild ended */
    evl_proj_spec *want;        /* a rebuild asked for (owned), not started yet */
    rebuild *rb;                /* the rebuild in progress (the projector thread owns it) */
    int starting;               /* want taken, rb not yet set: still "a rebuild on its way" */
    char starting_hash[17];     /* ... and its spec's hash */
    int frozen;                 /* the served file's spec is unknown: serve it as it is until the swap */
    int opened;                 /* start() is done: a rebuild it found needed is in want */
    uint64_t generation;        /* rebuilds swapped in since open */
    unsigned readers[2];        /* queries in flight, by generation parity */
    char old_target[256];       /* a swapped-out generation to delete when its readers are done */
    int old_pending;            /* ... ("" target: a plain file, whose journal only is left) */
    uint64_t old_gen;
    char *rb_error;             /* why the last rebuild failed; NULL after a success */
    /* Thread-private. */
    sqlite3 *db;
    sqlite3_stmt ***stmts;      /* [handler][statement] */
    sqlite3_stmt *cp_update;
    sqlite3_stmt *st_begin, *st_commit, *st_rollback; /* prepared once: a batch of one event
                                                          should not parse SQL three times */
    double seen_matched, seen_span; /* moving sums: events matched / positions covered */
    uint64_t *progress;         /* a shadow's: where to store the position reached inside a batch */
    plan plan;                  /* lookup tables built from the spec */
    proj_hist *hist;            /* the @history recorder, NULL when the spec asks for none */
} proj;

struct evl_proj_engine {
    evl_log *log;
    evl_proj_options opt;
    char *dir;
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* the log's head moved, or stop */
    int stop;
    proj **projs;               /* grows under mu (a reload adds projections); never shrinks */
    size_t n, cap;
};

static inline char *evl__proj_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = evl_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* evl_mp_read() with the shapes events are made of (small integers, short
 * strings, doubles, nil, booleans, small containers) decoded inline: it runs
 * for every key and value an event binds, and the call costs more than the
 * decoding.  Same checks, same results; anything else goes to evl_mp_read(). */
static inline int evl__proj_mp_next(evl_mp *m, evl_mp_val *v) {
    const uint8_t *p = m->p;
    if (EVL_UNLIKELY(p >= m->end)) return EVL_EMSGPACK;
    uint8_t b = *p;
    size_t left = (size_t)(m->end - p) - 1;
    if (b <= 0x7f) { v->kind = EVL_MP_UINT; v->v.u = b; m->p = p + 1; return EVL_OK; }
    if (b >= 0xe0) { v->kind = EVL_MP_INT; v->v.i = (int8_t)b; m->p = p + 1; return EVL_OK; }
    if (b >= 0xa0 && b <= 0xbf) {
        uint32_t n = b & 0x1f;
        if (n > left) return EVL_EMSGPACK;
        v->kind = EVL_MP_STR; v->v.s.ptr = (const char *)p + 1; v->v.s.len = n;
        m->p = p + 1 + n;
        return EVL_OK;
    }
    if (b <= 0x8f) { /* fixmap */
        uint32_t n = b & 0x0f;
        if ((uint64_t)n * 2 > left) return EVL_EMSGPACK;
        v->kind = EVL_MP_MAP; v->v.n = n; m->p = p + 1;
        return EVL_OK;
    }
    if (b <= 0x9f) { /* fixarray */
        uint32_t n = b & 0x0f;
        if (n > left) return EVL_EMSGPACK;
        v->kind = EVL_MP_ARRAY; v->v.n = n; m->p = p + 1;
        return EVL_OK;
    }
    if (b == 0xc0) { v->kind = EVL_MP_NIL; m->p = p + 1; return EVL_OK; }
    if (b == 0xc2 || b == 0xc3) { v->kind = EVL_MP_BOOL; v->v.b = b == 0xc3; m->p = p + 1; return EVL_OK; }
    if (b >= 0xcb && b <= 0xd3) { /* float64, uint8..64, int8..64 */
        size_t n = b == 0xcb ? 8 : (size_t)1 << ((b - 0xcc) & 3);
        if (left < n) return EVL_EMSGPACK;
        uint64_t u = 0;
        for (size_t i = 1; i <= n; i++) u = (u << 8) | p[i];
        m->p = p + 1 + n;
        if (b == 0xcb) { v->kind = EVL_MP_FLOAT; memcpy(&v->v.f, &u, sizeof u); }
        else if (b <= 0xcf) { v->kind = EVL_MP_UINT; v->v.u = u; }
        else {
            int64_t i = n == 1 ? (int8_t)u : n == 2 ? (int16_t)u : n == 4 ? (int32_t)u : (int64_t)u;
            if (i >= 0) { v->kind = EVL_MP_UINT; v->v.u = (uint64_t)i; }
            else { v->kind = EVL_MP_INT; v->v.i = i; }
        }
        return EVL_OK;
    }
    if (b == 0xd9 && left >= 1) { /* str8 */
        uint32_t n = p[1];
        if (n > left - 1) return EVL_EMSGPACK;
        v->kind = EVL_MP_STR; v->v.s.ptr = (const char *)p + 2; v->v.s.len = n;
        m->p = p + 2 + n;
        return EVL_OK;
    }
    return evl_mp_read(m, v);
}


/* plan.c */
typedef struct ev_ctx {
    const evl_event *ev;
    const uint8_t **dval, **mval; /* where each slot's value starts, or NULL */
    const char **djson;           /* per data slot: its JSON text already written, or NULL (NULL: none) */
    const uint32_t *djson_len;
    const char *time;
    int time_len;
    char id[37];
    int have_id;
} ev_ctx;
int evl__proj_bind_all(plan *pl, sqlite3_stmt *st, const spec_stmt *ss, const int32_t *slot, ev_ctx *c);
int evl__proj_plan_build(plan *pl, const evl_proj_spec *sp);
void evl__proj_plan_free(plan *pl, const evl_proj_spec *sp);
const uint32_t *evl__proj_handlers_for(const plan *pl, const char *type, size_t len, uint32_t *n);
void evl__proj_index_map(const nametab *t, const uint8_t **val, const uint8_t *map, size_t len, uint64_t want);

/* source.c: the events of a batch, read in the projector's thread or by a
 * reader thread ahead of it (long batches). */
#define TYPED_MAX_TYPES 32     /* at most this many typed iterators per batch */
typedef struct ra_chunk ra_chunk;
typedef struct src_ev {
    evl_event ev;
    /* prepared = 1: the reader thread found its handlers, where each bound
     * field starts (dval, mval) and the JSON text of the maps and arrays
     * (djson[slot], NULL when not written); the pointers are valid until
     * the next evl__proj_src_next().  0: only ev is set. */
    int prepared;
    const uint32_t *hl;
    uint32_t nh;
    const uint8_t **dval, **mval;
    const char **djson;
    const uint32_t *djson_len;
} src_ev;
typedef struct src {
    evl_iter *seq;              /* sequential, or ... */
    evl_iter *it[TYPED_MAX_TYPES]; /* ... one iterator per handled type, merged by position */
    evl_event ev[TYPED_MAX_TYPES]; /* each typed iterator's current event */
    int live[TYPED_MAX_TYPES];
    size_t n, last;             /* last: the iterator whose event was handed out */
    int primed;
    evl_event one;              /* the sequential iterator's current event */
    src_ev cur_ev;
    /* the reader thread, when ahead */
    int ahead;
    const plan *pl;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* a chunk became ready or idle, or stop */
    int stop;
    _Atomic int stop_now;       /* stop also in the middle of a chunk */
    ra_chunk *idle, *ready, *ready_last, *cur;
    size_t i;                   /* the next event of cur */
    const uint8_t **dval, **mval; /* the reader's scratch */
    buf *js;
    uint8_t *jok;
} src;
/* @p span: the positions the batch may cover, which decides the reader thread. */
int evl__proj_src_open(proj *p, int typed, uint64_t from, uint64_t until, uint64_t span, src *s);
int evl__proj_src_next(src *s, const src_ev **ev); /* EVL_OK, EVL_END or a read error */
void evl__proj_src_close(src *s);

/* engine.c: the applier, shared with the shadows of replay/ */
__attribute__((format(printf, 2, 3))) void evl__proj_report(evl_proj_engine *e, const char *fmt, ...);
/* Open p->path and prepare p->spec.  Fresh: a new file (any old one
 * removed) with its schema; bulk: journal and syncs off, for files that
 * are rebuilt rather than recovered. */
enum { SETUP_OPEN = 0, SETUP_FRESH = 1, SETUP_BULK = 2 };
int evl__proj_setup(proj *p, int how, char *err, size_t errlen);
void evl__proj_teardown(proj *p);
int evl__proj_apply_batch(proj *p, uint64_t until, int timed, uint64_t *new_cp, uint64_t *failed_at,
                          char fault_type[EVL_MAX_NAME + 1], char *err, size_t errlen, int *full);
void evl__proj_remove_db_files(const char *path);
int evl__proj_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* A second parse of sp's text: an independent copy. */
int evl__proj_spec_copy(const evl_proj_spec *sp, evl_proj_spec **out);

/* replay/shadow.c: a projector without a thread, building a file of its own. */
typedef struct deferred_index {
    char *name, *sql;           /* owned */
} deferred_index;
typedef struct shadow {
    evl_proj_engine eng;        /* private: the log, the batch size, setup()'s mutex */
    proj p;
    deferred_index *deferred;   /* indexes dropped for the bulk load (replay/defer.c) */
    size_t n_deferred;
} shadow;
int evl__proj_shadow_open(shadow *s, evl_log *log, evl_proj_spec *spec, const char *path, size_t batch,
                          char *err, size_t errlen);
void evl__proj_shadow_close(shadow *s);
/* replay/defer.c: drop the indexes no handler uses until the shadow is
 * built; restore creates them again (and forgets them, as forget does). */
int evl__proj_defer_indexes(shadow *s, char *err, size_t errlen);
int evl__proj_defer_restore(shadow *s, char *err, size_t errlen);
void evl__proj_defer_forget(shadow *s);

/* replay/rebuild.c: rebuilds, run from the projector thread's loop. */
int evl__proj_gc_files(proj *p);            /* remove stale generations; 1 if a rebuild was cut short */
void evl__proj_rebuild_start(proj *p, evl_proj_spec *spec);  /* takes spec */
int evl__proj_rebuild_pending(const proj *p); /* under mu: ready to swap in, or failed */
void evl__proj_rebuild_finish(proj *p);     /* swap in, or clean up after a failure */
void evl__proj_rebuild_cancel(proj *p);     /* stop and join; the shadow file stays (start-up restarts it) */
/* Under mu: the hash being rebuilt to (NULL when none); the progress. */
const char *evl__proj_rebuild_hash(const proj *p);
void evl__proj_rebuild_progress(const proj *p, evl_proj_status *s);

void evl__proj_remove_generation(proj *p, const char *target);

/* history.c: the @history recorder (the pre-update hook and its buffer). */
int evl__proj_hist_create(sqlite3 *db, const evl_proj_spec *sp, char *err, size_t errlen); /* in the schema's txn */
int evl__proj_hist_setup(proj *p, char *err, size_t errlen);   /* after the statements are prepared */
void evl__proj_hist_teardown(proj *p);
void evl__proj_hist_begin(proj_hist *h, uint64_t position);    /* before an event's statements */
void evl__proj_hist_clear(proj_hist *h);                       /* a statement failed: drop its changes */
int evl__proj_hist_flush(proj_hist *h, sqlite3 *db, char *err, size_t errlen); /* after each statement */

/* status.c */
proj *evl__proj_find(evl_proj_engine *e, const char *name);

/* jsontext.c: the map or array at m as JSON text appended to b. */
enum { JW_OK, JW_INVALID, JW_OTHER, JW_NOMEM };
int evl__proj_json_text(buf *b, evl_mp *m, int depth);

#endif
