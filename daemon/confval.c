/* Scalar value grammars: strings, booleans, numbers, humanize durations and sizes. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "confval.h"

int conf_scalar(struct conf_ctx *cx, const struct cnode *n, const char **out)
{
    if (!n || n->type != CN_SCALAR)
        return conf_fail(cx, n, "expected a scalar, got a %s", cnode_type_name(n));
    *out = n->str;
    return 0;
}

static bool has_bounds(const struct conf_key *k)
{
    return k && k->min < k->max;
}

int cp_ignore(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    return 0;
}

int cp_str(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (!(*(char **)slot = arena_strndup(cx->arena, s, n->len)))
        return conf_fail(cx, n, "out of memory");
    return 0;
}

int cp_ascii(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    if (cp_str(cx, n, slot, k) < 0)
        return -1;
    for (const char *p = *(char **)slot; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return conf_fail(cx, n, "only printable ASCII characters are allowed");
    return 0;
}

/* OpenTSDB metric name rule: [A-Za-z0-9-_./] and non-ASCII (Unicode letters). */
int cp_node_name(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    if (cp_str(cx, n, slot, k) < 0)
        return -1;
    const char *s = *(char **)slot;
    if (!*s)
        return conf_fail(cx, n, "empty name");
    if (n->len > 255)
        return conf_fail(cx, n, "name longer than 255 bytes");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.' || c == '/' || c >= 0x80))
            return conf_fail(cx, n, "invalid character '%c' in name (allowed: A-Z a-z 0-9 - _ . /)",
                             c);
    }
    return 0;
}

int cp_path(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    char *p = conf_path(cx, n);

    if (!p)
        return -1;
    *(char **)slot = arena_strndup(cx->arena, p, strlen(p));
    free(p);
    return *(char **)slot ? 0 : conf_fail(cx, n, "out of memory");
}

int conf_parse_bool(const struct cnode *n, bool *b)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    if (!n || n->type != CN_SCALAR || n->quoted)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (str_ieq(n->str, yes[i])) {
            *b = true;
            return 0;
        }
        if (str_ieq(n->str, no[i])) {
            *b = false;
            return 0;
        }
    }
    return -1;
}

int cp_bool(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    if (conf_parse_bool(n, slot) < 0)
        return conf_fail(cx, n, "expected a boolean (true or false)");
    return 0;
}

int conf_parse_i64(const char *s, int64_t *v)
{
    char *end;

    if (!*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    long long x = strtoll(s, &end, 0);
    if (errno || *end || (s[0] == '0' && s[1] && s[1] != 'x' && s[1] != 'X'))
        return -1;
    *v = x;
    return 0;
}

static int parse_int_bounded(struct conf_ctx *cx, const struct cnode *n, const struct conf_key *k,
                             int64_t lo, int64_t hi, int64_t *out)
{
    const char *s = NULL;
    int64_t v;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_i64(s, &v) < 0)
        return conf_fail(cx, n, "expected an integer, got '%s'", s);
    if (has_bounds(k)) {
        lo = MAX(lo, k->min);
        hi = MIN(hi, k->max);
    }
    if (v < lo || v > hi)
        return conf_fail(cx, n, "%lld is out of range [%lld, %lld]", (long long)v, (long long)lo,
                         (long long)hi);
    *out = v;
    return 0;
}

int cp_int(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    int64_t v;

    if (parse_int_bounded(cx, n, k, INT32_MIN, INT32_MAX, &v) < 0)
        return -1;
    *(int *)slot = (int)v;
    return 0;
}

int cp_u32(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    int64_t v;

    if (parse_int_bounded(cx, n, k, 0, UINT32_MAX, &v) < 0)
        return -1;
    *(uint32_t *)slot = (uint32_t)v;
    return 0;
}

int cp_u64(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    int64_t v;

    if (parse_int_bounded(cx, n, k, 0, INT64_MAX, &v) < 0)
        return -1;
    *(uint64_t *)slot = (uint64_t)v;
    return 0;
}

int cp_double(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;
    char *end;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    errno = 0;
    double d = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(d))
        return conf_fail(cx, n, "expected a number, got '%s'", s);
    if (has_bounds(k) && (d < (double)k->min || d > (double)k->max))
        return conf_fail(cx, n, "%g is out of range [%lld, %lld]", d, (long long)k->min,
                         (long long)k->max);
    *(double *)slot = d;
    return 0;
}

/* Humanize duration: a number is seconds (int or float); a string is one or more
 * "<int><unit>" parts (units d h m s ms us ns, spaces allowed between parts), or a
 * bare number of seconds. */
