/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the SSE4.2 crc32
 * instruction when the CPU has it, a bitwise loop otherwise.  Records are
 * small, so the portable path needs no table.
 *
 * One crc32 instruction takes 3 cycles before the next can use its result,
 * but a new one can start every cycle: a single chain runs at a third of
 * what the unit can do (a log scan spent ~16 % of its time here).  So with
 * PCLMULQDQ too, the buffer goes in chunks of three 64-byte blocks whose
 * CRCs are computed side by side, then joined: CRC(A || B) = CRC(A) moved
 * over |B| zero bytes, xor CRC(B) from zero (raw register values; CRC is
 * linear).  Moving a register c over n zero bytes is c times x^(8n) mod P,
 * which is crc32_u64(0, clmul(c, K_n)) with K_n = x^(8n-33) mod P in
 * reflected bit order (the 64-bit crc32 step contributes the x^33 and the
 * reduction); tests/unit/common_test.c checks it against the bitwise loop. */
#include "common/common_int.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#include <wmmintrin.h>

#define BLK 64                 /* bytes per block; a chunk is 3 blocks */
#define K_BLK 0x9e4addf8u      /* K_64:  x^(8*64-33)  mod P, reflected */
#define K_2BLK 0x0d3b6092u     /* K_128: x^(8*128-33) mod P, reflected */

__attribute__((target("sse4.2,pclmul"))) static uint32_t shift_by(uint32_t c, uint32_t k) {
    __m128i prod = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)c), _mm_cvtsi32_si128((int)k), 0);
    return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(prod));
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t crc_hw3(uint32_t crc, const uint8_t *p,
                                                                  size_t len, size_t *done) {
    uint64_t c0 = crc;
    const uint8_t *start = p;
    while (len >= 3 * BLK) {
        uint64_t c1 = 0, c2 = 0;
        for (int i = 0; i < BLK; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + BLK + i, 8);
            memcpy(&w2, p + 2 * BLK + i, 8);
            c0 = _mm_crc32_u64(c0, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        c0 = shift_by((uint32_t)c0, K_2BLK) ^ shift_by((uint32_t)c1, K_BLK) ^ (uint32_t)c2;
        p += 3 * BLK;
        len -= 3 * BLK;
    }
    *done = (size_t)(p - start);
    return (uint32_t)c0;
}

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
    if (__builtin_cpu_supports("sse4.2")) {
        size_t done = 0;
        if (len >= 3 * BLK && __builtin_cpu_supports("pclmul")) crc = crc_hw3(crc, buf, len, &done);
        return ~crc_hw(crc, (const uint8_t *)buf + done, len - done);
    }
#endif
    return ~crc_sw(crc, buf, len);
}

/* Exposed for the unit test that checks both paths agree. */
uint32_t evl__crc32c_portable(uint32_t crc, const void *buf, size_t len);
uint32_t evl__crc32c_portable(uint32_t crc, const void *buf, size_t len) {
    return ~crc_sw(~crc, buf, len);
}
