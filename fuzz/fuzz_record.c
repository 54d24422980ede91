/* Fuzz the event decoder: a stored record (one msgpack map) as the log reads
 * it back, then everything a reader does with a decoded event: the
 * CloudEvents JSON of a read or a feed, and the JSON text a projection binds
 * for each top-level data and meta field.
 *
 * The record's CRC would stop almost every mutation at the checksum, so a
 * record that ends in a CRC trailer gets its CRC recomputed first: the
 * decoder must also be safe on a record whose checksum is right but whose
 * contents are not (a bug in an older writer, a bit flip before the CRC
 * was taken). */
#include <jansson.h>

#include "common/common_int.h"
#include "evlog/json.h"
#include "evlog/log.h"
#include "evlog/mp.h"
#include "projections/proj_int.h"

static void fields_as_json_text(const uint8_t *p, size_t len) {
    evl_mp m = {p, p + len};
    evl_mp_val v, k;
    if (evl_mp_read(&m, &v) || v.kind != EVL_MP_MAP) return;
    buf b = {0};
    for (uint32_t i = 0; i < v.v.n; i++) {
        if (evl_mp_read(&m, &k) || k.kind != EVL_MP_STR) break;
        evl_mp val = m;
        b.len = 0;
        evl__proj_json_text(&b, &val, 0);
        if (evl_mp_skip(&m, 63)) break;
    }
    evl_free(b.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *rec = evl_malloc(size ? size : 1);
    if (!rec) return 0;
    memcpy(rec, data, size);
    if (size >= 9 && !memcmp(rec + size - 9, "\xa3" "crc" "\xce", 5))
        evl__put_be32(rec + size - 4, evl__crc32c(0, rec, size - 9));
    evl_event ev;
    if (evl_log_decode(rec, size, &ev) == EVL_OK) {
        json_t *j = evl_json_event(&ev);
        json_decref(j);
        fields_as_json_text(ev.data, ev.data_len);
        fields_as_json_text(ev.meta, ev.meta_len);
    }
    evl_free(rec);
    return 0;
}
