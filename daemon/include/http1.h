/* Strict, bounded, allocation-free HTTP/1.x parsing for both directions of the proxy.
 *
 * Nothing here allocates, copies payload bytes or keeps pointers past the call: every
 * pointer a parser returns points into the caller's buffer and is valid as long as that
 * buffer is. The head parsers find the end of a head with memchr() and then parse it
 * once; the chunked scanner skips chunk data in bulk and only looks at framing bytes.
 *
 * Strictness (see DESIGN.md "Parsers are strict"): anything ambiguous is an error, never
 * guessed at. Errors are negative HTTP1_E_* codes; http1_strerror() names them and
 * http1_err_status() gives the status a server should answer with. */
#ifndef PROXYD_HTTP1_H
#define PROXYD_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP1_MAX_HEAD_DEFAULT       65536 /* http1_scan_init(s, 0) */
#define HTTP1_CHUNK_LINE_MAX_DEFAULT 8192  /* body_line_max_length */
#define HTTP1_TRAILER_MAX_DEFAULT    32768 /* whole trailer section */

/* Errors. Every parser returns one of these (negative) or a non-negative result. */
enum http1_err {
    HTTP1_E_BARE_LF = -1,              /* LF not preceded by CR (head or chunk framing) */
    HTTP1_E_BARE_CR = -2,              /* CR not followed by LF */
    HTTP1_E_CTL = -3,                  /* NUL/CTL/DEL in the start line or a header (HTAB is
                                        * allowed in values and reasons only) */
    HTTP1_E_TOO_LARGE = -4,            /* head not complete within max_head bytes */
    HTTP1_E_METHOD = -5,               /* empty method or a non-tchar in it */
    HTTP1_E_REQ_LINE = -6,             /* request line not "method SP target SP version" */
    HTTP1_E_TARGET = -7,               /* bad byte in target (>= 0x80, '#', SP inside), form
                                        * not allowed for the method, malformed URL */
    HTTP1_E_VERSION = -8,              /* version not "HTTP/" DIGIT "." DIGIT */
    HTTP1_E_VERSION_UNSUPPORTED = -9,  /* well-formed version with major != 1 */
    HTTP1_E_STATUS_LINE = -10,         /* status line not "version SP code [SP reason]", or
                                        * an empty line before it */
    HTTP1_E_STATUS = -11,              /* status code not three digits in 100..999 */
    HTTP1_E_OBS_FOLD = -12,            /* header line starting with SP or HTAB */
    HTTP1_E_HDR_NAME_EMPTY = -13,      /* header line starting with ':' */
    HTTP1_E_HDR_NAME_WS = -14,         /* whitespace between header name and ':' */
    HTTP1_E_HDR_NAME = -15,            /* non-tchar in a header name */
    HTTP1_E_HDR_NO_COLON = -16,        /* header line without ':' */
    HTTP1_E_TOO_MANY_HEADERS = -17,    /* more header lines than the caller's array holds */
    HTTP1_E_HOST_DUP = -18,            /* more than one Host header in a request */
    HTTP1_E_HOST_INVALID = -19,        /* Host value / URL host / authority host is not a
                                        * valid name, IPv4 or bracketed IPv6 */
    HTTP1_E_PORT = -20,                /* port empty, not digits, 0 or > 65535; CONNECT
                                        * authority without port */
    HTTP1_E_CL_INVALID = -21,          /* Content-Length element empty or not all digits */
    HTTP1_E_CL_OVERFLOW = -22,         /* Content-Length > UINT64_MAX */
    HTTP1_E_CL_CONFLICT = -23,         /* Content-Length values that differ */
    HTTP1_E_CL_TE = -24,               /* both Content-Length and Transfer-Encoding */
    HTTP1_E_TE_INVALID = -25,          /* Transfer-Encoding malformed, empty, chunked twice,
                                        * with parameters, or not the final coding */
    HTTP1_E_TE_UNSUPPORTED = -26,      /* request Transfer-Encoding other than "chunked" */
    HTTP1_E_TE_HTTP10 = -27,           /* Transfer-Encoding in an HTTP/1.0 message */
    HTTP1_E_CONNECT_BODY = -28,        /* CONNECT request with Transfer-Encoding or a
                                        * non-zero Content-Length */
    HTTP1_E_CHUNK_SIZE = -29,          /* chunk-size line without hex digits, bad byte */
    HTTP1_E_CHUNK_SIZE_OVERFLOW = -30, /* more than 16 hex digits */
    HTTP1_E_CHUNK_EXT = -31,           /* CTL in a chunk extension, BWS not before ';' */
    HTTP1_E_CHUNK_DATA_CRLF = -32,     /* chunk data not followed by CRLF */
    HTTP1_E_LINE_TOO_LONG = -33,       /* chunk-size or trailer line longer than line_max */
    HTTP1_E_TRAILER_TOO_LARGE = -34,   /* trailer section longer than trailer_max */
};
#define HTTP1_E_MIN HTTP1_E_TRAILER_TOO_LARGE

