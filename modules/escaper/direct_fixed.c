/* Escaper direct_fixed: connect to the target ourselves, from this host.
 *
 * Names are resolved through the configured resolver (both families in parallel
 * unless the strategy says otherwise) and connected with Happy Eyeballs (RFC 8305):
 * the preferred family is tried first, the other one after connection_attempt_delay,
 * attempts run in parallel, the first to connect wins. Every address is checked
 * against egress_network_filter, whose implicit rules forbid loopback, link-local
 * and unspecified targets unless explicitly allowed.
 *
 * UDP associations (ESC_CAP_UDP) send datagrams from this host too; see the UDP
 * section below. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "daemon.h"
#include "escaper.h"
#include "evlog.h"
#include "gen.h"
#include "proxy_proto.h"
#include "listener.h"
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
    ev_timer second;                /* second_resolution_timeout */
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
    ev_timer_stop(loop, &dc->second);
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
        struct daemon *d = e->base.obj.gen->d;
        socklen_t plen;
        ip_to_sockaddr(&a->ip, cc->target.port, &cc->peer, &plen);
        /* our own address costs a system call: only when a log records it or the
         * dead-loop check may need it (the peer uses one of our listening ports) */
        if ((d && d->evlog && (evlog_enabled(d->evlog, EVLOG_TASK) ||
                               evlog_enabled(d->evlog, EVLOG_ESCAPE))) ||
            listen_port_is_own(e->base.obj.gen, cc->target.port)) {
            socklen_t len = sizeof(cc->bound);
            getsockname(fd, &cc->bound.sa, &len);
        }
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
        cc->sys_errno = dc->last_errno;
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

/* One of the bind_ip addresses of this family, at random; NULL when none (TCP and
 * UDP). */
static const struct ip_addr *pick_bind(const struct direct_fixed *e, struct worker *w, int family)
{
    size_t n = 0, pick;

    for (size_t i = 0; i < e->nbind_ips; i++)
        n += e->bind_ips[i].family == family;
    if (!n)
        return NULL;
    pick = (size_t)(worker_rand(w) % n);
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
    const struct ip_addr *bind_ip = pick_bind(dc->e, dc->w, a->ip.family);
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

/* The other family's answer is late: connect with what we have. */
static void on_second_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct df_conn *dc = container_of(t, struct df_conn, second);

    for (int i = 0; i < 2; i++) {
        resolve_cancel(dc->job[i]);
        dc->job[i] = NULL;
    }
    if (!attempts_running(dc))
        try_next(dc);
    else
        dc_check(dc);
}

