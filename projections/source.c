/* Reading the log for a batch of the projector: sequentially or through the
 * type index, and for long batches in a reader thread ahead of the
 * projector ("read-ahead").
 *
 * Why a reader thread: of the projector's time per event, reading the
 * record (LMDB cursor, page faults, CRC, decode), finding its handlers, the
 * walk of its data map and the JSON text of its maps and arrays are a third
 * to a half (bench/README.md, "Profiling"); SQLite does the rest, and only
 * the projector's thread may touch its connection.  So in a rebuild or a
 * catch-up of many events a second thread does all of the former and hands
 * the events over in chunks, each event copied together with where its
 * bound fields start and their JSON text; the projector binds and steps.
 * Short batches (a live projector a few events behind) are read in the
 * projector's thread: a thread start costs more than they do.
 *
 * Chunks cycle between the two threads through a ready queue and a free
 * list (RA_CHUNKS of them, so the reader runs at most that far ahead).  The
 * projector may stop anywhere (the batch is full, a handler failed): the
 * events read beyond are dropped, and the checkpoint is where it stopped.
 */
#include <errno.h>
#include <stdatomic.h>
#include <unistd.h>

#include "projections/proj_int.h"

#define RA_MIN_SPAN 4096       /* positions to go before a reader thread pays */
#define RA_CHUNKS 4
#define RA_CHUNK_EVENTS 256
#define RA_ARENA (256u << 10)  /* a chunk's bytes, grown for an event bigger than that */

struct ra_chunk {
    ra_chunk *next;
    src_ev *e;
    size_t n;
    uint8_t *arena;
    size_t used, size;
    int rc;                    /* after the last event: EVL_OK (more follow), EVL_END or a read error */
};

/* ------------------------------------------------------------ reading */

static int seq_next(src *s, const evl_event **ev) {
    if (s->seq) {
        int rc = evl_iter_next(s->seq, &s->one);
        *ev = &s->one;
        return rc;
    }
    if (!s->primed) {
        for (size_t i = 0; i < s->n; i++) {
            int rc = evl_iter_next(s->it[i], &s->ev[i]);
            if (rc != EVL_OK && rc != EVL_END) return rc;
            s->live[i] = rc == EVL_OK;
        }
        s->primed = 1;
    } else {
        /* only now may the event handed out last be replaced */
        int rc = evl_iter_next(s->it[s->last], &s->ev[s->last]);
        if (rc != EVL_OK && rc != EVL_END) return rc;
        s->live[s->last] = rc == EVL_OK;
    }
    size_t best = s->n;
    for (size_t i = 0; i < s->n; i++)
        if (s->live[i] && (best == s->n || s->ev[i].position < s->ev[best].position)) best = i;
    if (best == s->n) return EVL_END;
    s->last = best;
    *ev = &s->ev[best];
    return EVL_OK;
}

/* ------------------------------------------------------------ the reader thread */

static void *align8(uint8_t *p) { return (void *)(((uintptr_t)p + 7) & ~(uintptr_t)7); }

/* Room in @p c for one event of @p need bytes: 0, or -1 when the chunk must
 * be handed over first (or cannot grow). */
static int room(ra_chunk *c, size_t need) {
    if (c->used + need <= c->size) return 0;
    if (c->n) return -1;
    uint8_t *a = evl_realloc(c->arena, need);
    if (!a) return -1;
    c->arena = a;
    c->size = need;
    return 0;
}

static void *take(ra_chunk *c, size_t n) {
    uint8_t *p = c->arena + c->used;
    c->used += n;
    return p;
}

/* Copy @p ev into chunk @p c with what the projector needs to bind it.
 * Returns 0, 1 when the chunk is full, or EVL_ENOMEM. */
