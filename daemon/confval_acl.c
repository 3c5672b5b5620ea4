/* ACL grammars (reference §1.4 "ACLs") and their lookups.
 *
 * Every ACL rule has the same shape: a map {default: <action>, <action>: record-or-list}
 * or a bare record / list, meaning "only these, with the type's found action". Records
 * are kept per action; a lookup tries the actions strictest first (forbid_log, forbid,
 * permit_log, permit) and the first set holding the item wins, else the default.
 *
 * Note: g3proxy resolves network rules by longest prefix; proxyd uses strictness order
 * for every rule type (as the reference states for actions), so
 * {forbid: 10.0.0.0/8, permit: 10.1.0.0/16} forbids 10.1.2.3 here. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <pcre2.h>

#include "confval.h"

/* How one ACL type reads its records and what a bare record/list means. */
struct acl_kind {
    /* Append the record(s) in n (a record or a sequence of them) to acl under action a. */
    int (*records)(struct conf_ctx *cx, const struct cnode *n, void *acl, enum acl_action a);
    bool map_records;       /* a record may itself be a map ({parent, regex}) */
    enum acl_action found;  /* action of a bare record/list */
    enum acl_action missed; /* default when the rule does not say */
};

struct acl_parse;
struct acl_slot {
    struct acl_parse *p; /* borrowed: the parse in progress */
    enum acl_action a;
};

/* conf_apply() target for the map form: "default" writes def, each action key lands in
 * its slot, which knows its action and the ACL being filled. */
struct acl_parse {
    enum acl_action def;
    struct acl_slot act[ACL_NACTIONS];
    const struct acl_kind *kind;
    void *acl; /* borrowed: struct acl_net, acl_ports, ... */
};

static int acl_default(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);
static int acl_slot_records(struct conf_ctx *, const struct cnode *, void *,
                            const struct conf_key *);

#define APOFF(f) offsetof(struct acl_parse, f)
static const struct conf_key acl_map_keys[] = {
    {"default", NULL, acl_default, APOFF(def)},
    {"forbid_log", CK_ALIASES("deny_log", "reject_log"), acl_slot_records,
     APOFF(act[ACL_FORBID_LOG])},
    {"forbid", CK_ALIASES("deny", "reject"), acl_slot_records, APOFF(act[ACL_FORBID])},
    {"permit_log", CK_ALIASES("allow_log", "accept_log"), acl_slot_records,
     APOFF(act[ACL_PERMIT_LOG])},
    {"permit", CK_ALIASES("allow", "accept"), acl_slot_records, APOFF(act[ACL_PERMIT])},
    {0},
};
static const struct conf_key *const acl_map_tables[] = {acl_map_keys, NULL};

/* Action named by a normalized word, or -1. */
static int acl_action_find(const char *norm)
{
    const struct conf_key *k = conf_key_find(acl_map_tables, norm);

    if (!k || k->parse != acl_slot_records)
        return -1;
    return (int)(k - &acl_map_keys[1]);
}

static int acl_default(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    char norm[32];
    const char *s = NULL;
    int a;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    conf_normalize(s, norm, sizeof(norm));
    if (n->len >= sizeof(norm) || (a = acl_action_find(norm)) < 0)
        return conf_fail(cx, n, "invalid acl action '%s' (forbid_log, forbid, permit_log, permit)",
                         s);
    *(enum acl_action *)slot = (enum acl_action)a;
    return 0;
}

static int acl_slot_records(struct conf_ctx *cx, const struct cnode *n, void *slot,
                            const struct conf_key *k)
{
    struct acl_slot *s = slot;

    return s->p->kind->records(cx, n, s->p->acl, s->a);
}

/* Is n the action map form (as opposed to a record that is a map)? {} is. */
static bool acl_is_action_map(const struct cnode *n)
{
    if (!n->n)
        return true;
    for (size_t i = 0; i < n->n; i++)
        if (conf_key_find(acl_map_tables, cmap_key(n, i)->norm))
            return true;
    return false;
}

