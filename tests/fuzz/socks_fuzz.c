/* libFuzzer target for the SOCKS parsers (socks_proto.h). Every input goes to every
 * parser, whole and as prefixes (the byte-by-byte view a server has), checking:
 * consumed <= len, borrowed pointers inside the consumed bytes, prefix stability (a
 * non-zero result never changes when more bytes arrive, same out), and
 * parse -> build -> parse round trips of targets. Any violation traps. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "confval.h"
#include "socks_proto.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

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

static bool in_range(const uint8_t *p, size_t n, const uint8_t *buf, int r)
{
    return p >= buf && p + n <= buf + r;
}

static void check_target(const struct upstream_addr *t)
{
    size_t n = strnlen(t->host, sizeof(t->host));

    CHECK(n > 0 && n < sizeof(t->host));
    if (t->kind == HOST_IP)
        CHECK(t->ip.family == AF_INET || t->ip.family == AF_INET6);
    if (t->kind == HOST_DOMAIN) {
        struct ip_addr ip;
        /* canonical: never an IP literal, no trailing dot, lower case */
        CHECK(domain_check(t->host, n) == 0 && t->host[n - 1] != '.' && ip_parse(t->host, &ip) < 0);
        for (size_t i = 0; i < n; i++)
            CHECK(!(t->host[i] >= 'A' && t->host[i] <= 'Z'));
    } else {
        CHECK(t->kind == HOST_IP);
    }
}

static bool same_target(const struct upstream_addr *a, const struct upstream_addr *b)
{
    return a->kind == b->kind && a->port == b->port && !strcmp(a->host, b->host) &&
           a->ip.family == b->ip.family && !memcmp(a->ip.b, b->ip.b, sizeof(a->ip.b));
}

/* Every prefix of a short input; a sample of a long one. */
static void check_prefixes(parse_fn fn, const uint8_t *data, size_t size, int r, const void *out,
                           size_t osize)
{
    union {
        struct socks4_request s4;
        struct socks5_greeting g;
        struct socks5_auth a;
        struct socks5_request q;
        struct upstream_addr t;
    } tmp;

    for (size_t k = 0; k < size; k += k < 600 ? 1 : 97) {
        int rk = fn(data, k, &tmp);
        CHECK(rk <= (int)k);
        if (rk) {
            CHECK(rk == r);
            if (rk > 0)
                CHECK(!memcmp(&tmp, out, osize));
        }
    }
}

/* target -> reply / UDP header (host flavour) -> parse gives it back; and the sockaddr
 * flavour for IPs (IPv4-mapped come back as IPv4). */
