/* ioshim: an LD_PRELOAD library that simulates power loss and I/O errors on
 * the files whose path contains $EVL_SHIM_MATCH (default "/data.mdb"), the
 * way SQLite's crash tests do (test6.c).
 *
 * It keeps, for every write to such a file since the file's last
 * fdatasync/fsync/msync, the bytes the write overwrote (an undo copy) and the
 * bytes it wrote.  A write through a descriptor opened with O_DSYNC/O_SYNC is
 * durable at once (LMDB writes its meta page that way in sync-full mode).
 * At the simulated crash the file is put back as it stood at the last sync,
 * the durable writes are replayed, and each unsynced write is replayed or not
 * according to the crash mode; then the process _exit()s.  Sectors (512
 * bytes) are the unit of atomicity, as on a real disk: a torn write keeps
 * some sectors of a write and not others, never half a sector.
 *
 * Environment (all optional; counts are over the tracked files only):
 *   EVL_SHIM_MATCH        the files to track: paths that contain this
 *                         (default "/data.mdb"; "/x.db" covers x.db-wal too)
 *   EVL_SHIM_CRASH_AT=N   crash at the Nth write or sync (before it is done;
 *                         the Nth write is "in flight" and may land in part)
 *   EVL_SHIM_CRASH_MODE   drop    every unsynced write is lost
 *                         keep    every unsynced write lands (a plain kill)
 *                         prefix  the first k land, in order, the next one
 *                                 torn at a sector boundary (a disk that
 *                                 keeps write order)
 *                         subset  each unsynced write lands or not (reordering)
 *                         sectors each sector of each unsynced write lands or
 *                                 not (reordering and tearing)
 *   EVL_SHIM_SEED         random seed of the crash's choices
 *   EVL_SHIM_FAIL_AT=N    the Nth write or sync fails with EIO ...
 *   EVL_SHIM_FAIL_STICKY  =1: ... and so does every one after it
 *   EVL_SHIM_FAIL_SHORT   =1: a failing write writes half (whole sectors)
 *                         and returns that short count instead of EIO
 *   EVL_SHIM_FAIL_WHEN=PATH  while PATH exists, every write and sync fails
 *                         (EIO, or short with EVL_SHIM_FAIL_SHORT): a fault
 *                         a test switches on and off from outside
 *   EVL_SHIM_EXIT_DROP    =1: at exit, lose every unsynced write (the state
 *                         a power cut right after the run would leave)
 *   EVL_SHIM_FAKE_SYNC    =1: syncs and O_DSYNC writes are simulated only
 *                         (the shim's model decides what survives; the
 *                         test then runs at memory speed, whatever the disk)
 *   EVL_SHIM_STATS=PATH   at exit (and at the crash) write
 *                         "ops=N writes=W syncs=S failed=F crashed=C\n"
 *
 * A crash exits with status 86 (EVL_SHIM_CRASH_STATUS).
 * Test-only code: global mutable state is what a preloaded shim is. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CRASH_STATUS 86
#define SECTOR 512
#define MAX_FD 4096
#define MAX_FILES 16

typedef struct wrec {
    int file;
    int durable;          /* written through an O_DSYNC fd: lands whatever happens */
    off_t off;
    size_t len;
    size_t old_len;       /* bytes that existed before (the rest was past EOF) */
    unsigned char *old, *new;
} wrec;

typedef struct tfile {
    dev_t dev;
    ino_t ino;
    off_t base_size;      /* size at the last sync */
    int fd;               /* a descriptor to repair it through */
} tfile;

static struct {
    pthread_mutex_t mu;
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pread)(int, void *, size_t, off_t);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    int (*fdatasync)(int);
    int (*fsync)(int);
    int (*msync)(void *, size_t, int);
    int (*open)(const char *, int, ...);
    int (*open64)(const char *, int, ...);
    int (*openat)(int, const char *, int, ...);
    int (*close)(int);
    int (*ftruncate)(int, off_t);
    const char *match;
    uint64_t crash_at, fail_at, seed;
    int sticky, short_write, exit_drop, fake_sync, mode;
    const char *stats, *fail_when;
    uint64_t ops, writes, syncs, failed;
    signed char fd_file[MAX_FD];   /* -1: untracked, else index into files */
    unsigned char fd_dsync[MAX_FD];
    tfile files[MAX_FILES];
    int n_files;
    wrec *recs;
    size_t n_recs, cap_recs;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