/* Parse any ACL rule into acl; *def receives the default action. */
static int acl_rule(struct conf_ctx *cx, const struct cnode *n, const struct acl_kind *kind,
                    void *acl, enum acl_action *def)
{
    if (!n || n->type == CN_NULL)
        return conf_fail(cx, n, "expected an acl rule (a map of actions, a record or a list)");
    if (n->type == CN_MAP && (!kind->map_records || acl_is_action_map(n))) {
        struct acl_parse p = {.def = kind->missed, .kind = kind, .acl = acl};

        for (size_t i = 0; i < n->n; i++) {
            const struct cnode *kn = cmap_key(n, i);
            if (!conf_key_find(acl_map_tables, kn->norm))
                return conf_fail(cx, kn,
                                 "'%s' is not an acl action (use default, forbid_log, forbid, "
                                 "permit_log or permit)",
                                 kn->str);
        }
        for (int a = 0; a < ACL_NACTIONS; a++)
            p.act[a] = (struct acl_slot){&p, (enum acl_action)a};
        if (conf_apply(cx, n, acl_map_tables, NULL, &p) < 0)
            return -1;
        *def = p.def;
        return 0;
    }
    *def = kind->missed;
    return kind->records(cx, n, acl, kind->found);
}

/* ---- record helpers ---- */

static size_t rec_count(const struct cnode *n)
{
    return n && n->type == CN_SEQ ? n->n : 1;
}

static const struct cnode *rec_at(const struct cnode *n, size_t i)
{
    return n && n->type == CN_SEQ ? n->items[i] : n;
}

/* New arena array with room for n + more elements, the first n copied from old. */
static void *vec_grow(struct conf_ctx *cx, const struct cnode *at, const void *old, size_t n,
                      size_t more, size_t sz)
{
    void *v;

    if (!n && !more)
        return (void *)old;
    v = arena_alloc(cx->arena, (n + more) * sz);
    if (!v) {
        conf_fail(cx, at, "out of memory");
        return NULL;
    }
    if (n)
        memcpy(v, old, n * sz);
    return v;
}

/* ---- networks ---- */

static int net_records(struct conf_ctx *cx, const struct cnode *n, void *p, enum acl_action a)
{
    struct acl_net *acl = p;
    size_t cnt = rec_count(n);
    struct ip_net *v = vec_grow(cx, n, acl->nets[a], acl->n[a], cnt, sizeof(*v));

    if (!v && cnt)
        return -1;
    acl->nets[a] = v;
    for (size_t i = 0; i < cnt; i++) {
        if (cp_ip_net(cx, rec_at(n, i), &v[acl->n[a]], NULL) < 0)
            return -1;
        acl->n[a]++;
    }
    return 0;
}

static const struct acl_kind net_kind = {net_records, false, ACL_PERMIT, ACL_FORBID};

static int acl_net_parse(struct conf_ctx *cx, const struct cnode *n, struct acl_net *acl,
                         uint8_t implicit)
{
    memset(acl, 0, sizeof(*acl));
    if (acl_rule(cx, n, &net_kind, acl, &acl->def) < 0)
        return -1;
    acl->implicit = implicit;
    acl->set = true;
    return 0;
}

int cp_acl_net(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    return acl_net_parse(cx, n, slot, 0);
}

int cp_acl_egress(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    return acl_net_parse(cx, n, slot, ACL_IMPLICIT_EGRESS);
}

int cp_acl_ingress(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    return acl_net_parse(cx, n, slot, ACL_IMPLICIT_INGRESS);
}

/* Forbidden for egress unless listed: unspecified (0.0.0.0/8, ::), loopback, link-local
 * and the IPv6 discard-only prefix. */