/* Short constant name of an error ("bare LF"), "unknown error" for anything else. */
const char *http1_strerror(int err);
/* Status a server answers an error in a *request* with: 400, 431 (too large, too many
 * headers), 501 (unsupported transfer coding), 505 (version). 400 for unknown codes. */
int http1_err_status(int err);

/* ---- heads ---- */

enum http1_method {
    HTTP1_M_OTHER = 0, /* any other valid token: see method/method_len */
    HTTP1_M_GET,
    HTTP1_M_HEAD,
    HTTP1_M_POST,
    HTTP1_M_PUT,
    HTTP1_M_DELETE,
    HTTP1_M_CONNECT,
    HTTP1_M_OPTIONS,
    HTTP1_M_TRACE,
    HTTP1_M_PATCH,
};

enum http1_target_form {
    HTTP1_FORM_ORIGIN = 0, /* "/path?query" */
    HTTP1_FORM_ABSOLUTE,   /* "scheme://authority/path?query": see http1_parse_absolute_url */
    HTTP1_FORM_AUTHORITY,  /* "host:port", CONNECT only: see http1_parse_authority */
    HTTP1_FORM_ASTERISK,   /* "*", OPTIONS only */
};

/* How the message body is delimited (RFC 9112 section 6.3). */
enum http1_body {
    HTTP1_BODY_NONE = 0,    /* no body follows the head */
    HTTP1_BODY_LENGTH,      /* content_length bytes follow (may be 0) */
    HTTP1_BODY_CHUNKED,     /* chunked coding follows: use struct http1_chunked */
    HTTP1_BODY_UNTIL_CLOSE, /* responses only: body ends when the server closes */
    HTTP1_BODY_TUNNEL,      /* responses only: 2xx to CONNECT or 101; raw bytes follow */
};

/* Flags found in the head (h->flags). CL_MERGED: several identical Content-Length
 * values were merged, forward one regenerated header. KEEP_ALIVE is derived: the
 * connection may carry another message after this one (RFC 9112 9.3: 1.1 unless
 * "close", 1.0 only with "keep-alive"); for responses it is cleared for UNTIL_CLOSE and
 * TUNNEL. Proxy-Connection does not count. */
#define HTTP1_F_CONN_CLOSE     0x0001u /* Connection has "close" */
#define HTTP1_F_CONN_KEEPALIVE 0x0002u /* Connection has "keep-alive" */
#define HTTP1_F_CONN_UPGRADE   0x0004u /* Connection has "upgrade" */
#define HTTP1_F_PROXY_CONN     0x0008u /* a Proxy-Connection header is present */
#define HTTP1_F_EXPECT_100     0x0010u /* HTTP/1.1 request with "Expect: 100-continue" */
#define HTTP1_F_EXPECT_OTHER   0x0020u /* Expect with anything else (417 candidate) */
#define HTTP1_F_TE_TRAILERS    0x0040u /* TE has "trailers" */
#define HTTP1_F_NO_HOST        0x0080u /* HTTP/1.1 request without Host: proxy decides */
#define HTTP1_F_HAS_CL         0x0100u /* Content-Length present (valid) */
#define HTTP1_F_CL_MERGED      0x0200u /* several identical Content-Length values */
#define HTTP1_F_HAS_TE         0x0400u /* Transfer-Encoding present (valid) */
#define HTTP1_F_UPGRADE        0x0800u /* an Upgrade header is present */
#define HTTP1_F_KEEP_ALIVE     0x1000u /* the connection persists after this message */

