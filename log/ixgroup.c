/* The entries of one DUPSORT index for a whole applier transaction,
 * grouped by key before they go into LMDB.
 *
 * WHY: put one by one, in position order, every event's entries land on a
 * key chosen by whoever appended it: single appends from 64 clients touch
 * 64 streams in turn, and each put searches the tree from the root, looks
 * every page on the way up in the transaction's dirty list (a binary search
 * over thousands of pages) and compares keys all the way.  The applier spent
 * about 6 µs of CPU per event so, four times its cost with batches.  Grouped,
 * each key of the transaction is searched once, in key order (the cursor
 * stays on the page that holds the next key), and all its entries go in
 * with one MDB_MULTIPLE put.
 *
 * A key is copied into an arena when first seen (the journal frames it
 * points into are not all alive until the commit during recovery) and
 * interned in an open-addressing table; an entry is (key id, value).  The
 * flush sorts the distinct keys in LMDB's order, counts entries per key,
 * scatters the values so each key's are contiguous and still in position
 * order (a position only grows, so MDB_APPENDDUP holds), and puts them.
 */
#include "log/log_int.h"

typedef struct ixg_key {
    uint32_t off, len; /* bytes in the arena */
    uint32_t count;    /* entries under it in this transaction */
    uint32_t start;    /* flush: its first slot in the grouped values */
} ixg_key;

struct evl_ixg {
    size_t vsize;
    ixg_key *keys;
    size_t nkeys, capkeys;
    uint32_t *table; /* key id + 1, 0 = empty; capacity a power of two */
    size_t captable;
    char *arena;
    size_t alen, acap;
    uint32_t *ekey; /* per entry: its key id */
    uint8_t *vals;  /* per entry: its value (vsize bytes) */
    uint8_t *grouped;
    size_t n, cap;
    uint32_t last; /* key id of the previous entry + 1 (0: none) */
    struct ixg_sk *order;
    size_t caporder;
};

/* A key as the flush sorts it: self-contained, so the comparison needs no
 * context (C11's qsort has no argument for one). */
typedef struct ixg_sk {
    const char *p;
    uint32_t len, id;
} ixg_sk;

/* Caller owns the result; evl__ixg_free releases it. */
evl_ixg *evl__ixg_new(size_t vsize) {
    evl_ixg *g = evl_calloc(1, sizeof *g);
    if (g) g->vsize = vsize;
    return g;
}

void evl__ixg_free(evl_ixg *g) {
    if (!g) return;
    evl_free(g->keys);
    evl_free(g->table);
    evl_free(g->arena);
    evl_free(g->ekey);
    evl_free(g->vals);
    evl_free(g->grouped);
    evl_free(g->order);
    evl_free(g);
}

void evl__ixg_reset(evl_ixg *g) {
    if (g->nkeys) memset(g->table, 0, g->captable * sizeof *g->table);
    g->nkeys = g->alen = g->n = 0;
    g->last = 0;
}

static uint32_t hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint32_t h = 2166136261u ^ (uint32_t)n; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h ^ (h >> 15);
}

static int grow(void **p, size_t *cap, size_t want, size_t elem) {
    if (want <= *cap) return EVL_OK;
    size_t c = *cap ? *cap : 256;
    while (c < want) c *= 2;
    void *q = evl_realloc(*p, c * elem);
    if (!q) return EVL_ENOMEM;
    *p = q;
    *cap = c;
    return EVL_OK;
}

static int rehash(evl_ixg *g, size_t cap) {
    uint32_t *t = evl_calloc(cap, sizeof *t);
    if (!t) return EVL_ENOMEM;
    for (size_t i = 0; i < g->nkeys; i++) {
        size_t j = hash(g->arena + g->keys[i].off, g->keys[i].len) & (cap - 1);
        while (t[j]) j = (j + 1) & (cap - 1);
        t[j] = (uint32_t)i + 1;
    }
    evl_free(g->table);
    g->table = t;
    g->captable = cap;
    return EVL_OK;
}

static int same(const evl_ixg *g, uint32_t id, const void *key, size_t klen) {
    const ixg_key *k = &g->keys[id];
    return k->len == klen && !memcmp(g->arena + k->off, key, klen);
}

/* The id of @p key, interned if new. */
static int intern(evl_ixg *g, const void *key, size_t klen, uint32_t *id) {
    if (g->last && same(g, g->last - 1, key, klen)) { /* runs: a batch to one stream */
        *id = g->last - 1;
        return EVL_OK;
    }
    if ((g->nkeys + 1) * 2 > g->captable) {
        int rc = rehash(g, g->captable ? g->captable * 2 : 1024);
        if (rc) return rc;
    }
    size_t j = hash(key, klen) & (g->captable - 1);
    for (; g->table[j]; j = (j + 1) & (g->captable - 1))
        if (same(g, g->table[j] - 1, key, klen)) {
            *id = g->table[j] - 1;
            return EVL_OK;
        }
    if (klen > UINT32_MAX || g->alen + klen > UINT32_MAX) return EVL_ENOMEM;
    int rc = grow((void **)&g->arena, &g->acap, g->alen + klen + 1, 1);
    if (!rc) rc = grow((void **)&g->keys, &g->capkeys, g->nkeys + 1, sizeof *g->keys);
    if (rc) return rc;
    memcpy(g->arena + g->alen, key, klen);
    g->keys[g->nkeys] = (ixg_key){(uint32_t)g->alen, (uint32_t)klen, 0, 0};
    g->alen += klen;
    g->table[j] = (uint32_t)g->nkeys + 1;
    *id = (uint32_t)g->nkeys++;
    return EVL_OK;
}

