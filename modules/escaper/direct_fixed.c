/* Escaper direct_fixed: connect to the target ourselves, from this host.
 *
 * Names are resolved through the configured resolver (both families in parallel
 * unless the strategy says otherwise) and connected with Happy Eyeballs (RFC 8305):
 * the preferred family is tried first, the other one after connection_attempt_delay,
 * attempts run in parallel, the first to connect wins. Every address is checked
 * against egress_network_filter, whose implicit rules forbid loopback, link-local
 * and unspecified targets unless explicitly allowed. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "escaper.h"
#include "gen.h"
#include "proxy_proto.h"
#include "log.h"
#include "registry.h"
#include "resolve.h"
#include "sockopt.h"
#include "stats.h"
#include "worker.h"

#define DF_MAX_ADDRS 32
#define DF_MAX_PARALLEL 4

struct direct_fixed {
    struct escaper base;
    char *resolver_name;
    struct resolver *resolver;      /* borrowed: same generation */
    struct resolve_strategy strategy;
    struct tcp_speed_limit tcp_speed;
    struct udp_speed_limit udp_speed;
    char bind_interface[IF_NAMESIZE];
    bool no_ipv4, no_ipv6;
    struct tcp_connect_conf tcp_connect;
    struct happy_eyeballs_conf he;
    struct sock_misc_opts tcp_misc_opts, udp_misc_opts;
    struct ip_addr *bind_ips;       /* arena */
    size_t nbind_ips;
    struct acl_net egress;
    struct tcp_keepalive keepalive;
    struct resolve_redirection redirect;
    bool enable_path_selection;
    int use_proxy_protocol;
    uint64_t peer_negotiation_timeout_ns;
};

struct df_attempt {
    ev_io io;
    ev_timer timer;                 /* each_timeout */
    int fd;                         /* -1 when free */
    struct ip_addr ip;
    struct ip_addr bind_ip;
    struct df_conn *dc;
};

/* One connect in progress. */
struct df_conn {
    struct connect_ctx *cc;         /* borrowed: the task's */
    struct direct_fixed *e;         /* borrowed: pinned with the task */
    struct worker *w;
    struct resolve_job *job[2];     /* [0] A, [1] AAAA */
    bool asked[2], answered[2];
    int resolve_err;
    struct ip_addr addrs[DF_MAX_ADDRS];
    size_t naddrs, next;            /* addresses in try order; next to try */
    int pref;                       /* preferred family index: 0 = v4, 1 = v6 */
    bool started;                   /* connecting began */
    bool forbidden;                 /* an address was dropped by the egress filter */
    ev_timer delay;                 /* resolution delay / connection attempt delay */
    struct df_attempt att[DF_MAX_PARALLEL];
    int last_errno;
    uint32_t max_tries;
};

static int fam_idx(int family)
{
    return family == AF_INET6;
}

static void dc_free(struct df_conn *dc)
{
    struct ev_loop *loop = dc->w->loop;

    for (int i = 0; i < 2; i++) {
        resolve_cancel(dc->job[i]);
        dc->job[i] = NULL;
    }
    ev_timer_stop(loop, &dc->delay);
    for (int i = 0; i < DF_MAX_PARALLEL; i++) {
        struct df_attempt *a = &dc->att[i];
        if (a->fd >= 0) {
            ev_io_stop(loop, &a->io);
            ev_timer_stop(loop, &a->timer);
            close(a->fd);
            a->fd = -1;
        }
    }
    dc->cc->priv = NULL;
    free(dc);
}

static void df_cancel(struct connect_ctx *cc)
{
    if (cc->priv)
        dc_free(cc->priv);
}

