/* SOCKS4/4a/5 and RFC 1929 wire parsers and builders (contracts in socks_proto.h).
 *
 * Every parser checks fields in wire order and returns 0 ("need more") only from the
 * point where the next field is missing. That is what makes results prefix-stable: a
 * longer input passes the same checks on the same bytes before reaching new ones. */
#include <arpa/inet.h>
#include <string.h>

#include "common.h"
#include "confval.h"
#include "socks_proto.h"

const char *socks_strerror(int err)
{
    switch (err) {
    case SOCKS_E_VERSION:
        return "bad protocol version";
    case SOCKS_E_NMETHODS:
        return "no authentication method offered";
    case SOCKS_E_CMD:
        return "unknown command";
    case SOCKS_E_RSV:
        return "reserved field not zero";
    case SOCKS_E_ATYP:
        return "unknown address type";
    case SOCKS_E_DOMAIN:
        return "invalid domain name";
    case SOCKS_E_USERID_LONG:
        return "SOCKS4 user id too long";
    case SOCKS_E_DOMAIN_LONG:
        return "SOCKS4a domain name too long";
    case SOCKS_E_AUTH_VERSION:
        return "bad username/password subnegotiation version";
    case SOCKS_E_ULEN:
        return "empty username";
    case SOCKS_E_AUTH_NUL:
        return "NUL byte in username or password";
    case SOCKS_E_FRAG:
        return "fragmented UDP datagram";
    }
    return "unknown error";
}

