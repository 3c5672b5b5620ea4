/* Minimal TAP producer for unit tests: each check prints "ok N - name" or
 * "not ok N - name" (with a diagnostic); done_testing() prints the plan and returns
 * the exit status. tests/run counts the lines. */
#ifndef PROXYD_TAP_H
#define PROXYD_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                                     \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (!tap_ok(g_ == w_, __FILE__, __LINE__, __VA_ARGS__))                                     \
            printf("#   got: %lld\n#   expected: %lld\n", g_, w_);                                 \
    } while (0)
#define is_u64(got, want, ...)                                                                     \
    do {                                                                                           \
        uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);                                      \
        if (!tap_ok(g_ == w_, __FILE__, __LINE__, __VA_ARGS__))                                     \
            printf("#   got: %" PRIu64 "\n#   expected: %" PRIu64 "\n", g_, w_);                   \
    } while (0)
#define is_str(got, want, ...)                                                                     \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (!tap_ok(g_ && w_ ? strcmp(g_, w_) == 0 : g_ == w_, __FILE__, __LINE__, __VA_ARGS__))   \
            printf("#   got: '%s'\n#   expected: '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
    } while (0)
/* got contains want as a substring */
#define like(got, want, ...)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (!tap_ok(g_ && strstr(g_, w_), __FILE__, __LINE__, __VA_ARGS__))                         \
            printf("#   got: '%s'\n#   expected to contain: '%s'\n", g_ ? g_ : "(null)", w_);      \
    } while (0)

__attribute__((format(printf, 4, 5))) static inline int tap_ok(int pass, const char *file,
                                                               int line, const char *fmt, ...)
{
    va_list ap;

    printf("%sok %d - ", pass ? "" : "not ", ++tap_n);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!pass) {
        tap_failed++;
        printf("#   Failed test at %s line %d.\n", file, line);
    }
    fflush(stdout);
    return pass;
}

static inline int done_testing(void)
{
    printf("1..%d\n", tap_n);
    if (tap_failed)
        printf("# Looks like you failed %d test%s of %d.\n", tap_failed, tap_failed > 1 ? "s" : "",
               tap_n);
    return tap_failed ? 1 : 0;
}

#endif
