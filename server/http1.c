/* HTTP/1.1 request heads and chunked bodies (RFC 9112): see http1.h.
 *
 * Strict where leniency has let requests be read two ways (request
 * smuggling): a field name must meet its colon, a folded line, a bare CR or
 * a NUL is refused, Content-Length is one decimal number however often it is
 * repeated, and a request with both Content-Length and Transfer-Encoding is
 * refused rather than framed by either.  Lenient where RFC 9112 allows it
 * and clients rely on it: a bare LF ends a line, and empty lines before the
 * request line are skipped.
 */
#include <string.h>
#include <strings.h>

#include "server/http1.h"

/* tchar (RFC 9110 section 5.6.2): the characters of a token */
static int is_tchar(unsigned char ch) {
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
           (ch && memchr(extra, ch, sizeof extra - 1));
}

/* field-vchar, SP, HTAB: what a field value may hold (obs-text included) */
static int is_value_char(unsigned char ch) { return ch == '\t' || (ch >= 0x20 && ch != 0x7f); }

/* Where the head ends (its empty line included), looking from *scanned on;
 * 0 when it has not arrived.  *scanned moves on so that bytes arriving one
 * at a time are not scanned again and again. */
static size_t head_end(const char *buf, size_t len, size_t start, size_t *scanned) {
    size_t i = *scanned > start ? *scanned : start;
    for (;;) {
        const char *nl = i < len ? memchr(buf + i, '\n', len - i) : NULL;
        if (!nl) {
            *scanned = len;
            return 0;
        }
        i = (size_t)(nl - buf);
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
        if (i + 2 >= len) { /* the empty line may still come */
            *scanned = i;
            return 0;
        }
        i++;
    }
}

/* The end of the line starting at p (before its CRLF or LF), within end;
 * NULL for a bare CR or a NUL on the way. */
static const char *line_end(const char *p, const char *end, const char **next) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return NULL; /* head_end() found the empty line: cannot happen */
    const char *e = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    if (memchr(p, '\r', (size_t)(e - p)) || memchr(p, '\0', (size_t)(e - p))) return NULL;
    *next = nl + 1;
    return e;
}

