/* The projection engine: one thread per projection.
 *
 * Each projector owns one SQLite connection and its prepared statements.
 * It sleeps on the engine's condition variable, which the log's commit
 * notification signals; it then reads the events after its checkpoint and
 * applies them in one SQLite transaction that also moves the checkpoint, so
 * a crash anywhere leaves rows and checkpoint in agreement.  A failing
 * statement rolls the batch back, re-applies the events before the failing
 * one, and leaves the projection faulted at that event; the others go on. */
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evlog/json.h"
#include "evlog/mp.h"
#include "projections/proj_int.h"

typedef struct proj {
    evl_proj_engine *eng;
    evl_proj_spec *spec;
    char *path;
    pthread_t thread;
    int started;
    /* Shared, under eng->mu. */
    evl_proj_state state;
    int rebuilding;
    uint64_t checkpoint, applied;
    uint64_t fault_pos;
    char *fault_type, *error;
    pthread_cond_t cv;          /* the checkpoint moved (or the projection faulted) */
    /* Thread-private. */
    sqlite3 *db;
    sqlite3_stmt ***stmts;      /* [handler][statement] */
    sqlite3_stmt *cp_update;
} proj;

struct evl_proj_engine {
    evl_log *log;
    evl_proj_options opt;
    char *dir;
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* the log's head moved, or stop */
    int stop;
    proj *projs;
    size_t n;
};

__attribute__((format(printf, 2, 3))) static void report(evl_proj_engine *e, const char *fmt, ...) {
    if (!e->opt.report) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    e->opt.report(e->opt.report_arg, line);
}

