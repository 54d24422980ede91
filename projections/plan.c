/* The plan: a projection's spec compiled, once per projector, into lookup
 * tables (event type -> handlers; each bound :field/$field -> a slot filled
 * by one walk of the event's map), and the binding of an event's values to
 * the prepared statements.  See the comment on `plan` in proj_int.h. */
#include <math.h>
#include <string.h>

#include "evlog/json.h"
#include "evlog/mp.h"
#include "projections/proj_int.h"

/* Names are short (types, field names): hash them eight bytes at a time
 * (a multiply-xorshift mix) rather than byte by byte; it runs for the type
 * and every key of every event.  The tail is read with at most two loads
 * (overlapping ones), never a variable-length copy, which is a call. */
static inline uint32_t hash_name(const char *s, size_t n) {
    uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ull, w = 0;
    const char *e = s + n;
    if (n >= 8) {
        for (; n > 8; s += 8, n -= 8) {
            memcpy(&w, s, 8);
            h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
            h ^= h >> 31;
        }
        memcpy(&w, e - 8, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, e - 4, 4);
        w = a | (uint64_t)b << 32;
    } else if (n) {
        w = (uint8_t)s[0] | (uint64_t)(uint8_t)s[n >> 1] << 8 | (uint64_t)(uint8_t)e[-1] << 16;
    }
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    return (uint32_t)(h ^ (h >> 32));
}

/* Names are short: compare them inline, a word at a time, rather than
 * through a call to memcmp. */
static inline int same_name(const char *a, const char *b, size_t n) {
    for (; n >= 8; a += 8, b += 8, n -= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
    }
    for (; n; n--)
        if (*a++ != *b++) return 0;
    return 1;
}

/* It runs for the type and every key of every event a handler wants. */
static inline int32_t nametab_find(const nametab *t, const char *s, size_t n) {
    if (!t->mask) return -1;
    uint32_t h = hash_name(s, n);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        int32_t k = t->tab[i];
        if (k < 0) return -1;
        if (t->hash[k] == h && t->len[k] == n && same_name(t->name[k], s, n)) return k;
    }
}

/* Add a name (setup only: linear dedup is fine); returns its index or -1 on ENOMEM. */
static int32_t nametab_add(nametab *t, const char *s, size_t n) {
    for (uint32_t k = 0; k < t->n; k++)
        if (t->len[k] == n && memcmp(t->name[k], s, n) == 0) return (int32_t)k;
    const char **gn = evl_realloc(t->name, (t->n + 1) * sizeof *gn);
    if (!gn) return -1;
    t->name = gn;
    uint32_t *gl = evl_realloc(t->len, (t->n + 1) * sizeof *gl);
    if (!gl) return -1;
    t->len = gl;
    t->name[t->n] = s;
    t->len[t->n] = (uint32_t)n;
    return (int32_t)t->n++;
}

/* Build the hash table once every name is in; at most half full. */
static int nametab_seal(nametab *t) {
    if (!t->n) return EVL_OK;
    uint32_t size = 4;
    while (size < 2 * t->n) size *= 2;
    if (!(t->tab = evl_malloc(size * sizeof *t->tab)) || !(t->hash = evl_malloc(t->n * sizeof *t->hash)))
        return EVL_ENOMEM;
    for (uint32_t k = 0; k < t->n; k++) t->hash[k] = hash_name(t->name[k], t->len[k]);
    for (uint32_t i = 0; i < size; i++) t->tab[i] = -1;
    t->mask = size - 1;
    for (uint32_t k = 0; k < t->n; k++) {
        uint32_t i = t->hash[k] & t->mask;
        while (t->tab[i] >= 0) i = (i + 1) & t->mask;
        t->tab[i] = (int32_t)k;
    }
    return EVL_OK;
}

static void nametab_free(nametab *t) {
    evl_free(t->tab);
    evl_free(t->hash);
    evl_free(t->name);
    evl_free(t->len);
    memset(t, 0, sizeof *t);
}

void evl__proj_plan_free(plan *pl, const evl_proj_spec *sp) {
    nametab_free(&pl->types);
    nametab_free(&pl->data);
    nametab_free(&pl->meta);
    evl_free(pl->tfirst);
    evl_free(pl->tn);
    evl_free(pl->hlist);
    evl_free(pl->dval);
    evl_free(pl->mval);
    if (pl->slot) {
        for (size_t h = 0; h < sp->n_handlers; h++) {
            if (!pl->slot[h]) continue;
            for (size_t s = 0; s < sp->handlers[h].n_stmts; s++) evl_free(pl->slot[h][s]);
            evl_free(pl->slot[h]);
        }
        evl_free(pl->slot);
    }
    evl_free(pl->need_data);
    evl_free(pl->need_meta);
    evl_free(pl->dmask);
    evl_free(pl->mmask);
    /* n_json is counted while planning, before the array exists */
    for (size_t i = 0; pl->json && i < pl->n_json; i++) evl_free(pl->json[i].p);
    evl_free(pl->json);
    memset(pl, 0, sizeof *pl);
}

