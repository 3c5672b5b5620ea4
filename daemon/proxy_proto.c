/* PROXY protocol v1/v2 parser and builders (contracts in proxy_proto.h; the format is
 * HAProxy's "proxy-protocol.txt").
 *
 * As in socks_proto.c, every check runs in wire order and "need more" is returned only
 * where the next needed byte is missing, which keeps results prefix-stable. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "proxy_proto.h"

#define V1_SIG     "PROXY "
#define V1_SIG_LEN 6

/* v2 fixed part */
#define V2_VERSION         0x20
#define V2_CMD_MASK        0x0F
#define V2_FAM_UNSPEC      0x00
#define V2_FAM_TCP4        0x11
#define V2_FAM_UDP4        0x12
#define V2_FAM_TCP6        0x21
#define V2_FAM_UDP6        0x22
#define V2_FAM_UNIX_STREAM 0x31
#define V2_FAM_UNIX_DGRAM  0x32
#define V2_ADDR_LEN_INET   12
#define V2_ADDR_LEN_INET6  36
#define V2_ADDR_LEN_UNIX   216

const char *proxy_proto_strerror(int err)
{
    switch (err) {
    case PP_E_SIGNATURE:
        return "not a PROXY protocol header";
    case PP_E_V1_TOO_LONG:
        return "PROXY v1 line too long";
    case PP_E_V1_EOL:
        return "PROXY v1 line not ended by CRLF";
    case PP_E_V1_PROTO:
        return "PROXY v1 unknown protocol";
    case PP_E_V1_SYNTAX:
        return "PROXY v1 malformed line";
    case PP_E_V1_ADDR:
        return "PROXY v1 invalid address";
    case PP_E_V1_PORT:
        return "PROXY v1 invalid port";
    case PP_E_V2_VERSION:
        return "PROXY v2 bad version";
    case PP_E_V2_COMMAND:
        return "PROXY v2 bad command";
    case PP_E_V2_FAMILY:
        return "PROXY v2 bad address family";
    case PP_E_V2_TOO_LONG:
        return "PROXY v2 header too long";
    case PP_E_V2_ADDR_LEN:
        return "PROXY v2 length shorter than its addresses";
    case PP_E_V2_TLV:
        return "PROXY v2 malformed TLV";
    }
    return "unknown error";
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

/* ---- v1 ---- */

struct v1_tok {
    const uint8_t *p;
    size_t len;
};

static int v1_addr(const struct v1_tok *t, int family, union sockaddr_any *sa)
{
    char text[INET6_ADDRSTRLEN];

    /* inet_pton stops at a NUL: "1.2.3.4\0junk" must not pass */
    if (t->len >= sizeof(text) || memchr(t->p, 0, t->len))
        return PP_E_V1_ADDR;
    memcpy(text, t->p, t->len);
    text[t->len] = 0;
    sa->sa.sa_family = (sa_family_t)family;
    if (inet_pton(family, text,
                  family == AF_INET ? (void *)&sa->in.sin_addr : (void *)&sa->in6.sin6_addr) != 1)
        return PP_E_V1_ADDR;
    return 0;
}

static int v1_port(const struct v1_tok *t, uint16_t *port)
{
    unsigned v = 0;

    if (!t->len || t->len > 5 || (t->len > 1 && t->p[0] == '0'))
        return PP_E_V1_PORT;
    for (size_t i = 0; i < t->len; i++) {
        if (t->p[i] < '0' || t->p[i] > '9')
            return PP_E_V1_PORT;
        v = v * 10 + (unsigned)(t->p[i] - '0');
    }
    if (v > 65535)
        return PP_E_V1_PORT;
    *port = (uint16_t)v;
    return 0;
}

/* The line between "PROXY " and CRLF. */
static int v1_line(const uint8_t *p, size_t len, struct proxy_proto_info *out)
{
    struct v1_tok t[4];
    size_t pos;
    uint16_t sport, dport;
    int family, r;

    if (len >= 7 && !memcmp(p, "UNKNOWN", 7)) {
        /* the spec: ignore whatever follows up to the CRLF */
        if (len > 7 && p[7] != ' ')
            return PP_E_V1_PROTO;
        out->transport = PROXY_PROTO_TRANSPORT_UNSPEC;
        return 0;
    }
    if (len >= 4 && !memcmp(p, "TCP4", 4))
        family = AF_INET;
    else if (len >= 4 && !memcmp(p, "TCP6", 4))
        family = AF_INET6;
    else
        return PP_E_V1_PROTO;
    if (len > 4 && p[4] != ' ')
        return PP_E_V1_PROTO;
    /* four fields, each non-empty, separated by exactly one space */
    pos = 5;
    for (size_t k = 0; k < ARRAY_SIZE(t); k++) {
        size_t start = pos;
        if (pos > len)
            return PP_E_V1_SYNTAX;
        while (pos < len && p[pos] != ' ')
            pos++;
        if (pos == start)
            return PP_E_V1_SYNTAX;
        t[k].p = p + start;
        t[k].len = pos - start;
        if (k + 1 < ARRAY_SIZE(t))
            pos++; /* the space; pos > len if there was none */
    }
    if (pos != len)
        return PP_E_V1_SYNTAX;
    if ((r = v1_addr(&t[0], family, &out->src)) < 0 || (r = v1_addr(&t[1], family, &out->dst)) < 0)
        return r;
    if ((r = v1_port(&t[2], &sport)) < 0 || (r = v1_port(&t[3], &dport)) < 0)
        return r;
    if (family == AF_INET) {
        out->src.in.sin_port = htons(sport);
        out->dst.in.sin_port = htons(dport);
    } else {
        out->src.in6.sin6_port = htons(sport);
        out->dst.in6.sin6_port = htons(dport);
    }
    out->transport = PROXY_PROTO_TRANSPORT_STREAM;
    return 0;
}

/* buf starts with (a prefix of) "PROXY ". */
static int parse_v1(const uint8_t *buf, size_t len, struct proxy_proto_info *out)
{
    size_t n = MIN(len, (size_t)PROXY_PROTO_V1_MAX_LEN), i;
    int r;

    for (i = 0; i < n; i++)
        if (buf[i] == '\r' || buf[i] == '\n')
            break;
    if (i == n)
        return len >= PROXY_PROTO_V1_MAX_LEN ? PP_E_V1_TOO_LONG : 0;
    if (buf[i] == '\n')
        return PP_E_V1_EOL;
    if (i + 2 > PROXY_PROTO_V1_MAX_LEN)
        return PP_E_V1_TOO_LONG; /* the LF could only come at byte 108 */
    if (i + 1 >= len)
        return 0;
    if (buf[i + 1] != '\n')
        return PP_E_V1_EOL;
    out->version = 1;
    out->command = PROXY_PROTO_CMD_PROXY;
    r = v1_line(buf + V1_SIG_LEN, i - V1_SIG_LEN, out);
    if (r < 0)
        return r;
    return (int)(i + 2);
}

/* ---- v2 ---- */

int proxy_proto_tlv_next(const uint8_t *tlvs, size_t len, size_t *off, struct proxy_proto_tlv *tlv)
{
    size_t o = *off, vlen;

    if (o == len)
        return 0;
    if (o > len || len - o < 3)
        return -1;
    vlen = get_be16(tlvs + o + 1);
    if (len - o - 3 < vlen)
        return -1;
    tlv->type = tlvs[o];
    tlv->len = (uint16_t)vlen;
    tlv->value = tlvs + o + 3;
    *off = o + 3 + vlen;
    return 1;
}

/* buf starts with (a prefix of) the v2 signature. */
static int parse_v2(const uint8_t *buf, size_t len, struct proxy_proto_info *out)
{
    size_t alen, plen, off = 0;
    uint8_t cmd, fam;
    const uint8_t *a;
    struct proxy_proto_tlv tlv;
    int r;

    if (len < 13)
        return 0;
    if ((buf[12] & ~V2_CMD_MASK) != V2_VERSION)
        return PP_E_V2_VERSION;
    cmd = buf[12] & V2_CMD_MASK;
    if (cmd != PROXY_PROTO_CMD_LOCAL && cmd != PROXY_PROTO_CMD_PROXY)
        return PP_E_V2_COMMAND;
    if (len < 14)
        return 0;
    fam = buf[13];
    switch (fam) {
    case V2_FAM_UNSPEC:
        alen = 0;
        break;
    case V2_FAM_TCP4:
    case V2_FAM_UDP4:
        alen = V2_ADDR_LEN_INET;
        break;
    case V2_FAM_TCP6:
    case V2_FAM_UDP6:
        alen = V2_ADDR_LEN_INET6;
        break;
    case V2_FAM_UNIX_STREAM:
    case V2_FAM_UNIX_DGRAM:
        alen = V2_ADDR_LEN_UNIX;
        break;
    default:
        return PP_E_V2_FAMILY;
    }
    if (len < PROXY_PROTO_V2_HDR_LEN)
        return 0;
    plen = get_be16(buf + 14);
    if (plen > PROXY_PROTO_V2_MAX_PAYLOAD)
        return PP_E_V2_TOO_LONG;
    if (plen < alen)
        return PP_E_V2_ADDR_LEN;
    if (len < PROXY_PROTO_V2_HDR_LEN + plen)
        return 0;

    out->version = 2;
    out->command = cmd;
    out->v2_family = fam;
    out->transport = fam & 0x0F;
    a = buf + PROXY_PROTO_V2_HDR_LEN;
    if (cmd == PROXY_PROTO_CMD_PROXY && (fam == V2_FAM_TCP4 || fam == V2_FAM_UDP4)) {
        out->src.in.sin_family = AF_INET;
        out->dst.in.sin_family = AF_INET;
        memcpy(&out->src.in.sin_addr, a, 4);
        memcpy(&out->dst.in.sin_addr, a + 4, 4);
        memcpy(&out->src.in.sin_port, a + 8, 2);
        memcpy(&out->dst.in.sin_port, a + 10, 2);
    } else if (cmd == PROXY_PROTO_CMD_PROXY && (fam == V2_FAM_TCP6 || fam == V2_FAM_UDP6)) {
        out->src.in6.sin6_family = AF_INET6;
        out->dst.in6.sin6_family = AF_INET6;
        memcpy(&out->src.in6.sin6_addr, a, 16);
        memcpy(&out->dst.in6.sin6_addr, a + 16, 16);
        memcpy(&out->src.in6.sin6_port, a + 32, 2);
        memcpy(&out->dst.in6.sin6_port, a + 34, 2);
    }
    /* LOCAL, UNSPEC and UNIX: no address is reported (family 0) */

    if (plen > alen) {
        out->tlvs = a + alen;
        out->tlvs_len = plen - alen;
        while ((r = proxy_proto_tlv_next(out->tlvs, out->tlvs_len, &off, &tlv)) > 0)
            ;
        if (r < 0)
            return PP_E_V2_TLV;
    }
    return (int)(PROXY_PROTO_V2_HDR_LEN + plen);
}

int proxy_proto_parse(const uint8_t *buf, size_t len, struct proxy_proto_info *out)
{
    const char *sig;
    size_t siglen;

    memset(out, 0, sizeof(*out));
    if (!len)
        return 0;
    /* the two signatures differ in their first byte */
    if (buf[0] == 'P') {
        sig = V1_SIG;
        siglen = V1_SIG_LEN;
    } else {
        sig = PROXY_PROTO_V2_SIG;
        siglen = PROXY_PROTO_V2_SIG_LEN;
    }
    if (memcmp(buf, sig, MIN(len, siglen)))
        return PP_E_SIGNATURE;
    return sig[0] == 'P' ? parse_v1(buf, len, out) : parse_v2(buf, len, out);
}

/* ---- builders ---- */

/* Bring src and dst to one family (see proxy_proto_build_v1): AF_INET, AF_INET6, or 0
 * when either cannot be sent. */
static int same_family(const union sockaddr_any *src, const union sockaddr_any *dst,
                       union sockaddr_any *s, union sockaddr_any *d)
{
    union sockaddr_any *v4, *v6;

    if (!src || !dst)
        return 0;
    if ((src->sa.sa_family != AF_INET && src->sa.sa_family != AF_INET6) ||
        (dst->sa.sa_family != AF_INET && dst->sa.sa_family != AF_INET6))
        return 0;
    memset(s, 0, sizeof(*s));
    memset(d, 0, sizeof(*d));
    if (src->sa.sa_family == AF_INET)
        s->in = src->in;
    else
        s->in6 = src->in6;
    if (dst->sa.sa_family == AF_INET)
        d->in = dst->in;
    else
        d->in6 = dst->in6;
    if (s->sa.sa_family == d->sa.sa_family)
        return s->sa.sa_family;
    v4 = s->sa.sa_family == AF_INET ? s : d;
    v6 = s->sa.sa_family == AF_INET ? d : s;
    if (IN6_IS_ADDR_V4MAPPED(&v6->in6.sin6_addr)) {
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = v6->in6.sin6_port};
        memcpy(&in.sin_addr, v6->in6.sin6_addr.s6_addr + 12, 4);
        memset(v6, 0, sizeof(*v6));
        v6->in = in;
        return AF_INET;
    }
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = v4->in.sin_port};
    in6.sin6_addr.s6_addr[10] = 0xff;
    in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(in6.sin6_addr.s6_addr + 12, &v4->in.sin_addr, 4);
    memset(v4, 0, sizeof(*v4));
    v4->in6 = in6;
    return AF_INET6;
}

