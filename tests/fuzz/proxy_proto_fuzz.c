/* libFuzzer target for the PROXY protocol parser and builders (proxy_proto.h): consumed
 * <= len, TLV area inside the header and fully iterable, prefix stability (checked on
 * every short prefix and a sample of long ones), and parse -> build (v1 and v2, TLVs
 * carried over) -> parse round trips. Any violation traps. */
#include <string.h>

#include "common.h"
#include "proxy_proto.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

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

static struct proxy_proto_tlv tlvs[PROXY_PROTO_V2_MAX_PAYLOAD / 3 + 1];
static uint8_t out[PROXY_PROTO_MAX_LEN];

static void roundtrip(const struct proxy_proto_info *i, size_t ntlvs)
{
    struct proxy_proto_info j;
    const union sockaddr_any *s = i->src.sa.sa_family ? &i->src : NULL;
    const union sockaddr_any *d = i->dst.sa.sa_family ? &i->dst : NULL;
    int n;

    n = proxy_proto_build_v1(s, d, out, sizeof(out));
    CHECK(n > 0 && n <= PROXY_PROTO_V1_MAX_LEN);
    CHECK(proxy_proto_parse(out, (size_t)n, &j) == n);
    CHECK(j.version == 1 && sa_eq(&j.src, &i->src) && sa_eq(&j.dst, &i->dst));
    CHECK(proxy_proto_build_v1(s, d, out, (size_t)n - 1) == -1);

    n = proxy_proto_build_v2(s, d, out, sizeof(out), tlvs, ntlvs);
    if (n < 0) {
        /* only when the original's address block was smaller than ours would be (UNSPEC
         * never is; a LOCAL or UNIX header's is dropped), so: never */
        __builtin_trap();
    }
    CHECK(proxy_proto_parse(out, (size_t)n, &j) == n);
    CHECK(j.version == 2 && sa_eq(&j.src, &i->src) && sa_eq(&j.dst, &i->dst));
    CHECK(j.command == (s ? PROXY_PROTO_CMD_PROXY : PROXY_PROTO_CMD_LOCAL));
    if (i->version == 2)
        CHECK(j.tlvs_len == i->tlvs_len && (!j.tlvs_len || !memcmp(j.tlvs, i->tlvs, j.tlvs_len)));
    else
        CHECK(!j.tlvs && !j.tlvs_len);

    /* mixed families: an IPv4 address next to an IPv4-mapped one is sent as TCP4; an
     * IPv4 address next to a real IPv6 one is sent mapped, as TCP6 */
    if (s && s->sa.sa_family == AF_INET) {
        union sockaddr_any m;
        memset(&m, 0, sizeof(m));
        m.in6.sin6_family = AF_INET6;
        m.in6.sin6_port = d->in.sin_port;
        m.in6.sin6_addr.s6_addr[10] = m.in6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(m.in6.sin6_addr.s6_addr + 12, &d->in.sin_addr, 4);
        n = proxy_proto_build_v1(s, &m, out, sizeof(out));
        CHECK(n > 0 && proxy_proto_parse(out, (size_t)n, &j) == n);
        CHECK(sa_eq(&j.src, s) && sa_eq(&j.dst, d));
        n = proxy_proto_build_v2(&m, s, out, sizeof(out), NULL, 0);
        CHECK(n == 28 && proxy_proto_parse(out, (size_t)n, &j) == n);
        CHECK(sa_eq(&j.src, d) && sa_eq(&j.dst, s));
    } else if (s && s->sa.sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&s->in6.sin6_addr) &&
               IN6_IS_ADDR_V4MAPPED(&d->in6.sin6_addr)) {
        union sockaddr_any v4;
        memset(&v4, 0, sizeof(v4));
        v4.in.sin_family = AF_INET;
        v4.in.sin_port = d->in6.sin6_port;
        memcpy(&v4.in.sin_addr, d->in6.sin6_addr.s6_addr + 12, 4);
        n = proxy_proto_build_v1(s, &v4, out, sizeof(out));
        CHECK(n > 0 && proxy_proto_parse(out, (size_t)n, &j) == n);
        CHECK(sa_eq(&j.src, s) && sa_eq(&j.dst, d));
        n = proxy_proto_build_v2(s, &v4, out, sizeof(out), NULL, 0);
        CHECK(n == 52 && proxy_proto_parse(out, (size_t)n, &j) == n);
        CHECK(sa_eq(&j.src, s) && sa_eq(&j.dst, d));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_proto_info i, k;
    size_t off = 0, ntlvs = 0;
    struct proxy_proto_tlv t;
    int r, rt;

    r = proxy_proto_parse(data, size, &i);
    CHECK(r <= (int)size && r <= PROXY_PROTO_MAX_LEN);
    CHECK(strcmp(proxy_proto_strerror(r), "") != 0);
    if (r > 0) {
        CHECK(i.version == 1 || i.version == 2);
        CHECK(i.command == PROXY_PROTO_CMD_LOCAL || i.command == PROXY_PROTO_CMD_PROXY);
        CHECK(i.src.sa.sa_family == i.dst.sa.sa_family);
        CHECK(i.src.sa.sa_family == 0 || i.src.sa.sa_family == AF_INET ||
              i.src.sa.sa_family == AF_INET6);
        if (i.version == 1)
            CHECK(r <= PROXY_PROTO_V1_MAX_LEN && !i.tlvs && data[r - 2] == '\r' &&
                  data[r - 1] == '\n');
        CHECK(!i.tlvs == !i.tlvs_len);
        if (i.tlvs)
            CHECK(i.tlvs >= data + PROXY_PROTO_V2_HDR_LEN && i.tlvs + i.tlvs_len == data + r);
        while ((rt = proxy_proto_tlv_next(i.tlvs, i.tlvs_len, &off, &t)) > 0) {
            CHECK(t.value >= i.tlvs && t.value + t.len <= i.tlvs + i.tlvs_len);
            CHECK(ntlvs < ARRAY_SIZE(tlvs));
            tlvs[ntlvs++] = t;
        }
        CHECK(rt == 0 && off == i.tlvs_len);
        roundtrip(&i, ntlvs);
    }

    /* prefixes: all up to 200 bytes, then a sample, plus the ones around r */
    for (size_t n = 0; n <= size; n += n < 200 ? 1 : 61) {
        int rn = proxy_proto_parse(data, n, &k);
        CHECK(rn <= (int)n);
        if (rn)
            CHECK(rn == r && (rn < 0 || !memcmp(&k, &i, sizeof(k))));
    }
    if (r > 0) {
        CHECK(proxy_proto_parse(data, (size_t)r - 1, &k) == 0);
        CHECK(proxy_proto_parse(data, (size_t)r, &k) == r && !memcmp(&k, &i, sizeof(k)));
    }
    return 0;
}
