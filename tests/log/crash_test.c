/* Crash safety in sync full: a child appends from several threads and
 * reports each acknowledged event id on a pipe; the parent SIGKILLs it at a
 * random moment (after a random number of acks), reopens the log, and checks
 * that every acknowledged event is present exactly once, that positions and
 * revisions have no gaps (verify), and that appending goes on. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "util.h"

#define THREADS 4
#define ROUNDS 8

typedef struct child_arg {
    evl_log *log;
    int fd;
    uint32_t round, thread;
} child_arg;

static void make_id(uint8_t id[16], uint32_t round, uint32_t thread, uint64_t n) {
    memset(id, 0, 16);
    memcpy(id, &round, 4);
    memcpy(id + 4, &thread, 4);
    memcpy(id + 8, &n, 8);
}

static void *child_thread(void *p) {
    child_arg *a = p;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint64_t n = 0;; n += 2) {
        uint8_t id[2][16];
        char stream[32];
        snprintf(stream, sizeof stream, "crash-%u", (unsigned)(n / 2 % 13));
        make_id(id[0], a->round, a->thread, n);
        make_id(id[1], a->round, a->thread, n + 1);
        pack_data(&sb, (int64_t)n, "crash test payload");
        evl_event_in e[2] = {{.type = "Crashed", .id = id[0], .data = sb.data, .data_len = sb.size},
                             {.type = "Crashed", .id = id[1], .data = sb.data, .data_len = sb.size}};
        evl_stream_in s = {.stream = stream, .expected = EVL_REV_ANY, .events = e, .n_events = (n / 2) % 2 + 1};
        evl_append_result res;
        if (evl_log_append(a->log, &s, 1, &res) != EVL_OK) _exit(3);
        evl_free(res.acks);
        for (size_t k = 0; k < s.n_events; k++)
            if (write(a->fd, id[k], 16) != 16) _exit(4);
    }
    return NULL;
}

static void run_child(const char *dir, int fd, uint32_t round) {
    evl_log *log;
    if (evl_log_open(dir, NULL, &log)) _exit(2);
    pthread_t t[THREADS];
    child_arg a[THREADS];
    for (uint32_t i = 0; i < THREADS; i++) {
        a[i] = (child_arg){log, fd, round, i};
        pthread_create(&t[i], NULL, child_thread, &a[i]);
    }
    for (;;) pause();
}

static int cmp16(const void *a, const void *b) { return memcmp(a, b, 16); }

int main(void) {
    const char *dir = test_path("data");
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    uint8_t (*acked)[16] = NULL;
    size_t n_acked = 0, cap = 0;
    for (uint32_t round = 0; round < ROUNDS; round++) {
        int p[2];
        CHECK(pipe(p) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            run_child(dir, p[1], round);
        }
        close(p[1]);
        size_t kill_after = 50 + (size_t)(rand() % 3000), got = 0;
        int killed = 0;
        uint8_t buf[16 * 64];
        size_t have = 0;
        for (;;) {
            ssize_t r = read(p[0], buf + have, sizeof buf - have);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break; /* the child is dead and the pipe drained */
            have += (size_t)r;
            size_t whole = have / 16 * 16;
            for (size_t off = 0; off < whole; off += 16) {
                if (n_acked == cap) {
                    cap = cap ? cap * 2 : 4096;
                    acked = realloc(acked, cap * 16);
                }
                memcpy(acked[n_acked++], buf + off, 16);
                got++;
            }
            memmove(buf, buf + whole, have - whole);
            have -= whole;
            if (!killed && got >= kill_after) {
                kill(pid, SIGKILL);
                killed = 1;
            }
        }
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        close(p[0]);

        /* reopen: every acked id present exactly once, and verify passes */
        evl_log *log;
        OK(evl_log_open(dir, NULL, &log));
        uint64_t head = evl_log_head(log);
        uint8_t (*ids)[16] = malloc((head ? head : 1) * 16);
        evl_iter *it;
        evl_event ev;
        size_t n = 0;
        OK(evl_iter_open(log, &(evl_query){0}, &it));
        int rc;
        while ((rc = evl_iter_next(it, &ev)) == EVL_OK) memcpy(ids[n++], ev.id, 16);
        CHECK_RC(rc, EVL_END);
        evl_iter_close(it);
        CHECK(n == head);
        qsort(ids, n, 16, cmp16);
        size_t dups = 0, lost = 0;
        for (size_t i = 1; i < n; i++) dups += memcmp(ids[i - 1], ids[i], 16) == 0;
        for (size_t i = 0; i < n_acked; i++) lost += bsearch(acked[i], ids, n, 16, cmp16) == NULL;
        printf("round %u: killed after %zu acks; log has %llu events, %zu acknowledged in all, "
               "lost %zu, duplicated %zu\n", round, got, (unsigned long long)head, n_acked, lost, dups);
        CHECK(lost == 0 && dups == 0);
        CHECK(n >= n_acked);
        verify_ok(log, head);
        free(ids);
        evl_log_close(log);
    }
    free(acked);
    TEST_PASS();
}