uint8_t socks5_error_reply_code(int err)
{
    switch (err) {
    case SOCKS_E_CMD:
        return SOCKS5_REP_CMD_NOT_SUPPORTED;
    case SOCKS_E_ATYP:
        return SOCKS5_REP_ATYP_NOT_SUPPORTED;
    default:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
}

int socks_detect(const uint8_t *buf, size_t len)
{
    if (!len)
        return 0;
    if (buf[0] == SOCKS4_VERSION || buf[0] == SOCKS5_VERSION)
        return buf[0];
    return SOCKS_E_VERSION;
}

static inline uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* ---- addresses ---- */

static void target_ip(struct upstream_addr *a, int family, const uint8_t *p)
{
    a->kind = HOST_IP;
    a->ip.family = (uint8_t)family;
    memcpy(a->ip.b, p, family == AF_INET ? 4 : 16);
    ip_str(&a->ip, a->host, sizeof(a->host));
}

/* A name from a domain field (SOCKS5 ATYP 3, SOCKS4a): an IP literal becomes HOST_IP,
 * since clients (curl --socks5-hostname, socks4a) put literals there and the egress
 * filter must see them as IPs; anything else must pass domain_check. The trailing dot
 * goes first, so "1.2.3.4." is the IP too, never a domain that resolves to it. */
static int target_name(struct upstream_addr *a, const uint8_t *name, size_t len)
{
    if (!len || len > HOST_MAX || memchr(name, 0, len))
        return SOCKS_E_DOMAIN;
    memcpy(a->host, name, len);
    if (len > 1 && a->host[len - 1] == '.')
        len--;
    a->host[len] = 0;
    if (ip_parse(a->host, &a->ip) == 0) {
        a->kind = HOST_IP;
        ip_str(&a->ip, a->host, sizeof(a->host));
        return 0;
    }
    /* domain_check tolerates one trailing dot; one was already removed */
    if (a->host[len - 1] == '.' || domain_check(a->host, len) < 0)
        return SOCKS_E_DOMAIN;
    for (char *c = a->host; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    a->kind = HOST_DOMAIN;
    return 0;
}

/* ATYP ADDR PORT at p: the bytes it spans, 0 if incomplete, or an error. */
static int parse_addr(const uint8_t *p, size_t avail, struct upstream_addr *a)
{
    size_t n;
    int r;

    if (avail < 1)
        return 0;
    switch (p[0]) {
    case SOCKS5_ATYP_IPV4:
        n = 1 + 4;
        if (avail < n)
            return 0;
        target_ip(a, AF_INET, p + 1);
        break;
    case SOCKS5_ATYP_IPV6:
        n = 1 + 16;
        if (avail < n)
            return 0;
        target_ip(a, AF_INET6, p + 1);
        break;
    case SOCKS5_ATYP_DOMAIN:
        if (avail < 2)
            return 0;
        n = 2 + (size_t)p[1];
        if (avail < n)
            return 0;
        r = target_name(a, p + 2, p[1]);
        if (r < 0)
            return r;
        break;
    default:
        return SOCKS_E_ATYP;
    }
    if (avail < n + 2)
        return 0;
    a->port = get_be16(p + n);
    return (int)(n + 2);
}

/* Writes ATYP ADDR PORT; the sockaddr flavour unmaps IPv4-mapped IPv6. */
static int put_addr_sa(const union sockaddr_any *sa, uint8_t *p, size_t cap)
{
    if (sa && sa->sa.sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&sa->in6.sin6_addr)) {
        if (cap < 1 + 16 + 2)
            return -1;
        p[0] = SOCKS5_ATYP_IPV6;
        memcpy(p + 1, &sa->in6.sin6_addr, 16);
        memcpy(p + 17, &sa->in6.sin6_port, 2);
        return 1 + 16 + 2;
    }
    if (cap < 1 + 4 + 2)
        return -1;
    p[0] = SOCKS5_ATYP_IPV4;
    if (sa && sa->sa.sa_family == AF_INET) {
        memcpy(p + 1, &sa->in.sin_addr, 4);
        memcpy(p + 5, &sa->in.sin_port, 2);
    } else if (sa && sa->sa.sa_family == AF_INET6) {
        memcpy(p + 1, sa->in6.sin6_addr.s6_addr + 12, 4);
        memcpy(p + 5, &sa->in6.sin6_port, 2);
    } else {
        memset(p + 1, 0, 6);
    }
    return 1 + 4 + 2;
}

static int put_addr_host(const struct upstream_addr *a, uint8_t *p, size_t cap)
{
    size_t n;

    if (!a || a->kind == HOST_NONE)
        return put_addr_sa(NULL, p, cap);
    if (a->kind == HOST_IP && a->ip.family == AF_INET) {
        n = 1 + 4;
        if (cap < n + 2)
            return -1;
        p[0] = SOCKS5_ATYP_IPV4;
        memcpy(p + 1, a->ip.b, 4);
    } else if (a->kind == HOST_IP && a->ip.family == AF_INET6) {
        n = 1 + 16;
        if (cap < n + 2)
            return -1;
        p[0] = SOCKS5_ATYP_IPV6;
        memcpy(p + 1, a->ip.b, 16);
    } else if (a->kind == HOST_DOMAIN) {
        size_t hl = strnlen(a->host, sizeof(a->host));
        if (!hl || hl > 255)
            return -1;
        n = 2 + hl;
        if (cap < n + 2)
            return -1;
        p[0] = SOCKS5_ATYP_DOMAIN;
        p[1] = (uint8_t)hl;
        memcpy(p + 2, a->host, hl);
    } else {
        return -1;
    }
    put_be16(p + n, a->port);
    return (int)(n + 2);
}

/* ---- SOCKS4 ---- */

/* A NUL-terminated field of at most SOCKS4_FIELD_MAX bytes at buf[off]: its length,
 * -1 if incomplete, -2 if too long. */
static int socks4_field(const uint8_t *buf, size_t len, size_t off)
{
    size_t avail = len - off;
    const uint8_t *nul = memchr(buf + off, 0, MIN(avail, (size_t)SOCKS4_FIELD_MAX + 1));

    if (nul)
        return (int)(nul - (buf + off));
    return avail > SOCKS4_FIELD_MAX ? -2 : -1;
}

int socks4_parse_request(const uint8_t *buf, size_t len, struct socks4_request *out)
{
    size_t off = 8;
    int n, r;

    memset(out, 0, sizeof(*out));
    if (len < 1)
        return 0;
    if (buf[0] != SOCKS4_VERSION)
        return SOCKS_E_VERSION;
    if (len < 2)
        return 0;
    if (buf[1] != SOCKS_CMD_CONNECT && buf[1] != SOCKS_CMD_BIND)
        return SOCKS_E_CMD;
    if (len < off)
        return 0;
    n = socks4_field(buf, len, off);
    if (n < 0)
        return n == -2 ? SOCKS_E_USERID_LONG : 0;
    out->cmd = buf[1];
    out->userid = buf + off;
    out->userid_len = (size_t)n;
    off += (size_t)n + 1;
    /* SOCKS4a: DSTIP 0.0.0.x with x != 0 says "the name follows" */
    if (!buf[4] && !buf[5] && !buf[6] && buf[7]) {
        n = socks4_field(buf, len, off);
        if (n < 0)
            return n == -2 ? SOCKS_E_DOMAIN_LONG : 0;
        r = target_name(&out->target, buf + off, (size_t)n);
        if (r < 0)
            return r;
        out->is_4a = true;
        off += (size_t)n + 1;
    } else {
        target_ip(&out->target, AF_INET, buf + 4);
    }
    out->target.port = get_be16(buf + 2);
    return (int)off;
}

int socks4_build_reply(uint8_t rep, const union sockaddr_any *bound, uint8_t *buf, size_t cap)
{
    if (cap < SOCKS4_REPLY_LEN)
        return -1;
    memset(buf, 0, SOCKS4_REPLY_LEN);
    buf[1] = rep;
    if (bound && bound->sa.sa_family == AF_INET) {
        memcpy(buf + 2, &bound->in.sin_port, 2);
        memcpy(buf + 4, &bound->in.sin_addr, 4);
    } else if (bound && bound->sa.sa_family == AF_INET6 &&
               IN6_IS_ADDR_V4MAPPED(&bound->in6.sin6_addr)) {
        memcpy(buf + 2, &bound->in6.sin6_port, 2);
        memcpy(buf + 4, bound->in6.sin6_addr.s6_addr + 12, 4);
    }
    return SOCKS4_REPLY_LEN;
}

/* ---- SOCKS5 negotiation ---- */

int socks5_parse_greeting(const uint8_t *buf, size_t len, struct socks5_greeting *out)
{
    size_t n;

    memset(out, 0, sizeof(*out));
    if (len < 1)
        return 0;
    if (buf[0] != SOCKS5_VERSION)
        return SOCKS_E_VERSION;
    if (len < 2)
        return 0;
    n = buf[1];
    if (!n)
        return SOCKS_E_NMETHODS;
    if (len < 2 + n)
        return 0;
    out->nmethods = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        switch (buf[2 + i]) {
        case SOCKS5_METHOD_NONE:
            out->methods |= SOCKS5_METHOD_F_NONE;
            break;
        case SOCKS5_METHOD_GSSAPI:
            out->methods |= SOCKS5_METHOD_F_GSSAPI;
            break;
        case SOCKS5_METHOD_USERPASS:
            out->methods |= SOCKS5_METHOD_F_USERPASS;
            break;
        }
    }
    return (int)(2 + n);
}

