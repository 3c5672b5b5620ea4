/* Resolver c_ares: DNS over UDP/TCP through c-ares, with /etc/hosts.
 *
 * One ares channel per resolver object per worker, created on the first query on that
 * worker and destroyed when the worker detaches the object. The channel is driven by
 * its socket-state callback (one ev_io per socket) and one timer re-armed from
 * ares_timeout() after every call into c-ares.
 *
 * c-ares cannot cancel a single query, so a query record has two owners: c-ares until
 * its callback ran, the cache layer until the answer was delivered or cancelled; it is
 * freed when both let go. Answers are never delivered from inside c-ares (its callback
 * may run inside ares_getaddrinfo() itself, for /etc/hosts or bad names): the callback
 * stores them and a zero timer of the query delivers them from the loop. So whatever a
 * delivery leads to (even this channel's destruction) happens outside c-ares. */
#include <ares.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "common.h"
#include "conf.h"
#include "evlog.h"
#include "gen.h"
#include "log.h"
#include "registry.h"
#include "resolve.h"
#include "resolver.h"
#include "worker.h"

struct cares_servers {
    size_t n;
    union sockaddr_any *v;      /* arena */
};

struct cares_chan;

struct c_ares {
    struct resolver base;
    struct cares_servers servers;   /* server: empty = /etc/resolv.conf */
    uint32_t each_timeout_ms;
    uint32_t each_tries;
    uint32_t max_timeout_ms;        /* 0 = unset */
    uint32_t udp_max_queries;       /* 0 = unlimited */
    bool round_robin;
    uint32_t so_sndbuf, so_rcvbuf;  /* 0 = system default */
    struct ip_addr bind4, bind6;    /* family 0 = unset */
    char *server_text;              /* arena: "ip:port ip:port" for logs, NULL = system */
    struct cares_chan **chans;      /* arena: [nchans], each owned by its worker */
    unsigned nchans;
};

/* One socket c-ares asked us to watch. */
struct cares_fd {
    ev_io io;
    struct cares_chan *chan;        /* borrowed */
    struct cares_fd *next;
};

struct cares_chan {
    ares_channel ch;                /* owned */
    struct worker *w;               /* borrowed */
    ev_timer tm;                    /* ares_timeout() */
    struct cares_fd *fds;           /* owned */
};

struct cares_query {
    struct resolve_query base;
    struct worker *w;               /* borrowed */
    resolve_cb cb;
    void *arg;
    int family;
    bool ares_pending;              /* c-ares still holds it */
    bool live;                      /* the cache layer still waits for it */
    ev_timer deliver;               /* zero timer: the stored answer */
    ev_timer deadline;              /* max_timeout */
    struct resolve_result res;
    struct ip_addr ips[RESOLVE_MAX_ADDRS];
};

#define COFF(f) offsetof(struct c_ares, f)

/* ------------------------------------------------------------------ config */

static int add_server(struct conf_ctx *cx, const struct cnode *at, const char *s,
                      union sockaddr_any *out)
{
    struct upstream_addr ua;
    const char *why = NULL;
    socklen_t len;

    if (upstream_parse(s, &ua, &why) < 0 || ua.kind != HOST_IP)
        return conf_fail(cx, at, "invalid DNS server '%s': expected ip[:port] or [ipv6]:port", s);
    if (ua.ip.family == AF_INET ? ua.ip.v4.s_addr == htonl(INADDR_ANY)
                                : IN6_IS_ADDR_UNSPECIFIED(&ua.ip.v6))
        return conf_fail(cx, at, "DNS server address '%s' is unspecified", s);
    if (ua.ip.family == AF_INET ? IN_MULTICAST(ntohl(ua.ip.v4.s_addr))
                                : IN6_IS_ADDR_MULTICAST(&ua.ip.v6))
        return conf_fail(cx, at, "DNS server address '%s' is multicast", s);
    ip_to_sockaddr(&ua.ip, ua.port ? ua.port : 53, out, &len);
    return 0;
}

