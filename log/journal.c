/* The journal: what makes a group durable before it is in LMDB.
 *
 * WHY.  An LMDB commit writes every B-tree page the transaction touched and
 * syncs twice (pages, then the meta page).  With many appenders each event
 * lands on its own page of the streams index, so a commit of 60 events wrote
 * ~60 scattered pages: ~1.8 ms on the development disk, where one sequential
 * 4 KiB write + fdatasync takes ~0.1 ms.  So the writer makes a group durable
 * by appending one frame to this file and syncing it (sequential, one
 * flush; sync.c: a big group's sync runs while the next frame is written),
 * acknowledges the appenders, and leaves LMDB to the applier thread,
 * which commits many groups at a time (apply.c).  At open, frames past
 * LMDB's head are applied before anything else happens.
 *
 * FORMAT.  Two files, DATA/log/data.mdb-journal and data.mdb-journal-1,
 * each hold a run of frames written back to back from offset 0.  The
 * writer fills one up to the lap size, then starts over at 0 of the other
 * once LMDB holds every frame in that one (writer.c: journal() says why two).
 * Replay reads both runs and takes the frames that join LMDB's head from
 * either in turn (apply.c).  A frame:
 *
 *   be32 magic "EVLJ", be32 payload bytes, be64 epoch, be64 first position,
 *   be32 records, be32 CRC-32C of the 28 bytes before it and the payload;
 *   payload: per record be32 length, then the record exactly as LMDB keeps
 *   it (format.c: it carries its own position, CRC and chain value).
 *
 * The epoch is a random number drawn at every open: a frame from an earlier
 * run can sit right after the last frame of this one (a shorter frame
 * overwrote a longer one, or a lost write left an old one in place), with
 * a position that happens to be the next one.  A run is read from offset 0
 * while its frames are intact, of the epoch of the first, and each starts
 * where the previous ended.  An open empties both files after replaying
 * them, so the runs of one open never meet those of another.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log/log_int.h"

#define JNL_MAGIC 0x45564c4aU /* "EVLJ" */

char *evl__jnl_path(const char *dir, int i) {
    size_t n = strlen(dir) + sizeof "/log/data.mdb-journal-1";
    char *p = evl_malloc(n);
    if (p) snprintf(p, n, i ? "%s/log/data.mdb-journal-%d" : "%s/log/data.mdb-journal", dir, i);
    return p;
}

static uint32_t frame_crc(const uint8_t *hdr, const uint8_t *payload, size_t len) {
    return evl__crc32c(evl__crc32c(0, hdr, EVL_JNL_HDR - 4), payload, len);
}

void evl__jnl_seal(evl_jbatch *b, uint64_t epoch) {
    uint8_t *h = b->buf;
    size_t payload = b->len - EVL_JNL_HDR;
    evl__put_be32(h, JNL_MAGIC);
    evl__put_be32(h + 4, (uint32_t)payload);
    evl__put_be64(h + 8, epoch);
    evl__put_be64(h + 16, b->first);
    evl__put_be32(h + 24, b->n);
    evl__put_be32(h + 28, frame_crc(h, h + EVL_JNL_HDR, payload));
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off, size_t *done);

/* Open (creating) journal file i, emptied: recovery has applied what it
 * held, and a run left in it must never be joined to frames of this open
 * (a run that did not join LMDB's head, possible in EVL_SYNC_NONE, could
 * join it later).  Zeroing the first header ends the run at offset 0. */
