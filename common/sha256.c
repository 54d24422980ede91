/* SHA-256 through OpenSSL's EVP interface (libssl-dev), for the log's hash
 * chain and the server's hashed tokens.  The project carries no crypto of
 * its own.
 *
 * A hasher fetches the algorithm once and keeps one digest context: the
 * writer hashes every record it appends, and a fetch per call (what the
 * one-shot SHA256() does in OpenSSL 3) costs more than hashing a small
 * record with SHA-NI. */
#include <openssl/evp.h>

#include "common/common_int.h"

struct evl_sha256 {
    EVP_MD *md;
    EVP_MD_CTX *ctx;
};

int evl__sha256_new(evl_sha256 **out) {
    evl_sha256 *h = evl_calloc(1, sizeof *h);
    *out = NULL;
    if (!h) return EVL_ENOMEM;
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->ctx = EVP_MD_CTX_new();
    if (!h->md || !h->ctx) {
        evl__sha256_free(h);
        return EVL_ENOMEM;
    }
    *out = h;
    return EVL_OK;
}

void evl__sha256_free(evl_sha256 *h) {
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    evl_free(h);
}

int evl__sha256_2(evl_sha256 *h, const void *a, size_t an, const void *b, size_t bn,
                  uint8_t out[EVL_SHA256_LEN]) {
    unsigned n = 0;
    if (!EVP_DigestInit_ex2(h->ctx, h->md, NULL) || (an && !EVP_DigestUpdate(h->ctx, a, an)) ||
        (bn && !EVP_DigestUpdate(h->ctx, b, bn)) || !EVP_DigestFinal_ex(h->ctx, out, &n) ||
        n != EVL_SHA256_LEN)
        return EVL_ENOMEM; /* OpenSSL fails here only when it cannot allocate */
    return EVL_OK;
}

int evl__sha256_begin(evl_sha256 *h) {
    return EVP_DigestInit_ex2(h->ctx, h->md, NULL) ? EVL_OK : EVL_ENOMEM;
}

int evl__sha256_add(evl_sha256 *h, const void *p, size_t n) {
    return !n || EVP_DigestUpdate(h->ctx, p, n) ? EVL_OK : EVL_ENOMEM;
}

int evl__sha256_end(evl_sha256 *h, uint8_t out[EVL_SHA256_LEN]) {
    unsigned n = 0;
    return EVP_DigestFinal_ex(h->ctx, out, &n) && n == EVL_SHA256_LEN ? EVL_OK : EVL_ENOMEM;
}

int evl__sha256_once(const void *p, size_t n, uint8_t out[EVL_SHA256_LEN]) {
    evl_sha256 *h;
    int rc = evl__sha256_new(&h);
    if (rc) return rc;
    rc = evl__sha256_2(h, p, n, NULL, 0, out);
    evl__sha256_free(h);
    return rc;
}