static const struct ip_net egress_implicit[] = {
    {.addr = {.family = AF_INET, .b = {0}}, .prefix = 8},
    {.addr = {.family = AF_INET, .b = {127}}, .prefix = 8},
    {.addr = {.family = AF_INET, .b = {169, 254}}, .prefix = 16},
    {.addr = {.family = AF_INET6, .b = {0}}, .prefix = 128},
    {.addr = {.family = AF_INET6, .b = {[15] = 1}}, .prefix = 128},
    {.addr = {.family = AF_INET6, .b = {0xfe, 0x80}}, .prefix = 10},
    {.addr = {.family = AF_INET6, .b = {0x01, 0x00}}, .prefix = 64},
};

/* Permitted for ingress unless listed. */
static const struct ip_net ingress_implicit[] = {
    {.addr = {.family = AF_INET, .b = {127, 0, 0, 1}}, .prefix = 32},
    {.addr = {.family = AF_INET6, .b = {[15] = 1}}, .prefix = 128},
};

static bool nets_have(const struct ip_net *nets, size_t n, const struct ip_addr *ip)
{
    for (size_t i = 0; i < n; i++)
        if (ip_in_net(ip, &nets[i]))
            return true;
    return false;
}

/* Explicit records, then the implicit ones. true + *a when something matched. */
static bool net_lookup(const struct acl_net *acl, const struct ip_addr *ip, enum acl_action *a)
{
    for (int i = 0; i < ACL_NACTIONS; i++) {
        if (nets_have(acl->nets[i], acl->n[i], ip)) {
            *a = (enum acl_action)i;
            return true;
        }
    }
    if ((acl->implicit & ACL_IMPLICIT_EGRESS) &&
        nets_have(egress_implicit, ARRAY_SIZE(egress_implicit), ip)) {
        *a = ACL_FORBID;
        return true;
    }
    if ((acl->implicit & ACL_IMPLICIT_INGRESS) &&
        nets_have(ingress_implicit, ARRAY_SIZE(ingress_implicit), ip)) {
        *a = ACL_PERMIT;
        return true;
    }
    return false;
}

enum acl_action acl_net_check(const struct acl_net *acl, const struct ip_addr *ip)
{
    enum acl_action a;

    if (!acl->set)
        return ACL_PERMIT;
    return net_lookup(acl, ip, &a) ? a : acl->def;
}

/* ---- ports ---- */

static int port_records(struct conf_ctx *cx, const struct cnode *n, void *p, enum acl_action a)
{
    struct acl_ports *acl = p;

    return cp_ports(cx, n, &acl->ports[a], NULL);
}

static const struct acl_kind port_kind = {port_records, false, ACL_PERMIT, ACL_FORBID};

int cp_acl_ports(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    struct acl_ports *acl = slot;

    memset(acl, 0, sizeof(*acl));
    if (acl_rule(cx, n, &port_kind, acl, &acl->def) < 0)
        return -1;
    acl->set = true;
    return 0;
}

enum acl_action acl_ports_check(const struct acl_ports *acl, uint16_t port)
{
    if (!acl->set)
        return ACL_PERMIT;
    for (int a = 0; a < ACL_NACTIONS; a++)
        if (port_set_has(&acl->ports[a], port))
            return (enum acl_action)a;
    return acl->def;
}

/* ---- proxy request types ---- */

static const struct {
    const char *name; /* lower-case, without '_' and '-' */
    uint32_t bit;
} prq_names[] = {
    {"httpforward", PRQ_HTTP_FORWARD},          {"httpsforward", PRQ_HTTPS_FORWARD},
    {"ftpoverhttp", PRQ_FTP_OVER_HTTP},         {"httpconnect", PRQ_HTTP_CONNECT},
    {"sockstcpconnect", PRQ_SOCKS_TCP_CONNECT}, {"socksudpassociate", PRQ_SOCKS_UDP_ASSOCIATE},
};

/* Lower-case s without '_' and '-' into out: "Http-Forward" and "http_forward" alike. */
static void squash(const char *s, char *out, size_t outsz)
{
    size_t o = 0;

    for (; *s && o + 1 < outsz; s++)
        if (*s != '_' && *s != '-')
            out[o++] = (char)tolower((unsigned char)*s);
    out[o] = 0;
}

