/* The projection engine: one thread per projection.
 *
 * Each projector owns one SQLite connection and its prepared statements.
 * It sleeps on the engine's condition variable, which the log's commit
 * notification signals; it then reads the events after its checkpoint and
 * applies them in one SQLite transaction that also moves the checkpoint, so
 * a crash anywhere leaves rows and checkpoint in agreement.  A failing
 * statement rolls the batch back, re-applies the events before the failing
 * one, and leaves the projection faulted at that event; the others go on.
 *
 * Per event the engine should add little to SQLite's own work (bench/project
 * measures it against the same statements run straight into SQLite): the
 * spec is compiled into lookup tables once ("the plan"), maps and arrays are
 * written as JSON text without building a tree, nothing is allocated per
 * event, and events no handler wants are skipped through the log's type
 * index when they are most of the log ("reading the log"). */
#include <dirent.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evlog/json.h"
#include "evlog/mp.h"
#include "projections/proj_int.h"

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
    sqlite3_stmt *st_begin, *st_commit, *st_rollback; /* prepared once: a batch of one event
                                                          should not parse SQL three times */
    double seen_matched, seen_span; /* moving sums: events matched / positions covered */
    plan plan;                  /* lookup tables built from the spec */
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

/* Names are short (types, field names): hash them eight bytes at a time
 * (a multiply-xorshift mix) rather than byte by byte; it runs for the type
 * and every key of every event. */
