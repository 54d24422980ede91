/* All of libevlog's heap goes through these, so a test build can inject
 * allocation failures in one place and ownership has one vocabulary:
 * "the caller frees it with evl_free()".
 *
 * With -DEVL_ALLOC_FAULTS (the CMake option of the same name, test builds
 * only) a countdown makes the Nth allocation fail, once or from then on,
 * the way SQLite's test_malloc.c does.  Normal builds compile none of it:
 * no counter, no branch, no global state. */
#include <stdlib.h>

#include "common/common_int.h"

#ifdef EVL_ALLOC_FAULTS
#include <stdatomic.h>

/* 0: off; k: the k-th allocation from now fails.  With persist the count
 * stays at 1 once reached, so every later allocation fails too. */
static _Atomic unsigned long fault_countdown;
static _Atomic int fault_persist;
static _Atomic unsigned long fault_injected;

void evl_alloc_fault_arm(unsigned long n, int persist) {
    atomic_store(&fault_injected, 0);
    atomic_store(&fault_persist, persist);
    atomic_store(&fault_countdown, n);
}

unsigned long evl_alloc_fault_disarm(void) {
    atomic_store(&fault_countdown, 0);
    return atomic_load(&fault_injected);
}

static int fault_now(void) {
    unsigned long c = atomic_load(&fault_countdown);
    for (;;) {
        if (c == 0) return 0;
        if (c == 1 && atomic_load(&fault_persist)) break;
        if (atomic_compare_exchange_weak(&fault_countdown, &c, c == 1 ? 0 : c - 1)) {
            if (c != 1) return 0;
            break;
        }
    }
    atomic_fetch_add(&fault_injected, 1);
    return 1;
}
#define FAULT_NOW() fault_now()
#else
#define FAULT_NOW() 0
#endif

void *evl_malloc(size_t n) { return FAULT_NOW() ? NULL : malloc(n ? n : 1); }
void *evl_calloc(size_t n, size_t size) {
    return FAULT_NOW() ? NULL : calloc(n ? n : 1, size ? size : 1);
}
void *evl_realloc(void *p, size_t n) { return FAULT_NOW() ? NULL : realloc(p, n ? n : 1); }
void evl_free(void *p) { free(p); }