int evl__proj_plan_build(plan *pl, const evl_proj_spec *sp) {
    size_t nh = sp->n_handlers;
    memset(pl, 0, sizeof *pl);
    /* types, and the handlers each one runs */
    for (size_t h = 0; h < nh; h++)
        for (size_t t = 0; t < sp->handlers[h].n_types; t++)
            if (nametab_add(&pl->types, sp->handlers[h].types[t], strlen(sp->handlers[h].types[t])) < 0)
                return EVL_ENOMEM;
    if (nametab_seal(&pl->types)) return EVL_ENOMEM;
    uint32_t nt = pl->types.n;
    pl->tfirst = evl_calloc(nt + 1, sizeof *pl->tfirst);
    pl->tn = evl_calloc(nt + 1, sizeof *pl->tn);
    pl->hlist = evl_calloc((nt + 1) * (nh ? nh : 1), sizeof *pl->hlist);
    if (!pl->tfirst || !pl->tn || !pl->hlist) return EVL_ENOMEM;
    uint32_t at = 0;
    for (uint32_t k = 0; k <= nt; k++) { /* k == nt: the wildcard list */
        uint32_t first = at;
        for (size_t h = 0; h < nh; h++) {
            const spec_handler *hd = &sp->handlers[h];
            int run = hd->wildcard;
            for (size_t t = 0; t < hd->n_types && !run && k < nt; t++)
                run = strlen(hd->types[t]) == pl->types.len[k] &&
                      !memcmp(hd->types[t], pl->types.name[k], pl->types.len[k]);
            if (run) pl->hlist[at++] = (uint32_t)h;
        }
        if (k < nt) { pl->tfirst[k] = first; pl->tn[k] = at - first; }
        else { pl->wfirst = first; pl->wn = at - first; }
    }
    /* field slots */
    if (!(pl->slot = evl_calloc(nh ? nh : 1, sizeof *pl->slot)) ||
        !(pl->need_data = evl_calloc(nh ? nh : 1, 1)) || !(pl->need_meta = evl_calloc(nh ? nh : 1, 1)) ||
        !(pl->dmask = evl_calloc(nh ? nh : 1, sizeof *pl->dmask)) ||
        !(pl->mmask = evl_calloc(nh ? nh : 1, sizeof *pl->mmask)))
        return EVL_ENOMEM;
    for (size_t h = 0; h < nh; h++) {
        const spec_handler *hd = &sp->handlers[h];
        if (!(pl->slot[h] = evl_calloc(hd->n_stmts ? hd->n_stmts : 1, sizeof **pl->slot))) return EVL_ENOMEM;
        for (size_t s = 0; s < hd->n_stmts; s++) {
            const spec_stmt *ss = &hd->stmts[s];
            if (!(pl->slot[h][s] = evl_calloc(ss->n_params ? ss->n_params : 1, sizeof ***pl->slot)))
                return EVL_ENOMEM;
            if (ss->n_params > pl->n_json) pl->n_json = ss->n_params;
            for (size_t k = 0; k < ss->n_params; k++) {
                const spec_param *pp = &ss->params[k];
                int32_t slot = -1;
                if (pp->kind == P_DATA || pp->kind == P_META) {
                    slot = nametab_add(pp->kind == P_DATA ? &pl->data : &pl->meta, pp->key, pp->key_len);
                    if (slot < 0) return EVL_ENOMEM;
                    if (pp->kind == P_DATA) pl->need_data[h] = 1;
                    else pl->need_meta[h] = 1;
                    if (slot < 64) (pp->kind == P_DATA ? pl->dmask : pl->mmask)[h] |= 1ull << slot;
                }
                pl->slot[h][s][k] = slot;
            }
        }
    }
    if (nametab_seal(&pl->data) || nametab_seal(&pl->meta)) return EVL_ENOMEM;
    if (!(pl->dval = evl_calloc(pl->data.n + 1, sizeof *pl->dval)) ||
        !(pl->mval = evl_calloc(pl->meta.n + 1, sizeof *pl->mval)) ||
        !(pl->json = evl_calloc(pl->n_json + 1, sizeof *pl->json)))
        return EVL_ENOMEM;
    return EVL_OK;
}

