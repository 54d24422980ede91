/* GET / and GET /console/{file}: the web console, a single page whose HTML,
 * CSS and JS live in server/console/ and are embedded at build time.  The
 * page uses only the public API, with the token the user gives it; the
 * files themselves are open (the page asks for the token).
 *
 * The files carry an ETag so that a reload costs a 304, and the page a
 * Content-Security-Policy that allows scripts and styles from this server
 * only: the console renders event data written by anyone with the writer
 * role, and builds its DOM with text nodes, but the policy keeps an escaping
 * mistake from ever running injected script. */
#include <strings.h>

#include "server/console_assets.h"
#include "server/srv_int.h"

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                          "form-action 'none'; frame-ancestors 'none'";

static const srv_asset *find(const char *name) {
    size_t n;
    const srv_asset *a = evl__srv_console_assets(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(a[i].name, name)) return &a[i];
    return NULL;
}

static void serve(srv_req *q, const srv_asset *a) {
    srv_hreq *out = q->rsp.req;
    evl__srv_add_header(out, "ETag", a->etag);
    /* revalidate on every load: a new evlogd may serve a new console */
    evl__srv_add_header(out, "Cache-Control", "no-cache");
    evl__srv_add_header(out, "X-Content-Type-Options", "nosniff");
    evl__srv_add_header(out, "Referrer-Policy", "no-referrer");
    if (!strncmp(a->ctype, "text/html", 9)) evl__srv_add_header(out, "Content-Security-Policy", csp);
    const char *inm = evl__srv_hdr(q->rsp.req, "If-None-Match");
    if (inm && strstr(inm, a->etag)) {
        evl__srv_reply(&q->rsp, 304, NULL, NULL);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    evbuffer_add_reference(b, a->data, a->len, NULL, NULL);
    evl__srv_reply(&q->rsp, 200, a->ctype, b);
    evbuffer_free(b);
}

void evl__srv_console(srv_req *q) {
    const srv_asset *a = find(q->n_seg == 2 ? q->seg[1] : "index.html");
    if (!a) {
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, "no such console file: %s", q->seg[1]);
        return;
    }
    serve(q, a);
}