/* One header field. Both pointers point into the caller's buffer (borrowed). The value
 * is trimmed of leading and trailing SP/HTAB and may be empty (vlen 0). */
struct http1_hdr {
    const char *name; /* borrowed: caller's buffer */
    size_t nlen;
    const char *val; /* borrowed: caller's buffer */
    size_t vlen;
};

/* A parsed head. Filled only when a parser returns > 0; every pointer is borrowed from
 * the buffer passed to the parser. */
struct http1_head {
    /* request line (requests only) */
    enum http1_method method;
    const char *method_str; /* borrowed; the method token exactly as sent */
    size_t method_len;
    const char *target; /* borrowed; request-target exactly as sent */
    size_t target_len;
    enum http1_target_form form;
    /* status line (responses only) */
    unsigned status;    /* 100..999 */
    const char *reason; /* borrowed; may be empty */
    size_t reason_len;
    /* both */
    uint8_t version_minor;  /* 0 or 1 (HTTP/1.2..1.9 are treated as 1.1) */
    struct http1_hdr *hdrs; /* borrowed: the caller's array, nhdrs entries used */
    size_t nhdrs;
    size_t head_len; /* bytes of the head including skipped leading CRLFs and
                      * the final CRLFCRLF; the body starts at buf + head_len */
    enum http1_body body;
    uint64_t content_length; /* for HTTP1_BODY_LENGTH */
    uint32_t flags;          /* HTTP1_F_* */
    const char *host;        /* borrowed; Host value, NULL when absent */
    size_t host_len;
};

/* Resumable search state for one head. The buffer passed on each call must start with
 * the same message and may only grow; calls then cost O(new bytes) until the end of
 * the head is found, and one O(head) parse after that. A shorter buffer than last time
 * restarts the search from the beginning. Once a call returned an error, later calls
 * return the same error. Re-init for every new message. */
struct http1_scan {
    size_t off;      /* bytes already searched */
    size_t line;     /* start of the line being searched */
    size_t start;    /* start of the start line (after skipped empty lines) */
    size_t end;      /* head length once found, else 0 */
    size_t max_head; /* limit, <= INT_MAX */
    size_t nlines;   /* complete header lines seen */
    int err;         /* sticky: the error returned, 0 while none */
};

/* Start searching for a new head of at most max_head bytes (0 = default 64 KiB; values
 * above INT_MAX are clamped). */
void http1_scan_init(struct http1_scan *s, size_t max_head);

/* Rules shared by both head parsers:
 *  - every line ends in CRLF; header values may hold HTAB and obs-text, nothing else
 *    below 0x20; names are tokens directly followed by ':'; no obs-fold;
 *  - Content-Length is 1*DIGIT; a list or repeated header is accepted only when all
 *    values are the same number (HTTP1_F_CL_MERGED: forward one regenerated header);
 *  - Content-Length and Transfer-Encoding together, or Transfer-Encoding in HTTP/1.0,
 *    are errors; chunked must be the final coding, present once, without parameters;
 *  - framing headers are checked in every message, even when the method or status
 *    means they are ignored (HEAD, 1xx, 204, 304, 2xx to CONNECT);
 *  - the request Host value is checked (http1_parse_host) even with an absolute-form
 *    target, a second Host is an error, a missing one in 1.1 only sets NO_HOST. */

/* Parse a request head at the start of buf[0..len).
 *   s        search state (http1_scan_init before the first call); NULL = no resume
 *            state and the default max_head
 *   h        filled when the result is > 0
 *   hdrs     caller's array of max_hdrs entries, filled when the result is > 0 and
 *            referenced by h->hdrs; more header lines than max_hdrs is an error
 * Returns the head length (> 0) when a complete valid head is in buf, 0 when more bytes
 * are needed (len < max_head), or a negative HTTP1_E_*; HTTP1_E_TOO_LARGE when the head
 * is not complete within max_head bytes. Bytes past max_head are never looked at.
 * Leading empty lines (CRLF) before the request line are skipped and counted in the
 * head length (RFC 9112 2.2). Some errors (bare LF, bare CR in a complete line, the
 * start line, the header count) are reported before the head is complete; a start
 * line is checked byte by byte as it arrives where that can only fail (a request must
 * start with a method byte, a response with "HTTP/"). Requests: Transfer-Encoding
 * must be exactly "chunked" (else TE_UNSUPPORTED, 501), CONNECT must not have a body,
 * the target must fit the method: CONNECT authority-form, "*" only for OPTIONS,
 * origin-form or absolute-form otherwise, each fully checked with the parsers below. */
