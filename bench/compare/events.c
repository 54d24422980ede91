/* The events every system receives: the workload generator's (gen.h), so the
 * payloads are the seed services' own (job lifecycles, node heartbeats,
 * benchmark runs ...), identical bytes for evlog and every baseline.  Only
 * type and data travel; the generator's meta maps are left out because the
 * baselines' events tables have no column for them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmp.h"
#include "gen.h"

void cmp_err(char *dst, const char *fmt, ...)
{
    if (dst[0])
        return; /* the first problem is the one worth reading */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, CMP_ERR_LEN, fmt, ap);
    va_end(ap);
}

static _Thread_local uint64_t tl_rng;

void cmp_uuid(char out[37])
{
    if (!tl_rng)
        tl_rng = bench_now_ns() ^ ((uint64_t)(uintptr_t)&tl_rng << 16) ^ 0x9e3779b97f4a7c15u;
    uint8_t b[16];
    for (int k = 0; k < 2; k++) {
        uint64_t x = tl_rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tl_rng = x;
        memcpy(b + 8 * k, &x, 8);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    static const char hx[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hx[b[i] >> 4];
        *o++ = hx[b[i] & 15];
    }
    *o = 0;
}

int cmp_mkdir(cmp_run *r)
{
    if (bench_make_rundir(r->dir, sizeof r->dir, r->env->tmp) != 0) {
        cmp_err(r->err, "mkdtemp under %s failed", r->env->tmp);
        return -1;
    }
    return 0;
}

void cmp_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ the pool */

int cmp_pool_make(cmp_pool *p, size_t n, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    evl_gen *g;
    if (evl_gen_new(seed, EVL_GEN_ALL, &g) != EVL_OK)
        return -1;
    size_t cap = n * 256, used = 0;
    p->ev = calloc(n, sizeof *p->ev);
    p->bytes = malloc(cap);
    size_t *toff = calloc(n, sizeof *toff), *doff = calloc(n, sizeof *doff);
    int rc = -1;
    if (!p->ev || !p->bytes || !toff || !doff)
        goto out;
    while (p->n < n) {
        const evl_stream_in *s;
        size_t ns;
        if (evl_gen_next(g, &s, &ns) != EVL_OK)
            goto out;
        for (size_t i = 0; i < ns; i++)
            for (size_t k = 0; k < s[i].n_events && p->n < n; k++) {
                const evl_event_in *e = &s[i].events[k];
                size_t tl = strlen(e->type) + 1, need = used + tl + e->data_len;
                if (need > cap) {
                    cap = need * 2;
                    uint8_t *b = realloc(p->bytes, cap);
                    if (!b)
                        goto out;
                    p->bytes = b;
                }
                toff[p->n] = used;
                memcpy(p->bytes + used, e->type, tl);
                used += tl;
                doff[p->n] = used;
                memcpy(p->bytes + used, e->data, e->data_len);
                used += e->data_len;
                p->ev[p->n++].len = e->data_len;
            }
    }
    /* pointers only now: the buffer moved while it grew */
    for (size_t i = 0; i < p->n; i++) {
        p->ev[i].type = (const char *)p->bytes + toff[i];
        p->ev[i].data = p->bytes + doff[i];
    }
    rc = 0;
out:
    free(toff);
    free(doff);
    evl_gen_free(g);
    if (rc)
        cmp_pool_free(p);
    return rc;
}

void cmp_pool_free(cmp_pool *p)
{
    free(p->ev);
    free(p->bytes);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------- a generated stream */

struct cmp_gen {
    evl_gen *g;
    const evl_stream_in *s; /* the generator's current batch, partly handed out */
    size_t ns, si, ei;
    cmp_ev *ev;
    size_t cap;
};

int cmp_gen_open(uint64_t seed, cmp_gen **out)
{
    cmp_gen *g = calloc(1, sizeof *g);
    if (!g || evl_gen_new(seed, EVL_GEN_ALL, &g->g) != EVL_OK) {
        free(g);
        return -1;
    }
    *out = g;
    return 0;
}

/* Pointers into the generator's batch stay valid until its next call, so
 * one call hands out at most what is left of the current batch. */
size_t cmp_gen_next(cmp_gen *g, cmp_gen_ev *out, size_t max)
{
    while (g->si >= g->ns) {
        if (evl_gen_next(g->g, &g->s, &g->ns) != EVL_OK)
            return 0;
        g->si = g->ei = 0;
    }
    size_t total = 0;
    for (size_t i = g->si; i < g->ns; i++)
        total += g->s[i].n_events;
    if (total > g->cap) {
        cmp_ev *e = realloc(g->ev, total * sizeof *e);
        if (!e)
            return 0;
        g->ev = e;
        g->cap = total;
    }
    size_t n = 0;
    while (n < max && g->si < g->ns) {
        const evl_stream_in *s = &g->s[g->si];
        const evl_event_in *e = &s->events[g->ei];
        g->ev[n] = (cmp_ev){e->type, e->data, e->data_len};
        out[n] = (cmp_gen_ev){s->stream, &g->ev[n]};
        n++;
        if (++g->ei == s->n_events) {
            g->si++;
            g->ei = 0;
        }
    }
    return n;
}

void cmp_gen_close(cmp_gen *g)
{
    if (g) {
        evl_gen_free(g->g);
        free(g->ev);
        free(g);
    }
}

/* ------------------------------------------------------ revision map */

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

uint64_t cmp_revmap_take(cmp_revmap *m, const char *stream)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        char **key = calloc(cap, sizeof *key);
        uint64_t *next = calloc(cap, sizeof *next);
        if (!key || !next) {
            free(key);
            free(next);
            return UINT64_MAX;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i]) {
                size_t j = str_hash(m->key[i]) & (cap - 1);
                while (key[j])
                    j = (j + 1) & (cap - 1);
                key[j] = m->key[i];
                next[j] = m->next[i];
            }
        free(m->key);
        free(m->next);
        m->key = key;
        m->next = next;
        m->cap = cap;
    }
    size_t j = str_hash(stream) & (m->cap - 1);
    while (m->key[j] && strcmp(m->key[j], stream))
        j = (j + 1) & (m->cap - 1);
    if (!m->key[j]) {
        if (!(m->key[j] = strdup(stream)))
            return UINT64_MAX;
        m->n++;
    }
    return m->next[j]++;
}

void cmp_revmap_free(cmp_revmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->key[i]);
    free(m->key);
    free(m->next);
    memset(m, 0, sizeof *m);
}
