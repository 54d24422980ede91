/* Workload 6 on NATS JetStream: each subscriber is a connection with an
 * ephemeral push consumer (deliver new, no acks) on a fresh stream; the
 * publisher publishes synchronously (the stream's ack comes back after the
 * message is stored).  Event k is stream sequence k. */
#include <stdio.h>
#include <stdlib.h>
#include <nats/nats.h>

#include "cmp.h"

int cmp_nats_fresh(const cmp_env *env, char *err);
void *cmp_nats_client(const cmp_env *env, char *err);
void cmp_nats_client_free(void *c);
void *cmp_nats_js(void *c);

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc, (void)sub;
    jsMsgMetaData *md = NULL;
    if (natsMsg_GetMetaData(&md, m) == NATS_OK)
        cmp_feed_got(closure, md->Sequence.Stream);
    jsMsgMetaData_Destroy(md);
    natsMsg_Destroy(m);
}

typedef struct pctx {
    void *cl;
    const cmp_feed *f;
} pctx;

static int pub(void *arg, int k, char *err)
{
    pctx *p = arg;
    const cmp_ev *e = &p->f->evs[k - 1];
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, "ev.feed-1", NULL, (const char *)e->data, (int)e->len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Ev-Type", e->type);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    char id[37];
    cmp_uuid(id);
    po.MsgId = id;
    if (s == NATS_OK)
        s = js_PublishMsg(NULL, cmp_nats_js(p->cl), m, &po, NULL);
    natsMsg_Destroy(m);
    if (s != NATS_OK)
        cmp_err(err, "nats publish: %s", natsStatus_GetText(s));
    return s == NATS_OK ? 0 : -1;
}

int cmp_nats_feed(const cmp_env *env, cmp_feed *f)
{
    int n = f->subscribers, rc = -1;
    void **cl = calloc((size_t)n, sizeof *cl);
    natsSubscription **subs = calloc((size_t)n, sizeof *subs);
    pctx p = {.f = f};
    if (!cl || !subs || cmp_feed_begin(f) != 0 || cmp_nats_fresh(env, f->err) != 0)
        goto out;
    for (int i = 0; i < n; i++) {
        if (!(cl[i] = cmp_nats_client(env, f->err)))
            goto out;
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Config.DeliverPolicy = js_DeliverNew;
        so.Config.AckPolicy = js_AckNone;
        jsErrCode je = 0;
        natsStatus s = js_Subscribe(&subs[i], cmp_nats_js(cl[i]), "ev.>", on_msg, f, NULL, &so, &je);
        if (s != NATS_OK) {
            cmp_err(f->err, "nats subscribe: %s (%d)", natsStatus_GetText(s), (int)je);
            goto out;
        }
    }
    if (!(p.cl = cmp_nats_client(env, f->err)) || cmp_feed_publish(f, pub, &p) != 0)
        goto out;
    cmp_feed_wait(f, 3000);
    rc = 0;
out:
    for (int i = 0; subs && i < n; i++)
        if (subs[i]) {
            natsSubscription_Unsubscribe(subs[i]);
            natsSubscription_Destroy(subs[i]);
        }
    for (int i = 0; cl && i < n; i++)
        if (cl[i])
            cmp_nats_client_free(cl[i]);
    if (p.cl)
        cmp_nats_client_free(p.cl);
    free(subs);
    free(cl);
    return rc;
}
