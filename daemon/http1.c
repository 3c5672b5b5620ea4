/* HTTP/1.x heads, request targets and chunked bodies: see http1.h for the contracts.
 *
 * A head is parsed in two passes. The search pass looks for the empty line with
 * memchr('\n') and resumes where it stopped, so a head trickling in costs linear time;
 * it also rejects a bare LF and checks the start line as soon as it is complete, so
 * garbage is refused before the whole head limit has been read. The parse pass runs
 * once over the complete head, checks every byte against a class table and derives the
 * framing. Splitting the work this way keeps the parser free of per-call state beyond
 * a few offsets and lets the caller's header array be filled only for good heads. */
#include "http1.h"

#include <arpa/inet.h>
#include <limits.h>
#include <string.h>

#include "common.h"

/* ---- byte classes, computed at compile time ---- */

#define C_TCHAR  0x01u /* token character */
#define C_FVAL   0x02u /* field-value / reason byte: VCHAR, SP, HTAB, obs-text */
#define C_TARGET 0x04u /* request-target byte: VCHAR except '#' */
#define C_HEX    0x08u
#define C_CTL    0x10u /* 0x00-0x1f and 0x7f */
#define C_HOST   0x20u /* reg-name byte accepted for a host: ALPHA DIGIT '.' '_' '-' */
#define C_USER   0x40u /* userinfo byte: unreserved, sub-delims, ':', '%' */
#define C_DIGIT  0x80u

