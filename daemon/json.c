/* JSON text builder; see json.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void jb_init(struct jbuf *jb)
{
    memset(jb, 0, sizeof(*jb));
}

char *jb_take(struct jbuf *jb)
{
    char *s = jb->s;

    if (jb->failed) {
        jb_free(jb);
        return NULL;
    }
    memset(jb, 0, sizeof(*jb));
    return s;
}

void jb_free(struct jbuf *jb)
{
    free(jb->s);
    memset(jb, 0, sizeof(*jb));
}

void jb_raw(struct jbuf *jb, const char *s, size_t n)
{
    if (jb->failed)
        return;
    if (jb->len + n + 1 > jb->cap) {
        size_t cap = jb->cap ? jb->cap : 256;
        while (cap < jb->len + n + 1)
            cap *= 2;
        char *p = realloc(jb->s, cap);
        if (!p) {
            jb->failed = true;
            return;
        }
        jb->s = p;
        jb->cap = cap;
    }
    memcpy(jb->s + jb->len, s, n);
    jb->len += n;
    jb->s[jb->len] = 0;
}

static void sep(struct jbuf *jb)
{
    if (jb->need_comma)
        jb_raw(jb, ",", 1);
    jb->need_comma = true;
}

void jb_obj_open(struct jbuf *jb)
{
    sep(jb);
    jb_raw(jb, "{", 1);
    jb->need_comma = false;
}

void jb_obj_close(struct jbuf *jb)
{
    jb_raw(jb, "}", 1);
    jb->need_comma = true;
}

void jb_arr_open(struct jbuf *jb)
{
    sep(jb);
    jb_raw(jb, "[", 1);
    jb->need_comma = false;
}

void jb_arr_close(struct jbuf *jb)
{
    jb_raw(jb, "]", 1);
    jb->need_comma = true;
}

/* Length of a valid UTF-8 sequence at p (at most n bytes), 0 if invalid: overlong
 * forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Escape for a JSON string: quotes, backslashes and control characters escaped;
 * bytes that are not valid UTF-8 (a hostile header, say) become U+FFFD, so every
 * line stays valid JSON. */
void json_escape(struct jbuf *jb, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, i = 0;

    while (i < n) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char tmp[8];
        size_t skip = 1;

        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            esc = tmp;
        } else if (c >= 0x80) {
            size_t l = utf8_len(u + i, n - i);
            if (l) {
                i += l;
                continue;
            }
            esc = "\\ufffd";
        } else {
            i++;
            continue;
        }
        jb_raw(jb, s + start, i - start);
        jb_raw(jb, esc, strlen(esc));
        i += skip;
        start = i;
    }
    jb_raw(jb, s + start, n - start);
}

void jb_key(struct jbuf *jb, const char *key)
{
    sep(jb);
    jb_raw(jb, "\"", 1);
    json_escape(jb, key, strlen(key));
    jb_raw(jb, "\":", 2);
    jb->need_comma = false;
}

void jb_strn(struct jbuf *jb, const char *s, size_t n)
{
    sep(jb);
    jb_raw(jb, "\"", 1);
    json_escape(jb, s, n);
    jb_raw(jb, "\"", 1);
}

void jb_str(struct jbuf *jb, const char *s)
{
    if (!s) {
        sep(jb);
        jb_raw(jb, "null", 4);
        return;
    }
    jb_strn(jb, s, strlen(s));
}

void jb_u64(struct jbuf *jb, uint64_t v)
{
    char b[24];
    sep(jb);
    jb_raw(jb, b, (size_t)snprintf(b, sizeof(b), "%" PRIu64, v));
}

void jb_i64(struct jbuf *jb, int64_t v)
{
    char b[24];
    sep(jb);
    jb_raw(jb, b, (size_t)snprintf(b, sizeof(b), "%" PRId64, v));
}

void jb_bool(struct jbuf *jb, bool v)
{
    sep(jb);
    jb_raw(jb, v ? "true" : "false", v ? 4 : 5);
}

void jb_double(struct jbuf *jb, double v)
{
    char b[32];
    sep(jb);
    jb_raw(jb, b, (size_t)snprintf(b, sizeof(b), "%.6g", v));
}

void jb_kstr(struct jbuf *jb, const char *key, const char *s)
{
    jb_key(jb, key);
    jb_str(jb, s);
}

void jb_ku64(struct jbuf *jb, const char *key, uint64_t v)
{
    jb_key(jb, key);
    jb_u64(jb, v);
}

void jb_kbool(struct jbuf *jb, const char *key, bool v)
{
    jb_key(jb, key);
    jb_bool(jb, v);
}