static char *strdup_evl(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = evl_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------ applying */

#define MAX_FIELDS 64
typedef struct field { const char *key; uint32_t len; const uint8_t *val; } field;
typedef struct fields { size_t n; int overflow; const uint8_t *map, *end; field f[MAX_FIELDS]; } fields;

/* Index a map's top-level keys once per event instead of once per parameter. */
static void index_fields(fields *fs, const uint8_t *map, size_t len) {
    evl_mp m = {map, map + len};
    evl_mp_val v, k;
    fs->n = 0;
    fs->overflow = 0;
    fs->map = map;
    fs->end = map + len;
    if (evl_mp_read(&m, &v) || v.kind != EVL_MP_MAP) return;
    for (uint32_t i = 0; i < v.v.n; i++) {
        if (evl_mp_read(&m, &k) || k.kind != EVL_MP_STR) return;
        if (fs->n == MAX_FIELDS) { fs->overflow = 1; return; }
        fs->f[fs->n++] = (field){k.v.s.ptr, k.v.s.len, m.p};
        if (evl_mp_skip(&m, 64)) return;
    }
}

static const uint8_t *find_field(const fields *fs, const char *key, size_t len) {
    for (size_t i = 0; i < fs->n; i++)
        if (fs->f[i].len == len && memcmp(fs->f[i].key, key, len) == 0) return fs->f[i].val;
    if (fs->overflow) {
        evl_mp m;
        if (evl_mp_map_find(fs->map, (size_t)(fs->end - fs->map), key, len, &m) == EVL_OK) return m.p;
    }
    return NULL;
}

typedef struct ev_ctx {
    const evl_event *ev;
    fields data, meta;
    char time[40], id[37];
    int have_time, have_id;
} ev_ctx;

static int bind_json(sqlite3_stmt *st, int i, const uint8_t *p, size_t len) {
    json_t *j;
    if (evl_json_from_msgpack(p, len, &j)) return sqlite3_bind_null(st, i);
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return text ? sqlite3_bind_text(st, i, text, -1, free) : SQLITE_NOMEM;
}

static int bind_all(sqlite3_stmt *st, const spec_stmt *ss, ev_ctx *c) {
    const evl_event *ev = c->ev;
    int rc = SQLITE_OK;
    for (size_t k = 0; k < ss->n_params && rc == SQLITE_OK; k++) {
        const spec_param *sp = &ss->params[k];
        int i = (int)k + 1;
        switch (sp->kind) {
        case P_DATA: case P_META: {
            const uint8_t *v = find_field(sp->kind == P_DATA ? &c->data : &c->meta, sp->key, sp->key_len);
            const uint8_t *end = sp->kind == P_DATA ? c->data.end : c->meta.end;
            rc = v ? evl__proj_bind_mp(st, i, v, end) : sqlite3_bind_null(st, i);
            break;
        }
        case P_STREAM: rc = sqlite3_bind_text(st, i, ev->stream, (int)ev->stream_len, SQLITE_STATIC); break;
        case P_TYPE: rc = sqlite3_bind_text(st, i, ev->type, (int)ev->type_len, SQLITE_STATIC); break;
        case P_POSITION: rc = sqlite3_bind_int64(st, i, (sqlite3_int64)ev->position); break;
        case P_REVISION: rc = sqlite3_bind_int64(st, i, (sqlite3_int64)ev->revision); break;
        case P_TIME_NS: rc = sqlite3_bind_int64(st, i, ev->time_ns); break;
        case P_CATEGORY:
            rc = sqlite3_bind_text(st, i, ev->stream, (int)evl_stream_category(ev->stream, ev->stream_len), SQLITE_STATIC);
            break;
        case P_TIME:
            if (!c->have_time) { evl_time_format(ev->time_ns, 3, c->time); c->have_time = 1; }
            rc = sqlite3_bind_text(st, i, c->time, -1, SQLITE_STATIC);
            break;
        case P_ID:
            if (!c->have_id) { evl_uuid_format(ev->id, c->id); c->have_id = 1; }
            rc = sqlite3_bind_text(st, i, c->id, 36, SQLITE_STATIC);
            break;
        case P_DATA_JSON: rc = bind_json(st, i, ev->data, ev->data_len); break;
        case P_META_JSON: rc = bind_json(st, i, ev->meta, ev->meta_len); break;
        }
    }
    return rc;
}

static int handler_matches(const spec_handler *h, const evl_event *ev) {
    if (h->wildcard) return 1;
    for (size_t t = 0; t < h->n_types; t++)
        if (strlen(h->types[t]) == ev->type_len && !memcmp(h->types[t], ev->type, ev->type_len)) return 1;
    return 0;
}

/* Run every handler that matches; on failure fill err with "file:line: message". */
static int apply_event(proj *p, const evl_event *ev, int *matched, char *err, size_t errlen) {
    const evl_proj_spec *sp = p->spec;
    ev_ctx c = {.ev = ev};
    int indexed = 0;
    *matched = 0;
    for (size_t h = 0; h < sp->n_handlers; h++) {
        const spec_handler *hd = &sp->handlers[h];
        if (!handler_matches(hd, ev)) continue;
        if (!indexed) {
            index_fields(&c.data, ev->data, ev->data_len);
            index_fields(&c.meta, ev->meta, ev->meta_len);
            indexed = 1;
        }
        *matched = 1;
        for (size_t s = 0; s < hd->n_stmts; s++) {
            sqlite3_stmt *st = p->stmts[h][s];
            int rc = bind_all(st, &hd->stmts[s], &c);
            if (rc == SQLITE_OK) {
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
                if (rc == SQLITE_DONE) rc = SQLITE_OK;
            }
            if (rc != SQLITE_OK) {
                snprintf(err, errlen, "%s:%d: %s", sp->file, hd->stmts[s].line, sqlite3_errmsg(p->db));
                sqlite3_reset(st);
                return rc;
            }
            sqlite3_reset(st);
        }
    }
    return SQLITE_OK;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && err) snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

static void set_fault(proj *p, uint64_t pos, const char *type, const char *msg) {
    evl_proj_engine *e = p->eng;
    pthread_mutex_lock(&e->mu);
    p->state = EVL_PROJ_FAULTED;
    p->fault_pos = pos;
    evl_free(p->fault_type);
    evl_free(p->error);
    p->fault_type = type && *type ? strdup_evl(type) : NULL;
    p->error = strdup_evl(msg);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&e->mu);
    report(e, "projection %s faulted at position %llu (%s): %s", p->spec->name,
           (unsigned long long)pos, p->fault_type ? p->fault_type : "?", msg);
}

