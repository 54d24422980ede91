/* server/http1.c: request heads and chunked bodies, whole and byte by byte. */
#include "server/http1.h"
#include "test.h"

#define MAX 8192

static srv_h1_field fields[16];

/* Parse @p n bytes, growing the field array as the parser asks: the way a
 * connection would, from 16 fields up. */
static long parse(const char *s, size_t n, size_t max, size_t *scanned, srv_h1_head *h) {
    static srv_h1_field *big;
    static size_t cap;
    h->field = fields;
    h->cap_field = 16;
    long rc;
    while ((rc = evl__srv_h1_head(s, n, max, scanned, h)) == SRV_H1_MORE_FIELDS) {
        size_t want = h->cap_field * 2;
        if (cap < want) {
            free(big);
            big = malloc(want * sizeof *big);
            CHECK(big);
            cap = want;
        }
        h->field = big;
        h->cap_field = want;
    }
    return rc;
}

static long head(const char *s, srv_h1_head *h) {
    size_t scanned = 0;
    return parse(s, strlen(s), MAX, &scanned, h);
}

/* The same head fed one byte more at a time gives 0 until it is whole, then
 * the same length as all at once. */
static void bytewise(const char *s) {
    srv_h1_head h, whole;
    long want = head(s, &whole);
    size_t scanned = 0, n = strlen(s);
    for (size_t k = 1; k <= n; k++) {
        long rc = parse(s, k, MAX, &scanned, &h);
        if (rc != 0) {
            CHECK(rc == want);
            if (rc > 0) CHECK((size_t)rc == k);
            return;
        }
    }
    CHECK(want == 0);
}

static int field_is(const srv_h1_head *h, const char *name, const char *want) {
    size_t n;
    const char *v = evl__srv_h1_field(h, name, &n);
    return v && n == strlen(want) && !memcmp(v, want, n);
}

static void heads(void) {
    srv_h1_head h;
    const char *req = "POST /streams/order-1?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type:  application/msgpack \r\nContent-Length: 42\r\n\r\nBODY";
    long rc = head(req, &h);
    CHECK(rc == (long)(strlen(req) - 4));
    CHECK(h.method_len == 4 && !memcmp(h.method, "POST", 4));
    CHECK(h.target_len == strlen("/streams/order-1?x=1") && !memcmp(h.target, "/streams/order-1?x=1", h.target_len));
    CHECK(h.minor == 1 && h.n_field == 3 && h.content_length == 42 && !h.chunked && h.keep_alive);
    CHECK(field_is(&h, "content-type", "application/msgpack")); /* any case, spaces trimmed */
    CHECK(field_is(&h, "HOST", "127.0.0.1"));
    size_t n;
    CHECK(!evl__srv_h1_field(&h, "Accept", &n) && n == 0);
    bytewise(req);

    /* bare LF line ends, empty lines before the request line */
    req = "\r\n\nGET / HTTP/1.0\nConnection: keep-alive\n\n";
    CHECK(head(req, &h) == (long)strlen(req));
    CHECK(h.minor == 0 && h.keep_alive && h.content_length == 0);
    bytewise(req);
    CHECK(head("GET / HTTP/1.0\r\n\r\n", &h) > 0 && !h.keep_alive);
    CHECK(head("GET / HTTP/1.1\r\nConnection: upgrade, Close\r\n\r\n", &h) > 0 && !h.keep_alive);
    CHECK(head("GET / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n", &h) > 0 && h.expect_continue);
    CHECK(head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &h) > 0 && h.chunked);
    CHECK(head("GET / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", &h) > 0 &&
          h.content_length == 7);
    CHECK(head("GET / HTTP/1.1\r\nX: \r\n\r\n", &h) > 0 && field_is(&h, "X", ""));
    CHECK(head("GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n", &h) > 0); /* obs-text in a value */

    /* not yet whole */
    CHECK(head("", &h) == 0);
    CHECK(head("GET / HTTP/1.1\r\nHost: x\r\n", &h) == 0);
    CHECK(head("GET / HTTP/1.1\r\nHost: x\r\n\r", &h) == 0);

    /* malformed: 400 */
    static const char *bad[] = {
        "GET  / HTTP/1.1\r\n\r\n",                  /* two spaces */
        "GET /\r\n\r\n",                            /* HTTP/0.9 */
        "GET / HTTP/1.1 \r\n\r\n",                  /* trailing space */
        "G(T / HTTP/1.1\r\n\r\n",                   /* not a token */
        "GET /a b HTTP/1.1\r\n\r\n",                /* space in the target */
        "GET /\x01 HTTP/1.1\r\n\r\n",               /* control in the target */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",       /* space before the colon */
        "GET / HTTP/1.1\r\nHost x\r\n\r\n",         /* no colon */
        "GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",/* obs-fold */
        "GET / HTTP/1.1\r\nA: 1\r2\r\n\r\n",        /* bare CR */
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", /* smuggling */
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/x.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long r = head(bad[i], &h);
        if (r != -400) fprintf(stderr, "bad[%zu]: %ld\n", i, r);
        CHECK(r == -400);
        bytewise(bad[i]);
    }
    /* a NUL in a value (strlen would stop at it) */
    static const char nul[] = "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n";
    size_t scanned = 0;
    CHECK(parse(nul, sizeof nul - 1, MAX, &scanned, &h) == -400);

    CHECK(head("GET / HTTP/2.0\r\n\r\n", &h) == -505);
    CHECK(head("GET / HTTP/1.2\r\n\r\n", &h) == -505);
    CHECK(head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h) == -501);
    CHECK(head("GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", &h) == -417);

    /* too long: whole or not, and too many fields */
    char big[MAX + 64];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    scanned = 0;
    CHECK(parse(big, MAX, MAX, &scanned, &h) == 0);     /* could still end in time */
    CHECK(parse(big, MAX + 1, MAX, &scanned, &h) == -431);
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    memcpy(big + MAX + 1 - 13, " HTTP/1.1\r\n\r\n", 13); /* whole, one byte over */
    scanned = 0;
    CHECK(parse(big, sizeof big, MAX, &scanned, &h) == -431);
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    memcpy(big + MAX - 13, " HTTP/1.1\r\n\r\n", 13); /* whole, exactly at the bound */
    scanned = 0;
    CHECK(parse(big, sizeof big, MAX, &scanned, &h) == MAX);
    /* fields are bounded by bytes only: 2000 tiny ones fit in 8 KiB, and
     * the same with one byte more than the bound does not */
    static char many[MAX + 64];
    size_t at = (size_t)sprintf(many, "GET / HTTP/1.1\r\n");
    while (at + 4 + 2 <= MAX) at += (size_t)sprintf(many + at, "A:\r\n");
    sprintf(many + at, "\r\n");
    CHECK(head(many, &h) == (long)at + 2 && h.n_field > 2000);
    size_t fields_in = h.n_field;
    sprintf(many + at, "A:\r\n\r\n");
    CHECK(head(many, &h) == -431);
    bytewise(many);
    CHECK(fields_in == (at - 16) / 4);
    CHECK(evl__srv_h1_has_token("gzip, close ,x", 14, "CLOSE"));
    CHECK(!evl__srv_h1_has_token("closed", 6, "close"));
    CHECK(!evl__srv_h1_has_token("", 0, "close"));
}

