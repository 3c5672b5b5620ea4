/* HTTP/1.x parser: accepted forms, every error, incremental feeding, response framing,
 * target parsers and the chunked scanner. Inputs are copied into heap buffers of their
 * exact length so ASan catches any read past len. */
#include "http1.h"

#include <stdlib.h>

#include "common.h"

#include "tap.h"

#define MAXH 32
static struct http1_hdr hdrs[MAXH];

/* Heap copy of exactly n bytes (n may be 0). */
static char *dup_n(const char *s, size_t n)
{
    char *b = malloc(n ? n : 1);

    if (!b)
        abort();
    memcpy(b, s, n);
    return b;
}

static int req_n(const char *s, size_t n, struct http1_head *h, size_t max_hdrs)
{
    char *b = dup_n(s, n);
    int rc = http1_parse_request(NULL, b, n, h, hdrs, max_hdrs);

    free(b);
    return rc;
}

/* Parse a request held in a string literal. The copy is freed before returning: only
 * look at the non-pointer fields of h afterwards. */
static int req(const char *s, struct http1_head *h)
{
    return req_n(s, strlen(s), h, MAXH);
}

static int resp(const char *s, enum http1_method m, struct http1_head *h)
{
    size_t n = strlen(s);
    char *b = dup_n(s, n);
    int rc = http1_parse_response(NULL, b, n, m, h, hdrs, MAXH);

    free(b);
    return rc;
}

/* Printable form of a test input for a test name (rotating static buffers). */
static const char *esc(const char *s)
{
    static char bufs[4][160];
    static int k;
    char *o = bufs[k++ & 3];
    size_t n = 0;

    for (; *s && n < 150; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '\r')
            n += (size_t)sprintf(o + n, "\\r");
        else if (c == '\n')
            n += (size_t)sprintf(o + n, "\\n");
        else if (c < 0x20 || c >= 0x7f)
            n += (size_t)sprintf(o + n, "\\x%02x", c);
        else
            o[n++] = (char)c;
    }
    o[n] = '\0';
    return o;
}

static bool span_is(const char *p, size_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* Feed s one more byte at a time, with one resumable scan state and with a fresh
 * state each call: every prefix shorter than the final answer's point must give 0,
 * and the full input must give the same result as a one-shot parse. For a bad input
 * an error may come early, but then it must be the final error and stay. */
static void bytewise(const char *s, bool is_req, enum http1_method m, size_t max_hdrs,
                     const char *what)
{
    size_t len = strlen(s), n;
    struct http1_scan sc;
    struct http1_head h;
    int want, got = 0, first_err = 0, bad = 0;
    char *full = dup_n(s, len);

    want = is_req ? http1_parse_request(NULL, full, len, &h, hdrs, max_hdrs)
                  : http1_parse_response(NULL, full, len, m, &h, hdrs, max_hdrs);
    free(full);
    http1_scan_init(&sc, 0);
    for (n = 0; n <= len; n++) {
        char *b = dup_n(s, n);
        int r1, r2;

        r1 = is_req ? http1_parse_request(&sc, b, n, &h, hdrs, max_hdrs)
                    : http1_parse_response(&sc, b, n, m, &h, hdrs, max_hdrs);
        r2 = is_req ? http1_parse_request(NULL, b, n, &h, hdrs, max_hdrs)
                    : http1_parse_response(NULL, b, n, m, &h, hdrs, max_hdrs);
        free(b);
        if (r1 != r2)
            bad++;
        if (r1 < 0 && !first_err)
            first_err = r1;
        if (first_err && r1 != first_err)
            bad++;
        if (r1 > 0 && (size_t)r1 != n && got == 0)
            bad++; /* complete exactly when the last head byte arrived */
        if (r1 > 0)
            got = r1;
        if (r1 < 0)
            break; /* a caller stops at the first error */
    }
    if (want > 0)
        ok(got == want && !bad && !first_err, "bytewise %s: %d (want %d, %d bad)", what, got, want,
           bad);
    else
        ok(first_err == want && !bad, "bytewise %s: error %d (want %d, %d bad)", what, first_err,
           want, bad);
}

static void test_requests(void)
{
    struct http1_head h;
    const char *s;
    char *b;
    int rc;

    s = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    b = dup_n(s, strlen(s));
    rc = http1_parse_request(NULL, b, strlen(s), &h, hdrs, MAXH);
    is_int(rc, (int)strlen(s), "simple GET: head length");
    is_int(h.head_len, strlen(s), "head_len");
    is_int(h.method, HTTP1_M_GET, "method GET");
    ok(span_is(h.method_str, h.method_len, "GET"), "method text");
    ok(span_is(h.target, h.target_len, "/"), "target /");
    is_int(h.form, HTTP1_FORM_ORIGIN, "origin form");
    is_int(h.version_minor, 1, "HTTP/1.1");
    is_int(h.nhdrs, 1, "one header");
    ok(h.hdrs == hdrs, "hdrs is the caller's array");
    ok(span_is(hdrs[0].name, hdrs[0].nlen, "Host") &&
           span_is(hdrs[0].val, hdrs[0].vlen, "example.com"),
       "Host header");
    ok(span_is(h.host, h.host_len, "example.com"), "host pointer");
    ok(http1_find_hdr(&h, "host") == &hdrs[0], "find_hdr case-insensitive");
    ok(http1_find_hdr(&h, "Hos") == NULL, "find_hdr misses");
    is_int(h.body, HTTP1_BODY_NONE, "no body");
    ok(h.flags & HTTP1_F_KEEP_ALIVE, "1.1 keep-alive by default");
    ok(!(h.flags & HTTP1_F_NO_HOST), "host present");
    free(b);

    s = "GET http://user:pw@example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n"
        "\r\nBODY";
    b = dup_n(s, strlen(s));
    rc = http1_parse_request(NULL, b, strlen(s), &h, hdrs, MAXH);
    is_int(rc, (int)strlen(s) - 4, "absolute form: head ends before the body");
    is_int(h.form, HTTP1_FORM_ABSOLUTE, "absolute form");
    ok(span_is(h.target, h.target_len, "http://user:pw@example.com:8080/a/b?c=d"), "target text");
    free(b);

    s = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "CONNECT");
    is_int(h.method, HTTP1_M_CONNECT, "method CONNECT");
    is_int(h.form, HTTP1_FORM_AUTHORITY, "authority form");
    is_int(h.body, HTTP1_BODY_NONE, "CONNECT has no body");
    s = "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n"
        "Content-Length: 0\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "CONNECT IPv6 with Content-Length: 0");

    s = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "OPTIONS *");
    is_int(h.form, HTTP1_FORM_ASTERISK, "asterisk form");
    is_int(h.method, HTTP1_M_OPTIONS, "method OPTIONS");

    s = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    is_int(req(s, &h), (int)strlen(s) - 5, "POST with body");
    is_int(h.body, HTTP1_BODY_LENGTH, "length body");
    is_u64(h.content_length, 5, "content_length 5");
    ok(h.flags & HTTP1_F_HAS_CL, "HAS_CL");
    ok(!(h.flags & HTTP1_F_CL_MERGED), "not merged");

    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "Content-Length 0");
    is_int(h.body, HTTP1_BODY_LENGTH, "length body of 0");
    is_u64(h.content_length, 0, "content_length 0");

    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "Content-Length UINT64_MAX");
    is_u64(h.content_length, UINT64_MAX, "UINT64_MAX");

    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "Content-Length with leading zeros");
    is_u64(h.content_length, 7, "is 7");

    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length:5\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "identical Content-Length values are merged");
    is_u64(h.content_length, 5, "merged value");
    ok(h.flags & HTTP1_F_CL_MERGED, "CL_MERGED");
    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "5 and 05 are the same length: merged");

    s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "chunked request");
    is_int(h.body, HTTP1_BODY_CHUNKED, "chunked body");
    ok(h.flags & HTTP1_F_HAS_TE, "HAS_TE");
    s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "chunked is case-insensitive");
    s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "empty list elements around chunked");

    s = "GET / HTTP/1.0\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "HTTP/1.0 without Host");
    is_int(h.version_minor, 0, "minor 0");
    ok(!(h.flags & HTTP1_F_NO_HOST), "1.0 does not need Host");
    ok(!(h.flags & HTTP1_F_KEEP_ALIVE), "1.0 closes by default");
    ok(h.host == NULL, "no host pointer");
    s = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "HTTP/1.0 keep-alive");
    ok(h.flags & HTTP1_F_KEEP_ALIVE, "1.0 with keep-alive persists");
    s = "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "HTTP/1.0 keep-alive and close");
    ok(!(h.flags & HTTP1_F_KEEP_ALIVE), "close wins");

    s = "GET / HTTP/1.1\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "HTTP/1.1 without Host is not an error");
    ok(h.flags & HTTP1_F_NO_HOST, "NO_HOST flag");
    s = "GET / HTTP/1.1\r\nHost:\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "empty Host");
    ok(h.host && h.host_len == 0 && !(h.flags & HTTP1_F_NO_HOST), "empty host is present");

    s = "GET / HTTP/1.2\r\nHost: a\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "HTTP/1.2 accepted");
    is_int(h.version_minor, 1, "as 1.1");

    s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "leading empty lines skipped, counted in head_len");
    ok(h.method == HTTP1_M_GET && h.nhdrs == 1, "request after them");

    s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive ,\tUpgrade\r\nUpgrade: websocket\r\n"
        "Proxy-Connection: keep-alive\r\nExpect: 100-Continue\r\nTE: trailers, deflate;q=0.5\r\n"
        "\r\n";
    is_int(req(s, &h), (int)strlen(s), "flags request");
    ok(h.flags & HTTP1_F_CONN_KEEPALIVE, "CONN_KEEPALIVE");
    ok(h.flags & HTTP1_F_CONN_UPGRADE, "CONN_UPGRADE");
    ok(!(h.flags & HTTP1_F_CONN_CLOSE), "no CONN_CLOSE");
    ok(h.flags & HTTP1_F_UPGRADE, "UPGRADE");
    ok(h.flags & HTTP1_F_PROXY_CONN, "PROXY_CONN");
    ok(h.flags & HTTP1_F_EXPECT_100, "EXPECT_100");
    ok(!(h.flags & HTTP1_F_EXPECT_OTHER), "no EXPECT_OTHER");
    ok(h.flags & HTTP1_F_TE_TRAILERS, "TE_TRAILERS");
    s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\nExpect: x\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "two Connection headers");
    ok(h.flags & HTTP1_F_CONN_CLOSE, "CONN_CLOSE from the second");
    ok(!(h.flags & HTTP1_F_KEEP_ALIVE), "close ends keep-alive");
    ok(h.flags & HTTP1_F_EXPECT_OTHER, "EXPECT_OTHER");
    s = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s), "1.0 Expect");
    ok(!(h.flags & (HTTP1_F_EXPECT_100 | HTTP1_F_EXPECT_OTHER)), "100-continue ignored in 1.0");

    s = "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Spaces: \t a  b \t \r\nX-Obs: caf\xc3\xa9\r\n"
        "X-Tab: a\tb\r\n\r\n";
    b = dup_n(s, strlen(s));
    rc = http1_parse_request(NULL, b, strlen(s), &h, hdrs, MAXH);
    is_int(rc, (int)strlen(s), "values: empty, OWS, obs-text, HTAB");
    ok(hdrs[1].vlen == 0, "empty value");
    ok(span_is(hdrs[2].val, hdrs[2].vlen, "a  b"), "value trimmed of OWS, inner kept");
    ok(span_is(hdrs[3].val, hdrs[3].vlen, "caf\xc3\xa9"), "obs-text kept");
    ok(span_is(hdrs[4].val, hdrs[4].vlen, "a\tb"), "HTAB inside a value");
    ok(hdrs[1].val >= b && hdrs[4].val + hdrs[4].vlen <= b + rc, "pointers inside the buffer");
    free(b);

    s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    is_int(req(s, &h), (int)strlen(s) / 2, "pipelined: first head only");

    {
        static const struct {
            const char *m;
            enum http1_method id;
        } ms[] = {
            {"GET", HTTP1_M_GET},
            {"HEAD", HTTP1_M_HEAD},
            {"POST", HTTP1_M_POST},
            {"PUT", HTTP1_M_PUT},
            {"DELETE", HTTP1_M_DELETE},
            {"OPTIONS", HTTP1_M_OPTIONS},
            {"TRACE", HTTP1_M_TRACE},
            {"PATCH", HTTP1_M_PATCH},
            {"PROPFIND", HTTP1_M_OTHER},
            {"get", HTTP1_M_OTHER},
            {"GETS", HTTP1_M_OTHER},
            {"M-SEARCH", HTTP1_M_OTHER},
            {"X!#$%&'*+-.^_`|~", HTTP1_M_OTHER},
        };
        size_t i;
        char line[128];

        for (i = 0; i < ARRAY_SIZE(ms); i++) {
            snprintf(line, sizeof(line), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", ms[i].m);
            rc = req(line, &h);
            ok(rc == (int)strlen(line) && h.method == ms[i].id && h.method_len == strlen(ms[i].m),
               "method %s", ms[i].m);
        }
    }
}