/* Apply events (checkpoint, until] — until = 0: as many as the batch allows.
 * Returns the new checkpoint; *failed_at is set when an event failed. */
static int apply_batch(proj *p, uint64_t until, uint64_t *new_cp, uint64_t *failed_at,
                       char fault_type[EVL_MAX_NAME + 1], char *err, size_t errlen, int *full) {
    evl_iter *it;
    evl_event ev;
    uint64_t cp = p->checkpoint, n = 0, applied = p->applied;
    size_t max = p->eng->opt.batch_events;
    int rc = evl_iter_open(p->eng->log, &(evl_query){.from_position = cp + 1, .until_position = until}, &it);
    *failed_at = 0;
    *full = 0;
    if (rc) { snprintf(err, errlen, "reading the log: %s", evl_strerror(rc)); *failed_at = cp + 1; return rc; }
    if (exec(p->db, "BEGIN IMMEDIATE", err, errlen) != SQLITE_OK) {
        evl_iter_close(it);
        *failed_at = cp + 1;
        return EVL_ESQL;
    }
    int64_t t0 = evl__mono_ns();
    while (n < max) {
        rc = evl_iter_next(it, &ev);
        if (rc == EVL_END) { rc = EVL_OK; break; }
        if (rc) {
            snprintf(err, errlen, "reading position %llu: %s", (unsigned long long)cp + 1, evl_strerror(rc));
            *failed_at = cp + 1;
            break;
        }
        int matched;
        if (apply_event(p, &ev, &matched, err, errlen) != SQLITE_OK) {
            *failed_at = ev.position;
            memcpy(fault_type, ev.type, ev.type_len); /* before the iterator's txn ends */
            fault_type[ev.type_len] = 0;
            rc = EVL_ESQL;
            break;
        }
        applied += (uint64_t)matched;
        cp = ev.position;
        n++;
        /* bound a batch in time too, so read-your-writes waits stay short */
        if ((n & 255) == 0 && evl__mono_ns() - t0 > 250000000) { *full = 1; break; }
    }
    if (n == max) *full = 1;
    if (rc == EVL_OK) {
        char now[40];
        evl_time_format(evl__now_ns(), 3, now);
        sqlite3_bind_int64(p->cp_update, 1, (sqlite3_int64)cp);
        sqlite3_bind_int64(p->cp_update, 2, (sqlite3_int64)applied);
        sqlite3_bind_text(p->cp_update, 3, now, -1, SQLITE_TRANSIENT);
        int src = sqlite3_step(p->cp_update);
        sqlite3_reset(p->cp_update);
        if (src != SQLITE_DONE || exec(p->db, "COMMIT", err, errlen) != SQLITE_OK) {
            if (src != SQLITE_DONE) snprintf(err, errlen, "checkpoint: %s", sqlite3_errmsg(p->db));
            *failed_at = cp + 1;
            rc = EVL_ESQL;
        }
    }
    if (rc) {
        exec(p->db, "ROLLBACK", NULL, 0);
    } else {
        p->applied = applied;
        *new_cp = cp;
    }
    evl_iter_close(it);
    return rc;
}

/* ------------------------------------------------------------ set-up */

static void remove_db_files(const char *path) {
    char buf[4096];
    unlink(path);
    snprintf(buf, sizeof buf, "%s-wal", path);
    unlink(buf);
    snprintf(buf, sizeof buf, "%s-shm", path);
    unlink(buf);
}

static int create_schema(proj *p, char *err, size_t errlen) {
    char sql[512];
    if (exec(p->db, "BEGIN IMMEDIATE", err, errlen) != SQLITE_OK) return EVL_ESQL;
    snprintf(sql, sizeof sql,
             "CREATE TABLE _evl_checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), projection TEXT NOT NULL,"
             " position INTEGER NOT NULL, spec_hash TEXT NOT NULL, events_applied INTEGER NOT NULL,"
             " updated_at TEXT);"
             "INSERT INTO _evl_checkpoint VALUES (1, '%s', 0, '%s', 0, NULL);",
             p->spec->name, p->spec->hash);
    if (exec(p->db, p->spec->ddl, err, errlen) != SQLITE_OK || exec(p->db, sql, err, errlen) != SQLITE_OK ||
        exec(p->db, "COMMIT", err, errlen) != SQLITE_OK) {
        exec(p->db, "ROLLBACK", NULL, 0);
        return EVL_ESQL;
    }
    return EVL_OK;
}