static void start_connecting(struct df_conn *dc)
{
    if (dc->started)
        return;
    dc->started = true;
    ev_timer_stop(dc->w->loop, &dc->delay);
    if (dc->job[0] || dc->job[1]) {
        ev_timer_set(&dc->second, (double)dc->e->he.second_resolution_timeout_ns / 1e9, 0.);
        ev_timer_start(dc->w->loop, &dc->second);
    }
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
    if (!dc->job[0] && !dc->job[1])
        ev_timer_stop(dc->w->loop, &dc->second);
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
    ev_timer_init(&dc->second, on_second_timeout, 0., 0.);
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

/* ------------------------------------------------------------------ UDP
 *
 * One association is one struct df_udp: an unconnected UDP socket per family, opened
 * with the first datagram of that family (a bind_ip of that family, bind_interface,
 * udp_misc_opts, the server's udp_socket_buffer). Every destination IP passes the
 * egress filter. Domains are resolved through the resolver and its cache; the answer
 * is remembered by the association for a short while (the record TTL, at most
 * DFU_NAME_TTL_MAX) so that a stream of datagrams to one name does not wait for a
 * lookup each. Datagrams for a name being resolved wait in a queue bounded in count
 * and bytes; overflow is dropped and counted. Answers are read with recvmmsg(), a
 * bounded number of batches per event so that one busy association cannot starve
 * the others on its worker.
 *
 * UdpConnect (udp_ctx.connect): the first datagram's destination becomes the only
 * peer; the socket is connected to it, so the kernel discards answers from anyone
 * else, and every later datagram goes to it. */

#define DFU_NAMES 8                 /* names remembered or being resolved */
#define DFU_QUEUE_PKTS 16           /* datagrams waiting per name */
#define DFU_QUEUE_BYTES (64 * 1024) /* bytes waiting per association */
#define DFU_NAME_TTL_MAX 60         /* seconds a resolved name is remembered */
#define DFU_BATCH_MAX 32            /* datagrams per recvmmsg() */
#define DFU_ROUNDS 4                /* recvmmsg() calls per event at most */
#define DFU_LOG_INTERVAL_US 1000000 /* escape logs for send errors: one a second at most */

struct df_udp;

struct dfu_pkt {
    struct dfu_pkt *next;
    uint16_t port;
    size_t len;
    char data[];
};

struct dfu_name {
    char host[HOST_MAX + 1];        /* "" = free slot */
    struct df_udp *du;              /* borrowed: the owner */
    struct resolve_job *job;        /* owned: lookup in progress */
    int family;                     /* family being asked */
    bool other_tried;               /* a *_first strategy already asked its second family */
    bool resolved;                  /* ip is valid until expire_us */
    struct ip_addr ip;
    uint64_t expire_us, used_us;    /* monotonic */
    struct dfu_pkt *q, **qtail;     /* owned: datagrams waiting for the answer */
    unsigned qlen;
};

struct dfu_sock {
    ev_io io;
    int fd;                         /* -1 = not open */
    struct df_udp *du;              /* borrowed: the owner */
    bool bound_known;
    union sockaddr_any bound;
};

struct df_udp {
    struct udp_ctx *u;              /* borrowed: the server's; NULL once closed */
    struct direct_fixed *e;         /* borrowed: pinned with the task */
    struct worker *w;               /* borrowed */
    struct dfu_sock s[2];           /* [0] IPv4, [1] IPv6 */
    struct dfu_name *names;         /* owned: [DFU_NAMES], made for the first domain */
    size_t qbytes;                  /* bytes queued over all names */
    bool peer_set;                  /* connect mode: the socket is connected */
    int peer_fi;
    unsigned depth;                 /* inside our own event callbacks */
    bool closed;                    /* udp_close came while depth > 0: free on the way out */
    int last_log_err;
    uint64_t last_log_us;
};

static void dfu_queue_drop(struct df_udp *du, struct dfu_name *n)
{
    while (n->q) {
        struct dfu_pkt *p = n->q;
        n->q = p->next;
        du->qbytes -= p->len;
        if (du->u)
            du->u->dropped++;
        free(p);
    }
    n->qtail = &n->q;
    n->qlen = 0;
}

static void dfu_name_clear(struct df_udp *du, struct dfu_name *n)
{
    resolve_cancel(n->job);
    n->job = NULL;
    dfu_queue_drop(du, n);
    n->host[0] = 0;
    n->resolved = false;
}

/* Stop everything; the struct itself stays (see dfu_leave). */
static void dfu_shutdown(struct df_udp *du)
{
    for (int i = 0; i < 2; i++) {
        if (du->s[i].fd >= 0) {
            ev_io_stop(du->w->loop, &du->s[i].io);
            close(du->s[i].fd);
            du->s[i].fd = -1;
        }
    }
    if (du->names) {
        for (int i = 0; i < DFU_NAMES; i++)
            dfu_name_clear(du, &du->names[i]);
        free(du->names);
        du->names = NULL;
    }
    du->u = NULL;
}

/* Leave one of our callbacks: true when the association was closed meanwhile (du
 * is gone then). */
static bool dfu_leave(struct df_udp *du)
{
    if (--du->depth == 0 && du->closed) {
        free(du);
        return true;
    }
    return du->closed;
}

static void df_udp_close(struct udp_ctx *u)
{
    struct df_udp *du = u->priv;

    if (!du)
        return;
    u->priv = NULL;
    dfu_shutdown(du);
    if (du->depth)
        du->closed = true;
    else
        free(du);
}

/* A send error: escape log, at most one a second per association (a blocked
 * destination would otherwise log every datagram). */
static void dfu_log(struct df_udp *du, const struct upstream_addr *dst,
                    const union sockaddr_any *peer, int err)
{
    uint64_t now = now_mono_us();

    if (err == du->last_log_err && now - du->last_log_us < DFU_LOG_INTERVAL_US)
        return;
    du->last_log_err = err;
    du->last_log_us = now;
    escaper_log_udp_error(&du->e->base, du->u, "DirectFixed", dst, peer, err);
}

static void on_dfu_io(struct ev_loop *loop, ev_io *io, int revents);


/* Open the socket of family index fi. 0 / -1 (errno set). */
static int dfu_sock_open(struct df_udp *du, int fi)
{
    struct direct_fixed *e = du->e;
    struct dfu_sock *s = &du->s[fi];
    int family = fi ? AF_INET6 : AF_INET, one = 1;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (fi && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (e->bind_interface[0] && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, e->bind_interface,
                                           (socklen_t)strlen(e->bind_interface)) < 0)
        goto fail;
    const struct ip_addr *bind_ip = pick_bind(du->e, du->w, family);
    if (bind_ip) {
        union sockaddr_any bsa;
        socklen_t blen;
        ip_to_sockaddr(bind_ip, 0, &bsa, &blen);
        if (bind(fd, &bsa.sa, blen) < 0)
            goto fail;
        du->u->bind_ip = *bind_ip;
    }
    /* options are best effort, as for TCP */
    sock_set_udp_misc(fd, family, &e->udp_misc_opts);
    sock_set_buffers(fd, &du->u->sock_buf);
    s->fd = fd;
    s->du = du;
    s->bound_known = false;
    ev_io_init(&s->io, on_dfu_io, fd, EV_READ);
    ev_io_start(du->w->loop, &s->io);
    return 0;
fail: {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}
}

/* Send one datagram to ip:port. 0 = sent or dropped (counted), -1 = no socket. */
static int dfu_send_ip(struct df_udp *du, const struct ip_addr *ip, uint16_t port,
                       const void *data, size_t len, const struct upstream_addr *dst)
{
    struct direct_fixed *e = du->e;
    struct udp_ctx *u = du->u;
    struct escaper_stats_slot *st = &e->base.stats->slot[du->w->id];
    int fi = fam_idx(ip->family);
    union sockaddr_any sa;
    socklen_t salen;
    ssize_t n;

    if ((fi == 0 && e->no_ipv4) || (fi == 1 && e->no_ipv6)) {
        u->dropped++;
        return 0;
    }
    if (acl_forbids(acl_net_check(&e->egress, ip))) {
        u->dropped++;
        STAT_ADD(st->forbidden_ip, 1);
        return 0;
    }
    struct dfu_sock *s = &du->s[fi];
    if (s->fd < 0 && dfu_sock_open(du, fi) < 0) {
        u->dropped++;
        dfu_log(du, dst, NULL, errno);
        u->reason = TR_INTERNAL_SERVER_ERROR;
        u->error = "cannot open a UDP socket";
        return -1;
    }
    ip_to_sockaddr(ip, port, &sa, &salen);
    if (u->connect) {
        if (connect(s->fd, &sa.sa, salen) < 0) {
            u->dropped++;
            dfu_log(du, dst, &sa, errno);
            return 0;
        }
        du->peer_set = true;
        du->peer_fi = fi;
        u->peer = sa;
        n = send(s->fd, data, len, MSG_NOSIGNAL);
    } else {
        n = sendto(s->fd, data, len, MSG_NOSIGNAL, &sa.sa, salen);
    }
    if (n < 0) {
        int err = errno;
        u->dropped++;
        /* a full socket buffer is ordinary UDP loss, not worth a log */
        if (err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS)
            dfu_log(du, dst, &sa, err);
        return 0;
    }
    if (!s->bound_known) {
        socklen_t blen = sizeof(s->bound);
        if (getsockname(s->fd, &s->bound.sa, &blen) == 0)
            s->bound_known = true;
    }
    u->bound = s->bound;
    u->r_wr_packets++;
    u->r_wr_bytes += len;
    STAT_ADD(st->out_bytes, len);
    return 0;
}

/* Connect mode once the peer is known: every datagram goes to it. */
static int dfu_send_connected(struct df_udp *du, const void *data, size_t len,
                              const struct upstream_addr *dst)
{
    struct udp_ctx *u = du->u;
    struct dfu_sock *s = &du->s[du->peer_fi];
    ssize_t n = send(s->fd, data, len, MSG_NOSIGNAL);

    if (n < 0) {
        int err = errno;
        u->dropped++;
        if (err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS && err != ECONNREFUSED)
            dfu_log(du, dst, &u->peer, err);
        return 0;
    }
    u->r_wr_packets++;
    u->r_wr_bytes += len;
    STAT_ADD(du->e->base.stats->slot[du->w->id].out_bytes, len);
    return 0;
}

/* Families to ask for a name: the first, then (for *_first strategies) the other
 * when the first gives nothing. 0 = none. */
static int dfu_family(const struct direct_fixed *e, int after)
{
    bool want4 = !e->no_ipv4 && e->strategy.query != RQ_IPV6_ONLY;
    bool want6 = !e->no_ipv6 && e->strategy.query != RQ_IPV4_ONLY;
    bool pref6 = e->strategy.query == RQ_IPV6_FIRST || e->strategy.query == RQ_IPV6_ONLY;

    if (!after) {
        if (pref6 ? want6 : want4)
            return pref6 ? AF_INET6 : AF_INET;
        return want6 ? AF_INET6 : want4 ? AF_INET : 0;
    }
    if (after == AF_INET)
        return !pref6 && want6 ? AF_INET6 : 0;
    return pref6 && want4 ? AF_INET : 0;
}

/* One address of a lookup or redirection: an allowed one (random or first, per
 * resolve_strategy), else the first (the send path then counts it as forbidden). */
static struct ip_addr dfu_choose(struct df_udp *du, const struct ip_addr *ips, size_t n)
{
    size_t allowed[RESOLVE_MAX_ADDRS], k = 0;

    for (size_t i = 0; i < n && k < RESOLVE_MAX_ADDRS; i++)
        if (!acl_forbids(acl_net_check(&du->e->egress, &ips[i])))
            allowed[k++] = i;
    if (!k)
        return ips[0];
    if (du->e->strategy.pick == RP_FIRST || k == 1)
        return ips[allowed[0]];
    return ips[allowed[worker_rand(du->w) % k]];
}

static void dfu_flush(struct df_udp *du, struct dfu_name *n)
{
    struct upstream_addr dst;

    memset(&dst, 0, sizeof(dst));
    dst.kind = HOST_DOMAIN;
    memcpy(dst.host, n->host, sizeof(dst.host));
    while (n->q && !du->closed) {
        struct dfu_pkt *p = n->q;
        n->q = p->next;
        if (!n->q)
            n->qtail = &n->q;
        n->qlen--;
        du->qbytes -= p->len;
        dst.port = p->port;
        int rc = du->u->connect && du->peer_set
                     ? dfu_send_connected(du, p->data, p->len, &dst)
                     : dfu_send_ip(du, &n->ip, p->port, p->data, p->len, &dst);
        free(p);
        if (rc < 0) {
            dfu_queue_drop(du, n);
            du->u->on_error(du->u);
            return;
        }
    }
}

static int dfu_lookup(struct df_udp *du, struct dfu_name *n, int family);

static void on_dfu_resolved(void *arg, int family, const struct resolve_result *res)
{
    struct dfu_name *n = arg;
    struct df_udp *du = n->du;

    n->job = NULL;
    if (res->err || !res->n) {
        int next = n->other_tried ? 0 : dfu_family(du->e, family);
        n->other_tried = true;
        if (next && dfu_lookup(du, n, next) == 0)
            return;
        dfu_name_clear(du, n); /* the queue is dropped, counted */
        return;
    }
    uint32_t ttl = res->ttl ? res->ttl : 1;
    n->ip = dfu_choose(du, res->ips, res->n);
    n->resolved = true;
    n->expire_us = now_mono_us() + (uint64_t)MIN(ttl, DFU_NAME_TTL_MAX) * 1000000u;
    du->depth++;
    dfu_flush(du, n);
    dfu_leave(du);
}

static int dfu_lookup(struct df_udp *du, struct dfu_name *n, int family)
{
    n->family = family;
    n->job = resolve_start(du->e->resolver, du->w, n->host, family, on_dfu_resolved, n);
    return n->job ? 0 : -1;
}

/* The slot for a name: its own, a free one, or the least recently used one that is
 * not being resolved. NULL when all are busy resolving. */
static struct dfu_name *dfu_name_slot(struct df_udp *du, const char *host, bool *found)
{
    struct dfu_name *free_slot = NULL, *lru = NULL;

    *found = false;
    if (!du->names) {
        du->names = calloc(DFU_NAMES, sizeof(*du->names));
        if (!du->names)
            return NULL;
        for (int i = 0; i < DFU_NAMES; i++) {
            du->names[i].du = du;
            du->names[i].qtail = &du->names[i].q;
        }
    }
    for (int i = 0; i < DFU_NAMES; i++) {
        struct dfu_name *n = &du->names[i];
        if (!n->host[0]) {
            if (!free_slot)
                free_slot = n;
        } else if (!strcmp(n->host, host)) {
            *found = true;
            return n;
        } else if (!n->job && (!lru || n->used_us < lru->used_us)) {
            lru = n;
        }
    }
    if (free_slot)
        return free_slot;
    if (lru)
        dfu_name_clear(du, lru);
    return lru;
}

static void dfu_enqueue(struct df_udp *du, struct dfu_name *n, uint16_t port, const void *data,
                        size_t len)
{
    struct dfu_pkt *p;

    if (n->qlen >= DFU_QUEUE_PKTS || du->qbytes + len > DFU_QUEUE_BYTES ||
        !(p = malloc(sizeof(*p) + len))) {
        du->u->dropped++;
        du->u->queue_dropped++;
        return;
    }
    p->next = NULL;
    p->port = port;
    p->len = len;
    memcpy(p->data, data, len);
    *n->qtail = p;
    n->qtail = &p->next;
    n->qlen++;
    du->qbytes += len;
}

static int df_udp_sendto(struct udp_ctx *u, const struct upstream_addr *dst, const void *data,
                         size_t len)
{
    struct df_udp *du = u->priv;
    struct direct_fixed *e = du->e;
    const char *name = dst->host;
    bool found;

    if (u->connect && du->peer_set)
        return dfu_send_connected(du, data, len, dst);
    if (dst->kind == HOST_IP)
        return dfu_send_ip(du, &dst->ip, dst->port, data, len, dst);

    const struct resolve_redirect_rule *rr = redirect_find(&e->redirect, name);
    if (rr && !rr->to_host) {
        if (!rr->nips) {
            u->dropped++;
            return 0;
        }
        struct ip_addr ip = dfu_choose(du, rr->ips, rr->nips);
        return dfu_send_ip(du, &ip, dst->port, data, len, dst);
    }
    if (rr)
        name = rr->to_host;

    uint64_t now = now_mono_us();
    struct dfu_name *n = dfu_name_slot(du, name, &found);
    if (!n) {
        u->dropped++;
        u->queue_dropped++;
        return 0;
    }
    if (found && n->resolved && now < n->expire_us) {
        n->used_us = now;
        return dfu_send_ip(du, &n->ip, dst->port, data, len, dst);
    }
    if (!found || !n->job) {
        int family = dfu_family(e, 0);
        if (!family) {
            u->dropped++;
            return 0;
        }
        snprintf(n->host, sizeof(n->host), "%s", name);
        n->resolved = false;
        n->other_tried = false;
        n->used_us = now;
        if (dfu_lookup(du, n, family) < 0) {
            n->host[0] = 0;
            u->reason = TR_INTERNAL_RESOLVER_ERROR;
            u->error = "resolver unavailable";
            return -1;
        }
    }
    dfu_enqueue(du, n, dst->port, data, len);
    return 0;
}

/* ICMP errors a connected UDP socket reports on receive: the peer's business, not a
 * reason to end the association. */
static bool dfu_soft_error(int err)
{
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH ||
           err == EHOSTDOWN || err == ENETDOWN || err == EMSGSIZE || err == ETIMEDOUT ||
           err == EPROTO;
}

static void on_dfu_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct dfu_sock *s = container_of(io, struct dfu_sock, io);
    struct df_udp *du = s->du;
    struct udp_ctx *u = du->u;
    struct escaper_stats_slot *st = &du->e->base.stats->slot[du->w->id];
    size_t psize = u->packet_size ? u->packet_size : 65535;
    unsigned batch = u->batch ? MIN(u->batch, DFU_BATCH_MAX) : 1;
    struct buf *bufs[DFU_BATCH_MAX];
    struct mmsghdr m[DFU_BATCH_MAX];
    struct iovec iov[DFU_BATCH_MAX];
    union sockaddr_any from[DFU_BATCH_MAX];
    uint64_t total = 0, yield = u->yield_size ? u->yield_size : (1 << 20);
    unsigned nb = 0;

    for (; nb < batch; nb++) {
        bufs[nb] = buf_get(du->w->bufs, MAX(psize, (size_t)BUF_DEFAULT_SIZE));
        if (!bufs[nb])
            break;
    }
    if (!nb)
        return; /* out of memory: level-triggered, we come back */
    du->depth++;
    for (int round = 0; round < DFU_ROUNDS && total < yield; round++) {
        for (unsigned i = 0; i < nb; i++) {
            iov[i].iov_base = bufs[i]->data;
            iov[i].iov_len = psize;
            memset(&m[i], 0, sizeof(m[i]));
            m[i].msg_hdr.msg_name = &from[i];
            m[i].msg_hdr.msg_namelen = sizeof(from[i]);
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(s->fd, m, nb, MSG_DONTWAIT, NULL);
        if (got < 0) {
            int err = errno;
            if (err == EINTR || dfu_soft_error(err))
                continue;
            if (err != EAGAIN && err != EWOULDBLOCK) {
                ev_io_stop(loop, io);
                u->reason = TR_UPSTREAM_READ_FAILED;
                u->error = "UDP receive failed";
                u->on_error(u);
            }
            break;
        }
        for (int i = 0; i < got; i++) {
            size_t len = m[i].msg_len;
            if (m[i].msg_hdr.msg_flags & MSG_TRUNC) {
                u->dropped++; /* longer than udp_relay_packet_size */
                continue;
            }
            u->r_rd_packets++;
            u->r_rd_bytes += len;
            total += len;
            STAT_ADD(st->in_bytes, len);
            u->on_recv(u, &from[i], bufs[i]->data, len);
            if (du->closed)
                goto out;
        }
        if ((unsigned)got < nb)
            break;
    }
out:
    for (unsigned i = 0; i < nb; i++)
        buf_put(du->w->bufs, bufs[i]);
    dfu_leave(du);
}

static int df_udp_open(struct escaper *esc, struct udp_ctx *u)
{
    struct direct_fixed *e = container_of(esc, struct direct_fixed, base);
    struct df_udp *du;

    if (e->no_ipv4 && e->no_ipv6) {
        u->reason = TR_ESCAPER_NOT_USABLE;
        u->error = "both address families disabled on this escaper";
        return -1;
    }
    du = calloc(1, sizeof(*du));
    if (!du) {
        u->reason = TR_INTERNAL_SERVER_ERROR;
        u->error = "out of memory";
        return -1;
    }
    du->u = u;
    du->e = e;
    du->w = u->w;
    du->s[0].fd = du->s[1].fd = -1;
    u->priv = du;
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
    .caps = ESC_CAP_TCP | ESC_CAP_UDP,
    .tcp_connect = df_tcp_connect,
    .udp_open = df_udp_open,
    .udp_sendto = df_udp_sendto,
    .udp_close = df_udp_close,
};
