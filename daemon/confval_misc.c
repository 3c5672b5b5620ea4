/* Value grammars for limits, socket options, connecting, resolving, picking, HTTP and
 * other small structures (reference §1.4). Map forms go through conf_apply() with key
 * tables; defaults are written in the tables as YAML. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "confval.h"

/* Is one of the keys of map n the table key named `name` (or one of its aliases)? */
static bool map_has(const struct cnode *n, const struct conf_key *const *tables, const char *name)
{
    const struct conf_key *k = conf_key_find(tables, name);

    for (size_t i = 0; k && i < n->n; i++)
        if (conf_key_find(tables, cmap_key(n, i)->norm) == k)
            return true;
    return false;
}

/* Index of the pair holding table key `name` in map n, or -1. */
static long map_index(const struct cnode *n, const struct conf_key *const *tables, const char *name)
{
    const struct conf_key *k = conf_key_find(tables, name);

    for (size_t i = 0; k && i < n->n; i++)
        if (conf_key_find(tables, cmap_key(n, i)->norm) == k)
            return (long)i;
    return -1;
}

static bool is_map(const struct cnode *n)
{
    return n && n->type == CN_MAP;
}

static bool is_scalar(const struct cnode *n)
{
    return n && n->type == CN_SCALAR;
}

/* A boolean written as a word (true/false/yes/no/on/off). Digits are left to numeric
 * grammars, so "keepalive: 1" is one second, not "on". */
static bool word_bool(const struct cnode *n, bool *b)
{
    return is_scalar(n) && !isdigit((unsigned char)n->str[0]) && conf_parse_bool(n, b) == 0;
}

/* Lower-case s without '_' and '-' into out ("Ipv4-First" == "ipv4first"). Returns
 * false when s does not fit. */
static bool squash(const char *s, char *out, size_t outsz)
{
    size_t o = 0;

    for (; *s; s++) {
        if (*s == '_' || *s == '-')
            continue;
        if (o + 1 >= outsz)
            return false;
        out[o++] = (char)tolower((unsigned char)*s);
    }
    out[o] = 0;
    return true;
}

struct name_val {
    const char *name; /* squashed spelling */
    int val;
};

/* Look a scalar up in a table of squashed names; `choices` lists them for the error. */
static int enum_parse(struct conf_ctx *cx, const struct cnode *n, const struct name_val *t,
                      size_t nt, const char *what, const char *choices, int *out)
{
    const char *s = NULL;
    char sq[32];

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (squash(s, sq, sizeof(sq))) {
        for (size_t i = 0; i < nt; i++) {
            if (strcmp(sq, t[i].name) == 0) {
                *out = t[i].val;
                return 0;
            }
        }
    }
    return conf_fail(cx, n, "invalid %s '%s' (%s)", what, s, choices);
}

/* ---- socket speed limits ---- */

/* Map form of the speed limits. Omitted byte counts: unlimited for tcp. */
struct speed_tmp {
    uint32_t shift;
    uint64_t up, down, up_pk, down_pk;
};
#define SPOFF(f) offsetof(struct speed_tmp, f)

static const struct conf_key tcp_speed_keys[] = {
    {"shift_millis", CK_ALIASES("shift"), cp_u32, SPOFF(shift), "10", 0, 12},
    {"upload", CK_ALIASES("north", "upload_bytes", "north_bytes"), cp_size, SPOFF(up)},
    {"download", CK_ALIASES("south", "download_bytes", "south_bytes"), cp_size, SPOFF(down)},
    {0},
};

static const struct conf_key udp_speed_keys[] = {
    {"shift_millis", CK_ALIASES("shift"), cp_u32, SPOFF(shift), "10", 0, 12},
    {"upload_bytes", CK_ALIASES("north_bytes", "upload", "north"), cp_size, SPOFF(up), "0"},
    {"download_bytes", CK_ALIASES("south_bytes", "download", "south"), cp_size, SPOFF(down), "0"},
    {"upload_packets", CK_ALIASES("north_packets"), cp_u64, SPOFF(up_pk), "0"},
    {"download_packets", CK_ALIASES("south_packets"), cp_u64, SPOFF(down_pk), "0"},
    {0},
};

/* A size = same bytes both ways per 2^10 ms; or a map. For tcp, 0 bytes blocks the
 * direction and an omitted direction is unlimited (UINT64_MAX). The map form defaults
 * shift_millis to 10 (g3proxy leaves the limit unset without it). */
