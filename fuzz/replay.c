/* Run a fuzz target's inputs without libFuzzer: every file of the
 * directories (or files) given, once each.  Linked with each fuzz_*.c in
 * every build with tests, so ctest replays the seed corpus and every input
 * that once crashed (fuzz/regressions/<target>/) under the sanitizers of
 * that build, with gcc or clang, no fuzzing engine needed. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    if (!b) return -1;
    /* an exact-size copy, so ASan sees a read one past the input */
    uint8_t *in = malloc(n ? n : 1);
    memcpy(in, b, n);
    free(b);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) continue; /* a target without regressions yet */
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i])) return 1;
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
            if (run_file(p)) return 1;
            files++;
        }
        if (d) closedir(d);
    }
    printf("%d inputs replayed\n", files);
    return files ? 0 : 1;
}
