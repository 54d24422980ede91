/* evl-tamper DIR POS OFFSET [--keep-crc] [--rechain]: XOR one byte of the
 * record at POS with 1, in place, the log closed (OFFSET from the record's
 * start, or negative: back from its crc trailer, -1 the last data byte).
 * The CRC is recomputed unless --keep-crc, so that only the hash chain can
 * tell; --rechain recomputes every later chain value too (a full rewrite).
 * For the tamper-evidence recipes in docs/audit.md; not installed. */
#include <inttypes.h>

#include "tamper.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: evl-tamper DIR POS OFFSET [--keep-crc] [--rechain]\n");
        return 2;
    }
    uint64_t pos = strtoull(argv[2], NULL, 10);
    long off = strtol(argv[3], NULL, 10);
    int fix = 1, rechain = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--keep-crc")) fix = 0;
        else if (!strcmp(argv[i], "--rechain")) rechain = 1;
        else { fprintf(stderr, "evl-tamper: unknown flag %s\n", argv[i]); return 2; }
    }
    int rc = tamper_records(argv[1], pos, pos, tamper_flip, &off, fix, rechain);
    if (rc) {
        fprintf(stderr, "evl-tamper: %s\n", mdb_strerror(rc));
        return 1;
    }
    return 0;
}
