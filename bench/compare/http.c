/* evlogd as the network workloads see it: a process spawned per run on a
 * fresh data directory and an ephemeral port, and a minimal blocking
 * HTTP/1.1 keep-alive client (one per client thread, like a service's
 * connection pool).  Plain sockets rather than a library so the client side
 * costs about what libpq's and libnats' socket loops cost. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "cmp.h"

/* ------------------------------------------------------------- evlogd */

int cmp_evlogd_start(const cmp_env *env, const char *data, const char *sync, cmp_evlogd *d,
                     char *err)
{
    char log[4200];
    snprintf(log, sizeof log, "%s.err", data);
    d->pid = -1;
    d->port = 0;
    unlink(log); /* a restart must not read the last run's port */
    pid_t pid = fork();
    if (pid < 0) {
        cmp_err(err, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* never outlive the harness, however it ends */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        execl(env->evlogd, env->evlogd, "--data", data, "--listen", "127.0.0.1:0", "--no-builtin",
              "--sync", sync, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    /* evlogd says its port on stderr once it listens */
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(log, "r");
        char line[1024];
        while (f && fgets(line, sizeof line, f)) {
            const char *p = strstr(line, "listening on http://127.0.0.1:");
            if (p)
                d->port = atoi(p + strlen("listening on http://127.0.0.1:"));
        }
        if (f)
            fclose(f);
        if (d->port > 0)
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = -1;
            cmp_err(err, "evlogd exited at start (see %s)", log);
            return -1;
        }
        cmp_sleep_ms(25);
    }
    cmp_err(err, "evlogd did not listen within 10 s (see %s)", log);
    cmp_evlogd_stop(d);
    return -1;
}

void cmp_evlogd_stop(cmp_evlogd *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 400; i++) {
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = -1;
            return;
        }
        cmp_sleep_ms(25);
    }
    fprintf(stderr, "compare: evlogd %d did not stop within 10 s of SIGTERM: killed\n", d->pid);
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = -1;
}

/* --------------------------------------------------------------- client */

int cmp_http_open(cmp_http *h, int port, char *err)
{
    memset(h, 0, sizeof *h);
    h->port = port;
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0) {
        cmp_err(err, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(h->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        cmp_err(err, "connect 127.0.0.1:%d: %s", port, strerror(errno));
        close(h->fd);
        h->fd = -1;
        return -1;
    }
    return 0;
}

void cmp_http_close(cmp_http *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    free(h->buf);
    h->buf = NULL;
}

static int send_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Next byte from the read-ahead buffer; -1 at EOF or error. */
static int fill(cmp_http *h)
{
    if (h->used < h->have)
        return 0;
    ssize_t r;
    do
        r = read(h->fd, h->rbuf, sizeof h->rbuf);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return -1;
    h->have = (size_t)r;
    h->used = 0;
    return 0;
}

static int body_reserve(cmp_http *h, size_t n)
{
    if (n + 1 <= h->cap)
        return 0;
    size_t cap = h->cap ? h->cap : 4096;
    while (cap < n + 1)
        cap *= 2;
    char *b = realloc(h->buf, cap);
    if (!b)
        return -1;
    h->buf = b;
    h->cap = cap;
    return 0;
}

int cmp_http_do(cmp_http *h, const char *method, const char *path, const char *headers,
                const void *body, size_t body_len, char *err)
{
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n%s\r\n", method,
                      path, body_len, headers ? headers : "");
    struct iovec iov[2] = {{head, (size_t)hl}, {(void *)body, body_len}};
    if (send_all(h->fd, iov, body_len ? 2 : 1) != 0) {
        cmp_err(err, "http send: %s", strerror(errno));
        return -1;
    }
    /* the head, line by line */
    char line[1024];
    size_t ll = 0;
    int status = 0, first = 1;
    long clen = -1;
    for (;;) {
        if (fill(h) != 0) {
            cmp_err(err, "http: connection closed by evlogd");
            return -1;
        }
        char c = h->rbuf[h->used++];
        if (c != '\n') {
            if (ll + 1 < sizeof line)
                line[ll++] = c;
            continue;
        }
        if (ll && line[ll - 1] == '\r')
            ll--;
        line[ll] = 0;
        if (ll == 0)
            break;
        if (first)
            status = atoi(line + 9); /* "HTTP/1.1 201 Created" */
        else if (!strncasecmp(line, "Content-Length:", 15))
            clen = atol(line + 15);
        first = 0;
        ll = 0;
    }
    if (clen < 0) {
        cmp_err(err, "http: answer without Content-Length (status %d)", status);
        return -1;
    }
    if (body_reserve(h, (size_t)clen) != 0) {
        cmp_err(err, "http: out of memory");
        return -1;
    }
    h->len = 0;
    while (h->len < (size_t)clen) {
        if (fill(h) != 0) {
            cmp_err(err, "http: connection closed mid-body");
            return -1;
        }
        size_t k = h->have - h->used;
        if (k > (size_t)clen - h->len)
            k = (size_t)clen - h->len;
        memcpy(h->buf + h->len, h->rbuf + h->used, k);
        h->used += k;
        h->len += k;
    }
    h->buf[h->len] = 0;
    return status;
}
