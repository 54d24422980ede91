/* All of libevlog's heap goes through these, so a test build can inject
 * allocation failures in one place and ownership has one vocabulary:
 * "the caller frees it with evl_free()". */
#include <stdlib.h>

#include "common/common_int.h"

void *evl_malloc(size_t n) { return malloc(n ? n : 1); }
void *evl_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *evl_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void evl_free(void *p) { free(p); }
