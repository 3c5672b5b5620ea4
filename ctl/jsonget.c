/* Minimal JSON reader for proxyctl; see jsonget.h. */
#include <stdlib.h>
#include <string.h>

#include "jsonget.h"

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* End of the string starting at p ('"'), or NULL. */
static const char *str_end(const char *p)
{
    for (p++; *p; p++) {
        if (*p == '\\') {
            if (!*++p)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* End of the value starting at p, or NULL. Depth-bounded. */
static const char *value_end(const char *p)
{
    int depth = 0;

    p = ws(p);
    if (*p == '"')
        return str_end(p);
    if (*p != '{' && *p != '[') {
        while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ')
            p++;
        return p;
    }
    for (; *p; p++) {
        if (*p == '"') {
            p = str_end(p);
            if (!p)
                return NULL;
            p--;
        } else if (*p == '{' || *p == '[') {
            if (++depth > 64)
                return NULL;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0)
                return p + 1;
        }
    }
    return NULL;
}

static char *unescape(const char *p, const char *end)
{
    char *out = malloc((size_t)(end - p) + 1), *o = out;

    if (!out)
        return NULL;
    for (p++, end--; p < end; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        switch (*++p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'u':
            if (end - p >= 5) {
                unsigned v = (unsigned)strtoul((char[]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
                *o++ = v < 0x80 ? (char)v : '?';
                p += 4;
            }
            break;
        default: *o++ = *p; break;
        }
    }
    *o = 0;
    return out;
}

/* Start of the value of top-level member key, or NULL. */
static const char *member(const char *json, const char *key)
{
    const char *p = ws(json);
    size_t klen = strlen(key);

    if (*p != '{')
        return NULL;
    p++;
    for (;;) {
        p = ws(p);
        if (*p != '"')
            return NULL;
        const char *ke = str_end(p);
        if (!ke)
            return NULL;
        bool match = (size_t)(ke - p) == klen + 2 && memcmp(p + 1, key, klen) == 0;
        p = ws(ke);
        if (*p != ':')
            return NULL;
        p = ws(p + 1);
        if (match)
            return p;
        p = value_end(p);
        if (!p)
            return NULL;
        p = ws(p);
        if (*p != ',')
            return NULL;
        p++;
    }
}

char *json_get_str(const char *json, const char *key)
{
    const char *v = member(json, key), *e;

    if (!v || *v != '"' || !(e = str_end(v)))
        return NULL;
    return unescape(v, e);
}

const char *json_get_strbuf(const char *json, const char *key)
{
    static char buf[256];
    char *s = json_get_str(json, key);

    buf[0] = 0;
    if (s) {
        strncpy(buf, s, sizeof(buf) - 1);
        buf[sizeof(buf) - 1] = 0;
        free(s);
    }
    return buf;
}

unsigned long long json_get_u64(const char *json, const char *key)
{
    const char *v = member(json, key);
    return v && *v >= '0' && *v <= '9' ? strtoull(v, NULL, 10) : 0;
}

bool json_get_bool(const char *json, const char *key)
{
    const char *v = member(json, key);
    return v && strncmp(v, "true", 4) == 0;
}

void json_iter_array(struct json_iter *it, const char *json, const char *key)
{
    const char *v = member(json, key);
    it->p = v && *v == '[' ? ws(v + 1) : NULL;
    if (it->p && *it->p == ']')
        it->p = NULL;
}

static const char *iter_take(struct json_iter *it, const char **end)
{
    const char *v = it->p, *e;

    if (!v || !(e = value_end(v))) {
        it->p = NULL;
        return NULL;
    }
    *end = e;
    e = ws(e);
    it->p = *e == ',' ? ws(e + 1) : NULL;
    return v;
}

char *json_iter_next_str(struct json_iter *it)
{
    const char *e, *v = iter_take(it, &e);
    return v && *v == '"' ? unescape(v, e) : NULL;
}

const char *json_iter_next_obj(struct json_iter *it, size_t *len)
{
    const char *e, *v = iter_take(it, &e);
    if (!v || *v != '{')
        return NULL;
    *len = (size_t)(e - v);
    return v;
}