int cp_tcp_speed_limit(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {tcp_speed_keys, NULL};
    struct tcp_speed_limit *sl = slot;
    struct speed_tmp t = {0};

    memset(sl, 0, sizeof(*sl));
    if (is_map(n)) {
        if (conf_apply(cx, n, tables, NULL, &t) < 0)
            return -1;
        sl->shift = (uint8_t)t.shift;
        sl->upload = map_has(n, tables, "upload") ? t.up : UINT64_MAX;
        sl->download = map_has(n, tables, "download") ? t.down : UINT64_MAX;
    } else if (is_scalar(n)) {
        if (cp_size(cx, n, &t.up, NULL) < 0)
            return -1;
        sl->shift = 10;
        sl->upload = sl->download = t.up;
    } else {
        return conf_fail(cx, n, "expected a size or a map, got a %s", cnode_type_name(n));
    }
    sl->set = true;
    return 0;
}

/* As tcp, plus packet counts; every 0 means unlimited. */
int cp_udp_speed_limit(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {udp_speed_keys, NULL};
    struct udp_speed_limit *sl = slot;
    struct speed_tmp t = {0};

    memset(sl, 0, sizeof(*sl));
    if (is_map(n)) {
        if (conf_apply(cx, n, tables, NULL, &t) < 0)
            return -1;
        sl->shift = (uint8_t)t.shift;
        sl->upload_bytes = t.up;
        sl->download_bytes = t.down;
        sl->upload_packets = t.up_pk;
        sl->download_packets = t.down_pk;
    } else if (is_scalar(n)) {
        if (cp_size(cx, n, &t.up, NULL) < 0)
            return -1;
        sl->shift = 10;
        sl->upload_bytes = sl->download_bytes = t.up;
    } else {
        return conf_fail(cx, n, "expected a size or a map, got a %s", cnode_type_name(n));
    }
    sl->set = true;
    return 0;
}

/* ---- process-wide speed limits ---- */

#define GOFF(f) offsetof(struct global_speed_limit, f)
static const struct conf_key global_stream_keys[] = {
    {"replenish_interval", NULL, cp_duration, GOFF(replenish_interval_ns), "1s"},
    {"replenish_bytes", NULL, cp_size, GOFF(replenish_bytes), NULL, 0, 0, CK_F_REQUIRED},
    {"max_burst_bytes", NULL, cp_size, GOFF(max_burst_bytes)},
    {0},
};

static const struct conf_key global_dgram_keys[] = {
    {"replenish_interval", NULL, cp_duration, GOFF(replenish_interval_ns), "1s"},
    {"replenish_bytes", NULL, cp_size, GOFF(replenish_bytes), "0"},
    {"replenish_packets", NULL, cp_size, GOFF(replenish_packets), "0"},
    {"max_burst_bytes", NULL, cp_size, GOFF(max_burst_bytes)},
    {"max_burst_packets", NULL, cp_size, GOFF(max_burst_packets)},
    {0},
};

static int global_limit(struct conf_ctx *cx, const struct cnode *n, struct global_speed_limit *gl,
                        bool dgram)
{
    static const struct conf_key *const stream_tables[] = {global_stream_keys, NULL};
    static const struct conf_key *const dgram_tables[] = {global_dgram_keys, NULL};
    const struct conf_key *const *tables = dgram ? dgram_tables : stream_tables;

    memset(gl, 0, sizeof(*gl));
    if (is_map(n)) {
        if (conf_apply(cx, n, tables, NULL, gl) < 0)
            return -1;
        if (!gl->replenish_interval_ns)
            return conf_fail(cx, cmap_get(n, "replenish_interval"),
                             "replenish_interval must be greater than 0");
        if (!map_has(n, tables, "max_burst_bytes"))
            gl->max_burst_bytes = gl->replenish_bytes;
        if (dgram && !map_has(n, tables, "max_burst_packets"))
            gl->max_burst_packets = gl->replenish_packets;
        if (dgram && !gl->replenish_bytes && !gl->replenish_packets)
            return conf_fail(cx, n, "set replenish_bytes or replenish_packets");
        if (!dgram && !gl->replenish_bytes)
            return conf_fail(cx, cmap_get(n, "replenish_bytes"),
                             "replenish_bytes must be greater than 0");
    } else if (is_scalar(n)) {
        if (cp_size(cx, n, &gl->replenish_bytes, NULL) < 0)
            return -1;
        if (!gl->replenish_bytes)
            return conf_fail(cx, n, "the limit must be greater than 0");
        gl->replenish_interval_ns = NS_PER_SEC;
        gl->max_burst_bytes = gl->replenish_bytes;
    } else {
        return conf_fail(cx, n, "expected a size or a map, got a %s", cnode_type_name(n));
    }
    gl->set = true;
    return 0;
}

int cp_global_stream_limit(struct conf_ctx *cx, const struct cnode *n, void *slot,
                           const struct conf_key *k)
{
    return global_limit(cx, n, slot, false);
}