static void test_request_errors(void)
{
    static const struct {
        const char *s;
        int err;
        const char *what;
    } bad[] = {
        {"GET / HTTP/1.1\nHost: a\r\n\r\n", HTTP1_E_BARE_LF, "bare LF after request line"},
        {"GET / HTTP/1.1\r\nHost: a\n\r\n", HTTP1_E_BARE_LF, "bare LF after header"},
        {"GET / HTTP/1.1\r\nHost: a\r\n\n", HTTP1_E_BARE_LF, "bare LF as final line"},
        {"GET / HTTP/1.1\n\n", HTTP1_E_BARE_LF, "all bare LF"},
        {"\nGET / HTTP/1.1\r\n\r\n", HTTP1_E_BARE_LF, "leading bare LF"},
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", HTTP1_E_BARE_CR, "bare CR in value"},
        {"GET /\r HTTP/1.1\r\n\r\n", HTTP1_E_BARE_CR, "bare CR in target"},
        {"GET / HTTP/1.1\r\r\n\r\n", HTTP1_E_BARE_CR, "CR CR LF"},
        {"GET / HTTP/1.1\r\nX\r: a\r\n\r\n", HTTP1_E_BARE_CR, "bare CR in name"},
        {"\rGET / HTTP/1.1\r\n\r\n", HTTP1_E_BARE_CR, "leading bare CR"},
        {"GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", HTTP1_E_CTL, "CTL in value"},
        {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", HTTP1_E_CTL, "DEL in value"},
        {"GET /\x01 HTTP/1.1\r\n\r\n", HTTP1_E_CTL, "CTL in target"},
        {"GET\t/ HTTP/1.1\r\n\r\n", HTTP1_E_CTL, "HTAB in request line"},
        {"GET / HTTP/1.1\r\nX\x01: a\r\n\r\n", HTTP1_E_CTL, "CTL in name"},
        {"\x16\x03\x01\x02\x00", HTTP1_E_CTL, "TLS ClientHello on plain port"},
        {" / HTTP/1.1\r\n\r\n", HTTP1_E_METHOD, "empty method"},
        {"G(T / HTTP/1.1\r\n\r\n", HTTP1_E_METHOD, "non-tchar in method"},
        {"G\xc3\x89T / HTTP/1.1\r\n\r\n", HTTP1_E_METHOD, "non-ASCII in method"},
        {"GET\r\n\r\n", HTTP1_E_REQ_LINE, "method only"},
        {"GET /\r\n\r\n", HTTP1_E_REQ_LINE, "HTTP/0.9"},
        {"GET  / HTTP/1.1\r\n\r\n", HTTP1_E_REQ_LINE, "two SP after method"},
        {"GET /  HTTP/1.1\r\n\r\n", HTTP1_E_REQ_LINE, "two SP before version"},
        {"GET  HTTP/1.1\r\n\r\n", HTTP1_E_REQ_LINE, "empty target"},
        {"GET /a b HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "SP inside target"},
        {"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "non-ASCII in target"},
        {"GET /a#frag HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "fragment in origin form"},
        {"GET http://a/#f HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "fragment in absolute form"},
        {"GET * HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "asterisk form with GET"},
        {"GET example.com:80 HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "authority form with GET"},
        {"GET http:/a HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "absolute form without //"},
        {"GET http://a@b@c/ HTTP/1.1\r\n\r\n", HTTP1_E_TARGET, "two @ in authority"},
        {"GET http:///x HTTP/1.1\r\n\r\n", HTTP1_E_HOST_INVALID, "absolute form without host"},
        {"GET http://a:0/ HTTP/1.1\r\n\r\n", HTTP1_E_PORT, "absolute form with port 0"},
        {"CONNECT /x HTTP/1.1\r\n\r\n", HTTP1_E_HOST_INVALID, "CONNECT with origin form"},
        {"CONNECT a HTTP/1.1\r\n\r\n", HTTP1_E_PORT, "CONNECT without port"},
        {"CONNECT a:70000 HTTP/1.1\r\n\r\n", HTTP1_E_PORT, "CONNECT port > 65535"},
        {"GET / HTTP/1.1x\r\n\r\n", HTTP1_E_VERSION, "version with junk"},
        {"GET / http/1.1\r\n\r\n", HTTP1_E_VERSION, "lowercase version"},
        {"GET / HTTP/1\r\n\r\n", HTTP1_E_VERSION, "version without minor"},
        {"GET / HTTP/1.10\r\n\r\n", HTTP1_E_VERSION, "two-digit minor"},
        {"GET / HTTP/2.0\r\n\r\n", HTTP1_E_VERSION_UNSUPPORTED, "HTTP/2.0"},
        {"GET / HTTP/0.9\r\n\r\n", HTTP1_E_VERSION_UNSUPPORTED, "HTTP/0.9 with version"},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP1_E_VERSION_UNSUPPORTED, "h2 preface"},
        {"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", HTTP1_E_OBS_FOLD, "obs-fold SP"},
        {"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", HTTP1_E_OBS_FOLD, "obs-fold HTAB"},
        {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", HTTP1_E_OBS_FOLD, "first header indented"},
        {"GET / HTTP/1.1\r\n: a\r\n\r\n", HTTP1_E_HDR_NAME_EMPTY, "empty header name"},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", HTTP1_E_HDR_NAME_WS, "SP before colon"},
        {"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", HTTP1_E_HDR_NAME_WS, "HTAB before colon"},
        {"GET / HTTP/1.1\r\nX(y: a\r\n\r\n", HTTP1_E_HDR_NAME, "non-tchar in name"},
        {"GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", HTTP1_E_HDR_NAME, "non-ASCII in name"},
        {"GET / HTTP/1.1\r\n\"X\": a\r\n\r\n", HTTP1_E_HDR_NAME, "quote starts name"},
        {"GET / HTTP/1.1\r\nFoo\r\n\r\n", HTTP1_E_HDR_NO_COLON, "header without colon"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", HTTP1_E_HOST_DUP, "two Host headers"},
        {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", HTTP1_E_HOST_DUP, "Host and host"},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HTTP1_E_HOST_INVALID, "Host with SP"},
        {"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", HTTP1_E_HOST_INVALID, "Host list"},
        {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", HTTP1_E_HOST_INVALID, "Host with userinfo"},
        {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", HTTP1_E_HOST_INVALID, "Host unclosed bracket"},
        {"GET / HTTP/1.1\r\nHost: a:\r\n\r\n", HTTP1_E_PORT, "Host with empty port"},
        {"GET / HTTP/1.1\r\nHost: a:0\r\n\r\n", HTTP1_E_PORT, "Host port 0"},
        {"GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", HTTP1_E_PORT, "Host port 6 digits"},
        {"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", HTTP1_E_CL_INVALID, "CL letters"},
        {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", HTTP1_E_CL_INVALID, "CL empty"},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HTTP1_E_CL_INVALID, "CL negative"},
        {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", HTTP1_E_CL_INVALID, "CL plus sign"},
        {"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", HTTP1_E_CL_INVALID, "CL hex"},
        {"POST / HTTP/1.1\r\nContent-Length: 5 6\r\n\r\n", HTTP1_E_CL_INVALID, "CL two numbers"},
        {"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n", HTTP1_E_CL_INVALID, "CL empty element"},
        {"POST / HTTP/1.1\r\nContent-Length: 5, x\r\n\r\n", HTTP1_E_CL_INVALID, "CL bad element"},
        {"POST / HTTP/1.1\r\nContent-Length: 5.0\r\n\r\n", HTTP1_E_CL_INVALID, "CL decimal"},
        {"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", HTTP1_E_CL_OVERFLOW,
         "CL UINT64_MAX + 1"},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", HTTP1_E_CL_OVERFLOW,
         "CL far too large"},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", HTTP1_E_CL_CONFLICT,
         "CL differing headers"},
        {"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", HTTP1_E_CL_CONFLICT, "CL list"},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTP1_E_CL_TE, "CL and TE"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
         HTTP1_E_CL_TE, "TE and CL"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", HTTP1_E_TE_INVALID,
         "chunked twice"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTP1_E_TE_INVALID, "chunked in two headers"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", HTTP1_E_TE_INVALID,
         "chunked with parameters"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HTTP1_E_TE_INVALID,
         "chunked not final"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", HTTP1_E_TE_INVALID, "TE empty"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked x\r\n\r\n", HTTP1_E_TE_INVALID,
         "TE junk after token"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", HTTP1_E_TE_INVALID,
         "TE quoted"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", HTTP1_E_TE_INVALID,
         "TE xchunked"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTP1_E_TE_UNSUPPORTED,
         "request gzip, chunked"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTP1_E_TE_UNSUPPORTED, "request identity then chunked"},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_E_TE_HTTP10,
         "chunked in HTTP/1.0 request"},
        {"CONNECT a:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n", HTTP1_E_CONNECT_BODY,
         "CONNECT with Content-Length"},
        {"CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_E_CONNECT_BODY,
         "CONNECT with chunked"},
    };
    struct http1_head h;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = req(bad[i].s, &h);

        is_int(rc, bad[i].err, "%s -> %s", bad[i].what, http1_strerror(bad[i].err));
    }
    for (i = 0; i < ARRAY_SIZE(bad); i++)
        bytewise(bad[i].s, true, 0, MAXH, bad[i].what);
}

static void test_limits(void)
{
    struct http1_head h;
    struct http1_scan sc;
    char big[200];
    const char *s = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    size_t n = strlen(s), i;
    char *b;

    is_int(req_n(s, n, &h, 3), (int)n, "three headers fit in three");
    is_int(req_n(s, n, &h, 2), HTTP1_E_TOO_MANY_HEADERS, "three headers in two");
    is_int(req_n(s, n, &h, 0), HTTP1_E_TOO_MANY_HEADERS, "headers with max 0");
    is_int(req_n("GET / HTTP/1.0\r\n\r\n", 18, &h, 0), 18, "no headers with max 0");
    /* Reported before the head is complete. */
    is_int(req_n(s, n - 2, &h, 2), HTTP1_E_TOO_MANY_HEADERS, "too many headers reported early");
    bytewise(s, true, 0, 2, "too many headers");

    /* max_head: a head of exactly the limit passes, one more byte does not. */
    b = dup_n(s, n);
    http1_scan_init(&sc, n);
    is_int(http1_parse_request(&sc, b, n, &h, hdrs, MAXH), (int)n, "head of exactly max_head");
    http1_scan_init(&sc, n - 1);
    is_int(http1_parse_request(&sc, b, n - 2, &h, hdrs, MAXH), 0, "below max_head: need more");
    is_int(http1_parse_request(&sc, b, n - 1, &h, hdrs, MAXH), HTTP1_E_TOO_LARGE,
           "at max_head without end: too large");
    http1_scan_init(&sc, n - 1);
    is_int(http1_parse_request(&sc, b, n, &h, hdrs, MAXH), HTTP1_E_TOO_LARGE,
           "bytes past max_head are not looked at");
    free(b);

    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    b = dup_n(big, sizeof(big));
    http1_scan_init(&sc, 100);
    is_int(http1_parse_request(&sc, b, sizeof(big), &h, hdrs, MAXH), HTTP1_E_TOO_LARGE,
           "long request line hits the head limit");
    free(b);

    /* Resumable: the search offset follows the data, so a trickled head is linear. */
    {
        static char line[60000];
        struct http1_scan rs;
        bool linear = true;
        int rc = 0;

        memcpy(line, "GET / HTTP/1.1\r\nX: ", 19);
        memset(line + 19, 'v', sizeof(line) - 23);
        memcpy(line + sizeof(line) - 4, "\r\n\r\n", 4);
        http1_scan_init(&rs, 0);
        for (i = 1; i <= sizeof(line); i++) {
            rc = http1_parse_request(&rs, line, i, &h, hdrs, MAXH);
            if (i < sizeof(line) && (rc != 0 || rs.off != i))
                linear = false;
        }
        ok(linear, "search offset advances with the buffer");
        is_int(rc, (int)sizeof(line), "60000-byte head found");
        ok(span_is(h.target, 1, "/") && hdrs[0].vlen == sizeof(line) - 23, "long value");
        /* A shorter buffer restarts the search instead of trusting stale offsets. */
        is_int(http1_parse_request(&rs, line, 100, &h, hdrs, MAXH), 0, "shorter buffer: restart");
        is_int(rs.off, 100, "restarted search");
    }
}

static void test_bytewise_valid(void)
{
    static const char *const reqs[] = {
        "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "\r\nGET http://a:1/x?y HTTP/1.0\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
        "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic eDp5\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX:\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    static const char *const resps[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 204\r\nDate: x\r\n\r\n",
        "HTTP/1.0 302 Found\r\nLocation: /\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(reqs); i++)
        bytewise(reqs[i], true, 0, MAXH, esc(reqs[i]));
    for (i = 0; i < ARRAY_SIZE(resps); i++)
        bytewise(resps[i], false, HTTP1_M_GET, MAXH, esc(resps[i]));
}

static void test_responses(void)
{
    struct http1_head h;
    const char *s;
    char *b;
    int rc;

    s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    b = dup_n(s, strlen(s));
    rc = http1_parse_response(NULL, b, strlen(s), HTTP1_M_GET, &h, hdrs, MAXH);
    is_int(rc, (int)strlen(s) - 5, "200 with length");
    is_int(h.status, 200, "status 200");
    ok(span_is(h.reason, h.reason_len, "OK"), "reason OK");
    is_int(h.body, HTTP1_BODY_LENGTH, "length body");
    is_u64(h.content_length, 5, "5 bytes");
    ok(h.flags & HTTP1_F_KEEP_ALIVE, "keep-alive");
    free(b);

    s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    is_int(resp(s, HTTP1_M_HEAD, &h), (int)strlen(s), "response to HEAD");
    is_int(h.body, HTTP1_BODY_NONE, "HEAD: no body despite Content-Length");
    ok(h.flags & HTTP1_F_KEEP_ALIVE, "HEAD response keeps the connection");

    s = "HTTP/1.1 100 Continue\r\n\r\n";
    is_int(resp(s, HTTP1_M_POST, &h), (int)strlen(s), "100 Continue");
    is_int(h.body, HTTP1_BODY_NONE, "1xx: no body");
    s = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "103");
    is_int(h.body, HTTP1_BODY_NONE, "103: no body");
    s = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "101");
    is_int(h.body, HTTP1_BODY_TUNNEL, "101: tunnel");
    ok(!(h.flags & HTTP1_F_KEEP_ALIVE), "tunnel is not keep-alive");
    ok((h.flags & HTTP1_F_CONN_UPGRADE) && (h.flags & HTTP1_F_UPGRADE), "upgrade flags");
    s = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "204");
    is_int(h.body, HTTP1_BODY_NONE, "204: no body");
    s = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "304");
    is_int(h.body, HTTP1_BODY_NONE, "304: no body");
    s = "HTTP/1.1 200 Connection established\r\n\r\n";
    is_int(resp(s, HTTP1_M_CONNECT, &h), (int)strlen(s), "CONNECT 200");
    is_int(h.body, HTTP1_BODY_TUNNEL, "CONNECT 2xx: tunnel");
    s = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    is_int(resp(s, HTTP1_M_CONNECT, &h), (int)strlen(s), "CONNECT 200 with CL");
    is_int(h.body, HTTP1_BODY_TUNNEL, "CONNECT 2xx ignores Content-Length");
    s = "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\n";
    is_int(resp(s, HTTP1_M_CONNECT, &h), (int)strlen(s), "CONNECT 407");
    is_int(h.body, HTTP1_BODY_LENGTH, "CONNECT non-2xx: normal framing");
    s = "HTTP/1.1 502 Bad Gateway\r\n\r\n";
    is_int(resp(s, HTTP1_M_CONNECT, &h), (int)strlen(s), "CONNECT 502 without length");
    is_int(h.body, HTTP1_BODY_UNTIL_CLOSE, "until close");

    s = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "no CL/TE");
    is_int(h.body, HTTP1_BODY_UNTIL_CLOSE, "until close");
    ok(!(h.flags & HTTP1_F_KEEP_ALIVE), "until close is not keep-alive");

    s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "chunked response");
    is_int(h.body, HTTP1_BODY_CHUNKED, "chunked");
    s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "gzip then chunked response");
    is_int(h.body, HTTP1_BODY_CHUNKED, "chunked final");

    s = "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "no reason, no SP");
    ok(h.reason_len == 0, "empty reason");
    s = "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "empty reason after SP");
    s = "HTTP/1.1 599 Some\tthing \xc3\xa9\r\nContent-Length: 1\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "reason with HTAB and obs-text");
    is_int(h.status, 599, "599");
    s = "HTTP/1.1 999 X\r\nContent-Length: 1\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "999");

    s = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "1.0 response");
    is_int(h.version_minor, 0, "minor 0");
    ok(!(h.flags & HTTP1_F_KEEP_ALIVE), "1.0 closes");
    s = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "1.0 keep-alive response");
    ok(h.flags & HTTP1_F_KEEP_ALIVE, "1.0 keep-alive persists");
    s = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "1.1 close");
    ok(!(h.flags & HTTP1_F_KEEP_ALIVE), "1.1 close does not persist");
    s = "HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nHost: a\r\nHost: b\r\n"
        "Content-Length: 0\r\n\r\n";
    is_int(resp(s, HTTP1_M_GET, &h), (int)strlen(s), "repeated headers in a response");
    is_int(h.nhdrs, 5, "all kept");
    ok(h.host == NULL, "Host not interpreted in responses");

    {
        static const struct {
            const char *s;
            int err;
            const char *what;
        } bad[] = {
            {"HTTP/1.1 99 X\r\n\r\n", HTTP1_E_STATUS, "two-digit status"},
            {"HTTP/1.1 099 X\r\n\r\n", HTTP1_E_STATUS, "status 099"},
            {"HTTP/1.1 2000 X\r\n\r\n", HTTP1_E_STATUS, "four-digit status"},
            {"HTTP/1.1 20x X\r\n\r\n", HTTP1_E_STATUS, "status with letter"},
            {"HTTP/1.1  200 X\r\n\r\n", HTTP1_E_STATUS, "two SP before status"},
            {"HTTP/1.1 200\x01X\r\n\r\n", HTTP1_E_CTL, "CTL after status"},
            {"HTTP/1.1 200 O\x01K\r\n\r\n", HTTP1_E_CTL, "CTL in reason"},
            {"HTTP/1.1\r\n\r\n", HTTP1_E_STATUS_LINE, "version only"},
            {"\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP1_E_STATUS_LINE, "leading empty line"},
            {"HTTP/2 200\r\n\r\n", HTTP1_E_VERSION, "HTTP/2"},
            {"http/1.1 200 OK\r\n\r\n", HTTP1_E_VERSION, "lowercase"},
            {"ICY 200 OK\r\n\r\n", HTTP1_E_VERSION, "ICY"},
            {"HTTP/2.0 200 OK\r\n\r\n", HTTP1_E_VERSION_UNSUPPORTED, "HTTP/2.0"},
            {"HTTP/1.1 200 OK\nX: y\r\n\r\n", HTTP1_E_BARE_LF, "bare LF"},
            {"HTTP/1.1 200 OK\r\nX: y\r\n\r\r\n", HTTP1_E_BARE_CR, "bare CR in final line"},
            {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP1_E_TE_INVALID,
             "response TE without chunked"},
            {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HTTP1_E_TE_INVALID,
             "response TE chunked not final"},
            {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_E_TE_HTTP10,
             "1.0 response with TE"},
            {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
             HTTP1_E_CL_TE, "response CL and TE"},
            {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
             HTTP1_E_CL_CONFLICT, "response CL conflict"},
            {"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", HTTP1_E_OBS_FOLD, "response obs-fold"},
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(bad); i++) {
            is_int(resp(bad[i].s, HTTP1_M_GET, &h), bad[i].err, "response %s -> %s", bad[i].what,
                   http1_strerror(bad[i].err));
            bytewise(bad[i].s, false, HTTP1_M_GET, MAXH, bad[i].what);
        }
    }
    {
        /* NUL bytes: strings with an embedded NUL, measured with sizeof. */
        static const char r[] = "HTTP/1.1 200 O\0K\r\n\r\n";
        static const char q1[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
        static const char q2[] = "GET /\0 HTTP/1.1\r\n\r\n";
        static const char q3[] = "GET / HTTP/1.1\r\nX\0: b\r\n\r\n";

        b = dup_n(r, sizeof(r) - 1);
        rc = http1_parse_response(NULL, b, sizeof(r) - 1, HTTP1_M_GET, &h, hdrs, MAXH);
        free(b);
        is_int(rc, HTTP1_E_CTL, "NUL in reason");
        is_int(req_n(q1, sizeof(q1) - 1, &h, MAXH), HTTP1_E_CTL, "NUL in header value");
        is_int(req_n(q2, sizeof(q2) - 1, &h, MAXH), HTTP1_E_CTL, "NUL in target");
        is_int(req_n(q3, sizeof(q3) - 1, &h, MAXH), HTTP1_E_CTL, "NUL in header name");
    }
}

static void test_targets(void)
{
    struct http1_url u;
    struct http1_hostport hp;
    const char *s;
    char name[300];

#define URL(str) http1_parse_absolute_url(str, strlen(str), &u)
    s = "http://user:pass@host:8080/path?q=1";
    is_int(URL(s), 0, "full URL");
    is_int(u.scheme, HTTP1_SCHEME_HTTP, "http");
    ok(span_is(u.scheme_str, u.scheme_len, "http"), "scheme text");
    ok(u.has_userinfo && span_is(u.userinfo, u.userinfo_len, "user:pass"), "userinfo");
    ok(span_is(u.host.name, u.host.len, "host"), "host");
    is_int(u.host.kind, HTTP1_HOST_NAME, "name");
    is_int(u.host.port, 8080, "port 8080");
    ok(u.host.has_port, "explicit port");
    ok(span_is(u.path, u.path_len, "/path?q=1"), "path and query");
    ok(!u.path_needs_slash, "path has its slash");

    is_int(URL("https://example.com"), 0, "https without path");
    is_int(u.scheme, HTTP1_SCHEME_HTTPS, "https");
    is_int(u.host.port, 443, "default 443");
    ok(!u.host.has_port && !u.has_userinfo && u.userinfo == NULL, "no port, no userinfo");
    ok(span_is(u.path, u.path_len, "/"), "empty path is /");
    is_int(URL("HTTP://Example.COM/"), 0, "scheme case-insensitive");
    is_int(u.scheme, HTTP1_SCHEME_HTTP, "HTTP is http");
    is_int(u.host.port, 80, "default 80");
    is_int(URL("ftp://f.example/pub/"), 0, "ftp");
    is_int(u.host.port, 21, "default 21");
    is_int(URL("ws://h/chat"), 0, "other scheme");
    is_int(u.scheme, HTTP1_SCHEME_OTHER, "ws is other");
    is_int(u.host.port, 0, "no default port");
    ok(span_is(u.scheme_str, u.scheme_len, "ws"), "other scheme text");
    is_int(URL("svn+ssh://h:22/"), 0, "scheme with +");
    is_int(URL("http://h?q"), 0, "query without path");
    ok(span_is(u.path, u.path_len, "?q") && u.path_needs_slash, "path needs slash");
    is_int(URL("http://[2001:db8::1]:81/x"), 0, "IPv6 host");
    ok(span_is(u.host.name, u.host.len, "2001:db8::1") && u.host.kind == HTTP1_HOST_IPV6,
       "IPv6 without brackets");
    is_int(u.host.port, 81, "IPv6 port");
    is_int(URL("http://[::ffff:1.2.3.4]/"), 0, "IPv4-mapped IPv6");
    is_int(URL("http://1.2.3.4/"), 0, "IPv4 host");
    is_int(u.host.kind, HTTP1_HOST_IPV4, "IPv4 kind");
    is_int(URL("http://0.0.0.0/"), 0, "IPv4 zeros");
    is_int(URL("http://@h/"), 0, "empty userinfo");
    ok(u.has_userinfo && u.userinfo_len == 0, "empty userinfo flagged");
    is_int(URL("http://a%20b:p%3A!$&'()*+,;=@h/"), 0, "userinfo with pct and sub-delims");
    is_int(URL("http://host:80@evil.example/"), 0, "userinfo that looks like host:port");
    ok(span_is(u.host.name, u.host.len, "evil.example"), "host is after the @");
    is_int(URL("http://h/a@b"), 0, "@ in path is not userinfo");
    ok(!u.has_userinfo, "no userinfo");
    is_int(URL("http://example.com./"), 0, "trailing dot");
    is_int(URL("http://my_host-1.internal/"), 0, "underscore and dash");
    is_int(URL("http://123abc.example/"), 0, "digits in a label");

    is_int(URL(""), HTTP1_E_TARGET, "empty URL");
    is_int(URL("http://h/#f"), HTTP1_E_TARGET, "fragment");
    is_int(URL("http:/h"), HTTP1_E_TARGET, "single slash");
    is_int(URL("http:h"), HTTP1_E_TARGET, "no slashes");
    is_int(URL("://h/"), HTTP1_E_TARGET, "empty scheme");
    is_int(URL("1http://h/"), HTTP1_E_TARGET, "scheme starting with digit");
    is_int(URL("ht_tp://h/"), HTTP1_E_TARGET, "underscore in scheme");
    is_int(URL("http://a@b@c/"), HTTP1_E_TARGET, "two @");
    is_int(URL("http://us%zz@h/"), HTTP1_E_TARGET, "bad pct in userinfo");
    is_int(URL("http://us%2@h/"), HTTP1_E_TARGET, "short pct in userinfo");
    is_int(URL("http://u[@h/"), HTTP1_E_TARGET, "bracket in userinfo");
    is_int(URL("http://h /"), HTTP1_E_TARGET, "space");
    is_int(URL("http://h\x01/"), HTTP1_E_TARGET, "CTL");
    is_int(URL("http://h/\xc3\xa9"), HTTP1_E_TARGET, "non-ASCII");
    is_int(URL("http:///x"), HTTP1_E_HOST_INVALID, "no host");
    is_int(URL("http://:80/"), HTTP1_E_HOST_INVALID, "port without host");
    is_int(URL("http://[::1/"), HTTP1_E_HOST_INVALID, "unclosed bracket");
    is_int(URL("http://[]/"), HTTP1_E_HOST_INVALID, "empty brackets");
    is_int(URL("http://[1.2.3.4]/"), HTTP1_E_HOST_INVALID, "IPv4 in brackets");
    is_int(URL("http://[fe80::1%25eth0]/"), HTTP1_E_HOST_INVALID, "zone id");
    is_int(URL("http://[v1.x]/"), HTTP1_E_HOST_INVALID, "IPvFuture");
    is_int(URL("http://[::1]x/"), HTTP1_E_HOST_INVALID, "junk after bracket");
    is_int(URL("http://2130706433/"), HTTP1_E_HOST_INVALID, "integer IPv4");
    is_int(URL("http://0x7f.0.0.1/"), HTTP1_E_HOST_INVALID, "hex IPv4");
    is_int(URL("http://010.0.0.1/"), HTTP1_E_HOST_INVALID, "octal-looking IPv4");
    is_int(URL("http://1.2.3.256/"), HTTP1_E_HOST_INVALID, "IPv4 part > 255");
    is_int(URL("http://1.2.3/"), HTTP1_E_HOST_INVALID, "three-part IPv4");
    is_int(URL("http://1.2.3.4.5/"), HTTP1_E_HOST_INVALID, "five-part IPv4");
    is_int(URL("http://1.2.3.4./"), HTTP1_E_HOST_INVALID, "IPv4 with trailing dot");
    is_int(URL("http://a..b/"), HTTP1_E_HOST_INVALID, "empty label");
    is_int(URL("http://.a/"), HTTP1_E_HOST_INVALID, "leading dot");
    is_int(URL("http://%41/"), HTTP1_E_HOST_INVALID, "pct in host");
    is_int(URL("http://a!b/"), HTTP1_E_HOST_INVALID, "sub-delim in host");
    is_int(URL("http://h:0/"), HTTP1_E_PORT, "port 0");
    is_int(URL("http://h:/"), HTTP1_E_PORT, "empty port");
    is_int(URL("http://h:65536/"), HTTP1_E_PORT, "port 65536");
    is_int(URL("http://h:8x/"), HTTP1_E_PORT, "port with letter");
    is_int(URL("http://h:1:2/"), HTTP1_E_PORT, "two colons");
    is_int(URL("http://h:65535/"), 0, "port 65535");
    is_int(URL("http://h:00080/"), 0, "port with leading zeros");
    is_int(u.host.port, 80, "is 80");

    memset(name, 'a', sizeof(name));
    memcpy(name, "http://", 7);
    name[7 + 63] = '/';
    is_int(http1_parse_absolute_url(name, 7 + 64, &u), 0, "63-byte label");
    name[7 + 63] = 'a';
    name[7 + 64] = '/';
    is_int(http1_parse_absolute_url(name, 7 + 65, &u), HTTP1_E_HOST_INVALID, "64-byte label");
    {
        /* 253-byte name of 63-byte labels, then one byte more. */
        char n2[260];
        size_t i;

        for (i = 0; i < 253; i++)
            n2[i] = (i % 64 == 63) ? '.' : 'b';
        is_int(http1_parse_host(n2, 253, &hp), 0, "253-byte name");
        n2[253] = '.';
        is_int(http1_parse_host(n2, 254, &hp), 0, "253-byte name and final dot");
        n2[253] = 'b';
        is_int(http1_parse_host(n2, 254, &hp), HTTP1_E_HOST_INVALID, "254-byte name");
    }
#undef URL

#define AUTH(str) http1_parse_authority(str, strlen(str), &hp)
    is_int(AUTH("example.com:443"), 0, "authority");
    ok(span_is(hp.name, hp.len, "example.com") && hp.port == 443 && hp.has_port, "authority parts");
    is_int(AUTH("[2001:db8::1]:8443"), 0, "IPv6 authority");
    ok(span_is(hp.name, hp.len, "2001:db8::1") && hp.kind == HTTP1_HOST_IPV6 && hp.port == 8443,
       "IPv6 parts");
    is_int(AUTH("10.0.0.1:22"), 0, "IPv4 authority");
    is_int(hp.kind, HTTP1_HOST_IPV4, "IPv4 kind");
    is_int(AUTH("example.com"), HTTP1_E_PORT, "port required");
    is_int(AUTH("[::1]"), HTTP1_E_PORT, "IPv6 port required");
    is_int(AUTH("example.com:"), HTTP1_E_PORT, "empty port");
    is_int(AUTH("example.com:0"), HTTP1_E_PORT, "port 0");
    is_int(AUTH("example.com:65536"), HTTP1_E_PORT, "port 65536");
    is_int(AUTH("example.com:443x"), HTTP1_E_PORT, "port junk");
    is_int(AUTH("a:1:2"), HTTP1_E_PORT, "two colons");
    is_int(AUTH(":443"), HTTP1_E_HOST_INVALID, "no host");
    is_int(AUTH(""), HTTP1_E_HOST_INVALID, "empty");
    is_int(AUTH("u@h:1"), HTTP1_E_HOST_INVALID, "userinfo");
    is_int(AUTH("::1:443"), HTTP1_E_HOST_INVALID, "IPv6 without brackets");
    is_int(AUTH("h/x:1"), HTTP1_E_HOST_INVALID, "slash");
#undef AUTH

    is_int(http1_parse_host("example.com", 11, &hp), 0, "Host without port");
    ok(!hp.has_port && hp.port == 0, "no port");
    is_int(http1_parse_host("example.com:8080", 16, &hp), 0, "Host with port");
    ok(hp.has_port && hp.port == 8080, "port 8080");
    is_int(http1_parse_host("[::1]", 5, &hp), 0, "Host IPv6");
    is_int(http1_parse_host("", 0, &hp), HTTP1_E_HOST_INVALID, "empty Host value");
}

static void test_helpers(void)
{
    struct http1_hdr hd = {"Content-LENGTH", 14, "5", 1};
    int e;
    bool names_ok = true;

    ok(http1_hdr_is(&hd, "content-length"), "hdr_is case-insensitive");
    ok(!http1_hdr_is(&hd, "content-lengt"), "hdr_is length");
    ok(!http1_hdr_is(&hd, "content-lengthx"), "hdr_is longer");
    ok(http1_token_list_has("a, Close ,b", 11, "close"), "token in list");
    ok(http1_token_list_has("close", 5, "close"), "single token");
    ok(http1_token_list_has(",,\tclose\t,", 10, "CLOSE"), "empty elements and HTAB");
    ok(http1_token_list_has("x;q=1, trailers;a", 17, "trailers"), "parameters ignored");
    ok(!http1_token_list_has("closed, xclose", 14, "close"), "no partial match");
    ok(!http1_token_list_has("", 0, "close"), "empty list");
    ok(!http1_token_list_has("close", 4, "close"), "length respected");
    {
        static const char *const hop[] = {"Connection",
                                          "keep-alive",
                                          "Proxy-Authenticate",
                                          "proxy-authorization",
                                          "Proxy-Connection",
                                          "te",
                                          "Trailer",
                                          "Transfer-Encoding",
                                          "UPGRADE"};
        static const char *const e2e[] = {"Host",          "Content-Length", "Trailers", "Tee",
                                          "Authorization", "X-Connection",   ""};
        size_t i;
        bool all = true;

        for (i = 0; i < ARRAY_SIZE(hop); i++)
            all &= http1_is_hop_by_hop(hop[i], strlen(hop[i]));
        ok(all, "hop-by-hop names");
        all = true;
        for (i = 0; i < ARRAY_SIZE(e2e); i++)
            all &= !http1_is_hop_by_hop(e2e[i], strlen(e2e[i]));
        ok(all, "end-to-end names");
    }
    is_str(http1_reason(200), "OK", "reason 200");
    is_str(http1_reason(407), "Proxy Authentication Required", "reason 407");
    is_str(http1_reason(502), "Bad Gateway", "reason 502");
    is_str(http1_reason(521), "Web Server Is Down", "reason 521");
    is_str(http1_reason(522), "Connection Timed Out", "reason 522");
    is_str(http1_reason(523), "Origin Is Unreachable", "reason 523");
    is_str(http1_reason(525), "SSL Handshake Failed", "reason 525");
    is_str(http1_reason(530), "Origin DNS Error", "reason 530");
    is_str(http1_reason(499), "Client Error", "reason unknown 4xx");
    is_str(http1_reason(0), "Unknown", "reason 0");
    for (e = -1; e >= HTTP1_E_MIN; e--)
        if (!strcmp(http1_strerror(e), "unknown error"))
            names_ok = false;
    ok(names_ok, "every error has a name");
    is_str(http1_strerror(0), "unknown error", "strerror 0");
    is_str(http1_strerror(HTTP1_E_MIN - 1), "unknown error", "strerror out of range");
    is_int(http1_err_status(HTTP1_E_TOO_LARGE), 431, "too large -> 431");
    is_int(http1_err_status(HTTP1_E_TOO_MANY_HEADERS), 431, "too many headers -> 431");
    is_int(http1_err_status(HTTP1_E_TE_UNSUPPORTED), 501, "TE -> 501");
    is_int(http1_err_status(HTTP1_E_VERSION_UNSUPPORTED), 505, "version -> 505");
    is_int(http1_err_status(HTTP1_E_BARE_LF), 400, "bare LF -> 400");
}

/* ---- chunked ---- */

/* Scan s whole; returns the result, *cons the bytes consumed. */
static int chunk_all(const char *s, size_t n, size_t *cons, uint32_t line_max, uint32_t tr_max)
{
    struct http1_chunked c;
    char *b = dup_n(s, n);
    int rc;

    http1_chunked_init(&c, line_max, tr_max);
    rc = http1_chunked_scan(&c, b, n, cons);
    free(b);
    return rc;
}

/* Feed s split in two at every point and one byte at a time: the total consumed and
 * the result must match the one-shot scan. */
static void chunk_splits(const char *s, size_t n, const char *what)
{
    size_t want_c, cut, i, got_c;
    int want = chunk_all(s, n, &want_c, 0, 0), rc = 0;
    int bad = 0;

    for (cut = 0; cut <= n; cut++) {
        struct http1_chunked c;
        char *b1 = dup_n(s, cut), *b2 = dup_n(s + cut, n - cut);
        size_t c1, c2 = 0;

        http1_chunked_init(&c, 0, 0);
        rc = http1_chunked_scan(&c, b1, cut, &c1);
        if (rc == HTTP1_CHUNK_AGAIN) {
            if (c1 != cut)
                bad++;
            rc = http1_chunked_scan(&c, b2, n - cut, &c2);
        }
        if (rc != want || c1 + c2 != want_c)
            bad++;
        free(b1);
        free(b2);
    }
    {
        struct http1_chunked c;

        http1_chunked_init(&c, 0, 0);
        got_c = 0;
        rc = HTTP1_CHUNK_AGAIN;
        for (i = 0; i < n && rc == HTTP1_CHUNK_AGAIN; i++) {
            char *b = dup_n(s + i, 1);
            size_t c1;

            rc = http1_chunked_scan(&c, b, 1, &c1);
            got_c += c1;
            free(b);
        }
        if (rc != want || got_c != want_c)
            bad++;
    }
    ok(!bad, "chunked splits %s: result %d consumed %zu (%d bad)", what, want, want_c, bad);
}

static void test_chunked(void)
{
    struct http1_chunked c;
    size_t cons, i;
    const char *s;
    int rc;

#define CH(str) chunk_all(str, strlen(str), &cons, 0, 0)
    s = "5\r\nhello\r\n0\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "simple chunked body");
    is_int(cons, strlen(s), "all consumed");
    s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "body followed by the next request");
    is_int(cons, strlen(s) - 16, "stops at the end of the body");
    s = "A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "hex upper and lower");
    s = "5;name=val;x;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "chunk extensions");
    s = "5 \t;a\r\nhello\r\n0\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "BWS before ;");
    s = "5;\xc3\xa9\t\r\nhello\r\n0\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "obs-text and HTAB in extension");
    s = "0\r\nX-Trailer: v\r\nY:\r\nZ: a\tb\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "trailers");
    is_int(cons, strlen(s), "trailers consumed");
    s = "0000000000000005\r\nhello\r\n0\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "16 hex digits");
    s = "0\r\n\r\n";
    is_int(CH(s), HTTP1_CHUNK_DONE, "empty body");
    s = "5\r\nhel";
    is_int(CH(s), HTTP1_CHUNK_AGAIN, "partial data");
    is_int(cons, strlen(s), "partial data consumed");
    s = "5\r\nhello\r\n1";
    is_int(CH(s), HTTP1_CHUNK_AGAIN, "partial size line is a valid prefix");
    is_int(cons, strlen(s), "consumed");

    is_int(CH("\r\n"), HTTP1_E_CHUNK_SIZE, "empty size");
    is_int(cons, 0, "error at byte 0");
    is_int(CH("x\r\n"), HTTP1_E_CHUNK_SIZE, "non-hex size");
    is_int(CH("-1\r\n"), HTTP1_E_CHUNK_SIZE, "negative size");
    is_int(CH("+1\r\n"), HTTP1_E_CHUNK_SIZE, "plus size");
    is_int(CH("0x5\r\n"), HTTP1_E_CHUNK_SIZE, "0x prefix");
    is_int(cons, 1, "error at the x");
    is_int(CH(" 5\r\n"), HTTP1_E_CHUNK_SIZE, "leading SP");
    is_int(CH(";a\r\n"), HTTP1_E_CHUNK_SIZE, "extension without size");
    is_int(CH("5g\r\n"), HTTP1_E_CHUNK_SIZE, "junk after size");
    is_int(CH("00000000000000005\r\n"), HTTP1_E_CHUNK_SIZE_OVERFLOW, "17 hex digits");
    is_int(cons, 16, "error at the 17th digit");
    is_int(CH("10000000000000000\r\n"), HTTP1_E_CHUNK_SIZE_OVERFLOW, "2^64");
    is_int(CH("5 \r\nhello\r\n"), HTTP1_E_CHUNK_EXT, "BWS without extension");
    is_int(CH("5 x\r\n"), HTTP1_E_CHUNK_EXT, "junk after BWS");
    is_int(CH("5;a\x01\r\n"), HTTP1_E_CHUNK_EXT, "CTL in extension");
    is_int(CH("5;a\x7f\r\n"), HTTP1_E_CHUNK_EXT, "DEL in extension");
    is_int(CH("5\n"), HTTP1_E_BARE_LF, "bare LF after size");
    is_int(CH("5;a\n"), HTTP1_E_BARE_LF, "bare LF after extension");
    is_int(CH("5\r\r"), HTTP1_E_BARE_CR, "bare CR after size");
    is_int(CH("5\rX"), HTTP1_E_BARE_CR, "CR then junk");
    is_int(CH("5\r\nhelloX"), HTTP1_E_CHUNK_DATA_CRLF, "no CRLF after data");
    is_int(cons, 8, "error at the byte after the data");
    is_int(CH("5\r\nhello\n"), HTTP1_E_CHUNK_DATA_CRLF, "LF after data");
    is_int(CH("5\r\nhello\rX"), HTTP1_E_CHUNK_DATA_CRLF, "CR junk after data");
    is_int(CH("5\r\nhello world\r\n"), HTTP1_E_CHUNK_DATA_CRLF, "data longer than size");
    is_int(CH("0\r\n X: a\r\n\r\n"), HTTP1_E_OBS_FOLD, "trailer obs-fold");
    is_int(CH("0\r\nX: a\r\n\tb\r\n\r\n"), HTTP1_E_OBS_FOLD, "trailer continuation");
    is_int(CH("0\r\n: a\r\n\r\n"), HTTP1_E_HDR_NAME_EMPTY, "trailer empty name");
    is_int(CH("0\r\nX : a\r\n\r\n"), HTTP1_E_HDR_NAME_WS, "trailer SP before colon");
    is_int(CH("0\r\nX\r\n\r\n"), HTTP1_E_HDR_NO_COLON, "trailer without colon");
    is_int(CH("0\r\nX(: a\r\n\r\n"), HTTP1_E_HDR_NAME, "trailer bad name");
    is_int(CH("0\r\nX: a\x01\r\n\r\n"), HTTP1_E_CTL, "trailer CTL");
    is_int(CH("0\r\nX: a\n"), HTTP1_E_BARE_LF, "trailer bare LF");
    is_int(CH("0\r\nX: a\rb"), HTTP1_E_BARE_CR, "trailer bare CR");
    is_int(CH("0\r\n\n"), HTTP1_E_BARE_LF, "final bare LF");
    is_int(CH("0\r\n\r\r"), HTTP1_E_BARE_CR, "final bare CR");
#undef CH

    /* Line and trailer limits. */
    s = "5;aaaaaaaaaa\r\nhello\r\n0\r\n\r\n";
    is_int(chunk_all(s, strlen(s), &cons, 12, 0), HTTP1_CHUNK_DONE, "size line at line_max");
    is_int(chunk_all(s, strlen(s), &cons, 11, 0), HTTP1_E_LINE_TOO_LONG, "size line too long");
    is_int(cons, 11, "error at the first byte past the limit");
    s = "0\r\nX: 0123456789\r\n\r\n";
    is_int(chunk_all(s, strlen(s), &cons, 13, 0), HTTP1_CHUNK_DONE, "trailer line at line_max");
    is_int(chunk_all(s, strlen(s), &cons, 12, 0), HTTP1_E_LINE_TOO_LONG, "trailer line too long");
    is_int(chunk_all(s, strlen(s), &cons, 0, 17), HTTP1_CHUNK_DONE, "trailers at trailer_max");
    is_int(chunk_all(s, strlen(s), &cons, 0, 16), HTTP1_E_TRAILER_TOO_LARGE, "trailers too large");
    {
        /* Many short trailer lines add up. */
        static char tr[3000];
        size_t n = 0;

        n += (size_t)sprintf(tr, "0\r\n");
        while (n < sizeof(tr) - 10)
            n += (size_t)sprintf(tr + n, "A: b\r\n");
        n += (size_t)sprintf(tr + n, "\r\n");
        is_int(chunk_all(tr, n, &cons, 0, 1000), HTTP1_E_TRAILER_TOO_LARGE,
               "many small trailer lines");
        is_int(chunk_all(tr, n, &cons, 0, 0), HTTP1_CHUNK_DONE, "within the default");
    }
    {
        /* A long run of chunk-size lines with extensions is still bounded per line. */
        static char ext[10000];

        memset(ext, 'e', sizeof(ext));
        memcpy(ext, "1;", 2);
        is_int(chunk_all(ext, sizeof(ext), &cons, 0, 0), HTTP1_E_LINE_TOO_LONG,
               "default line limit 8192");
        is_int(cons, 8192, "at 8192");
    }

    /* Huge chunk: the size is taken whole and the data skipped in bulk. */
    {
        static char data[1 << 20];
        uint64_t fed = 0;

        http1_chunked_init(&c, 0, 0);
        rc = http1_chunked_scan(&c, "ffffffffffffffff\r\n", 18, &cons);
        ok(rc == HTTP1_CHUNK_AGAIN && cons == 18, "2^64-1 byte chunk announced");
        is_u64(c.remain, UINT64_MAX, "remain is UINT64_MAX");
        for (i = 0; i < 64; i++) {
            rc = http1_chunked_scan(&c, data, sizeof(data), &cons);
            if (rc != HTTP1_CHUNK_AGAIN || cons != sizeof(data))
                break;
            fed += cons;
        }
        is_u64(fed, (uint64_t)64 << 20, "64 MiB of data skipped");
        is_u64(c.remain, UINT64_MAX - fed, "remain counts down");
        is_u64(c.data_total, fed, "data_total");

        http1_chunked_init(&c, 0, 0);
        rc = http1_chunked_scan(&c, "100000\r\n", 8, &cons);
        for (i = 0; i < 1; i++)
            rc = http1_chunked_scan(&c, data, sizeof(data), &cons);
        ok(rc == HTTP1_CHUNK_AGAIN && cons == sizeof(data), "1 MiB chunk exactly");
        rc = http1_chunked_scan(&c, "\r\n0\r\n\r\n", 7, &cons);
        ok(rc == HTTP1_CHUNK_DONE && cons == 7, "then the end");
    }

    /* Sticky states. */
    http1_chunked_init(&c, 0, 0);
    rc = http1_chunked_scan(&c, "0\r\n\r\nXYZ", 8, &cons);
    ok(rc == HTTP1_CHUNK_DONE && cons == 5 && http1_chunked_done(&c), "done");
    rc = http1_chunked_scan(&c, "XYZ", 3, &cons);
    ok(rc == HTTP1_CHUNK_DONE && cons == 0, "done is sticky, consumes nothing");
    http1_chunked_init(&c, 0, 0);
    rc = http1_chunked_scan(&c, "5\rX", 3, &cons);
    ok(rc == HTTP1_E_BARE_CR && cons == 2, "error");
    rc = http1_chunked_scan(&c, "5\r\n", 3, &cons);
    ok(rc == HTTP1_E_BARE_CR && cons == 0 && !http1_chunked_done(&c), "error is sticky");

    /* Split at every byte. */
    {
        static const char *const bodies[] = {
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            "1;a=b\r\nx\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\nU: w\r\n\r\nNEXT",
            "0\r\n\r\n",
            "5\r\nhello\r\n0\r\nX: a\x01\r\n\r\n",
            "5\r\nhelloXY",
            "00000000000000001\r\n",
            "3 ;e\r\nabc\r\n0 ; z\r\n\r\n",
        };

        for (i = 0; i < ARRAY_SIZE(bodies); i++)
            chunk_splits(bodies[i], strlen(bodies[i]), esc(bodies[i]));
    }

    /* Data ranges: strip the framing. */
    {
        const char *body = "5;x\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nT: 1\r\n\r\nrest";
        size_t blen = strlen(body), cut;
        bool all_ok = true;

        for (cut = 0; cut <= blen; cut++) {
            char out[64];
            size_t olen = 0, off, doff, dlen, total_cons = 0;
            const char *parts[2] = {body, body + cut};
            size_t lens[2] = {cut, blen - cut};
            int p, r = HTTP1_CHUNK_AGAIN;

            http1_chunked_init(&c, 0, 0);
            for (p = 0; p < 2 && r != HTTP1_CHUNK_DONE; p++) {
                char *b = dup_n(parts[p], lens[p]);

                off = 0;
                while ((r = http1_chunked_next(&c, b + off, lens[p] - off, &cons, &doff, &dlen)) ==
                       HTTP1_CHUNK_DATA) {
                    if (dlen == 0 || doff + dlen != cons || cons > lens[p] - off)
                        all_ok = false;
                    memcpy(out + olen, b + off + doff, dlen);
                    olen += dlen;
                    off += cons;
                }
                off += cons;
                total_cons += off;
                free(b);
                if (r < 0)
                    all_ok = false;
            }
            if (r != HTTP1_CHUNK_DONE || olen != 12 || memcmp(out, "hello world!", 12) != 0 ||
                total_cons != blen - 4)
                all_ok = false;
        }
        ok(all_ok, "chunked_next yields the payload at every split point");
    }
}

int main(void)
{
    test_requests();
    test_request_errors();
    test_limits();
    test_bytewise_valid();
    test_responses();
    test_targets();
    test_helpers();
    test_chunked();
    return done_testing();
}