static uint32_t hash_name(const char *s, size_t n) {
    uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ull, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    if (n) {
        w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0x94d049bb133111ebull;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static int32_t nametab_find(const nametab *t, const char *s, size_t n) {
    if (!t->mask) return -1;
    for (uint32_t i = hash_name(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t k = t->tab[i];
        if (k < 0) return -1;
        if (t->len[k] == n && memcmp(t->name[k], s, n) == 0) return k;
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
    if (!(t->tab = evl_malloc(size * sizeof *t->tab))) return EVL_ENOMEM;
    for (uint32_t i = 0; i < size; i++) t->tab[i] = -1;
    t->mask = size - 1;
    for (uint32_t k = 0; k < t->n; k++) {
        uint32_t i = hash_name(t->name[k], t->len[k]) & t->mask;
        while (t->tab[i] >= 0) i = (i + 1) & t->mask;
        t->tab[i] = (int32_t)k;
    }
    return EVL_OK;
}

static void nametab_free(nametab *t) {
    evl_free(t->tab);
    evl_free(t->name);
    evl_free(t->len);
    memset(t, 0, sizeof *t);
}

static void plan_free(plan *pl, const evl_proj_spec *sp) {
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
    for (size_t i = 0; i < pl->n_json; i++) evl_free(pl->json[i].p);
    evl_free(pl->json);
    memset(pl, 0, sizeof *pl);
}

static int plan_build(plan *pl, const evl_proj_spec *sp) {
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
static const uint32_t *handlers_for(const plan *pl, const char *type, size_t len, uint32_t *n) {
    int32_t k = nametab_find(&pl->types, type, len);
    if (k < 0) { *n = pl->wn; return pl->hlist + pl->wfirst; }
    *n = pl->tn[k];
    return pl->hlist + pl->tfirst[k];
}

/* ------------------------------------------------------------ reading values */

/* evl_mp_read() with the shapes events are made of (small integers, short
 * strings, doubles, nil, booleans, small containers) decoded inline: it runs
 * for every key and value an event binds, and the call costs more than the
 * decoding.  Same checks, same results; anything else goes to evl_mp_read(). */
static inline int mp_next(evl_mp *m, evl_mp_val *v) {
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

/* Skip one msgpack value.  evl_mp_skip() also re-checks every string's
 * UTF-8, which the log already did when the event was appended (and the
 * record's CRC was just verified): here that is pure cost.  Still bounded:
 * mp_next() never reads past the end, and no recursion. */
static int skip_value(evl_mp *m) {
    uint64_t left = 1;
    while (left) {
        evl_mp_val v;
        if (mp_next(m, &v)) return -1;
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
static void index_map(const nametab *t, const uint8_t **val, const uint8_t *map, size_t len, uint64_t want) {
    memset(val, 0, t->n * sizeof *val);
    if (!t->n || !map) return;
    evl_mp m = {map, map + len};
    evl_mp_val v, k;
    uint64_t found = 0;
    if (mp_next(&m, &v) || v.kind != EVL_MP_MAP) return;
    for (uint32_t i = 0; i < v.v.n; i++) {
        if (mp_next(&m, &k) || k.kind != EVL_MP_STR) return;
        int32_t s = nametab_find(t, k.v.s.ptr, k.v.s.len);
        if (s >= 0 && !val[s]) {
            val[s] = m.p;
            if (s < 64 && (found |= want & (1ull << s)) == want && want) return;
        }
        if (skip_value(&m)) return;
    }
}

/* ------------------------------------------------------------ msgpack -> JSON text
 *
 * Maps and arrays bind as JSON text.  The reference conversion is
 * evl_json_from_msgpack() + json_dumps(JSON_COMPACT | JSON_ENCODE_ANY)
 * (evl__proj_bind_mp in sqlite.c): a jansson tree, one allocation per node,
 * then printf for every number.  This writes the same bytes straight into a
 * reused buffer.  Shapes where matching jansson byte for byte would take
 * more code than they are worth (bin/ext, repeated keys, big maps, NUL in a
 * key) answer JW_OTHER and go through the reference instead. */

enum { JW_OK, JW_INVALID, JW_OTHER, JW_NOMEM };
#define JW_MAX_KEYS 32

static int buf_reserve(buf *b, size_t n) {
    if (b->cap - b->len >= n) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) cap *= 2;
    char *g = evl_realloc(b->p, cap);
    if (!g) return -1;
    b->p = g;
    b->cap = cap;
    return 0;
}

static int put(buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return JW_NOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return JW_OK;
}

/* Decimal digits of v, right-aligned ending at end; returns the start. */
static char *u64_digits(uint64_t v, char *end) {
    do { *--end = (char)('0' + v % 10); v /= 10; } while (v);
    return end;
}

static int put_i64(buf *b, int64_t v) {
    char tmp[24], *end = tmp + sizeof tmp;
    char *s = u64_digits(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, end);
    if (v < 0) *--s = '-';
    return put(b, s, (size_t)(end - s));
}

/* A double as jansson writes it (jsonp_dtostr): printf's "%.17g", then ".0"
 * when that looks like an integer, and the exponent without '+' or leading
 * zeros.  "%.17g" is correctly rounded (ties to even) and for 1e-4 <= |v| <
 * 1e17 uses plain notation; there the 17 digits come exactly from 128-bit
 * integer arithmetic instead of printf's multi-precision code.  Elsewhere,
 * printf itself. */
static size_t fmt_real(double v, char out[40]) {
    size_t n = 0;
#ifdef __SIZEOF_INT128__
    double a = v < 0 ? -v : v;
    if (a >= 1e-4 && a < 1e17) {
        uint64_t bits;
        memcpy(&bits, &a, sizeof bits);
        uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
        int e2 = (int)(bits >> 52) - 1075;                /* a = m * 2^e2 */
        int l2 = e2 + 52;                                  /* floor(log2(a)) */
        /* floor(l2 * log10(2)), i.e. floor(log10(a)) or one less; no shift of a negative */
        int x = l2 >= 0 ? (l2 * 78913) >> 18 : -((-l2 * 78913 + 262143) >> 18);
        uint64_t d = 0;
        for (int tries = 0; tries < 3; tries++) {
            int p = 16 - x;                               /* d = round(a * 10^p): 17 digits */
            if (p < 0 || p > 21) goto slow;               /* cannot happen in range; be safe */
            static const uint64_t pow10[20] = {
                1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
                1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
                100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
                1000000000000000000ull, 10000000000000000000ull};
            unsigned __int128 num = (unsigned __int128)m * pow10[p < 19 ? p : 19];
            if (p > 19) num *= pow10[p - 19];             /* < 2^53 * 10^21 < 2^123 */
            if (e2 >= 0) {
                num <<= e2;                               /* e2 <= 4 here: no overflow */
            } else {
                unsigned s = (unsigned)-e2;               /* <= 66 in range */
                unsigned __int128 q = num >> s, r = num - (q << s), half = (unsigned __int128)1 << (s - 1);
                num = q + (r > half || (r == half && (q & 1)));
            }
            d = (uint64_t)num;
            if (d >= 100000000000000000ull) x++;
            else if (d < 10000000000000000ull) x--;
            else break;
        }
        if (d < 10000000000000000ull || d >= 100000000000000000ull || x < -4 || x > 16) goto slow;
        char dig[17];
        u64_digits(d, dig + 17);
        int last = 16;
        while (last > 0 && dig[last] == '0') last--;      /* %g drops trailing zeros */
        if (v < 0) out[n++] = '-';
        if (x >= 0) {
            for (int i = 0; i <= x; i++) out[n++] = dig[i];
            out[n++] = '.';
            if (last > x) for (int i = x + 1; i <= last; i++) out[n++] = dig[i];
            else out[n++] = '0';                          /* jansson: "85" -> "85.0" */
        } else {
            out[n++] = '0';
            out[n++] = '.';
            for (int i = 0; i < -x - 1; i++) out[n++] = '0';
            for (int i = 0; i <= last; i++) out[n++] = dig[i];
        }
        out[n] = 0;
        return n;
    }
slow:
#endif
    n = (size_t)snprintf(out, 40, "%.17g", v);
    if (n >= 40) return 0;
    const char *point = localeconv()->decimal_point;      /* as jansson's from_locale() */
    if (*point != '.') {
        char *at = strchr(out, *point);
        if (at) *at = '.';
    }
    if (!strchr(out, '.') && !strchr(out, 'e')) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = 0;
    }
    char *e = strchr(out, 'e');
    if (e) {
        char *start = e + 1, *end = start + 1;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) {
            memmove(start, end, n + 1 - (size_t)(end - out));
            n -= (size_t)(end - start);
        }
    }
    return n;
}

static int put_real(buf *b, double v) {
    char tmp[40];
    size_t n = fmt_real(v, tmp);
    return n ? put(b, tmp, n) : JW_OTHER;
}

/* A JSON string as jansson's dump_string() writes it: '"' and '\\'
 * escaped, control characters as \b \f \n \r \t or \u00XX, everything else
 * (DEL, '/', non-ASCII) as is.  Invalid UTF-8 fails the conversion.
 * *nul tells whether the string holds a NUL byte. */
static int put_string(buf *b, const char *s, size_t n, int *nul) {
    static const char hex[] = "0123456789ABCDEF";
    if (buf_reserve(b, 6 * n + 2)) return JW_NOMEM;
    char *o = b->p + b->len;
    unsigned high = 0;
    size_t i = 0;
    *o++ = '"';
    /* eight bytes at a time while none needs a look: no control character,
     * quote, backslash or non-ASCII byte */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
        uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
        if (((w - ones * 0x20) | (q - ones) | (bs - ones) | w) & highs) break;
        memcpy(o, &w, 8);
        o += 8;
    }
    for (; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            high |= c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            if (c == 0) *nul = 1;
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
    }
    if ((high & 0x80) && !evl_utf8_valid(s, n)) return JW_INVALID;
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return JW_OK;
}

/* One value at m; depth as evl_json_from_msgpack() counts it (the top is 1). */
static int put_json(buf *b, evl_mp *m, int depth) {
    evl_mp_val v;
    int rc;
    if (mp_next(m, &v)) return JW_INVALID;
    switch (v.kind) {
    case EVL_MP_NIL: return put(b, "null", 4);
    case EVL_MP_BOOL: return v.v.b ? put(b, "true", 4) : put(b, "false", 5);
    case EVL_MP_UINT:
        return v.v.u > (uint64_t)INT64_MAX ? put_real(b, (double)v.v.u) : put_i64(b, (int64_t)v.v.u);
    case EVL_MP_INT: return put_i64(b, v.v.i);
    case EVL_MP_FLOAT: return isfinite(v.v.f) ? put_real(b, v.v.f) : put(b, "null", 4);
    case EVL_MP_STR: {
        int nul = 0;
        return put_string(b, v.v.s.ptr, v.v.s.len, &nul);
    }
    case EVL_MP_BIN: case EVL_MP_EXT: return JW_OTHER;
    case EVL_MP_ARRAY:
        if (depth > EVL_MAX_DEPTH) return JW_INVALID;
        if ((rc = put(b, "[", 1))) return rc;
        for (uint32_t i = 0; i < v.v.n; i++)
            if ((i && (rc = put(b, ",", 1))) || (rc = put_json(b, m, depth + 1))) return rc;
        return put(b, "]", 1);
    case EVL_MP_MAP: {
        if (depth > EVL_MAX_DEPTH) return JW_INVALID;
        if (v.v.n > JW_MAX_KEYS) return JW_OTHER;
        const char *key[JW_MAX_KEYS];
        uint32_t len[JW_MAX_KEYS];
        if ((rc = put(b, "{", 1))) return rc;
        for (uint32_t i = 0; i < v.v.n; i++) {
            evl_mp_val k;
            if (mp_next(m, &k) || k.kind != EVL_MP_STR) return JW_INVALID;
            /* jansson keeps a repeated key once (first place, last value) */
            for (uint32_t j = 0; j < i; j++)
                if (len[j] == k.v.s.len && (!len[j] || key[j][0] == k.v.s.ptr[0]) &&
                    !memcmp(key[j], k.v.s.ptr, k.v.s.len))
                    return JW_OTHER;
            key[i] = k.v.s.ptr;
            len[i] = k.v.s.len;
            int nul = 0;
            if ((i && (rc = put(b, ",", 1))) || (rc = put_string(b, k.v.s.ptr, k.v.s.len, &nul))) return rc;
            if (nul) return JW_OTHER; /* how jansson writes a key with a NUL: not worth matching */
            if ((rc = put(b, ":", 1)) || (rc = put_json(b, m, depth + 1))) return rc;
        }
        return put(b, "}", 1);
    }
    }
    return JW_INVALID;
}

/* Bind the map or array at [p, end) as JSON text, from parameter index k's buffer. */
static int bind_json(plan *pl, sqlite3_stmt *st, int i, size_t k, const uint8_t *p, const uint8_t *end) {
    buf *b = &pl->json[k];
    evl_mp m = {p, end};
    b->len = 0;
    switch (put_json(b, &m, 1)) {
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
    if (mp_next(&m, &v)) return sqlite3_bind_null(st, i);
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

typedef struct ev_ctx {
    const evl_event *ev;
    const char *time;
    int time_len;
    char id[37];
    int have_id;
} ev_ctx;

static int bind_all(plan *pl, sqlite3_stmt *st, const spec_stmt *ss, const int32_t *slot, ev_ctx *c) {
    const evl_event *ev = c->ev;
    int rc = SQLITE_OK;
    for (size_t k = 0; k < ss->n_params && rc == SQLITE_OK; k++) {
        int i = (int)k + 1;
        switch (ss->params[k].kind) {
        case P_DATA:
            rc = pl->dval[slot[k]] ? bind_value(pl, st, i, k, pl->dval[slot[k]], ev->data + ev->data_len)
                                   : sqlite3_bind_null(st, i);
            break;
        case P_META:
            rc = pl->mval[slot[k]] ? bind_value(pl, st, i, k, pl->mval[slot[k]], ev->meta + ev->meta_len)
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

/* Run every handler that matches; on failure fill err with "file:line: message". */
static int apply_event(proj *p, const evl_event *ev, int *matched, char *err, size_t errlen) {
    const evl_proj_spec *sp = p->spec;
    plan *pl = &p->plan;
    ev_ctx c = {.ev = ev};
    int data_done = 0, meta_done = 0;
    uint32_t nh;
    const uint32_t *hl = handlers_for(pl, ev->type, ev->type_len, &nh);
    *matched = nh > 0;
    /* the slots this event's handlers bind, so the walk of its map can stop early */
    uint64_t dwant = 0, mwant = 0;
    for (uint32_t x = 0; x < nh; x++) {
        dwant |= pl->dmask[hl[x]];
        mwant |= pl->mmask[hl[x]];
    }
    if (pl->data.n > 64) dwant = 0;
    if (pl->meta.n > 64) mwant = 0;
    for (uint32_t x = 0; x < nh; x++) {
        uint32_t h = hl[x];
        const spec_handler *hd = &sp->handlers[h];
        if (pl->need_data[h] && !data_done) {
            index_map(&pl->data, pl->dval, ev->data, ev->data_len, dwant);
            data_done = 1;
        }
        if (pl->need_meta[h] && !meta_done) {
            index_map(&pl->meta, pl->mval, ev->meta, ev->meta_len, mwant);
            meta_done = 1;
        }
        for (size_t s = 0; s < hd->n_stmts; s++) {
            sqlite3_stmt *st = p->stmts[h][s];
            int rc = bind_all(pl, st, &hd->stmts[s], pl->slot[h][s], &c);
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

/* ------------------------------------------------------------ reading the log
 *
 * A batch reads the events after the checkpoint in one of two ways:
 * - sequential: one iterator over every position (the cheapest way to see
 *   every event);
 * - typed: one iterator per handled type over the log's type index, merged
 *   by position.  Events no handler wants are then never read or decoded:
 *   a projection fed by a log where most events are someone else's (nodes
 *   among task events, every projection of a server that runs several)
 *   pays only for its own.  It costs one index lookup per event, so it pays
 *   only when most events are skipped.  Not with an `@on *` handler.
 * The choice is made per batch from the share of events that matched
 * handlers in the batches before (a moving average); the checkpoint means
 * the same either way: every position up to it has been considered. */

#define TYPED_MAX_TYPES 32     /* at most this many iterators per batch */
#define TYPED_MIN_SPAN 256     /* a batch this small is cheaper read sequentially */

typedef struct source {
    evl_iter *seq;
    evl_iter *it[TYPED_MAX_TYPES];
    evl_event ev[TYPED_MAX_TYPES]; /* each typed iterator's current event */
    int live[TYPED_MAX_TYPES];
    size_t n, last;             /* last: the iterator whose event was handed out */
    int primed;
    evl_event one;              /* the sequential iterator's current event */
} source;

static void source_close(source *s) {
    evl_iter_close(s->seq);
    for (size_t i = 0; i < s->n; i++) evl_iter_close(s->it[i]);
    memset(s, 0, sizeof *s);
}

static int source_open(proj *p, int typed, uint64_t from, uint64_t until, source *s) {
    evl_log *log = p->eng->log;
    memset(s, 0, sizeof *s);
    if (!typed) return evl_iter_open(log, &(evl_query){.from_position = from, .until_position = until}, &s->seq);
    const nametab *t = &p->plan.types;
    for (uint32_t k = 0; k < t->n; k++) { /* the names are the spec's NUL-terminated strings */
        int rc = evl_iter_open(log, &(evl_query){.type = t->name[k], .from_position = from, .until_position = until},
                               &s->it[s->n]);
        if (rc) { source_close(s); return rc; }
        s->n++;
    }
    return EVL_OK;
}

/* The next event in position order: EVL_OK, EVL_END or a read error. */
static int source_next(source *s, const evl_event **ev) {
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

/* Can this projection read typed at all?  Not with a wildcard, not with
 * too many types. */
static int typed_possible(const proj *p) {
    const plan *pl = &p->plan;
    return pl->wn == 0 && pl->types.n > 0 && pl->types.n <= TYPED_MAX_TYPES;
}

/* Read this batch typed?  When it is worth it, and recent batches skipped
 * most events. */
static int want_typed(const proj *p, uint64_t span) {
    return typed_possible(p) && span >= TYPED_MIN_SPAN && p->seen_span > 0 && p->seen_matched * 2 < p->seen_span;
}

static int step_txn(proj *p, sqlite3_stmt *st, char *err, size_t errlen) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) return SQLITE_OK;
    if (err) snprintf(err, errlen, "%s", sqlite3_errmsg(p->db));
    return rc;
}

/* Apply events (checkpoint, until] — until = 0: as many as the batch allows.
 * Returns the new checkpoint; *failed_at is set when an event failed.
 * @p timed: also end the batch after 250 ms (not when re-applying the
 * events before a failure: those must all be applied). */
static int apply_batch(proj *p, uint64_t until, int timed, uint64_t *new_cp, uint64_t *failed_at,
                       char fault_type[EVL_MAX_NAME + 1], char *err, size_t errlen, int *full) {
    source src;
    const evl_event *ev = NULL;
    uint64_t cp = p->checkpoint, n = 0, applied = p->applied, start = cp;
    size_t max = p->eng->opt.batch_events;
    *failed_at = 0;
    *full = 0;
    uint64_t head = until ? until : evl_log_head(p->eng->log);
    int typed = head > cp && want_typed(p, head - cp);
    /* typed iterators must all stop at one head, and the checkpoint may pass
     * the events none of them returns: give them an explicit end */
    int rc = source_open(p, typed, cp + 1, typed ? head : until, &src);
    if (rc) { snprintf(err, errlen, "reading the log: %s", evl_strerror(rc)); *failed_at = cp + 1; return rc; }
    if (step_txn(p, p->st_begin, err, errlen) != SQLITE_OK) {
        source_close(&src);
        *failed_at = cp + 1;
        return EVL_ESQL;
    }
    /* n counts the events applied (what the SQLite transaction holds; events
     * no handler wants cost no SQL), read the events looked at */
    int64_t t0 = evl__mono_ns();
    uint64_t read = 0;
    while (n < max) {
        rc = source_next(&src, &ev);
        if (rc == EVL_END) {
            rc = EVL_OK;
            if (typed) cp = head; /* every position up to the head has been considered */
            break;
        }
        if (rc) {
            snprintf(err, errlen, "reading position %llu: %s", (unsigned long long)cp + 1, evl_strerror(rc));
            *failed_at = cp + 1;
            break;
        }
        int matched;
        if (apply_event(p, ev, &matched, err, errlen) != SQLITE_OK) {
            *failed_at = ev->position;
            memcpy(fault_type, ev->type, ev->type_len); /* before the iterator's txn ends */
            fault_type[ev->type_len] = 0;
            rc = EVL_ESQL;
            break;
        }
        applied += (uint64_t)matched;
        n += (uint64_t)matched;
        cp = ev->position;
        read++;
        if (timed && (read & 255) == 0) {
            /* bound a batch in time too, so read-your-writes waits stay short */
            if (evl__mono_ns() - t0 > 250000000) { *full = 1; break; }
            /* reading sequentially, but most events are someone else's: end
             * the batch so that the next one reads typed */
            if (!typed && (read & 4095) == 0 && n * 2 < read && typed_possible(p)) { *full = 1; break; }
        }
    }
    if (n == max) *full = 1;
    if (rc == EVL_OK) {
        char now[40];
        evl_time_format(evl__now_ns(), 3, now);
        sqlite3_bind_int64(p->cp_update, 1, (sqlite3_int64)cp);
        sqlite3_bind_int64(p->cp_update, 2, (sqlite3_int64)applied);
        sqlite3_bind_text(p->cp_update, 3, now, -1, SQLITE_TRANSIENT);
        int src_rc = sqlite3_step(p->cp_update);
        sqlite3_reset(p->cp_update);
        if (src_rc != SQLITE_DONE || step_txn(p, p->st_commit, err, errlen) != SQLITE_OK) {
            if (src_rc != SQLITE_DONE) snprintf(err, errlen, "checkpoint: %s", sqlite3_errmsg(p->db));
            *failed_at = cp + 1;
            rc = EVL_ESQL;
        }
    }
    if (rc) {
        step_txn(p, p->st_rollback, NULL, 0);
    } else {
        /* what share of the events matched, lately: decides the next batch's reading */
        p->seen_matched = p->seen_matched * 0.75 + (double)(applied - p->applied);
        p->seen_span = p->seen_span * 0.75 + (double)(cp - start);
        p->applied = applied;
        *new_cp = cp;
    }
    source_close(&src);
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
    if ((rc = plan_build(&p->plan, sp))) return rc;
    if (sqlite3_prepare_v3(p->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &p->st_begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(p->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &p->st_commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(p->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &p->st_rollback, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(p->db));
        return EVL_ESQL;
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
    sqlite3_finalize(p->st_begin);
    sqlite3_finalize(p->st_commit);
    sqlite3_finalize(p->st_rollback);
    p->st_begin = p->st_commit = p->st_rollback = NULL;
    plan_free(&p->plan, p->spec);
    sqlite3_close(p->db);
    p->db = NULL;
}

static void *projector_main(void *arg) {
    proj *p = arg;
    evl_proj_engine *e = p->eng;
    char err[1024], fault_type[EVL_MAX_NAME + 1];
    /* named, so that top -H and perf tell the projectors apart (15 bytes max) */
    char tname[16];
    snprintf(tname, sizeof tname, "proj-%s", p->spec->name);
    pthread_setname_np(pthread_self(), tname);
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
        rc = apply_batch(p, 0, 1, &cp, &failed_at, fault_type, err, sizeof err, &full);
        if (rc && failed_at > p->checkpoint + 1) {
            /* keep what came before the failing event, so the fault is exact */
            char err2[256];
            uint64_t cp2 = p->checkpoint, f2;
            int full2;
            char t2[EVL_MAX_NAME + 1];
            if (apply_batch(p, failed_at - 1, 0, &cp2, &f2, t2, err2, sizeof err2, &full2) == EVL_OK) cp = cp2;
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