int http1_parse_request(struct http1_scan *s, const char *buf, size_t len, struct http1_head *h,
                        struct http1_hdr *hdrs, size_t max_hdrs);

/* Parse a response head; req_method is the method of the request it answers (framing
 * depends on it: HEAD, CONNECT). Same contract as http1_parse_request; no leading empty
 * lines are accepted. Transfer-Encoding may list other codings before the final
 * "chunked" ("gzip, chunked"). A 1xx other than 101 is an interim response with body
 * NONE: the caller forwards it and parses the next response after it. */
int http1_parse_response(struct http1_scan *s, const char *buf, size_t len,
                         enum http1_method req_method, struct http1_head *h, struct http1_hdr *hdrs,
                         size_t max_hdrs);

/* First header named `name` (case-insensitive), NULL when none. */
const struct http1_hdr *http1_find_hdr(const struct http1_head *h, const char *name);

/* ---- header helpers ---- */

/* Header name equals `name` (NUL-terminated), ASCII case-insensitive. */
bool http1_hdr_is(const struct http1_hdr *hdr, const char *name);
/* Comma-separated list val[0..vlen) has an element whose token (the part before any
 * ';', trimmed of OWS) equals `token`, case-insensitive. Quoted strings are not
 * understood: meant for Connection, TE, Upgrade, Expect-style token lists. */
bool http1_token_list_has(const char *val, size_t vlen, const char *token);
/* Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization, Proxy-Connection,
 * TE, Trailer, Transfer-Encoding, Upgrade (case-insensitive). Headers named in the
 * Connection header are hop-by-hop too: check those with http1_token_list_has. */
bool http1_is_hop_by_hop(const char *name, size_t nlen);
/* Reason phrase for a status code for the proxy's own answers ("Bad Gateway"); never
 * NULL, a class-generic text for unknown codes. Static storage. */
const char *http1_reason(unsigned status);

/* ---- request targets ---- */

enum http1_host_kind { HTTP1_HOST_NAME = 0, HTTP1_HOST_IPV4, HTTP1_HOST_IPV6 };

/* host[:port]. For IPv6 the name excludes the brackets. */
struct http1_hostport {
    const char *name; /* borrowed: caller's buffer */
    size_t len;
    enum http1_host_kind kind;
    uint16_t port; /* 0 when not given and no default applies */
    bool has_port; /* a port was written */
};

enum http1_scheme {
    HTTP1_SCHEME_OTHER = 0,
    HTTP1_SCHEME_HTTP,
    HTTP1_SCHEME_HTTPS,
    HTTP1_SCHEME_FTP
};

struct http1_url {
    enum http1_scheme scheme;
    const char *scheme_str; /* borrowed; as sent, without "://" */
    size_t scheme_len;
    bool has_userinfo;    /* "user:pass@" present (possibly empty) */
    const char *userinfo; /* borrowed; without the '@', NULL when absent */
    size_t userinfo_len;
    struct http1_hostport host; /* port defaults: http 80, https 443, ftp 21, other 0 */
    const char *path;           /* borrowed; path and query, or the static "/" when empty */
    size_t path_len;
    bool path_needs_slash; /* path starts with '?': write "/" before it */
};

/* Host name rules shared by all three parsers: a name is [A-Za-z0-9._-] labels of
 * 1..63 bytes, at most 253 bytes plus an optional final dot; a name whose last label is
 * all digits must be a dotted-quad IPv4 without leading zeros (so "2130706433",
 * "0x7f.1" and "010.0.0.1" are rejected); IPv6 goes in brackets, without zone. */

/* CONNECT authority-form "host:port" (port required, 1..65535). 0 or a negative
 * HTTP1_E_* (TARGET, HOST_INVALID, PORT). */