/* Open the file, create or check its schema, prepare every statement. */
static int setup(proj *p, char *err, size_t errlen) {
    char hash[17];
    uint64_t pos = 0, applied = 0;
    int rc = evl__proj_open_writer(p->path, &p->db, err, errlen);
    if (rc) return rc;
    rc = evl__proj_read_checkpoint(p->db, &pos, hash, &applied);
    if (rc == EVL_OK && strcmp(hash, p->spec->hash) != 0) {
        /* The spec changed: the table is derived, so build it again from the log. */
        report(p->eng, "projection %s: spec changed (%s -> %s), rebuilding from position 1",
               p->spec->name, hash, p->spec->hash);
        sqlite3_close(p->db);
        p->db = NULL;
        remove_db_files(p->path);
        if ((rc = evl__proj_open_writer(p->path, &p->db, err, errlen))) return rc;
        rc = EVL_ENOTFOUND;
        pthread_mutex_lock(&p->eng->mu);
        p->rebuilding = 1;
        pthread_mutex_unlock(&p->eng->mu);
    }
    if (rc == EVL_ENOTFOUND) {
        pos = applied = 0;
        if ((rc = create_schema(p, err, errlen))) return rc;
    }
    pthread_mutex_lock(&p->eng->mu);
    p->checkpoint = pos;
    p->applied = applied;
    pthread_cond_broadcast(&p->cv); /* a waiter may already want this position */
    pthread_mutex_unlock(&p->eng->mu);
    const evl_proj_spec *sp = p->spec;
    if (!(p->stmts = evl_calloc(sp->n_handlers, sizeof *p->stmts))) return EVL_ENOMEM;
    for (size_t h = 0; h < sp->n_handlers; h++) {
        if (!(p->stmts[h] = evl_calloc(sp->handlers[h].n_stmts, sizeof **p->stmts))) return EVL_ENOMEM;
        for (size_t s = 0; s < sp->handlers[h].n_stmts; s++)
            if (sqlite3_prepare_v3(p->db, sp->handlers[h].stmts[s].sql, -1, SQLITE_PREPARE_PERSISTENT,
                                   &p->stmts[h][s], NULL) != SQLITE_OK) {
                snprintf(err, errlen, "%s:%d: %s", sp->file, sp->handlers[h].stmts[s].line, sqlite3_errmsg(p->db));
                return EVL_ESQL;
            }
    }
    if (sqlite3_prepare_v3(p->db, "UPDATE _evl_checkpoint SET position = ?1, events_applied = ?2, updated_at = ?3 WHERE id = 1",
                           -1, SQLITE_PREPARE_PERSISTENT, &p->cp_update, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(p->db));
        return EVL_ESQL;
    }
    return EVL_OK;
}

static void teardown(proj *p) {
    if (p->stmts) {
        for (size_t h = 0; h < p->spec->n_handlers; h++) {
            if (!p->stmts[h]) continue;
            for (size_t s = 0; s < p->spec->handlers[h].n_stmts; s++) sqlite3_finalize(p->stmts[h][s]);
            evl_free(p->stmts[h]);
        }
        evl_free(p->stmts);
        p->stmts = NULL;
    }
    sqlite3_finalize(p->cp_update);
    p->cp_update = NULL;
    sqlite3_close(p->db);
    p->db = NULL;
}