/* server: "ip[:port] ip[:port] ..." or a list of "ip[:port]". */
static int cp_servers(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    struct cares_servers *sv = slot;
    char tok[HOST_MAX + 16];
    size_t cap = 0;

    memset(sv, 0, sizeof(*sv));
    if (n->type == CN_SCALAR) {
        for (const char *p = n->str; *p; p++)
            if (*p != ' ' && *p != '\t' && (p == n->str || p[-1] == ' ' || p[-1] == '\t'))
                cap++;
    } else if (n->type == CN_SEQ) {
        cap = n->n;
    } else if (n->type != CN_NULL) {
        return conf_fail(cx, n, "expected a string of addresses or a list, got a %s",
                         cnode_type_name(n));
    }
    if (!cap)
        return 0;
    sv->v = arena_alloc(cx->arena, cap * sizeof(*sv->v));
    if (!sv->v)
        return conf_fail(cx, n, "out of memory");
    if (n->type == CN_SEQ) {
        for (size_t i = 0; i < n->n; i++) {
            const char *s = NULL;
            if (conf_scalar(cx, n->items[i], &s) < 0 ||
                add_server(cx, n->items[i], s, &sv->v[sv->n++]) < 0)
                return -1;
        }
        return 0;
    }
    for (const char *p = n->str; *p;) {
        size_t l = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        while (p[l] && p[l] != ' ' && p[l] != '\t')
            l++;
        if (!l)
            break;
        if (l >= sizeof(tok))
            return conf_fail(cx, n, "invalid DNS server '%.*s'", (int)l, p);
        memcpy(tok, p, l);
        tok[l] = 0;
        if (add_server(cx, n, tok, &sv->v[sv->n++]) < 0)
            return -1;
        p += l;
    }
    return 0;
}

/* Milliseconds: an integer (g3proxy's form) or a duration with a unit ("2s"). */
static int cp_ms(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;
    int64_t v;
    uint64_t ns;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_i64(s, &v) == 0) {
        if (v < 0)
            return conf_fail(cx, n, "expected milliseconds, got '%s'", s);
        ns = (uint64_t)v * NS_PER_MS;
    } else if (conf_parse_duration(s, &ns) < 0) {
        return conf_fail(cx, n, "expected milliseconds or a duration (\"2s\"), got '%s'", s);
    }
    if (k->min < k->max && (ns < (uint64_t)k->min * NS_PER_MS || ns > (uint64_t)k->max * NS_PER_MS))
        return conf_fail(cx, n, "'%s' is out of range [%lldms, %lldms]", s, (long long)k->min,
                         (long long)k->max);
    *(uint32_t *)slot = (uint32_t)(ns / NS_PER_MS);
    return 0;
}

static const struct conf_key c_ares_keys[] = {
    {"server", NULL, cp_servers, COFF(servers)},
    {"each_timeout", NULL, cp_ms, COFF(each_timeout_ms), "2000", 1, 3600000},
    {"each_tries", NULL, cp_u32, COFF(each_tries), "3", 1, 100},
    {"max_timeout", NULL, cp_ms, COFF(max_timeout_ms), "0", 0, 86400000},
    {"udp_max_quires", CK_ALIASES("udp_max_queries"), cp_u32, COFF(udp_max_queries), "0"},
    {"round_robin", NULL, cp_bool, COFF(round_robin), "false"},
    {"socket_send_buffer_size", NULL, cp_size32, COFF(so_sndbuf), "0"},
    {"socket_recv_buffer_size", NULL, cp_size32, COFF(so_rcvbuf), "0"},
    {"bind_ipv4", NULL, cp_ip, COFF(bind4)},
    {"bind_ipv6", NULL, cp_ip, COFF(bind6)},
    {0},
};

static const struct conf_key *const c_ares_key_tables[] = {c_ares_keys, resolver_base_keys, NULL};

