/* The writer's view of events that are journaled but not yet in LMDB.
 *
 * The writer acknowledges a group once its journal frame is durable, and
 * the applier thread puts it into LMDB a little later.  Until then the
 * writer must still see those events when it checks the next groups: a
 * stream's head for expected revisions, a client's event id for
 * idempotency (the ids the writer generates are found another way, see
 * find_id() in writer.c).  Two
 * open-addressing tables hold exactly that, keyed by bytes that live in the
 * journaled frames themselves (no copies): when the applier has put a frame
 * in LMDB the writer deletes the frame's entries that still name it, and
 * LMDB answers from then on.
 *
 * Linear probing with backward-shift deletion (no tombstones), so a table
 * that sees millions of inserts and deletes never degrades. */
#include "log/log_int.h"

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

uint64_t evl__pend_hash(const void *key, size_t len) {
    if (len == 16) { /* an event id: its last 8 bytes are random in v4 and v7 */
        uint64_t h;
        memcpy(&h, (const uint8_t *)key + 8, 8);
        h *= 0x9e3779b97f4a7c15ULL;
        return h ^ (h >> 29);
    }
    return hash_bytes(key, len);
}

void evl__pend_free(evl_pmap *m) {
    evl_free(m->slot);
    memset(m, 0, sizeof *m);
}

static int grow(evl_pmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 256;
    evl_pent *s = evl_calloc(cap, sizeof *s);
    if (!s) return EVL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slot[i].key) continue;
        size_t j = m->slot[i].hash & (cap - 1);
        while (s[j].key) j = (j + 1) & (cap - 1);
        s[j] = m->slot[i];
    }
    evl_free(m->slot);
    m->slot = s;
    m->cap = cap;
    return EVL_OK;
}

static int same(const evl_pent *e, uint64_t h, const void *key, size_t len) {
    return e->hash == h && e->len == len && memcmp(e->key, key, len) == 0;
}

evl_pent *evl__pend_get(evl_pmap *m, const void *key, size_t len, uint64_t h) {
    if (!m->n) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slot[i].key) return NULL;
        if (same(&m->slot[i], h, key, len)) return &m->slot[i];
    }
}

int evl__pend_put(evl_pmap *m, const evl_pent *e) {
    if ((m->n + 1) * 2 > m->cap && grow(m)) return EVL_ENOMEM;
    size_t i = e->hash & (m->cap - 1);
    while (m->slot[i].key && !same(&m->slot[i], e->hash, e->key, e->len)) i = (i + 1) & (m->cap - 1);
    if (!m->slot[i].key) m->n++;
    m->slot[i] = *e;
    return EVL_OK;
}

/* Remove slot i and close the gap: move up every later entry of the probe
 * run that would otherwise become unreachable. */
static void remove_at(evl_pmap *m, size_t i) {
    size_t mask = m->cap - 1;
    for (size_t j = (i + 1) & mask; m->slot[j].key; j = (j + 1) & mask) {
        size_t home = m->slot[j].hash & mask;
        /* j's entry may fill the hole at i unless its home lies in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        m->slot[i] = m->slot[j];
        i = j;
    }
    memset(&m->slot[i], 0, sizeof m->slot[i]);
    m->n--;
}

void evl__pend_del(evl_pmap *m, const void *key, size_t len, uint64_t h, uint64_t pos) {
    evl_pent *e = evl__pend_get(m, key, len, h);
    if (e && e->pos == pos) remove_at(m, (size_t)(e - m->slot));
}

void evl__pend_del_entry(evl_pmap *m, evl_pent *e) { remove_at(m, (size_t)(e - m->slot)); }