int http1_parse_authority(const char *s, size_t len, struct http1_hostport *out);
/* Host header value "host[:port]" (port optional: has_port false, port 0). 0 or a
 * negative HTTP1_E_* (HOST_INVALID, PORT). An empty value is HOST_INVALID. */
int http1_parse_host(const char *s, size_t len, struct http1_hostport *out);
/* Absolute-form "scheme://[userinfo@]host[:port][/path][?query]". Any byte that is not
 * visible ASCII, and '#' (fragments are rejected, never stripped), is HTTP1_E_TARGET,
 * as are a missing "//", more than one '@' and a malformed userinfo. 0 or a negative
 * HTTP1_E_* (TARGET, HOST_INVALID, PORT). */
int http1_parse_absolute_url(const char *s, size_t len, struct http1_url *out);

/* ---- chunked bodies ---- */

/* Incremental scanner for a chunked body, forwarded verbatim by the caller. Framing
 * bytes (size lines, extensions, CRLFs, trailers) are checked one by one, chunk data is
 * skipped in bulk. Everything reported consumed is a valid prefix of a chunked body, so
 * it may be forwarded before the rest arrives; a partial line is consumed too, the
 * caller never has to keep bytes back. Grammar: chunk-size is 1..16 hex digits
 * (leading zeros count); then optional BWS only before ';'; extensions are any
 * VCHAR/SP/HTAB/obs-text up to CRLF; the size line, extensions included, is at most
 * line_max bytes. Trailer lines are checked like header lines (same error codes) but
 * not interpreted: a caller must not merge trailers into the head. */
struct http1_chunked {
    uint64_t remain;      /* chunk-data bytes left in the current chunk */
    uint64_t data_total;  /* chunk-data bytes seen so far (statistics) */
    uint32_t line_max;    /* longest size/trailer line, CRLF excluded */
    uint32_t trailer_max; /* longest trailer section, final CRLF included */
    uint32_t line_len;    /* bytes of the current line so far */
    uint32_t trailer_len; /* bytes of the trailer section so far */
    uint8_t state;
    uint8_t ndigits; /* hex digits of the current chunk-size */
    int8_t err;      /* sticky error once state is the error state */
};

enum { HTTP1_CHUNK_AGAIN = 0, HTTP1_CHUNK_DONE = 1, HTTP1_CHUNK_DATA = 2 };

/* Start a chunked body. line_max 0 = HTTP1_CHUNK_LINE_MAX_DEFAULT, trailer_max 0 =
 * HTTP1_TRAILER_MAX_DEFAULT. */
void http1_chunked_init(struct http1_chunked *c, uint32_t line_max, uint32_t trailer_max);

/* Validate the next bytes of the body. *consumed is set to the bytes of buf that belong
 * to the body and are valid. Returns
 *   HTTP1_CHUNK_AGAIN  all of buf consumed, the body continues;
 *   HTTP1_CHUNK_DONE   the body ended at buf + *consumed (bytes after it belong to the
 *                      next message and must not be forwarded with this one); further
 *                      calls return DONE with *consumed 0;
 *   negative HTTP1_E_* the byte at buf + *consumed is invalid; the message is broken,
 *                      the caller must close. The error is sticky.
 * Never returns HTTP1_CHUNK_DATA. */
int http1_chunked_scan(struct http1_chunked *c, const char *buf, size_t len, size_t *consumed);

/* Same, but stops after each run of chunk data for callers that must see the payload
 * (e.g. to remove the framing for an HTTP/1.0 client): returns HTTP1_CHUNK_DATA with
 * buf[*data_off .. *data_off + *data_len) the data run (data_len > 0) and *consumed the
 * end of that run; framing before it is included in *consumed. Otherwise as
 * http1_chunked_scan (data_off/data_len untouched). */
int http1_chunked_next(struct http1_chunked *c, const char *buf, size_t len, size_t *consumed,
                       size_t *data_off, size_t *data_len);

#define HTTP1_CHUNK_ST_DONE 0xff /* c->state once the body ended */
static inline bool http1_chunked_done(const struct http1_chunked *c)
{
    return c->state == HTTP1_CHUNK_ST_DONE;
}

#endif
