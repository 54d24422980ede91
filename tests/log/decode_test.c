/* evl_log_decode: the records this version writes decode to what was
 * appended; any one byte changed, or the record cut short, is refused; and
 * records of other valid shapes (no chain, keys in another order, other
 * integer forms, a key from a later version) decode as the format says,
 * not only the shape the writer produces (format.c reads that one straight
 * off the bytes and leaves the rest to the generic walk). */
#include "util.h"

uint32_t evl__crc32c(uint32_t crc, const void *buf, size_t len);

static void pack_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* A record built by hand: @p order names the keys in the order to write
 * them ("c" chain, "p" position, "s" stream, "r" revision, "i" id, "t" type,
 * "T" time, "m" meta, "d" data, "x" an unknown key holding [1, "two"]);
 * @p pos_int64: position as a signed int64.  The CRC trailer is added. */
static void build(msgpack_sbuffer *sb, const char *order, int pos_int64, uint64_t pos, const char *stream,
                  uint64_t rev, const uint8_t id[16], const char *type, int64_t time_ns, const msgpack_sbuffer *meta,
                  const msgpack_sbuffer *data) {
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (uint32_t)strlen(order) + 1);
    static const uint8_t chain[32] = {1, 2, 3};
    for (const char *o = order; *o; o++) {
        switch (*o) {
        case 'c': pack_str(&pk, "chain", 5); msgpack_pack_bin(&pk, 32); msgpack_pack_bin_body(&pk, chain, 32); break;
        case 'p':
            pack_str(&pk, "position", 8);
            if (pos_int64) {
                uint8_t b[9] = {0xd3};
                for (int i = 0; i < 8; i++) b[1 + i] = (uint8_t)(pos >> (56 - 8 * i));
                msgpack_sbuffer_write(sb, (const char *)b, 9);
            } else {
                msgpack_pack_uint64(&pk, pos);
            }
            break;
        case 's': pack_str(&pk, "stream", 6); pack_str(&pk, stream, strlen(stream)); break;
        case 'r': pack_str(&pk, "revision", 8); msgpack_pack_uint64(&pk, rev); break;
        case 'i': pack_str(&pk, "id", 2); msgpack_pack_bin(&pk, 16); msgpack_pack_bin_body(&pk, id, 16); break;
        case 't': pack_str(&pk, "type", 4); pack_str(&pk, type, strlen(type)); break;
        case 'T': pack_str(&pk, "time", 4); msgpack_pack_int64(&pk, time_ns); break;
        case 'm': pack_str(&pk, "meta", 4); msgpack_sbuffer_write(sb, meta->data, meta->size); break;
        case 'd': pack_str(&pk, "data", 4); msgpack_sbuffer_write(sb, data->data, data->size); break;
        case 'x':
            pack_str(&pk, "extra", 5);
            msgpack_pack_array(&pk, 2);
            msgpack_pack_int(&pk, 1);
            pack_str(&pk, "two", 3);
            break;
        }
    }
    uint32_t crc = evl__crc32c(0, sb->data, sb->size);
    uint8_t tail[9] = {0xa3, 'c', 'r', 'c', 0xce, (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                       (uint8_t)crc};
    msgpack_sbuffer_write(sb, (const char *)tail, 9);
}

static int same(const void *a, size_t an, const void *b, size_t bn) {
    return an == bn && memcmp(a, b, an) == 0;
}

/* Every one-byte change and every cut of @p raw is refused. */
static void refuse_damage(const uint8_t *raw, size_t len) {
    uint8_t *copy = malloc(len);
    evl_event ev;
    CHECK(copy);
    for (size_t i = 0; i < len; i++) {
        static const uint8_t flips[] = {0x01, 0x80, 0xff};
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(copy, raw, len);
            copy[i] ^= flips[f];
            if (evl_log_decode(copy, len, &ev) != EVL_ECORRUPT) {
                fprintf(stderr, "byte %zu of %zu xor %#x still decodes\n", i, len, flips[f]);
                CHECK(0);
            }
        }
    }
    for (size_t n = 0; n < len; n++) CHECK_RC(evl_log_decode(raw, n, &ev), EVL_ECORRUPT);
    free(copy);
}

