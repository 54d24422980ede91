/* Errors as RFC 9457 problem details (application/problem+json).
 *
 * Every error the server sends has this shape:
 *   {"type": "urn:evlog:problem:SLUG", "title": ..., "status": CODE,
 *    "detail": "a sentence naming what was wrong", ...members of the case}
 * `type` is a URN rather than a URL: it identifies the kind of problem
 * without promising a page behind it; docs/http.md lists the slugs.
 */
#include <stdarg.h>
#include <stdio.h>

#include "server/srv_int.h"

typedef struct slug_title {
    const char *slug, *title;
} slug_title;

static const slug_title titles[] = {
    {"bad-request", "Bad request"},
    {"invalid-event", "Invalid event"},
    {"conflict", "Wrong expected revision"},
    {"id-conflict", "Event id conflict"},
    {"not-found", "Not found"},
    {"method-not-allowed", "Method not allowed"},
    {"payload-too-large", "Request too large"},
    {"uri-too-long", "Request target too long"},
    {"unauthorized", "Authentication required"},
    {"forbidden", "Role too low"},
    {"insufficient-storage", "Log is full"},
    {"unavailable", "Service unavailable"},
    {"too-many-connections", "Too many connections"},
    {"shutting-down", "Server shutting down"},
    {"faulted", "Projection faulted"},
    {"timeout", "Timed out"},
    {"bad-sql", "Query refused"},
    {"not-implemented", "Not implemented"},
    {"unsupported-media-type", "Unsupported media type"},
    {"internal", "Internal error"},
};

const char *evl__srv_reason(int code) {
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 507: return "Insufficient Storage";
    }
    return code < 300 ? "OK" : code < 500 ? "Client Error" : "Server Error";
}

static const char *title_of(const char *slug, int code) {
    for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
        if (!strcmp(titles[i].slug, slug)) return titles[i].title;
    return evl__srv_reason(code);
}

int evl__srv_err_status(int err, const char **slug) {
    switch (err) {
    case EVL_ECONFLICT: *slug = "conflict"; return 409;
    case EVL_EIDMIX:
    case EVL_EIDREUSE: *slug = "id-conflict"; return 409;
    case EVL_EFULL: *slug = "insufficient-storage"; return 507;
    case EVL_ETOOBIG: *slug = "payload-too-large"; return 413;
    case EVL_ENOTFOUND: *slug = "not-found"; return 404;
    case EVL_ETIMEDOUT: *slug = "timeout"; return 504;
    case EVL_EFAULTED: *slug = "faulted"; return 503;
    case EVL_EREADONLY:
    case EVL_ERDONLY:
    case EVL_ECLOSED:
    case EVL_ENOMEM: *slug = "unavailable"; return 503;
    case EVL_ESQL:
    case EVL_EWRITESQL:
    case EVL_ELIMIT: *slug = "bad-sql"; return 400;
    case EVL_ESTREAM:
    case EVL_ETYPE:
    case EVL_EID:
    case EVL_EDATA:
    case EVL_EMETA:
    case EVL_EEMPTY:
    case EVL_EDUPID:
    case EVL_EDUPSTREAM: *slug = "invalid-event"; return 400;
    case EVL_EINVAL:
    case EVL_EJSON:
    case EVL_EMSGPACK:
    case EVL_EDEPTH:
    case EVL_EUTF8: *slug = "bad-request"; return 400;
    }
    *slug = "internal";
    return 500;
}

void evl__srv_problem(const srv_rsp *r, int code, const char *slug, json_t *extra,
                      const char *fmt, ...) {
    char detail[1024], type[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(type, sizeof type, "urn:evlog:problem:%s", slug);
    json_t *p = json_pack("{s:s,s:s,s:i,s:s}", "type", type, "title", title_of(slug, code),
                          "status", code, "detail", detail);
    if (p && extra) json_object_update_missing(p, extra);
    json_decref(extra);
    struct evbuffer *b = evbuffer_new();
    if (p && b) {
        char *s = json_dumps(p, JSON_COMPACT);
        if (s) evbuffer_add(b, s, strlen(s));
        free(s); /* jansson allocates with malloc */
    }
    if (code == 401)
        evl__srv_add_header(r->req, "WWW-Authenticate",
                          "Bearer realm=\"evlog\"");
    evl__srv_reply(r, code, "application/problem+json", b);
    if (b) evbuffer_free(b);
    json_decref(p);
}

/* libevent answers a few failures itself, before any handler of ours runs:
 * a malformed request line or header (400), headers or a body over the
 * limits (413), a method it was told to refuse (501). */
void evl__srv_problem_raw(struct evbuffer *out, int code) {
    const char *slug = "bad-request",
               *detail = "the request line or its headers are malformed, or larger than "
                         "this server accepts (see --max-headers)";
    if (code == 413) {
        slug = "payload-too-large";
        detail = "the request's headers or body are larger than this server accepts "
                 "(see --max-body and --max-headers)";
    } else if (code == 501) {
        slug = "not-implemented";
        detail = "this method is not supported";
    } else if (code == 417) {
        detail = "the Expect header asks for something this server does not do";
    } else if (code >= 500) {
        slug = "internal";
        detail = "the server could not read this request";
    }
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"type\":\"urn:evlog:problem:%s\",\"title\":\"%s\",\"status\":%d,"
                     "\"detail\":\"%s\"}",
                     slug, title_of(slug, code), code, detail);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                        code, evl__srv_reason(code), n, body);
}
