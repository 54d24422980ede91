/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the SSE4.2 crc32
 * instruction when the CPU has it (~20 GB/s), a bitwise loop otherwise.
 * Records are small, so the portable path needs no table. */
#include "common/common_int.h"

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p,
                                                          size_t len) {
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len) {
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc;
}

/* Standard CRC-32C of buf continuing from crc (start with 0). */
uint32_t evl__crc32c(uint32_t crc, const void *buf, size_t len) {
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc_hw(crc, buf, len);
#endif
    return ~crc_sw(crc, buf, len);
}

/* Exposed for the unit test that checks both paths agree. */
uint32_t evl__crc32c_portable(uint32_t crc, const void *buf, size_t len);
uint32_t evl__crc32c_portable(uint32_t crc, const void *buf, size_t len) {
    return ~crc_sw(~crc, buf, len);
}