/* Finish: success hands over fd, failure fills the reason. */
static void dc_finish(struct df_conn *dc, int fd, const struct df_attempt *a)
{
    struct connect_ctx *cc = dc->cc;
    struct direct_fixed *e = dc->e;
    struct escaper_stats_slot *st = &e->base.stats->slot[dc->w->id];

    /* use_proxy_protocol: the client's addresses go first on the new connection; a
     * fresh socket takes a header this small in one send */
    if (fd >= 0 && e->use_proxy_protocol && cc->client && cc->server) {
        uint8_t hdr[256];
        int n = e->use_proxy_protocol == 1
                    ? proxy_proto_build_v1(cc->client, cc->server, hdr, sizeof(hdr))
                    : proxy_proto_build_v2(cc->client, cc->server, hdr, sizeof(hdr), NULL, 0);
        if (n <= 0 || send(fd, hdr, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
            close(fd);
            fd = -1;
            dc->last_errno = EPROTO;
        }
    }
    cc->fd = fd;
    if (fd >= 0) {
        socklen_t len = sizeof(cc->bound);
        getsockname(fd, &cc->bound.sa, &len);
        socklen_t plen;
        ip_to_sockaddr(&a->ip, cc->target.port, &cc->peer, &plen);
        cc->bind_ip = a->bind_ip;
        STAT_ADD(st->conn_established, 1);
    } else if (dc->forbidden && dc->naddrs == 0) {
        cc->reason = TR_FORBIDDEN_BY_RULE;
        cc->http_status = 403;
        cc->error = "forbidden by the egress network filter";
        STAT_ADD(st->forbidden_ip, 1);
    } else if (dc->naddrs == 0) {
        cc->reason = TR_UPSTREAM_NOT_RESOLVED;
        cc->http_status = 530;
        cc->error = dc->resolve_err ? resolve_strerror(dc->resolve_err) : "no address";
    } else {
        cc->reason = TR_UPSTREAM_NOT_CONNECTED;
        switch (dc->last_errno) {
        case ETIMEDOUT:
            cc->http_status = 522;
            cc->error = "connect timed out";
            STAT_ADD(st->conn_timeout, 1);
            break;
        case ECONNREFUSED:
        case ECONNRESET:
            cc->http_status = 521;
            cc->error = "connection refused";
            break;
        case ENETUNREACH:
        case EHOSTUNREACH:
        case EADDRNOTAVAIL:
        case EAFNOSUPPORT:
            cc->http_status = 523;
            cc->error = "network unreachable";
            break;
        default:
            cc->http_status = 502;
            cc->error = dc->last_errno ? strerror(dc->last_errno) : "connect failed";
            break;
        }
        STAT_ADD(st->conn_error, 1);
    }
    if (fd < 0)
        escaper_log_connect_error(&e->base, cc, "DirectFixed");
    dc_free(dc);
    escaper_connect_done(cc);
}

static bool attempts_running(const struct df_conn *dc)
{
    for (int i = 0; i < DF_MAX_PARALLEL; i++)
        if (dc->att[i].fd >= 0)
            return true;
    return false;
}

static bool can_try(const struct df_conn *dc)
{
    return dc->next < dc->naddrs && dc->cc->tries < dc->max_tries;
}

/* Fail when nothing is left to try, running or pending. Returns true when dc is gone. */
static bool dc_check(struct df_conn *dc)
{
    if (attempts_running(dc) || (dc->started && can_try(dc)) || dc->job[0] || dc->job[1])
        return false;
    if (!dc->started && (dc->job[0] || dc->job[1]))
        return false;
    dc_finish(dc, -1, NULL);
    return true;
}

static void on_attempt_io(struct ev_loop *loop, ev_io *io, int revents);
static void on_attempt_timeout(struct ev_loop *loop, ev_timer *t, int revents);

static const struct ip_addr *pick_bind(struct df_conn *dc, int family)
{
    const struct direct_fixed *e = dc->e;
    size_t n = 0, pick;

    for (size_t i = 0; i < e->nbind_ips; i++)
        n += e->bind_ips[i].family == family;
    if (!n)
        return NULL;
    pick = (size_t)(worker_rand(dc->w) % n);
    for (size_t i = 0; i < e->nbind_ips; i++)
        if (e->bind_ips[i].family == family && pick-- == 0)
            return &e->bind_ips[i];
    return NULL;
}

/* Open a socket and start a non-blocking connect to ip. Returns the fd or -1 with
 * errno set. */
static int open_attempt(struct df_conn *dc, struct df_attempt *a)
{
    struct direct_fixed *e = dc->e;
    union sockaddr_any sa;
    socklen_t salen;
    int fd = socket(a->ip.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (e->bind_interface[0] && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, e->bind_interface,
                                           (socklen_t)strlen(e->bind_interface)) < 0)
        goto fail;
    const struct ip_addr *bind_ip = pick_bind(dc, a->ip.family);
    if (bind_ip) {
        union sockaddr_any bsa;
        socklen_t blen;
        ip_to_sockaddr(bind_ip, 0, &bsa, &blen);
        if (bind(fd, &bsa.sa, blen) < 0)
            goto fail;
        a->bind_ip = *bind_ip;
    }
    sock_set_tcp_misc(fd, a->ip.family, &e->tcp_misc_opts);
    if (e->keepalive.enable)
        sock_set_keepalive(fd, &e->keepalive);
    ip_to_sockaddr(&a->ip, dc->cc->target.port, &sa, &salen);
    if (connect(fd, &sa.sa, salen) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail: {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}
}

/* Start the next attempt (skipping addresses that fail at once). Returns true when
 * dc is gone (everything failed). */
static bool try_next(struct df_conn *dc)
{
    struct direct_fixed *e = dc->e;

    while (can_try(dc)) {
        struct df_attempt *a = NULL;
        for (int i = 0; i < DF_MAX_PARALLEL && !a; i++)
            if (dc->att[i].fd < 0)
                a = &dc->att[i];
        if (!a)
            return false; /* all slots busy: the attempt delay will come back */
        a->ip = dc->addrs[dc->next++];
        memset(&a->bind_ip, 0, sizeof(a->bind_ip));
        dc->cc->tries++;
        STAT_ADD(e->base.stats->slot[dc->w->id].conn_attempt, 1);
        int fd = open_attempt(dc, a);
        if (fd < 0) {
            dc->last_errno = errno;
            continue;
        }
        a->fd = fd;
        a->dc = dc;
        ev_io_init(&a->io, on_attempt_io, fd, EV_WRITE);
        ev_io_start(dc->w->loop, &a->io);
        ev_timer_init(&a->timer, on_attempt_timeout, (double)e->tcp_connect.each_timeout_ns / 1e9,
                      0.);
        ev_timer_start(dc->w->loop, &a->timer);
        /* the next attempt starts after the attempt delay unless this one ends first */
        ev_timer_stop(dc->w->loop, &dc->delay);
        if (can_try(dc)) {
            ev_timer_set(&dc->delay, (double)e->he.connection_attempt_delay_ns / 1e9, 0.);
            ev_timer_start(dc->w->loop, &dc->delay);
        }
        return false;
    }
    return dc_check(dc);
}

static void attempt_end(struct df_attempt *a, int err)
{
    struct df_conn *dc = a->dc;

    ev_io_stop(dc->w->loop, &a->io);
    ev_timer_stop(dc->w->loop, &a->timer);
    close(a->fd);
    a->fd = -1;
    dc->last_errno = err;
    /* a failed attempt starts the next one at once (RFC 8305 §5) */
    try_next(dc);
}

static void on_attempt_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct df_attempt *a = container_of(io, struct df_attempt, io);
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        attempt_end(a, err);
        return;
    }
    /* the winner: dc_finish stops the others */
    int fd = a->fd;
    ev_io_stop(loop, &a->io);
    ev_timer_stop(loop, &a->timer);
    a->fd = -1;
    dc_finish(a->dc, fd, a);
}