int proxy_proto_build_v1(const union sockaddr_any *src, const union sockaddr_any *dst, uint8_t *buf,
                         size_t cap)
{
    union sockaddr_any s, d;
    char line[PROXY_PROTO_V1_MAX_LEN + 1], sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
    int family = same_family(src, dst, &s, &d), n;

    if (family == AF_INET) {
        inet_ntop(AF_INET, &s.in.sin_addr, sa, sizeof(sa));
        inet_ntop(AF_INET, &d.in.sin_addr, da, sizeof(da));
        n = snprintf(line, sizeof(line), "PROXY TCP4 %s %s %u %u\r\n", sa, da, ntohs(s.in.sin_port),
                     ntohs(d.in.sin_port));
    } else if (family == AF_INET6) {
        inet_ntop(AF_INET6, &s.in6.sin6_addr, sa, sizeof(sa));
        inet_ntop(AF_INET6, &d.in6.sin6_addr, da, sizeof(da));
        n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s %u %u\r\n", sa, da,
                     ntohs(s.in6.sin6_port), ntohs(d.in6.sin6_port));
    } else {
        n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
    }
    BUG_ON(n < 0 || (size_t)n > PROXY_PROTO_V1_MAX_LEN);
    if ((size_t)n > cap)
        return -1;
    memcpy(buf, line, (size_t)n);
    return n;
}