int cp_global_dgram_limit(struct conf_ctx *cx, const struct cnode *n, void *slot,
                          const struct conf_key *k)
{
    return global_limit(cx, n, slot, true);
}

/* ---- rate quota ---- */

/* "500", "100/s", "60/m", "1000/h" (also an int): count per unit, count 1..2^32-1. */
static int rate_text(const char *s, uint32_t *count, uint64_t *unit_ns)
{
    const char *p = s;
    char *end;

    if (!isdigit((unsigned char)*p))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno || !v || v > UINT32_MAX)
        return -1;
    p = end;
    while (*p == ' ')
        p++;
    *unit_ns = NS_PER_SEC;
    if (*p == '/') {
        p++;
        while (*p == ' ')
            p++;
        switch (tolower((unsigned char)*p)) {
        case 's':
            *unit_ns = NS_PER_SEC;
            break;
        case 'm':
            *unit_ns = 60 * NS_PER_SEC;
            break;
        case 'h':
            *unit_ns = 3600 * NS_PER_SEC;
            break;
        default:
            return -1;
        }
        p++;
        while (*p == ' ')
            p++;
    }
    if (*p)
        return -1;
    *count = (uint32_t)v;
    return 0;
}

static int rate_scalar(struct conf_ctx *cx, const struct cnode *n, struct rate_quota *q)
{
    const char *s = NULL;
    uint32_t count;
    uint64_t unit;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (rate_text(s, &count, &unit) < 0)
        return conf_fail(cx, n, "invalid rate '%s' (e.g. 500, \"100/s\", \"60/m\", \"1000/h\")", s);
    q->interval_ns = MAX(unit / count, 1);
    q->burst = count;
    return 0;
}

static int rate_key(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    return rate_scalar(cx, n, slot);
}

struct rate_tmp {
    struct rate_quota rate;
    uint64_t interval_ns;
    uint32_t burst;
};
#define RQOFF(f) offsetof(struct rate_tmp, f)
static const struct conf_key rate_keys[] = {
    {"rate", NULL, rate_key, RQOFF(rate)},
    {"replenish_interval", NULL, cp_duration, RQOFF(interval_ns)},
    {"max_burst", NULL, cp_u32, RQOFF(burst), NULL, 1, UINT32_MAX},
    {0},
};

/* A rate (one token every unit/count, burst = count) or {rate, replenish_interval,
 * max_burst}; with both rate and replenish_interval the later one wins (as g3proxy);
 * replenish_interval alone gives a burst of 1. */
int cp_rate_quota(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {rate_keys, NULL};
    struct rate_quota *q = slot;
    struct rate_tmp t = {0};

    memset(q, 0, sizeof(*q));
    if (is_map(n)) {
        long ri, ii;

        if (conf_apply(cx, n, tables, NULL, &t) < 0)
            return -1;
        ri = map_index(n, tables, "rate");
        ii = map_index(n, tables, "replenish_interval");
        if (ri < 0 && ii < 0)
            return conf_fail(cx, n, "set rate or replenish_interval");
        if (ii > ri) {
            if (!t.interval_ns)
                return conf_fail(cx, cmap_val(n, (size_t)ii),
                                 "replenish_interval must be greater than 0");
            q->interval_ns = t.interval_ns;
            q->burst = 1;
        } else {
            *q = t.rate;
        }
        if (map_has(n, tables, "max_burst"))
            q->burst = t.burst;
    } else if (rate_scalar(cx, n, q) < 0) {
        return -1;
    }
    q->set = true;
    return 0;
}

/* ---- tcp keepalive ---- */

#define KAOFF(f) offsetof(struct tcp_keepalive, f)
static const struct conf_key keepalive_keys[] = {
    {"enable", NULL, cp_bool, KAOFF(enable), "false"},
    {"idle_time", NULL, cp_duration, KAOFF(idle_ns), "60s"},
    {"probe_interval", NULL, cp_duration, KAOFF(interval_ns)},
    {"probe_count", NULL, cp_u32, KAOFF(count), NULL, 1, 127},
    {0},
};

/* bool (idle 60s), duration (= idle_time, enabled; 0 = disabled) or a map. */
int cp_tcp_keepalive(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {keepalive_keys, NULL};
    struct tcp_keepalive *ka = slot;
    bool b;

    memset(ka, 0, sizeof(*ka));
    if (is_map(n))
        return conf_apply(cx, n, tables, NULL, ka);
    ka->idle_ns = 60 * NS_PER_SEC;
    if (word_bool(n, &b)) {
        ka->enable = b;
        return 0;
    }
    if (!is_scalar(n))
        return conf_fail(cx, n, "expected a boolean, a duration or a map, got a %s",
                         cnode_type_name(n));
    if (cp_duration(cx, n, &ka->idle_ns, NULL) < 0)
        return -1;
    ka->enable = ka->idle_ns != 0;
    if (!ka->enable)
        ka->idle_ns = 60 * NS_PER_SEC;
    return 0;
}

