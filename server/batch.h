/* Append bodies parsed into a batch for evl_log_append_async(); see batch.c. */
#ifndef EVLOG_SERVER_BATCH_H
#define EVLOG_SERVER_BATCH_H

#include "server/srv_int.h"

typedef struct srv_bstream {
    char *name;               /* owned by the batch (strs) */
    uint64_t expected;
    size_t first, n;          /* its events: ev[first .. first+n) */
} srv_bstream;

/* Zero-initialise; everything it points to is owned by it or borrowed from
 * the body, which must outlive it.  Free with evl__srv_batch_free(). */
typedef struct srv_batch {
    srv_bstream *s;
    size_t n_s, cap_s;
    evl_event_in *ev;
    size_t n_ev, cap_ev;
    evl_json_in *json;        /* JSON bodies: the converted data and meta */
    size_t n_json, cap_json;
    char **strs;              /* names and types copied NUL-terminated */
    size_t n_strs, cap_strs;
    evl_stream_in *in;        /* the batch to append: n_s streams */
    size_t event_index;       /* with SRV_ACTOR_FORBIDDEN: the event */
    int err;                  /* with a failure: the evl_err and a sentence */
    char why[512];
} srv_batch;

/* Each returns EVL_OK or the error also left in b->err with b->why. */
int evl__srv_batch_json_stream(srv_batch *b, const char *stream, uint64_t expected,
                               const uint8_t *body, size_t len);
int evl__srv_batch_json_multi(srv_batch *b, const uint8_t *body, size_t len);
int evl__srv_batch_mp_stream(srv_batch *b, const char *stream, uint64_t expected,
                             const uint8_t *body, size_t len);
int evl__srv_batch_mp_multi(srv_batch *b, const uint8_t *body, size_t len);
void evl__srv_batch_free(srv_batch *b);

/* meta.actor against the bearer token (@p a non-NULL: a token file is in
 * use).  An event without meta.actor gets @p name, the token's name (none
 * when the token has no name).  A meta.actor that is another token's name
 * is refused unless @p role is admin: SRV_ACTOR_FORBIDDEN with b->why.
 * Any other value the client gives is kept.  EVL_OK, SRV_ACTOR_FORBIDDEN
 * or EVL_ENOMEM. */
#define SRV_ACTOR_FORBIDDEN (-1)
int evl__srv_batch_actor(srv_batch *b, const srv_auth *a, srv_role role, const char *name);

#endif
