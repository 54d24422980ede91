/* evlog embedded: the C API in the benchmark's process (evl_log_append from
 * every client thread, group commit, EVL_SYNC_FULL), and the log scan of
 * replay through a read-only handle, as a projector or an export reads it. */
#include <stdlib.h>
#include <string.h>

#include "cmp.h"
#include "evlog/log.h"

#define LOAD_BATCH 1000

static const char *durability(const cmp_env *env)
{
    (void)env;
    return "fdatasync per group commit (sync full)";
}

static int start(cmp_run *r)
{
    if (cmp_mkdir(r) != 0)
        return -1;
    evl_log_options o;
    evl_log_options_init(&o);
    o.sync = EVL_SYNC_FULL;
    evl_log *log;
    int rc = evl_log_open(r->dir, &o, &log);
    if (rc != EVL_OK) {
        cmp_err(r->err, "evl_log_open: %s", evl_strerror(rc));
        return -1;
    }
    r->st = log;
    return 0;
}

typedef struct client {
    evl_log *log;
    evl_event_in ev[128];
} client;

static void *connect_(cmp_run *r, int idx, char *err)
{
    (void)idx;
    client *c = calloc(1, sizeof *c);
    if (!c)
        cmp_err(err, "out of memory");
    else
        c->log = r->st;
    return c;
}

static int append(void *cl, const char *stream, const cmp_ev *evs, size_t n, uint64_t expected,
                  uint64_t *rev, char *err)
{
    client *c = cl;
    if (n > sizeof c->ev / sizeof c->ev[0]) {
        cmp_err(err, "batch too large");
        return CMP_FAIL;
    }
    for (size_t i = 0; i < n; i++)
        c->ev[i] = (evl_event_in){.type = evs[i].type, .data = evs[i].data, .data_len = evs[i].len};
    evl_stream_in s = {stream, expected == CMP_ANY ? EVL_REV_ANY : expected, c->ev, n};
    evl_append_result res;
    int rc = evl_log_append(c->log, &s, 1, &res);
    if (rc == EVL_OK)
        *rev = res.acks[n - 1].revision;
    else if (rc == EVL_ECONFLICT)
        *rev = res.current_revision == EVL_REV_NONE ? CMP_ANY : res.current_revision;
    else
        cmp_err(err, "evl_log_append: %s", evl_strerror(rc));
    evl_free(res.acks);
    return rc == EVL_OK ? CMP_OK : rc == EVL_ECONFLICT ? CMP_CONFLICT : CMP_FAIL;
}

static void disconnect(void *cl) { free(cl); }

static int count(cmp_run *r, uint64_t *n)
{
    *n = evl_log_head(r->st);
    return 0;
}

static void stop(cmp_run *r)
{
    evl_log_close(r->st);
    r->st = NULL;
    bench_rm_rf(r->dir);
}

/* Load the generated events (shared with evlog over HTTP, which loads its
 * data dir the same way before evlogd opens it).  Consecutive events of one
 * stream go in one evl_stream_in; a batch is cut before a stream would
 * appear in it twice. */