/* ---- misc socket options ---- */

struct misc_tmp {
    bool no_delay;
    uint32_t mss, ttl, hop_limit, tos, tclass, mark;
    char *congestion; /* arena */
};
#define MOFF(f) offsetof(struct misc_tmp, f)

static const struct conf_key tcp_misc_keys[] = {
    {"no_delay", NULL, cp_bool, MOFF(no_delay), "true"},
    {"max_segment_size", CK_ALIASES("mss"), cp_u32, MOFF(mss), NULL, 88, 65535},
    {"congestion_control", NULL, cp_str, MOFF(congestion)},
    {"time_to_live", CK_ALIASES("ttl"), cp_u32, MOFF(ttl), NULL, 1, 255},
    {"hop_limit", NULL, cp_u32, MOFF(hop_limit), NULL, 1, 255},
    {"type_of_service", CK_ALIASES("tos"), cp_u32, MOFF(tos), NULL, 0, 255},
    {"traffic_class", NULL, cp_u32, MOFF(tclass), NULL, 0, 255},
    {"netfilter_mark", CK_ALIASES("mark"), cp_u32, MOFF(mark)},
    {0},
};

static const struct conf_key udp_misc_keys[] = {
    {"time_to_live", CK_ALIASES("ttl"), cp_u32, MOFF(ttl), NULL, 1, 255},
    {"hop_limit", NULL, cp_u32, MOFF(hop_limit), NULL, 1, 255},
    {"type_of_service", CK_ALIASES("tos"), cp_u32, MOFF(tos), NULL, 0, 255},
    {"traffic_class", NULL, cp_u32, MOFF(tclass), NULL, 0, 255},
    {"netfilter_mark", CK_ALIASES("mark"), cp_u32, MOFF(mark)},
    {0},
};

static int misc_opts(struct conf_ctx *cx, const struct cnode *n, struct sock_misc_opts *o,
                     const struct conf_key *const *tables, bool tcp)
{
    static const struct {
        const char *key;
        uint32_t bit;
    } bits[] = {
        {"no_delay", SO_SET_NODELAY},           {"max_segment_size", SO_SET_MSS},
        {"time_to_live", SO_SET_TTL},           {"hop_limit", SO_SET_HOPLIMIT},
        {"type_of_service", SO_SET_TOS},        {"traffic_class", SO_SET_TCLASS},
        {"congestion_control", SO_SET_CONGEST}, {"netfilter_mark", SO_SET_MARK},
    };
    struct misc_tmp t = {0};

    memset(o, 0, sizeof(*o));
    if (conf_apply(cx, n, tables, NULL, &t) < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(bits); i++)
        if (map_has(n, tables, bits[i].key))
            o->set |= bits[i].bit;
    if (t.congestion) {
        const struct cnode *cn = cmap_val(n, (size_t)map_index(n, tables, "congestion_control"));
        size_t len = strlen(t.congestion);

        if (!len || len >= sizeof(o->congestion))
            return conf_fail(cx, cn, "congestion control name must be 1 to %zu characters",
                             sizeof(o->congestion) - 1);
        memcpy(o->congestion, t.congestion, len + 1);
    }
    o->no_delay = tcp && t.no_delay;
    o->mss = t.mss;
    o->ttl = (uint8_t)t.ttl;
    o->hop_limit = (uint8_t)t.hop_limit;
    o->tos = (uint8_t)t.tos;
    o->traffic_class = (uint8_t)t.tclass;
    o->mark = t.mark;
    return 0;
}

/* Only the options given have their SO_SET_* bit; no_delay reads true unless set to
 * false (nodelay is on by default, g3proxy does the same). */
int cp_tcp_misc_opts(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {tcp_misc_keys, NULL};

    return misc_opts(cx, n, slot, tables, true);
}

int cp_udp_misc_opts(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {udp_misc_keys, NULL};

    return misc_opts(cx, n, slot, tables, false);
}

/* ---- socket buffers ---- */

static const struct conf_key sock_buffer_keys[] = {
    {"recv", CK_ALIASES("receive"), cp_size32, offsetof(struct sock_buffer, recv), "0"},
    {"send", NULL, cp_size32, offsetof(struct sock_buffer, send), "0"},
    {0},
};