int socks5_build_method_reply(uint8_t method, uint8_t *buf, size_t cap)
{
    if (cap < SOCKS5_METHOD_REPLY_LEN)
        return -1;
    buf[0] = SOCKS5_VERSION;
    buf[1] = method;
    return SOCKS5_METHOD_REPLY_LEN;
}

int socks5_parse_auth(const uint8_t *buf, size_t len, struct socks5_auth *out)
{
    size_t ulen, plen;

    memset(out, 0, sizeof(*out));
    if (len < 1)
        return 0;
    if (buf[0] != SOCKS5_AUTH_VERSION)
        return SOCKS_E_AUTH_VERSION;
    if (len < 2)
        return 0;
    ulen = buf[1];
    if (!ulen)
        return SOCKS_E_ULEN;
    if (len < 2 + ulen)
        return 0;
    if (memchr(buf + 2, 0, ulen))
        return SOCKS_E_AUTH_NUL;
    if (len < 3 + ulen)
        return 0;
    plen = buf[2 + ulen];
    if (len < 3 + ulen + plen)
        return 0;
    if (memchr(buf + 3 + ulen, 0, plen))
        return SOCKS_E_AUTH_NUL;
    out->user = buf + 2;
    out->user_len = ulen;
    out->pass = buf + 3 + ulen;
    out->pass_len = plen;
    return (int)(3 + ulen + plen);
}

