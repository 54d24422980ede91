/* Fuzz the pieces of the HTTP request path that see a request's bytes
 * before any handler: the request target as libevent parses it, then our
 * split into decoded path segments and query parameters (server/target.c),
 * the stream name check on the segment that names a stream, the numeric
 * and time parameters (from, limit, min_position, since, until), the
 * Last-Event-ID and Expected-Revision header values, event ids in paths,
 * and a bearer token against a loaded token file.
 *
 * Input: up to five fields separated by '\n': target, Last-Event-ID,
 * Expected-Revision, a bearer token, a UUID. */
#include <stdio.h>
#include <unistd.h>

#include "server/srv_int.h"

static srv_auth *g_auth;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[] = "/tmp/evl-fuzz-tokens-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    static const char toks[] = "# fuzz\nreader-secret reader\n"
        "sha256:ef80202ea99d7c668a9677d9242456057ac10488311cb8757674490e194a56e1 writer\n";
    if (write(fd, toks, sizeof toks - 1) == (ssize_t)(sizeof toks - 1)) {
        char err[256];
        evl__srv_auth_load(path, &g_auth, err, sizeof err);
    }
    close(fd);
    unlink(path);
    return 0;
}

static void field(const uint8_t **p, const uint8_t *end, char *out, size_t cap) {
    size_t n = 0;
    while (*p < end && **p != '\n') {
        if (n + 1 < cap) out[n++] = (char)**p;
        (*p)++;
    }
    if (*p < end) (*p)++;
    out[n] = '\0';
}

static void target(const char *t) {
    srv_req q;
    memset(&q, 0, sizeof q);
    for (int flags = 0; flags <= 1; flags++) {
        struct evhttp_uri *u = evhttp_uri_parse_with_flags(t, flags ? EVHTTP_URI_NONCONFORMANT : 0);
        if (!u) continue;
        const char *qs = evhttp_uri_get_query(u);
        if (evl__srv_split_path(&q, evhttp_uri_get_path(u)) == EVL_OK && (!qs || evl__srv_split_query(&q, qs) == EVL_OK)) {
            if (q.n_seg >= 2) {
                evl_name_check(q.seg[1], strlen(q.seg[1]));
                uint8_t id[16];
                evl_uuid_parse(q.seg[1], strlen(q.seg[1]), id);
            }
            static const char *nums[] = {"from", "limit", "min_position", "timeout_ms", "until"};
            for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
                uint64_t v;
                const char *s = evl__srv_param(&q, nums[i]);
                if (s) evl__srv_u64(s, &v);
            }
            static const char *times[] = {"since", "until"};
            for (size_t i = 0; i < 2; i++) {
                int64_t ns;
                const char *s = evl__srv_param(&q, times[i]);
                if (s) evl_time_parse(s, strlen(s), &ns);
            }
            uint64_t e;
            const char *s = evl__srv_param(&q, "expected_revision");
            if (s) evl_json_parse_expected(s, &e);
            evl__srv_flag(&q, "backward");
        }
        evl__srv_req_release(&q);
        evhttp_uri_free(u);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data, *end = data + size;
    char t[8192], last[512], expected[512], token[512], uuid[128];
    field(&p, end, t, sizeof t);
    field(&p, end, last, sizeof last);
    field(&p, end, expected, sizeof expected);
    field(&p, end, token, sizeof token);
    field(&p, end, uuid, sizeof uuid);
    target(t);
    uint64_t v;
    evl__srv_u64(last, &v);
    evl_json_parse_expected(expected, &v);
    const char *who;
    if (g_auth) evl__srv_auth_role(g_auth, token, strlen(token), &who);
    uint8_t id[16];
    evl_uuid_parse(uuid, strlen(uuid), id);
    int64_t ns;
    evl_time_parse(uuid, strlen(uuid), &ns);
    return 0;
}
