/* The web console's files, embedded at build time (cmake/EmbedConsole.cmake
 * turns the files of server/console/ into a generated C file). */
#ifndef EVL_SERVER_CONSOLE_ASSETS_H
#define EVL_SERVER_CONSOLE_ASSETS_H

#include <stddef.h>

typedef struct srv_asset {
    const char *name;          /* file name, e.g. "console.js" */
    const char *ctype;         /* Content-Type */
    const char *etag;          /* quoted, for ETag / If-None-Match */
    const unsigned char *data; /* len bytes (and a NUL after them) */
    size_t len;
} srv_asset;

/* The embedded files (static storage, never freed); *n gets their count. */
const srv_asset *evl__srv_console_assets(size_t *n);

#endif