static int prq_records(struct conf_ctx *cx, const struct cnode *n, void *p, enum acl_action a)
{
    struct acl_proxy_request *acl = p;

    for (size_t i = 0; i < rec_count(n); i++) {
        const struct cnode *r = rec_at(n, i);
        const char *s = NULL;
        char sq[32];
        size_t j;

        if (conf_scalar(cx, r, &s) < 0)
            return -1;
        squash(s, sq, sizeof(sq));
        for (j = 0; j < ARRAY_SIZE(prq_names); j++)
            if (r->len < sizeof(sq) && strcmp(sq, prq_names[j].name) == 0)
                break;
        if (j == ARRAY_SIZE(prq_names))
            return conf_fail(cx, r,
                             "unknown proxy request type '%s' (HttpForward, HttpsForward, "
                             "FtpOverHttp, HttpConnect, SocksTcpConnect, SocksUdpAssociate)",
                             s);
        acl->mask[a] |= prq_names[j].bit;
    }
    return 0;
}

static const struct acl_kind prq_kind = {prq_records, false, ACL_PERMIT, ACL_FORBID};

int cp_acl_proxy_request(struct conf_ctx *cx, const struct cnode *n, void *slot,
                         const struct conf_key *k)
{
    struct acl_proxy_request *acl = slot;

    memset(acl, 0, sizeof(*acl));
    if (acl_rule(cx, n, &prq_kind, acl, &acl->def) < 0)
        return -1;
    acl->set = true;
    return 0;
}

enum acl_action acl_proxy_request_check(const struct acl_proxy_request *acl, uint32_t prq)
{
    if (!acl->set)
        return ACL_PERMIT;
    for (int a = 0; a < ACL_NACTIONS; a++)
        if (acl->mask[a] & prq)
            return (enum acl_action)a;
    return acl->def;
}

/* ---- string lists: user agents, exact hosts, parent domains ---- */

/* Append a lower-cased copy of each record, checked by valid(). */
static int str_records(struct conf_ctx *cx, const struct cnode *n, struct acl_strings *acl,
                       enum acl_action a,
                       int (*valid)(struct conf_ctx *, const struct cnode *, char **))
{
    size_t cnt = rec_count(n);
    char **v = vec_grow(cx, n, acl->s[a], acl->n[a], cnt, sizeof(*v));

    if (!v && cnt)
        return -1;
    acl->s[a] = v;
    for (size_t i = 0; i < cnt; i++) {
        const struct cnode *r = rec_at(n, i);
        char *s = NULL;

        if (cp_str(cx, r, &s, NULL) < 0)
            return -1;
        for (char *q = s; *q; q++)
            *q = (char)tolower((unsigned char)*q);
        if (valid(cx, r, &s) < 0)
            return -1;
        v[acl->n[a]++] = s;
    }
    return 0;
}

/* A User-Agent product name is an RFC 7230 token. */
static int ua_valid(struct conf_ctx *cx, const struct cnode *r, char **sp)
{
    const char *s = *sp;

    if (!*s)
        return conf_fail(cx, r, "empty user agent name");
    for (const char *q = s; *q; q++)
        if (!isalnum((unsigned char)*q) && !strchr("!#$%&'*+-.^_`|~", *q))
            return conf_fail(cx, r, "invalid character '%c' in user agent product name '%s'", *q,
                             r->str);
    return 0;
}

static int ua_records(struct conf_ctx *cx, const struct cnode *n, void *p, enum acl_action a)
{
    return str_records(cx, n, p, a, ua_valid);
}

/* Listing a user agent means forbidding it: found forbid, missed permit. */
static const struct acl_kind ua_kind = {ua_records, false, ACL_FORBID, ACL_PERMIT};

