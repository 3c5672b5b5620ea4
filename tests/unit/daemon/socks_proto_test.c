/* SOCKS4/4a/5 and RFC 1929 parsers and builders: every message, every error, fed whole
 * and byte by byte, exact bytes for builders, builder -> parser round trips. */
#include <arpa/inet.h>
#include <stdlib.h>

#include "common.h"
#include "tap.h"
#include "socks_proto.h"

typedef int (*parse_fn)(const uint8_t *, size_t, void *);

static int w_s4(const uint8_t *b, size_t l, void *o)
{
    return socks4_parse_request(b, l, o);
}
static int w_greet(const uint8_t *b, size_t l, void *o)
{
    return socks5_parse_greeting(b, l, o);
}
static int w_auth(const uint8_t *b, size_t l, void *o)
{
    return socks5_parse_auth(b, l, o);
}
static int w_req(const uint8_t *b, size_t l, void *o)
{
    return socks5_parse_request(b, l, o);
}
static int w_udp(const uint8_t *b, size_t l, void *o)
{
    return socks5_parse_udp_header(b, l, o);
}

/* Feed (b, len) to fn as every prefix (each in an exactly-sized heap copy, so ASan sees
 * any over-read) and as the whole input followed by junk. Prefixes shorter than `at`
 * must give 0, the others `want`, with the same out as the whole input. One TAP line.
 * out receives the whole input's result (parsed from b itself, so pointers are into b). */
#define feed(...) feed_at(__LINE__, __VA_ARGS__)
static int feed_at(int line, const char *what, parse_fn fn, const uint8_t *b, size_t len, void *out,
                   size_t osize, int want, size_t at)
{
    uint8_t *tmp = malloc(osize), *junk = malloc(len + 16);
    int r = fn(b, len, out), bad = 0;
    char why[200] = "";

    if (r != want)
        snprintf(why, sizeof(why), "whole input gives %d, want %d", r, want);
    for (size_t k = 0; k <= len && !why[0]; k++) {
        uint8_t *copy = malloc(k ? k : 1);
        memcpy(copy, b, k);
        int rk = fn(copy, k, tmp);
        free(copy);
        int wk = k < at ? 0 : want;
        if (rk != wk) {
            snprintf(why, sizeof(why), "prefix %zu gives %d, want %d", k, rk, wk);
            break;
        }
        if (rk > 0) {
            fn(b, k, tmp);
            if (memcmp(tmp, out, osize)) {
                snprintf(why, sizeof(why), "prefix %zu gives a different out", k);
                break;
            }
        }
    }
    if (!why[0]) {
        memcpy(junk, b, len);
        memset(junk + len, 0xA5, 16);
        int rj = fn(junk, len + 16, tmp);
        if (rj != want)
            snprintf(why, sizeof(why), "with trailing bytes gives %d, want %d", rj, want);
    }
    bad = why[0] != 0;
    tap_ok(!bad, __FILE__, line, "%s", what);
    if (bad)
        printf("#   %s\n", why);
    free(tmp);
    free(junk);
    fn(b, len, out);
    return r;
}

#define FEED(what, fn, arr, out, want, at)                                                         \
    feed(what, fn, arr, sizeof(arr), out, sizeof(*(out)), want, at)

static size_t hexdump_eq(const uint8_t *got, int glen, const uint8_t *want, size_t wlen)
{
    if (glen < 0 || (size_t)glen != wlen)
        return 0;
    return memcmp(got, want, wlen) == 0;
}

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

static void test_detect(void)
{
    is_int(socks_detect((const uint8_t *)"\x04", 1), 4, "detect: 4");
    is_int(socks_detect((const uint8_t *)"\x05\x01", 2), 5, "detect: 5");
    is_int(socks_detect((const uint8_t *)"", 0), 0, "detect: empty needs more");
    is_int(socks_detect((const uint8_t *)"GET", 3), SOCKS_E_VERSION, "detect: HTTP is not SOCKS");
    is_int(socks_detect((const uint8_t *)"\x00", 1), SOCKS_E_VERSION, "detect: 0");
}