static void on_attempt_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    attempt_end(container_of(t, struct df_attempt, timer), ETIMEDOUT);
}

static void start_connecting(struct df_conn *dc)
{
    if (dc->started)
        return;
    dc->started = true;
    ev_timer_stop(dc->w->loop, &dc->delay);
    try_next(dc);
}

static void on_delay(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct df_conn *dc = container_of(t, struct df_conn, delay);

    if (!dc->started)
        start_connecting(dc); /* the resolution delay is over */
    else
        try_next(dc); /* the connection attempt delay is over */
}

/* Add answers of one family and re-order what is untried the RFC 8305 way: the
 * preferred family's first `first_address_family_count` addresses, then the
 * families alternate. */
static void add_addrs(struct df_conn *dc, int fi, const struct ip_addr *ips, size_t n)
{
    struct ip_addr fam[2][DF_MAX_ADDRS];
    size_t cnt[2] = {0, 0}, idx[2] = {0, 0}, k = dc->next;
    uint32_t first = dc->e->he.first_address_family_count ? dc->e->he.first_address_family_count : 1;
    int p = dc->pref;

    for (size_t i = dc->next; i < dc->naddrs; i++) {
        int f = fam_idx(dc->addrs[i].family);
        fam[f][cnt[f]++] = dc->addrs[i];
    }
    size_t added = 0;
    for (size_t i = 0; i < n && cnt[fi] < DF_MAX_ADDRS; i++) {
        if (acl_forbids(acl_net_check(&dc->e->egress, &ips[i]))) {
            dc->forbidden = true;
            continue;
        }
        fam[fi][cnt[fi]++] = ips[i];
        added++;
    }
    if (dc->e->strategy.pick == RP_RANDOM && added > 1) {
        struct ip_addr *v = &fam[fi][cnt[fi] - added];
        for (size_t i = added - 1; i > 0; i--) {
            size_t j = (size_t)(worker_rand(dc->w) % (i + 1));
            struct ip_addr tmp = v[i];
            v[i] = v[j];
            v[j] = tmp;
        }
    }
    for (uint32_t j = 0; j < first && idx[p] < cnt[p] && k < DF_MAX_ADDRS; j++)
        dc->addrs[k++] = fam[p][idx[p]++];
    for (int turn = !p; (idx[0] < cnt[0] || idx[1] < cnt[1]) && k < DF_MAX_ADDRS; turn = !turn)
        if (idx[turn] < cnt[turn])
            dc->addrs[k++] = fam[turn][idx[turn]++];
    dc->naddrs = k;
}

