/* Clocks and ISO-8601 time text.  Civil-date arithmetic (Howard Hinnant's
 * days_from_civil) instead of timegm/gmtime_r: no time-zone state, no locale,
 * and it works for any int64 ns value. */
#include <time.h>

#include "common/common_int.h"
#include "evlog/log.h"

int64_t evl__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t evl__mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

size_t evl_time_format(int64_t ns, int digits, char out[40]) {
    int64_t secs = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) { frac += 1000000000; secs -= 1; }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) { rem += 86400; days -= 1; }
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    int n = snprintf(out, 40, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)y, mo, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    if (digits == 3) n += snprintf(out + n, 40 - (size_t)n, ".%03d", (int)(frac / 1000000));
    else if (digits == 6) n += snprintf(out + n, 40 - (size_t)n, ".%06d", (int)(frac / 1000));
    else if (digits == 9) n += snprintf(out + n, 40 - (size_t)n, ".%09d", (int)frac);
    out[n++] = 'Z';
    out[n] = 0;
    return (size_t)n;
}

static int digits_at(const char *s, size_t len, size_t *i, int n, int *v) {
    *v = 0;
    for (int k = 0; k < n; k++, (*i)++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9') return -1;
        *v = *v * 10 + (s[*i] - '0');
    }
    return 0;
}

int evl_time_parse(const char *s, size_t len, int64_t *ns) {
    size_t i = 0;
    int y, mo, d, h = 0, mi = 0, se = 0;
    int64_t frac = 0;
    if (digits_at(s, len, &i, 4, &y) || i >= len || s[i++] != '-' ||
        digits_at(s, len, &i, 2, &mo) || i >= len || s[i++] != '-' ||
        digits_at(s, len, &i, 2, &d))
        return EVL_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return EVL_EINVAL;
    int64_t offset = 0;
    if (i < len) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return EVL_EINVAL;
        i++;
        if (digits_at(s, len, &i, 2, &h) || i >= len || s[i++] != ':' ||
            digits_at(s, len, &i, 2, &mi))
            return EVL_EINVAL;
        if (i < len && s[i] == ':') {
            i++;
            if (digits_at(s, len, &i, 2, &se)) return EVL_EINVAL;
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                i++;
                int nd = 0;
                int64_t scale = 100000000;
                while (i < len && s[i] >= '0' && s[i] <= '9') {
                    if (nd < 9) frac += (s[i] - '0') * scale;
                    scale /= 10;
                    nd++;
                    i++;
                }
                if (nd == 0) return EVL_EINVAL;
            }
        }
        if (h > 23 || mi > 59 || se > 60) return EVL_EINVAL;
        if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < len && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i++] == '-' ? -1 : 1, oh, om = 0;
            if (digits_at(s, len, &i, 2, &oh)) return EVL_EINVAL;
            if (i < len && s[i] == ':') i++;
            if (i < len && digits_at(s, len, &i, 2, &om)) return EVL_EINVAL;
            offset = sign * ((int64_t)oh * 3600 + om * 60);
        } else {
            return EVL_EINVAL; /* a time without a zone is ambiguous: refuse it */
        }
    }
    if (i != len) return EVL_EINVAL;
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
                   mi * 60 + se - offset;
    /* int64 ns spans 1677-09-21 .. 2262-04-11: a valid date outside it
     * (year 0039, 9999) is refused, not wrapped (found by fuzz/fuzz_http) */
    int64_t v;
    if (__builtin_mul_overflow(secs, (int64_t)1000000000, &v) || __builtin_add_overflow(v, frac, &v))
        return EVL_EINVAL;
    *ns = v;
    return EVL_OK;
}
