/* The NATS JetStream baseline (libnats): one stream EVENTS over subjects
 * ev.<stream>, file storage; one connection per client; a single append is
 * a synchronous publish that waits for the stream's ack, with the event id
 * as Nats-Msg-Id (JetStream's idempotency, like evlog's ids) and the type in
 * a header.  A batch is 100 asynchronous publishes and a wait for their acks
 * (JetStream 2.9 has no atomic batch).  Optimistic concurrency is the
 * expected last subject sequence; on a conflict the client reads the
 * subject's last message to learn the current one. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nats/nats.h>

#include "cmp.h"

static const char *durability(const cmp_env *env)
{
    (void)env;
    return "file store, acked before any fsync (JetStream's default: fsync every 2 min)";
}

static const char *durability_synced(const cmp_env *env)
{
    return env->nats_durable_how == CMP_NATS_SYNC_INTERVAL
               ? "file store, sync_interval: always (fsync per message before its ack)"
               : "file store in a directory with chattr +S: each message's write is synchronous "
                 "(on disk before its ack), as sync_interval: always, which nats-server 2.9 lacks";
}

typedef struct client {
    natsConnection *nc;
    jsCtx *js;
    int async_errors;
    char subj[300];
} client;

static void on_async_err(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js, (void)pae;
    ((client *)closure)->async_errors++;
}

static void disconnect(void *cl)
{
    client *c = cl;
    if (!c)
        return;
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    free(c);
}

static client *client_open(const char *url, char *err)
{
    client *c = calloc(1, sizeof *c);
    natsOptions *o = NULL;
    natsStatus s = c ? natsOptions_Create(&o) : NATS_NO_MEMORY;
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(o, true);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->nc, o);
    natsOptions_Destroy(o);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.ErrHandler = on_async_err;
    jo.PublishAsync.ErrHandlerClosure = c;
    jo.Wait = 30000;
    if (s == NATS_OK)
        s = natsConnection_JetStream(&c->js, c->nc, &jo);
    if (s != NATS_OK) {
        cmp_err(err, "nats %s: %s", url, natsStatus_GetText(s));
        disconnect(c);
        return NULL;
    }
    return c;
}

/* A fresh stream: delete and create. */
static int fresh_stream(const char *url, char *err)
{
    client *c = client_open(url, err);
    if (!c)
        return -1;
    jsErrCode je = 0;
    js_DeleteStream(c->js, "EVENTS", NULL, &je); /* absent is fine */
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"ev.>"};
    cfg.Name = "EVENTS";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, c->js, &cfg, NULL, &je);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK)
        cmp_err(err, "nats add stream: %s (%d)", natsStatus_GetText(s), (int)je);
    disconnect(c);
    return s == NATS_OK ? 0 : -1;
}

/* The two systems share every function; start() records which server a
 * run talks to, in r->st. */
static const char *url(const cmp_run *r) { return r->st; }

static int start_at(cmp_run *r, const char *u)
{
    r->st = (void *)(uintptr_t)u; /* borrowed from the env; never freed */
    return fresh_stream(u, r->err);
}
static int start(cmp_run *r) { return start_at(r, r->env->nats); }
static int start_synced(cmp_run *r) { return start_at(r, r->env->nats_durable); }

static void *connect_(cmp_run *r, int idx, char *err)
{
    (void)idx;
    return client_open(url(r), err);
}

/* Subjects cannot hold '.', '*', '>' or blanks inside a token. */
static void subject(char *out, size_t n, const char *stream)
{
    int k = snprintf(out, n, "ev.%s", stream);
    for (int i = 3; i < k && (size_t)i < n; i++)
        if (out[i] == '.' || out[i] == '*' || out[i] == '>' || out[i] == ' ')
            out[i] = '_';
}

static natsMsg *make_msg(const char *subj, const cmp_ev *e)
{
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subj, NULL, (const char *)e->data, (int)e->len) != NATS_OK)
        return NULL;
    natsMsgHeader_Set(m, "Ev-Type", e->type);
    return m;
}

static int append(void *cl, const char *stream, const cmp_ev *evs, size_t n, uint64_t expected,
                  uint64_t *rev, char *err)
{
    client *c = cl;
    subject(c->subj, sizeof c->subj, stream);
    char id[37];
    jsPubOptions po;
    jsPubOptions_Init(&po);
    if (n == 1) {
        natsMsg *m = make_msg(c->subj, evs);
        cmp_uuid(id);
        po.MsgId = id;
        if (expected != CMP_ANY)
            po.ExpectLastSubjectSeq = expected;
        jsPubAck *pa = NULL;
        jsErrCode je = 0;
        natsStatus s = m ? js_PublishMsg(&pa, c->js, m, &po, &je) : NATS_NO_MEMORY;
        natsMsg_Destroy(m);
        if (s == NATS_OK) {
            *rev = pa->Sequence;
            jsPubAck_Destroy(pa);
            return CMP_OK;
        }
        if (je == JSStreamWrongLastSequenceErr) {
            natsMsg *last = NULL;
            *rev = js_GetLastMsg(&last, c->js, "EVENTS", c->subj, NULL, NULL) == NATS_OK
                       ? natsMsg_GetSequence(last)
                       : CMP_ANY;
            natsMsg_Destroy(last);
            return CMP_CONFLICT;
        }
        cmp_err(err, "nats publish: %s (%d)", natsStatus_GetText(s), (int)je);
        return CMP_FAIL;
    }
    if (expected != CMP_ANY) {
        cmp_err(err, "nats: no atomic batch with an expectation");
        return CMP_FAIL;
    }
    c->async_errors = 0;
    for (size_t i = 0; i < n; i++) {
        natsMsg *m = make_msg(c->subj, &evs[i]);
        cmp_uuid(id);
        po.MsgId = id;
        natsStatus s = m ? js_PublishMsgAsync(c->js, &m, &po) : NATS_NO_MEMORY;
        natsMsg_Destroy(m); /* NULL once the library owns it */
        if (s != NATS_OK) {
            cmp_err(err, "nats async publish: %s", natsStatus_GetText(s));
            return CMP_FAIL;
        }
    }
    natsStatus s = js_PublishAsyncComplete(c->js, NULL);
    if (s != NATS_OK || c->async_errors) {
        cmp_err(err, "nats async acks: %s, %d errors", natsStatus_GetText(s), c->async_errors);
        return CMP_FAIL;
    }
    *rev = CMP_ANY;
    return CMP_OK;
}

