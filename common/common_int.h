/* Internal conventions shared by every module of libevlog.
 *
 * Names: public `evl_<module>_<verb>`; shared between files of a module but
 * not public `evl__<module>_<verb>`; file-local helpers `static`, no prefix.
 * Errors: one `int rc` per function, EVL_OK or an EVL_E* code, single exit
 * through `goto fail` where there is cleanup.  Library code never prints.
 */
#ifndef EVL_COMMON_INT_H
#define EVL_COMMON_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evlog/evlog.h"

/* Invariant checks stay on in release builds: a broken invariant in a
 * storage engine is worse than a crash. */
#define evl_assert(c)                                                          \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "evlog: assertion failed: %s (%s:%d)\n", #c,       \
                    __FILE__, __LINE__);                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define EVL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EVL_LIKELY(x) __builtin_expect(!!(x), 1)
#define EVL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Big-endian keys sort numerically under LMDB's default memcmp order and read
 * the same on every machine. */
static inline void evl__put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline uint64_t evl__get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static inline void evl__put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);  p[3] = (uint8_t)v;
}
static inline uint32_t evl__get_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#ifdef EVL_ALLOC_FAULTS
/* Test builds only (CMake option EVL_ALLOC_FAULTS): make the @p n-th
 * evl_malloc/evl_calloc/evl_realloc from now fail (1 = the next one), and
 * with @p persist every one after it as well.  Counts allocations of every
 * thread.  evl_alloc_fault_disarm() turns it off and returns how many
 * allocations were failed since the arm. */
void evl_alloc_fault_arm(unsigned long n, int persist);
unsigned long evl_alloc_fault_disarm(void);
#endif

/* CRC-32C (Castagnoli), the checksum inside every record. */
uint32_t evl__crc32c(uint32_t crc, const void *buf, size_t len);

/* SHA-256 (common/sha256.c, OpenSSL).  A hasher belongs to one thread at a
 * time.  evl__sha256_new(): the caller frees *out with evl__sha256_free().
 * evl__sha256_2() hashes a || b.  All return EVL_OK or EVL_ENOMEM. */
#define EVL_SHA256_LEN 32
typedef struct evl_sha256 evl_sha256;
int evl__sha256_new(evl_sha256 **out);
void evl__sha256_free(evl_sha256 *h);
int evl__sha256_2(evl_sha256 *h, const void *a, size_t an, const void *b, size_t bn,
                  uint8_t out[EVL_SHA256_LEN]);
int evl__sha256_once(const void *p, size_t n, uint8_t out[EVL_SHA256_LEN]);
/* Incremental: begin, add any number of times, end. */
int evl__sha256_begin(evl_sha256 *h);
int evl__sha256_add(evl_sha256 *h, const void *p, size_t n);
int evl__sha256_end(evl_sha256 *h, uint8_t out[EVL_SHA256_LEN]);

/* Random bytes for generated ids, drawn from the kernel 4 KiB at a time
 * (uuid.c says why).  Thread-safe. */
typedef struct evl_rndpool {
    pthread_mutex_t mu;
    size_t used;
    uint8_t buf[4096];
} evl_rndpool;
void evl__rnd_init(evl_rndpool *p);
void evl__rnd_destroy(evl_rndpool *p);
/* @p n UUIDv7 (RFC 9562) of the current millisecond, random bits from @p p. */
void evl__uuid_v7_pool(evl_rndpool *p, uint8_t (*out)[16], size_t n);

/* Wall clock in ns since the epoch; monotonic clock in ns. */
int64_t evl__now_ns(void);
int64_t evl__mono_ns(void);

#endif