static void roundtrip(const struct upstream_addr *t)
{
    uint8_t b[SOCKS5_REPLY_MAX];
    struct socks5_request q;
    struct upstream_addr u;
    union sockaddr_any sa;
    socklen_t salen;
    int n;

    n = socks5_build_reply_host(SOCKS_CMD_CONNECT, t, b, sizeof(b));
    CHECK(n > 0 && n <= SOCKS5_REPLY_MAX);
    CHECK(socks5_parse_request(b, (size_t)n, &q) == n);
    CHECK(q.cmd == SOCKS_CMD_CONNECT && same_target(&q.target, t));
    CHECK(socks5_build_reply_host(0, t, b, (size_t)n - 1) == -1);

    n = socks5_build_udp_header_host(t, b, sizeof(b));
    CHECK(n > 0 && socks5_parse_udp_header(b, (size_t)n, &u) == n && same_target(&u, t));

    if (t->kind != HOST_IP)
        return;
    ip_to_sockaddr(&t->ip, t->port, &sa, &salen);
    n = socks5_build_udp_header(&sa, b, sizeof(b));
    CHECK(n == 10 || n == 22);
    CHECK(socks5_parse_udp_header(b, (size_t)n, &u) == n && u.port == t->port);
    if (t->ip.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&t->ip.v6))
        CHECK(u.ip.family == AF_INET && !memcmp(u.ip.b, t->ip.b + 12, 4));
    else
        CHECK(same_target(&u, t));
    n = socks5_build_reply(SOCKS_CMD_BIND, &sa, b, sizeof(b));
    CHECK((n == 10 || n == 22) && socks5_build_reply(0, &sa, b, (size_t)n - 1) == -1);
    CHECK(socks5_parse_request(b, (size_t)n, &q) == n && q.cmd == SOCKS_CMD_BIND);
    CHECK(q.target.port == t->port && !memcmp(&q.target.ip, &u.ip, sizeof(u.ip)));
    n = socks4_build_reply(SOCKS4_REP_GRANTED, &sa, b, sizeof(b));
    CHECK(n == SOCKS4_REPLY_LEN && b[0] == 0 && b[1] == SOCKS4_REP_GRANTED);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct socks4_request s4;
    struct socks5_greeting g;
    struct socks5_auth a;
    struct socks5_request q;
    struct upstream_addr t;
    int r;

    r = socks_detect(data, size);
    CHECK(size ? (r == 4 || r == 5 || r == SOCKS_E_VERSION) : r == 0);

    r = socks4_parse_request(data, size, &s4);
    CHECK(r <= (int)size);
    if (r > 0) {
        CHECK(r >= 9 && r <= 520);
        CHECK(s4.cmd == SOCKS_CMD_CONNECT || s4.cmd == SOCKS_CMD_BIND);
        CHECK(s4.userid_len <= SOCKS4_FIELD_MAX && in_range(s4.userid, s4.userid_len, data, r));
        CHECK(!memchr(s4.userid, 0, s4.userid_len) && s4.userid[s4.userid_len] == 0);
        check_target(&s4.target);
        roundtrip(&s4.target);
    }
    check_prefixes(w_s4, data, size, r, &s4, sizeof(s4));

    r = socks5_parse_greeting(data, size, &g);
    CHECK(r <= (int)size);
    if (r > 0) {
        uint8_t b[2];
        CHECK(r == 2 + g.nmethods && g.nmethods >= 1 && !(g.methods & ~7));
        CHECK(socks5_build_method_reply(data[r - 1], b, 2) == 2 && b[1] == data[r - 1]);
    }
    check_prefixes(w_greet, data, size, r, &g, sizeof(g));

    r = socks5_parse_auth(data, size, &a);
    CHECK(r <= (int)size);
    if (r > 0) {
        CHECK(r == (int)(3 + a.user_len + a.pass_len) && a.user_len >= 1);
        CHECK(in_range(a.user, a.user_len, data, r) && in_range(a.pass, a.pass_len, data, r));
        CHECK(!memchr(a.user, 0, a.user_len) && !memchr(a.pass, 0, a.pass_len));
        uint8_t b[2];
        CHECK(socks5_build_auth_reply(a.user[0], b, 2) == 2 && b[0] == 1 && b[1] == a.user[0]);
    }
    check_prefixes(w_auth, data, size, r, &a, sizeof(a));

    r = socks5_parse_request(data, size, &q);
    CHECK(r <= (int)size);
    if (r > 0) {
        CHECK(r >= 8 && r <= SOCKS5_REPLY_MAX); /* ATYP 3 with a 1-byte name */
        CHECK(q.cmd >= SOCKS_CMD_CONNECT && q.cmd <= SOCKS_CMD_UDP_ASSOCIATE);
        check_target(&q.target);
        roundtrip(&q.target);
    } else if (r < 0) {
        uint8_t rep = socks5_error_reply_code(r);
        CHECK(rep == SOCKS5_REP_GENERAL_FAILURE || rep == SOCKS5_REP_CMD_NOT_SUPPORTED ||
              rep == SOCKS5_REP_ATYP_NOT_SUPPORTED);
    }
    check_prefixes(w_req, data, size, r, &q, sizeof(q));

    r = socks5_parse_udp_header(data, size, &t);
    CHECK(r <= (int)size);
    if (r > 0) {
        CHECK(r >= 8 && r <= SOCKS5_UDP_HDR_MAX);
        check_target(&t);
        roundtrip(&t);
    }
    check_prefixes(w_udp, data, size, r, &t, sizeof(t));

    CHECK(strcmp(socks_strerror(r), "") != 0);
    return 0;
}