static int c_ares_init(struct resolver *r, struct conf_ctx *cx)
{
    struct c_ares *c = container_of(r, struct c_ares, base);

    if (c->bind4.family && c->bind4.family != AF_INET) {
        cx->key = "bind_ipv4";
        return conf_fail(cx, cmap_get(cx->node, "bind_ipv4"), "expected an IPv4 address");
    }
    if (c->bind6.family && c->bind6.family != AF_INET6) {
        cx->key = "bind_ipv6";
        return conf_fail(cx, cmap_get(cx->node, "bind_ipv6"), "expected an IPv6 address");
    }
    if (resolver_check_ttls(r, cx) < 0 || resolve_cache_init(r, cx) < 0)
        return -1;
    c->nchans = r->nslots;
    c->chans = arena_alloc(cx->arena, c->nchans * sizeof(*c->chans));
    if (!c->chans)
        return conf_fail(cx, NULL, "out of memory");
    if (c->servers.n) {
        size_t len = c->servers.n * 48;
        char *p = arena_alloc(cx->arena, len), buf[64];
        size_t k = 0;
        if (!p)
            return conf_fail(cx, NULL, "out of memory");
        for (size_t i = 0; i < c->servers.n; i++)
            k += (size_t)snprintf(p + k, len - k, "%s%s", i ? " " : "",
                                  sockaddr_str(&c->servers.v[i], buf, sizeof(buf)));
        c->server_text = p;
    }
    return 0;
}

/* Cache contents stay valid when nothing in the config changed. */
static void c_ares_inherit(struct resolver *r, struct resolver *old)
{
    if (cnode_equal(r->obj.conf, old->obj.conf))
        resolve_cache_inherit(r, old);
}

/* --------------------------------------------------------------- channels */

static void chan_rearm(struct cares_chan *chan)
{
    struct timeval tv, *tvp = ares_timeout(chan->ch, NULL, &tv);

    ev_timer_stop(chan->w->loop, &chan->tm);
    if (tvp) {
        ev_timer_set(&chan->tm, (double)tv.tv_sec + (double)tv.tv_usec / 1e6, 0.);
        ev_timer_start(chan->w->loop, &chan->tm);
    }
}

static void on_chan_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct cares_fd *f = container_of(io, struct cares_fd, io);
    struct cares_chan *chan = f->chan;
    int fd = io->fd;

    /* f may be freed inside (the socket closed); chan may not */
    ares_process_fd(chan->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    chan_rearm(chan);
}

static void on_chan_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct cares_chan *chan = container_of(t, struct cares_chan, tm);

    ares_process_fd(chan->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    chan_rearm(chan);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct cares_chan *chan = data;
    struct cares_fd **pp = &chan->fds, *f;
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    f = *pp;
    if (!events) {
        if (f) {
            ev_io_stop(chan->w->loop, &f->io);
            *pp = f->next;
            free(f);
        }
        return;
    }
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f) {
            /* its queries run into their timeouts */
            log_err("c-ares: out of memory watching a DNS socket");
            return;
        }
        f->chan = chan;
        f->next = chan->fds;
        chan->fds = f;
        ev_io_init(&f->io, on_chan_io, fd, events);
    } else {
        ev_io_stop(chan->w->loop, &f->io);
        ev_io_set(&f->io, fd, events);
    }
    ev_io_start(chan->w->loop, &f->io);
}

static struct cares_chan *chan_get(struct c_ares *c, struct worker *w)
{
    struct cares_chan *chan;
    struct ares_options o;
    int mask, rc;

    if (w->id >= c->nchans)
        return NULL;
    if (c->chans[w->id])
        return c->chans[w->id];
    chan = calloc(1, sizeof(*chan));
    if (!chan)
        return NULL;
    chan->w = w;
    ev_timer_init(&chan->tm, on_chan_timer, 0., 0.);