static int stream_msgs(const char *u, uint64_t *n, char *err)
{
    client *c = client_open(u, err);
    if (!c)
        return -1;
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, c->js, "EVENTS", NULL, NULL);
    if (s == NATS_OK)
        *n = si->State.Msgs;
    else
        cmp_err(err, "nats stream info: %s", natsStatus_GetText(s));
    jsStreamInfo_Destroy(si);
    disconnect(c);
    return s == NATS_OK ? 0 : -1;
}

static int count(cmp_run *r, uint64_t *n) { return stream_msgs(url(r), n, r->err); }

static void stop(cmp_run *r)
{
    client *c = client_open(url(r), r->err);
    if (c)
        js_DeleteStream(c->js, "EVENTS", NULL, NULL);
    disconnect(c);
}

/* Asynchronous publishes, without message ids (the duplicate window would
 * hold millions of them): loading is not what is measured. */
static int load(cmp_run *r, uint64_t n, uint64_t seed)
{
    client *c = client_open(url(r), r->err);
    cmp_gen *g = NULL;
    int rc = -1;
    if (!c || cmp_gen_open(seed, &g) != 0)
        goto out;
    for (uint64_t done = 0; done < n;) {
        cmp_gen_ev ge[64];
        size_t k = cmp_gen_next(g, ge, n - done < 64 ? (size_t)(n - done) : 64);
        if (!k)
            goto out;
        for (size_t i = 0; i < k; i++) {
            subject(c->subj, sizeof c->subj, ge[i].stream);
            natsMsg *m = make_msg(c->subj, ge[i].ev);
            natsStatus s = m ? js_PublishMsgAsync(c->js, &m, NULL) : NATS_NO_MEMORY;
            natsMsg_Destroy(m);
            if (s != NATS_OK) {
                cmp_err(r->err, "nats load: %s", natsStatus_GetText(s));
                goto out;
            }
        }
        done += k;
    }
    if (js_PublishAsyncComplete(c->js, NULL) != NATS_OK || c->async_errors)
        cmp_err(r->err, "nats load: %d publishes failed", c->async_errors);
    else
        rc = 0;
out:
    cmp_gen_close(g);
    disconnect(c);
    return rc;
}

/* An ordered consumer from sequence 1 (flow-controlled push, no acks): the
 * fastest way JetStream replays a stream to one client. */
static int scan(cmp_run *r, uint64_t *n, uint64_t *bytes)
{
    uint64_t want;
    if (stream_msgs(url(r), &want, r->err) != 0)
        return -1;
    client *c = client_open(url(r), r->err);
    if (!c)
        return -1;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription *sub = NULL;
    jsErrCode je = 0;
    natsStatus s = js_SubscribeSync(&sub, c->js, "ev.>", NULL, &so, &je);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, -1, -1);
    uint64_t k = 0, b = 0;
    while (s == NATS_OK && k < want) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 10000);
        if (s != NATS_OK)
            break;
        const char *type = NULL;
        natsMsgHeader_Get(m, "Ev-Type", &type);
        b += (uint64_t)natsMsg_GetDataLength(m) + strlen(natsMsg_GetSubject(m)) +
             (type ? strlen(type) : 0);
        k++;
        natsMsg_Destroy(m);
    }
    if (s != NATS_OK)
        cmp_err(r->err, "nats consumer: %s (%d) after %llu", natsStatus_GetText(s), (int)je,
                (unsigned long long)k);
    natsSubscription_Destroy(sub);
    disconnect(c);
    *n = k;
    *bytes = b;
    return s == NATS_OK ? 0 : -1;
}

int cmp_nats_feed(const cmp_env *env, cmp_feed *f);
int cmp_nats_fresh(const cmp_env *env, char *err) { return fresh_stream(env->nats, err); }
void *cmp_nats_client(const cmp_env *env, char *err) { return client_open(env->nats, err); }
void cmp_nats_client_free(void *c) { disconnect(c); }
void *cmp_nats_js(void *c) { return ((client *)c)->js; }

const cmp_sys cmp_nats = {
    .name = "nats",
    .network = 1,
    .durability = durability,
    .start = start,
    .connect = connect_,
    .append = append,
    .disconnect = disconnect,
    .count = count,
    .stop = stop,
    .load = load,
    .scan = scan,
    .feed = cmp_nats_feed,
};

/* Appends only: loading 10M events one synchronous write at a time would
 * take hours, and replay and feed do not depend on how the log was synced. */
const cmp_sys cmp_nats_durable = {
    .name = "nats-durable",
    .network = 1,
    .durability = durability_synced,
    .start = start_synced,
    .connect = connect_,
    .append = append,
    .disconnect = disconnect,
    .count = count,
    .stop = stop,
};