/* The handlers an event of this type runs. */
const uint32_t *evl__proj_handlers_for(const plan *pl, const char *type, size_t len, uint32_t *n) {
    int32_t k = nametab_find(&pl->types, type, len);
    if (k < 0) { *n = pl->wn; return pl->hlist + pl->wfirst; }
    *n = pl->tn[k];
    return pl->hlist + pl->tfirst[k];
}
/* ------------------------------------------------------------ reading values */


/* Skip one msgpack value.  evl_mp_skip() also re-checks every string's
 * UTF-8, which the log already did when the event was appended (and the
 * record's CRC was just verified): here that is pure cost.  Still bounded:
 * evl__proj_mp_next() never reads past the end, and no recursion. */
static int skip_value(evl_mp *m) {
    uint64_t left = 1;
    while (left) {
        evl_mp_val v;
        if (evl__proj_mp_next(m, &v)) return -1;
        left--;
        if (v.kind == EVL_MP_ARRAY) left += v.v.n;
        else if (v.kind == EVL_MP_MAP) left += 2ull * v.v.n;
    }
    return 0;
}

/* One pass over a map: where each slot's value starts (the first occurrence
 * of a repeated key, as evl_mp_map_find() would find it).  The walk stops
 * once every slot of @p want is found: skipping a big value nobody binds
 * after the last wanted key (a node's GPU list) costs as much as reading it.
 * @p want 0: walk the whole map. */
void evl__proj_index_map(const nametab *t, const uint8_t **val, const uint8_t *map, size_t len, uint64_t want) {
    memset(val, 0, t->n * sizeof *val);
    if (!t->n || !map) return;
    evl_mp m = {map, map + len};
    evl_mp_val v, k;
    uint64_t found = 0;
    if (evl__proj_mp_next(&m, &v) || v.kind != EVL_MP_MAP) return;
    for (uint32_t i = 0; i < v.v.n; i++) {
        if (evl__proj_mp_next(&m, &k) || k.kind != EVL_MP_STR) return;
        int32_t s = nametab_find(t, k.v.s.ptr, k.v.s.len);
        if (s >= 0 && !val[s]) {
            val[s] = m.p;
            if (s < 64 && (found |= want & (1ull << s)) == want && want) return;
        }
        /* the last value needs no skipping: nothing follows it (a GPU list
         * ends a heartbeat, and a field the event lacks, such as `at`,
         * keeps `want` from ever being complete) */
        if (i + 1 == v.v.n || skip_value(&m)) return;
    }
}


/* Bind the map or array at [p, end) as JSON text, from parameter index k's buffer. */
static int bind_json(plan *pl, sqlite3_stmt *st, int i, size_t k, const uint8_t *p, const uint8_t *end) {
    buf *b = &pl->json[k];
    evl_mp m = {p, end};
    b->len = 0;
    switch (evl__proj_json_text(b, &m, 1)) {
    case JW_OK: return sqlite3_bind_text(st, i, b->p, (int)b->len, SQLITE_STATIC);
    case JW_INVALID: return sqlite3_bind_null(st, i);
    case JW_NOMEM: return SQLITE_NOMEM;
    default: return evl__proj_bind_mp(st, i, p, end); /* the reference, for rare shapes */
    }
}

/* ------------------------------------------------------------ binding */

/* A field's value, by the rules of evl__proj_bind_mp (sqlite.c). */
static int bind_value(plan *pl, sqlite3_stmt *st, int i, size_t k, const uint8_t *p, const uint8_t *end) {
    evl_mp m = {p, end};
    evl_mp_val v;
    if (evl__proj_mp_next(&m, &v)) return sqlite3_bind_null(st, i);
    switch (v.kind) {
    case EVL_MP_NIL: return sqlite3_bind_null(st, i);
    case EVL_MP_BOOL: return sqlite3_bind_int(st, i, v.v.b);
    case EVL_MP_UINT:
        return v.v.u <= INT64_MAX ? sqlite3_bind_int64(st, i, (sqlite3_int64)v.v.u)
                                  : sqlite3_bind_double(st, i, (double)v.v.u);
    case EVL_MP_INT: return sqlite3_bind_int64(st, i, v.v.i);
    case EVL_MP_FLOAT: return sqlite3_bind_double(st, i, v.v.f);
    /* strings and blobs point into the log's map: the projector binds every
     * parameter again before each step, inside its read transaction */
    case EVL_MP_STR: return sqlite3_bind_text(st, i, v.v.s.ptr, (int)v.v.s.len, SQLITE_STATIC);
    case EVL_MP_BIN: return sqlite3_bind_blob(st, i, v.v.s.ptr, (int)v.v.s.len, SQLITE_STATIC);
    case EVL_MP_EXT: return sqlite3_bind_blob(st, i, v.v.ext.ptr, (int)v.v.ext.len, SQLITE_STATIC);
    case EVL_MP_ARRAY: case EVL_MP_MAP: return bind_json(pl, st, i, k, p, end);
    }
    return sqlite3_bind_null(st, i);
}