enum { M_DROP, M_KEEP, M_PREFIX, M_SUBSET, M_SECTORS };

static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (S.seed += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t env_u64(const char *name) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : 0;
}

static void write_stats(int crashed) {
    if (!S.stats) return;
    int fd = S.open(S.stats, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char buf[200];
    int n = snprintf(buf, sizeof buf, "ops=%" PRIu64 " writes=%" PRIu64 " syncs=%" PRIu64 " failed=%" PRIu64
                     " crashed=%d\n", S.ops, S.writes, S.syncs, S.failed, crashed);
    if (S.write(fd, buf, (size_t)n) != n) {}
    S.close(fd);
}

__attribute__((constructor)) static void shim_init(void) {
    memset(S.fd_file, -1, sizeof S.fd_file);
    S.pwrite = dlsym(RTLD_NEXT, "pwrite");
    S.pread = dlsym(RTLD_NEXT, "pread");
    S.write = dlsym(RTLD_NEXT, "write");
    S.writev = dlsym(RTLD_NEXT, "writev");
    S.pwritev = dlsym(RTLD_NEXT, "pwritev");
    S.fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    S.fsync = dlsym(RTLD_NEXT, "fsync");
    S.msync = dlsym(RTLD_NEXT, "msync");
    S.open = dlsym(RTLD_NEXT, "open");
    S.open64 = dlsym(RTLD_NEXT, "open64");
    S.openat = dlsym(RTLD_NEXT, "openat");
    S.close = dlsym(RTLD_NEXT, "close");
    S.ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    S.match = getenv("EVL_SHIM_MATCH");
    if (!S.match || !*S.match) S.match = "/data.mdb";
    S.crash_at = env_u64("EVL_SHIM_CRASH_AT");
    S.fail_at = env_u64("EVL_SHIM_FAIL_AT");
    S.seed = env_u64("EVL_SHIM_SEED");
    S.sticky = env_u64("EVL_SHIM_FAIL_STICKY") != 0;
    S.short_write = env_u64("EVL_SHIM_FAIL_SHORT") != 0;
    S.exit_drop = env_u64("EVL_SHIM_EXIT_DROP") != 0;
    S.fake_sync = env_u64("EVL_SHIM_FAKE_SYNC") != 0;
    S.stats = getenv("EVL_SHIM_STATS");
    S.fail_when = getenv("EVL_SHIM_FAIL_WHEN");
    const char *m = getenv("EVL_SHIM_CRASH_MODE");
    static const char *modes[] = {"drop", "keep", "prefix", "subset", "sectors"};
    for (int i = 0; m && i < 5; i++)
        if (!strcmp(m, modes[i])) S.mode = i;
}

/* ------------------------------------------------------------ tracking */

static int matches(const char *s, const char *part) { return strstr(s, part) != NULL; }

static void track(int fd, const char *path, int flags) {
    if (fd < 0 || fd >= MAX_FD || !matches(path, S.match)) return;
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    pthread_mutex_lock(&S.mu);
    int f = 0;
    while (f < S.n_files && !(S.files[f].dev == st.st_dev && S.files[f].ino == st.st_ino)) f++;
    if (f == S.n_files) {
        f = 0; /* a free slot (a file closed for good), else a new one */
        while (f < S.n_files && (S.files[f].dev || S.files[f].ino)) f++;
        if (f < MAX_FILES) {
            S.files[f] = (tfile){st.st_dev, st.st_ino, st.st_size, fd};
            if (f == S.n_files) S.n_files++;
        }
    }
    if (f < S.n_files) {
        if (S.files[f].fd < 0) S.files[f].fd = fd;
        S.fd_dsync[fd] = (flags & O_DSYNC) != 0;
        __atomic_store_n(&S.fd_file[fd], (signed char)f, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&S.mu);
}

static int tracked(int fd) {
    return fd >= 0 && fd < MAX_FD && __atomic_load_n(&S.fd_file[fd], __ATOMIC_ACQUIRE) >= 0;
}

/* ------------------------------------------------------------ the crash */

static void put(int fd, const unsigned char *p, size_t n, off_t off) {
    while (n) {
        ssize_t w = S.pwrite(fd, p, n, off);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
        off += w;
    }
}

/* Put every tracked file back as of its last sync, then replay what lands. */
static void apply_crash(void) {
    size_t n = S.n_recs, keep_k = n ? (size_t)(rnd() % (n + 1)) : 0;
    for (size_t i = n; i-- > 0;) {
        wrec *r = &S.recs[i];
        put(S.files[r->file].fd, r->old, r->old_len, r->off);
    }
    for (int f = 0; f < S.n_files; f++) S.ftruncate(S.files[f].fd, S.files[f].base_size);
    size_t undurable = 0;
    for (size_t i = 0; i < n; i++) {
        wrec *r = &S.recs[i];
        int fd = S.files[r->file].fd;
        if (r->durable) { put(fd, r->new, r->len, r->off); continue; }
        size_t idx = undurable++;
        switch (S.mode) {
        case M_DROP: break;
        case M_KEEP: put(fd, r->new, r->len, r->off); break;
        case M_PREFIX:
            if (idx < keep_k) put(fd, r->new, r->len, r->off);
            else if (idx == keep_k) {
                /* torn: whole sectors from the start of the write */
                size_t secs = (r->len + SECTOR - 1) / SECTOR, k = (size_t)(rnd() % (secs + 1));
                size_t len = k * SECTOR < r->len ? k * SECTOR : r->len;
                put(fd, r->new, len, r->off);
            }
            break;
        case M_SUBSET:
            if (rnd() & 1) put(fd, r->new, r->len, r->off);
            break;
        case M_SECTORS:
            for (size_t s = 0; s < r->len; s += SECTOR)
                if (rnd() & 1) put(fd, r->new + s, r->len - s < SECTOR ? r->len - s : SECTOR, r->off + (off_t)s);
            break;
        }
    }
}

/* The machine loses power at once: no other thread of the process may run
 * on while the crash is being applied to the files (LMDB's readers and its
 * applier map data.mdb; they would fault on a shortened file or trip an
 * assertion on a page being put back).  Every other thread is sent a signal
 * whose handler parks it for good, and the crash waits until all are
 * parked.  Raw syscalls only: a parked thread may hold malloc's lock. */
static volatile sig_atomic_t parked;

static void park(int sig) {
    (void)sig;
    __atomic_add_fetch(&parked, 1, __ATOMIC_SEQ_CST);
    for (;;) pause();
}

static void stop_other_threads(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = park;
    sigfillset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    pid_t pid = getpid(), self = (pid_t)syscall(SYS_gettid);
    int fd = S.open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC), sent = 0;
    if (fd < 0) return;
    char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
        for (long off = 0; off < n;) {
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof reclen);
            const char *name = buf + off + 19;
            pid_t tid = (pid_t)strtol(name, NULL, 10);
            if (tid > 0 && tid != self && syscall(SYS_tgkill, pid, tid, SIGUSR2) == 0) sent++;
            off += reclen;
        }
    S.close(fd);
    for (int i = 0; i < 2000 && __atomic_load_n(&parked, __ATOMIC_SEQ_CST) < sent; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void crash_now(void) {
    stop_other_threads();
    apply_crash();
    write_stats(1);
    _exit(CRASH_STATUS);
}

/* ------------------------------------------------------------ writes */

static void forget(int file) {
    size_t j = 0;
    for (size_t i = 0; i < S.n_recs; i++) {
        if (S.recs[i].file == file) { free(S.recs[i].old); free(S.recs[i].new); }
        else S.recs[j++] = S.recs[i];
    }
    S.n_recs = j;
    struct stat st;
    if (fstat(S.files[file].fd, &st) == 0) S.files[file].base_size = st.st_size;
}

/* Record a write about to happen at off; returns the record (not yet counted). */
static wrec *record(int fd, const unsigned char *data, size_t len, off_t off) {
    if (S.n_recs == S.cap_recs) {
        size_t cap = S.cap_recs ? 2 * S.cap_recs : 256;
        wrec *r = realloc(S.recs, cap * sizeof *r);
        if (!r) abort();
        S.recs = r;
        S.cap_recs = cap;
    }
    wrec *r = &S.recs[S.n_recs];
    r->file = S.fd_file[fd];
    r->durable = S.fd_dsync[fd];
    r->off = off;
    r->len = len;
    r->old = malloc(len ? len : 1);
    r->new = malloc(len ? len : 1);
    if (!r->old || !r->new) abort();
    memcpy(r->new, data, len);
    ssize_t got = S.pread(fd, r->old, len, off);
    r->old_len = got > 0 ? (size_t)got : 0;
    return r;
}

/* Decide the fate of one operation on a tracked fd: 0 go on, -1 fail with
 * EIO, >0 (writes only) write just that many bytes.  Called with mu held. */
static ssize_t decide(int is_write, size_t len) {
    uint64_t n = ++S.ops;
    if (is_write) S.writes++;
    else S.syncs++;
    if ((S.fail_at && (n == S.fail_at || (S.sticky && n > S.fail_at))) ||
        (S.fail_when && access(S.fail_when, F_OK) == 0)) {
        S.failed++;
        if (is_write && S.short_write && len >= 2 * SECTOR) return (ssize_t)(len / 2 / SECTOR * SECTOR);
        return -1;
    }
    return 0;
}

static ssize_t do_write(int fd, const unsigned char *buf, size_t len, off_t off, int positional) {
    pthread_mutex_lock(&S.mu);
    if (!positional) off = lseek(fd, 0, SEEK_CUR);
    if (S.crash_at && S.ops + 1 == S.crash_at) {
        S.ops++;
        record(fd, buf, len, off);
        S.recs[S.n_recs].durable = 0; /* in flight: not written yet */
        S.n_recs++;
        crash_now();
    }
    ssize_t fate = decide(1, len);
    if (fate < 0) {
        pthread_mutex_unlock(&S.mu);
        errno = EIO;
        return -1;
    }
    size_t n = fate > 0 ? (size_t)fate : len;
    wrec *r = record(fd, buf, n, off);
    ssize_t w = S.pwrite(fd, buf, n, off);
    if (w > 0) {
        r->len = (size_t)w;
        if (r->old_len > r->len) r->old_len = r->len;
        S.n_recs++;
        if (!positional) lseek(fd, off + w, SEEK_SET);
    } else {
        free(r->old);
        free(r->new);
    }
    pthread_mutex_unlock(&S.mu);
    return w;
}

static unsigned char *flatten(const struct iovec *iov, int cnt, size_t *len) {
    size_t n = 0;
    for (int i = 0; i < cnt; i++) n += iov[i].iov_len;
    unsigned char *b = malloc(n ? n : 1), *p = b;
    if (!b) abort();
    for (int i = 0; i < cnt; i++) { memcpy(p, iov[i].iov_base, iov[i].iov_len); p += iov[i].iov_len; }
    *len = n;
    return b;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    if (!tracked(fd)) return S.pwrite(fd, buf, n, off);
    return do_write(fd, buf, n, off, 1);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t write(int fd, const void *buf, size_t n) {
    if (!tracked(fd)) return S.write(fd, buf, n);
    return do_write(fd, buf, n, 0, 0);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    if (!tracked(fd)) return S.writev(fd, iov, cnt);
    size_t n;
    unsigned char *b = flatten(iov, cnt, &n);
    ssize_t w = do_write(fd, b, n, 0, 0);
    free(b);
    return w;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    if (!tracked(fd)) return S.pwritev(fd, iov, cnt, off);
    size_t n;
    unsigned char *b = flatten(iov, cnt, &n);
    ssize_t w = do_write(fd, b, n, off, 1);
    free(b);
    return w;
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) { return pwritev(fd, iov, cnt, off); }

/* ------------------------------------------------------------ syncs */

static int do_sync(int file, int (*real)(int), int fd) {
    pthread_mutex_lock(&S.mu);
    if (S.crash_at && S.ops + 1 == S.crash_at) {
        S.ops++;
        crash_now();
    }
    if (decide(0, 0) < 0) {
        /* fsyncgate: the kernel may mark the pages clean all the same; what
         * did not reach the disk stays in the undo list for a later crash */
        pthread_mutex_unlock(&S.mu);
        errno = EIO;
        return -1;
    }
    int rc = real && !S.fake_sync ? real(fd) : 0;
    if (rc == 0) forget(file);
    pthread_mutex_unlock(&S.mu);
    return rc;
}

int fdatasync(int fd) {
    if (!tracked(fd)) return S.fdatasync(fd);
    return do_sync(S.fd_file[fd], S.fdatasync, fd);
}

int fsync(int fd) {
    if (!tracked(fd)) return S.fsync(fd);
    return do_sync(S.fd_file[fd], S.fsync, fd);
}

/* msync of a mapping of a tracked file (LMDB with MDB_WRITEMAP): find the
 * mapping's inode in /proc/self/maps. */
int msync(void *addr, size_t len, int flags) {
    int file = -1;
    FILE *f = fopen("/proc/self/maps", "re");
    if (f) {
        char line[512];
        uintptr_t a = (uintptr_t)addr;
        while (fgets(line, sizeof line, f)) {
            uintptr_t lo, hi;
            unsigned long ino;
            if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %lu", &lo, &hi, &ino) == 3 && a >= lo && a < hi) {
                pthread_mutex_lock(&S.mu);
                for (int i = 0; i < S.n_files; i++)
                    if (S.files[i].ino == (ino_t)ino) file = i;
                pthread_mutex_unlock(&S.mu);
                break;
            }
        }
        fclose(f);
    }
    if (file < 0) return S.msync(addr, len, flags);
    int rc = S.msync(addr, len, flags);
    if (rc) return rc;
    return (flags & MS_SYNC) ? do_sync(file, NULL, -1) : 0;
}

/* ------------------------------------------------------------ open/close */

static int mode_arg(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

/* Under EVL_SHIM_FAKE_SYNC a tracked file is opened without O_DSYNC: the
 * shim remembers the flag and treats the fd's writes as durable itself. */
static int real_flags(const char *path, int flags) {
    if (S.fake_sync && matches(path, S.match)) flags &= ~(O_DSYNC | O_SYNC);
    return flags;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = S.open(path, real_flags(path, flags), mode);
    track(fd, path, flags);
    return fd;
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = (S.open64 ? S.open64 : S.open)(path, real_flags(path, flags), mode);
    track(fd, path, flags);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = S.openat(dirfd, path, real_flags(path, flags), mode);
    if ((path[0] == '/' || dirfd == AT_FDCWD)) track(fd, path, flags);
    return fd;
}

int close(int fd) {
    if (tracked(fd)) {
        pthread_mutex_lock(&S.mu);
        int f = S.fd_file[fd];
        __atomic_store_n(&S.fd_file[fd], (signed char)-1, __ATOMIC_RELEASE);
        if (S.files[f].fd == fd) {
            S.files[f].fd = -1;
            for (int i = 0; i < MAX_FD; i++)
                if (S.fd_file[i] == f) { S.files[f].fd = i; break; }
        }
        if (S.files[f].fd < 0) {
            /* the last descriptor: a file closed with unsynced writes keeps
             * them pending (close does not sync); a crash later must still
             * be able to undo them, so keep one descriptor open for that */
            int keep = S.n_recs ? dup(fd) : -1;
            if (keep >= 0) S.files[f].fd = keep;
            else { forget(f); S.files[f].dev = 0; S.files[f].ino = 0; }
        }
        pthread_mutex_unlock(&S.mu);
    }
    return S.close(fd);
}

__attribute__((destructor)) static void shim_fini(void) {
    pthread_mutex_lock(&S.mu);
    if (S.exit_drop) {
        S.mode = M_DROP;
        apply_crash();
    }
    write_stats(0);
    pthread_mutex_unlock(&S.mu);
}
