/* Fuzz the msgpack request parser: the pre-scan (evl_mp_check) and the
 * decode of append bodies sent as application/msgpack (server/batch.c),
 * single-stream and multi-stream, then the stored values as JSON.  The
 * one-walk check (evl_mp_check_unique) must accept exactly what the pre-scan
 * and evl_mp_unique_keys accept together. */
#include <jansson.h>
#include <stdlib.h>

#include "server/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t off;
    /* the one-walk check agrees with the two it replaces */
    int dup, one = evl_mp_check_unique(data, size, EVL_MAX_DEPTH, &off, &dup);
    int two = evl_mp_check(data, size, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, &off);
    if (two == EVL_OK) two = evl_mp_unique_keys(data, size, &off);
    if (one != EVL_ENOMEM && two != EVL_ENOMEM && (one == EVL_OK) != (two == EVL_OK)) abort();
    if (evl_mp_check(data, size, EVL_MAX_DEPTH, 0, &off) == EVL_OK) {
        evl_mp_unique_keys(data, size, &off);
        json_t *j = NULL;
        if (evl_json_from_msgpack(data, size, &j) == EVL_OK) {
            msgpack_sbuffer sb; /* and back: what a JSON client's echo would store */
            msgpack_sbuffer_init(&sb);
            evl_json_to_msgpack(j, &sb);
            msgpack_sbuffer_destroy(&sb);
            json_decref(j);
        }
    }
    srv_batch b;
    memset(&b, 0, sizeof b);
    evl__srv_batch_mp_stream(&b, "fuzz-1", EVL_REV_ANY, data, size);
    evl__srv_batch_free(&b);
    memset(&b, 0, sizeof b);
    evl__srv_batch_mp_multi(&b, data, size);
    evl__srv_batch_free(&b);
    return 0;
}