/* @time: ISO-8601 UTC with milliseconds, exactly evl_time_format(ns, 3). */
static const char *time_text(plan *pl, int64_t ns, int *len) {
    if (EVL_UNLIKELY(ns < INT64_MIN + 1000000000)) { /* sec * 1e9 below would overflow */
        pl->t_valid = 0;
        *len = (int)evl_time_format(ns, 3, pl->t_text);
        return pl->t_text;
    }
    int64_t sec = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) { frac += 1000000000; sec--; }
    if (!pl->t_valid || sec != pl->t_sec) {
        evl_time_format(sec * 1000000000, 3, pl->t_text); /* "...SS.000Z" */
        pl->t_len = (int)strlen(pl->t_text);
        pl->t_prefix = pl->t_len - 5;
        pl->t_sec = sec;
        pl->t_valid = 1;
    }
    int ms = (int)(frac / 1000000);
    char *f = pl->t_text + pl->t_prefix + 1;
    f[0] = (char)('0' + ms / 100);
    f[1] = (char)('0' + ms / 10 % 10);
    f[2] = (char)('0' + ms % 10);
    *len = pl->t_len;
    return pl->t_text;
}


int evl__proj_bind_all(plan *pl, sqlite3_stmt *st, const spec_stmt *ss, const int32_t *slot, ev_ctx *c) {
    const evl_event *ev = c->ev;
    int rc = SQLITE_OK;
    for (size_t k = 0; k < ss->n_params && rc == SQLITE_OK; k++) {
        int i = (int)k + 1;
        switch (ss->params[k].kind) {
        case P_DATA: {
            const uint8_t *v = c->dval[slot[k]];
            if (!v) rc = sqlite3_bind_null(st, i);
            else if (c->djson && c->djson[slot[k]])
                rc = sqlite3_bind_text(st, i, c->djson[slot[k]], (int)c->djson_len[slot[k]], SQLITE_STATIC);
            else rc = bind_value(pl, st, i, k, v, ev->data + ev->data_len);
            break;
        }
        case P_META:
            rc = c->mval[slot[k]] ? bind_value(pl, st, i, k, c->mval[slot[k]], ev->meta + ev->meta_len)
                                  : sqlite3_bind_null(st, i);
            break;
        case P_STREAM: rc = sqlite3_bind_text(st, i, ev->stream, (int)ev->stream_len, SQLITE_STATIC); break;
        case P_TYPE: rc = sqlite3_bind_text(st, i, ev->type, (int)ev->type_len, SQLITE_STATIC); break;
        case P_POSITION: rc = sqlite3_bind_int64(st, i, (sqlite3_int64)ev->position); break;
        case P_REVISION: rc = sqlite3_bind_int64(st, i, (sqlite3_int64)ev->revision); break;
        case P_TIME_NS: rc = sqlite3_bind_int64(st, i, ev->time_ns); break;
        case P_CATEGORY:
            rc = sqlite3_bind_text(st, i, ev->stream, (int)evl_stream_category(ev->stream, ev->stream_len), SQLITE_STATIC);
            break;
        case P_TIME:
            if (!c->time) c->time = time_text(pl, ev->time_ns, &c->time_len);
            rc = sqlite3_bind_text(st, i, c->time, c->time_len, SQLITE_STATIC);
            break;
        case P_ID:
            if (!c->have_id) { evl_uuid_format(ev->id, c->id); c->have_id = 1; }
            rc = sqlite3_bind_text(st, i, c->id, 36, SQLITE_STATIC);
            break;
        /* the whole map; the log's decoder guarantees a map filling exactly [data, data + len) */
        case P_DATA_JSON: rc = bind_json(pl, st, i, k, ev->data, ev->data + ev->data_len); break;
        case P_META_JSON: rc = bind_json(pl, st, i, k, ev->meta, ev->meta + ev->meta_len); break;
        }
    }
    return rc;
}