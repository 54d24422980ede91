/* Bearer tokens and roles (--token-file).
 *
 * The file has one token per line, `SECRET ROLE [NAME]` or
 * `sha256:HEX ROLE [NAME]`, with ROLE one of reader, writer, admin and NAME
 * who the token stands for (1..255 printable bytes, no spaces): the actor
 * the server writes into meta.actor of what the token appends
 * (routes_append.c).  Blank lines and lines starting with # are ignored.
 * Every token is kept as a SHA-256 digest (OpenSSL), so a presented token
 * is hashed once and compared with every entry in constant time:
 * neither the position of the first differing byte nor which entry matched
 * shows in the time taken, and plain secrets are not kept in memory.
 */
#include <ctype.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>

#include "server/srv_int.h"

typedef struct token {
    uint8_t digest[32];
    srv_role role;
    char *name;              /* NULL: none */
} token;

struct srv_auth {
    token *t;
    size_t n;
};

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int parse_role(const char *s, srv_role *r) {
    if (!strcmp(s, "reader")) *r = ROLE_READER;
    else if (!strcmp(s, "writer")) *r = ROLE_WRITER;
    else if (!strcmp(s, "admin")) *r = ROLE_ADMIN;
    else return -1;
    return 0;
}

int evl__srv_auth_load(const char *path, srv_auth **out, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    *out = NULL;
    if (!f) {
        snprintf(err, errlen, "--token-file %s: %s", path, strerror(errno));
        return EVL_EINVAL;
    }
    srv_auth *a = evl_calloc(1, sizeof *a);
    char line[1024];
    size_t cap = 0;
    int lineno = 0, rc = EVL_OK;
    while (a && fgets(line, sizeof line, f)) {
        lineno++;
        char secret[1024], role[64], name[512], extra[8];
        int k = sscanf(line, "%1023s %63s %511s %7s", secret, role, name, extra);
        if (k <= 0 || secret[0] == '#') continue;
        srv_role r;
        if (k < 2 || k > 3 || parse_role(role, &r)) {
            snprintf(err, errlen, "--token-file %s:%d: want SECRET ROLE [NAME] or sha256:HEX ROLE [NAME], "
                                  "ROLE one of reader, writer, admin", path, lineno);
            rc = EVL_EINVAL;
            break;
        }
        if (k == 3 && evl_name_check(name, strlen(name)) != EVL_OK) {
            snprintf(err, errlen, "--token-file %s:%d: NAME must be 1..255 bytes of printable UTF-8",
                     path, lineno);
            rc = EVL_EINVAL;
            break;
        }
        if (a->n == cap) {
            cap = cap ? cap * 2 : 8;
            token *nt = evl_realloc(a->t, cap * sizeof *nt);
            if (!nt) {
                rc = EVL_ENOMEM;
                break;
            }
            a->t = nt;
        }
        token *t = &a->t[a->n];
        t->role = r;
        t->name = NULL;
        if (k == 3 && !(t->name = evl_malloc(strlen(name) + 1))) {
            rc = EVL_ENOMEM;
            break;
        }
        if (t->name) memcpy(t->name, name, strlen(name) + 1);
        if (!strncmp(secret, "sha256:", 7)) {
            const char *h = secret + 7;
            int ok = strlen(h) == 64;
            for (int i = 0; ok && i < 32; i++) {
                int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
                ok = hi >= 0 && lo >= 0;
                t->digest[i] = (uint8_t)(hi << 4 | lo);
            }
            if (!ok) {
                evl_free(t->name);
                snprintf(err, errlen, "--token-file %s:%d: sha256: wants 64 hex digits", path, lineno);
                rc = EVL_EINVAL;
                break;
            }
        } else if (!SHA256((const unsigned char *)secret, strlen(secret), t->digest)) {
            evl_free(t->name);
            rc = EVL_ENOMEM; /* OpenSSL fails only when it cannot allocate */
            break;
        }
        a->n++;
    }
    fclose(f);
    if (!a) rc = EVL_ENOMEM;
    if (rc == EVL_OK && a->n == 0) {
        snprintf(err, errlen, "--token-file %s has no tokens", path);
        rc = EVL_EINVAL;
    }
    if (rc) {
        if (rc == EVL_ENOMEM) snprintf(err, errlen, "out of memory");
        evl__srv_auth_free(a);
        return rc;
    }
    *out = a;
    return EVL_OK;
}

void evl__srv_auth_free(srv_auth *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) evl_free(a->t[i].name);
    if (a->t) memset(a->t, 0, a->n * sizeof *a->t);
    evl_free(a->t);
    evl_free(a);
}

srv_role evl__srv_auth_role(const srv_auth *a, const char *tok, size_t len, const char **name) {
    uint8_t d[32];
    *name = NULL;
    /* a token we cannot hash is a token we cannot recognise */
    if (!SHA256((const unsigned char *)tok, len, d)) return ROLE_NONE;
    unsigned best = ROLE_NONE;
    uintptr_t who = 0;
    for (size_t i = 0; i < a->n; i++) {
        unsigned diff = 0;
        for (int k = 0; k < 32; k++) diff |= (unsigned)(d[k] ^ a->t[i].digest[k]);
        /* mask = all ones when the digests are equal, without a branch */
        unsigned mask = (unsigned)(((int)((diff | (0u - diff)) >> 31)) - 1) & 0xff;
        unsigned cand = (unsigned)a->t[i].role & mask;
        /* the name of the best match so far, chosen without a branch too */
        uintptr_t take = (uintptr_t)0 - (uintptr_t)(mask & (best <= cand));
        who = (who & ~take) | ((uintptr_t)a->t[i].name & take);
        best = best < cand ? cand : best;
    }
    *name = (const char *)who;
    return (srv_role)best;
}

int evl__srv_auth_is_name(const srv_auth *a, const char *s, size_t n) {
    for (size_t i = 0; i < a->n; i++)
        if (a->t[i].name && strlen(a->t[i].name) == n && !memcmp(a->t[i].name, s, n)) return 1;
    return 0;
}