int cp_acl_user_agent(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    struct acl_strings *acl = slot;

    memset(acl, 0, sizeof(*acl));
    if (acl_rule(cx, n, &ua_kind, acl, &acl->def) < 0)
        return -1;
    acl->set = true;
    return 0;
}

/* Is product name `name` (lower-case) one of the products in the header value? It must
 * start the value or follow ' ', ';' or '(' and end it or be followed by '/', ' ', ';'
 * or ')': "curl" matches "curl/8.0" but not "libcurl/8.0" or "curly/1". */
static bool ua_has(const char *ua, size_t len, const char *name)
{
    size_t nl = strlen(name);

    for (size_t i = 0; i + nl <= len; i++) {
        if (strncasecmp(ua + i, name, nl) != 0)
            continue;
        if (i && (!ua[i - 1] || !strchr(" ;(", ua[i - 1])))
            continue;
        if (i + nl < len && (!ua[i + nl] || !strchr("/ ;)", ua[i + nl])))
            continue;
        return true;
    }
    return false;
}

enum acl_action acl_user_agent_check(const struct acl_strings *acl, const char *ua, size_t len)
{
    if (!acl->set)
        return ACL_PERMIT;
    for (int a = 0; a < ACL_NACTIONS; a++)
        for (size_t i = 0; i < acl->n[a]; i++)
            if (ua_has(ua, len, acl->s[a][i]))
                return (enum acl_action)a;
    return acl->def;
}

/* ---- dst host rule set ---- */

/* exact_match records are hosts: IPs are kept in canonical text form (IPv4-mapped IPv6
 * as IPv4), domains lower-case without a trailing dot. */
static int host_valid(struct conf_ctx *cx, const struct cnode *r, char **sp)
{
    struct upstream_addr ua;
    const char *why = NULL;

    if (upstream_parse(*sp, &ua, &why) < 0 || ua.port || strchr(*sp, ']'))
        return conf_fail(cx, r, "expected a domain or an IP address, got '%s'", r->str);
    if (ua.kind == HOST_IP && ua.ip.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&ua.ip.v6))
        inet_ntop(AF_INET, &ua.ip.v6.s6_addr[12], ua.host, sizeof(ua.host));
    /* the canonical text of an IP can be longer than what was written */
    if (!(*sp = arena_strndup(cx->arena, ua.host, strlen(ua.host))))
        return conf_fail(cx, r, "out of memory");
    return 0;
}

static int exact_records(struct conf_ctx *cx, const struct cnode *n, void *p, enum acl_action a)
{
    return str_records(cx, n, p, a, host_valid);
}

static const struct acl_kind exact_kind = {exact_records, false, ACL_PERMIT, ACL_FORBID};

static int domain_valid(struct conf_ctx *cx, const struct cnode *r, char **sp)
{
    char *s = *sp;
    size_t len = strlen(s);
    struct ip_addr ip;

    if (domain_check(s, len) < 0 || ip_parse(s, &ip) == 0)
        return conf_fail(cx, r, "expected a domain name, got '%s'", r->str);
    if (s[len - 1] == '.')
        s[len - 1] = 0;
    return 0;
}

static int child_records(struct conf_ctx *cx, const struct cnode *n, void *p, enum acl_action a)
{
    return str_records(cx, n, p, a, domain_valid);
}

static const struct acl_kind child_kind = {child_records, false, ACL_PERMIT, ACL_FORBID};

static void regex_free(void *p)
{
    pcre2_code_free(p);
}

/* Compile one regex at load time so a bad one is a config error with its position. */
static int regex_compile(struct conf_ctx *cx, const struct cnode *n, struct acl_regex *r)
{
    const char *s = NULL;
    int ec;
    PCRE2_SIZE off;
    pcre2_code *code;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    code = pcre2_compile((PCRE2_SPTR)s, n->len, 0, &ec, &off, NULL);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        return conf_fail(cx, n, "invalid regex '%s' at offset %zu: %s", s, (size_t)off,
                         (char *)msg);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* optional: the interpreter still works */
    if (arena_on_free(cx->arena, regex_free, code) < 0)
        return conf_fail(cx, n, "out of memory");
    r->code = code;
    return 0;
}