static int open_file(evl_log *log, int i) {
    char *path = evl__jnl_path(log->dir, i);
    if (!path) return EVL_ENOMEM;
    struct stat st;
    int existed = stat(path, &st) == 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    evl_free(path);
    if (fd < 0) return EVL_ESYS(errno);
    log->jfd[i] = fd; /* closed by evl__writer_stop() */
    log->jsize[i] = existed ? (uint64_t)st.st_size : 0;
    static const uint8_t zero[EVL_JNL_HDR];
    size_t done;
    if (existed && st.st_size > 0) {
        int e = pwrite_all(fd, zero, sizeof zero, 0, &done);
        if (e || fdatasync(fd) != 0) return EVL_ESYS(e ? e : errno);
    }
    if (!existed) {
        /* the name must be durable before any frame in it counts */
        size_t n = strlen(log->dir) + 8;
        char *d = evl_malloc(n);
        int dfd = -1;
        if (d) snprintf(d, n, "%s/log", log->dir);
        if (d && (dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
            int bad = fsync(dfd) != 0;
            close(dfd);
            if (bad) { evl_free(d); return EVL_ESYS(EIO); }
        }
        evl_free(d);
    }
    return EVL_OK;
}

int evl__jnl_open(evl_log *log) {
    for (int i = 0; i < EVL_JNL_FILES; i++) {
        int rc = open_file(log, i);
        if (rc) return rc;
        log->jlast[i] = 0;
    }
    uint64_t e = 0;
    if (getrandom(&e, sizeof e, 0) != (ssize_t)sizeof e) e = (uint64_t)evl__now_ns() ^ (uint64_t)getpid() << 32;
    log->jepoch = e;
    log->jcur = 0;
    log->joff = 0;
    return EVL_OK;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off, size_t *done) {
    *done = 0;
    while (*done < n) {
        ssize_t w = pwrite(fd, p + *done, n - *done, off + (off_t)*done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        if (w == 0) return ENOSPC;
        *done += (size_t)w;
    }
    return 0;
}

/* fsyncgate: after a failed sync the kernel may have dropped the frame's
 * pages, and whatever it left must not replay later as an append we
 * reported failed.  Zeroing its header ends the run there. */
void evl__jnl_void(evl_log *log, int i, uint64_t off) {
    static const uint8_t zero[EVL_JNL_HDR];
    size_t done;
    if (pwrite_all(log->jfd[i], zero, sizeof zero, (off_t)off, &done) == 0) (void)fdatasync(log->jfd[i]);
}

/* Grow file i with zeros past @p need bytes, at most EVL_JNL_EXTEND at a time.
 * WHY.  fdatasync after a write past the end of the file also commits the
 * file system's journal (the new size, the new blocks): 0.20 ms on the
 * development disk against 0.12 ms for a write in place, and it queues
 * behind the metadata of LMDB's own growth.  Frames are written in place
 * once the file has its lap, but each new log (each benchmark round) wrote
 * its first 32 MiB at the end: 64 single-event appenders, 116-123k
 * events/s, and 125-133k with files grown ahead.  (fallocate() would not
 * do: its unwritten extents are converted, in the file system's journal,
 * at the first write.)  Zeros end a run like any bad header.  Best effort:
 * a failure here leaves the frame's own write to report it. */
static void extend(evl_log *log, int i, uint64_t need) {
    static const uint8_t zero[64 << 10];
    /* by half the size so far, between 64 KiB and EVL_JNL_EXTEND: a log
     * that stays small (bursts wrap at EVL_JNL_EARLY_WRAP) keeps small files */
    uint64_t step = log->jsize[i] / 2;
    step = step < (64u << 10) ? 64u << 10 : step > EVL_JNL_EXTEND ? EVL_JNL_EXTEND : step;
    uint64_t to = need + step;
    uint64_t most = need > log->opt.journal_lap ? need : log->opt.journal_lap; /* no frame ends past it */
    if (to > most) to = most;
    while (log->jsize[i] < to) {
        struct iovec iov[16];
        int cnt = 0;
        uint64_t n = 0;
        while (cnt < 16 && log->jsize[i] + n < to) {
            uint64_t len = to - log->jsize[i] - n;
            iov[cnt].iov_base = (void *)zero;
            iov[cnt].iov_len = len < sizeof zero ? (size_t)len : sizeof zero;
            n += iov[cnt++].iov_len;
        }
        ssize_t w = pwritev(log->jfd[i], iov, cnt, (off_t)log->jsize[i]);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        log->jsize[i] += (uint64_t)w;
    }
}

int evl__jnl_write(evl_log *log, const evl_jbatch *b, int sync) {
    size_t done;
    int fd = log->jfd[log->jcur];
    if (log->joff + b->len > log->jsize[log->jcur]) extend(log, log->jcur, log->joff + b->len);
    int e = pwrite_all(fd, b->buf, b->len, (off_t)log->joff, &done);
    if (e == 0 && log->joff + b->len > log->jsize[log->jcur]) log->jsize[log->jcur] = log->joff + b->len;
    if (e == 0 && sync) return evl__jnl_sync(log, log->jcur, log->joff);
    return e ? EVL_ESYS(e) : EVL_OK;
}

int evl__jnl_sync(evl_log *log, int i, uint64_t off) {
    atomic_fetch_add(&log->n_syncs, 1);
    if (fdatasync(log->jfd[i]) == 0) return EVL_OK;
    int e = errno ? errno : EIO;
    evl__jnl_void(log, i, off);
    return EVL_ESYS(e);
}

/* ------------------------------------------------------------ reading */

int evl__jnl_scan_open(const char *dir, int i, evl_jscan *s) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    char *path = evl__jnl_path(dir, i);
    if (!path) return EVL_ENOMEM;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    evl_free(path);
    if (s->fd < 0) return errno == ENOENT ? EVL_ENOTFOUND : EVL_ESYS(errno);
    struct stat st;
    if (fstat(s->fd, &st) != 0) return EVL_ESYS(errno);
    s->size = (uint64_t)st.st_size;
    return EVL_OK;
}

void evl__jnl_scan_close(evl_jscan *s) {
    if (s->fd >= 0) close(s->fd);
    evl_free(s->buf);
    memset(s, 0, sizeof *s);
}

static int read_at(int fd, uint8_t *p, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        got += (size_t)r;
    }
    return 1;
}

/* The next frame of the run that starts at offset 0: 1 with s->payload,
 * s->payload_len, s->first, s->n set; 0 at its end (a torn or foreign frame
 * or the end of the file ends it: none of that was acknowledged). */
int evl__jnl_scan_next(evl_jscan *s) {
    uint8_t h[EVL_JNL_HDR];
    if (s->off + EVL_JNL_HDR > s->size || !read_at(s->fd, h, sizeof h, s->off)) return 0;
    uint32_t len = evl__get_be32(h + 4), n = evl__get_be32(h + 24);
    uint64_t epoch = evl__get_be64(h + 8), first = evl__get_be64(h + 16);
    if (evl__get_be32(h) != JNL_MAGIC || len > s->size - s->off - EVL_JNL_HDR || n == 0 ||
        (uint64_t)n * 5 > len || first == 0)
        return 0;
    if (s->frames && (epoch != s->epoch || first != s->next)) return 0;
    if (len > s->cap) {
        uint8_t *nb = evl_realloc(s->buf, len);
        if (!nb) return 0;
        s->buf = nb;
        s->cap = len;
    }
    if (!read_at(s->fd, s->buf, len, s->off + EVL_JNL_HDR) ||
        frame_crc(h, s->buf, len) != evl__get_be32(h + 28))
        return 0;
    s->epoch = epoch;
    s->first = first;
    s->n = n;
    s->next = first + n;
    s->payload = s->buf;
    s->payload_len = len;
    s->off += EVL_JNL_HDR + len;
    s->frames++;
    return 1;
}