    memset(&o, 0, sizeof(o));
    mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = chan;
    o.timeout = (int)c->each_timeout_ms;
    o.tries = (int)c->each_tries;
    /* names are looked up as given, like g3proxy does (no search domains) */
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    if (c->round_robin)
        mask |= ARES_OPT_ROTATE;
    if (c->so_sndbuf) {
        mask |= ARES_OPT_SOCK_SNDBUF;
        o.socket_send_buffer_size = (int)c->so_sndbuf;
    }
    if (c->so_rcvbuf) {
        mask |= ARES_OPT_SOCK_RCVBUF;
        o.socket_receive_buffer_size = (int)c->so_rcvbuf;
    }
#ifdef ARES_OPT_UDP_MAX_QUERIES
    if (c->udp_max_queries) {
        mask |= ARES_OPT_UDP_MAX_QUERIES;
        o.udp_max_queries = (int)c->udp_max_queries;
    }
#endif
    rc = ares_init_options(&chan->ch, &o, mask);
    if (rc != ARES_SUCCESS) {
        log_err("resolver '%s': cannot set up c-ares: %s", c->base.obj.name, ares_strerror(rc));
        free(chan);
        return NULL;
    }
    if (c->servers.n) {
        struct ares_addr_port_node *nodes = calloc(c->servers.n, sizeof(*nodes));
        if (!nodes) {
            ares_destroy(chan->ch);
            free(chan);
            return NULL;
        }
        for (size_t i = 0; i < c->servers.n; i++) {
            const union sockaddr_any *sa = &c->servers.v[i];
            nodes[i].next = i + 1 < c->servers.n ? &nodes[i + 1] : NULL;
            nodes[i].family = sa->sa.sa_family;
            if (sa->sa.sa_family == AF_INET) {
                nodes[i].addr.addr4 = sa->in.sin_addr;
                nodes[i].udp_port = nodes[i].tcp_port = ntohs(sa->in.sin_port);
            } else {
                memcpy(&nodes[i].addr.addr6, &sa->in6.sin6_addr, 16);
                nodes[i].udp_port = nodes[i].tcp_port = ntohs(sa->in6.sin6_port);
            }
        }
        rc = ares_set_servers_ports(chan->ch, nodes);
        free(nodes);
        if (rc != ARES_SUCCESS) {
            log_err("resolver '%s': cannot set DNS servers: %s", c->base.obj.name,
                    ares_strerror(rc));
            ares_destroy(chan->ch);
            free(chan);
            return NULL;
        }
    }
    if (c->bind4.family == AF_INET)
        ares_set_local_ip4(chan->ch, ntohl(c->bind4.v4.s_addr));
    if (c->bind6.family == AF_INET6)
        ares_set_local_ip6(chan->ch, c->bind6.v6.s6_addr);
    c->chans[w->id] = chan;
    return chan;
}

static void chan_free(struct cares_chan *chan)
{
    /* pending queries get ARES_EDESTRUCTION: all of them were cancelled before */
    ares_destroy(chan->ch);
    while (chan->fds) {
        struct cares_fd *f = chan->fds;
        chan->fds = f->next;
        ev_io_stop(chan->w->loop, &f->io);
        free(f);
    }
    ev_timer_stop(chan->w->loop, &chan->tm);
    free(chan);
}

/* ---------------------------------------------------------------- queries */

static void status_to_result(int status, struct resolve_result *res)
{
    static const struct {
        int status;
        uint8_t err, why;
    } map[] = {
        {ARES_ENODATA, RESOLVE_E_NOTFOUND, RESOLVE_W_NODATA},
        {ARES_ENOTFOUND, RESOLVE_E_NOTFOUND, RESOLVE_W_NXDOMAIN},
        {ARES_ETIMEOUT, RESOLVE_E_TIMEOUT, RESOLVE_W_TIMEOUT},
        {ARES_ECONNREFUSED, RESOLVE_E_REFUSED, RESOLVE_W_CONNREFUSED},
        {ARES_ESERVFAIL, RESOLVE_E_REFUSED, RESOLVE_W_SERVFAIL},
        {ARES_EREFUSED, RESOLVE_E_REFUSED, RESOLVE_W_REFUSED},
        {ARES_EFORMERR, RESOLVE_E_INTERNAL, RESOLVE_W_FORMERR},
        {ARES_ENOTIMP, RESOLVE_E_INTERNAL, RESOLVE_W_NOTIMP},
        {ARES_EBADQUERY, RESOLVE_E_INTERNAL, RESOLVE_W_BADQUERY},
        {ARES_EBADNAME, RESOLVE_E_INTERNAL, RESOLVE_W_BADNAME},
        {ARES_EBADFAMILY, RESOLVE_E_INTERNAL, RESOLVE_W_BADFAMILY},
        {ARES_EBADRESP, RESOLVE_E_INTERNAL, RESOLVE_W_BADRESP},
    };

    res->err = RESOLVE_E_INTERNAL;
    res->why = RESOLVE_W_INTERNAL;
    for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
        if (map[i].status == status) {
            res->err = map[i].err;
            res->why = map[i].why;
            return;
        }
    }
}