int socks5_build_auth_reply(uint8_t status, uint8_t *buf, size_t cap)
{
    if (cap < SOCKS5_AUTH_REPLY_LEN)
        return -1;
    buf[0] = SOCKS5_AUTH_VERSION;
    buf[1] = status;
    return SOCKS5_AUTH_REPLY_LEN;
}

/* ---- SOCKS5 requests ---- */

int socks5_parse_request(const uint8_t *buf, size_t len, struct socks5_request *out)
{
    int r;

    memset(out, 0, sizeof(*out));
    if (len < 1)
        return 0;
    if (buf[0] != SOCKS5_VERSION)
        return SOCKS_E_VERSION;
    if (len < 2)
        return 0;
    if (buf[1] < SOCKS_CMD_CONNECT || buf[1] > SOCKS_CMD_UDP_ASSOCIATE)
        return SOCKS_E_CMD;
    if (len < 3)
        return 0;
    if (buf[2])
        return SOCKS_E_RSV;
    r = parse_addr(buf + 3, len - 3, &out->target);
    if (r <= 0)
        return r;
    out->cmd = buf[1];
    return 3 + r;
}

int socks5_build_reply(uint8_t rep, const union sockaddr_any *bound, uint8_t *buf, size_t cap)
{
    int r;

    if (cap < 3)
        return -1;
    r = put_addr_sa(bound, buf + 3, cap - 3);
    if (r < 0)
        return -1;
    buf[0] = SOCKS5_VERSION;
    buf[1] = rep;
    buf[2] = 0;
    return 3 + r;
}

int socks5_build_reply_host(uint8_t rep, const struct upstream_addr *bound, uint8_t *buf,
                            size_t cap)
{
    int r;

    if (cap < 3)
        return -1;
    r = put_addr_host(bound, buf + 3, cap - 3);
    if (r < 0)
        return -1;
    buf[0] = SOCKS5_VERSION;
    buf[1] = rep;
    buf[2] = 0;
    return 3 + r;
}

/* ---- SOCKS5 UDP ---- */

int socks5_parse_udp_header(const uint8_t *buf, size_t len, struct upstream_addr *target)
{
    int r;

    memset(target, 0, sizeof(*target));
    for (size_t i = 0; i < 2; i++) {
        if (len <= i)
            return 0;
        if (buf[i])
            return SOCKS_E_RSV;
    }
    if (len < 3)
        return 0;
    if (buf[2])
        return SOCKS_E_FRAG;
    r = parse_addr(buf + 3, len - 3, target);
    if (r <= 0)
        return r;
    return 3 + r;
}

int socks5_build_udp_header(const union sockaddr_any *src, uint8_t *buf, size_t cap)
{
    int r;

    if (cap < 3)
        return -1;
    r = put_addr_sa(src, buf + 3, cap - 3);
    if (r < 0)
        return -1;
    memset(buf, 0, 3);
    return 3 + r;
}

int socks5_build_udp_header_host(const struct upstream_addr *dst, uint8_t *buf, size_t cap)
{
    int r;

    if (cap < 3)
        return -1;
    r = put_addr_host(dst, buf + 3, cap - 3);
    if (r < 0)
        return -1;
    memset(buf, 0, 3);
    return 3 + r;
}
