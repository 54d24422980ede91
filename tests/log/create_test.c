/* A log is created in DATA/log.new and renamed into place once its meta
 * pages are synced (log.c, create_log): LMDB refuses an environment whose
 * meta page was torn by a power cut during creation.  What a creation cut
 * short leaves behind must not stop the next open. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static void write_junk(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    char junk[8192];
    memset(junk, 0, sizeof junk); /* a meta page that never reached the disk */
    CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close(fd);
}

static void open_append_verify(const char *dir) {
    evl_log *log;
    evl_log_options opt;
    evl_log_options_init(&opt);
    OK(evl_log_open(dir, &opt, &log));
    OK(append1(log, "created-1", EVL_REV_ANY, "Created", "\x80", 1, NULL, NULL, NULL));
    verify_ok(log, 1);
    evl_log_close(log);
    struct stat st;
    char p[600];
    snprintf(p, sizeof p, "%s/log.new", dir);
    CHECK(stat(p, &st) != 0); /* renamed into place, nothing left beside it */
    snprintf(p, sizeof p, "%s/log/data.mdb", dir);
    CHECK(stat(p, &st) == 0);
}

int main(void) {
    char p[600];
    /* a fresh directory */
    open_append_verify(test_path("fresh"));

    /* cut short before the rename: log.new holds a torn environment */
    const char *a = test_path("torn-new");
    CHECK(mkdir(a, 0755) == 0);
    snprintf(p, sizeof p, "%s/log.new", a);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/log.new/data.mdb", a);
    write_junk(p);
    open_append_verify(a);

    /* an older layout cut short: log/ with a lock file and no data.mdb */
    const char *b = test_path("no-data");
    CHECK(mkdir(b, 0755) == 0);
    snprintf(p, sizeof p, "%s/log", b);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/log/lock.mdb", b);
    write_junk(p);
    open_append_verify(b);

    /* and a log that exists is opened, never re-created */
    evl_log *log;
    evl_log_options opt;
    evl_log_options_init(&opt);
    OK(evl_log_open(a, &opt, &log));
    CHECK(evl_log_head(log) == 1);
    evl_log_close(log);
    return 0;
}