#define IS_DIG_(c)   ((c) >= '0' && (c) <= '9')
#define IS_ALPHA_(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_TCH_(c)                                                                                 \
    (IS_DIG_(c) || IS_ALPHA_(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||         \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||          \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VCH_(c) ((c) >= 0x21 && (c) <= 0x7e)
#define IS_SUBDELIM_(c)                                                                            \
    ((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||          \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define IS_UNRES_(c)                                                                               \
    (IS_DIG_(c) || IS_ALPHA_(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~')
#define CLS_(c)                                                                                    \
    ((IS_TCH_(c) ? C_TCHAR : 0) |                                                                  \
     ((IS_VCH_(c) || (c) == ' ' || (c) == '\t' || (c) >= 0x80) ? C_FVAL : 0) |                     \
     ((IS_VCH_(c) && (c) != '#') ? C_TARGET : 0) |                                                 \
     ((IS_DIG_(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F')) ? C_HEX : 0) |      \
     (((c) < 0x20 || (c) == 0x7f) ? C_CTL : 0) |                                                   \
     ((IS_DIG_(c) || IS_ALPHA_(c) || (c) == '.' || (c) == '_' || (c) == '-') ? C_HOST : 0) |       \
     ((IS_UNRES_(c) || IS_SUBDELIM_(c) || (c) == ':' || (c) == '%') ? C_USER : 0) |                \
     (IS_DIG_(c) ? C_DIGIT : 0))
#define R4_(b)  CLS_(b), CLS_((b) + 1), CLS_((b) + 2), CLS_((b) + 3)
#define R16_(b) R4_(b), R4_((b) + 4), R4_((b) + 8), R4_((b) + 12)
#define R64_(b) R16_(b), R16_((b) + 16), R16_((b) + 32), R16_((b) + 48)

static const uint8_t cls[256] = {R64_(0), R64_(64), R64_(128), R64_(192)};

static inline bool is(char c, unsigned what)
{
    return (cls[(unsigned char)c] & what) != 0;
}
static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}
static inline unsigned char lower(unsigned char c)
{
    return (unsigned)(c - 'A') < 26u ? (unsigned char)(c | 0x20) : c;
}
static inline int hexval(unsigned char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* a[0..n) equals the NUL-terminated b, ASCII case-insensitive. */
static bool ieq(const char *a, size_t n, const char *b)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!b[i] || lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return b[n] == '\0';
}

/* The error for byte c where `err` was expected: CR/LF/CTL get their own codes so a
 * smuggling attempt is named as such in the logs. */
static int bad_byte(char c, int err)
{
    if (c == '\r')
        return HTTP1_E_BARE_CR;
    if (c == '\n')
        return HTTP1_E_BARE_LF;
    if (is(c, C_CTL))
        return HTTP1_E_CTL;
    return err;
}

/* ---- errors and reasons ---- */

static const char *const err_names[] = {
    [-HTTP1_E_BARE_LF] = "bare LF",
    [-HTTP1_E_BARE_CR] = "bare CR",
    [-HTTP1_E_CTL] = "control character",
    [-HTTP1_E_TOO_LARGE] = "head too large",
    [-HTTP1_E_METHOD] = "invalid method",
    [-HTTP1_E_REQ_LINE] = "malformed request line",
    [-HTTP1_E_TARGET] = "invalid request target",
    [-HTTP1_E_VERSION] = "malformed HTTP version",
    [-HTTP1_E_VERSION_UNSUPPORTED] = "unsupported HTTP version",
    [-HTTP1_E_STATUS_LINE] = "malformed status line",
    [-HTTP1_E_STATUS] = "invalid status code",
    [-HTTP1_E_OBS_FOLD] = "obsolete line folding",
    [-HTTP1_E_HDR_NAME_EMPTY] = "empty header name",
    [-HTTP1_E_HDR_NAME_WS] = "whitespace before colon",
    [-HTTP1_E_HDR_NAME] = "invalid header name",
    [-HTTP1_E_HDR_NO_COLON] = "header without colon",
    [-HTTP1_E_TOO_MANY_HEADERS] = "too many headers",
    [-HTTP1_E_HOST_DUP] = "duplicate Host",
    [-HTTP1_E_HOST_INVALID] = "invalid host",
    [-HTTP1_E_PORT] = "invalid port",
    [-HTTP1_E_CL_INVALID] = "invalid Content-Length",
    [-HTTP1_E_CL_OVERFLOW] = "Content-Length overflow",
    [-HTTP1_E_CL_CONFLICT] = "conflicting Content-Length",
    [-HTTP1_E_CL_TE] = "both Content-Length and Transfer-Encoding",
    [-HTTP1_E_TE_INVALID] = "invalid Transfer-Encoding",
    [-HTTP1_E_TE_UNSUPPORTED] = "unsupported Transfer-Encoding",
    [-HTTP1_E_TE_HTTP10] = "Transfer-Encoding in HTTP/1.0",
    [-HTTP1_E_CONNECT_BODY] = "CONNECT with a body",
    [-HTTP1_E_CHUNK_SIZE] = "invalid chunk size",
    [-HTTP1_E_CHUNK_SIZE_OVERFLOW] = "chunk size overflow",
    [-HTTP1_E_CHUNK_EXT] = "invalid chunk extension",
    [-HTTP1_E_CHUNK_DATA_CRLF] = "missing CRLF after chunk data",
    [-HTTP1_E_LINE_TOO_LONG] = "chunk line too long",
    [-HTTP1_E_TRAILER_TOO_LARGE] = "trailer section too large",
};

const char *http1_strerror(int err)
{
    if (err < 0 && err >= HTTP1_E_MIN && err_names[-err])
        return err_names[-err];
    return "unknown error";
}

int http1_err_status(int err)
{
    switch (err) {
    case HTTP1_E_TOO_LARGE:
    case HTTP1_E_TOO_MANY_HEADERS:
        return 431;
    case HTTP1_E_TE_UNSUPPORTED:
        return 501;
    case HTTP1_E_VERSION_UNSUPPORTED:
        return 505;
    default:
        return 400;
    }
}

static const struct {
    unsigned short status;
    const char *text;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {511, "Network Authentication Required"},
    {521, "Web Server Is Down"},
    {522, "Connection Timed Out"},
    {523, "Origin Is Unreachable"},
    {524, "A Timeout Occurred"},
    {525, "SSL Handshake Failed"},
    {526, "Invalid SSL Certificate"},
    {530, "Origin DNS Error"},
};

const char *http1_reason(unsigned status)
{
    static const char *const classes[] = {"Unknown",     "Informational", "Success",
                                          "Redirection", "Client Error",  "Server Error"};
    size_t i;

    for (i = 0; i < ARRAY_SIZE(reasons); i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return status >= 100 && status < 600 ? classes[status / 100] : classes[0];
}

/* ---- header helpers ---- */

bool http1_hdr_is(const struct http1_hdr *hdr, const char *name)
{
    return ieq(hdr->name, hdr->nlen, name);
}

bool http1_token_list_has(const char *val, size_t vlen, const char *token)
{
    const char *p = val, *e = val + vlen;

    while (p < e) {
        const char *comma = memchr(p, ',', (size_t)(e - p));
        const char *ee = comma ? comma : e;
        const char *semi = memchr(p, ';', (size_t)(ee - p));
        const char *te = semi ? semi : ee;

        while (p < te && is_ows(*p))
            p++;
        while (te > p && is_ows(te[-1]))
            te--;
        if (ieq(p, (size_t)(te - p), token))
            return true;
        p = comma ? comma + 1 : e;
    }
    return false;
}

bool http1_is_hop_by_hop(const char *name, size_t nlen)
{
    switch (nlen) {
    case 2:
        return ieq(name, nlen, "TE");
    case 7:
        return ieq(name, nlen, "Upgrade") || ieq(name, nlen, "Trailer");
    case 10:
        return ieq(name, nlen, "Connection") || ieq(name, nlen, "Keep-Alive");
    case 16:
        return ieq(name, nlen, "Proxy-Connection");
    case 17:
        return ieq(name, nlen, "Transfer-Encoding");
    case 18:
        return ieq(name, nlen, "Proxy-Authenticate");
    case 19:
        return ieq(name, nlen, "Proxy-Authorization");
    default:
        return false;
    }
}

const struct http1_hdr *http1_find_hdr(const struct http1_head *h, const char *name)
{
    size_t i;

    for (i = 0; i < h->nhdrs; i++)
        if (http1_hdr_is(&h->hdrs[i], name))
            return &h->hdrs[i];
    return NULL;
}

/* ---- hosts, ports, targets ---- */

/* 1..5 digits, 1..65535. */
static int parse_port(const char *p, size_t n, uint16_t *port)
{
    unsigned v = 0;
    size_t i;

    if (n == 0 || n > 5)
        return HTTP1_E_PORT;
    for (i = 0; i < n; i++) {
        if (!is(p[i], C_DIGIT))
            return HTTP1_E_PORT;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return HTTP1_E_PORT;
    *port = (uint16_t)v;
    return 0;
}

/* Dotted quad of decimal parts 0..255 without leading zeros: anything else that looks
 * numeric is refused rather than handed to a resolver that may read it as octal, hex
 * or a 32-bit integer. */
static bool is_ipv4(const char *p, size_t n)
{
    size_t i = 0;
    int parts = 0;

    for (;;) {
        size_t st = i;
        unsigned v = 0;

        while (i < n && i - st < 3 && is(p[i], C_DIGIT))
            v = v * 10 + (unsigned)(p[i++] - '0');
        if (i == st || v > 255 || (i - st > 1 && p[st] == '0'))
            return false;
        parts++;
        if (i == n)
            return parts == 4;
        if (p[i] != '.' || parts == 4)
            return false;
        i++;
    }
}

static bool is_ipv6(const char *p, size_t n)
{
    char tmp[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    size_t i;

    if (n < 2 || n >= sizeof(tmp))
        return false;
    for (i = 0; i < n; i++)
        if (!is(p[i], C_HEX) && p[i] != ':' && p[i] != '.')
            return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, addr) == 1;
}

/* Host name or IPv4 (see the rules in http1.h). */
static int check_name(const char *p, size_t n, enum http1_host_kind *kind)
{
    bool dot = false, digits = true;
    size_t i, label = 0;

    if (n && p[n - 1] == '.') {
        dot = true;
        n--;
    }
    if (n == 0 || n > 253)
        return HTTP1_E_HOST_INVALID;
    for (i = 0; i < n; i++) {
        if (p[i] == '.') {
            if (label == 0)
                return HTTP1_E_HOST_INVALID;
            label = 0;
            digits = true;
            continue;
        }
        if (!is(p[i], C_HOST) || ++label > 63)
            return HTTP1_E_HOST_INVALID;
        if (!is(p[i], C_DIGIT))
            digits = false;
    }
    if (label == 0)
        return HTTP1_E_HOST_INVALID;
    if (digits) {
        if (dot || !is_ipv4(p, n))
            return HTTP1_E_HOST_INVALID;
        *kind = HTTP1_HOST_IPV4;
    } else {
        *kind = HTTP1_HOST_NAME;
    }
    return 0;
}

static int parse_hostport(const char *s, size_t len, struct http1_hostport *out, bool need_port)
{
    const char *e = s + len, *p;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return HTTP1_E_HOST_INVALID;
    if (s[0] == '[') {
        p = memchr(s, ']', len);
        if (!p || !is_ipv6(s + 1, (size_t)(p - s - 1)))
            return HTTP1_E_HOST_INVALID;
        out->name = s + 1;
        out->len = (size_t)(p - s - 1);
        out->kind = HTTP1_HOST_IPV6;
        p++;
    } else {
        p = memchr(s, ':', len);
        if (!p)
            p = e;
        rc = check_name(s, (size_t)(p - s), &out->kind);
        if (rc)
            return rc;
        out->name = s;
        out->len = (size_t)(p - s);
    }
    if (p == e)
        return need_port ? HTTP1_E_PORT : 0;
    if (*p != ':')
        return HTTP1_E_HOST_INVALID;
    rc = parse_port(p + 1, (size_t)(e - p - 1), &out->port);
    if (rc)
        return rc;
    out->has_port = true;
    return 0;
}

int http1_parse_authority(const char *s, size_t len, struct http1_hostport *out)
{
    return parse_hostport(s, len, out, true);
}

int http1_parse_host(const char *s, size_t len, struct http1_hostport *out)
{
    return parse_hostport(s, len, out, false);
}

static bool check_userinfo(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!is(p[i], C_USER))
            return false;
        if (p[i] == '%') {
            if (n - i < 3 || !is(p[i + 1], C_HEX) || !is(p[i + 2], C_HEX))
                return false;
            i += 2;
        }
    }
    return true;
}

int http1_parse_absolute_url(const char *s, size_t len, struct http1_url *u)
{
    const char *p = s, *e = s + len, *a, *ae, *at;
    size_t i;
    int rc;

    memset(u, 0, sizeof(*u));
    for (i = 0; i < len; i++)
        if (!is(s[i], C_TARGET))
            return HTTP1_E_TARGET;
    if (len == 0 || !IS_ALPHA_(*p))
        return HTTP1_E_TARGET;
    while (p < e && (IS_ALPHA_(*p) || IS_DIG_(*p) || *p == '+' || *p == '-' || *p == '.'))
        p++;
    if (e - p < 3 || memcmp(p, "://", 3) != 0)
        return HTTP1_E_TARGET;
    u->scheme_str = s;
    u->scheme_len = (size_t)(p - s);
    if (ieq(s, u->scheme_len, "http"))
        u->scheme = HTTP1_SCHEME_HTTP;
    else if (ieq(s, u->scheme_len, "https"))
        u->scheme = HTTP1_SCHEME_HTTPS;
    else if (ieq(s, u->scheme_len, "ftp"))
        u->scheme = HTTP1_SCHEME_FTP;
    a = p + 3;
    for (ae = a; ae < e && *ae != '/' && *ae != '?'; ae++)
        ;
    at = memchr(a, '@', (size_t)(ae - a));
    if (at) {
        /* Only one '@': "a@b@c" has no single reading. */
        if (memchr(at + 1, '@', (size_t)(ae - at - 1)) || !check_userinfo(a, (size_t)(at - a)))
            return HTTP1_E_TARGET;
        u->has_userinfo = true;
        u->userinfo = a;
        u->userinfo_len = (size_t)(at - a);
        a = at + 1;
    }
    rc = parse_hostport(a, (size_t)(ae - a), &u->host, false);
    if (rc)
        return rc;
    if (!u->host.has_port)
        u->host.port = u->scheme == HTTP1_SCHEME_HTTP    ? 80
                       : u->scheme == HTTP1_SCHEME_HTTPS ? 443
                       : u->scheme == HTTP1_SCHEME_FTP   ? 21
                                                         : 0;
    if (ae == e) {
        u->path = "/";
        u->path_len = 1;
    } else {
        u->path = ae;
        u->path_len = (size_t)(e - ae);
        u->path_needs_slash = *ae == '?';
    }
    return 0;
}

/* ---- the head search pass ---- */

void http1_scan_init(struct http1_scan *s, size_t max_head)
{
    memset(s, 0, sizeof(*s));
    if (max_head == 0)
        max_head = HTTP1_MAX_HEAD_DEFAULT;
    s->max_head = MIN(max_head, (size_t)INT_MAX);
}

static int parse_request_line(const char *p, const char *e, struct http1_head *h);
static int parse_status_line(const char *p, const char *e, struct http1_head *h);

/* An incomplete start line p[0..n) that can only fail is refused now (a TLS hello or
 * junk sent to a plain port), with the error the complete line would get: a request
 * starts with a method byte, a response with "HTTP/". CR and LF give no verdict yet:
 * the line may be empty, or the CR may end it. */
static int early_start_check(const char *p, size_t n, bool req)
{
    size_t k;

    for (k = 0; k < MIN(n, 5); k++) {
        char c = p[k];

        if (c == '\r' || c == '\n')
            break;
        if (req)
            return is(c, C_TCHAR) ? 0 : bad_byte(c, HTTP1_E_METHOD);
        if (c != "HTTP/"[k])
            return bad_byte(c, HTTP1_E_VERSION);
    }
    return 0;
}

/* Search buf for the end of the head. Returns the head length, 0 or an error. */
static int scan_head(struct http1_scan *s, const char *buf, size_t len, bool req, size_t max_hdrs)
{
    size_t lim;
    int rc;

    if (len < s->off || (s->end && len < s->end))
        http1_scan_init(s, s->max_head);
    if (s->end)
        return (int)s->end;
    lim = MIN(len, s->max_head);
    while (s->off < lim) {
        const char *lf = memchr(buf + s->off, '\n', lim - s->off);
        size_t i;

        if (!lf) {
            s->off = lim;
            break;
        }
        i = (size_t)(lf - buf);
        if (i == s->line || buf[i - 1] != '\r') {
            /* The first bad byte of a start line wins, as in the complete line. */
            if (s->line == s->start && (rc = early_start_check(buf + s->start, i - s->start, req)))
                return rc;
            return HTTP1_E_BARE_LF;
        }
        s->off = i + 1;
        if (i - 1 == s->line) { /* empty line */
            if (s->line != s->start) {
                s->end = i + 1;
                return (int)s->end;
            }
            if (!req)
                return HTTP1_E_STATUS_LINE;
            s->line = s->start = i + 1;
            continue;
        }
        if (s->line == s->start) {
            /* The start line parsers look at every byte, bare CR included. */
            struct http1_head tmp;

            rc = req ? parse_request_line(buf + s->line, buf + i - 1, &tmp)
                     : parse_status_line(buf + s->line, buf + i - 1, &tmp);
            if (rc)
                return rc;
        } else {
            /* A CR inside a complete header line can never become valid. */
            if (memchr(buf + s->line, '\r', i - 1 - s->line))
                return HTTP1_E_BARE_CR;
            if (++s->nlines > max_hdrs)
                return HTTP1_E_TOO_MANY_HEADERS;
        }
        s->line = i + 1;
    }
    if (s->line == s->start && (rc = early_start_check(buf + s->start, lim - s->start, req)))
        return rc;
    return lim >= s->max_head ? HTTP1_E_TOO_LARGE : 0;
}

/* ---- start lines ---- */

static const char *const method_names[] = {
    [HTTP1_M_GET] = "GET",         [HTTP1_M_HEAD] = "HEAD",     [HTTP1_M_POST] = "POST",
    [HTTP1_M_PUT] = "PUT",         [HTTP1_M_DELETE] = "DELETE", [HTTP1_M_CONNECT] = "CONNECT",
    [HTTP1_M_OPTIONS] = "OPTIONS", [HTTP1_M_TRACE] = "TRACE",   [HTTP1_M_PATCH] = "PATCH",
};

/* Methods are case-sensitive (RFC 9110 9.1): "get" is some other method. */
static enum http1_method method_id(const char *m, size_t n)
{
    size_t i;

    for (i = 1; i < ARRAY_SIZE(method_names); i++)
        if (strlen(method_names[i]) == n && memcmp(m, method_names[i], n) == 0)
            return (enum http1_method)i;
    return HTTP1_M_OTHER;
}

/* "HTTP/" DIGIT "." DIGIT, exactly. Checked left to right so the error is that of the
 * first bad byte, whatever follows it (the early check in scan_head relies on it). */
static int parse_version(const char *p, const char *e, uint8_t *minor)
{
    static const char pat[] = "HTTP/9.9"; /* 9 = any digit */
    size_t k;

    for (k = 0; k < 8; k++) {
        if (p + k == e)
            return HTTP1_E_VERSION;
        if (pat[k] == '9' ? !is(p[k], C_DIGIT) : p[k] != pat[k])
            return bad_byte(p[k], HTTP1_E_VERSION);
    }
    if (p + 8 != e)
        return bad_byte(p[8], HTTP1_E_VERSION);
    if (p[5] != '1')
        return HTTP1_E_VERSION_UNSUPPORTED;
    /* RFC 9110 2.5: a higher minor version is processed as the highest we know. */
    *minor = p[7] == '0' ? 0 : 1;
    return 0;
}

/* Which forms of request-target the method allows, checked fully (URL and authority
 * parsers included) so a caller never sees a head with a target it cannot use. */
static int check_target(struct http1_head *h)
{
    const char *t = h->target;
    size_t n = h->target_len;
    struct http1_hostport hp;
    struct http1_url url;

    if (h->method == HTTP1_M_CONNECT) {
        h->form = HTTP1_FORM_AUTHORITY;
        return http1_parse_authority(t, n, &hp);
    }
    if (t[0] == '/') {
        h->form = HTTP1_FORM_ORIGIN;
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        h->form = HTTP1_FORM_ASTERISK;
        return h->method == HTTP1_M_OPTIONS ? 0 : HTTP1_E_TARGET;
    }
    h->form = HTTP1_FORM_ABSOLUTE;
    return http1_parse_absolute_url(t, n, &url);
}

/* p..e is the line without its CRLF. */
static int parse_request_line(const char *p, const char *e, struct http1_head *h)
{
    const char *m = p, *t, *v;
    size_t i;
    int rc;

    while (p < e && is(*p, C_TCHAR))
        p++;
    if (p == e)
        return HTTP1_E_REQ_LINE;
    if (*p != ' ' || p == m)
        return bad_byte(*p, HTTP1_E_METHOD);
    h->method_str = m;
    h->method_len = (size_t)(p - m);
    h->method = method_id(m, h->method_len);
    t = ++p;
    v = memrchr(t, ' ', (size_t)(e - t));
    if (!v || v == t || t[0] == ' ' || v[-1] == ' ')
        return HTTP1_E_REQ_LINE;
    h->target = t;
    h->target_len = (size_t)(v - t);
    for (i = 0; i < h->target_len; i++)
        if (!is(t[i], C_TARGET))
            return t[i] == ' ' ? HTTP1_E_TARGET : bad_byte(t[i], HTTP1_E_TARGET);
    rc = parse_version(v + 1, e, &h->version_minor);
    if (rc)
        return rc;
    return check_target(h);
}

static int parse_status_line(const char *p, const char *e, struct http1_head *h)
{
    const char *sp = memchr(p, ' ', (size_t)(e - p)), *q;
    int rc, i;

    rc = parse_version(p, sp ? sp : e, &h->version_minor);
    if (rc)
        return rc;
    if (!sp)
        return HTTP1_E_STATUS_LINE;
    q = sp + 1;
    for (i = 0; i < 3; i++)
        if (q + i == e || !is(q[i], C_DIGIT))
            return q + i == e ? HTTP1_E_STATUS : bad_byte(q[i], HTTP1_E_STATUS);
    h->status = (unsigned)((q[0] - '0') * 100 + (q[1] - '0') * 10 + (q[2] - '0'));
    if (h->status < 100)
        return HTTP1_E_STATUS;
    q += 3;
    /* "HTTP/1.1 200" without the SP before an empty reason is common and unambiguous. */
    if (q < e && *q++ != ' ')
        return bad_byte(q[-1], HTTP1_E_STATUS);
    h->reason = q;
    h->reason_len = (size_t)(e - q);
    for (; q < e; q++)
        if (!is(*q, C_FVAL))
            return bad_byte(*q, HTTP1_E_CTL);
    return 0;
}

/* ---- header fields ---- */

/* p..e is the line without its CRLF (never empty). */
static int parse_field(const char *p, const char *e, struct http1_hdr *hdr)
{
    const char *n = p, *v;

    if (is_ows(*p))
        return HTTP1_E_OBS_FOLD;
    if (*p == ':')
        return HTTP1_E_HDR_NAME_EMPTY;
    while (p < e && is(*p, C_TCHAR))
        p++;
    if (p == e)
        return HTTP1_E_HDR_NO_COLON;
    if (*p != ':')
        return is_ows(*p) ? HTTP1_E_HDR_NAME_WS : bad_byte(*p, HTTP1_E_HDR_NAME);
    hdr->name = n;
    hdr->nlen = (size_t)(p - n);
    for (p++; p < e && is_ows(*p); p++)
        ;
    for (v = p; p < e; p++)
        if (!is(*p, C_FVAL))
            return bad_byte(*p, HTTP1_E_CTL);
    while (e > v && is_ows(e[-1]))
        e--;
    hdr->val = v;
    hdr->vlen = (size_t)(e - v);
    return 0;
}

/* What the framing headers said, collected over all lines. */
struct framing {
    uint64_t cl;
    unsigned ncl;      /* Content-Length values seen */
    unsigned nte;      /* transfer codings seen */
    bool te;           /* a Transfer-Encoding header was seen */
    bool chunked;      /* "chunked" seen */
    bool chunked_last; /* ... and it is the final coding so far */
    bool te_other;     /* a coding other than chunked */
};

/* Content-Length: 1*DIGIT, or a list of identical values ("5, 5", RFC 9110 8.6). */
static int parse_cl(const char *p, size_t n, struct framing *f)
{
    const char *e = p + n;

    for (;;) {
        uint64_t x = 0;

        while (p < e && is_ows(*p))
            p++;
        if (p == e || !is(*p, C_DIGIT))
            return HTTP1_E_CL_INVALID;
        for (; p < e && is(*p, C_DIGIT); p++) {
            unsigned d = (unsigned)(*p - '0');

            if (x > (UINT64_MAX - d) / 10)
                return HTTP1_E_CL_OVERFLOW;
            x = x * 10 + d;
        }
        while (p < e && is_ows(*p))
            p++;
        if (f->ncl && x != f->cl)
            return HTTP1_E_CL_CONFLICT;
        f->cl = x;
        f->ncl++;
        if (p == e)
            return 0;
        if (*p++ != ',')
            return HTTP1_E_CL_INVALID;
    }
}

/* Transfer-Encoding: a list of codings; order matters across several headers. */
static int parse_te(const char *p, size_t n, struct framing *f)
{
    const char *e = p + n;

    f->te = true;
    while (p < e) {
        const char *t;
        size_t tlen;
        bool params = false;

        if (is_ows(*p) || *p == ',') { /* empty list elements are allowed (RFC 9110 5.6.1) */
            p++;
            continue;
        }
        for (t = p; p < e && is(*p, C_TCHAR); p++)
            ;
        tlen = (size_t)(p - t);
        if (tlen == 0)
            return HTTP1_E_TE_INVALID;
        while (p < e && is_ows(*p))
            p++;
        if (p < e && *p == ';') {
            params = true;
            for (; p < e && *p != ','; p++)
                if (*p == '"')
                    return HTTP1_E_TE_INVALID;
        }
        if (p < e && *p != ',')
            return HTTP1_E_TE_INVALID;
        f->nte++;
        if (ieq(t, tlen, "chunked")) {
            if (params || f->chunked)
                return HTTP1_E_TE_INVALID;
            f->chunked = f->chunked_last = true;
        } else {
            f->te_other = true;
            f->chunked_last = false;
        }
    }
    return 0;
}

static uint32_t conn_flags(const char *v, size_t n)
{
    uint32_t fl = 0;

    if (http1_token_list_has(v, n, "close"))
        fl |= HTTP1_F_CONN_CLOSE;
    if (http1_token_list_has(v, n, "keep-alive"))
        fl |= HTTP1_F_CONN_KEEPALIVE;
    if (http1_token_list_has(v, n, "upgrade"))
        fl |= HTTP1_F_CONN_UPGRADE;
    return fl;
}

/* Interpret one header. */
static int header_semantics(struct http1_head *h, const struct http1_hdr *hd, bool req,
                            struct framing *f)
{
    int rc;

    switch (hd->nlen) {
    case 2:
        if (ieq(hd->name, 2, "TE") && http1_token_list_has(hd->val, hd->vlen, "trailers"))
            h->flags |= HTTP1_F_TE_TRAILERS;
        break;
    case 4:
        if (req && ieq(hd->name, 4, "Host")) {
            struct http1_hostport hp;

            if (h->host)
                return HTTP1_E_HOST_DUP;
            h->host = hd->val;
            h->host_len = hd->vlen;
            /* An empty Host is valid when the target has no authority. */
            if (hd->vlen && (rc = http1_parse_host(hd->val, hd->vlen, &hp)) != 0)
                return rc;
        }
        break;
    case 6:
        if (req && ieq(hd->name, 6, "Expect")) {
            /* RFC 9110 10.1.1: 100-continue in an HTTP/1.0 request is ignored. */
            if (!ieq(hd->val, hd->vlen, "100-continue"))
                h->flags |= HTTP1_F_EXPECT_OTHER;
            else if (h->version_minor)
                h->flags |= HTTP1_F_EXPECT_100;
        }
        break;
    case 7:
        if (ieq(hd->name, 7, "Upgrade"))
            h->flags |= HTTP1_F_UPGRADE;
        break;
    case 10:
        if (ieq(hd->name, 10, "Connection"))
            h->flags |= conn_flags(hd->val, hd->vlen);
        break;
    case 14:
        if (ieq(hd->name, 14, "Content-Length"))
            return parse_cl(hd->val, hd->vlen, f);
        break;
    case 16:
        if (ieq(hd->name, 16, "Proxy-Connection"))
            h->flags |= HTTP1_F_PROXY_CONN;
        break;
    case 17:
        if (ieq(hd->name, 17, "Transfer-Encoding"))
            return parse_te(hd->val, hd->vlen, f);
        break;
    default:
        break;
    }
    return 0;
}

/* Check the framing headers together; sets HAS_CL/HAS_TE. */
static int check_framing(struct http1_head *h, const struct framing *f, bool req)
{
    if (f->ncl) {
        h->flags |= HTTP1_F_HAS_CL;
        if (f->ncl > 1)
            h->flags |= HTTP1_F_CL_MERGED;
        h->content_length = f->cl;
    }
    if (!f->te)
        return 0;
    if (f->ncl)
        return HTTP1_E_CL_TE;
    if (h->version_minor == 0)
        return HTTP1_E_TE_HTTP10;
    if (f->nte == 0 || !f->chunked_last)
        return HTTP1_E_TE_INVALID;
    if (req && f->te_other)
        return HTTP1_E_TE_UNSUPPORTED;
    h->flags |= HTTP1_F_HAS_TE;
    return 0;
}

/* Parse the complete head buf[0..end): start line at `start`, then header lines. */
static int parse_head(const struct http1_scan *s, const char *buf, bool req,
                      enum http1_method req_method, struct http1_head *h, struct http1_hdr *hdrs,
                      size_t max_hdrs)
{
    const char *p = buf + s->start, *end = buf + s->end - 2, *lf;
    struct framing f = {0};
    bool ka;
    int rc;

    memset(h, 0, sizeof(*h));
    lf = memchr(p, '\n', (size_t)(end - p));
    rc = req ? parse_request_line(p, lf - 1, h) : parse_status_line(p, lf - 1, h);
    if (rc)
        return rc;
    h->hdrs = hdrs;
    for (p = lf + 1; p < end; p = lf + 1) {
        struct http1_hdr *hd;

        lf = memchr(p, '\n', (size_t)(end + 2 - p));
        if (h->nhdrs == max_hdrs)
            return HTTP1_E_TOO_MANY_HEADERS;
        hd = &hdrs[h->nhdrs];
        rc = parse_field(p, lf - 1, hd);
        if (rc)
            return rc;
        h->nhdrs++;
        rc = header_semantics(h, hd, req, &f);
        if (rc)
            return rc;
    }
    rc = check_framing(h, &f, req);
    if (rc)
        return rc;
    h->head_len = s->end;

    if (req) {
        if (h->method == HTTP1_M_CONNECT) {
            /* A CONNECT request has no content (RFC 9110 9.3.6): any framing that says
             * otherwise is a smuggling vector into the tunnel. */
            if (f.te || f.cl)
                return HTTP1_E_CONNECT_BODY;
            h->body = HTTP1_BODY_NONE;
        } else {
            h->body = f.te ? HTTP1_BODY_CHUNKED : f.ncl ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
        }
        if (!h->host && h->version_minor == 1)
            h->flags |= HTTP1_F_NO_HOST;
    } else if (h->status < 200) {
        h->body = h->status == 101 ? HTTP1_BODY_TUNNEL : HTTP1_BODY_NONE;
    } else if (req_method == HTTP1_M_HEAD || h->status == 204 || h->status == 304) {
        h->body = HTTP1_BODY_NONE;
    } else if (req_method == HTTP1_M_CONNECT && h->status < 300) {
        h->body = HTTP1_BODY_TUNNEL;
    } else {
        h->body = f.te ? HTTP1_BODY_CHUNKED : f.ncl ? HTTP1_BODY_LENGTH : HTTP1_BODY_UNTIL_CLOSE;
    }

    /* RFC 9112 9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive". */
    if (h->flags & HTTP1_F_CONN_CLOSE)
        ka = false;
    else
        ka = h->version_minor == 1 || (h->flags & HTTP1_F_CONN_KEEPALIVE);
    if (h->body == HTTP1_BODY_UNTIL_CLOSE || h->body == HTTP1_BODY_TUNNEL)
        ka = false;
    if (ka)
        h->flags |= HTTP1_F_KEEP_ALIVE;
    return (int)s->end;
}

static int parse_any(struct http1_scan *s, const char *buf, size_t len, bool req,
                     enum http1_method req_method, struct http1_head *h, struct http1_hdr *hdrs,
                     size_t max_hdrs)
{
    struct http1_scan local;
    int rc;

    if (!s) {
        http1_scan_init(&local, 0);
        s = &local;
    }
    if (s->err)
        return s->err;
    rc = scan_head(s, buf, len, req, max_hdrs);
    if (rc > 0)
        rc = parse_head(s, buf, req, req_method, h, hdrs, max_hdrs);
    if (rc < 0)
        s->err = rc;
    return rc;
}

int http1_parse_request(struct http1_scan *s, const char *buf, size_t len, struct http1_head *h,
                        struct http1_hdr *hdrs, size_t max_hdrs)
{
    return parse_any(s, buf, len, true, HTTP1_M_OTHER, h, hdrs, max_hdrs);
}

int http1_parse_response(struct http1_scan *s, const char *buf, size_t len,
                         enum http1_method req_method, struct http1_head *h, struct http1_hdr *hdrs,
                         size_t max_hdrs)
{
    return parse_any(s, buf, len, false, req_method, h, hdrs, max_hdrs);
}

/* ---- chunked bodies ---- */

enum {
    CH_SIZE = 0, /* chunk-size digits (ndigits so far) */
    CH_SIZE_WS,  /* BWS after the digits: only ';' may follow */
    CH_EXT,      /* chunk extensions up to CR */
    CH_SIZE_LF,  /* CR of the size line seen */
    CH_DATA,     /* remain bytes of chunk data */
    CH_DATA_CR,  /* CRLF after the data */
    CH_DATA_LF,
    CH_TR_START, /* start of a trailer line, or the final CRLF */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,    /* CR of a trailer line seen */
    CH_FINAL_LF, /* CR of the final empty line seen */
    CH_ERROR = 0xfe,
    CH_DONE = HTTP1_CHUNK_ST_DONE,
};

void http1_chunked_init(struct http1_chunked *c, uint32_t line_max, uint32_t trailer_max)
{
    memset(c, 0, sizeof(*c));
    c->line_max = line_max ? line_max : HTTP1_CHUNK_LINE_MAX_DEFAULT;
    c->trailer_max = trailer_max ? trailer_max : HTTP1_TRAILER_MAX_DEFAULT;
}

/* One framing byte; returns 0, HTTP1_CHUNK_DONE or an error. */
static int chunk_byte(struct http1_chunked *c, char ch)
{
    switch (c->state) {
    case CH_SIZE:
        if (ch == '\r' && c->ndigits) {
            c->state = CH_SIZE_LF;
            return 0;
        }
        if (++c->line_len > c->line_max)
            return HTTP1_E_LINE_TOO_LONG;
        if (is(ch, C_HEX)) {
            if (++c->ndigits > 16)
                return HTTP1_E_CHUNK_SIZE_OVERFLOW;
            c->remain = c->remain << 4 | (uint64_t)hexval((unsigned char)ch);
        } else if (c->ndigits && ch == ';') {
            c->state = CH_EXT;
        } else if (c->ndigits && is_ows(ch)) {
            c->state = CH_SIZE_WS;
        } else {
            return ch == '\n' ? HTTP1_E_BARE_LF : HTTP1_E_CHUNK_SIZE;
        }
        return 0;
    case CH_SIZE_WS:
        if (++c->line_len > c->line_max)
            return HTTP1_E_LINE_TOO_LONG;
        if (ch == ';')
            c->state = CH_EXT;
        else if (!is_ows(ch))
            return ch == '\n' ? HTTP1_E_BARE_LF : HTTP1_E_CHUNK_EXT;
        return 0;
    case CH_EXT:
        if (ch == '\r') {
            c->state = CH_SIZE_LF;
            return 0;
        }
        if (++c->line_len > c->line_max)
            return HTTP1_E_LINE_TOO_LONG;
        if (!is(ch, C_FVAL))
            return ch == '\n' ? HTTP1_E_BARE_LF : HTTP1_E_CHUNK_EXT;
        return 0;
    case CH_SIZE_LF:
        if (ch != '\n')
            return HTTP1_E_BARE_CR;
        c->line_len = 0;
        c->ndigits = 0;
        c->state = c->remain ? CH_DATA : CH_TR_START;
        return 0;
    case CH_DATA_CR:
        if (ch != '\r')
            return HTTP1_E_CHUNK_DATA_CRLF;
        c->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (ch != '\n')
            return HTTP1_E_CHUNK_DATA_CRLF;
        c->state = CH_SIZE;
        return 0;
    default:
        break;
    }

    /* Trailer section: header lines validated like a head's, then CRLF. */
    if (++c->trailer_len > c->trailer_max)
        return HTTP1_E_TRAILER_TOO_LARGE;
    if (ch != '\r' && ch != '\n' && ++c->line_len > c->line_max)
        return HTTP1_E_LINE_TOO_LONG;
    switch (c->state) {
    case CH_TR_START:
        if (ch == '\r')
            c->state = CH_FINAL_LF;
        else if (is_ows(ch))
            return HTTP1_E_OBS_FOLD;
        else if (ch == ':')
            return HTTP1_E_HDR_NAME_EMPTY;
        else if (is(ch, C_TCHAR))
            c->state = CH_TR_NAME;
        else
            return bad_byte(ch, HTTP1_E_HDR_NAME);
        return 0;
    case CH_TR_NAME:
        if (ch == ':')
            c->state = CH_TR_VALUE;
        else if (ch == '\r')
            return HTTP1_E_HDR_NO_COLON;
        else if (is_ows(ch))
            return HTTP1_E_HDR_NAME_WS;
        else if (!is(ch, C_TCHAR))
            return bad_byte(ch, HTTP1_E_HDR_NAME);
        return 0;
    case CH_TR_VALUE:
        if (ch == '\r')
            c->state = CH_TR_LF;
        else if (!is(ch, C_FVAL))
            return bad_byte(ch, HTTP1_E_CTL);
        return 0;
    case CH_TR_LF:
        if (ch != '\n')
            return HTTP1_E_BARE_CR;
        c->line_len = 0;
        c->state = CH_TR_START;
        return 0;
    case CH_FINAL_LF:
        if (ch != '\n')
            return HTTP1_E_BARE_CR;
        c->state = CH_DONE;
        return HTTP1_CHUNK_DONE;
    default:
        BUG_ON(1);
        return HTTP1_E_CHUNK_SIZE;
    }
}

static int chunked_run(struct http1_chunked *c, const char *buf, size_t len, size_t *consumed,
                       size_t *data_off, size_t *data_len)
{
    size_t i = 0;
    int rc;

    *consumed = 0;
    if (c->state == CH_DONE)
        return HTTP1_CHUNK_DONE;
    if (c->state == CH_ERROR)
        return c->err;
    while (i < len) {
        if (c->state == CH_DATA) {
            /* The bulk path: chunk data is never looked at. */
            size_t n = len - i;

            if (n > c->remain)
                n = (size_t)c->remain;
            i += n;
            c->remain -= n;
            c->data_total += n;
            if (c->remain == 0)
                c->state = CH_DATA_CR;
            if (data_off) {
                *data_off = i - n;
                *data_len = n;
                *consumed = i;
                return HTTP1_CHUNK_DATA;
            }
            continue;
        }
        rc = chunk_byte(c, buf[i]);
        if (rc < 0) {
            c->state = CH_ERROR;
            c->err = (int8_t)rc;
            *consumed = i;
            return rc;
        }
        i++;
        if (rc == HTTP1_CHUNK_DONE) {
            *consumed = i;
            return HTTP1_CHUNK_DONE;
        }
    }
    *consumed = i;
    return HTTP1_CHUNK_AGAIN;
}

int http1_chunked_scan(struct http1_chunked *c, const char *buf, size_t len, size_t *consumed)
{
    return chunked_run(c, buf, len, consumed, NULL, NULL);
}

int http1_chunked_next(struct http1_chunked *c, const char *buf, size_t len, size_t *consumed,
                       size_t *data_off, size_t *data_len)
{
    return chunked_run(c, buf, len, consumed, data_off, data_len);
}