/* Decode @p s fed in pieces of @p step bytes, in place. */
static long dechunk(const char *s, size_t step, char *out, size_t *out_len, uint64_t max, int *done) {
    srv_h1_chunks c;
    memset(&c, 0, sizeof c);
    size_t n = strlen(s), used = 0;
    *out_len = 0;
    char buf[1024];
    memcpy(buf, s, n);
    while (used < n && !evl__srv_h1_chunks_done(&c)) {
        size_t k = n - used < step ? n - used : step;
        /* in place: the output may overwrite what was consumed */
        long rc = evl__srv_h1_dechunk(&c, buf + used, k, buf, out_len, max);
        if (rc < 0) return rc;
        CHECK((size_t)rc <= k);
        used += (size_t)rc;
        if ((size_t)rc < k) break;
    }
    memcpy(out, buf, *out_len);
    *done = evl__srv_h1_chunks_done(&c);
    return (long)used;
}

static void chunks(void) {
    char out[1024];
    size_t len;
    int done;
    const char *body = "5\r\nhello\r\n1;ext=\"a b\"\r\n,\r\n6\n world\n0\r\nTrailer: x\r\n\r\nNEXT";
    for (size_t step = 1; step <= 64; step++) {
        long rc = dechunk(body, step, out, &len, 1000, &done);
        CHECK(done && rc == (long)(strlen(body) - 4)); /* stops before the next request */
        CHECK(len == 12 && !memcmp(out, "hello, world", 12));
    }
    CHECK(dechunk("0\r\n\r\n", 1, out, &len, 10, &done) == 5 && done && len == 0);
    CHECK(dechunk("A\r\n0123456789\r\n0\r\n\r\n", 3, out, &len, 10, &done) > 0 && done && len == 10);
    /* not yet whole */
    CHECK(dechunk("5\r\nhel", 2, out, &len, 100, &done) == 6 && !done && len == 3);
    /* too large: in one chunk, over several, a size with too many digits */
    CHECK(dechunk("B\r\n", 1, out, &len, 10, &done) == -413);
    CHECK(dechunk("6\r\n012345\r\n5\r\n", 1, out, &len, 10, &done) == -413);
    CHECK(dechunk("10000000000000000\r\n", 1, out, &len, UINT64_MAX, &done) == -413);
    /* malformed */
    static const char *bad[] = {"\r\n", "x\r\n", "5\r\nhelloX", "5\r\nhello\r\r", "0\r\n:bad\r\n\r\n",
                                "3\r\nabc\r\n0\r\n\r\x01", "1\x01\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(dechunk(bad[i], 1, out, &len, 100, &done) == -400);
}

int main(void) {
    heads();
    chunks();
    printf("http1: ok\n");
    return 0;
}
