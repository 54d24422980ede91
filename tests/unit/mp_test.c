/* The pre-scan and the cursor: hostile inputs are refused, quickly, without
 * allocating; well-formed values pass. */
#include <msgpack.h>

#include "evlog/log.h"
#include "evlog/mp.h"
#include "test.h"

#define B(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static int chk(const uint8_t *p, size_t n) { return evl_mp_check(p, n, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, NULL); }

int main(void) {
    /* msgpack-c issue #1013: an array32 claiming 4G elements in 5 bytes */
    CHECK_RC(chk(B(0xdd, 0xff, 0x00, 0x00, 0x00)), EVL_EMSGPACK);
    CHECK_RC(chk(B(0xdd, 0xff, 0xff, 0xff, 0xff)), EVL_EMSGPACK);
    CHECK_RC(chk(B(0xdf, 0xff, 0xff, 0xff, 0xff)), EVL_EMSGPACK);
    /* a map of 2 pairs needs at least 4 more bytes */
    CHECK_RC(chk(B(0x82, 0xa1, 'a', 0x01)), EVL_EMSGPACK);
    /* str32 longer than the input */
    CHECK_RC(chk(B(0x81, 0xa1, 'a', 0xdb, 0x00, 0x01, 0x00, 0x00, 'x')), EVL_EMSGPACK);
    /* truncated headers */
    CHECK_RC(chk(B(0xcf, 0x00)), EVL_EMSGPACK);
    CHECK_RC(chk(B(0xde)), EVL_EMSGPACK);
    CHECK_RC(evl_mp_check("", 0, 16, 0, NULL), EVL_EMSGPACK);
    /* 0xc1 is never valid */
    CHECK_RC(chk(B(0xc1)), EVL_EMSGPACK);
    CHECK_RC(chk(B(0x81, 0xa1, 'a', 0xc1)), EVL_EMSGPACK);
    /* trailing bytes */
    CHECK_RC(chk(B(0x80, 0x00)), EVL_EMSGPACK);
    /* non-string key */
    CHECK_RC(chk(B(0x81, 0x01, 0x02)), EVL_EMSGPACK);
    OK(evl_mp_check(B(0x81, 0x01, 0x02), 16, 0, NULL));
    /* invalid UTF-8 in a key and in a value; an overlong and a surrogate */
    CHECK_RC(chk(B(0x81, 0xa1, 0xff, 0x01)), EVL_EUTF8);
    CHECK_RC(chk(B(0x81, 0xa1, 'a', 0xa2, 0xc0, 0xaf)), EVL_EUTF8);
    CHECK_RC(chk(B(0x81, 0xa1, 'a', 0xa3, 0xed, 0xa0, 0x80)), EVL_EUTF8);
    OK(chk(B(0x81, 0xa1, 'a', 0xa3, 0xe2, 0x82, 0xac))); /* euro sign */
    /* depth: 16 nested maps pass, 17 fail; 1000-deep arrays fail fast */
    {
        uint8_t buf[4096];
        size_t n = 0;
        for (int i = 0; i < 15; i++) { buf[n++] = 0x81; buf[n++] = 0xa1; buf[n++] = 'k'; }
        buf[n++] = 0x80;
        OK(chk(buf, n));
        n = 0;
        for (int i = 0; i < 16; i++) { buf[n++] = 0x81; buf[n++] = 0xa1; buf[n++] = 'k'; }
        buf[n++] = 0x80;
        CHECK_RC(chk(buf, n), EVL_EDEPTH);
        for (n = 0; n < 1000; n++) buf[n] = 0x91;
        buf[n++] = 0xc0;
        CHECK_RC(evl_mp_check(buf, n, 16, 0, NULL), EVL_EDEPTH);
        /* a bomb of nested array16 headers each claiming 65535 elements */
        for (n = 0; n + 3 <= sizeof buf; n += 3) { buf[n] = 0xdc; buf[n + 1] = 0xff; buf[n + 2] = 0xff; }
        CHECK(evl_mp_check(buf, n, 16, 0, NULL) != EVL_OK);
        CHECK(evl_mp_check(buf, n, 64, 0, NULL) != EVL_OK);
    }
    /* every type packed by msgpack-c is accepted and read back */
    {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 8);
        msgpack_pack_str_with_body(&pk, "u", 1); msgpack_pack_uint64(&pk, UINT64_MAX);
        msgpack_pack_str_with_body(&pk, "i", 1); msgpack_pack_int64(&pk, INT64_MIN);
        msgpack_pack_str_with_body(&pk, "f", 1); msgpack_pack_double(&pk, 0.5);
        msgpack_pack_str_with_body(&pk, "g", 1); msgpack_pack_float(&pk, 1.5f);
        msgpack_pack_str_with_body(&pk, "b", 1); msgpack_pack_bin_with_body(&pk, "\0\1", 2);
        msgpack_pack_str_with_body(&pk, "n", 1); msgpack_pack_nil(&pk);
        msgpack_pack_str_with_body(&pk, "t", 1); msgpack_pack_true(&pk);
        msgpack_pack_str_with_body(&pk, "a", 1); msgpack_pack_array(&pk, 2);
        msgpack_pack_int(&pk, -3); msgpack_pack_ext_with_body(&pk, "xyzw", 4, 5);
        OK(chk((uint8_t *)sb.data, sb.size));
        evl_mp m;
        OK(evl_mp_map_find((uint8_t *)sb.data, sb.size, "u", 1, &m));
        evl_mp_val v;
        OK(evl_mp_read(&m, &v));
        CHECK(v.kind == EVL_MP_UINT && v.v.u == UINT64_MAX);
        OK(evl_mp_map_find((uint8_t *)sb.data, sb.size, "i", 1, &m));
        OK(evl_mp_read(&m, &v));
        CHECK(v.kind == EVL_MP_INT && v.v.i == INT64_MIN);
        OK(evl_mp_map_find((uint8_t *)sb.data, sb.size, "g", 1, &m));
        OK(evl_mp_read(&m, &v));
        CHECK(v.kind == EVL_MP_FLOAT && v.v.f == 1.5);
        OK(evl_mp_map_find((uint8_t *)sb.data, sb.size, "a", 1, &m));
        OK(evl_mp_read(&m, &v));
        CHECK(v.kind == EVL_MP_ARRAY && v.v.n == 2);
        OK(evl_mp_read(&m, &v));
        CHECK(v.kind == EVL_MP_INT && v.v.i == -3);
        OK(evl_mp_read(&m, &v));
        CHECK(v.kind == EVL_MP_EXT && v.v.ext.type == 5 && v.v.ext.len == 4 && !memcmp(v.v.ext.ptr, "xyzw", 4));
        CHECK_RC(evl_mp_map_find((uint8_t *)sb.data, sb.size, "zz", 2, &m), EVL_ENOTFOUND);
        /* every truncation of a valid value is refused */
        for (size_t cut = 0; cut < sb.size; cut++) CHECK(chk((uint8_t *)sb.data, cut) != EVL_OK);
        msgpack_sbuffer_destroy(&sb);
    }
    /* duplicate keys, at the top and nested; keys compare by encoding */
    OK(evl_mp_unique_keys(B(0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x01), NULL));
    CHECK_RC(evl_mp_unique_keys(B(0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02), NULL), EVL_EMSGPACK);
    {
        size_t off = 99;
        CHECK_RC(evl_mp_unique_keys(B(0x81, 0xa1, 'd', 0x83, 0xa1, 'x', 0xc0, 0xa1, 'y', 0xc0, 0xa1, 'x', 0xc0),
                                    &off), EVL_EMSGPACK);
        CHECK(off == 3); /* the inner map */
    }
    OK(evl_mp_unique_keys(B(0x82, 0x01, 0xc0, 0xa1, '1', 0xc0), NULL));
    OK(evl_mp_unique_keys(B(0x92, 0x81, 0xa1, 'a', 0x01, 0x81, 0xa1, 'a', 0x01), NULL)); /* two maps */
    /* the same key in a sibling map, and in the parent, is no duplicate */
    OK(evl_mp_unique_keys(B(0x82, 0xa1, 'a', 0x81, 0xa1, 'a', 0x01, 0xa1, 'b', 0x81, 0xa1, 'a', 0x02), NULL));
    /* a duplicate after a nested map closed: the outer map's keys survive it */
    CHECK_RC(evl_mp_unique_keys(B(0x83, 0xa1, 'a', 0x81, 0xa1, 'b', 0x01, 0xa1, 'c', 0x01, 0xa1, 'a', 0x02), NULL),
             EVL_EMSGPACK);
    /* maps past the pairwise size (hash and sort), with and without a
     * duplicate, and a mixed-kind map (the general path) */
    for (int dup = 0; dup < 2; dup++) {
        uint8_t big[1 + 20 * 3];
        size_t n = 0;
        big[n++] = 0x80 | 15;
        for (int i = 0; i < 15; i++) {
            big[n++] = 0xa1;
            big[n++] = (uint8_t)('a' + (dup && i == 14 ? 3 : i));
            big[n++] = (uint8_t)i;
        }
        size_t off = 99;
        CHECK_RC(evl_mp_unique_keys(big, n, &off), dup ? EVL_EMSGPACK : EVL_OK);
        if (dup) CHECK(off == 0);
    }
    CHECK_RC(evl_mp_unique_keys(B(0x83, 0xa1, 'a', 0x01, 0x01, 0xc0, 0xa1, 'a', 0xc0), NULL), EVL_EMSGPACK);
    OK(evl_mp_unique_keys(B(0x83, 0xa1, 'a', 0x01, 0x01, 0xc0, 0xa1, 'b', 0xc0), NULL));
    /* the pre-scan and the duplicate check in one walk */
    {
        int dup = 9;
        size_t off = 99;
        OK(evl_mp_check_unique(B(0x82, 0xa1, 'a', 0x81, 0xa1, 'a', 0x01, 0xa1, 'b', 0xc0), 16, &off, &dup));
        CHECK(dup == 0);
        CHECK_RC(evl_mp_check_unique(B(0x81, 0xa1, 'd', 0x83, 0xa1, 'x', 0xc0, 0xa1, 'y', 0xc0, 0xa1, 'x', 0xc0),
                                     16, &off, &dup), EVL_EMSGPACK);
        CHECK(dup == 1 && off == 3);
        CHECK_RC(evl_mp_check_unique(B(0x82, 0xa1, 'a', 0x01, 0xa1), 16, &off, &dup), EVL_EMSGPACK);
        CHECK(dup == 0); /* truncated, not a duplicate */
        CHECK_RC(evl_mp_check_unique(B(0x81, 0x01, 0xc0), 16, &off, &dup), EVL_EMSGPACK);
        CHECK(dup == 0); /* a non-string key */
        CHECK_RC(evl_mp_check_unique(B(0x81, 0xa1, 'a', 0xa1, 0xff), 16, &off, &dup), EVL_EUTF8);
        CHECK(dup == 0);
        CHECK_RC(evl_mp_check_unique(B(0x91, 0x91, 0x90), 2, &off, &dup), EVL_EDEPTH);
    }
    /* names */
    OK(evl_name_check("job-1", 5));
    OK(evl_name_check("caf\xc3\xa9", 5));
    CHECK(evl_name_check("", 0) != EVL_OK);
    CHECK(evl_name_check("a\nb", 3) != EVL_OK);
    CHECK(evl_name_check("a\x7f", 2) != EVL_OK);
    CHECK(evl_name_check("a\xc2\x85", 3) != EVL_OK); /* NEL, a C1 control */
    CHECK(evl_name_check("\xff", 1) != EVL_OK);
    {
        char big[300];
        memset(big, 'a', sizeof big);
        OK(evl_name_check(big, 255));
        CHECK(evl_name_check(big, 256) != EVL_OK);
    }
    CHECK(evl_stream_category("job-1-2", 7) == 3);
    CHECK(evl_stream_category("nodes", 5) == 5);
    /* evl_mp_equal: the same value however it is encoded, never past the input */
    CHECK(evl_mp_equal(B(0x81, 0xa1, 'n', 0x05), B(0x81, 0xa1, 'n', 0xd3, 0, 0, 0, 0, 0, 0, 0, 5)));
    CHECK(evl_mp_equal(B(0x92, 0xff, 0xca, 0x3f, 0xc0, 0, 0), B(0x92, 0xd0, 0xff, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)));
    CHECK(!evl_mp_equal(B(0x81, 0xa1, 'n', 0x05), B(0x81, 0xa1, 'n', 0x06)));
    CHECK(!evl_mp_equal(B(0x81, 0xa1, 'n', 0x05), B(0x81, 0xa1, 'm', 0x05)));
    CHECK(!evl_mp_equal(B(0x91, 0x01), B(0x92, 0x01, 0x01)));
    CHECK(!evl_mp_equal(B(0xa1, 'x'), B(0xc4, 0x01, 'x')));     /* str is not bin */
    CHECK(!evl_mp_equal(B(0x80), B(0x80, 0x80)));               /* trailing bytes */
    CHECK(!evl_mp_equal(B(0xdd, 0xff, 0xff, 0xff, 0xff), B(0xdd, 0xff, 0xff, 0xff, 0xfe)));
    CHECK(!evl_mp_equal(B(0xdd, 0xff, 0xff, 0xff, 0xff), B(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01)));
    TEST_PASS();
}
