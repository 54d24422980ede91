/* A bounded msgpack reader and the pre-scan (see include/evlog/mp.h for why).
 *
 * Every read checks the bytes that remain before touching them, and a
 * container header is refused when its count could not possibly fit in what
 * remains (each element takes at least one byte), so a consumer that sizes
 * an allocation by a count can never be made to allocate more than the input
 * itself.  The pre-scan walks a value iteratively with a fixed stack: no
 * recursion, no allocation, time linear in the input. */
#include <string.h>
#include "common/common_int.h"
#include "evlog/mp.h"

static inline uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static int read_any(evl_mp *m, evl_mp_val *v);

/* The shapes most values have (small integers, short strings, small
 * containers, nil, booleans), decoded inline with the same checks; the rest
 * by read_any().  A scan reads every key and value of millions of events,
 * and there the call and the switch cost more than the decoding. */
static inline int read_value(evl_mp *m, evl_mp_val *v) {
    const uint8_t *p = m->p;
    if (p >= m->end) return EVL_EMSGPACK;
    uint8_t b = *p;
    size_t left = (size_t)(m->end - p) - 1;
    if (b <= 0x7f) { v->kind = EVL_MP_UINT; v->v.u = b; m->p = p + 1; return EVL_OK; }
    if (b >= 0xa0 && b <= 0xbf) {
        uint32_t n = b & 0x1f;
        if (n > left) return EVL_EMSGPACK;
        v->kind = EVL_MP_STR; v->v.s.ptr = (const char *)p + 1; v->v.s.len = n;
        m->p = p + 1 + n;
        return EVL_OK;
    }
    if (b >= 0xe0) { v->kind = EVL_MP_INT; v->v.i = (int8_t)b; m->p = p + 1; return EVL_OK; }
    if (b <= 0x8f) {
        uint32_t n = b & 0x0f;
        if ((uint64_t)n * 2 > left) return EVL_EMSGPACK;
        v->kind = EVL_MP_MAP; v->v.n = n; m->p = p + 1;
        return EVL_OK;
    }
    if (b <= 0x9f) {
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
        uint64_t u = be(p + 1, (int)n);
        if (b == 0xcb) {
            double d;
            memcpy(&d, &u, 8);
            v->kind = EVL_MP_FLOAT; v->v.f = d;
        } else if (b <= 0xcf) {
            v->kind = EVL_MP_UINT; v->v.u = u;
        } else {
            int64_t i = n == 1 ? (int8_t)u : n == 2 ? (int16_t)u : n == 4 ? (int32_t)u : (int64_t)u;
            if (i >= 0) { v->kind = EVL_MP_UINT; v->v.u = (uint64_t)i; }
            else { v->kind = EVL_MP_INT; v->v.i = i; }
        }
        m->p = p + 1 + n;
        return EVL_OK;
    }
    if (b == 0xd9) {
        if (left < 1 || (size_t)p[1] > left - 1) return EVL_EMSGPACK;
        v->kind = EVL_MP_STR; v->v.s.ptr = (const char *)p + 2; v->v.s.len = p[1];
        m->p = p + 2 + p[1];
        return EVL_OK;
    }
    return read_any(m, v);
}

int evl_mp_read(evl_mp *m, evl_mp_val *v) {
    return read_value(m, v);
}