int conf_parse_duration(const char *s, uint64_t *ns)
{
    static const struct {
        const char *u;
        uint64_t mul;
    } units[] = {
        {"ns", 1},           {"us", 1000},         {"ms", NS_PER_MS},
        {"s", NS_PER_SEC},   {"m", 60 * NS_PER_SEC}, {"min", 60 * NS_PER_SEC},
        {"h", 3600 * NS_PER_SEC},
        {"d", 86400 * NS_PER_SEC},
    };
    const char *p = s;
    uint64_t total = 0;
    char *end;

    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return -1;
    /* plain number of seconds, maybe fractional */
    errno = 0;
    double d = strtod(p, &end);
    if (end != p && !errno) {
        const char *q = end;
        while (isspace((unsigned char)*q))
            q++;
        if (!*q) {
            if (!isfinite(d) || d < 0 || d > 1e10)
                return -1;
            *ns = (uint64_t)(d * 1e9 + 0.5); /* d >= 0; no libm needed */
            return 0;
        }
    }
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return -1;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno)
            return -1;
        p = end;
        while (*p == ' ')
            p++;
        size_t ul = 0;
        while (isalpha((unsigned char)p[ul]))
            ul++;
        uint64_t mul = 0;
        for (size_t i = 0; i < ARRAY_SIZE(units); i++)
            if (str_ieqn(p, ul, units[i].u))
                mul = units[i].mul;
        if (!mul)
            return -1;
        if (v > UINT64_MAX / mul || total + v * mul < total)
            return -1;
        total += v * mul;
        p += ul;
        while (isspace((unsigned char)*p))
            p++;
    }
    *ns = total;
    return 0;
}

int cp_duration(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;
    uint64_t ns;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_duration(s, &ns) < 0)
        return conf_fail(cx, n, "invalid duration '%s' (e.g. 30, 1.5, \"500ms\", \"1h 30m\")", s);
    /* key bounds for durations are in milliseconds */
    if (has_bounds(k) && (ns < (uint64_t)k->min * NS_PER_MS || ns > (uint64_t)k->max * NS_PER_MS))
        return conf_fail(cx, n, "duration '%s' is out of range [%lldms, %lldms]", s,
                         (long long)k->min, (long long)k->max);
    *(uint64_t *)slot = ns;
    return 0;
}

/* Humanize size: integer bytes or "<int>[ ]<unit>"; k/kb = 1000, ki/kib = 1024, ... */
int conf_parse_size(const char *s, uint64_t *bytes)
{
    static const char pfx[] = "kmgtpe";
    const char *p = s;
    char *end;

    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno)
        return -1;
    p = end;
    while (isspace((unsigned char)*p))
        p++;
    uint64_t mul = 1;
    if (*p) {
        const char *c = strchr(pfx, tolower((unsigned char)*p));
        if (*p == 'b' || *p == 'B') {
            p++;
        } else if (c) {
            bool bin = tolower((unsigned char)p[1]) == 'i';
            uint64_t base = bin ? 1024 : 1000;
            for (long i = 0; i <= c - pfx; i++)
                mul *= base;
            p += bin ? 2 : 1;
            if (*p == 'b' || *p == 'B')
                p++;
        } else {
            return -1;
        }
        while (isspace((unsigned char)*p))
            p++;
        if (*p)
            return -1;
    }
    if (v && mul > UINT64_MAX / v)
        return -1;
    *bytes = v * mul;
    return 0;
}

int cp_size(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;
    uint64_t v;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_size(s, &v) < 0)
        return conf_fail(cx, n, "invalid size '%s' (e.g. 4096, \"64KiB\", \"10M\")", s);
    if (has_bounds(k) && (v < (uint64_t)k->min || v > (uint64_t)k->max))
        return conf_fail(cx, n, "size %s is out of range [%lld, %lld]", s, (long long)k->min,
                         (long long)k->max);
    *(uint64_t *)slot = v;
    return 0;
}

int cp_size32(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    uint64_t v;

    if (cp_size(cx, n, &v, k) < 0)
        return -1;
    if (v > UINT32_MAX)
        return conf_fail(cx, n, "size is too large (max %u)", UINT32_MAX);
    *(uint32_t *)slot = (uint32_t)v;
    return 0;
}

/* Random ratio: float 0..1, "n/d", "n%", boolean, 0/1. */
int cp_ratio(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;
    char *end;
    double v;
    bool b;

    if (conf_parse_bool(n, &b) == 0) {
        *(double *)slot = b ? 1.0 : 0.0;
        return 0;
    }
    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    v = strtod(s, &end);
    if (end != s && *end == '%' && !end[1]) {
        v /= 100;
    } else if (end != s && *end == '/') {
        const char *d = end + 1;
        double den = strtod(d, &end);
        if (end == d || *end || den <= 0)
            return conf_fail(cx, n, "invalid ratio '%s'", s);
        v /= den;
    } else if (end == s || *end) {
        return conf_fail(cx, n, "invalid ratio '%s' (e.g. 0.5, \"1/3\", \"20%%\")", s);
    }
    if (!(v >= 0 && v <= 1))
        return conf_fail(cx, n, "ratio '%s' is not between 0 and 1", s);
    *(double *)slot = v;
    return 0;
}