int main(void) {
    evl_log *log;
    evl_log_options opt;
    evl_log_options_init(&opt);
    opt.sync = EVL_SYNC_NONE;
    OK(evl_log_open(test_path("data"), &opt, &log));

    /* shapes: a short and a long (str8) stream and type, meta or none,
     * small and large (map16, str16) data, floats, negatives, nesting */
    msgpack_sbuffer data[4], meta;
    msgpack_packer pk;
    msgpack_sbuffer_init(&meta);
    msgpack_packer_init(&pk, &meta, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "actor", 5);
    pack_str(&pk, "alice", 5);
    pack_str(&pk, "tags", 4);
    msgpack_pack_array(&pk, 2);
    pack_str(&pk, "a", 1);
    msgpack_pack_map(&pk, 0);
    static char big[70000];
    memset(big, 'b', sizeof big - 1);
    for (int k = 0; k < 4; k++) {
        msgpack_sbuffer_init(&data[k]);
        msgpack_packer_init(&pk, &data[k], msgpack_sbuffer_write);
        uint32_t n = k == 3 ? 20 : (uint32_t)k + 1;
        msgpack_pack_map(&pk, n);
        for (uint32_t j = 0; j < n; j++) {
            char key[16];
            int kl = snprintf(key, sizeof key, "k%u", j);
            pack_str(&pk, key, (size_t)kl);
            switch ((j + (uint32_t)k) % 5) {
            case 0: msgpack_pack_int64(&pk, -1234567890123LL * (j + 1)); break;
            case 1: msgpack_pack_double(&pk, 3.25 * j); break;
            case 2: pack_str(&pk, k == 2 ? big : "héllo", k == 2 ? sizeof big - 1 : 6); break;
            case 3: msgpack_pack_array(&pk, 1); msgpack_pack_map(&pk, 1); pack_str(&pk, "z", 1); msgpack_pack_nil(&pk); break;
            default: msgpack_pack_uint64(&pk, UINT64_MAX - j); break;
            }
        }
    }
    const char *streams[2] = {"job-1", "a-stream-name-well-over-thirty-one-bytes-long-1"};
    const char *types[2] = {"JobQueued", "AnEventTypeNameThatIsLongerThan31Bytes"};
    enum { N = 8 };
    for (int i = 0; i < N; i++) {
        evl_event_in e = {.type = types[i % 2], .data = data[i % 4].data, .data_len = data[i % 4].size,
                          .meta = i % 3 ? meta.data : NULL, .meta_len = i % 3 ? meta.size : 0};
        evl_stream_in s = {.stream = streams[(i / 2) % 2], .expected = EVL_REV_ANY, .events = &e, .n_events = 1};
        evl_append_result res;
        OK(evl_log_append(log, &s, 1, &res));
        evl_free(res.acks);
    }

    /* what was appended comes back, through a point read and an iterator */
    evl_iter *it;
    evl_event ev;
    OK(evl_iter_open(log, &(evl_query){0}, &it));
    for (int i = 0; i < N; i++) {
        OK(evl_iter_next(it, &ev));
        CHECK(ev.position == (uint64_t)i + 1);
        CHECK(same(ev.stream, ev.stream_len, streams[(i / 2) % 2], strlen(streams[(i / 2) % 2])));
        CHECK(same(ev.type, ev.type_len, types[i % 2], strlen(types[i % 2])));
        CHECK(same(ev.data, ev.data_len, data[i % 4].data, data[i % 4].size));
        if (i % 3) CHECK(same(ev.meta, ev.meta_len, meta.data, meta.size));
        else CHECK(same(ev.meta, ev.meta_len, "\x80", 1));
        CHECK(ev.revision == (uint64_t)((i / 4) * 2 + i % 2)); /* each stream gets two of every four */
        CHECK(ev.time_ns > 0 && ev.chain != NULL);
        uint8_t *raw;
        size_t len;
        evl_event again;
        OK(evl_log_get(log, ev.position, &raw, &len));
        OK(evl_log_decode(raw, len, &again));
        CHECK(again.position == ev.position && again.time_ns == ev.time_ns && memcmp(again.id, ev.id, 16) == 0);
        /* the big record (70 kB of data) only cut and flipped in its
         * head and tail: the CRC covers the middle the same way */
        if (len < 4096) refuse_damage(raw, len);
        else {
            refuse_damage(raw, 200);
            uint8_t *copy = malloc(len);
            CHECK(copy);
            for (size_t at = 0; at < len; at += 997) {
                memcpy(copy, raw, len);
                copy[at] ^= 0x20;
                CHECK_RC(evl_log_decode(copy, len, &again), EVL_ECORRUPT);
            }
            for (size_t at = len - 200; at < len; at++) {
                memcpy(copy, raw, len);
                copy[at] ^= 0x01;
                CHECK_RC(evl_log_decode(copy, len, &again), EVL_ECORRUPT);
            }
            free(copy);
        }
        evl_free(raw);
    }
    CHECK_RC(evl_iter_next(it, &ev), EVL_END);
    evl_iter_close(it);
    verify_ok(log, N);
    evl_log_close(log);

    /* other valid shapes decode to the same fields */
    static const struct { const char *order; int pos_int64, chained; } shapes[] = {
        {"cpsritTmd", 0, 1},  /* what the writer writes */
        {"psritTmd", 0, 0},   /* from before the chain */
        {"cpsritTmd", 1, 1},  /* position as int64 */
        {"cpsrTtimd", 0, 1},  /* keys in another order */
        {"cdpsritTm", 0, 1},  /* data not last: walked, not taken up to the trailer */
        {"cpsritTmdx", 0, 1}, /* a key from a later version after data */
        {"cxpsritTmd", 0, 1}, /* and before */
    };
    uint8_t id[16];
    for (int i = 0; i < 16; i++) id[i] = (uint8_t)(0xa0 + i);
    msgpack_sbuffer rec;
    msgpack_sbuffer_init(&rec);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        for (int d = 0; d < 4; d++) {
            build(&rec, shapes[k].order, shapes[k].pos_int64, 4242, streams[1], 7, id, types[1],
                  -5 + 1700000000000000000LL * (d % 2), &meta, &data[d]);
            if (evl_log_decode((const uint8_t *)rec.data, rec.size, &ev) != EVL_OK) {
                fprintf(stderr, "shape %s (data %d) does not decode\n", shapes[k].order, d);
                CHECK(0);
            }
            CHECK(ev.position == 4242 && ev.revision == 7 && memcmp(ev.id, id, 16) == 0);
            CHECK(ev.time_ns == -5 + 1700000000000000000LL * (d % 2));
            CHECK(same(ev.stream, ev.stream_len, streams[1], strlen(streams[1])));
            CHECK(same(ev.type, ev.type_len, types[1], strlen(types[1])));
            CHECK(same(ev.meta, ev.meta_len, meta.data, meta.size));
            CHECK(same(ev.data, ev.data_len, data[d].data, data[d].size));
            CHECK((ev.chain != NULL) == shapes[k].chained);
            CHECK(ev.raw == (const uint8_t *)rec.data && ev.raw_len == rec.size);
            if (d == 0) refuse_damage((const uint8_t *)rec.data, rec.size);
        }
    }
    /* intact CRC, broken shape: a key missing, meta not a map, two crc keys */
    build(&rec, "cpsritTd", 0, 1, "s", 0, id, "T", 1, &meta, &data[0]);
    CHECK_RC(evl_log_decode((const uint8_t *)rec.data, rec.size, &ev), EVL_ECORRUPT);
    msgpack_sbuffer notmap;
    msgpack_sbuffer_init(&notmap);
    msgpack_packer_init(&pk, &notmap, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 0);
    build(&rec, "cpsritTmd", 0, 1, "s", 0, id, "T", 1, &notmap, &data[0]);
    CHECK_RC(evl_log_decode((const uint8_t *)rec.data, rec.size, &ev), EVL_ECORRUPT);
    build(&rec, "cpsritTmd", 0, 1, "s", 0, id, "T", 1, &meta, &notmap);
    CHECK_RC(evl_log_decode((const uint8_t *)rec.data, rec.size, &ev), EVL_ECORRUPT);

    msgpack_sbuffer_destroy(&notmap);
    msgpack_sbuffer_destroy(&rec);
    msgpack_sbuffer_destroy(&meta);
    for (int k = 0; k < 4; k++) msgpack_sbuffer_destroy(&data[k]);
    TEST_PASS();
}