static void ai_to_result(struct cares_query *q, int family, const struct ares_addrinfo *ai)
{
    struct resolve_result *res = &q->res;
    int64_t ttl = -1;

    res->n = 0;
    for (const struct ares_addrinfo_node *n = ai ? ai->nodes : NULL; n; n = n->ai_next) {
        struct ip_addr ip;
        bool dup = false;

        if (n->ai_family != family || !n->ai_addr)
            continue;
        sockaddr_to_ip((const union sockaddr_any *)n->ai_addr, &ip, NULL);
        for (size_t i = 0; i < res->n && !dup; i++)
            dup = !memcmp(&q->ips[i], &ip, sizeof(ip));
        if (ttl < 0 || n->ai_ttl < ttl)
            ttl = n->ai_ttl < 0 ? 0 : n->ai_ttl;
        if (!dup && res->n < RESOLVE_MAX_ADDRS)
            q->ips[res->n++] = ip;
    }
    res->ips = q->ips;
    res->ttl = ttl < 0 ? 0 : (uint32_t)ttl;
    if (!res->n) {
        res->err = RESOLVE_E_NOTFOUND;
        res->why = RESOLVE_W_NODATA;
    }
}

static void on_deliver(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct cares_query *q = container_of(t, struct cares_query, deliver);

    /* c-ares let go already, and the cache layer does not cancel what it is being
     * given: q is ours */
    q->live = false;
    q->res.ips = q->ips;
    q->cb(q->arg, &q->res);
    free(q);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct cares_query *q = container_of(t, struct cares_query, deadline);
    struct resolve_result res = {.err = RESOLVE_E_TIMEOUT, .why = RESOLVE_W_TIMEOUT};

    /* c-ares still holds q and frees it when its callback comes (the callback below
     * may destroy the channel, which runs it at once): do not touch q afterwards */
    q->live = false;
    q->cb(q->arg, &res);
}

static void on_ares(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct cares_query *q = arg;
    q->ares_pending = false;
    if (!q->live) {
        if (ai)
            ares_freeaddrinfo(ai);
        free(q);
        return;
    }
    if (status == ARES_EDESTRUCTION) {
        /* never happens: the cache layer cancels every query before the channel goes.
         * Deliver nothing; the record stays for the owner's cancel. */
        log_err("c-ares: a live query met its channel's destruction");
        ev_timer_stop(q->w->loop, &q->deadline);
        return;
    }
    ev_timer_stop(q->w->loop, &q->deadline);
    if (status == ARES_SUCCESS) {
        q->res.err = 0;
        q->res.why = 0;
        ai_to_result(q, q->family, ai);
    } else {
        q->res.n = 0;
        status_to_result(status, &q->res);
    }
    if (ai)
        ares_freeaddrinfo(ai);
    ev_timer_start(q->w->loop, &q->deliver);
}

