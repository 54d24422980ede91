/* CRC-32C, UUIDs and ISO-8601 time. */
#include "common/common_int.h"
#include "evlog/log.h"
#include "evlog/mp.h"
#include "test.h"

uint32_t evl__crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t evl__crc32c_portable(uint32_t crc, const void *buf, size_t len);

int main(void) {
    /* the standard check value of CRC-32C */
    CHECK(evl__crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(evl__crc32c_portable(0, "123456789", 9) == 0xE3069283u);
    uint8_t buf[1031];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    /* every length and start alignment: the hardware path runs 3 blocks of
     * 64 bytes side by side from 192 bytes on, joins them, then the tail */
    for (size_t at = 0; at < 8; at++)
        for (size_t n = 0; n + at < sizeof buf; n++)
            CHECK(evl__crc32c(0, buf + at, n) == evl__crc32c_portable(0, buf + at, n));
    for (size_t n = 0; n < sizeof buf; n += 17) {
        /* incremental equals one-shot */
        CHECK(evl__crc32c(evl__crc32c(0, buf, n / 2), buf + n / 2, n - n / 2) == evl__crc32c(0, buf, n));
        CHECK(evl__crc32c(0x1234567u, buf, n) == evl__crc32c_portable(0x1234567u, buf, n));
    }

    uint8_t a[16], b[16], p[16];
    char s[37];
    evl_uuid_v7(a);
    evl_uuid_v7(b);
    CHECK(memcmp(a, b, 16) != 0);
    CHECK((a[6] >> 4) == 7 && (a[8] & 0xc0) == 0x80);
    evl_uuid_format(a, s);
    CHECK(strlen(s) == 36 && s[8] == '-' && s[14] == '7');
    OK(evl_uuid_parse(s, 36, p));
    CHECK(memcmp(a, p, 16) == 0);
    OK(evl_uuid_parse("550E8400E29B41D4A716446655440000", 32, p));
    evl_uuid_format(p, s);
    CHECK(strcmp(s, "550e8400-e29b-41d4-a716-446655440000") == 0);
    CHECK_RC(evl_uuid_parse("550e8400-e29b-41d4-a716-44665544000g", 36, p), EVL_EID);
    CHECK_RC(evl_uuid_parse("550e8400", 8, p), EVL_EID);

    /* ids made in bulk (one random read per 25): every one a v7 of this
     * millisecond or later, no two alike, across the 25-id refills */
    uint8_t many[60][16];
    memset(many, 0, sizeof many);
    evl_uuid_v7_n(many, 60);
    for (int i = 0; i < 60; i++) {
        CHECK((many[i][6] >> 4) == 7 && (many[i][8] & 0xc0) == 0x80);
        CHECK(memcmp(many[i], a, 6) >= 0); /* 48-bit ms stamp, big-endian */
        for (int j = 0; j < i; j++) CHECK(memcmp(many[i], many[j], 16) != 0);
    }
    evl_uuid_v7_n(many, 0); /* nothing to do, nothing touched */

    /* ids from the log's random pool: 1000 in odd-sized takes cross two
     * refills of its 4 KiB (409 ids each); none alike, every one a v7 */
    evl_rndpool pool;
    evl__rnd_init(&pool);
    static uint8_t pooled[1000][16];
    for (size_t at = 0, k = 1; at < 1000; at += k, k = k % 37 + 3)
        evl__uuid_v7_pool(&pool, pooled + at, at + k > 1000 ? 1000 - at : k);
    int pool_ok = 1;
    for (int i = 0; i < 1000; i++) {
        pool_ok &= (pooled[i][6] >> 4) == 7 && (pooled[i][8] & 0xc0) == 0x80 && memcmp(pooled[i], a, 6) >= 0;
        for (int j = 0; j < i; j++) pool_ok &= memcmp(pooled[i] + 6, pooled[j] + 6, 10) != 0;
    }
    CHECK(pool_ok);
    evl__rnd_destroy(&pool);

    /* UTF-8: the 8-bytes-at-a-time ASCII path must still see a bad or
     * multi-byte sequence at any offset, and a cut one at the very end */
    for (size_t off = 0; off < 24; off++) {
        char u[40];
        memset(u, 'a', sizeof u);
        memcpy(u + off, "\xc3\xa9", 2); /* é */
        CHECK(evl_utf8_valid(u, sizeof u));
        u[off + 1] = 'x'; /* lead byte without its continuation */
        CHECK(!evl_utf8_valid(u, sizeof u));
        memset(u, 'a', sizeof u);
        u[off] = (char)0x80; /* a lone continuation byte */
        CHECK(!evl_utf8_valid(u, sizeof u));
        memcpy(u + off, "\xed\xa0\x80", 3); /* a surrogate */
        CHECK(!evl_utf8_valid(u, off + 3));
        memcpy(u + off, "\xf0\x9f\x98\x80", 4); /* an emoji, cut short */
        CHECK(evl_utf8_valid(u, off + 4));
        CHECK(!evl_utf8_valid(u, off + 3));
    }

    char t[40];
    int64_t ns;
    evl_time_format(0, 3, t);
    CHECK(strcmp(t, "1970-01-01T00:00:00.000Z") == 0);
    evl_time_format(1795430400123456789LL, 9, t);
    CHECK(strcmp(t, "2026-11-23T10:40:00.123456789Z") == 0);
    OK(evl_time_parse(t, strlen(t), &ns));
    CHECK(ns == 1795430400123456789LL);
    OK(evl_time_parse("2026-11-23T12:40:00.5+02:00", 27, &ns));
    CHECK(ns == 1795430400500000000LL);
    OK(evl_time_parse("2026-11-23", 10, &ns));
    CHECK(ns == 1795392000000000000LL);
    evl_time_format(-1, 3, t); /* just before the epoch */
    CHECK(strcmp(t, "1969-12-31T23:59:59.999Z") == 0);
    CHECK_RC(evl_time_parse("2026-11-23T10:40:00", 19, &ns), EVL_EINVAL); /* no zone */
    CHECK_RC(evl_time_parse("2026-13-01", 10, &ns), EVL_EINVAL);
    CHECK_RC(evl_time_parse("yesterday", 9, &ns), EVL_EINVAL);
    /* outside int64 nanoseconds (1677..2262): refused, not wrapped (fuzz_http) */
    CHECK_RC(evl_time_parse("0039-11-23T10:30:00Z", 20, &ns), EVL_EINVAL);
    CHECK_RC(evl_time_parse("9999-12-31", 10, &ns), EVL_EINVAL);
    OK(evl_time_parse("1677-09-22", 10, &ns));
    OK(evl_time_parse("2262-04-11", 10, &ns));

    CHECK(strcmp(evl_errname(EVL_ECONFLICT), "EVL_ECONFLICT") == 0);
    CHECK(strstr(evl_strerror(EVL_ESYS(2)), "No such file") != NULL);
    TEST_PASS();
}