int proxy_proto_build_v2(const union sockaddr_any *src, const union sockaddr_any *dst, uint8_t *buf,
                         size_t cap, const struct proxy_proto_tlv *tlvs, size_t ntlvs)
{
    union sockaddr_any s, d;
    int family = same_family(src, dst, &s, &d);
    size_t plen, off;
    uint8_t *a;

    plen = family == AF_INET ? V2_ADDR_LEN_INET : family == AF_INET6 ? V2_ADDR_LEN_INET6 : 0;
    for (size_t i = 0; i < ntlvs; i++) {
        plen += 3 + (size_t)tlvs[i].len;
        if (plen > PROXY_PROTO_V2_MAX_PAYLOAD)
            return -1;
    }
    if (plen > PROXY_PROTO_V2_MAX_PAYLOAD || cap < PROXY_PROTO_V2_HDR_LEN + plen)
        return -1;

    memcpy(buf, PROXY_PROTO_V2_SIG, PROXY_PROTO_V2_SIG_LEN);
    buf[12] = V2_VERSION | (family ? PROXY_PROTO_CMD_PROXY : PROXY_PROTO_CMD_LOCAL);
    buf[13] = family == AF_INET ? V2_FAM_TCP4 : family == AF_INET6 ? V2_FAM_TCP6 : V2_FAM_UNSPEC;
    put_be16(buf + 14, (uint16_t)plen);
    a = buf + PROXY_PROTO_V2_HDR_LEN;
    if (family == AF_INET) {
        memcpy(a, &s.in.sin_addr, 4);
        memcpy(a + 4, &d.in.sin_addr, 4);
        memcpy(a + 8, &s.in.sin_port, 2);
        memcpy(a + 10, &d.in.sin_port, 2);
        off = V2_ADDR_LEN_INET;
    } else if (family == AF_INET6) {
        memcpy(a, &s.in6.sin6_addr, 16);
        memcpy(a + 16, &d.in6.sin6_addr, 16);
        memcpy(a + 32, &s.in6.sin6_port, 2);
        memcpy(a + 34, &d.in6.sin6_port, 2);
        off = V2_ADDR_LEN_INET6;
    } else {
        off = 0;
    }
    for (size_t i = 0; i < ntlvs; i++) {
        a[off] = tlvs[i].type;
        put_be16(a + off + 1, tlvs[i].len);
        if (tlvs[i].len)
            memcpy(a + off + 3, tlvs[i].value, tlvs[i].len);
        off += 3 + (size_t)tlvs[i].len;
    }
    return (int)(PROXY_PROTO_V2_HDR_LEN + plen);
}
