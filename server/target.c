/* The request target taken apart: path segments and query parameters,
 * percent-decoded.  Separate from the router so that the fuzzer
 * (fuzz/fuzz_http.c) can drive exactly what a request's bytes reach. */
#include "server/srv_int.h"

/* Split "/a/b%2Fc" into decoded segments; a decoded NUL is refused
 * (EVL_EINVAL), more segments than any route has are EVL_ENOTFOUND. */
int evl__srv_split_path(srv_req *q, const char *path) {
    if (!path || path[0] != '/') return EVL_ENOTFOUND;
    const char *p = path + 1;
    if (!*p) return EVL_OK; /* "/" */
    for (;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (q->n_seg == SRV_MAX_SEGS) return EVL_ENOTFOUND;
        char *raw = evl_malloc(n + 1);
        if (!raw) return EVL_ENOMEM;
        memcpy(raw, p, n);
        raw[n] = '\0';
        size_t dl = 0;
        char *dec = evhttp_uridecode(raw, 0, &dl);
        evl_free(raw);
        if (!dec) return EVL_ENOMEM; /* libevent fails it only for memory */
        if (strlen(dec) != dl) {
            free(dec);
            return EVL_EINVAL;
        }
        q->seg[q->n_seg++] = dec; /* malloc'd by libevent: freed with free() */
        if (!e) return EVL_OK;
        p = e + 1;
    }
}

/* "a=1&b&c=x%20y": libevent 2.1's own parser refuses a key without '=' (we
 * use bare flags such as ?backward) and its key-value lists refuse line
 * breaks (SQL in a GET query has them). */
int evl__srv_split_query(srv_req *q, const char *qs) {
    while (*qs) {
        size_t n = strcspn(qs, "&");
        if (n) {
            if (q->n_param == SRV_MAX_PARAMS) return EVL_EINVAL;
            const char *eq = memchr(qs, '=', n);
            size_t kl = eq ? (size_t)(eq - qs) : n;
            char *k = evl_malloc(kl + 1), *v = evl_malloc(n - kl + 1);
            if (!k || !v) {
                evl_free(k);
                evl_free(v);
                return EVL_ENOMEM;
            }
            memcpy(k, qs, kl);
            k[kl] = '\0';
            memcpy(v, eq ? eq + 1 : "", eq ? n - kl - 1 : 0);
            v[eq ? n - kl - 1 : 0] = '\0';
            size_t dk = 0, dv = 0;
            srv_kv *kv = &q->param[q->n_param];
            kv->key = evhttp_uridecode(k, 1, &dk);
            kv->val = evhttp_uridecode(v, 1, &dv);
            evl_free(k);
            evl_free(v);
            if (kv->key || kv->val) q->n_param++; /* freed with the request */
            if (!kv->key || !kv->val) return EVL_ENOMEM;
            if (strlen(kv->key) != dk || strlen(kv->val) != dv) return EVL_EINVAL;
        }
        qs += n;
        if (*qs) qs++;
    }
    return EVL_OK;
}

void evl__srv_req_release(srv_req *q) {
    for (int i = 0; i < q->n_seg; i++) free(q->seg[i]);
    for (int i = 0; i < q->n_param; i++) {
        free(q->param[i].key);
        free(q->param[i].val);
    }
    q->n_seg = q->n_param = 0;
}