/* size (both) or {recv, send}; 0 = system default. */
int cp_sock_buffer(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {sock_buffer_keys, NULL};
    struct sock_buffer *sb = slot;

    memset(sb, 0, sizeof(*sb));
    if (is_map(n))
        return conf_apply(cx, n, tables, NULL, sb);
    if (!is_scalar(n))
        return conf_fail(cx, n, "expected a size or a map, got a %s", cnode_type_name(n));
    if (cp_size32(cx, n, &sb->recv, NULL) < 0)
        return -1;
    sb->send = sb->recv;
    return 0;
}

/* ---- connecting ---- */

static const struct conf_key tcp_connect_keys[] = {
    {"max_retry", NULL, cp_u32, offsetof(struct tcp_connect_conf, max_retry), "2", 0, 64},
    {"each_timeout", NULL, cp_duration, offsetof(struct tcp_connect_conf, each_timeout_ns), "30s"},
    {0},
};

int cp_tcp_connect(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {tcp_connect_keys, NULL};
    struct tcp_connect_conf *tc = slot;

    memset(tc, 0, sizeof(*tc));
    if (conf_apply(cx, n, tables, NULL, tc) < 0)
        return -1;
    if (!tc->each_timeout_ns)
        return conf_fail(cx, cmap_get(n, "each_timeout"), "each_timeout must be greater than 0");
    return 0;
}

#define HEOFF(f) offsetof(struct happy_eyeballs_conf, f)
static const struct conf_key happy_eyeballs_keys[] = {
    {"resolution_delay", NULL, cp_duration, HEOFF(resolution_delay_ns), "50ms"},
    {"second_resolution_timeout", NULL, cp_duration, HEOFF(second_resolution_timeout_ns), "2s"},
    {"first_address_family_count", NULL, cp_u32, HEOFF(first_address_family_count), "1", 1, 1024},
    {"connection_attempt_delay", NULL, cp_duration, HEOFF(connection_attempt_delay_ns), "250ms",
     100, 2000},
    {0},
};

int cp_happy_eyeballs(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {happy_eyeballs_keys, NULL};

    memset(slot, 0, sizeof(struct happy_eyeballs_conf));
    return conf_apply(cx, n, tables, NULL, slot);
}

/* ---- resolving ---- */

static int rs_query(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    static const struct name_val t[] = {
        {"ipv4first", RQ_IPV4_FIRST},
        {"ipv6first", RQ_IPV6_FIRST},
        {"ipv4only", RQ_IPV4_ONLY},
        {"ipv6only", RQ_IPV6_ONLY},
    };
    int v;

    if (enum_parse(cx, n, t, ARRAY_SIZE(t), "query strategy",
                   "Ipv4First, Ipv6First, Ipv4Only or Ipv6Only", &v) < 0)
        return -1;
    *(uint8_t *)slot = (uint8_t)v;
    return 0;
}

static int rs_pick(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct name_val t[] = {{"random", RP_RANDOM}, {"first", RP_FIRST}};
    int v;

    if (enum_parse(cx, n, t, ARRAY_SIZE(t), "pick strategy", "Random or First", &v) < 0)
        return -1;
    *(uint8_t *)slot = (uint8_t)v;
    return 0;
}

static const struct conf_key resolve_strategy_keys[] = {
    {"query", NULL, rs_query, offsetof(struct resolve_strategy, query), "Ipv4First"},
    {"pick", NULL, rs_pick, offsetof(struct resolve_strategy, pick), "Random"},
    {0},
};

int cp_resolve_strategy(struct conf_ctx *cx, const struct cnode *n, void *slot,
                        const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {resolve_strategy_keys, NULL};
    struct resolve_strategy *rs = slot;

    memset(rs, 0, sizeof(*rs));
    if (is_map(n))
        return conf_apply(cx, n, tables, NULL, rs);
    rs->pick = RP_RANDOM;
    return rs_query(cx, n, &rs->query, NULL);
}

/* A domain to redirect: lower-cased, without the trailing dot. */
static int redirect_domain(struct conf_ctx *cx, const struct cnode *n, char **out)
{
    const char *s = NULL;
    struct ip_addr ip;
    char *d;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (domain_check(s, n->len) < 0 || ip_parse(s, &ip) == 0)
        return conf_fail(cx, n, "expected a domain name, got '%s'", s);
    if (!(d = arena_strndup(cx->arena, s, n->len)))
        return conf_fail(cx, n, "out of memory");
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (n->len && d[n->len - 1] == '.')
        d[n->len - 1] = 0;
    *out = d;
    return 0;
}

/* "to": a host (a domain to resolve instead, or one IP) or a list of IPs. Parent rules
 * only take a domain (it replaces the parent suffix). */
