/* Every request enters here: the connection's state, the limits that
 * libevent does not enforce itself (URI length, the connection cap, the
 * stop), the route, the method, and the caller's role.  Handlers then run
 * with a parsed srv_req that lives until they return; those that answer
 * later copy what they need.
 */
#include <stdio.h>
#include <strings.h>

#include "server/srv_int.h"

typedef void (*handler_fn)(srv_req *q);

typedef struct route {
    const char *seg[SRV_MAX_SEGS]; /* "*" matches any one segment */
    int n;
    handler_fn get, post;
    srv_role get_role, post_role;
    int token_param;               /* accept ?access_token= (EventSource cannot send headers) */
} route;

static const route routes[] = {
    {{0}, 0, evl__srv_console, NULL, ROLE_NONE, ROLE_NONE, 0},
    {{"console", "*"}, 2, evl__srv_console, NULL, ROLE_NONE, ROLE_NONE, 0},
    {{"healthz"}, 1, evl__srv_healthz, NULL, ROLE_NONE, ROLE_NONE, 0},
    {{"readyz"}, 1, evl__srv_readyz, NULL, ROLE_NONE, ROLE_NONE, 0},
    {{"metrics"}, 1, evl__srv_metrics, NULL, ROLE_READER, ROLE_NONE, 0},
    {{"streams", "*"}, 2, evl__srv_read_stream, evl__srv_append_stream, ROLE_READER, ROLE_WRITER, 0},
    {{"append"}, 1, NULL, evl__srv_append_multi, ROLE_NONE, ROLE_WRITER, 0},
    {{"events"}, 1, evl__srv_read_events, NULL, ROLE_READER, ROLE_NONE, 0},
    {{"events", "*"}, 2, evl__srv_read_event, NULL, ROLE_READER, ROLE_NONE, 0},
    {{"digest"}, 1, evl__srv_digest, NULL, ROLE_READER, ROLE_NONE, 0},
    {{"subscribe"}, 1, evl__srv_subscribe, NULL, ROLE_READER, ROLE_NONE, 1},
    {{"projections"}, 1, evl__srv_proj_list, NULL, ROLE_READER, ROLE_NONE, 0},
    {{"projections", "*"}, 2, evl__srv_proj_list, NULL, ROLE_READER, ROLE_NONE, 0},
    {{"projections", "*", "rebuild"}, 3, NULL, evl__srv_proj_rebuild, ROLE_NONE, ROLE_ADMIN, 0},
    {{"projections", "*", "digest"}, 3, evl__srv_proj_digest, NULL, ROLE_READER, ROLE_NONE, 0},
    {{"projections", "*", "query"}, 3, evl__srv_proj_query, evl__srv_proj_query, ROLE_READER,
     ROLE_READER, 0},
    {{"projections", "*", "history", "*", "*"}, 5, evl__srv_proj_history, NULL, ROLE_READER, ROLE_NONE, 0},
};

static const route *match(const srv_req *q) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route *r = &routes[i];
        if (r->n != q->n_seg) continue;
        int k = 0;
        while (k < r->n && (!strcmp(r->seg[k], "*") || !strcmp(r->seg[k], q->seg[k]))) k++;
        if (k == r->n) return r;
    }
    return NULL;
}

static void allow_header(srv_req *q, const route *r) {
    char allow[64] = "OPTIONS";
    if (r->get) strcat(allow, ", GET, HEAD");
    if (r->post) strcat(allow, ", POST");
    evl__srv_add_header(q->rsp.req, "Allow", allow);
}

static const char *bearer(srv_req *q, const route *r) {
    const char *h = evl__srv_hdr(q->rsp.req, "Authorization");
    if (h) {
        while (*h == ' ') h++;
        if (!strncasecmp(h, "Bearer ", 7)) {
            h += 7;
            while (*h == ' ') h++;
            return h;
        }
        return NULL;
    }
    return r->token_param ? evl__srv_param(q, "access_token") : NULL;
}