int evl__ixg_add(evl_ixg *g, const void *key, size_t klen, const uint8_t *val) {
    uint32_t id;
    int rc = intern(g, key, klen, &id);
    if (rc) return rc;
    if (g->n == g->cap) {
        size_t c = g->cap ? g->cap * 2 : 4096;
        uint32_t *ek = evl_realloc(g->ekey, c * sizeof *ek);
        if (ek) g->ekey = ek;
        uint8_t *v = ek ? evl_realloc(g->vals, c * g->vsize) : NULL;
        if (v) g->vals = v;
        uint8_t *gv = v ? evl_realloc(g->grouped, c * g->vsize) : NULL;
        if (!gv) return EVL_ENOMEM;
        g->grouped = gv;
        g->cap = c;
    }
    g->ekey[g->n] = id;
    memcpy(g->vals + g->n * g->vsize, val, g->vsize);
    g->n++;
    g->keys[id].count++;
    g->last = id + 1;
    return EVL_OK;
}

/* LMDB's default order for keys: bytes, then the shorter first. */
static int cmp_key(const void *a, const void *b) {
    const ixg_sk *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

int evl__ixg_flush(evl_ixg *g, MDB_cursor *c) {
    if (!g->n) return EVL_OK;
    int rc = grow((void **)&g->order, &g->caporder, g->nkeys, sizeof *g->order);
    if (rc) return rc;
    for (size_t i = 0; i < g->nkeys; i++)
        g->order[i] = (ixg_sk){g->arena + g->keys[i].off, g->keys[i].len, (uint32_t)i};
    if (g->nkeys > 1) qsort(g->order, g->nkeys, sizeof *g->order, cmp_key);
    uint32_t at = 0;
    for (size_t i = 0; i < g->nkeys; i++) {
        ixg_key *k = &g->keys[g->order[i].id];
        k->start = at;
        at += k->count;
    }
    for (size_t e = 0; e < g->n; e++) /* stable: a key's values stay in position order */
        memcpy(g->grouped + (size_t)g->keys[g->ekey[e]].start++ * g->vsize, g->vals + e * g->vsize, g->vsize);
    uint8_t *v = g->grouped;
    for (size_t i = 0; i < g->nkeys && !rc; i++) {
        const ixg_key *k = &g->keys[g->order[i].id];
        MDB_val key = {k->len, g->arena + k->off};
        MDB_val d[2] = {{g->vsize, v}, {k->count, NULL}};
        int mrc = mdb_cursor_put(c, &key, d, k->count > 1 ? MDB_APPENDDUP | MDB_MULTIPLE : MDB_APPENDDUP);
        if (mrc == 0 && k->count > 1 && d[1].mv_size != k->count) rc = EVL_ECORRUPT;
        else if (mrc) rc = mrc == MDB_KEYEXIST ? EVL_ECORRUPT : evl__lmdb_err(mrc);
        v += (size_t)k->count * g->vsize;
    }
    evl__ixg_reset(g);
    return rc;
}

/* ---------------------------------------------------------- the ids index
 *
 * Event ids are UUIDv7: milliseconds first, random after.  Put in position
 * order, the ids of one millisecond land in random order near the right
 * edge of the index: every put searches from the root, and pages split in
 * the middle and stay about 60% full.  Sorted at the end of the
 * transaction they are nearly all past the last key already in the index,
 * so they go in with MDB_APPEND (no search, full pages); an id that is not
 * (a client's own, or the clock went back) falls back to an ordinary put. */

typedef struct ids_ent {
    uint64_t hi, lo; /* the id's bytes as two big-endian numbers: they sort alike */
    uint8_t id[16], pos[8];
} ids_ent;

struct evl_idbuf {
    ids_ent *e;
    size_t n, cap;
};

/* Caller owns the result; evl__ids_free releases it. */
evl_idbuf *evl__ids_new(void) { return evl_calloc(1, sizeof(evl_idbuf)); }

void evl__ids_free(evl_idbuf *b) {
    if (!b) return;
    evl_free(b->e);
    evl_free(b);
}

void evl__ids_reset(evl_idbuf *b) { b->n = 0; }

int evl__ids_add(evl_idbuf *b, const uint8_t id[16], const uint8_t pos[8]) {
    int rc = grow((void **)&b->e, &b->cap, b->n + 1, sizeof *b->e);
    if (rc) return rc;
    ids_ent *e = &b->e[b->n++];
    e->hi = evl__get_be64(id);
    e->lo = evl__get_be64(id + 8);
    memcpy(e->id, id, 16);
    memcpy(e->pos, pos, 8);
    return EVL_OK;
}

static int cmp_id(const void *a, const void *b) {
    const ids_ent *x = a, *y = b;
    if (x->hi != y->hi) return x->hi < y->hi ? -1 : 1;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

int evl__ids_flush(evl_idbuf *b, MDB_cursor *c) {
    int rc = EVL_OK;
    if (b->n > 1) qsort(b->e, b->n, sizeof *b->e, cmp_id);
    for (size_t i = 0; i < b->n && !rc; i++) {
        MDB_val k = {16, b->e[i].id}, v = {8, b->e[i].pos};
        int mrc = mdb_cursor_put(c, &k, &v, MDB_APPEND);
        if (mrc == MDB_KEYEXIST) mrc = mdb_cursor_put(c, &k, &v, MDB_NOOVERWRITE);
        if (mrc) rc = mrc == MDB_KEYEXIST ? EVL_ECORRUPT : evl__lmdb_err(mrc);
    }
    b->n = 0;
    return rc;
}