static int redirect_to(struct conf_ctx *cx, const struct cnode *n, struct resolve_redirect_rule *r)
{
    if (n && n->type == CN_SEQ) {
        if (r->parent)
            return conf_fail(cx, n, "a parent redirection goes to a domain, not to IPs");
        if (!n->n)
            return conf_fail(cx, n, "empty IP list");
        if (!(r->ips = arena_alloc(cx->arena, n->n * sizeof(*r->ips))))
            return conf_fail(cx, n, "out of memory");
        for (size_t i = 0; i < n->n; i++)
            if (cp_ip(cx, n->items[i], &r->ips[i], NULL) < 0)
                return -1;
        r->nips = n->n;
        return 0;
    }
    const char *s = NULL;
    struct ip_addr ip;
    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (ip_parse(s, &ip) == 0) {
        if (r->parent)
            return conf_fail(cx, n, "a parent redirection goes to a domain, not to an IP");
        if (!(r->ips = arena_alloc(cx->arena, sizeof(*r->ips))))
            return conf_fail(cx, n, "out of memory");
        r->ips[0] = ip;
        r->nips = 1;
        return 0;
    }
    return redirect_domain(cx, n, &r->to_host);
}

static int keep_node(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    *(const struct cnode **)slot = n;
    return 0;
}

struct redirect_tmp {
    const struct cnode *exact, *parent, *to; /* borrowed: config nodes */
};
static const struct conf_key redirect_keys[] = {
    {"exact", NULL, keep_node, offsetof(struct redirect_tmp, exact)},
    {"parent", NULL, keep_node, offsetof(struct redirect_tmp, parent)},
    {"to", NULL, keep_node, offsetof(struct redirect_tmp, to), NULL, 0, 0, CK_F_REQUIRED},
    {0},
};

/* A list of {exact: domain, to: host | [ips]} / {parent: domain, to: domain}, or a map
 * domain: to (exact rules; the domain is the key as written, lower-cased). */
int cp_resolve_redirection(struct conf_ctx *cx, const struct cnode *n, void *slot,
                           const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {redirect_keys, NULL};
    struct resolve_redirection *rr = slot;

    memset(rr, 0, sizeof(*rr));
    if (!n || (n->type != CN_MAP && n->type != CN_SEQ))
        return conf_fail(cx, n, "expected a list or a map, got a %s", cnode_type_name(n));
    if (!n->n)
        return 0;
    if (!(rr->rules = arena_alloc(cx->arena, n->n * sizeof(*rr->rules))))
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        struct resolve_redirect_rule *r = &rr->rules[i];

        if (n->type == CN_MAP) {
            if (redirect_domain(cx, cmap_key(n, i), &r->domain) < 0 ||
                redirect_to(cx, cmap_val(n, i), r) < 0)
                return -1;
        } else {
            const struct cnode *it = n->items[i];
            struct redirect_tmp t = {0};

            if (!is_map(it))
                return conf_fail(cx, it, "expected a map {exact|parent: domain, to: ...}");
            if (conf_apply(cx, it, tables, NULL, &t) < 0)
                return -1;
            if (!t.exact == !t.parent)
                return conf_fail(cx, it, "set exactly one of 'exact' and 'parent'");
            r->parent = t.parent != NULL;
            if (redirect_domain(cx, r->parent ? t.parent : t.exact, &r->domain) < 0 ||
                redirect_to(cx, t.to, r) < 0)
                return -1;
        }
        rr->n++;
    }
    return 0;
}

/* ---- picking ---- */

int cp_pick_policy(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct name_val t[] = {
        {"random", PICK_RANDOM},          {"serial", PICK_SERIAL},      {"sequence", PICK_SERIAL},
        {"roundrobin", PICK_ROUND_ROBIN}, {"rr", PICK_ROUND_ROBIN},     {"ketama", PICK_KETAMA},
        {"rendezvous", PICK_RENDEZVOUS},  {"jumphash", PICK_JUMP_HASH},
    };

    return enum_parse(cx, n, t, ARRAY_SIZE(t), "pick policy",
                      "random, serial, round_robin, ketama, rendezvous or jump_hash", slot);
}

static const struct conf_key weighted_addr_keys[] = {
    {"addr", NULL, cp_upstream, offsetof(struct weighted_addr, addr), NULL, 0, 0, CK_F_REQUIRED},
    {"weight", NULL, cp_double, offsetof(struct weighted_addr, weight), "1.0"},
    {0},
};

static const struct conf_key weighted_name_keys[] = {
    {"name", NULL, cp_node_name, offsetof(struct weighted_name, name), NULL, 0, 0, CK_F_REQUIRED},
    {"weight", NULL, cp_double, offsetof(struct weighted_name, weight), "1.0"},
    {0},
};

/* One item: a scalar parsed by scalar_fn into *value (weight 1.0), or a map of the
 * table's keys written into *item. */
