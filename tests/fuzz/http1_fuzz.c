/* libFuzzer target for daemon/http1.c: the request and response head parsers (several
 * header limits, one-shot and resumed after a split), the target parsers and the
 * chunked scanner (whole, split in two, and in data-range mode). Beyond memory safety
 * it checks the contracts: results and pointers stay inside the input, and feeding the
 * same bytes in two pieces gives the same answer as feeding them at once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static void check_head(int rc, const struct http1_head *h, const struct http1_hdr *hdrs,
                       size_t max_hdrs, const char *buf, size_t len, bool req)
{
    size_t i;

    CHECK(rc >= HTTP1_E_MIN);
    if (rc <= 0)
        return;
    CHECK((size_t)rc <= len && h->head_len == (size_t)rc);
    CHECK(h->nhdrs <= max_hdrs && h->hdrs == hdrs);
    CHECK(h->version_minor <= 1);
    for (i = 0; i < h->nhdrs; i++) {
        CHECK(hdrs[i].nlen > 0 && inside(hdrs[i].name, hdrs[i].nlen, buf, (size_t)rc));
        CHECK(inside(hdrs[i].val, hdrs[i].vlen, buf, (size_t)rc));
    }
    if (req) {
        CHECK(h->method_len > 0 && inside(h->method_str, h->method_len, buf, (size_t)rc));
        CHECK(h->target_len > 0 && inside(h->target, h->target_len, buf, (size_t)rc));
        CHECK(!h->host || inside(h->host, h->host_len, buf, (size_t)rc));
        CHECK(h->body == HTTP1_BODY_NONE || h->body == HTTP1_BODY_LENGTH ||
              h->body == HTTP1_BODY_CHUNKED);
    } else {
        CHECK(h->status >= 100 && h->status <= 999);
        CHECK(inside(h->reason, h->reason_len, buf, (size_t)rc));
    }
    CHECK(!(h->body == HTTP1_BODY_CHUNKED && (h->flags & HTTP1_F_HAS_CL)));
}

static int parse(bool req, struct http1_scan *s, const char *buf, size_t len, enum http1_method m,
                 struct http1_head *h, struct http1_hdr *hdrs, size_t max)
{
    return req ? http1_parse_request(s, buf, len, h, hdrs, max)
               : http1_parse_response(s, buf, len, m, h, hdrs, max);
}

/* One-shot, then resumed after `cut` bytes: the answers must agree. */
static void fuzz_head(bool req, const char *buf, size_t len, size_t cut, size_t max_head,
                      enum http1_method m)
{
    static const size_t limits[] = {0, 1, 8, 100};
    struct http1_hdr hdrs[100];
    struct http1_head h;
    struct http1_scan s;
    size_t i;
    int whole, part, rc;
    char *pre;

    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        http1_scan_init(&s, max_head);
        whole = parse(req, &s, buf, len, m, &h, hdrs, limits[i]);
        check_head(whole, &h, hdrs, limits[i], buf, len, req);
        /* The same state called again answers the same (errors are sticky). */
        rc = parse(req, &s, buf, len, m, &h, hdrs, limits[i]);
        CHECK(rc == whole);
    }

    pre = malloc(cut ? cut : 1);
    if (!pre)
        return;
    memcpy(pre, buf, cut);
    http1_scan_init(&s, max_head);
    part = parse(req, &s, pre, cut, m, &h, hdrs, 8);
    check_head(part, &h, hdrs, 8, pre, cut, req);
    free(pre);
    http1_scan_init(&s, max_head);
    whole = parse(req, &s, buf, len, m, &h, hdrs, 8);
    if (part != 0) {
        /* An answer on a prefix is final: the full input gives the same one. */
        CHECK(part == whole);
    } else {
        struct http1_scan s2;

        http1_scan_init(&s2, max_head);
        pre = malloc(cut ? cut : 1);
        if (!pre)
            return;
        memcpy(pre, buf, cut);
        CHECK(parse(req, &s2, pre, cut, m, &h, hdrs, 8) == 0);
        free(pre);
        rc = parse(req, &s2, buf, len, m, &h, hdrs, 8);
        CHECK(rc == whole);
        check_head(rc, &h, hdrs, 8, buf, len, req);
    }
}

