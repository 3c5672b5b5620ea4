/* Address grammars: IPs, networks, upstream host:port, sockaddrs, ports, listen. */
#include <arpa/inet.h>
#include <ctype.h>
#include <net/if.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confval.h"

int ip_parse(const char *s, struct ip_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, s, &out->v4) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &out->v6) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -1;
}

const char *ip_str(const struct ip_addr *ip, char *buf, size_t len)
{
    if (!ip->family || !inet_ntop(ip->family, ip->b, buf, (socklen_t)len))
        snprintf(buf, len, "-");
    return buf;
}

int ip_net_parse(const char *s, struct ip_net *out)
{
    char tmp[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);

    if (alen >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, alen);
    tmp[alen] = 0;
    if (ip_parse(tmp, &out->addr) < 0)
        return -1;
    unsigned max = out->addr.family == AF_INET ? 32 : 128;
    if (!slash) {
        out->prefix = (uint8_t)max;
        return 0;
    }
    int64_t p;
    if (conf_parse_i64(slash + 1, &p) < 0 || p < 0 || p > max)
        return -1;
    out->prefix = (uint8_t)p;
    /* clear host bits so comparisons are plain prefix checks */
    for (unsigned i = 0; i < max / 8; i++) {
        unsigned bit = i * 8;
        if (bit >= p)
            out->addr.b[i] = 0;
        else if (bit + 8 > p)
            out->addr.b[i] &= (uint8_t)(0xff << (8 - (p - bit)));
    }
    return 0;
}

bool ip_in_net(const struct ip_addr *ip, const struct ip_net *net)
{
    struct ip_addr v = *ip;

    /* an IPv4-mapped IPv6 address matches IPv4 networks */
    if (v.family == AF_INET6 && net->addr.family == AF_INET && IN6_IS_ADDR_V4MAPPED(&v.v6)) {
        uint32_t a;
        memcpy(&a, &v.v6.s6_addr[12], 4);
        v.family = AF_INET;
        v.v4.s_addr = a;
    }
    if (v.family != net->addr.family)
        return false;
    unsigned full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(v.b, net->addr.b, full) != 0)
        return false;
    if (rest && ((v.b[full] ^ net->addr.b[full]) & (uint8_t)(0xff << (8 - rest))))
        return false;
    return true;
}

void ip_to_sockaddr(const struct ip_addr *ip, uint16_t port, union sockaddr_any *sa, socklen_t *len)
{
    memset(sa, 0, sizeof(*sa));
    if (ip->family == AF_INET) {
        sa->in.sin_family = AF_INET;
        sa->in.sin_addr = ip->v4;
        sa->in.sin_port = htons(port);
        *len = sizeof(sa->in);
    } else {
        sa->in6.sin6_family = AF_INET6;
        sa->in6.sin6_addr = ip->v6;
        sa->in6.sin6_port = htons(port);
        *len = sizeof(sa->in6);
    }
}

void sockaddr_to_ip(const union sockaddr_any *sa, struct ip_addr *ip, uint16_t *port)
{
    memset(ip, 0, sizeof(*ip));
    if (sa->sa.sa_family == AF_INET) {
        ip->family = AF_INET;
        ip->v4 = sa->in.sin_addr;
        if (port)
            *port = ntohs(sa->in.sin_port);
    } else if (sa->sa.sa_family == AF_INET6) {
        ip->family = AF_INET6;
        ip->v6 = sa->in6.sin6_addr;
        if (port)
            *port = ntohs(sa->in6.sin6_port);
    } else if (port) {
        *port = 0;
    }
}

const char *sockaddr_str(const union sockaddr_any *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &sa->in.sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(sa->in.sin_port));
    } else if (sa->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &sa->in6.sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(sa->in6.sin6_port));
    } else {
        snprintf(buf, len, "-");
    }
    return buf;
}

/* Domain names: ASCII labels of letters, digits, '-' and '_', 1..63 bytes each,
 * 253 bytes in all; no leading dot (one trailing dot is tolerated). */