static void *projector_main(void *arg) {
    proj *p = arg;
    evl_proj_engine *e = p->eng;
    char err[1024], fault_type[EVL_MAX_NAME + 1];
    int rc = setup(p, err, sizeof err);
    if (rc) set_fault(p, 0, NULL, err);
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        if (p->state == EVL_PROJ_FAULTED || evl_log_head(e->log) <= p->checkpoint) {
            if (p->state != EVL_PROJ_FAULTED) {
                p->state = EVL_PROJ_LIVE;
                p->rebuilding = 0;
            }
            pthread_cond_wait(&e->wake, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        uint64_t cp = p->checkpoint, failed_at = 0;
        int full;
        fault_type[0] = 0;
        rc = apply_batch(p, 0, &cp, &failed_at, fault_type, err, sizeof err, &full);
        if (rc && failed_at > p->checkpoint + 1) {
            /* keep what came before the failing event, so the fault is exact */
            char err2[256];
            uint64_t cp2 = p->checkpoint, f2;
            int full2;
            char t2[EVL_MAX_NAME + 1];
            if (apply_batch(p, failed_at - 1, &cp2, &f2, t2, err2, sizeof err2, &full2) == EVL_OK) cp = cp2;
        }
        pthread_mutex_lock(&e->mu);
        p->checkpoint = cp;
        if (rc) {
            pthread_mutex_unlock(&e->mu);
            set_fault(p, failed_at, fault_type, err);
            pthread_mutex_lock(&e->mu);
        } else if (p->state != EVL_PROJ_FAULTED) {
            p->state = full ? EVL_PROJ_CATCHING_UP : EVL_PROJ_LIVE;
            if (!full) p->rebuilding = 0;
        }
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&e->mu);
    teardown(p);
    return NULL;
}

static void on_commit(void *arg, uint64_t head) {
    evl_proj_engine *e = arg;
    (void)head;
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------ loading */

static int add_spec(evl_proj_engine *e, const char *file, const char *text, size_t len) {
    char err[1024];
    evl_proj_spec *sp;
    int rc = evl_proj_spec_parse(text, len, file, &sp, err, sizeof err);
    if (rc == EVL_ENOMEM) return rc;
    if (rc) {
        report(e, "skipping projection file %s", err);
        return EVL_OK;
    }
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->projs[i].spec->name, sp->name)) {
            report(e, "skipping projection file %s: duplicate projection name %s (already defined in %s)",
                   file, sp->name, e->projs[i].spec->file);
            evl_proj_spec_free(sp);
            return EVL_OK;
        }
    proj *grown = evl_realloc(e->projs, (e->n + 1) * sizeof *grown);
    if (!grown) {
        evl_proj_spec_free(sp);
        return EVL_ENOMEM;
    }
    e->projs = grown;
    proj *p = &e->projs[e->n];
    memset(p, 0, sizeof *p);
    p->spec = sp;
    size_t n = strlen(e->dir) + strlen(sp->name) + 8;
    if (!(p->path = evl_malloc(n))) {
        evl_proj_spec_free(sp);
        return EVL_ENOMEM;
    }
    snprintf(p->path, n, "%s/%s.db", e->dir, sp->name);
    p->state = EVL_PROJ_CATCHING_UP;
    e->n++;
    return EVL_OK;
}

static int is_sql(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 4 && !strcmp(d->d_name + n - 4, ".sql") && d->d_name[0] != '.';
}