static int regex_records(struct conf_ctx *cx, const struct cnode *n, void *p, enum acl_action a)
{
    struct acl_regexes *acl = p;
    size_t cnt = rec_count(n);
    struct acl_regex *v = vec_grow(cx, n, acl->r[a], acl->n[a], cnt, sizeof(*v));

    if (!v && cnt)
        return -1;
    acl->r[a] = v;
    for (size_t i = 0; i < cnt; i++) {
        const struct cnode *r = rec_at(n, i);
        struct acl_regex *out = &v[acl->n[a]];

        if (r && r->type == CN_MAP) {
            static const struct conf_key keys[] = {
                {"parent", NULL, cp_str, offsetof(struct acl_regex, parent), NULL, 0, 0,
                 CK_F_REQUIRED},
                {"regex", NULL, cp_ignore, 0, NULL, 0, 0, CK_F_REQUIRED},
                {0},
            };
            static const struct conf_key *const tables[] = {keys, NULL};

            if (conf_apply(cx, r, tables, NULL, out) < 0)
                return -1;
            for (char *q = out->parent; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            if (domain_valid(cx, cmap_get(r, "parent"), &out->parent) < 0)
                return -1;
            if (regex_compile(cx, cmap_get(r, "regex"), out) < 0)
                return -1;
        } else if (regex_compile(cx, r, out) < 0) {
            return -1;
        }
        acl->n[a]++;
    }
    return 0;
}

static const struct acl_kind regex_kind = {regex_records, true, ACL_PERMIT, ACL_FORBID};

#define DHOFF(f) offsetof(struct acl_dst_host, f)

static int dh_exact(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    struct acl_strings *acl = slot;

    if (acl_rule(cx, n, &exact_kind, acl, &acl->def) < 0)
        return -1;
    acl->set = true;
    return 0;
}

static int dh_child(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    struct acl_strings *acl = slot;

    if (acl_rule(cx, n, &child_kind, acl, &acl->def) < 0)
        return -1;
    acl->set = true;
    return 0;
}

static int dh_regex(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    struct acl_regexes *acl = slot;

    if (acl_rule(cx, n, &regex_kind, acl, &acl->def) < 0)
        return -1;
    acl->set = true;
    return 0;
}

static const struct conf_key dst_host_keys[] = {
    {"exact_match", CK_ALIASES("exact"), dh_exact, DHOFF(exact)},
    {"child_match", CK_ALIASES("child"), dh_child, DHOFF(child)},
    {"regex_match", CK_ALIASES("regex"), dh_regex, DHOFF(regex)},
    {"subnet_match", CK_ALIASES("subnet"), cp_acl_egress, DHOFF(subnet)},
    {0},
};

/* Sub-rules: exact_match (hosts), child_match (a parent domain matches itself and every
 * name under it, as in g3proxy: "example.com" matches example.com and a.example.com but
 * not badexample.com), regex_match (PCRE2, unanchored: a regex matches anywhere in the
 * host unless it says ^...$; {parent, regex} applies the regex to the part before
 * ".parent", "" for the parent itself), subnet_match (networks, with the egress
 * implicit forbids). */
int cp_acl_dst_host(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {dst_host_keys, NULL};
    struct acl_dst_host *acl = slot;

    memset(acl, 0, sizeof(*acl));
    if (conf_apply(cx, n, tables, NULL, acl) < 0)
        return -1;
    acl->set = true;
    return 0;
}

static bool strs_have(const struct acl_strings *acl, const char *s, enum acl_action *a)
{
    for (int i = 0; i < ACL_NACTIONS; i++) {
        for (size_t j = 0; j < acl->n[i]; j++) {
            if (strcmp(acl->s[i][j], s) == 0) {
                *a = (enum acl_action)i;
                return true;
            }
        }
    }
    return false;
}

/* host is parent or ends with ".parent" */
static bool under_parent(const char *host, size_t len, const char *parent, size_t *sublen)
{
    size_t pl = strlen(parent);

    if (len == pl && memcmp(host, parent, pl) == 0) {
        *sublen = 0;
        return true;
    }
    if (len > pl && host[len - pl - 1] == '.' && memcmp(host + len - pl, parent, pl) == 0) {
        *sublen = len - pl - 1;
        return true;
    }
    return false;
}

static bool child_have(const struct acl_strings *acl, const char *host, enum acl_action *a)
{
    size_t len = strlen(host), sub;

    for (int i = 0; i < ACL_NACTIONS; i++) {
        for (size_t j = 0; j < acl->n[i]; j++) {
            if (under_parent(host, len, acl->s[i][j], &sub)) {
                *a = (enum acl_action)i;
                return true;
            }
        }
    }
    return false;
}

/* On allocation failure a forbidding regex counts as matched: fail closed. */
static bool regex_hit(const struct acl_regex *r, const char *host, size_t len, enum acl_action a)
{
    pcre2_match_data *md;
    size_t sublen = len;
    int rc;

    if (r->parent && !under_parent(host, len, r->parent, &sublen))
        return false;
    md = pcre2_match_data_create(1, NULL);
    if (!md)
        return acl_forbids(a);
    rc = pcre2_match(r->code, (PCRE2_SPTR)host, sublen, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static bool regex_have(const struct acl_regexes *acl, const char *host, enum acl_action *a)
{
    size_t len = strlen(host);

    for (int i = 0; i < ACL_NACTIONS; i++) {
        for (size_t j = 0; j < acl->n[i]; j++) {
            if (regex_hit(&acl->r[i][j], host, len, (enum acl_action)i)) {
                *a = (enum acl_action)i;
                return true;
            }
        }
    }
    return false;
}

/* The strictest default among the configured sub-rules (permit if none). */
static enum acl_action dst_host_missed(const struct acl_dst_host *acl)
{
    enum acl_action m = ACL_PERMIT;

    if (acl->exact.set)
        m = MIN(m, acl->exact.def);
    if (acl->child.set)
        m = MIN(m, acl->child.def);
    if (acl->regex.set)
        m = MIN(m, acl->regex.def);
    if (acl->subnet.set)
        m = MIN(m, acl->subnet.def);
    return m;
}

/* An IP target is checked against exact_match (IP records) then subnet_match; a domain
 * against exact_match, child_match then regex_match (as g3proxy does). */
enum acl_action acl_dst_host_check(const struct acl_dst_host *acl, const struct upstream_addr *host)
{
    enum acl_action a;

    if (!acl->set)
        return ACL_PERMIT;
    if (host->kind == HOST_IP) {
        struct ip_addr ip = host->ip;
        char txt[INET6_ADDRSTRLEN];

        /* ::ffff:a.b.c.d is the IPv4 host a.b.c.d */
        if (ip.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&ip.v6)) {
            uint32_t v4;
            memcpy(&v4, &ip.v6.s6_addr[12], 4);
            memset(&ip, 0, sizeof(ip));
            ip.family = AF_INET;
            ip.v4.s_addr = v4;
        }
        ip_str(&ip, txt, sizeof(txt));
        if (acl->exact.set && strs_have(&acl->exact, txt, &a))
            return a;
        if (acl->subnet.set && net_lookup(&acl->subnet, &ip, &a))
            return a;
    } else if (host->kind == HOST_DOMAIN) {
        if (acl->exact.set && strs_have(&acl->exact, host->host, &a))
            return a;
        if (acl->child.set && child_have(&acl->child, host->host, &a))
            return a;
        if (acl->regex.set && regex_have(&acl->regex, host->host, &a))
            return a;
    }
    return dst_host_missed(acl);
}