static void on_resolved(void *arg, int family, const struct resolve_result *res)
{
    struct df_conn *dc = arg;
    int fi = fam_idx(family);

    dc->job[fi] = NULL;
    dc->answered[fi] = true;
    if (res->err)
        dc->resolve_err = res->err;
    else
        add_addrs(dc, fi, res->ips, res->n);

    if (dc->started) {
        /* a late answer feeds the attempts; an idle connect gets going again */
        if (!attempts_running(dc))
            try_next(dc);
        else
            dc_check(dc);
        return;
    }
    if (fi == dc->pref || !dc->asked[dc->pref] || dc->answered[dc->pref]) {
        start_connecting(dc);
        return;
    }
    /* the other family answered first: give the preferred one the resolution delay */
    if (!ev_is_active(&dc->delay)) {
        ev_timer_set(&dc->delay, (double)dc->e->he.resolution_delay_ns / 1e9, 0.);
        ev_timer_start(dc->w->loop, &dc->delay);
    }
}

static const struct resolve_redirect_rule *redirect_find(const struct resolve_redirection *rr,
                                                          const char *host)
{
    size_t hl = strlen(host);

    for (size_t i = 0; i < rr->n; i++) {
        const struct resolve_redirect_rule *r = &rr->rules[i];
        size_t dl = strlen(r->domain);
        if (!strcmp(host, r->domain))
            return r;
        if (r->parent && hl > dl && host[hl - dl - 1] == '.' && !strcmp(host + hl - dl, r->domain))
            return r;
    }
    return NULL;
}

/* tcp_connect never finishes inside the call: start from the loop */
static int defer_start(struct df_conn *dc)
{
    ev_timer_set(&dc->delay, 0., 0.);
    ev_timer_start(dc->w->loop, &dc->delay);
    return 0;
}

static int df_tcp_connect(struct escaper *esc, struct connect_ctx *cc)
{
    struct direct_fixed *e = container_of(esc, struct direct_fixed, base);
    struct df_conn *dc = calloc(1, sizeof(*dc));
    const char *name = cc->target.host;

    if (!dc) {
        cc->reason = TR_INTERNAL_SERVER_ERROR;
        cc->http_status = 503;
        cc->error = "out of memory";
        return -1;
    }
    dc->cc = cc;
    dc->e = e;
    dc->w = cc->w;
    for (int i = 0; i < DF_MAX_PARALLEL; i++)
        dc->att[i].fd = -1;
    dc->max_tries = 1 + e->tcp_connect.max_retry;
    dc->pref = e->strategy.query == RQ_IPV6_FIRST || e->strategy.query == RQ_IPV6_ONLY;
    ev_timer_init(&dc->delay, on_delay, 0., 0.);
    cc->priv = dc;
    cc->cancel = df_cancel;

    if (cc->target.kind == HOST_IP) {
        if ((cc->target.ip.family == AF_INET && e->no_ipv4) ||
            (cc->target.ip.family == AF_INET6 && e->no_ipv6)) {
            dc_free(dc);
            cc->reason = TR_UPSTREAM_NOT_CONNECTED;
            cc->http_status = 523;
            cc->error = "address family disabled on this escaper";
            return -1;
        }
        add_addrs(dc, fam_idx(cc->target.ip.family), &cc->target.ip, 1);
        return defer_start(dc);
    }

    const struct resolve_redirect_rule *rr = redirect_find(&e->redirect, name);
    if (rr && !rr->to_host) {
        for (size_t i = 0; i < rr->nips; i++)
            add_addrs(dc, fam_idx(rr->ips[i].family), &rr->ips[i], 1);
        return defer_start(dc);
    }
    if (rr)
        name = rr->to_host;

    bool want4 = !e->no_ipv4 && e->strategy.query != RQ_IPV6_ONLY;
    bool want6 = !e->no_ipv6 && e->strategy.query != RQ_IPV4_ONLY;
    if (!want4 && !want6) {
        dc->resolve_err = RESOLVE_E_DENIED;
        return defer_start(dc);
    }
    if (!want4 || !want6)
        dc->pref = want6;
    for (int fi = 0; fi < 2; fi++) {
        if (!(fi ? want6 : want4))
            continue;
        dc->asked[fi] = true;
        dc->job[fi] = resolve_start(e->resolver, dc->w, name, fi ? AF_INET6 : AF_INET, on_resolved, dc);
        if (!dc->job[fi]) {
            dc_free(dc);
            cc->reason = TR_INTERNAL_RESOLVER_ERROR;
            cc->http_status = 503;
            cc->error = "resolver unavailable";
            return -1;
        }
    }
    return 0;
}

