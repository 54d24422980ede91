/* The error table: evl_strerror() and evl_errname() come from the same
 * X-macro as the enum (include/evlog/evlog.h). */
#include <string.h>

#include "common/common_int.h"

#define MSG(sym, msg) msg,
static const char *const messages[] = {EVL_ERRORS(MSG)};
#undef MSG
#define NAME(sym, msg) "EVL_" #sym,
static const char *const names[] = {EVL_ERRORS(NAME)};
#undef NAME

const char *evl_strerror(int err) {
    if (err >= 0 && err < EVL__ELAST) return messages[err];
    if (err >= EVL_ESYS_BASE) return strerror(err - EVL_ESYS_BASE);
    return "unknown error";
}

const char *evl_errname(int err) {
    if (err >= 0 && err < EVL__ELAST) return names[err];
    if (err >= EVL_ESYS_BASE) return "EVL_ESYS";
    return "EVL_E?";
}