static int load_dir(evl_proj_engine *e, const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, is_sql, alphasort), rc = EVL_OK;
    if (n < 0) {
        report(e, "cannot read projection directory %s: %s", dir, strerror(errno));
        return EVL_OK;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        FILE *f = rc ? NULL : fopen(path, "rb");
        if (f) {
            char *buf = NULL;
            size_t len = 0, cap = 0, r;
            char chunk[8192];
            while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
                if (len + r > cap) {
                    cap = (len + r) * 2;
                    char *g = evl_realloc(buf, cap);
                    if (!g) { rc = EVL_ENOMEM; break; }
                    buf = g;
                }
                memcpy(buf + len, chunk, r);
                len += r;
            }
            fclose(f);
            if (!rc) rc = add_spec(e, path, buf ? buf : "", len);
            evl_free(buf);
        } else if (!rc) {
            report(e, "cannot read projection file %s: %s", path, strerror(errno));
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int evl_proj_open(evl_log *log, const evl_proj_options *opt, evl_proj_engine **out) {
    int rc = EVL_OK;
    *out = NULL;
    evl_proj_engine *e = evl_calloc(1, sizeof *e);
    if (!e) return EVL_ENOMEM;
    e->log = log;
    if (opt) e->opt = *opt;
    if (!e->opt.batch_events) e->opt.batch_events = 10000;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    const char *data = evl_log_dir(log);
    size_t n = strlen(data) + 16;
    if (!(e->dir = evl_malloc(n))) { rc = EVL_ENOMEM; goto fail; }
    snprintf(e->dir, n, "%s/projections", data);
    if (mkdir(e->dir, 0755) != 0 && errno != EEXIST) { rc = EVL_ESYS(errno); goto fail; }
    if (!e->opt.no_builtin) {
        size_t nb;
        const evl_proj_builtin *b = evl_proj_builtins(&nb);
        for (size_t i = 0; i < nb && !rc; i++) {
            char file[128];
            snprintf(file, sizeof file, "builtin:%s", b[i].file);
            rc = add_spec(e, file, b[i].text, b[i].len);
        }
    }
    for (size_t i = 0; i < e->opt.n_dirs && !rc; i++) rc = load_dir(e, e->opt.dirs[i]);
    if (rc) goto fail;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    for (size_t i = 0; i < e->n; i++) {
        e->projs[i].eng = e;
        pthread_cond_init(&e->projs[i].cv, &ca);
    }
    pthread_condattr_destroy(&ca);
    if ((rc = evl_log_watch(log, on_commit, e))) goto fail;
    for (size_t i = 0; i < e->n; i++) {
        int err = pthread_create(&e->projs[i].thread, NULL, projector_main, &e->projs[i]);
        if (err) { rc = EVL_ESYS(err); goto fail; }
        e->projs[i].started = 1;
    }
    *out = e;
    return EVL_OK;
fail:
    evl_proj_close(e);
    return rc;
}

void evl_proj_close(evl_proj_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_broadcast(&e->wake);
    for (size_t i = 0; i < e->n; i++) pthread_cond_broadcast(&e->projs[i].cv);
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < e->n; i++)
        if (e->projs[i].started) pthread_join(e->projs[i].thread, NULL);
    evl_log_unwatch(e->log, on_commit, e);
    for (size_t i = 0; i < e->n; i++) {
        proj *p = &e->projs[i];
        if (p->eng) pthread_cond_destroy(&p->cv);
        evl_proj_spec_free(p->spec);
        evl_free(p->path);
        evl_free(p->fault_type);
        evl_free(p->error);
    }
    evl_free(e->projs);
    evl_free(e->dir);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    evl_free(e);
}

/* ------------------------------------------------------------ status */

const char *evl_proj_state_name(evl_proj_state s) {
    switch (s) {
    case EVL_PROJ_LIVE: return "live";
    case EVL_PROJ_CATCHING_UP: return "catching_up";
    case EVL_PROJ_REBUILDING: return "rebuilding";
    case EVL_PROJ_FAULTED: return "faulted";
    }
    return "?";
}

static proj *find(evl_proj_engine *e, const char *name) {
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->projs[i].spec->name, name)) return &e->projs[i];
    return NULL;
}

const char *evl_proj_db_path(evl_proj_engine *e, const char *name) {
    proj *p = find(e, name);
    return p ? p->path : NULL;
}

static void count_rows(const char *path, evl_proj_status *st, const evl_proj_spec *sp) {
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 2000);
    for (size_t t = 0; t < st->n_tables; t++) {
        char sql[256];
        sqlite3_stmt *s;
        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", sp->tables[t]);
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            st->tables[t].rows = (uint64_t)sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
}

