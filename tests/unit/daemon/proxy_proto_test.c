/* PROXY protocol v1/v2: known vectors (curl's v1 line, v2 headers built by hand from the
 * spec), every error at the byte it is detectable, byte-by-byte feeding, builders and
 * builder -> parser round trips. */
#include <arpa/inet.h>
#include <stdlib.h>

#include "common.h"
#include "tap.h"
#include "proxy_proto.h"

/* Feed (b, len) as every prefix, each in an exactly-sized heap copy (ASan catches
 * over-reads), and followed by junk. Prefixes shorter than `at` must give 0, the others
 * `want` with the same info as the whole input. One TAP line; *out gets the whole
 * input's info (pointers into b). */
#define feed(...) feed_at(__LINE__, __VA_ARGS__)
static int feed_at(int line, const char *what, const void *bv, size_t len,
                   struct proxy_proto_info *out, int want, size_t at)
{
    const uint8_t *b = bv;
    struct proxy_proto_info tmp;
    uint8_t *junk = malloc(len + 16);
    int r = proxy_proto_parse(b, len, out);
    char why[200] = "";

    if (r != want)
        snprintf(why, sizeof(why), "whole input gives %d (%s), want %d", r, proxy_proto_strerror(r),
                 want);
    for (size_t k = 0; k <= len && !why[0]; k++) {
        uint8_t *copy = malloc(k ? k : 1);
        memcpy(copy, b, k);
        int rk = proxy_proto_parse(copy, k, &tmp);
        free(copy);
        int wk = k < at ? 0 : want;
        if (rk != wk) {
            snprintf(why, sizeof(why), "prefix %zu gives %d, want %d", k, rk, wk);
            break;
        }
        if (rk > 0) {
            proxy_proto_parse(b, k, &tmp);
            if (memcmp(&tmp, out, sizeof(tmp))) {
                snprintf(why, sizeof(why), "prefix %zu gives a different info", k);
                break;
            }
        }
    }
    if (!why[0]) {
        memcpy(junk, b, len);
        memset(junk + len, 'P', 16);
        int rj = proxy_proto_parse(junk, len + 16, &tmp);
        if (rj != want)
            snprintf(why, sizeof(why), "with trailing bytes gives %d, want %d", rj, want);
    }
    tap_ok(!why[0], __FILE__, line, "%s", what);
    if (why[0])
        printf("#   %s\n", why);
    free(junk);
    return r;
}

#define FEEDS(what, str, out, want, at) feed(what, str, strlen(str), out, want, at)
#define FEEDA(what, arr, out, want, at) feed(what, arr, sizeof(arr), out, want, at)

static union sockaddr_any sa4(const char *ip, uint16_t port)
{
    union sockaddr_any sa;
    memset(&sa, 0, sizeof(sa));
    sa.in.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &sa.in.sin_addr);
    sa.in.sin_port = htons(port);
    return sa;
}

static union sockaddr_any sa6(const char *ip, uint16_t port)
{
    union sockaddr_any sa;
    memset(&sa, 0, sizeof(sa));
    sa.in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &sa.in6.sin6_addr);
    sa.in6.sin6_port = htons(port);
    return sa;
}

static bool sa_eq(const union sockaddr_any *a, const union sockaddr_any *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    if (a->sa.sa_family == AF_INET6)
        return a->in6.sin6_port == b->in6.sin6_port &&
               !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16);
    return a->sa.sa_family == 0;
}