static long request_line(const char *p, const char *e, srv_h1_head *h) {
    const char *q = p;
    while (q < e && is_tchar((unsigned char)*q)) q++;
    if (q == p || q == e || *q != ' ') return -400;
    h->method = p;
    h->method_len = (size_t)(q - p);
    p = ++q;
    while (q < e && (unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f) q++;
    if (q == p || q == e || *q != ' ') return -400;
    h->target = p;
    h->target_len = (size_t)(q - p);
    p = q + 1;
    if (e - p != 8 || memcmp(p, "HTTP/", 5) || p[6] != '.' || p[5] < '0' || p[5] > '9' || p[7] < '0' ||
        p[7] > '9')
        return -400;
    if (p[5] != '1' || p[7] > '1') return -505;
    h->minor = p[7] - '0';
    return 0;
}

static long field_line(const char *p, const char *e, srv_h1_head *h) {
    const char *q = p;
    while (q < e && is_tchar((unsigned char)*q)) q++;
    if (q == p || q == e || *q != ':') return -400; /* also a folded line: it starts with a space */
    if (h->n_field == h->cap_field) return SRV_H1_MORE_FIELDS;
    srv_h1_field *f = &h->field[h->n_field++];
    f->name = p;
    f->name_len = (size_t)(q - p);
    for (const char *v = q + 1; v < e; v++)
        if (!is_value_char((unsigned char)*v)) return -400;
    q++;
    while (q < e && (*q == ' ' || *q == '\t')) q++;
    while (e > q && (e[-1] == ' ' || e[-1] == '\t')) e--;
    f->value = q;
    f->value_len = (size_t)(e - q);
    return 0;
}

static int name_is(const srv_h1_field *f, const char *name) {
    return f->name_len == strlen(name) && !strncasecmp(f->name, name, f->name_len);
}

static int value_is(const srv_h1_field *f, const char *v) {
    return f->value_len == strlen(v) && !strncasecmp(f->value, v, f->value_len);
}

/* What the fields say about the body and the connection. */
static long semantics(srv_h1_head *h) {
    int have_cl = 0, have_te = 0, close = 0, keep = 0;
    for (size_t i = 0; i < h->n_field; i++) {
        const srv_h1_field *f = &h->field[i];
        if (name_is(f, "Content-Length")) {
            if (!f->value_len || f->value_len > 18) return -400; /* 18 digits fit in 63 bits */
            uint64_t n = 0;
            for (size_t k = 0; k < f->value_len; k++) {
                if (f->value[k] < '0' || f->value[k] > '9') return -400;
                n = n * 10 + (uint64_t)(f->value[k] - '0');
            }
            if (have_cl && n != h->content_length) return -400;
            h->content_length = n;
            have_cl = 1;
        } else if (name_is(f, "Transfer-Encoding")) {
            if (have_te) return -400;   /* chunked twice, or a coding after it */
            if (!value_is(f, "chunked")) return -501;
            have_te = 1;
        } else if (name_is(f, "Connection")) {
            close |= evl__srv_h1_has_token(f->value, f->value_len, "close");
            keep |= evl__srv_h1_has_token(f->value, f->value_len, "keep-alive");
        } else if (name_is(f, "Expect")) {
            if (!value_is(f, "100-continue")) return -417;
            h->expect_continue = h->minor >= 1;
        }
    }
    if (have_te && (have_cl || h->minor == 0)) return -400;
    h->chunked = have_te;
    h->keep_alive = h->minor >= 1 ? !close : keep && !close;
    return 0;
}

long evl__srv_h1_head(const char *buf, size_t len, size_t max, size_t *scanned, srv_h1_head *h) {
    size_t start = 0;
    while (start < len && (buf[start] == '\n' || (buf[start] == '\r' && start + 1 < len && buf[start + 1] == '\n')))
        start += buf[start] == '\n' ? 1 : 2;
    size_t end = head_end(buf, len, start, scanned);
    if (!end) return len > max ? -431 : 0;
    if (end > max) return -431;
    srv_h1_field *field = h->field;
    size_t cap = h->cap_field;
    memset(h, 0, sizeof *h);
    h->field = field;
    h->cap_field = cap;
    const char *p = buf + start, *stop = buf + end, *next;
    const char *e = line_end(p, stop, &next);
    long rc = e ? request_line(p, e, h) : -400;
    for (p = next; !rc && p < stop; p = next) {
        if (!(e = line_end(p, stop, &next))) return -400;
        if (e == p) break; /* the empty line */
        rc = field_line(p, e, h);
    }
    if (!rc) rc = semantics(h);
    return rc ? rc : (long)end;
}

const char *evl__srv_h1_field(const srv_h1_head *h, const char *name, size_t *len) {
    for (size_t i = 0; i < h->n_field; i++)
        if (name_is(&h->field[i], name)) {
            *len = h->field[i].value_len;
            return h->field[i].value;
        }
    *len = 0;
    return NULL;
}

int evl__srv_h1_has_token(const char *v, size_t len, const char *token) {
    size_t tl = strlen(token);
    for (size_t i = 0; i < len;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t s = i;
        while (i < len && v[i] != ',') i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - s == tl && !strncasecmp(v + s, token, tl)) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ chunked */

enum { C_SIZE, C_EXT, C_SIZE_LF, C_DATA, C_DATA_END, C_DATA_LF, C_TRAILER, C_TRAILER_LINE, C_TRAILER_LF,
       C_DONE };

#define TRAILER_MAX 8192 /* trailer fields are read and dropped: a bound on what we read for nothing */

static int hex(unsigned char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

long evl__srv_h1_dechunk(srv_h1_chunks *c, const char *in, size_t len, char *out, size_t *out_len,
                         uint64_t max) {
    size_t i = 0;
    while (i < len && c->state != C_DONE) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case C_SIZE: {
            int d = hex(ch);
            if (d >= 0) {
                if (++c->digits > 15) return -413; /* 16^15: far past any bound we set */
                c->left = c->left * 16 + (uint64_t)d;
                i++;
                break;
            }
            if (!c->digits) return -400;
            if (c->left > max || c->size + c->left > max) return -413;
            if (ch == ';' || ch == ' ' || ch == '\t') c->state = C_EXT;
            else if (ch == '\r') c->state = C_SIZE_LF;
            else if (ch == '\n') c->state = c->left ? C_DATA : C_TRAILER;
            else return -400;
            i++;
            break;
        }
        case C_EXT: /* chunk extensions: none is understood, all are skipped */
            if (ch == '\r') c->state = C_SIZE_LF;
            else if (ch == '\n') c->state = c->left ? C_DATA : C_TRAILER;
            else if (!is_value_char(ch)) return -400;
            i++;
            break;
        case C_SIZE_LF:
            if (ch != '\n') return -400;
            c->state = c->left ? C_DATA : C_TRAILER;
            i++;
            break;
        case C_DATA: {
            size_t k = len - i < c->left ? len - i : (size_t)c->left;
            memmove(out + *out_len, in + i, k);
            *out_len += k;
            c->size += k;
            c->left -= k;
            i += k;
            if (!c->left) c->state = C_DATA_END;
            break;
        }
        case C_DATA_END:
            if (ch == '\r') c->state = C_DATA_LF;
            else if (ch == '\n') c->state = C_SIZE, c->digits = 0;
            else return -400;
            i++;
            break;
        case C_DATA_LF:
            if (ch != '\n') return -400;
            c->state = C_SIZE;
            c->digits = 0;
            i++;
            break;
        case C_TRAILER: /* at the start of a trailer line: an empty one ends the body */
            if (ch == '\r') c->state = C_TRAILER_LF;
            else if (ch == '\n') c->state = C_DONE;
            else if (is_tchar(ch)) c->state = C_TRAILER_LINE;
            else return -400;
            i++;
            break;
        case C_TRAILER_LINE: /* left counts the trailer's bytes: it was 0 after the last chunk */
            if (++c->left > TRAILER_MAX) return -400;
            if (ch == '\n') c->state = C_TRAILER;
            else if (!is_value_char(ch) && ch != '\r') return -400;
            i++;
            break;
        case C_TRAILER_LF:
            if (ch != '\n') return -400;
            c->state = C_DONE;
            i++;
            break;
        }
    }
    return (long)i;
}

int evl__srv_h1_chunks_done(const srv_h1_chunks *c) { return c->state == C_DONE; }
