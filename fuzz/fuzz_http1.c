/* Fuzz server/http1.c, the request head parser and chunked decoder of
 * evlogd's HTTP layer: bytes straight from a client.
 *
 * Input: one byte choosing the head bound and the feed step, then the
 * request.  Checked beyond "no crash": the head parsed whole and parsed as
 * its bytes arrive give the same answer; every slice lies in the buffer;
 * a chunked body decodes in place to no more bytes than it consumed, the
 * same in one piece and in steps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/http1.h"

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static void in_buf(const char *p, size_t n, const char *buf, size_t len) {
    REQUIRE(!n || (p >= buf && p + n <= buf + len));
}

static long decode(const char *body, size_t len, size_t step, char *out, size_t *out_len, int *done) {
    srv_h1_chunks c;
    memset(&c, 0, sizeof c);
    memcpy(out, body, len);
    size_t used = 0;
    *out_len = 0;
    while (used < len && !evl__srv_h1_chunks_done(&c)) {
        size_t k = len - used < step ? len - used : step;
        long rc = evl__srv_h1_dechunk(&c, out + used, k, out, out_len, 1 << 16);
        if (rc < 0) return rc;
        REQUIRE((size_t)rc <= k);
        used += (size_t)rc;
        REQUIRE(*out_len <= used);
        if ((size_t)rc < k) break;
    }
    *done = evl__srv_h1_chunks_done(&c);
    return (long)used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 1 << 16) return 0;
    size_t max = 64 + (size_t)(data[0] & 0x3f) * 64, step = 1 + (data[0] >> 6);
    const char *buf = (const char *)data + 1;
    size_t len = size - 1, scanned = 0;
    srv_h1_head h;
    srv_h1_field f1[8], f2[8];
    h.field = f1;
    h.cap_field = 8;
    long rc = evl__srv_h1_head(buf, len, max, &scanned, &h);
    REQUIRE(rc == 0 || rc == SRV_H1_MORE_FIELDS || rc == -400 || rc == -431 || rc == -501 || rc == -505 || rc == -417 ||
            (rc > 0 && (size_t)rc <= len && (size_t)rc <= max));
    /* the same bytes as they would arrive */
    srv_h1_head h2;
    h2.field = f2;
    h2.cap_field = 8;
    long r2 = 0;
    scanned = 0;
    for (size_t k = 0; k < len && r2 == 0;) {
        k = len - k <= step ? len : k + step;
        r2 = evl__srv_h1_head(buf, k, max, &scanned, &h2);
    }
    REQUIRE(r2 == rc);
    if (rc <= 0) return 0;
    in_buf(h.method, h.method_len, buf, len);
    in_buf(h.target, h.target_len, buf, len);
    REQUIRE(h.n_field <= h.cap_field && h.minor >= 0 && h.minor <= 1);
    for (size_t i = 0; i < h.n_field; i++) {
        in_buf(h.field[i].name, h.field[i].name_len, buf, (size_t)rc);
        in_buf(h.field[i].value, h.field[i].value_len, buf, (size_t)rc);
    }
    if (!h.chunked) return 0;
    const char *body = buf + rc;
    size_t blen = len - (size_t)rc, n1, n2;
    char *o1 = malloc(blen + 1), *o2 = malloc(blen + 1);
    int d1, d2;
    if (o1 && o2) {
        long a = decode(body, blen, blen ? blen : 1, o1, &n1, &d1);
        long b = decode(body, blen, step, o2, &n2, &d2);
        REQUIRE(a == b && (a < 0 || (d1 == d2 && n1 == n2 && !memcmp(o1, o2, n1))));
    }
    free(o1);
    free(o2);
    return 0;
}