static int read_any(evl_mp *m, evl_mp_val *v) {
    const uint8_t *p = m->p;
    size_t left = (size_t)(m->end - p);
    if (left < 1) return EVL_EMSGPACK;
    uint8_t b = *p++;
    left--;
    size_t need = 0;   /* header bytes after the type byte */
    uint64_t len = 0;  /* payload bytes (str/bin/ext) */
#define NEED(n) do { if (left < (size_t)(n)) return EVL_EMSGPACK; need = (n); } while (0)
    if (b <= 0x7f) { v->kind = EVL_MP_UINT; v->v.u = b; }
    else if (b >= 0xe0) { v->kind = EVL_MP_INT; v->v.i = (int8_t)b; }
    else if (b <= 0x8f) { v->kind = EVL_MP_MAP; v->v.n = b & 0x0f; }
    else if (b <= 0x9f) { v->kind = EVL_MP_ARRAY; v->v.n = b & 0x0f; }
    else if (b <= 0xbf) { v->kind = EVL_MP_STR; len = b & 0x1f; }
    else switch (b) {
    case 0xc0: v->kind = EVL_MP_NIL; break;
    case 0xc2: case 0xc3: v->kind = EVL_MP_BOOL; v->v.b = b == 0xc3; break;
    case 0xc4: case 0xc5: case 0xc6: {
        int n = 1 << (b - 0xc4);
        NEED(n); v->kind = EVL_MP_BIN; len = be(p, n); break;
    }
    case 0xc7: case 0xc8: case 0xc9: {
        int n = 1 << (b - 0xc7);
        NEED(n + 1); v->kind = EVL_MP_EXT; len = be(p, n); v->v.ext.type = (int8_t)p[n]; break;
    }
    case 0xca: {
        NEED(4); uint32_t u = (uint32_t)be(p, 4); float f; memcpy(&f, &u, 4);
        v->kind = EVL_MP_FLOAT; v->v.f = f; break;
    }
    case 0xcb: {
        NEED(8); uint64_t u = be(p, 8); double d; memcpy(&d, &u, 8);
        v->kind = EVL_MP_FLOAT; v->v.f = d; break;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (b - 0xcc);
        NEED(n); v->kind = EVL_MP_UINT; v->v.u = be(p, n); break;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (b - 0xd0);
        NEED(n);
        uint64_t u = be(p, n);
        int64_t i = n == 1 ? (int8_t)u : n == 2 ? (int16_t)u : n == 4 ? (int32_t)u : (int64_t)u;
        if (i >= 0) { v->kind = EVL_MP_UINT; v->v.u = (uint64_t)i; }
        else { v->kind = EVL_MP_INT; v->v.i = i; }
        break;
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        NEED(1); v->kind = EVL_MP_EXT; v->v.ext.type = (int8_t)p[0]; len = 1u << (b - 0xd4); break;
    case 0xd9: case 0xda: case 0xdb: {
        int n = 1 << (b - 0xd9);
        NEED(n); v->kind = EVL_MP_STR; len = be(p, n); break;
    }
    case 0xdc: case 0xdd: {
        int n = b == 0xdc ? 2 : 4;
        NEED(n); v->kind = EVL_MP_ARRAY; v->v.n = (uint32_t)be(p, n); break;
    }
    case 0xde: case 0xdf: {
        int n = b == 0xde ? 2 : 4;
        NEED(n); v->kind = EVL_MP_MAP; v->v.n = (uint32_t)be(p, n); break;
    }
    default: return EVL_EMSGPACK; /* 0xc1: never used */
    }
#undef NEED
    p += need;
    left -= need;
    switch (v->kind) {
    case EVL_MP_STR: case EVL_MP_BIN:
        if (len > left) return EVL_EMSGPACK;
        v->v.s.ptr = (const char *)p; v->v.s.len = (uint32_t)len; p += len; break;
    case EVL_MP_EXT:
        if (len > left) return EVL_EMSGPACK;
        v->v.ext.ptr = p; v->v.ext.len = (uint32_t)len; p += len; break;
    case EVL_MP_ARRAY:
        if (v->v.n > left) return EVL_EMSGPACK;
        break;
    case EVL_MP_MAP:
        if ((uint64_t)v->v.n * 2 > left) return EVL_EMSGPACK;
        break;
    default: break;
    }
    m->p = p;
    return EVL_OK;
}

int evl_utf8_valid(const char *str, size_t len) {
    const uint8_t *s = (const uint8_t *)str, *e = s + len;
    while (s < e) {
        /* Event data is mostly ASCII, and every appended string is checked
         * (twice over HTTP): skip 8 ASCII bytes per step (a profile of
         * evlogd had this loop at ~9% of a worker's CPU). */
        if (e - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (!(w & 0x8080808080808080ULL)) { s += 8; continue; }
        }
        uint8_t c = *s;
        if (c < 0x80) { s++; continue; }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
        else return 0;
        if ((size_t)(e - s) < n) return 0;
        for (size_t k = 1; k < n; k++) {
            if ((s[k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[k] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += n;
    }
    return 1;
}

/* Duplicate keys: each map's keys are gathered (pointer, length, hash),
 * sorted by hash, and equal neighbours compared.  Every value is read once
 * by the walk and once more for each enclosing map's key gathering, so the
 * cost is bounded by depth x size, and the one scratch array by the
 * largest map (which the pre-scan has bounded by the input). */
typedef struct mkey { uint64_t h; const char *p; uint32_t n; } mkey;

static int mkey_cmp(const void *a, const void *b) {
    const mkey *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return memcmp(x->p, y->p, x->n);
}

static uint64_t fnv(const char *s, uint32_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return h;
}

/* Is there a duplicate among n keys?  A few are compared pairwise; more are
 * sorted by hash (keys[] is the caller's scratch, reordered). */
static int has_dup(mkey *keys, size_t n) {
    if (n <= 8) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (keys[i].n == keys[j].n && !memcmp(keys[i].p, keys[j].p, keys[i].n)) return 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++) keys[i].h = fnv(keys[i].p, keys[i].n);
    qsort(keys, n, sizeof *keys, mkey_cmp);
    for (size_t i = 1; i < n; i++)
        if (!mkey_cmp(&keys[i - 1], &keys[i])) return 1;
    return 0;
}

/* The stack holds, per open container, how many elements are still to come;
 * for maps it counts keys and values separately so an even count means "a
 * key is next". */
/* Internal scan flag: check that strings are UTF-8.  The pre-scan always
 * does; skipping over a value already accepted (a stored record, whose CRC
 * guards it) need not pay for it again. */
#define SCAN_UTF8 0x100
#define SCAN_DUP (-1) /* scan()'s answer for a duplicate key: no EVL_ code */

typedef struct scan_level {
    uint64_t left;
    int is_map;
    size_t first;       /* EVL_MP_UNIQUE_KEYS: this map's first key in keys[] */
    const uint8_t *at;  /* ... and its header */
} scan_level;

/* EVL_MP_UNIQUE_KEYS: the keys of the open maps, stacked; each map's are
 * checked when it closes.  Grown on demand (a body's maps are small). */
typedef struct key_stack {
    mkey *k;
    size_t n, cap;
} key_stack;

static int scan(evl_mp *m, int max_depth, int flags, int *depth_hit, key_stack *ks) {
    scan_level st[64];
    int depth = 0;
    if (max_depth > 63) max_depth = 63;
    *depth_hit = 0;
    do {
        int want_key = depth > 0 && st[depth - 1].is_map && (st[depth - 1].left % 2) == 0;
        const uint8_t *tok = m->p;
        evl_mp_val v;
        int rc = read_value(m, &v);
        if (rc) return rc;
        if (want_key && (flags & EVL_MP_STRING_KEYS) && v.kind != EVL_MP_STR) return EVL_EMSGPACK;
        if (v.kind == EVL_MP_STR && (flags & SCAN_UTF8) && !evl_utf8_valid(v.v.s.ptr, v.v.s.len))
            return EVL_EUTF8;
        if (want_key && ks) {
            if (ks->n == ks->cap) {
                size_t nc = ks->cap ? ks->cap * 2 : 64;
                mkey *g = evl_realloc(ks->k, nc * sizeof *g);
                if (!g) return EVL_ENOMEM;
                ks->k = g;
                ks->cap = nc;
            }
            ks->k[ks->n++] = (mkey){0, (const char *)tok, (uint32_t)(m->p - tok)};
        }
        if (depth > 0) st[depth - 1].left--;
        if ((v.kind == EVL_MP_ARRAY || v.kind == EVL_MP_MAP) && v.v.n > 0) {
            if (depth >= max_depth) { *depth_hit = 1; return EVL_EDEPTH; }
            st[depth].is_map = v.kind == EVL_MP_MAP;
            st[depth].left = st[depth].is_map ? (uint64_t)v.v.n * 2 : v.v.n;
            st[depth].first = ks ? ks->n : 0;
            st[depth].at = tok;
            depth++;
        } else if (v.kind == EVL_MP_ARRAY || v.kind == EVL_MP_MAP) {
            /* an empty container still counts as a level of nesting */
            if (depth >= max_depth) { *depth_hit = 1; return EVL_EDEPTH; }
        }
        while (depth > 0 && st[depth - 1].left == 0) {
            scan_level *l = &st[--depth];
            if (!ks || !l->is_map) continue;
            if (has_dup(ks->k + l->first, ks->n - l->first)) {
                m->p = l->at;
                return SCAN_DUP;
            }
            ks->n = l->first;
        }
    } while (depth > 0);
    return EVL_OK;
}

static int check(const void *buf, size_t len, int max_depth, int flags, size_t *bad_offset,
                 key_stack *ks) {
    evl_mp m = {buf, (const uint8_t *)buf + len};
    int hit;
    int rc = scan(&m, max_depth, flags | SCAN_UTF8, &hit, ks);
    if (rc == EVL_OK && m.p != m.end) rc = EVL_EMSGPACK; /* trailing bytes */
    if (rc && bad_offset) *bad_offset = (size_t)(m.p - (const uint8_t *)buf);
    return rc;
}

int evl_mp_check(const void *buf, size_t len, int max_depth, int flags, size_t *bad_offset) {
    return check(buf, len, max_depth, flags, bad_offset, NULL);
}

int evl_mp_check_unique(const void *buf, size_t len, int max_depth, size_t *bad_offset, int *dup) {
    key_stack ks = {0}; /* keys compare by their whole encoding: a string key is one token */
    int rc = check(buf, len, max_depth, EVL_MP_STRING_KEYS, bad_offset, &ks);
    evl_free(ks.k);
    *dup = rc == SCAN_DUP;
    return *dup ? EVL_EMSGPACK : rc;
}

int evl_mp_skip(evl_mp *m, int max_depth) {
    /* A scalar, or a container of scalars only (most meta maps, most lists
     * in events), needs no stack: read it straight.  On anything else, or
     * any error, the general walk starts over and decides. */
    evl_mp t = *m;
    evl_mp_val v;
    if (max_depth >= 1 && read_value(&t, &v) == EVL_OK) {
        uint64_t n = v.kind == EVL_MP_MAP ? (uint64_t)v.v.n * 2 : v.kind == EVL_MP_ARRAY ? v.v.n : 0;
        for (; n; n--)
            if (read_value(&t, &v) || v.kind == EVL_MP_MAP || v.kind == EVL_MP_ARRAY) break;
        if (n == 0) {
            *m = t;
            return EVL_OK;
        }
    }
    int hit;
    return scan(m, max_depth, 0, &hit, NULL);
}

int evl_mp_map_find(const uint8_t *buf, size_t len, const char *key, size_t key_len,
                    evl_mp *val) {
    evl_mp m = {buf, buf + len};
    evl_mp_val v;
    if (evl_mp_read(&m, &v) || v.kind != EVL_MP_MAP) return EVL_EMSGPACK;
    for (uint32_t i = 0; i < v.v.n; i++) {
        evl_mp_val k;
        if (evl_mp_read(&m, &k)) return EVL_EMSGPACK;
        if (k.kind == EVL_MP_STR && k.v.s.len == key_len && memcmp(k.v.s.ptr, key, key_len) == 0) {
            *val = m;
            return EVL_OK;
        }
        if (evl_mp_skip(&m, 63)) return EVL_EMSGPACK;
    }
    return EVL_ENOTFOUND;
}

/* Token by token in lockstep: two values are equal when their flattened
 * header/scalar sequences are, so no recursion and no depth limit beyond
 * the buffers themselves. */
int evl_mp_equal(const void *a, size_t alen, const void *b, size_t blen) {
    if (alen == blen && memcmp(a, b, alen) == 0) return 1;
    evl_mp ma = {a, (const uint8_t *)a + alen}, mb = {b, (const uint8_t *)b + blen};
    uint64_t left = 1;
    while (left) {
        evl_mp_val x, y;
        left--;
        if (evl_mp_read(&ma, &x) || evl_mp_read(&mb, &y) || x.kind != y.kind) return 0;
        switch (x.kind) {
        case EVL_MP_NIL: break;
        case EVL_MP_BOOL: if (!x.v.b != !y.v.b) return 0; break;
        case EVL_MP_UINT: if (x.v.u != y.v.u) return 0; break;
        case EVL_MP_INT: if (x.v.i != y.v.i) return 0; break;
        case EVL_MP_FLOAT: if (!(x.v.f == y.v.f) && !(x.v.f != x.v.f && y.v.f != y.v.f)) return 0; break;
        case EVL_MP_STR:
        case EVL_MP_BIN:
            if (x.v.s.len != y.v.s.len || memcmp(x.v.s.ptr, y.v.s.ptr, x.v.s.len)) return 0;
            break;
        case EVL_MP_ARRAY:
        case EVL_MP_MAP:
            if (x.v.n != y.v.n) return 0;
            left += (uint64_t)x.v.n * (x.kind == EVL_MP_MAP ? 2 : 1);
            break;
        case EVL_MP_EXT:
            if (x.v.ext.type != y.v.ext.type || x.v.ext.len != y.v.ext.len ||
                memcmp(x.v.ext.ptr, y.v.ext.ptr, x.v.ext.len))
                return 0;
            break;
        }
    }
    return ma.p == ma.end && mb.p == mb.end;
}

/* Any keys: each map gathers its keys by skipping (depth x size). */
static int unique_general(const void *buf, size_t len, size_t *bad_offset) {
    evl_mp m = {buf, (const uint8_t *)buf + len};
    mkey *keys = NULL;
    size_t cap = 0;
    int rc = EVL_OK;
    while (m.p < m.end && rc == EVL_OK) {
        const uint8_t *at = m.p;
        evl_mp_val v;
        if (evl_mp_read(&m, &v)) { rc = EVL_EMSGPACK; break; }
        if (v.kind != EVL_MP_MAP || v.v.n < 2) continue;
        if (v.v.n > cap) {
            mkey *g = evl_realloc(keys, (size_t)v.v.n * sizeof *g);
            if (!g) { rc = EVL_ENOMEM; break; }
            keys = g;
            cap = v.v.n;
        }
        evl_mp k = m;
        for (uint32_t i = 0; i < v.v.n && rc == EVL_OK; i++) {
            const uint8_t *kat = k.p;
            /* the key's whole encoding: 1 and "1" differ, container keys work */
            if (evl_mp_skip(&k, 63) || evl_mp_skip(&k, 63)) rc = EVL_EMSGPACK;
            if (rc) break;
            keys[i].p = (const char *)kat;
            evl_mp kk = {kat, k.end};
            evl_mp_skip(&kk, 63);
            keys[i].n = (uint32_t)(kk.p - kat);
            keys[i].h = fnv(keys[i].p, keys[i].n);
        }
        if (rc) break;
        qsort(keys, v.v.n, sizeof *keys, mkey_cmp);
        for (uint32_t i = 1; i < v.v.n; i++)
            if (!mkey_cmp(&keys[i - 1], &keys[i])) {
                rc = EVL_EMSGPACK;
                if (bad_offset) *bad_offset = (size_t)(at - (const uint8_t *)buf);
                break;
            }
    }
    evl_free(keys);
    return rc;
}

typedef struct ulevel {
    uint64_t left;      /* as in scan() */
    size_t first;       /* this map's first key in keys[] */
    const uint8_t *at;  /* its header */
    int is_map;
} ulevel;

/* String keys only (what an evlog body has): one walk like scan()'s, each
 * open map's keys stacked in keys[] and checked when the map closes.  Keys
 * of another kind, or nesting past the stack, go to unique_general(). */
int evl_mp_unique_keys(const void *buf, size_t len, size_t *bad_offset) {
    evl_mp m = {buf, (const uint8_t *)buf + len};
    ulevel st[64];
    mkey *keys = NULL;
    size_t nk = 0, cap = 0;
    int rc = EVL_OK, general = 0;
    while (m.p < m.end && rc == EVL_OK && !general) {
        int depth = 0;
        do {
            ulevel *top = depth > 0 ? &st[depth - 1] : NULL;
            const uint8_t *tok = m.p;
            evl_mp_val v;
            if (read_value(&m, &v)) { rc = EVL_EMSGPACK; break; }
            if (top && top->is_map && top->left % 2 == 0) {
                if (v.kind != EVL_MP_STR) { general = 1; break; }
                if (nk == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    mkey *g = evl_realloc(keys, nc * sizeof *g);
                    if (!g) { rc = EVL_ENOMEM; break; }
                    keys = g;
                    cap = nc;
                }
                keys[nk++] = (mkey){0, (const char *)tok, (uint32_t)(m.p - tok)};
            }
            if (top) top->left--;
            if ((v.kind == EVL_MP_ARRAY || v.kind == EVL_MP_MAP) && v.v.n > 0) {
                if (depth >= 64) { general = 1; break; }
                int is_map = v.kind == EVL_MP_MAP;
                st[depth++] = (ulevel){is_map ? (uint64_t)v.v.n * 2 : v.v.n, nk, tok, is_map};
            }
            while (depth > 0 && st[depth - 1].left == 0) {
                ulevel *l = &st[--depth];
                if (!l->is_map) continue;
                if (has_dup(keys + l->first, nk - l->first)) {
                    rc = EVL_EMSGPACK;
                    if (bad_offset) *bad_offset = (size_t)(l->at - (const uint8_t *)buf);
                    break;
                }
                nk = l->first;
            }
        } while (depth > 0 && rc == EVL_OK);
    }
    evl_free(keys);
    return general ? unique_general(buf, len, bad_offset) : rc;
}