int evl_proj_status_get(evl_proj_engine *e, const char *name, evl_proj_status **out, size_t *n_out) {
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    if (name && !find(e, name)) return EVL_ENOTFOUND;
    evl_proj_status *st = evl_calloc(e->n ? e->n : 1, sizeof *st);
    if (!st) return EVL_ENOMEM;
    uint64_t head = evl_log_head(e->log);
    for (size_t i = 0; i < e->n; i++) {
        proj *p = &e->projs[i];
        if (name && strcmp(p->spec->name, name)) continue;
        evl_proj_status *s = &st[n++];
        s->name = strdup_evl(p->spec->name);
        s->file = strdup_evl(p->spec->file);
        memcpy(s->spec_hash, p->spec->hash, 17);
        pthread_mutex_lock(&e->mu);
        s->checkpoint = p->checkpoint;
        s->events_applied = p->applied;
        s->state = p->state == EVL_PROJ_FAULTED ? EVL_PROJ_FAULTED
                   : p->rebuilding ? EVL_PROJ_REBUILDING
                   : p->checkpoint >= head ? EVL_PROJ_LIVE : p->state;
        s->fault_position = p->fault_pos;
        s->fault_type = p->fault_type ? strdup_evl(p->fault_type) : NULL;
        s->error = p->error ? strdup_evl(p->error) : NULL;
        pthread_mutex_unlock(&e->mu);
        s->head = head;
        s->lag = head > s->checkpoint ? head - s->checkpoint : 0;
        s->n_tables = p->spec->n_tables;
        s->tables = evl_calloc(s->n_tables ? s->n_tables : 1, sizeof *s->tables);
        if (!s->name || !s->file || !s->tables) {
            evl_proj_status_free(st, n);
            return EVL_ENOMEM;
        }
        for (size_t t = 0; t < s->n_tables; t++) s->tables[t].name = strdup_evl(p->spec->tables[t]);
        count_rows(p->path, s, p->spec);
    }
    *out = st;
    *n_out = n;
    return EVL_OK;
}

void evl_proj_status_free(evl_proj_status *st, size_t n) {
    if (!st) return;
    for (size_t i = 0; i < n; i++) {
        for (size_t t = 0; t < st[i].n_tables; t++) evl_free(st[i].tables ? st[i].tables[t].name : NULL);
        evl_free(st[i].tables);
        evl_free(st[i].name);
        evl_free(st[i].file);
        evl_free(st[i].fault_type);
        evl_free(st[i].error);
    }
    evl_free(st);
}

/* ------------------------------------------------------------ waiting */

static int wait_one(evl_proj_engine *e, proj *p, uint64_t position, int64_t deadline) {
    struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
    int rc = EVL_OK;
    pthread_mutex_lock(&e->mu);
    while (p->checkpoint < position) {
        if (p->state == EVL_PROJ_FAULTED) { rc = EVL_EFAULTED; break; }
        if (e->stop) { rc = EVL_ECLOSED; break; }
        if (pthread_cond_timedwait(&p->cv, &e->mu, &ts) == ETIMEDOUT && p->checkpoint < position) {
            rc = EVL_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int evl_proj_wait(evl_proj_engine *e, const char *name, uint64_t position, int timeout_ms) {
    proj *p = find(e, name);
    if (!p) return EVL_ENOTFOUND;
    return wait_one(e, p, position, evl__mono_ns() + (int64_t)timeout_ms * 1000000);
}

int evl_proj_wait_all(evl_proj_engine *e, uint64_t position, int timeout_ms) {
    int64_t deadline = evl__mono_ns() + (int64_t)timeout_ms * 1000000;
    for (size_t i = 0; i < e->n; i++) {
        int rc = wait_one(e, &e->projs[i], position, deadline);
        if (rc == EVL_ETIMEDOUT || rc == EVL_ECLOSED) return rc;
    }
    return EVL_OK;
}

int evl_proj_query(evl_proj_engine *e, const char *name, const char *sql, const json_t *params,
                   const evl_proj_query_opts *opts, json_t **result, char *err, size_t errlen) {
    proj *p = find(e, name);
    if (!p) {
        snprintf(err, errlen, "no projection named %s", name);
        return EVL_ENOTFOUND;
    }
    return evl_proj_query_file(p->path, sql, params, opts, result, err, errlen);
}