/* bind_ip: one IP or a list */
static int cp_bind_ips(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    struct direct_fixed *e = container_of((struct ip_addr **)slot, struct direct_fixed, bind_ips);
    size_t cnt = n->type == CN_SEQ ? n->n : 1;

    e->bind_ips = arena_alloc(cx->arena, cnt * sizeof(*e->bind_ips));
    if (!e->bind_ips)
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < cnt; i++)
        if (cp_ip(cx, n->type == CN_SEQ ? n->items[i] : n, &e->bind_ips[i], k) < 0)
            return -1;
    e->nbind_ips = cnt;
    return 0;
}

#define DOFF(f) offsetof(struct direct_fixed, f)
static const struct conf_key direct_fixed_keys[] = {
    {"resolver", NULL, cp_node_name, DOFF(resolver_name), NULL, 0, 0, CK_F_REQUIRED},
    {"resolve_strategy", NULL, cp_resolve_strategy, DOFF(strategy)},
    {"tcp_sock_speed_limit", CK_ALIASES("tcp_conn_speed_limit", "tcp_conn_limit", "conn_limit"),
     cp_tcp_speed_limit, DOFF(tcp_speed)},
    {"udp_sock_speed_limit", CK_ALIASES("udp_relay_speed_limit", "udp_relay_limit", "relay_limit"),
     cp_udp_speed_limit, DOFF(udp_speed)},
    {"bind_interface", NULL, cp_interface, DOFF(bind_interface)},
    {"no_ipv4", NULL, cp_bool, DOFF(no_ipv4), "false"},
    {"no_ipv6", NULL, cp_bool, DOFF(no_ipv6), "false"},
    {"tcp_connect", NULL, cp_tcp_connect, DOFF(tcp_connect), "{}"},
    {"happy_eyeballs", NULL, cp_happy_eyeballs, DOFF(he), "{}"},
    {"tcp_misc_opts", NULL, cp_tcp_misc_opts, DOFF(tcp_misc_opts)},
    {"udp_misc_opts", NULL, cp_udp_misc_opts, DOFF(udp_misc_opts)},
    {"bind_ip", NULL, cp_bind_ips, DOFF(bind_ips)},
    {"bind_foreign", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"bind_foreign_port", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"egress_network_filter", CK_ALIASES("egress_net_filter"), cp_acl_egress, DOFF(egress),
     "{default: allow}"},
    {"tcp_keepalive", NULL, cp_tcp_keepalive, DOFF(keepalive)},
    {"resolve_redirection", NULL, cp_resolve_redirection, DOFF(redirect)},
    {"enable_path_selection", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"use_proxy_protocol", NULL, cp_proxy_protocol, DOFF(use_proxy_protocol)},
    {"peer_negotiation_timeout", NULL, cp_duration, DOFF(peer_negotiation_timeout_ns), "10s"},
    {0},
};

static const struct conf_key *const df_keys[] = {escaper_base_keys, direct_fixed_keys, NULL};

static int df_link(struct escaper *esc, struct generation *g, struct conf_ctx *cx)
{
    struct direct_fixed *e = container_of(esc, struct direct_fixed, base);

    cx->key = "resolver";
    e->resolver = (struct resolver *)gen_link(g, cx, OBJ_RESOLVER, e->resolver_name);
    cx->key = NULL;
    return e->resolver ? 0 : -1;
}

const struct escaper_ops escaper_direct_fixed_ops = {
    .type = "direct_fixed",
    .keys = df_keys,
    .size = sizeof(struct direct_fixed),
    .link = df_link,
    .caps = ESC_CAP_TCP,
    .tcp_connect = df_tcp_connect,
};