static void test_socks4(void)
{
    struct socks4_request r;

    static const uint8_t v4[] = {4, 1, 0, 80, 93, 184, 216, 34, 'f', 'r', 'e', 'd', 0};
    FEED("socks4 connect", w_s4, v4, &r, 13, 13);
    is_int(r.cmd, SOCKS_CMD_CONNECT, "socks4: cmd");
    ok(!r.is_4a, "socks4: not 4a");
    is_int(r.target.kind, HOST_IP, "socks4: HOST_IP");
    is_str(r.target.host, "93.184.216.34", "socks4: ip text");
    is_int(r.target.ip.family, AF_INET, "socks4: family");
    is_int(r.target.port, 80, "socks4: port");
    ok(r.userid == v4 + 8 && r.userid_len == 4 && !memcmp(r.userid, "fred", 4), "socks4: userid");

    static const uint8_t bind[] = {4, 2, 0x1f, 0x90, 10, 0, 0, 1, 0};
    FEED("socks4 bind, empty userid", w_s4, bind, &r, 9, 9);
    ok(r.cmd == SOCKS_CMD_BIND && r.userid_len == 0 && r.userid == bind + 8 &&
           r.target.port == 8080 && !strcmp(r.target.host, "10.0.0.1"),
       "socks4 bind: fields");

    static const uint8_t zero[] = {4, 1, 0, 80, 0, 0, 0, 0, 0};
    FEED("socks4 0.0.0.0 is plain SOCKS4", w_s4, zero, &r, 9, 9);
    ok(!r.is_4a && r.target.kind == HOST_IP && !strcmp(r.target.host, "0.0.0.0"),
       "socks4 0.0.0.0: HOST_IP");

    static const uint8_t a4[] = {4,   1,   1,   0xbb, 0,   0,   0,   1,   'u', 0,   'E', 'x',
                                 'a', 'm', 'p', 'l',  'e', '.', 'C', 'O', 'M', '.', 0};
    FEED("socks4a domain", w_s4, a4, &r, sizeof(a4), sizeof(a4));
    ok(r.is_4a, "socks4a: is_4a");
    is_int(r.target.kind, HOST_DOMAIN, "socks4a: HOST_DOMAIN");
    is_str(r.target.host, "example.com", "socks4a: lower-cased, trailing dot removed");
    is_int(r.target.port, 443, "socks4a: port");
    ok(r.userid_len == 1 && r.userid[0] == 'u', "socks4a: userid");

    static const uint8_t a4ip[] = {4,   1,   0,   80,  0,   0,   0,   9,   0,
                                   '1', '0', '.', '1', '.', '2', '.', '3', 0};
    FEED("socks4a IPv4 literal", w_s4, a4ip, &r, sizeof(a4ip), sizeof(a4ip));
    ok(r.is_4a && r.target.kind == HOST_IP && r.target.ip.family == AF_INET &&
           !strcmp(r.target.host, "10.1.2.3"),
       "socks4a IPv4 literal: HOST_IP");

    static const uint8_t a4ip6[] = {4,   1,   0,   80,  0,   0,   0,   9,   0,   ':', ':', 'F',
                                    'F', 'F', 'F', ':', '1', '.', '2', '.', '3', '.', '4', 0};
    FEED("socks4a IPv6 literal", w_s4, a4ip6, &r, sizeof(a4ip6), sizeof(a4ip6));
    ok(r.target.kind == HOST_IP && r.target.ip.family == AF_INET6 &&
           !strcmp(r.target.host, "::ffff:1.2.3.4"),
       "socks4a IPv6 literal: HOST_IP, canonical text");

    /* errors */
    static const uint8_t badvn[] = {5, 1, 0, 80, 1, 2, 3, 4, 0};
    FEED("socks4: VN 5", w_s4, badvn, &r, SOCKS_E_VERSION, 1);
    static const uint8_t badcd[] = {4, 3, 0, 80, 1, 2, 3, 4, 0};
    FEED("socks4: CD 3", w_s4, badcd, &r, SOCKS_E_CMD, 2);
    static const uint8_t badcd0[] = {4, 0, 0, 80, 1, 2, 3, 4, 0};
    FEED("socks4: CD 0", w_s4, badcd0, &r, SOCKS_E_CMD, 2);

    uint8_t big[8 + 256 + 1 + 256 + 1];
    memcpy(big, "\x04\x01\x00\x50\x01\x02\x03\x04", 8);
    memset(big + 8, 'u', 255);
    big[8 + 255] = 0;
    is_int(feed("socks4: 255-byte userid", w_s4, big, 8 + 256, &r, sizeof(r), 264, 264), 264,
           "socks4: 255-byte userid accepted");
    is_int(r.userid_len, 255, "socks4: userid_len 255");
    memset(big + 8, 'u', 256);
    big[8 + 256] = 0;
    feed("socks4: 256-byte userid", w_s4, big, 8 + 257, &r, sizeof(r), SOCKS_E_USERID_LONG, 264);

    /* 4a domain bounds */
    memcpy(big, "\x04\x01\x00\x50\x00\x00\x00\x01\x00", 9);
    memset(big + 9, 'a', 256);
    big[9 + 256] = 0;
    feed("socks4a: 256-byte domain", w_s4, big, 9 + 257, &r, sizeof(r), SOCKS_E_DOMAIN_LONG,
         9 + 256);
    /* 255 bytes fits the field but not a domain name (label > 63) */
    big[9 + 255] = 0;
    feed("socks4a: 255-byte invalid name", w_s4, big, 9 + 256, &r, sizeof(r), SOCKS_E_DOMAIN,
         9 + 256);
    /* a valid 253-byte name: 63.63.63.61 */
    memset(big + 9, 'a', 253);
    big[9 + 63] = big[9 + 127] = big[9 + 191] = '.';
    big[9 + 253] = 0;
    feed("socks4a: 253-byte name", w_s4, big, 9 + 254, &r, sizeof(r), 9 + 254, 9 + 254);
    is_int(strlen(r.target.host), 253, "socks4a: 253-byte name kept");

    static const uint8_t a4empty[] = {4, 1, 0, 80, 0, 0, 0, 1, 0, 0};
    FEED("socks4a: empty domain", w_s4, a4empty, &r, SOCKS_E_DOMAIN, 10);
    static const uint8_t a4bad[] = {4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', ' ', 'b', 0};
    FEED("socks4a: space in domain", w_s4, a4bad, &r, SOCKS_E_DOMAIN, sizeof(a4bad));
    static const uint8_t a4dots[] = {4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', '.', '.', 'b', 0};
    FEED("socks4a: empty label", w_s4, a4dots, &r, SOCKS_E_DOMAIN, sizeof(a4dots));
    static const uint8_t a4hi[] = {4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', 0xc3, 0xa9, 0};
    FEED("socks4a: non-ASCII domain", w_s4, a4hi, &r, SOCKS_E_DOMAIN, sizeof(a4hi));

    /* reply */
    uint8_t out[16];
    union sockaddr_any b = sa4("1.2.3.4", 80);
    is_int(socks4_build_reply(SOCKS4_REP_GRANTED, &b, out, sizeof(out)), 8, "socks4 reply: 8");
    ok(!memcmp(out, "\x00\x5a\x00\x50\x01\x02\x03\x04", 8), "socks4 reply: bytes");
    is_int(socks4_build_reply(SOCKS4_REP_REJECTED, NULL, out, 8), 8, "socks4 reject: 8");
    ok(!memcmp(out, "\x00\x5b\x00\x00\x00\x00\x00\x00", 8), "socks4 reject: bytes");
    b = sa6("::ffff:10.0.0.2", 1080);
    socks4_build_reply(SOCKS4_REP_GRANTED, &b, out, 8);
    ok(!memcmp(out, "\x00\x5a\x04\x38\x0a\x00\x00\x02", 8), "socks4 reply: v4-mapped unmapped");
    b = sa6("2001:db8::1", 1080);
    socks4_build_reply(SOCKS4_REP_GRANTED, &b, out, 8);
    ok(!memcmp(out, "\x00\x5a\x00\x00\x00\x00\x00\x00", 8), "socks4 reply: IPv6 gives zeros");
    is_int(socks4_build_reply(SOCKS4_REP_GRANTED, NULL, out, 7), -1, "socks4 reply: cap 7");
}

static void test_greeting(void)
{
    struct socks5_greeting g;

    static const uint8_t g1[] = {5, 1, 0};
    FEED("greeting: no-auth", w_greet, g1, &g, 3, 3);
    ok(g.nmethods == 1 && g.methods == SOCKS5_METHOD_F_NONE, "greeting: F_NONE");
    static const uint8_t g2[] = {5, 2, 0, 2};
    FEED("greeting: no-auth + userpass", w_greet, g2, &g, 4, 4);
    is_int(g.methods, SOCKS5_METHOD_F_NONE | SOCKS5_METHOD_F_USERPASS, "greeting: flags");
    static const uint8_t g3[] = {5, 4, 0x80, 1, 2, 2};
    FEED("greeting: gssapi, private, dup", w_greet, g3, &g, 6, 6);
    ok(g.nmethods == 4 && g.methods == (SOCKS5_METHOD_F_GSSAPI | SOCKS5_METHOD_F_USERPASS),
       "greeting: unknown ignored, duplicates fine");
    static const uint8_t g4[] = {5, 1, 0xff};
    FEED("greeting: only unknown", w_greet, g4, &g, 3, 3);
    is_int(g.methods, 0, "greeting: no known method");

    uint8_t g255[2 + 255];
    g255[0] = 5;
    g255[1] = 255;
    for (int i = 0; i < 255; i++)
        g255[2 + i] = (uint8_t)(i + 1);
    FEED("greeting: 255 methods", w_greet, g255, &g, 257, 257);
    is_int(g.methods, SOCKS5_METHOD_F_GSSAPI | SOCKS5_METHOD_F_USERPASS, "greeting 255: flags");

    static const uint8_t e1[] = {4, 1, 0};
    FEED("greeting: version 4", w_greet, e1, &g, SOCKS_E_VERSION, 1);
    static const uint8_t e2[] = {5, 0};
    FEED("greeting: NMETHODS 0", w_greet, e2, &g, SOCKS_E_NMETHODS, 2);

    uint8_t out[4];
    ok(hexdump_eq(out, socks5_build_method_reply(SOCKS5_METHOD_USERPASS, out, sizeof(out)),
                  (const uint8_t *)"\x05\x02", 2),
       "method reply: 05 02");
    ok(hexdump_eq(out, socks5_build_method_reply(SOCKS5_METHOD_NO_ACCEPTABLE, out, 2),
                  (const uint8_t *)"\x05\xff", 2),
       "method reply: 05 ff");
    is_int(socks5_build_method_reply(0, out, 1), -1, "method reply: cap 1");
}

static void test_auth(void)
{
    struct socks5_auth a;

    static const uint8_t a1[] = {1, 4, 'u', 's', 'e', 'r', 4, 'p', 'a', 's', 's'};
    FEED("auth: user/pass", w_auth, a1, &a, 11, 11);
    ok(a.user == a1 + 2 && a.user_len == 4 && a.pass == a1 + 7 && a.pass_len == 4,
       "auth: pointers into buf");
    static const uint8_t a2[] = {1, 1, 'u', 0};
    FEED("auth: empty password accepted", w_auth, a2, &a, 4, 4);
    ok(a.user_len == 1 && a.pass_len == 0 && a.pass == a2 + 4, "auth: pass_len 0");

    uint8_t big[513];
    big[0] = 1;
    big[1] = 255;
    memset(big + 2, 'u', 255);
    big[257] = 255;
    memset(big + 258, 'p', 255);
    FEED("auth: 255/255", w_auth, big, &a, 513, 513);
    ok(a.user_len == 255 && a.pass_len == 255 && a.pass == big + 258, "auth: 255/255 fields");

    static const uint8_t e1[] = {5, 1, 'u', 1, 'p'};
    FEED("auth: VER 5", w_auth, e1, &a, SOCKS_E_AUTH_VERSION, 1);
    static const uint8_t e2[] = {1, 0, 1, 'p'};
    FEED("auth: ULEN 0", w_auth, e2, &a, SOCKS_E_ULEN, 2);
    static const uint8_t e3[] = {1, 3, 'a', 0, 'b', 1, 'p'};
    FEED("auth: NUL in user", w_auth, e3, &a, SOCKS_E_AUTH_NUL, 5);
    static const uint8_t e4[] = {1, 1, 'a', 3, 'p', 0, 'q'};
    FEED("auth: NUL in pass", w_auth, e4, &a, SOCKS_E_AUTH_NUL, 7);

    uint8_t out[2];
    ok(hexdump_eq(out, socks5_build_auth_reply(SOCKS5_AUTH_SUCCESS, out, 2),
                  (const uint8_t *)"\x01\x00", 2),
       "auth reply: 01 00");
    ok(hexdump_eq(out, socks5_build_auth_reply(SOCKS5_AUTH_FAILURE, out, 2),
                  (const uint8_t *)"\x01\x01", 2),
       "auth reply: 01 01");
    is_int(socks5_build_auth_reply(0, out, 1), -1, "auth reply: cap 1");
}

static void test_request(void)
{
    struct socks5_request q;

    static const uint8_t r4[] = {5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90};
    FEED("request: connect IPv4", w_req, r4, &q, 10, 10);
    ok(q.cmd == SOCKS_CMD_CONNECT && q.target.kind == HOST_IP && q.target.ip.family == AF_INET &&
           !strcmp(q.target.host, "127.0.0.1") && q.target.port == 8080,
       "request IPv4: fields");

    static const uint8_t r6[] = {5, 2, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,
                                 0, 0, 0, 0, 0,    0,    0,    0,    1, 0, 21};
    FEED("request: bind IPv6", w_req, r6, &q, 22, 22);
    ok(q.cmd == SOCKS_CMD_BIND && q.target.kind == HOST_IP && q.target.ip.family == AF_INET6 &&
           !strcmp(q.target.host, "2001:db8::1") && q.target.port == 21,
       "request IPv6: fields");

    static const uint8_t rd[] = {5,   1,   0,   3,   11,  'E', 'x', 'a', 'm',
                                 'p', 'l', 'e', '.', 'o', 'r', 'g', 1,   0xbb};
    FEED("request: connect domain", w_req, rd, &q, 18, 18);
    ok(q.target.kind == HOST_DOMAIN && !strcmp(q.target.host, "example.org") &&
           q.target.port == 443,
       "request domain: lower-cased");

    static const uint8_t rdip[] = {5,   1,   0,   3,   11,  '1', '9', '2', '.',
                                   '1', '6', '8', '.', '1', '.', '1', 0,   80};
    FEED("request: IPv4 literal in domain", w_req, rdip, &q, 18, 18);
    ok(q.target.kind == HOST_IP && q.target.ip.family == AF_INET &&
           !strcmp(q.target.host, "192.168.1.1"),
       "request domain IPv4 literal: HOST_IP");

    static const uint8_t rdip6[] = {5, 1, 0, 3, 3, ':', ':', '1', 0, 80};
    FEED("request: IPv6 literal in domain", w_req, rdip6, &q, 10, 10);
    ok(q.target.kind == HOST_IP && q.target.ip.family == AF_INET6 && !strcmp(q.target.host, "::1"),
       "request domain IPv6 literal: HOST_IP");

    static const uint8_t ru[] = {5, 3, 0, 1, 0, 0, 0, 0, 0, 0};
    FEED("request: udp associate 0.0.0.0:0", w_req, ru, &q, 10, 10);
    ok(q.cmd == SOCKS_CMD_UDP_ASSOCIATE && q.target.port == 0 && !strcmp(q.target.host, "0.0.0.0"),
       "request udp: fields");

    /* 253-byte name plus trailing dot = 254 bytes */
    uint8_t rl[5 + 255 + 2];
    memcpy(rl, "\x05\x01\x00\x03", 4);
    rl[4] = 254;
    memset(rl + 5, 'b', 254);
    rl[5 + 63] = rl[5 + 127] = rl[5 + 191] = rl[5 + 253] = '.';
    rl[5 + 254] = 0;
    rl[5 + 255] = 80;
    feed("request: 254-byte name with trailing dot", w_req, rl, 5 + 256, &q, sizeof(q), 261, 261);
    is_int(strlen(q.target.host), 253, "request: trailing dot dropped");
    rl[4] = 255;
    memset(rl + 5, 'b', 255);
    rl[5 + 255] = 0;
    rl[5 + 256] = 80;
    feed("request: 255-byte name is not a domain", w_req, rl, sizeof(rl), &q, sizeof(q),
         SOCKS_E_DOMAIN, 5 + 255);

    /* errors, each at its byte */
    static const uint8_t e1[] = {4, 1, 0, 1, 1, 2, 3, 4, 0, 80};
    FEED("request: VER 4", w_req, e1, &q, SOCKS_E_VERSION, 1);
    static const uint8_t e2[] = {5, 0, 0, 1, 1, 2, 3, 4, 0, 80};
    FEED("request: CMD 0", w_req, e2, &q, SOCKS_E_CMD, 2);
    static const uint8_t e3[] = {5, 4, 0, 1, 1, 2, 3, 4, 0, 80};
    FEED("request: CMD 4", w_req, e3, &q, SOCKS_E_CMD, 2);
    static const uint8_t e4[] = {5, 1, 1, 1, 1, 2, 3, 4, 0, 80};
    FEED("request: RSV 1", w_req, e4, &q, SOCKS_E_RSV, 3);
    static const uint8_t e5[] = {5, 1, 0, 2, 1, 2, 3, 4, 0, 80};
    FEED("request: ATYP 2", w_req, e5, &q, SOCKS_E_ATYP, 4);
    static const uint8_t e6[] = {5, 1, 0, 0, 1, 2, 3, 4, 0, 80};
    FEED("request: ATYP 0", w_req, e6, &q, SOCKS_E_ATYP, 4);
    static const uint8_t e7[] = {5, 1, 0, 3, 0, 0, 80};
    FEED("request: empty domain", w_req, e7, &q, SOCKS_E_DOMAIN, 5);
    static const uint8_t e8[] = {5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80};
    FEED("request: NUL in domain", w_req, e8, &q, SOCKS_E_DOMAIN, 8);
    static const uint8_t e9[] = {5, 1, 0, 3, 5, 'a', '/', 'b', '.', 'c', 0, 80};
    FEED("request: slash in domain", w_req, e9, &q, SOCKS_E_DOMAIN, 10);
    static const uint8_t e10[] = {5, 1, 0, 3, 1, '.', 0, 80};
    FEED("request: domain '.'", w_req, e10, &q, SOCKS_E_DOMAIN, 6);
    static const uint8_t e12[] = {5, 1, 0, 3, 3, 'a', '.', '.', 0, 80};
    FEED("request: two trailing dots", w_req, e12, &q, SOCKS_E_DOMAIN, 8);
    static const uint8_t rdot[] = {5, 1, 0, 3, 8, '1', '.', '2', '.', '3', '.', '4', '.', 0, 80};
    FEED("request: IPv4 literal with trailing dot", w_req, rdot, &q, 15, 15);
    ok(q.target.kind == HOST_IP && !strcmp(q.target.host, "1.2.3.4"),
       "request: '1.2.3.4.' is the IP, not a domain");
    static const uint8_t e11[] = {5, 1, 0, 3, 5, '[', ':', ':', '1', ']', 0, 80};
    FEED("request: bracketed IPv6 is not a name", w_req, e11, &q, SOCKS_E_DOMAIN, 10);

    is_int(socks5_error_reply_code(SOCKS_E_CMD), SOCKS5_REP_CMD_NOT_SUPPORTED, "rep: E_CMD -> 7");
    is_int(socks5_error_reply_code(SOCKS_E_ATYP), SOCKS5_REP_ATYP_NOT_SUPPORTED,
           "rep: E_ATYP -> 8");
    is_int(socks5_error_reply_code(SOCKS_E_RSV), SOCKS5_REP_GENERAL_FAILURE, "rep: E_RSV -> 1");
    is_int(socks5_error_reply_code(SOCKS_E_DOMAIN), SOCKS5_REP_GENERAL_FAILURE,
           "rep: E_DOMAIN -> 1");
    is_int(socks5_error_reply_code(SOCKS_E_VERSION), SOCKS5_REP_GENERAL_FAILURE,
           "rep: E_VERSION -> 1");
    is_int(SOCKS5_REP_CONN_TIMEOUT, 9, "rep: g3proxy's non-standard timeout code");

    int distinct = 1;
    for (int i = -1; i >= SOCKS_E_FRAG; i--) {
        if (!strcmp(socks_strerror(i), "unknown error"))
            distinct = 0;
        for (int j = i - 1; j >= SOCKS_E_FRAG; j--)
            if (!strcmp(socks_strerror(i), socks_strerror(j)))
                distinct = 0;
    }
    ok(distinct, "every SOCKS_E_* has its own text");
    is_str(socks_strerror(1), "unknown error", "strerror: unknown code");
}

static void test_reply(void)
{
    uint8_t out[SOCKS5_REPLY_MAX + 8];
    union sockaddr_any b;
    struct upstream_addr h;

    b = sa4("10.0.0.1", 1080);
    ok(hexdump_eq(out, socks5_build_reply(SOCKS5_REP_SUCCEEDED, &b, out, sizeof(out)),
                  (const uint8_t *)"\x05\x00\x00\x01\x0a\x00\x00\x01\x04\x38", 10),
       "reply IPv4: bytes");
    is_int(socks5_build_reply(0, &b, out, 9), -1, "reply IPv4: cap 9");
    is_int(socks5_build_reply(0, &b, out, 10), 10, "reply IPv4: cap 10");
    b = sa6("2001:db8::2", 443);
    ok(hexdump_eq(
           out, socks5_build_reply(SOCKS5_REP_SUCCEEDED, &b, out, sizeof(out)),
           (const uint8_t *)"\x05\x00\x00\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02\x01\xbb",
           22),
       "reply IPv6: bytes");
    is_int(socks5_build_reply(0, &b, out, 21), -1, "reply IPv6: cap 21");
    is_int(socks5_build_reply(0, &b, out, 2), -1, "reply IPv6: cap 2");
    b = sa6("::ffff:192.0.2.7", 80);
    ok(hexdump_eq(out, socks5_build_reply(SOCKS5_REP_SUCCEEDED, &b, out, sizeof(out)),
                  (const uint8_t *)"\x05\x00\x00\x01\xc0\x00\x02\x07\x00\x50", 10),
       "reply v4-mapped: written as IPv4");
    ok(hexdump_eq(out, socks5_build_reply(SOCKS5_REP_HOST_UNREACHABLE, NULL, out, sizeof(out)),
                  (const uint8_t *)"\x05\x04\x00\x01\0\0\0\0\0\0", 10),
       "reply failure without address: 0.0.0.0:0");
    memset(&b, 0, sizeof(b));
    b.sa.sa_family = AF_UNIX;
    ok(hexdump_eq(out, socks5_build_reply(SOCKS5_REP_CONN_TIMEOUT, &b, out, sizeof(out)),
                  (const uint8_t *)"\x05\x09\x00\x01\0\0\0\0\0\0", 10),
       "reply with AF_UNIX: 0.0.0.0:0");

    memset(&h, 0, sizeof(h));
    h.kind = HOST_DOMAIN;
    strcpy(h.host, "proxy.example");
    h.port = 1080;
    ok(hexdump_eq(out, socks5_build_reply_host(SOCKS5_REP_SUCCEEDED, &h, out, sizeof(out)),
                  (const uint8_t *)"\x05\x00\x00\x03\x0dproxy.example\x04\x38", 20),
       "reply domain: bytes");
    is_int(socks5_build_reply_host(0, &h, out, 19), -1, "reply domain: cap 19");
    memset(h.host, 'x', 255);
    h.host[255] = 0;
    is_int(socks5_build_reply_host(0, &h, out, sizeof(out)), SOCKS5_REPLY_MAX,
           "reply 255-byte domain: 262 bytes");
    is_int(socks5_build_reply_host(0, &h, out, SOCKS5_REPLY_MAX - 1), -1, "reply 255: cap 261");
    h.host[255] = 'x';
    is_int(socks5_build_reply_host(0, &h, out, sizeof(out)), -1, "reply: unterminated host");
    h.host[0] = 0;
    is_int(socks5_build_reply_host(0, &h, out, sizeof(out)), -1, "reply: empty domain");
    ok(hexdump_eq(out, socks5_build_reply_host(SOCKS5_REP_NOT_ALLOWED, NULL, out, sizeof(out)),
                  (const uint8_t *)"\x05\x02\x00\x01\0\0\0\0\0\0", 10),
       "reply_host NULL: 0.0.0.0:0");
    memset(&h, 0, sizeof(h));
    h.kind = HOST_IP;
    is_int(socks5_build_reply_host(0, &h, out, sizeof(out)), -1,
           "reply_host: HOST_IP without family");
}

/* build_reply_host / build_udp_header_host -> parse gives the same target back */
static void roundtrip(const char *what, const struct upstream_addr *t)
{
    uint8_t out[SOCKS5_REPLY_MAX];
    struct socks5_request q;
    struct upstream_addr u;
    int n;

    n = socks5_build_reply_host(SOCKS_CMD_CONNECT, t, out, sizeof(out));
    /* a reply with REP 1 reads as a CONNECT request */
    ok(n > 0 && socks5_parse_request(out, (size_t)n, &q) == n && q.target.kind == t->kind &&
           q.target.port == t->port && !strcmp(q.target.host, t->host) &&
           !memcmp(&q.target.ip, &t->ip, sizeof(t->ip)),
       "round trip reply -> request: %s", what);
    n = socks5_build_udp_header_host(t, out, sizeof(out));
    ok(n > 0 && socks5_parse_udp_header(out, (size_t)n, &u) == n && u.kind == t->kind &&
           u.port == t->port && !strcmp(u.host, t->host) && !memcmp(&u.ip, &t->ip, sizeof(t->ip)),
       "round trip udp header: %s", what);
}

static void test_roundtrip(void)
{
    static const uint8_t reqs[][24] = {
        {5, 1, 0, 1, 1, 2, 3, 4, 0, 80},
        {5, 1, 0, 4, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff},
        {5, 1, 0, 3, 7, 'a', '.', 'B', '-', 'c', '_', '.', 0, 1},
    };
    static const size_t lens[] = {10, 22, 14};
    static const char *names[] = {"IPv4", "IPv6", "domain"};
    struct socks5_request q;

    for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
        is_int(socks5_parse_request(reqs[i], lens[i], &q), (int)lens[i], "parse %s", names[i]);
        roundtrip(names[i], &q.target);
    }
}

static void test_udp(void)
{
    struct upstream_addr t;
    uint8_t out[SOCKS5_UDP_HDR_MAX];
    union sockaddr_any s;

    static const uint8_t u4[] = {0, 0, 0, 1, 8, 8, 8, 8, 0, 53, 'q', 'u', 'e', 'r', 'y'};
    is_int(socks5_parse_udp_header(u4, sizeof(u4), &t), 10, "udp IPv4: header 10");
    ok(t.kind == HOST_IP && !strcmp(t.host, "8.8.8.8") && t.port == 53, "udp IPv4: target");
    feed("udp IPv4: prefixes", w_udp, u4, 10, &t, sizeof(t), 10, 10);
    static const uint8_t ud[] = {0, 0, 0, 3, 4, 'h', 'o', 's', 't', 0x30, 0x39};
    FEED("udp domain, empty data", w_udp, ud, &t, 11, 11);
    ok(t.kind == HOST_DOMAIN && !strcmp(t.host, "host") && t.port == 12345, "udp domain: target");
    static const uint8_t u6[] = {0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,  0,
                                 0, 0, 0, 0, 0, 0, 0, 1, 0, 7, 'x'};
    is_int(socks5_parse_udp_header(u6, sizeof(u6), &t), 22, "udp IPv6: header 22");
    ok(t.ip.family == AF_INET6 && !strcmp(t.host, "::1") && t.port == 7, "udp IPv6: target");

    static const uint8_t e1[] = {1, 0, 0, 1, 8, 8, 8, 8, 0, 53};
    FEED("udp: RSV[0] 1", w_udp, e1, &t, SOCKS_E_RSV, 1);
    static const uint8_t e2[] = {0, 1, 0, 1, 8, 8, 8, 8, 0, 53};
    FEED("udp: RSV[1] 1", w_udp, e2, &t, SOCKS_E_RSV, 2);
    static const uint8_t e3[] = {0, 0, 1, 1, 8, 8, 8, 8, 0, 53};
    FEED("udp: FRAG 1", w_udp, e3, &t, SOCKS_E_FRAG, 3);
    static const uint8_t e4[] = {0, 0, 0x81, 1, 8, 8, 8, 8, 0, 53};
    FEED("udp: FRAG 0x81 (last fragment)", w_udp, e4, &t, SOCKS_E_FRAG, 3);
    static const uint8_t e5[] = {0, 0, 0, 5, 8, 8, 8, 8, 0, 53};
    FEED("udp: ATYP 5", w_udp, e5, &t, SOCKS_E_ATYP, 4);
    static const uint8_t e6[] = {0, 0, 0, 3, 2, 'a', ' ', 0, 53};
    FEED("udp: bad domain", w_udp, e6, &t, SOCKS_E_DOMAIN, 7);
    is_int(socks5_parse_udp_header(u4, 9, &t), 0, "udp: truncated datagram gives 0");

    s = sa4("8.8.4.4", 53);
    ok(hexdump_eq(out, socks5_build_udp_header(&s, out, sizeof(out)),
                  (const uint8_t *)"\0\0\0\x01\x08\x08\x04\x04\x00\x35", 10),
       "udp header IPv4: bytes");
    is_int(socks5_build_udp_header(&s, out, 9), -1, "udp header IPv4: cap 9");
    s = sa6("::ffff:8.8.4.4", 53);
    ok(hexdump_eq(out, socks5_build_udp_header(&s, out, sizeof(out)),
                  (const uint8_t *)"\0\0\0\x01\x08\x08\x04\x04\x00\x35", 10),
       "udp header v4-mapped: IPv4");
    s = sa6("2001:4860:4860::8888", 53);
    ok(hexdump_eq(
           out, socks5_build_udp_header(&s, out, sizeof(out)),
           (const uint8_t *)"\0\0\0\x04\x20\x01\x48\x60\x48\x60\0\0\0\0\0\0\0\0\x88\x88\x00\x35",
           22),
       "udp header IPv6: bytes");
    is_int(socks5_build_udp_header(&s, out, 21), -1, "udp header IPv6: cap 21");
    is_int(socks5_build_udp_header(&s, out, 2), -1, "udp header: cap 2");
    is_int(socks5_parse_udp_header(out, 22, &t), 22, "udp header IPv6: parses back");
    ok(!strcmp(t.host, "2001:4860:4860::8888") && t.port == 53, "udp header IPv6: same target");
}

int main(void)
{
    test_detect();
    test_socks4();
    test_greeting();
    test_auth();
    test_request();
    test_reply();
    test_roundtrip();
    test_udp();
    return done_testing();
}
