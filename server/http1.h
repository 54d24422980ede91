/* HTTP/1.1 request heads and chunked bodies (RFC 9112), parsed in place.
 *
 * The parsing half of evlogd's HTTP layer (conn.c is the connections),
 * which replaced libevent's evhttp: evhttp's epoll_ctl calls, allocations
 * and header parsing cost about 10 µs of CPU per request (bench/http/floor.c,
 * bench/README.md "Where evlog falls short").  Nothing here allocates or
 * copies: a head is a set of slices of the caller's buffer, valid while the
 * buffer is.  Nothing here does I/O either, so each function can be called
 * again as more bytes arrive, and fuzzed on its own (fuzz/fuzz_http1.c).
 *
 * Names: evl__srv_h1_*, types srv_h1_*.
 */
#ifndef EVL_SERVER_HTTP1_H
#define EVL_SERVER_HTTP1_H

#include <stddef.h>
#include <stdint.h>

/* evl__srv_h1_head()'s answer when the head has more fields than the
 * caller gave it room for: grow srv_h1_head.field and call it again. */
#define SRV_H1_MORE_FIELDS (-1)

typedef struct srv_h1_field {
    const char *name, *value;      /* value without surrounding spaces */
    size_t name_len, value_len;
} srv_h1_field;

typedef struct srv_h1_head {
    const char *method, *target;   /* slices of the buffer */
    size_t method_len, target_len;
    int minor;                     /* HTTP/1.<minor>: 0 or 1 */
    srv_h1_field *field;           /* the caller's, cap_field entries */
    size_t cap_field, n_field;
    /* what the fields say about framing and the connection */
    int chunked;                   /* Transfer-Encoding: chunked */
    uint64_t content_length;       /* 0 when there is no Content-Length */
    int keep_alive;                /* the connection may carry another request */
    int expect_continue;           /* Expect: 100-continue */
} srv_h1_head;

/* Parse the request head at the start of buf[0, len).
 * @p max bounds the head (request line, fields, empty line).  @p scanned
 * (0 for a new request) keeps how far the search for the head's end got, so
 * that a head arriving a byte at a time is not scanned again each time.
 * Set h->field and h->cap_field before the call; the rest of @p h is set.
 * @return the head's length in bytes, its empty line included, when it is
 *   whole; 0 when more bytes are needed (and fewer than @p max are there);
 *   SRV_H1_MORE_FIELDS when the fields do not fit in h->field (a head of
 *   @p max bytes can hold about max / 3 of them: "A:" lines); or minus an
 *   HTTP status:
 *   -400 malformed (bad request line or field, a NUL, a bare CR, a folded
 *        line, Content-Length that is not one decimal number, both
 *        Content-Length and Transfer-Encoding),
 *   -431 longer than @p max,
 *   -501 a transfer coding other than chunked,
 *   -505 a version other than HTTP/1.0 and HTTP/1.1,
 *   -417 an Expect other than 100-continue.
 * Lines may end in CRLF or a bare LF (RFC 9112 section 2.2).  Empty lines
 * before the request line are skipped (section 2.2) and count in the length. */
long evl__srv_h1_head(const char *buf, size_t len, size_t max, size_t *scanned, srv_h1_head *h);

/* The value of field @p name (case-insensitive), the first when repeated;
 * NULL when absent.  @p len receives its length. */
const char *evl__srv_h1_field(const srv_h1_head *h, const char *name, size_t *len);

/* Does the comma-separated list @p v (a field value) hold @p token
 * (case-insensitive, spaces around items ignored)? */
int evl__srv_h1_has_token(const char *v, size_t len, const char *token);

/* A chunked body, decoded as it arrives.  Zero it to start. */
typedef struct srv_h1_chunks {
    int state;
    uint64_t left;                 /* bytes left in the current chunk */
    uint64_t size;                 /* decoded bytes so far */
    int digits;                    /* hex digits of the current size line */
} srv_h1_chunks;

/* Decode from in[0, len): data bytes are moved to @p out, which may be @p in
 * itself (decoding never writes ahead of reading), *out_len grows by their
 * number.  @p max bounds the decoded body.
 * @return the bytes of @p in consumed, >= 0; the body is whole when
 *   evl__srv_h1_chunks_done() says so (trailer fields are read and
 *   dropped); or -400 malformed, -413 larger than @p max. */
long evl__srv_h1_dechunk(srv_h1_chunks *c, const char *in, size_t len, char *out, size_t *out_len,
                         uint64_t max);
int evl__srv_h1_chunks_done(const srv_h1_chunks *c);

#endif