/* 0: go on; -1: answered (401/403). */
static int authorize(srv_req *q, const route *r, srv_role need) {
    const srv_auth *a = q->rsp.w->srv->auth;
    if (!a) {
        q->role = ROLE_ADMIN;
        return 0;
    }
    const char *tok = bearer(q, r);
    q->role = tok ? evl__srv_auth_role(a, tok, strlen(tok), &q->token_name) : ROLE_NONE;
    if (need == ROLE_NONE || q->role >= need) return 0;
    static const char *names[] = {"none", "reader", "writer", "admin"};
    if (q->role == ROLE_NONE)
        evl__srv_problem(&q->rsp, 401, "unauthorized", NULL,
                         tok ? "the bearer token is not valid"
                             : "this endpoint needs a bearer token (Authorization: Bearer TOKEN)");
    else
        evl__srv_problem(&q->rsp, 403, "forbidden", NULL, "this needs the %s role; the token has %s",
                         names[need], names[q->role]);
    return -1;
}

static void dispatch(srv_req *q) {
    srv_worker *w = q->rsp.w;
    const evl_srv_config *cfg = &w->srv->cfg;
    srv_hreq *out = q->rsp.req;
    if (q->conn && q->conn->over_cap) {
        evl__srv_add_header(out, "Connection", "close");
        evl__srv_add_header(out, "Retry-After", "1");
        evl__srv_problem(&q->rsp, 503, "too-many-connections", NULL,
                         "the server has %u connections open, its limit", cfg->max_connections);
        return;
    }
    if (w->stopping) {
        evl__srv_problem(&q->rsp, 503, "shutting-down", NULL, "the server is shutting down");
        return;
    }
    const char *uri = q->rsp.req->uri;
    if (strlen(uri) > cfg->max_uri) {
        evl__srv_problem(&q->rsp, 414, "uri-too-long", NULL,
                         "the request target has %zu bytes; the limit is %zu", strlen(uri),
                         cfg->max_uri);
        return;
    }
    const struct evhttp_uri *u = q->rsp.req->u;
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    int rc = u ? evl__srv_split_path(q, evhttp_uri_get_path(u)) : EVL_ENOTFOUND;
    if (rc == EVL_EINVAL) {
        evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "the path has a NUL byte");
        return;
    }
    if (rc == EVL_OK && qs) {
        rc = evl__srv_split_query(q, qs);
        if (rc == EVL_EINVAL) {
            evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "the query string is malformed");
            return;
        }
    }
    if (rc == EVL_ENOMEM) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    if (rc) {
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, "no such resource");
        return;
    }
    const route *r = match(q);
    if (!r) {
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, "no such resource: %s",
                         evhttp_uri_get_path(u));
        return;
    }
    handler_fn h = NULL;
    srv_role need = ROLE_NONE;
    switch (q->method) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_HEAD:
        h = r->get;
        need = r->get_role;
        break;
    case EVHTTP_REQ_POST:
        h = r->post;
        need = r->post_role;
        break;
    case EVHTTP_REQ_OPTIONS:
        allow_header(q, r);
        evl__srv_reply(&q->rsp, 204, NULL, NULL);
        return;
    default:
        break;
    }
    if (!h) {
        allow_header(q, r);
        evl__srv_problem(&q->rsp, 405, "method-not-allowed", NULL, "%s does not take this method",
                         evhttp_uri_get_path(u));
        return;
    }
    if (authorize(q, r, need)) return;
    h(q);
}

void evl__srv_handle(srv_hreq *req, srv_worker *w) {
    srv_req q;
    memset(&q, 0, sizeof q);
    q.rsp.w = w;
    q.rsp.req = req;
    q.rsp.t0 = evl__srv_mono_ns();
    q.conn = req->conn;
    q.method = req->method;
    const char *accept = evl__srv_hdr(req, "Accept");
    q.rsp.want_mp = accept && strstr(accept, "msgpack") != NULL;
    dispatch(&q);
    evl__srv_req_release(&q);
}