int domain_check(const char *s, size_t len)
{
    size_t label = 0;

    if (len && s[len - 1] == '.')
        len--;
    if (!len || len > 253)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (!label)
                return -1;
            label = 0;
            continue;
        }
        if (!(isalnum(c) || c == '-' || c == '_'))
            return -1;
        if (++label > 63)
            return -1;
    }
    return 0;
}

static int port_parse(const char *s, size_t len, uint16_t *port)
{
    unsigned v = 0;

    if (!len || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int upstream_parse(const char *s, struct upstream_addr *out, const char **why)
{
    size_t len = strlen(s);
    const char *host = s, *colon;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    *why = "invalid address";
    if (!len) {
        *why = "empty address";
        return -1;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']' after an IPv6 address";
            return -1;
        }
        host = s + 1;
        hlen = (size_t)(rb - host);
        if (rb[1] == ':') {
            if (port_parse(rb + 2, strlen(rb + 2), &out->port) < 0) {
                *why = "invalid port";
                return -1;
            }
        } else if (rb[1]) {
            return -1;
        }
    } else if ((colon = strrchr(s, ':')) && memchr(s, ':', (size_t)(colon - s))) {
        hlen = len; /* bare IPv6 without port */
    } else if (colon) {
        hlen = (size_t)(colon - s);
        if (port_parse(colon + 1, strlen(colon + 1), &out->port) < 0) {
            *why = "invalid port";
            return -1;
        }
    } else {
        hlen = len;
    }
    if (!hlen || hlen > HOST_MAX) {
        *why = "invalid host";
        return -1;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = 0;
    /* "1.2.3.4." is the address, not a domain named like one */
    if (hlen > 1 && out->host[hlen - 1] == '.' && s[0] != '[') {
        out->host[hlen - 1] = 0;
        if (ip_parse(out->host, &out->ip) != 0)
            out->host[hlen - 1] = '.';
    }
    if (ip_parse(out->host, &out->ip) == 0) {
        out->kind = HOST_IP;
        if (s[0] == '[' && out->ip.family != AF_INET6)
            return -1;
        /* canonical text form */
        ip_str(&out->ip, out->host, sizeof(out->host));
        return 0;
    }
    if (s[0] == '[') {
        *why = "invalid IPv6 address";
        return -1;
    }
    if (domain_check(out->host, hlen) < 0) {
        *why = "invalid domain name (ASCII only: use the xn-- form for IDN)";
        return -1;
    }
    if (out->host[hlen - 1] == '.')
        out->host[hlen - 1] = 0;
    for (char *p = out->host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    out->kind = HOST_DOMAIN;
    return 0;
}

int cp_upstream(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL, *why = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (upstream_parse(s, slot, &why) < 0)
        return conf_fail(cx, n, "%s: '%s'", why, s);
    return 0;
}

int cp_host(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    struct upstream_addr ua;
    const char *s = NULL, *why = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (upstream_parse(s, &ua, &why) < 0 || ua.port || strchr(s, ']'))
        return conf_fail(cx, n, "expected a domain or an IP address, got '%s'", s);
    *(char **)slot = arena_strndup(cx->arena, ua.host, strlen(ua.host));
    return *(char **)slot ? 0 : conf_fail(cx, n, "out of memory");
}

static int sockaddr_text(const char *s, union sockaddr_any *sa, const char **why)
{
    struct upstream_addr ua;
    socklen_t len;

    if (upstream_parse(s, &ua, why) < 0)
        return -1;
    if (ua.kind != HOST_IP) {
        *why = "expected an IP address (not a domain)";
        return -1;
    }
    ip_to_sockaddr(&ua.ip, ua.port, sa, &len);
    return 0;
}

int cp_sockaddr(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL, *why = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (sockaddr_text(s, slot, &why) < 0)
        return conf_fail(cx, n, "%s: '%s'", why, s);
    return 0;
}

/* sockaddr, "$ENVVAR" holding one, or "@host:port" resolved once at load time. */
int cp_env_sockaddr(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL, *why = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (s[0] == '$') {
        const char *v = getenv(s + 1);
        if (!v)
            return conf_fail(cx, n, "environment variable %s is not set", s + 1);
        if (sockaddr_text(v, slot, &why) < 0)
            return conf_fail(cx, n, "%s (from %s): '%s'", why, s, v);
        return 0;
    }
    if (s[0] == '@') {
        struct upstream_addr ua;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        char port[8];

        if (upstream_parse(s + 1, &ua, &why) < 0)
            return conf_fail(cx, n, "%s: '%s'", why, s);
        snprintf(port, sizeof(port), "%u", ua.port);
        int rc = getaddrinfo(ua.host, port, &hints, &res);
        if (rc)
            return conf_fail(cx, n, "cannot resolve '%s': %s", ua.host, gai_strerror(rc));
        /* compare lengths first: an IPv4 answer after an IPv6 one is shorter */
        for (struct addrinfo *ai = res->ai_next; ai; ai = ai->ai_next) {
            if (ai->ai_addrlen != res->ai_addrlen ||
                memcmp(ai->ai_addr, res->ai_addr, res->ai_addrlen) != 0) {
                freeaddrinfo(res);
                return conf_fail(cx, n, "'%s' resolves to more than one address", ua.host);
            }
        }
        memcpy(slot, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        return 0;
    }
    if (sockaddr_text(s, slot, &why) < 0)
        return conf_fail(cx, n, "%s: '%s'", why, s);
    return 0;
}

int cp_ip(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (ip_parse(s, slot) < 0)
        return conf_fail(cx, n, "invalid IP address '%s'", s);
    return 0;
}

int cp_ip_net(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (ip_net_parse(s, slot) < 0)
        return conf_fail(cx, n, "invalid network '%s' (expected an IP or CIDR)", s);
    return 0;
}

/* One ports item: int, "a-b", "p1,p2,a-b". Appends ranges to the set. */
static int ports_item(struct conf_ctx *cx, const struct cnode *n, struct port_set *ps)
{
    const char *s = NULL, *p;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    for (p = s; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *dash = memchr(p, '-', len);
        const char *next = p + len + (end ? 1 : 0); /* before trimming moves p and len */
        struct port_range r;

        while (len && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (dash) {
            size_t l1 = (size_t)(dash - p), l2 = len - l1 - 1;
            while (l1 && isspace((unsigned char)p[l1 - 1]))
                l1--;
            const char *q = dash + 1;
            while (l2 && isspace((unsigned char)*q)) {
                q++;
                l2--;
            }
            if (port_parse(p, l1, &r.lo) < 0 || port_parse(q, l2, &r.hi) < 0 || r.lo > r.hi)
                return conf_fail(cx, n, "invalid port range in '%s'", s);
        } else {
            if (port_parse(p, len, &r.lo) < 0)
                return conf_fail(cx, n, "invalid port in '%s'", s);
            r.hi = r.lo;
        }
        struct port_range *v = arena_alloc(cx->arena, (ps->n + 1) * sizeof(*v));
        if (!v)
            return conf_fail(cx, n, "out of memory");
        if (ps->n)
            memcpy(v, ps->r, ps->n * sizeof(*v));
        v[ps->n++] = r;
        ps->r = v;
        p = next;
        if (end && !*p)
            return conf_fail(cx, n, "trailing ',' in '%s'", s);
    }
    if (!*s)
        return conf_fail(cx, n, "empty port list");
    return 0;
}

int cp_ports(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    struct port_set *ps = slot;

    if (n && n->type == CN_SEQ) {
        for (size_t i = 0; i < n->n; i++)
            if (ports_item(cx, n->items[i], ps) < 0)
                return -1;
        return 0;
    }
    return ports_item(cx, n, ps);
}

bool port_set_has(const struct port_set *ps, uint16_t port)
{
    for (size_t i = 0; i < ps->n; i++)
        if (port >= ps->r[i].lo && port <= ps->r[i].hi)
            return true;
    return false;
}

int cp_port_range(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    struct port_range *r = slot;

    if (n && n->type == CN_MAP) {
        static const struct conf_key keys[] = {
            {"start", NULL, cp_u32, 0, NULL, 1, 65535, CK_F_REQUIRED},
            {"end", NULL, cp_u32, sizeof(uint32_t), NULL, 1, 65535, CK_F_REQUIRED},
            {0},
        };
        static const struct conf_key *const tables[] = {keys, NULL};
        uint32_t v[2] = {0};
        if (conf_apply(cx, n, tables, NULL, v) < 0)
            return -1;
        r->lo = (uint16_t)v[0];
        r->hi = (uint16_t)v[1];
    } else {
        struct port_set ps = {0};
        if (ports_item(cx, n, &ps) < 0)
            return -1;
        if (ps.n != 1 || ps.r[0].lo == ps.r[0].hi)
            return conf_fail(cx, n, "expected a port range \"start-end\"");
        *r = ps.r[0];
    }
    if (r->lo >= r->hi)
        return conf_fail(cx, n, "port range start must be below its end");
    return 0;
}

int cp_interface(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;
    int64_t idx;
    char *out = slot;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_i64(s, &idx) == 0) {
        if (idx <= 0 || idx > INT32_MAX || !if_indextoname((unsigned)idx, out))
            return conf_fail(cx, n, "no network interface with index %s", s);
        return 0;
    }
    if (!*s || n->len >= IF_NAMESIZE)
        return conf_fail(cx, n, "invalid interface name '%s'", s);
    memcpy(out, s, n->len + 1);
    return 0;
}

/* tcp listen: port number, "ip:port" or a map. A bare port listens on [::] (both
 * families unless ipv6_only). */
static int listen_address(struct conf_ctx *cx, const struct cnode *n, void *slot,
                          const struct conf_key *k)
{
    struct listen_conf *lc = slot;
    const char *s = NULL;
    int64_t port;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_i64(s, &port) == 0) {
        if (port < 0 || port > 65535)
            return conf_fail(cx, n, "invalid port %s", s);
        memset(&lc->addr, 0, sizeof(lc->addr));
        lc->addr.in6.sin6_family = AF_INET6;
        lc->addr.in6.sin6_addr = in6addr_any;
        lc->addr.in6.sin6_port = htons((uint16_t)port);
    } else if (cp_env_sockaddr(cx, n, &lc->addr, k) < 0) {
        return -1;
    }
    lc->addrlen = lc->addr.sa.sa_family == AF_INET ? sizeof(lc->addr.in) : sizeof(lc->addr.in6);
    return 0;
}

#define LOFF(f) offsetof(struct listen_conf, f)
static const struct conf_key listen_keys[] = {
    {"address", CK_ALIASES("addr"), listen_address, 0, NULL, 0, 0, CK_F_REQUIRED},
    {"interface", NULL, cp_interface, LOFF(interface)},
    {"keepalive", NULL, cp_tcp_keepalive, LOFF(keepalive)},
    {"max_segment_size", CK_ALIASES("mss"), cp_u32, LOFF(mss), NULL, 0, 65535},
    {"backlog", NULL, cp_u32, LOFF(backlog), "4096", 1, 1 << 20},
    {"netfilter_mark", CK_ALIASES("mark"), cp_u32, LOFF(mark)},
    {"ipv6_only", NULL, cp_bool, LOFF(ipv6_only), "false"},
    {"instance", NULL, cp_u32, LOFF(instance), "1", 1, 256},
    {"scale", NULL, cp_ratio, LOFF(scale)},
    {"follow_cpu_affinity", NULL, cp_bool, LOFF(follow_cpu_affinity), "false"},
    {0},
};

int cp_listen(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {listen_keys, NULL};
    struct listen_conf *lc = slot;

    memset(lc, 0, sizeof(*lc));
    if (n && n->type == CN_MAP) {
        if (conf_apply(cx, n, tables, NULL, lc) < 0)
            return -1;
    } else {
        lc->backlog = 4096;
        lc->instance = 1;
        if (listen_address(cx, n, lc, k) < 0)
            return -1;
    }
    lc->set = true;
    return 0;
}
