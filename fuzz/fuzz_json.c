/* Fuzz the JSON and CloudEvents parsing of append bodies exactly as evlogd
 * does it (server/batch.c): one event or an array for POST /streams/S, the
 * {"streams": [...]} shape of POST /append; then, for what parses, the
 * msgpack it would store converted back to JSON (a read of it). */
#include <jansson.h>

#include "server/batch.h"

static void back_to_json(const srv_batch *b) {
    for (size_t i = 0; i < b->n_ev; i++) {
        json_t *j = NULL;
        if (evl_json_from_msgpack(b->ev[i].data, b->ev[i].data_len, &j) == EVL_OK) json_decref(j);
        if (b->ev[i].meta && evl_json_from_msgpack(b->ev[i].meta, b->ev[i].meta_len, &j) == EVL_OK)
            json_decref(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    srv_batch b;
    memset(&b, 0, sizeof b);
    if (evl__srv_batch_json_stream(&b, "fuzz-1", EVL_REV_ANY, data, size) == EVL_OK) back_to_json(&b);
    evl__srv_batch_free(&b);
    memset(&b, 0, sizeof b);
    if (evl__srv_batch_json_multi(&b, data, size) == EVL_OK) back_to_json(&b);
    evl__srv_batch_free(&b);
    return 0;
}