static void fuzz_targets(const char *buf, size_t len)
{
    struct http1_url u;
    struct http1_hostport hp;

    if (http1_parse_absolute_url(buf, len, &u) == 0) {
        CHECK(inside(u.scheme_str, u.scheme_len, buf, len));
        CHECK(!u.has_userinfo || inside(u.userinfo, u.userinfo_len, buf, len));
        CHECK(inside(u.host.name, u.host.len, buf, len) && u.host.len > 0);
        CHECK(u.path_len > 0);
        CHECK((u.path_len == 1 && u.path[0] == '/') || inside(u.path, u.path_len, buf, len));
        CHECK(!u.host.has_port || u.host.port > 0);
    }
    if (http1_parse_authority(buf, len, &hp) == 0) {
        CHECK(inside(hp.name, hp.len, buf, len) && hp.len > 0 && hp.has_port && hp.port > 0);
    }
    if (http1_parse_host(buf, len, &hp) == 0)
        CHECK(inside(hp.name, hp.len, buf, len) && hp.len > 0);
}

static void fuzz_chunked(const char *buf, size_t len, size_t cut, uint32_t line_max,
                         uint32_t tr_max)
{
    struct http1_chunked c;
    size_t cons, c1, c2 = 0, off, doff, dlen;
    uint64_t data = 0;
    int whole, rc;

    http1_chunked_init(&c, line_max, tr_max);
    whole = http1_chunked_scan(&c, buf, len, &cons);
    CHECK(cons <= len);
    CHECK(whole == HTTP1_CHUNK_AGAIN || whole == HTTP1_CHUNK_DONE ||
          (whole < 0 && whole >= HTTP1_E_MIN));
    CHECK(whole != HTTP1_CHUNK_AGAIN || cons == len);
    CHECK(c.data_total <= cons);

    /* Split in two. */
    http1_chunked_init(&c, line_max, tr_max);
    rc = http1_chunked_scan(&c, buf, cut, &c1);
    CHECK(c1 <= cut);
    if (rc == HTTP1_CHUNK_AGAIN) {
        CHECK(c1 == cut);
        rc = http1_chunked_scan(&c, buf + cut, len - cut, &c2);
        CHECK(c2 <= len - cut);
    }
    CHECK(rc == whole && c1 + c2 == cons);

    /* Data-range mode: ranges inside the input, adding up to the data seen. */
    http1_chunked_init(&c, line_max, tr_max);
    off = 0;
    while ((rc = http1_chunked_next(&c, buf + off, len - off, &c1, &doff, &dlen)) ==
           HTTP1_CHUNK_DATA) {
        CHECK(dlen > 0 && doff + dlen == c1 && c1 <= len - off);
        data += dlen;
        off += c1;
    }
    off += c1;
    CHECK(rc == whole && off == cons && data == c.data_total);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t cut = 0, max_head = 0;
    uint32_t line_max = 0, tr_max = 0;
    unsigned sel = 0;
    static const enum http1_method methods[] = {HTTP1_M_GET, HTTP1_M_HEAD, HTTP1_M_CONNECT,
                                                HTTP1_M_POST};

    /* Knobs come from the last bytes so the input still starts like a message. */
    if (size >= 2) {
        sel = data[size - 1];
        cut = ((size_t)data[size - 2] << 8 | sel) % (size + 1);
    }
    if (sel & 0x80)
        max_head = 16 + (sel & 0x3f) * 4;
    if (sel & 0x40) {
        line_max = 8 + (sel & 0x1f);
        tr_max = 16 + (sel & 0x3f) * 2;
    }

    fuzz_head(true, buf, size, cut, max_head, HTTP1_M_GET);
    fuzz_head(false, buf, size, cut, max_head, methods[sel & 3]);
    fuzz_targets(buf, size);
    fuzz_chunked(buf, size, cut, line_max, tr_max);
    return 0;
}