static struct resolve_query *c_ares_query(struct resolver *r, struct worker *w, const char *name,
                                          int family, resolve_cb cb, void *arg)
{
    struct c_ares *c = container_of(r, struct c_ares, base);
    struct ares_addrinfo_hints hints = {.ai_flags = ARES_AI_NOSORT, .ai_family = family};
    struct cares_query *q = calloc(1, sizeof(*q));
    struct cares_chan *chan;

    if (!q)
        return NULL;
    q->base.r = r;
    q->w = w;
    q->cb = cb;
    q->arg = arg;
    q->family = family;
    q->live = true;
    ev_timer_init(&q->deliver, on_deliver, 0., 0.);
    ev_timer_init(&q->deadline, on_deadline, (double)c->max_timeout_ms / 1e3, 0.);
    chan = chan_get(c, w);
    if (!chan) {
        q->res.err = RESOLVE_E_INTERNAL;
        q->res.why = RESOLVE_W_INTERNAL;
        ev_timer_start(w->loop, &q->deliver);
        return &q->base;
    }
    /* RFC 6761: localhost names are loopback, whatever the hosts file or the servers
     * say (c-ares 1.18 also leaks in its own localhost path) */
    size_t nl = strlen(name);
    if (!strcmp(name, "localhost") || (nl > 10 && !strcmp(name + nl - 10, ".localhost"))) {
        q->res.err = 0;
        q->res.n = 1;
        q->res.ttl = 3600;
        memset(&q->ips[0], 0, sizeof(q->ips[0]));
        q->ips[0].family = (uint8_t)family;
        if (family == AF_INET)
            q->ips[0].v4.s_addr = htonl(INADDR_LOOPBACK);
        else
            q->ips[0].v6 = in6addr_loopback;
        ev_timer_start(w->loop, &q->deliver);
        return &q->base;
    }
    if (c->max_timeout_ms)
        ev_timer_start(w->loop, &q->deadline);
    q->ares_pending = true;
    /* may call on_ares() right away (hosts file, bad name): it only stores */
    ares_getaddrinfo(chan->ch, name, NULL, &hints, on_ares, q);
    chan_rearm(chan);
    return &q->base;
}

static void c_ares_cancel(struct resolve_query *qb)
{
    struct cares_query *q = container_of(qb, struct cares_query, base);

    q->live = false;
    ev_timer_stop(q->w->loop, &q->deliver);
    ev_timer_stop(q->w->loop, &q->deadline);
    if (!q->ares_pending)
        free(q);
}

/* -------------------------------------------------------------- lifecycle */

static void c_ares_worker_detach(struct resolver *r, struct worker *w)
{
    struct c_ares *c = container_of(r, struct c_ares, base);

    resolve_worker_detach(r, w); /* cancels our queries on w first */
    if (c->chans && w->id < c->nchans && c->chans[w->id]) {
        chan_free(c->chans[w->id]);
        c->chans[w->id] = NULL;
    }
}

static void c_ares_destroy(struct resolver *r)
{
    struct c_ares *c = container_of(r, struct c_ares, base);

    resolve_cache_destroy(r);
    for (unsigned i = 0; c->chans && i < c->nchans; i++) {
        if (c->chans[i]) {
            chan_free(c->chans[i]);
            c->chans[i] = NULL;
        }
    }
}

static void c_ares_log_fields(const struct resolver *r, struct evrec *rec)
{
    const struct c_ares *c = container_of(r, struct c_ares, base);

    if (c->bind4.family)
        evrec_ip(rec, "bind_ipv4", &c->bind4);
    if (c->bind6.family)
        evrec_ip(rec, "bind_ipv6", &c->bind6);
    evrec_str(rec, "server", c->server_text ? c->server_text : "system");
}

const struct resolver_ops resolver_c_ares_ops = {
    .type = "c_ares",
    .aliases = CK_ALIASES("cares"),
    .keys = c_ares_key_tables,
    .size = sizeof(struct c_ares),
    .init = c_ares_init,
    .inherit = c_ares_inherit,
    .destroy = c_ares_destroy,
    .worker_detach = c_ares_worker_detach,
    .query = c_ares_query,
    .cancel = c_ares_cancel,
    .log_fields = c_ares_log_fields,
};
