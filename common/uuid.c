/* UUIDs for event ids.  Generated ids are UUIDv7 (RFC 9562): 48 bits of Unix
 * milliseconds first, so ids created close in time sort close together and
 * the id index takes appends near its right edge instead of random inserts. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "common/common_int.h"
#include "evlog/log.h"

static void fill_random(uint8_t *p, size_t n) {
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            evl_assert(!"getrandom failed"); /* kernels >= 3.17 always have it */
        }
        p += r;
        n -= (size_t)r;
    }
}

static void stamp_v7(uint8_t out[16], uint64_t ms) {
    for (int i = 5; i >= 0; i--) { out[i] = (uint8_t)ms; ms >>= 8; }
    out[6] = (uint8_t)(0x70 | (out[6] & 0x0f)); /* version 7 */
    out[8] = (uint8_t)(0x80 | (out[8] & 0x3f)); /* variant 10 */
}

void evl_uuid_v7(uint8_t out[16]) {
    fill_random(out + 6, 10);
    stamp_v7(out, (uint64_t)(evl__now_ns() / 1000000));
}

/* One getrandom() for up to 25 ids (250 bytes: below 256, a read the kernel
 * never cuts short) instead of one system call per id: a batch of 100
 * events over HTTP spent ~6% of a worker's CPU in getrandom. */
void evl_uuid_v7_n(uint8_t (*out)[16], size_t n) {
    uint64_t ms = (uint64_t)(evl__now_ns() / 1000000);
    while (n) {
        uint8_t rnd[250];
        size_t k = n < 25 ? n : 25;
        fill_random(rnd, 10 * k);
        for (size_t i = 0; i < k; i++) {
            memcpy(out[i] + 6, rnd + 10 * i, 10);
            stamp_v7(out[i], ms);
        }
        out += k;
        n -= k;
    }
}

/* WHY a pool: one getrandom() per request was a system call per single
 * append (64 HTTP clients: ~1.5% of a worker's CPU; one per call for 64
 * embedded appenders).  4 KiB at a time serves ~400 ids per call.  The
 * bytes never leave the process except inside ids, which are public. */
void evl__rnd_init(evl_rndpool *p) {
    pthread_mutex_init(&p->mu, NULL);
    p->used = sizeof p->buf; /* empty: the first take fills it */
}

void evl__rnd_destroy(evl_rndpool *p) { pthread_mutex_destroy(&p->mu); }

void evl__uuid_v7_pool(evl_rndpool *p, uint8_t (*out)[16], size_t n) {
    uint64_t ms = (uint64_t)(evl__now_ns() / 1000000);
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < n; i++) {
        if (p->used + 10 > sizeof p->buf) {
            fill_random(p->buf, sizeof p->buf);
            p->used = 0;
        }
        memcpy(out[i] + 6, p->buf + p->used, 10);
        p->used += 10;
        stamp_v7(out[i], ms);
    }
    pthread_mutex_unlock(&p->mu);
}

void evl_uuid_format(const uint8_t id[16], char out[37]) {
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[id[i] >> 4];
        *o++ = hex[id[i] & 15];
    }
    *o = 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int evl_uuid_parse(const char *s, size_t len, uint8_t out[16]) {
    int dashed = (len == 36);
    if (len != 36 && len != 32) return EVL_EID;
    size_t j = 0;
    for (int i = 0; i < 16; i++) {
        if (dashed && (j == 8 || j == 13 || j == 18 || j == 23)) {
            if (s[j] != '-') return EVL_EID;
            j++;
        }
        int hi = hexval(s[j]), lo = hexval(s[j + 1]);
        if (hi < 0 || lo < 0) return EVL_EID;
        out[i] = (uint8_t)(hi << 4 | lo);
        j += 2;
    }
    return EVL_OK;
}