static void test_v1(void)
{
    struct proxy_proto_info i;
    union sockaddr_any s, d;
    static const char curl[] = "PROXY TCP4 127.0.0.1 127.0.0.1 45678 8080\r\n";

    FEEDS("v1: curl --haproxy-protocol line", curl, &i, 43, 43);
    ok(i.version == 1 && i.command == PROXY_PROTO_CMD_PROXY &&
           i.transport == PROXY_PROTO_TRANSPORT_STREAM && !i.tlvs,
       "v1 curl: version, command, transport");
    s = sa4("127.0.0.1", 45678);
    d = sa4("127.0.0.1", 8080);
    ok(sa_eq(&i.src, &s) && sa_eq(&i.dst, &d), "v1 curl: addresses");

    FEEDS("v1: TCP6", "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n", &i, 36, 36);
    s = sa6("2001:db8::1", 0);
    d = sa6("::1", 65535);
    ok(sa_eq(&i.src, &s) && sa_eq(&i.dst, &d), "v1 TCP6: addresses, ports 0 and 65535");

    FEEDS("v1: TCP6 v4-mapped", "PROXY TCP6 ::ffff:10.0.0.1 ::FFFF:10.0.0.2 1 2\r\n", &i, 48, 48);
    s = sa6("::ffff:10.0.0.1", 1);
    ok(sa_eq(&i.src, &s), "v1 TCP6: v4-mapped kept as IPv6");

    FEEDS("v1: UNKNOWN", "PROXY UNKNOWN\r\n", &i, 15, 15);
    ok(i.version == 1 && i.src.sa.sa_family == 0 && i.dst.sa.sa_family == 0,
       "v1 UNKNOWN: no addresses");
    /* the spec's worst case: 107 bytes */
    static const char worst[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    is_int(strlen(worst), 107, "v1: the spec's longest line is 107 bytes");
    FEEDS("v1: UNKNOWN with the longest line", worst, &i, 107, 107);
    FEEDS("v1: UNKNOWN with junk", "PROXY UNKNOWN \x01\xffzz\r\n", &i, 20, 20);
    feed("v1: UNKNOWN with a NUL", "PROXY UNKNOWN a\0b\r\n", 19, &i, 19, 19);
    ok(i.src.sa.sa_family == 0, "v1 UNKNOWN: addresses ignored");

    /* a TCP6 line of maximal size: 39-char addresses, 5-digit ports = 104 bytes */
    static const char big6[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                               "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65534\r\n";
    FEEDS("v1: longest TCP6 line", big6, &i, 104, 104);

    /* errors */
    FEEDS("v1: lower-case proxy", "proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_SIGNATURE, 1);
    FEEDS("v1: PROXX", "PROXX TCP4 1.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_SIGNATURE, 5);
    FEEDS("v1: PROXY without space", "PROXY\tTCP4 1.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_SIGNATURE, 6);
    FEEDS("v1: HTTP request", "GET / HTTP/1.1\r\n\r\n", &i, PP_E_SIGNATURE, 1);
    FEEDS("v1: SOCKS5 greeting", "\x05\x01", &i, PP_E_SIGNATURE, 1);
    FEEDS("v1: TCP5", "PROXY TCP5 1.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_V1_PROTO, 32);
    FEEDS("v1: UDP4", "PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_V1_PROTO, 32);
    FEEDS("v1: TCP44", "PROXY TCP44 1.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_V1_PROTO, 33);
    FEEDS("v1: UNKNOWNX", "PROXY UNKNOWNX\r\n", &i, PP_E_V1_PROTO, 16);
    FEEDS("v1: empty protocol", "PROXY \r\n", &i, PP_E_V1_PROTO, 8);
    FEEDS("v1: TCP4 alone", "PROXY TCP4\r\n", &i, PP_E_V1_SYNTAX, 12);
    FEEDS("v1: TCP4 space", "PROXY TCP4 \r\n", &i, PP_E_V1_SYNTAX, 13);
    FEEDS("v1: double space", "PROXY TCP4 1.1.1.1  2.2.2.2 1 2\r\n", &i, PP_E_V1_SYNTAX, 33);
    FEEDS("v1: double space after PROXY", "PROXY  TCP4 1.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_V1_PROTO,
          33);
    FEEDS("v1: trailing space", "PROXY TCP4 1.1.1.1 2.2.2.2 1 2 \r\n", &i, PP_E_V1_SYNTAX, 33);
    FEEDS("v1: missing port", "PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n", &i, PP_E_V1_SYNTAX, 30);
    FEEDS("v1: extra field", "PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n", &i, PP_E_V1_SYNTAX, 34);
    FEEDS("v1: tab separator", "PROXY TCP4 1.1.1.1\t2.2.2.2 1 2 3\r\n", &i, PP_E_V1_ADDR, 34);
    FEEDS("v1: IPv6 under TCP4", "PROXY TCP4 ::1 2.2.2.2 1 2\r\n", &i, PP_E_V1_ADDR, 28);
    FEEDS("v1: IPv4 under TCP6", "PROXY TCP6 ::1 2.2.2.2 1 2\r\n", &i, PP_E_V1_ADDR, 28);
    FEEDS("v1: leading zero in IPv4", "PROXY TCP4 01.1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_V1_ADDR, 33);
    FEEDS("v1: short IPv4", "PROXY TCP4 1.1.1 2.2.2.2 1 2\r\n", &i, PP_E_V1_ADDR, 30);
    FEEDS("v1: hostname", "PROXY TCP4 localhost 2.2.2.2 1 2\r\n", &i, PP_E_V1_ADDR, 34);
    FEEDS("v1: bracketed IPv6", "PROXY TCP6 [::1] ::1 1 2\r\n", &i, PP_E_V1_ADDR, 26);
    FEEDS("v1: IPv6 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", &i, PP_E_V1_ADDR, 33);
    feed("v1: NUL inside an address", "PROXY TCP4 1.1.1.1\0x 2.2.2.2 1 2\r\n", 34, &i, PP_E_V1_ADDR,
         34);
    FEEDS("v1: port 65536", "PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n", &i, PP_E_V1_PORT, 36);
    FEEDS("v1: port 080", "PROXY TCP4 1.1.1.1 2.2.2.2 080 2\r\n", &i, PP_E_V1_PORT, 34);
    FEEDS("v1: port 00", "PROXY TCP4 1.1.1.1 2.2.2.2 1 00\r\n", &i, PP_E_V1_PORT, 33);
    FEEDS("v1: port -1", "PROXY TCP4 1.1.1.1 2.2.2.2 -1 2\r\n", &i, PP_E_V1_PORT, 33);
    FEEDS("v1: port +1", "PROXY TCP4 1.1.1.1 2.2.2.2 +1 2\r\n", &i, PP_E_V1_PORT, 33);
    FEEDS("v1: port 6 digits", "PROXY TCP4 1.1.1.1 2.2.2.2 000001 2\r\n", &i, PP_E_V1_PORT, 37);
    FEEDS("v1: port hex", "PROXY TCP4 1.1.1.1 2.2.2.2 0x1 2\r\n", &i, PP_E_V1_PORT, 34);
    FEEDS("v1: bare LF", "PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n", &i, PP_E_V1_EOL, 31);
    FEEDS("v1: CR then x", "PROXY TCP4 1.1.1.1 2.2.2.2 1 2\rx\n", &i, PP_E_V1_EOL, 32);
    FEEDS("v1: CR CR LF", "PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\r\n", &i, PP_E_V1_EOL, 32);
    FEEDS("v1: LF inside", "PROXY UNKNOWN a\nb\r\n", &i, PP_E_V1_EOL, 16);

    char longl[200];
    memset(longl, 'x', sizeof(longl));
    memcpy(longl, "PROXY UNKNOWN ", 14);
    feed("v1: no CRLF within 107 bytes", longl, sizeof(longl), &i, PP_E_V1_TOO_LONG, 107);
    longl[106] = '\r';
    longl[107] = '\n';
    feed("v1: CRLF at bytes 107-108", longl, 108, &i, PP_E_V1_TOO_LONG, 107);
    longl[105] = '\r';
    longl[106] = '\n';
    feed("v1: CRLF at bytes 106-107", longl, 107, &i, 107, 107);

    /* builders */
    uint8_t out[PROXY_PROTO_MAX_LEN];
    s = sa4("127.0.0.1", 45678);
    d = sa4("127.0.0.1", 8080);
    int n = proxy_proto_build_v1(&s, &d, out, sizeof(out));
    ok(n == 43 && !memcmp(out, curl, 43), "build v1: curl's line exactly");
    is_int(proxy_proto_build_v1(&s, &d, out, 42), -1, "build v1: cap 42");
    is_int(proxy_proto_build_v1(&s, &d, out, 43), 43, "build v1: cap 43");
    n = proxy_proto_build_v1(NULL, &d, out, sizeof(out));
    ok(n == 15 && !memcmp(out, "PROXY UNKNOWN\r\n", 15), "build v1: NULL src -> UNKNOWN");
    union sockaddr_any un;
    memset(&un, 0, sizeof(un));
    un.sa.sa_family = AF_UNIX;
    n = proxy_proto_build_v1(&un, &d, out, sizeof(out));
    ok(n == 15 && !memcmp(out, "PROXY UNKNOWN\r\n", 15), "build v1: AF_UNIX -> UNKNOWN");

    s = sa6("2001:db8::1", 1);
    d = sa6("::1", 2);
    n = proxy_proto_build_v1(&s, &d, out, sizeof(out));
    ok(n > 0 && !memcmp(out, "PROXY TCP6 2001:db8::1 ::1 1 2\r\n", (size_t)n), "build v1: TCP6");
    s = sa6("::ffff:192.0.2.1", 1000);
    d = sa4("192.0.2.2", 80);
    n = proxy_proto_build_v1(&s, &d, out, sizeof(out));
    ok(n > 0 && !memcmp(out, "PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n", (size_t)n),
       "build v1: mapped + IPv4 -> TCP4");
    s = sa6("2001:db8::5", 1000);
    n = proxy_proto_build_v1(&s, &d, out, sizeof(out));
    ok(n > 0 && !memcmp(out, "PROXY TCP6 2001:db8::5 ::ffff:192.0.2.2 1000 80\r\n", (size_t)n),
       "build v1: IPv6 + IPv4 -> TCP6 with mapped");
    n = proxy_proto_build_v1(&d, &s, out, sizeof(out));
    ok(n > 0 && !memcmp(out, "PROXY TCP6 ::ffff:192.0.2.2 2001:db8::5 80 1000\r\n", (size_t)n),
       "build v1: IPv4 + IPv6 -> TCP6 with mapped");
    s = sa6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    n = proxy_proto_build_v1(&s, &s, out, sizeof(out));
    is_int(n, 104, "build v1: longest TCP6 line");
    is_int(proxy_proto_parse(out, (size_t)n, &i), 104, "build v1 longest: parses back");
}

static const uint8_t v2_tcp4[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, /* signature */
    0x21,                                                                   /* v2 PROXY */
    0x11,                                                                   /* TCP over IPv4 */
    0x00, 0x0C,                                                             /* 12 bytes */
    192,  168,  0,    1,                                                    /* src */
    10,   0,    0,    1,                                                    /* dst */
    0xD4, 0x31,                                                             /* 54321 */
    0x01, 0xBB,                                                             /* 443 */
};

static const uint8_t v2_tcp6_tlv[] = {
    0x0D,
    0x0A,
    0x0D,
    0x0A,
    0x00,
    0x0D,
    0x0A,
    0x51,
    0x55,
    0x49,
    0x54,
    0x0A,
    0x21,
    0x21,
    0x00,
    0x3A, /* 36 + 5 + 14 + 3 = 58 */
    0x20,
    0x01,
    0x0d,
    0xb8,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x01,
    0x20,
    0x01,
    0x0d,
    0xb8,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x02,
    0x04,
    0xD2,
    0x00,
    0x50,
    PP2_TYPE_ALPN,
    0x00,
    0x02,
    'h',
    '2',
    PP2_TYPE_AUTHORITY,
    0x00,
    0x0B,
    'e',
    'x',
    'a',
    'm',
    'p',
    'l',
    'e',
    '.',
    'c',
    'o',
    'm',
    PP2_TYPE_NOOP,
    0x00,
    0x00,
};

static const uint8_t v2_local[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0, 0,
};

static void test_v2(void)
{
    struct proxy_proto_info i;
    union sockaddr_any s, d;
    struct proxy_proto_tlv t;
    size_t off = 0;
    uint8_t b[PROXY_PROTO_MAX_LEN + 64];

    FEEDA("v2: TCP4 from the spec", v2_tcp4, &i, 28, 28);
    s = sa4("192.168.0.1", 54321);
    d = sa4("10.0.0.1", 443);
    ok(i.version == 2 && i.command == PROXY_PROTO_CMD_PROXY && i.v2_family == 0x11 &&
           i.transport == PROXY_PROTO_TRANSPORT_STREAM && sa_eq(&i.src, &s) && sa_eq(&i.dst, &d) &&
           !i.tlvs && !i.tlvs_len,
       "v2 TCP4: fields");

    FEEDA("v2: TCP6 with TLVs", v2_tcp6_tlv, &i, 74, 74);
    s = sa6("2001:db8::1", 1234);
    d = sa6("2001:db8::2", 80);
    ok(sa_eq(&i.src, &s) && sa_eq(&i.dst, &d) && i.v2_family == 0x21, "v2 TCP6: addresses");
    ok(i.tlvs == v2_tcp6_tlv + 16 + 36 && i.tlvs_len == 22, "v2 TCP6: TLV area");
    ok(proxy_proto_tlv_next(i.tlvs, i.tlvs_len, &off, &t) == 1 && t.type == PP2_TYPE_ALPN &&
           t.len == 2 && !memcmp(t.value, "h2", 2),
       "tlv 1: ALPN h2");
    ok(proxy_proto_tlv_next(i.tlvs, i.tlvs_len, &off, &t) == 1 && t.type == PP2_TYPE_AUTHORITY &&
           t.len == 11 && !memcmp(t.value, "example.com", 11),
       "tlv 2: AUTHORITY");
    ok(proxy_proto_tlv_next(i.tlvs, i.tlvs_len, &off, &t) == 1 && t.type == PP2_TYPE_NOOP &&
           t.len == 0,
       "tlv 3: empty NOOP");
    is_int(proxy_proto_tlv_next(i.tlvs, i.tlvs_len, &off, &t), 0, "tlv: end");
    is_int(off, 22, "tlv: off at the end");
    off = 23;
    is_int(proxy_proto_tlv_next(i.tlvs, i.tlvs_len, &off, &t), -1, "tlv: off past the end");
    off = 0;
    is_int(proxy_proto_tlv_next(i.tlvs, 2, &off, &t), -1, "tlv: truncated type/length");
    off = 0;
    is_int(proxy_proto_tlv_next(i.tlvs, 4, &off, &t), -1, "tlv: truncated value");

    FEEDA("v2: LOCAL", v2_local, &i, 16, 16);
    ok(i.version == 2 && i.command == PROXY_PROTO_CMD_LOCAL && i.src.sa.sa_family == 0 &&
           i.transport == PROXY_PROTO_TRANSPORT_UNSPEC,
       "v2 LOCAL: no address");

    /* LOCAL with an address block: skipped, not reported */
    memcpy(b, v2_tcp4, sizeof(v2_tcp4));
    b[12] = 0x20;
    feed("v2: LOCAL with TCP4 block", b, sizeof(v2_tcp4), &i, 28, 28);
    ok(i.command == PROXY_PROTO_CMD_LOCAL && i.src.sa.sa_family == 0 && i.v2_family == 0x11,
       "v2 LOCAL TCP4: address not reported");

    /* UDP4 */
    b[12] = 0x21;
    b[13] = 0x12;
    feed("v2: UDP4", b, sizeof(v2_tcp4), &i, 28, 28);
    ok(i.transport == PROXY_PROTO_TRANSPORT_DGRAM && i.src.sa.sa_family == AF_INET,
       "v2 UDP4: DGRAM, address reported");

    /* UNIX: valid, unsupported: no address */
    memcpy(b, v2_local, 16);
    b[12] = 0x21;
    b[13] = 0x31;
    b[14] = 0;
    b[15] = 216;
    memset(b + 16, 'u', 216);
    feed("v2: UNIX stream", b, 16 + 216, &i, 232, 232);
    ok(i.command == PROXY_PROTO_CMD_PROXY && i.src.sa.sa_family == 0 && i.v2_family == 0x31 &&
           !i.tlvs,
       "v2 UNIX: no address");
    b[13] = 0x32;
    b[15] = 219;
    b[232] = PP2_TYPE_NOOP;
    b[233] = 0;
    b[234] = 0;
    feed("v2: UNIX dgram with a TLV", b, 16 + 219, &i, 235, 235);
    ok(i.tlvs == b + 232 && i.tlvs_len == 3, "v2 UNIX: TLV after the 216-byte block");

    /* UNSPEC with TLVs only */
    memcpy(b, v2_local, 16);
    b[12] = 0x21;
    b[15] = 4;
    memcpy(b + 16, "\x04\x00\x01\x00", 4);
    feed("v2: PROXY UNSPEC with a TLV", b, 20, &i, 20, 20);
    ok(i.command == PROXY_PROTO_CMD_PROXY && i.src.sa.sa_family == 0 && i.tlvs_len == 4,
       "v2 UNSPEC: no address, TLVs");

    /* the largest accepted payload: one TLV filling 4096 - 12 bytes after TCP4 */
    memcpy(b, v2_tcp4, 28);
    b[14] = PROXY_PROTO_V2_MAX_PAYLOAD >> 8;
    b[15] = PROXY_PROTO_V2_MAX_PAYLOAD & 0xff;
    b[28] = 0xE0;
    b[29] = (PROXY_PROTO_V2_MAX_PAYLOAD - 15) >> 8;
    b[30] = (PROXY_PROTO_V2_MAX_PAYLOAD - 15) & 0xff;
    memset(b + 31, 'v', PROXY_PROTO_V2_MAX_PAYLOAD - 15);
    is_int(proxy_proto_parse(b, PROXY_PROTO_MAX_LEN, &i), PROXY_PROTO_MAX_LEN,
           "v2: payload of PROXY_PROTO_V2_MAX_PAYLOAD accepted");
    is_int(proxy_proto_parse(b, PROXY_PROTO_MAX_LEN - 1, &i), 0, "v2: max minus one byte: 0");

    /* errors */
    memcpy(b, v2_tcp4, sizeof(v2_tcp4));
    b[6] = 0x0B;
    feed("v2: signature mismatch at byte 7", b, sizeof(v2_tcp4), &i, PP_E_SIGNATURE, 7);
    feed("v2: CRLFCRLF then HTTP", "\r\n\r\nGET", 7, &i, PP_E_SIGNATURE, 5);
    memcpy(b, v2_tcp4, sizeof(v2_tcp4));
    b[12] = 0x11;
    feed("v2: version 1 in binary", b, sizeof(v2_tcp4), &i, PP_E_V2_VERSION, 13);
    b[12] = 0x31;
    feed("v2: version 3", b, sizeof(v2_tcp4), &i, PP_E_V2_VERSION, 13);
    b[12] = 0x22;
    feed("v2: command 2", b, sizeof(v2_tcp4), &i, PP_E_V2_COMMAND, 13);
    b[12] = 0x2F;
    feed("v2: command 15", b, sizeof(v2_tcp4), &i, PP_E_V2_COMMAND, 13);
    static const uint8_t badfam[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33, 0x41, 0xff};
    for (size_t k = 0; k < sizeof(badfam); k++) {
        b[12] = 0x21;
        b[13] = badfam[k];
        char what[64];
        snprintf(what, sizeof(what), "v2: family 0x%02x", badfam[k]);
        feed(what, b, sizeof(v2_tcp4), &i, PP_E_V2_FAMILY, 14);
    }
    b[13] = 0x00;
    b[12] = 0x20;
    feed("v2: bad family refused with LOCAL too", "\r\n\r\n\0\r\nQUIT\n\x20\x40\x00\x00", 16, &i,
         PP_E_V2_FAMILY, 14);
    memcpy(b, v2_tcp4, sizeof(v2_tcp4));
    b[14] = (PROXY_PROTO_V2_MAX_PAYLOAD + 1) >> 8;
    b[15] = (PROXY_PROTO_V2_MAX_PAYLOAD + 1) & 0xff;
    feed("v2: length over the bound", b, sizeof(v2_tcp4), &i, PP_E_V2_TOO_LONG, 16);
    b[14] = 0xff;
    b[15] = 0xff;
    feed("v2: length 65535", b, sizeof(v2_tcp4), &i, PP_E_V2_TOO_LONG, 16);
    b[14] = 0;
    b[15] = 11;
    feed("v2: TCP4 length 11", b, sizeof(v2_tcp4), &i, PP_E_V2_ADDR_LEN, 16);
    b[13] = 0x21;
    b[15] = 35;
    feed("v2: TCP6 length 35", b, sizeof(v2_tcp4), &i, PP_E_V2_ADDR_LEN, 16);
    b[13] = 0x31;
    b[15] = 215;
    feed("v2: UNIX length 215", b, sizeof(v2_tcp4), &i, PP_E_V2_ADDR_LEN, 16);
    b[12] = 0x20;
    b[13] = 0x11;
    b[15] = 0;
    feed("v2: LOCAL TCP4 length 0", b, 16, &i, PP_E_V2_ADDR_LEN, 16);

    memcpy(b, v2_tcp4, sizeof(v2_tcp4));
    b[15] = 14; /* two bytes after the addresses: not a whole TLV */
    b[28] = 1;
    b[29] = 0;
    feed("v2: 2 stray bytes after the addresses", b, 30, &i, PP_E_V2_TLV, 30);
    b[15] = 16; /* TLV claims 2 bytes, has 1 */
    b[28] = 1;
    b[29] = 0;
    b[30] = 2;
    b[31] = 'x';
    feed("v2: TLV overruns the header", b, 32, &i, PP_E_V2_TLV, 32);
    b[30] = 1;
    b[15] = 17;
    b[32] = 0; /* second TLV truncated to 1 byte */
    feed("v2: second TLV truncated", b, 33, &i, PP_E_V2_TLV, 33);

    int distinct = 1;
    for (int e = -1; e >= PP_E_V2_TLV; e--) {
        if (!strcmp(proxy_proto_strerror(e), "unknown error"))
            distinct = 0;
        for (int f = e - 1; f >= PP_E_V2_TLV; f--)
            if (!strcmp(proxy_proto_strerror(e), proxy_proto_strerror(f)))
                distinct = 0;
    }
    ok(distinct, "every PP_E_* has its own text");
    is_int(proxy_proto_parse((const uint8_t *)"", 0, &i), 0, "empty input: 0");
}

static void test_build_v2(void)
{
    uint8_t out[PROXY_PROTO_MAX_LEN + 16];
    struct proxy_proto_info i;
    union sockaddr_any s, d;
    int n;

    s = sa4("192.168.0.1", 54321);
    d = sa4("10.0.0.1", 443);
    n = proxy_proto_build_v2(&s, &d, out, sizeof(out), NULL, 0);
    ok(n == 28 && !memcmp(out, v2_tcp4, 28), "build v2: TCP4 bytes from the spec");
    is_int(proxy_proto_build_v2(&s, &d, out, 27, NULL, 0), -1, "build v2 TCP4: cap 27");
    is_int(proxy_proto_build_v2(&s, &d, out, 28, NULL, 0), 28, "build v2 TCP4: cap 28");

    const struct proxy_proto_tlv tlvs[] = {
        {PP2_TYPE_ALPN, 2, (const uint8_t *)"h2"},
        {PP2_TYPE_AUTHORITY, 11, (const uint8_t *)"example.com"},
        {PP2_TYPE_NOOP, 0, NULL},
    };
    s = sa6("2001:db8::1", 1234);
    d = sa6("2001:db8::2", 80);
    n = proxy_proto_build_v2(&s, &d, out, sizeof(out), tlvs, ARRAY_SIZE(tlvs));
    ok(n == (int)sizeof(v2_tcp6_tlv) && !memcmp(out, v2_tcp6_tlv, sizeof(v2_tcp6_tlv)),
       "build v2: TCP6 + TLVs bytes");
    is_int(proxy_proto_build_v2(&s, &d, out, sizeof(v2_tcp6_tlv) - 1, tlvs, 3), -1,
           "build v2 TCP6 + TLVs: cap one short");

    n = proxy_proto_build_v2(NULL, NULL, out, sizeof(out), NULL, 0);
    ok(n == 16 && !memcmp(out, v2_local, 16), "build v2: no addresses -> LOCAL UNSPEC");
    n = proxy_proto_build_v2(NULL, NULL, out, sizeof(out), tlvs, 1);
    ok(n == 21 && out[12] == 0x20 && out[13] == 0 && out[15] == 5, "build v2: LOCAL with a TLV");
    is_int(proxy_proto_parse(out, (size_t)n, &i), 21, "build v2 LOCAL + TLV: parses back");

    s = sa6("::ffff:1.2.3.4", 1);
    d = sa4("5.6.7.8", 2);
    n = proxy_proto_build_v2(&s, &d, out, sizeof(out), NULL, 0);
    ok(n == 28 && out[13] == 0x11 &&
           !memcmp(out + 16, "\x01\x02\x03\x04\x05\x06\x07\x08\0\x01\0\x02", 12),
       "build v2: mapped + IPv4 -> TCP4");
    s = sa6("2001:db8::9", 1);
    n = proxy_proto_build_v2(&d, &s, out, sizeof(out), NULL, 0);
    ok(n == 52 && out[13] == 0x21 &&
           !memcmp(out + 16, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x05\x06\x07\x08", 16),
       "build v2: IPv4 + IPv6 -> TCP6 with mapped src");

    /* payload bound */
    static uint8_t big[PROXY_PROTO_V2_MAX_PAYLOAD];
    struct proxy_proto_tlv bt = {0xE0, PROXY_PROTO_V2_MAX_PAYLOAD - 12 - 3, big};
    s = sa4("1.1.1.1", 1);
    d = sa4("2.2.2.2", 2);
    n = proxy_proto_build_v2(&s, &d, out, sizeof(out), &bt, 1);
    is_int(n, PROXY_PROTO_MAX_LEN, "build v2: payload exactly at the bound");
    is_int(proxy_proto_parse(out, (size_t)n, &i), n, "build v2 at the bound: parses back");
    bt.len++;
    is_int(proxy_proto_build_v2(&s, &d, out, sizeof(out), &bt, 1), -1,
           "build v2: payload over the bound");
    struct proxy_proto_tlv many[2] = {{1, 65535, big}, {1, 65535, big}};
    is_int(proxy_proto_build_v2(&s, &d, out, sizeof(out), many, 2), -1,
           "build v2: huge TLVs refused");
}

static void roundtrip(const char *what, const union sockaddr_any *s, const union sockaddr_any *d)
{
    uint8_t out[PROXY_PROTO_MAX_LEN];
    struct proxy_proto_info i;
    int n;

    n = proxy_proto_build_v1(s, d, out, sizeof(out));
    ok(n > 0 && proxy_proto_parse(out, (size_t)n, &i) == n && i.version == 1 && sa_eq(&i.src, s) &&
           sa_eq(&i.dst, d),
       "round trip v1: %s", what);
    n = proxy_proto_build_v2(s, d, out, sizeof(out), NULL, 0);
    ok(n > 0 && proxy_proto_parse(out, (size_t)n, &i) == n && i.version == 2 &&
           i.command == PROXY_PROTO_CMD_PROXY && sa_eq(&i.src, s) && sa_eq(&i.dst, d),
       "round trip v2: %s", what);
}

static void test_roundtrip(void)
{
    union sockaddr_any s, d;

    s = sa4("0.0.0.0", 0);
    d = sa4("255.255.255.255", 65535);
    roundtrip("IPv4 extremes", &s, &d);
    s = sa6("::", 0);
    d = sa6("fe80::1:2:3:4", 443);
    roundtrip("IPv6", &s, &d);
    s = sa6("::ffff:10.1.1.1", 5);
    d = sa6("::ffff:10.1.1.2", 6);
    roundtrip("IPv6 both mapped", &s, &d);
    s = sa6("::1.2.3.4", 5);
    roundtrip("IPv4-compatible IPv6", &s, &s);
}

int main(void)
{
    test_v1();
    test_v2();
    test_build_v2();
    test_roundtrip();
    return done_testing();
}
