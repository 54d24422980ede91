/* Helpers shared by the log tests. */
#ifndef EVL_TEST_LOG_UTIL_H
#define EVL_TEST_LOG_UTIL_H

#include <msgpack.h>
#include <pthread.h>

#include "evlog/log.h"
#include "evlog/mp.h"
#include "test.h"

/* {"n": n, "s": s} packed into sb (cleared first). */
static inline void pack_data(msgpack_sbuffer *sb, int64_t n, const char *s) {
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int64(&pk, n);
    msgpack_pack_str_with_body(&pk, "s", 1);
    msgpack_pack_str_with_body(&pk, s, strlen(s));
}

/* Read data["n"] of an event. */
static inline int64_t data_n(const evl_event *ev) {
    evl_mp m;
    evl_mp_val v;
    if (evl_mp_map_find(ev->data, ev->data_len, "n", 1, &m) || evl_mp_read(&m, &v)) return -1;
    return v.kind == EVL_MP_UINT ? (int64_t)v.v.u : v.v.i;
}

/* Append one event to one stream; returns the code, fills *ack. */
static inline int append1(evl_log *log, const char *stream, uint64_t expected, const char *type,
                          const void *data, size_t len, const uint8_t *id, evl_ack *ack,
                          evl_append_result *out) {
    evl_event_in ev = {.type = type, .id = id, .data = data, .data_len = len};
    evl_stream_in s = {.stream = stream, .expected = expected, .events = &ev, .n_events = 1};
    evl_append_result res;
    int rc = evl_log_append(log, &s, 1, &res);
    if (ack && res.acks) *ack = res.acks[0];
    if (out) { *out = res; out->acks = NULL; }
    evl_free(res.acks);
    return rc;
}

static inline uint64_t count_query(evl_log *log, const evl_query *q) {
    evl_iter *it;
    evl_event ev;
    uint64_t n = 0;
    if (evl_iter_open(log, q, &it)) return UINT64_MAX;
    while (evl_iter_next(it, &ev) == EVL_OK) n++;
    evl_iter_close(it);
    return n;
}

static inline void verify_ok(evl_log *log, uint64_t want_events) {
    char problem[512];
    uint64_t n;
    int rc = evl_log_verify(log, problem, sizeof problem, &n, NULL, NULL);
    if (rc) fprintf(stderr, "verify: %s: %s\n", evl_strerror(rc), problem);
    CHECK(rc == EVL_OK);
    if (want_events != UINT64_MAX) CHECK(n == want_events);
}

#endif