static int weighted_item(struct conf_ctx *cx, const struct cnode *n, void *item, void *value,
                         double *weight, conf_parse_fn scalar_fn,
                         const struct conf_key *const *tables)
{
    if (is_map(n)) {
        if (conf_apply(cx, n, tables, NULL, item) < 0)
            return -1;
        if (*weight < 0)
            return conf_fail(cx, cmap_get(n, "weight"), "weight must not be negative");
        return 0;
    }
    *weight = 1.0;
    return scalar_fn(cx, n, value, NULL);
}

/* "addr", {addr, weight}, or a non-empty list of them. */
int cp_weighted_addrs(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {weighted_addr_keys, NULL};
    struct weighted_addrs *wa = slot;
    size_t cnt = n && n->type == CN_SEQ ? n->n : 1;

    memset(wa, 0, sizeof(*wa));
    if (!cnt)
        return conf_fail(cx, n, "empty address list");
    if (!(wa->v = arena_alloc(cx->arena, cnt * sizeof(*wa->v))))
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const struct cnode *it = n->type == CN_SEQ ? n->items[i] : n;

        if (weighted_item(cx, it, &wa->v[i], &wa->v[i].addr, &wa->v[i].weight, cp_upstream,
                          tables) < 0)
            return -1;
    }
    wa->n = cnt;
    return 0;
}

/* "name", {name, weight}, or a non-empty list of them. */
int cp_weighted_names(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {weighted_name_keys, NULL};
    struct weighted_names *wn = slot;
    size_t cnt = n && n->type == CN_SEQ ? n->n : 1;

    memset(wn, 0, sizeof(*wn));
    if (!cnt)
        return conf_fail(cx, n, "empty name list");
    if (!(wn->v = arena_alloc(cx->arena, cnt * sizeof(*wn->v))))
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const struct cnode *it = n->type == CN_SEQ ? n->items[i] : n;

        if (weighted_item(cx, it, &wn->v[i], &wn->v[i].name, &wn->v[i].weight, cp_node_name,
                          tables) < 0)
            return -1;
    }
    wn->n = cnt;
    return 0;
}

/* ---- HTTP ---- */

static const struct conf_key http_keepalive_keys[] = {
    {"enable", NULL, cp_bool, offsetof(struct http_keepalive, enable), "true"},
    {"idle_expire", NULL, cp_duration, offsetof(struct http_keepalive, idle_expire_ns), "60s"},
    {0},
};

/* bool (idle 60s), duration (= idle_expire, enabled) or {enable, idle_expire}. */
int cp_http_keepalive(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {http_keepalive_keys, NULL};
    struct http_keepalive *ka = slot;
    bool b;

    memset(ka, 0, sizeof(*ka));
    if (is_map(n))
        return conf_apply(cx, n, tables, NULL, ka);
    ka->idle_expire_ns = 60 * NS_PER_SEC;
    if (word_bool(n, &b)) {
        ka->enable = b;
        return 0;
    }
    if (!is_scalar(n))
        return conf_fail(cx, n, "expected a boolean, a duration or a map, got a %s",
                         cnode_type_name(n));
    if (cp_duration(cx, n, &ka->idle_expire_ns, NULL) < 0)
        return -1;
    ka->enable = true;
    return 0;
}

/* none, classic (X-Forwarded-For), standard (RFC 7239 Forwarded), or a bool
 * (true = classic). */
int cp_forwarded_type(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct name_val t[] = {
        {"none", FWD_NONE}, {"classic", FWD_CLASSIC}, {"standard", FWD_STANDARD}};
    bool b;

    if (conf_parse_bool(n, &b) == 0) {
        *(int *)slot = b ? FWD_CLASSIC : FWD_NONE;
        return 0;
    }
    return enum_parse(cx, n, t, ARRAY_SIZE(t), "forwarded header type",
                      "none, classic, standard or a boolean", slot);
}

#define FCOFF(f) offsetof(struct http_forward_capability, f)
static const struct conf_key forward_cap_keys[] = {
    {"forward_https", NULL, cp_bool, FCOFF(forward_https), "false"},
    {"forward_ftp", NULL, cp_bool, FCOFF(forward_ftp), "false"},
    {"forward_ftp_get", NULL, cp_bool, FCOFF(forward_ftp_get), "false"},
    {"forward_ftp_put", NULL, cp_bool, FCOFF(forward_ftp_put), "false"},
    {"forward_ftp_del", NULL, cp_bool, FCOFF(forward_ftp_del), "false"},
    {0},
};