int cmp_evlog_load(const char *dir, uint64_t n, uint64_t seed, char *err)
{
    evl_log_options o;
    evl_log_options_init(&o);
    o.sync = EVL_SYNC_NONE; /* loading is not what is measured */
    evl_log *log;
    int rc = evl_log_open(dir, &o, &log);
    if (rc != EVL_OK) {
        cmp_err(err, "evl_log_open: %s", evl_strerror(rc));
        return -1;
    }
    cmp_gen *g;
    if (cmp_gen_open(seed, &g) != 0) {
        evl_log_close(log);
        cmp_err(err, "generator: out of memory");
        return -1;
    }
    evl_stream_in *s = calloc(LOAD_BATCH, sizeof *s);
    evl_event_in *ev = calloc(LOAD_BATCH, sizeof *ev);
    char(*names)[256] = calloc(LOAD_BATCH, sizeof *names);
    uint8_t *data = malloc((size_t)LOAD_BATCH * 4096);
    size_t ns = 0, ne = 0, used = 0;
    uint64_t done = 0;
    int ret = -1;
    if (!s || !ev || !names || !data)
        goto out;
    while (done < n) {
        cmp_gen_ev ge[64];
        size_t k = cmp_gen_next(g, ge, n - done < 64 ? (size_t)(n - done) : 64);
        if (!k)
            goto out;
        for (size_t i = 0; i < k; i++) {
            int same = ns && !strcmp(names[ns - 1], ge[i].stream);
            int dup = 0;
            for (size_t j = 0; !same && j < ns && !dup; j++)
                dup = !strcmp(names[j], ge[i].stream);
            size_t tl = strlen(ge[i].ev->type) + 1;
            if (dup || ne == LOAD_BATCH || used + ge[i].ev->len + tl > (size_t)LOAD_BATCH * 4096) {
                evl_append_result res;
                if ((rc = evl_log_append(log, s, ns, &res)) != EVL_OK) {
                    cmp_err(err, "load append: %s", evl_strerror(rc));
                    evl_free(res.acks);
                    goto out;
                }
                evl_free(res.acks);
                ns = ne = used = 0;
                same = 0;
            }
            /* the generator's bytes live until its next call: copy them */
            memcpy(data + used, ge[i].ev->type, tl);
            const char *type = (const char *)data + used;
            used += tl;
            memcpy(data + used, ge[i].ev->data, ge[i].ev->len);
            ev[ne] = (evl_event_in){.type = type, .data = data + used, .data_len = ge[i].ev->len};
            used += ge[i].ev->len;
            if (!same) {
                snprintf(names[ns], sizeof names[ns], "%s", ge[i].stream);
                s[ns] = (evl_stream_in){names[ns], EVL_REV_ANY, &ev[ne], 0};
                ns++;
            }
            s[ns - 1].n_events++;
            ne++;
        }
        done += k;
    }
    if (ns) {
        evl_append_result res;
        rc = evl_log_append(log, s, ns, &res);
        evl_free(res.acks);
        if (rc != EVL_OK) {
            cmp_err(err, "load append: %s", evl_strerror(rc));
            goto out;
        }
    }
    ret = 0;
out:
    if (ret && !err[0])
        cmp_err(err, "load: out of memory or generator failure");
    free(s);
    free(ev);
    free(names);
    free(data);
    cmp_gen_close(g);
    evl_log_close(log);
    return ret;
}

static int load(cmp_run *r, uint64_t n, uint64_t seed)
{
    evl_log_close(r->st); /* the loader opens it without fsync */
    r->st = NULL;
    int rc = cmp_evlog_load(r->dir, n, seed, r->err);
    evl_log_options o;
    evl_log_options_init(&o);
    if (evl_log_open(r->dir, &o, (evl_log **)&r->st) != EVL_OK) {
        cmp_err(r->err, "reopen after load failed");
        return -1;
    }
    return rc;
}

/* A reader as a projector or an export is: a read-only handle of its own,
 * the whole log in position order, every record decoded and CRC-checked. */
static int scan(cmp_run *r, uint64_t *n, uint64_t *bytes)
{
    evl_log_options o;
    evl_log_options_init(&o);
    o.read_only = 1;
    evl_log *log;
    int rc = evl_log_open(r->dir, &o, &log);
    if (rc != EVL_OK) {
        cmp_err(r->err, "read-only open: %s", evl_strerror(rc));
        return -1;
    }
    evl_query q;
    memset(&q, 0, sizeof q);
    evl_iter *it;
    if ((rc = evl_iter_open(log, &q, &it)) != EVL_OK) {
        cmp_err(r->err, "evl_iter_open: %s", evl_strerror(rc));
        evl_log_close(log);
        return -1;
    }
    evl_event ev;
    uint64_t k = 0, b = 0;
    while ((rc = evl_iter_next(it, &ev)) == EVL_OK) {
        k++;
        b += ev.data_len + ev.stream_len + ev.type_len;
    }
    evl_iter_close(it);
    evl_log_close(log);
    if (rc != EVL_END) {
        cmp_err(r->err, "evl_iter_next: %s", evl_strerror(rc));
        return -1;
    }
    *n = k;
    *bytes = b;
    return 0;
}

const cmp_sys cmp_evlog = {
    .name = "evlog",
    .evlog = 1,
    .durability = durability,
    .start = start,
    .connect = connect_,
    .append = append,
    .disconnect = disconnect,
    .count = count,
    .stop = stop,
    .load = load,
    .scan = scan,
};