static int put(src *s, ra_chunk *c, const evl_event *ev) {
    const plan *pl = s->pl;
    src_ev *out = &c->e[c->n];
    memset(out, 0, sizeof *out);
    out->ev.position = ev->position;
    out->hl = evl__proj_handlers_for(pl, ev->type, ev->type_len, &out->nh);
    if (!out->nh) { /* no handler wants it: its position is all that counts */
        out->prepared = 1;
        c->n++;
        return 0;
    }
    uint64_t dwant = 0, mwant = 0;
    int nd = 0, nm = 0;
    for (uint32_t x = 0; x < out->nh; x++) {
        dwant |= pl->dmask[out->hl[x]];
        mwant |= pl->mmask[out->hl[x]];
        nd |= pl->need_data[out->hl[x]];
        nm |= pl->need_meta[out->hl[x]];
    }
    if (pl->data.n > 64) dwant = 0;
    if (pl->meta.n > 64) mwant = 0;
    uint32_t dn = pl->data.n, mn = pl->meta.n;
    if (nd) evl__proj_index_map(&pl->data, s->dval, ev->data, ev->data_len, dwant);
    else memset(s->dval, 0, dn * sizeof *s->dval);
    if (nm) evl__proj_index_map(&pl->meta, s->mval, ev->meta, ev->meta_len, mwant);
    else memset(s->mval, 0, mn * sizeof *s->mval);
    /* the JSON text of the maps and arrays bound, as bind_json() would write it */
    size_t jbytes = 0;
    for (uint32_t k = 0; k < dn; k++) {
        s->jok[k] = 0;
        const uint8_t *v = s->dval[k];
        if (!v || (dwant && (k >= 64 || !(dwant >> k & 1))) || ((*v & 0xe0) != 0x80 && (*v < 0xdc || *v > 0xdf))) continue; /* not a map or an array */
        evl_mp m = {v, ev->data + ev->data_len};
        s->js[k].len = 0;
        int jw = evl__proj_json_text(&s->js[k], &m, 1);
        if (jw == JW_NOMEM) return EVL_ENOMEM;
        if (jw != JW_OK) continue; /* the projector binds it the slow way */
        s->jok[k] = 1;
        jbytes += s->js[k].len;
    }
    size_t bytes = ev->stream_len + ev->type_len + ev->data_len + ev->meta_len + jbytes;
    size_t need = 8 + (size_t)(dn + mn) * sizeof(void *) + (size_t)dn * (sizeof(char *) + sizeof(uint32_t)) + bytes;
    if (room(c, need)) return c->n ? 1 : EVL_ENOMEM;
    uint8_t *base = take(c, 0);
    const uint8_t **dval = align8(base);
    const uint8_t **mval = dval + dn;
    const char **dj = (const char **)(mval + mn);
    uint32_t *djl = (uint32_t *)(dj + dn);
    c->used = (size_t)((uint8_t *)(djl + dn) - c->arena);
    char *stream = take(c, ev->stream_len), *type = take(c, ev->type_len);
    uint8_t *data = take(c, ev->data_len), *meta = take(c, ev->meta_len);
    memcpy(stream, ev->stream, ev->stream_len);
    memcpy(type, ev->type, ev->type_len);
    memcpy(data, ev->data, ev->data_len);
    memcpy(meta, ev->meta, ev->meta_len);
    for (uint32_t k = 0; k < dn; k++) {
        dval[k] = s->dval[k] ? data + (s->dval[k] - ev->data) : NULL;
        dj[k] = NULL;
        djl[k] = 0;
        if (s->jok[k]) {
            char *t = take(c, s->js[k].len);
            memcpy(t, s->js[k].p, s->js[k].len);
            dj[k] = t;
            djl[k] = (uint32_t)s->js[k].len;
        }
    }
    for (uint32_t k = 0; k < mn; k++) mval[k] = s->mval[k] ? meta + (s->mval[k] - ev->meta) : NULL;
    out->ev = *ev;
    out->ev.stream = stream;
    out->ev.type = type;
    out->ev.data = data;
    out->ev.meta = meta;
    out->ev.raw = NULL; /* the projector binds fields, never the record */
    out->ev.raw_len = 0;
    out->ev.chain = NULL;
    out->prepared = 1;
    out->dval = dval;
    out->mval = mval;
    out->djson = dj;
    out->djson_len = djl;
    c->n++;
    return 0;
}