/* forward_ftp sets forward_ftp_get/put/del unless they are given themselves. */
int cp_http_forward_capability(struct conf_ctx *cx, const struct cnode *n, void *slot,
                               const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {forward_cap_keys, NULL};
    struct http_forward_capability *fc = slot;

    memset(fc, 0, sizeof(*fc));
    if (conf_apply(cx, n, tables, NULL, fc) < 0)
        return -1;
    if (!map_has(n, tables, "forward_ftp_get"))
        fc->forward_ftp_get = fc->forward_ftp;
    if (!map_has(n, tables, "forward_ftp_put"))
        fc->forward_ftp_put = fc->forward_ftp;
    if (!map_has(n, tables, "forward_ftp_del"))
        fc->forward_ftp_del = fc->forward_ftp;
    return 0;
}

/* Printable ASCII except ';' and ',' (it goes into header values). */
int cp_http_server_id(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    if (cp_str(cx, n, slot, k) < 0)
        return -1;
    const char *s = *(char **)slot;
    if (!*s)
        return conf_fail(cx, n, "empty server id");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e || c == ';' || c == ',')
            return conf_fail(cx, n,
                             "invalid character at offset %zu in server id (printable ASCII "
                             "except ';' and ',')",
                             (size_t)(p - s));
    }
    return 0;
}

/* 1 or 2 (also "v1", "v2"). */
int cp_proxy_protocol(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct name_val t[] = {{"1", 1}, {"2", 2}, {"v1", 1}, {"v2", 2}};

    return enum_parse(cx, n, t, ARRAY_SIZE(t), "PROXY protocol version", "1 or 2", slot);
}

#define CPOFF(f) offsetof(struct conn_pool_conf, f)
static const struct conf_key conn_pool_keys[] = {
    {"check_interval", NULL, cp_duration, CPOFF(check_interval_ns), "10s"},
    {"max_idle_count", NULL, cp_u32, CPOFF(max_idle_count), "1024"},
    {"min_idle_count", NULL, cp_u32, CPOFF(min_idle_count), "32"},
    {"idle_timeout", NULL, cp_duration, CPOFF(idle_timeout_ns), "5m"},
    {0},
};

int cp_conn_pool(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {conn_pool_keys, NULL};
    struct conn_pool_conf *cp = slot;

    memset(cp, 0, sizeof(*cp));
    if (conf_apply(cx, n, tables, NULL, cp) < 0)
        return -1;
    if (cp->min_idle_count > cp->max_idle_count)
        return conf_fail(cx, n, "min_idle_count (%u) is above max_idle_count (%u)",
                         cp->min_idle_count, cp->max_idle_count);
    if (!cp->check_interval_ns)
        return conf_fail(cx, cmap_get(n, "check_interval"),
                         "check_interval must be greater than 0");
    return 0;
}

/* ---- metrics tags ---- */

/* Map tag -> value; both follow the metric node name rule. Tag names are kept as
 * written (not normalized). */
int cp_metrics_tags(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    struct metrics_tags *mt = slot;

    memset(mt, 0, sizeof(*mt));
    if (!is_map(n))
        return conf_fail(cx, n, "expected a map of tag: value, got a %s", cnode_type_name(n));
    if (!n->n)
        return 0;
    if (!(mt->v = arena_alloc(cx->arena, n->n * sizeof(*mt->v))))
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        if (cp_node_name(cx, cmap_key(n, i), &mt->v[i].name, NULL) < 0 ||
            cp_node_name(cx, cmap_val(n, i), &mt->v[i].value, NULL) < 0)
            return -1;
    }
    mt->n = n->n;
    return 0;
}

/* ---- dates ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (era arithmetic, 400-year cycles). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Fixed-width decimal field. */
static bool digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + (unsigned)((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool lit(const char **p, const char *set)
{
    if (!**p || !strchr(set, **p))
        return false;
    (*p)++;
    return true;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) -> unix seconds
 * (fraction dropped; 't', 'z' and a space separator accepted as RFC 3339 allows). */
static int rfc3339_parse(const char *s, int64_t *out)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
    int sign = 0;

    if (!digits(&p, 4, &y) || !lit(&p, "-") || !digits(&p, 2, &mo) || !lit(&p, "-") ||
        !digits(&p, 2, &d) || !lit(&p, "Tt ") || !digits(&p, 2, &h) || !lit(&p, ":") ||
        !digits(&p, 2, &mi) || !lit(&p, ":") || !digits(&p, 2, &sec))
        return -1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (lit(&p, "Zz")) {
        sign = 0;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (!digits(&p, 2, &oh) || !lit(&p, ":") || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
           sign * (int64_t)(oh * 3600 + om * 60);
    return 0;
}

int cp_rfc3339(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (rfc3339_parse(s, slot) < 0)
        return conf_fail(cx, n, "invalid RFC 3339 date-time '%s' (e.g. 2026-01-01T00:00:00Z)", s);
    return 0;
}