static void *reader_main(void *arg) {
    src *s = arg;
    pthread_setname_np(pthread_self(), "proj-reader");
    const evl_event *pending = NULL; /* read, not yet copied: the chunk it was for was full */
    int done = 0;
    pthread_mutex_lock(&s->mu);
    while (!done) {
        while (!s->idle && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) break;
        ra_chunk *c = s->idle;
        s->idle = c->next;
        pthread_mutex_unlock(&s->mu);
        c->n = 0;
        c->used = 0;
        c->rc = EVL_OK;
        while (c->n < RA_CHUNK_EVENTS && !atomic_load_explicit(&s->stop_now, memory_order_relaxed)) {
            int rc = EVL_OK;
            if (!pending) rc = seq_next(s, &pending);
            if (rc) { c->rc = rc; done = 1; pending = NULL; break; }
            rc = put(s, c, pending);
            if (rc == 1) break; /* full: pending goes first into the next chunk */
            pending = NULL;
            if (rc) { c->rc = rc; done = 1; break; }
        }
        pthread_mutex_lock(&s->mu);
        c->next = NULL;
        if (s->ready_last) s->ready_last->next = c;
        else s->ready = c;
        s->ready_last = c;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void chunks_free(ra_chunk *c) {
    while (c) {
        ra_chunk *next = c->next;
        evl_free(c->e);
        evl_free(c->arena);
        evl_free(c);
        c = next;
    }
}

/* Start the reader thread; on failure the source stays sequential. */
static void ra_start(src *s, const plan *pl) {
    uint32_t dn = pl->data.n, mn = pl->meta.n;
    s->pl = pl;
    s->dval = evl_calloc(dn + 1, sizeof *s->dval);
    s->mval = evl_calloc(mn + 1, sizeof *s->mval);
    s->js = evl_calloc(dn + 1, sizeof *s->js);
    s->jok = evl_calloc(dn + 1, 1);
    int ok = s->dval && s->mval && s->js && s->jok;
    for (int i = 0; i < RA_CHUNKS && ok; i++) {
        ra_chunk *c = evl_calloc(1, sizeof *c);
        if (c) {
            c->e = evl_malloc(RA_CHUNK_EVENTS * sizeof *c->e);
            c->arena = evl_malloc(RA_ARENA);
            c->size = RA_ARENA;
            c->next = s->idle;
            s->idle = c;
        }
        ok = c && c->e && c->arena;
    }
    if (ok && pthread_mutex_init(&s->mu, NULL) == 0) {
        if (pthread_cond_init(&s->cv, NULL) == 0) {
            if (pthread_create(&s->thread, NULL, reader_main, s) == 0) {
                s->ahead = 1;
                return;
            }
            pthread_cond_destroy(&s->cv);
        }
        pthread_mutex_destroy(&s->mu);
    }
    chunks_free(s->idle);
    s->idle = NULL;
}

/* ------------------------------------------------------------ the projector's side */

int evl__proj_src_open(proj *p, int typed, uint64_t from, uint64_t until, uint64_t span, src *s) {
    evl_log *log = p->eng->log;
    memset(s, 0, sizeof *s);
    int rc = EVL_OK;
    if (!typed) {
        rc = evl_iter_open(log, &(evl_query){.from_position = from, .until_position = until}, &s->seq);
    } else {
        const nametab *t = &p->plan.types;
        for (uint32_t k = 0; k < t->n && rc == EVL_OK; k++) { /* the names are the spec's NUL-terminated strings */
            rc = evl_iter_open(log, &(evl_query){.type = t->name[k], .from_position = from, .until_position = until},
                               &s->it[s->n]);
            if (rc == EVL_OK) s->n++;
        }
    }
    if (rc) {
        evl__proj_src_close(s);
        return rc;
    }
    if (span >= RA_MIN_SPAN && !p->eng->opt.no_readahead && sysconf(_SC_NPROCESSORS_ONLN) > 1) ra_start(s, &p->plan);
    return EVL_OK;
}

int evl__proj_src_next(src *s, const src_ev **out) {
    if (!s->ahead) {
        const evl_event *ev;
        int rc = seq_next(s, &ev);
        if (rc) return rc;
        s->cur_ev = (src_ev){.ev = *ev};
        *out = &s->cur_ev;
        return EVL_OK;
    }
    for (;;) {
        ra_chunk *c = s->cur;
        if (c && s->i < c->n) {
            *out = &c->e[s->i++];
            return EVL_OK;
        }
        if (c && c->rc != EVL_OK) return c->rc;
        pthread_mutex_lock(&s->mu);
        if (c) { /* every event of it is applied: the reader may fill it again */
            c->next = s->idle;
            s->idle = c;
            s->cur = NULL;
            pthread_cond_broadcast(&s->cv);
        }
        while (!s->ready) pthread_cond_wait(&s->cv, &s->mu);
        c = s->ready;
        s->ready = c->next;
        if (!s->ready) s->ready_last = NULL;
        pthread_mutex_unlock(&s->mu);
        s->cur = c;
        s->i = 0;
    }
}

void evl__proj_src_close(src *s) {
    if (s->ahead) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        atomic_store(&s->stop_now, 1);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        if (s->cur) { s->cur->next = s->idle; s->idle = s->cur; }
        if (s->ready_last) { s->ready_last->next = s->idle; s->idle = s->ready; }
        chunks_free(s->idle);
    }
    if (s->pl) {
        for (uint32_t k = 0; k < s->pl->data.n; k++) evl_free(s->js ? s->js[k].p : NULL);
    }
    evl_free(s->dval);
    evl_free(s->mval);
    evl_free(s->js);
    evl_free(s->jok);
    evl_iter_close(s->seq);
    for (size_t i = 0; i < s->n; i++) evl_iter_close(s->it[i]);
    memset(s, 0, sizeof *s);
}
