/* Server socks_proxy: SOCKS4, SOCKS4a and SOCKS5 (RFC 1928) on one listener; the
 * first byte tells the version.
 *
 * A client connection (struct sp_conn) negotiates (method selection, then the
 * request; everything within negotiation_timeout), then becomes one task:
 *   - CONNECT: the server's escaper connects to the target, the reply goes out through
 *     the relay and the relay tunnels both ways with half-close (task TcpConnect);
 *   - UDP ASSOCIATE (SOCKS5): a UDP socket is bound for the client, datagrams go
 *     through the escaper's UDP path and back (task UdpAssociate, or UdpConnect in the
 *     simplified mode, see the UDP section); the association lives as long as the TCP
 *     connection, idles out or times out before the first datagram;
 *   - BIND: refused with "command not supported".
 *
 * Only the "no authentication" method is offered until user groups exist; the RFC 1929
 * subnegotiation has its state (SC_AUTH) and only the user check is missing.
 *
 * Reply codes for a failed CONNECT follow g3proxy: forbidden by a filter or the egress
 * rules 0x02, refused/reset 0x05, network unreachable 0x03, host unreachable or name
 * not resolved 0x04, timeout 0x09 (not in RFC 1928: "unassigned"; g3proxy and its
 * clients read it as "connection timed out"; others report an unknown error), anything
 * else 0x01. SOCKS4 knows only granted (0x5A) and rejected (0x5B).
 *
 * Lifetimes: the connection pins its generation (its server object stays valid across
 * reloads while it lives) and is listed on the worker so offline/quit can close it;
 * its task has its own pin. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "escaper.h"
#include "evlog.h"
#include "gen.h"
#include "listener.h"
#include "log.h"
#include "registry.h"
#include "relay.h"
#include "server.h"
#include "sockopt.h"
#include "socks_proto.h"
#include "stats.h"
#include "task.h"
#include "worker.h"

#define SP_LINGER_TIME 2.0          /* seconds to drain the client after a last reply */
#define SP_LINGER_MAX (64 * 1024)   /* bytes drained at most */
#define SP_UDP_BATCH_MAX 32         /* datagrams per recvmmsg() */
#define SP_UDP_ROUNDS 4             /* recvmmsg() calls per event at most */
#define SP_PORT_TRIES 64            /* ports tried in udp_bind_port_range */

struct sp_ip_list {
    struct ip_addr *v;              /* arena */
    size_t n;
};

struct sp_echo_map {
    struct ip_addr from, to;
};

/* transmute_udp_echo_ip: off; on (every bound IP is advertised as unspecified); or a
 * map bound IP -> advertised IP (unmapped IPs are advertised as unspecified too) */
struct sp_transmute {
    bool on;
    size_t n;
    struct sp_echo_map *v;          /* arena */
};

struct socks_proxy {
    struct server base;
    bool use_udp_associate;
    uint64_t negotiation_timeout_ns;
    uint64_t udp_client_initial_timeout_ns;
    struct sp_ip_list udp_bind4, udp_bind6;
    struct port_range udp_port_range;   /* lo == 0: any port */
    struct sock_buffer udp_socket_buffer;
    struct sp_transmute transmute;
};

enum sc_state {
    SC_GREETING,                    /* first bytes: a SOCKS4 request or a SOCKS5 greeting */
    SC_AUTH,                        /* SOCKS5 username/password subnegotiation */
    SC_REQUEST,                     /* SOCKS5 request */
    SC_CONNECTING,                  /* the escaper connects */
    SC_RELAY,                       /* the relay owns both connections */
    SC_UDP,                         /* datagrams move; the TCP connection is watched */
    SC_CLOSING,                     /* writing a last reply, then lingering */
};

enum { ST_CREATED = 0, ST_PREPARING, ST_CONNECTING, ST_CONNECTED, ST_REPLYING, ST_RELAYING,
       ST_FINISHED };
static const char *const stage_names[] = {"Created",  "Preparing", "Connecting", "Connected",
                                          "Replying", "Relaying",  "Finished"};

struct sp_conn;
struct sp_rate {
    uint64_t win, bytes, packets;
};

/* UDP ASSOCIATE state (see the UDP section) */
struct sp_udp {
    struct sp_conn *sc;             /* borrowed: the owner */
    struct udp_ctx u;
    bool u_open;
    ev_io io;                       /* the client-side UDP socket */
    ev_timer limit_timer;           /* upload limit: resume reading */
    int fd;                         /* -1 = none */
    union sockaddr_any bound;       /* udp_server_addr */
    union sockaddr_any client;      /* udp_client_addr, once locked */
    struct ip_addr client_ip;       /* datagrams are accepted from this IP only */
    uint16_t client_port;           /* and this port when not 0 */
    bool locked;                    /* the first datagram came: client is known */
    bool connect_mode;              /* UdpConnect */
    bool have_peer;
    struct upstream_addr peer;      /* initial_peer (associate) / upstream (connect) */
    uint64_t idle_mark;
    uint32_t idle_count;
    uint64_t c_dropped;             /* client datagrams dropped by us */
    struct sp_rate up, down;        /* udp_sock_speed_limit windows */
};

struct sp_conn {
    struct wconn wc;                /* in worker->conns */
    struct task t;                  /* valid while task_on */
    struct socks_proxy *srv;        /* borrowed: pinned */
    struct worker *w;               /* borrowed */
    struct gen_pin *pin;
    struct conn c;                  /* client */
    union sockaddr_any peer, local;
    ev_io io;                       /* client, outside the relay */
    ev_timer timer;                 /* negotiation, linger, first datagram / idle checks */
    uint8_t state;                  /* enum sc_state */
    uint8_t stage;                  /* ST_*: for logs */
    uint8_t version;                /* 4 or 5, once known */
    uint8_t cmd;                    /* SOCKS_CMD_* of the request */
    bool task_on;
    bool full;                      /* over max_connections */
    bool lingering;                 /* SC_CLOSING: the reply is out, draining */
    struct buf *in;                 /* client bytes not consumed yet; owned (pool) */
    uint8_t out[32];                /* small replies not written yet */
    uint8_t outlen, outoff;
    uint32_t lingered;
    struct connect_ctx cc;
    struct conn up;                 /* upstream */
    bool up_open;
    struct relay relay;
    bool relay_on;
    uint64_t early_bytes;           /* client bytes that came with the request */
    uint64_t ready_us;
    char upstream_str[HOST_MAX + 8];
    struct sp_udp *udp;             /* owned: UDP ASSOCIATE state */
};

static void sc_end(struct sp_conn *sc, enum task_reason reason);
static void sc_fail(struct sp_conn *sc, enum task_reason reason, uint8_t rep);
static void sc_io_update(struct sp_conn *sc);
static void sc_read(struct sp_conn *sc);
static void udp_free(struct sp_conn *sc);
static void udp_log_fields(struct sp_conn *sc, struct evrec *r);
static void udp_account(struct sp_conn *sc, struct server_stats_slot *st);
static void udp_start(struct sp_conn *sc, const struct upstream_addr *target);
static void udp_tcp_read(struct sp_conn *sc);

static struct socks_proxy *sp_of(struct server *s)
{
    return container_of(s, struct socks_proxy, base);
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* ------------------------------------------------------------ pure helpers */

/* The SOCKS5 REP code for a failed connect (g3proxy's mapping, see the top). */
static uint8_t rep_for_connect(enum task_reason reason, int http_status, int sys_errno)
{
    switch (reason) {
    case TR_FORBIDDEN_BY_RULE:
        return SOCKS5_REP_NOT_ALLOWED;
    case TR_UPSTREAM_NOT_RESOLVED:
        return SOCKS5_REP_HOST_UNREACHABLE;
    case TR_UPSTREAM_NOT_CONNECTED:
        switch (sys_errno) {
        case ECONNREFUSED:
        case ECONNRESET:
            return SOCKS5_REP_CONN_REFUSED;
        case ETIMEDOUT:
            return SOCKS5_REP_CONN_TIMEOUT;
        case ENETUNREACH:
        case ENETDOWN:
            return SOCKS5_REP_NET_UNREACHABLE;
        case EHOSTUNREACH:
        case EHOSTDOWN:
            return SOCKS5_REP_HOST_UNREACHABLE;
        }
        switch (http_status) {
        case 521:
            return SOCKS5_REP_CONN_REFUSED;
        case 522:
        case 504:
            return SOCKS5_REP_CONN_TIMEOUT;
        case 523:
            return SOCKS5_REP_NET_UNREACHABLE;
        case 530:
            return SOCKS5_REP_HOST_UNREACHABLE;
        }
        return SOCKS5_REP_GENERAL_FAILURE;
    case TR_UPSTREAM_APP_TIMEOUT:
        return SOCKS5_REP_CONN_TIMEOUT;
    default:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
}

/* "host:port", "[v6]:port" */
static void target_str(const struct upstream_addr *a, char *buf, size_t len)
{
    snprintf(buf, len, a->kind == HOST_IP && a->ip.family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             a->host, a->port);
}

/* An IPv4-mapped IPv6 address as IPv4 (dual-stack sockets report IPv4 peers so). */
static void ip_unmap(struct ip_addr *ip)
{
    if (ip->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&ip->v6)) {
        struct in_addr v4;
        memcpy(&v4, ip->b + 12, 4);
        memset(ip, 0, sizeof(*ip));
        ip->family = AF_INET;
        ip->v4 = v4;
    }
}

static bool ip_eq(const struct ip_addr *a, const struct ip_addr *b)
{
    return a->family == b->family && !memcmp(a->b, b->b, a->family == AF_INET ? 4 : 16);
}

static bool ip_unspecified(const struct ip_addr *ip)
{
    static const uint8_t zero[16];
    return !ip->family || !memcmp(ip->b, zero, ip->family == AF_INET ? 4 : 16);
}

/* Is a datagram from `from` the client's? Its IP must be the TCP client's; its port
 * the one the request declared, when it declared one. */
static bool udp_from_client(const struct ip_addr *client_ip, uint16_t client_port,
                            const union sockaddr_any *from)
{
    struct ip_addr ip;
    uint16_t port;

    sockaddr_to_ip(from, &ip, &port);
    ip_unmap(&ip);
    return ip_eq(&ip, client_ip) && (!client_port || port == client_port);
}

/* The address to put in the UDP ASSOCIATE reply for a socket bound to `bound`. */
static void udp_echo_addr(const struct sp_transmute *tm, const union sockaddr_any *bound,
                          union sockaddr_any *out)
{
    struct ip_addr ip, adv;
    uint16_t port;
    socklen_t len;

    *out = *bound;
    if (!tm->on)
        return;
    sockaddr_to_ip(bound, &ip, &port);
    memset(&adv, 0, sizeof(adv));
    adv.family = ip.family; /* unspecified: "the address you reached me on" */
    for (size_t i = 0; i < tm->n; i++)
        if (ip_eq(&tm->v[i].from, &ip)) {
            adv = tm->v[i].to;
            break;
        }
    ip_to_sockaddr(&adv, port, out, &len);
}

/* The i-th port to try in [lo, hi] starting from a random offset. */
static uint16_t port_in_range(const struct port_range *r, uint64_t rnd, unsigned i)
{
    uint32_t span = (uint32_t)r->hi - r->lo + 1;
    return (uint16_t)(r->lo + (uint32_t)((rnd + i) % span));
}

static bool same_target(const struct upstream_addr *a, const struct upstream_addr *b)
{
    if (a->kind != b->kind || a->port != b->port)
        return false;
    return a->kind == HOST_IP ? ip_eq(&a->ip, &b->ip) : !strcmp(a->host, b->host);
}

/* ------------------------------------------------------------- task logs */

static void sc_log(struct sp_conn *sc)
{
    struct daemon *d = sc->srv->base.obj.gen->d;
    struct evrec r;
    const char *type = sc->cmd != SOCKS_CMD_UDP_ASSOCIATE ? "TcpConnect"
                       : sc->srv->use_udp_associate   ? "UdpAssociate"
                                                      : "UdpConnect";
    struct escaper *used = sc->udp ? sc->udp->u.used : sc->cc.used;

    if (!d || !d->evlog || !evlog_enabled(d->evlog, EVLOG_TASK))
        return;
    if (sc->cmd == SOCKS_CMD_UDP_ASSOCIATE) {
        task_log_begin(&r, &sc->t, "SocksProxy", type, stage_names[sc->stage],
                       used ? used->obj.name : NULL, sc->ready_us);
        udp_log_fields(sc, &r);
        evlog_emit(d->evlog, &r);
        return;
    }
    task_log_begin(&r, &sc->t, "SocksProxy", type, stage_names[sc->stage],
                   used ? used->obj.name : NULL, sc->ready_us);
    evrec_addr(&r, "server_addr", &sc->local);
    evrec_addr(&r, "client_addr", &sc->peer);
    if (sc->upstream_str[0])
        evrec_str(&r, "upstream", sc->upstream_str);
    if (sc->cc.bind_ip.family)
        evrec_ip(&r, "next_bind_ip", &sc->cc.bind_ip);
    if (sc->cc.bound.sa.sa_family)
        evrec_addr(&r, "next_bound_addr", &sc->cc.bound);
    if (sc->cc.peer.sa.sa_family)
        evrec_addr(&r, "next_peer_addr", &sc->cc.peer);
    evrec_u64(&r, "tcp_connect_tries", sc->cc.tries);
    evrec_dur(&r, "tcp_connect_spend", sc->cc.spend_us * 1000);
    evrec_u64(&r, "c_rd_bytes", sc->early_bytes + sc->relay.dir[0].read_bytes);
    evrec_u64(&r, "c_wr_bytes", sc->relay.dir[1].bytes);
    evrec_u64(&r, "r_rd_bytes", sc->relay.dir[1].read_bytes);
    evrec_u64(&r, "r_wr_bytes", sc->relay.dir[0].bytes);
    evlog_emit(d->evlog, &r);
}

static void sc_account(struct sp_conn *sc)
{
    struct server_stats_slot *st = &sc->srv->base.stats->slot[sc->w->id];
    struct escaper_stats_slot *es;

    if (sc->udp) {
        udp_account(sc, st);
        return;
    }
    STAT_ADD(st->in_bytes, sc->early_bytes + sc->relay.dir[0].read_bytes);
    STAT_ADD(st->out_bytes, sc->relay.dir[1].bytes);
    if (sc->cc.used) {
        es = &sc->cc.used->stats->slot[sc->w->id];
        STAT_ADD(es->in_bytes, sc->relay.dir[1].read_bytes);
        STAT_ADD(es->out_bytes, sc->relay.dir[0].bytes);
    }
}

/* ------------------------------------------------------- ending things */

/* Give back what the task holds upstream (the connection stays). */
static void sc_release_upstream(struct sp_conn *sc)
{
    escaper_connect_cancel(&sc->cc);
    if (sc->cc.fd >= 0) {
        close(sc->cc.fd);
        sc->cc.fd = -1;
    }
    if (sc->relay_on) {
        relay_stop(&sc->relay);
        sc->relay_on = false;
    }
    if (sc->up_open) {
        conn_close(&sc->up);
        sc->up_open = false;
    }
    udp_free(sc);
}

/* The task ends: one log record, counters, unregistered. Idempotent. */
static void sc_task_end(struct sp_conn *sc, enum task_reason reason)
{
    if (!sc->task_on)
        return;
    task_set_reason(&sc->t, reason);
    sc->stage = ST_FINISHED;
    sc_log(sc);
    sc_account(sc);
    sc->task_on = false;
    task_finish(&sc->t);
}

static void sc_free(struct sp_conn *sc)
{
    struct worker *w = sc->w;
    struct server *s = &sc->srv->base;
    struct gen_pin *pin = sc->pin;

    sc_release_upstream(sc);
    ev_io_stop(w->loop, &sc->io);
    ev_timer_stop(w->loop, &sc->timer);
    conn_close(&sc->c);
    buf_put(w->bufs, sc->in);
    worker_conn_del(&sc->wc);
    server_conn_done(s);
    free(sc);
    worker_unpin(w, pin); /* may free the server: last */
}

/* End the task (if any) with reason and close the connection now. */
static void sc_end(struct sp_conn *sc, enum task_reason reason)
{
    sc_task_end(sc, reason); /* logs while the relay and UDP counters are still there */
    sc_free(sc);
}

static void sc_timer_set(struct sp_conn *sc, double after, double repeat)
{
    ev_timer_stop(sc->w->loop, &sc->timer);
    ev_timer_set(&sc->timer, after, repeat);
    ev_timer_start(sc->w->loop, &sc->timer);
}

/* Queue a small reply (at most sizeof(sc->out) bytes in all). */
static void sc_out(struct sp_conn *sc, const uint8_t *p, int n)
{
    if (n <= 0 || (size_t)sc->outlen + (size_t)n > sizeof(sc->out))
        return; /* cannot happen: our replies are at most 22 bytes */
    if (sc->outoff) {
        memmove(sc->out, sc->out + sc->outoff, sc->outlen - sc->outoff);
        sc->outlen = (uint8_t)(sc->outlen - sc->outoff);
        sc->outoff = 0;
    }
    memcpy(sc->out + sc->outlen, p, (size_t)n);
    sc->outlen = (uint8_t)(sc->outlen + n);
}

/* Write queued replies: 0 when all out (or would block), -1 on a hard error. */
static int sc_flush(struct sp_conn *sc)
{
    while (sc->outoff < sc->outlen) {
        ssize_t w = conn_send(&sc->c, sc->out + sc->outoff, (size_t)(sc->outlen - sc->outoff));
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w <= 0)
            return -1;
        sc->outoff = (uint8_t)(sc->outoff + w);
    }
    sc->outoff = sc->outlen = 0;
    return 0;
}

/* Closing a socket with unread input makes the kernel send a reset, which can destroy
 * our last reply before the client reads it: stop sending, then read and drop what
 * the client still sends, for a bounded time and amount. */
static void sc_linger(struct sp_conn *sc)
{
    char sink[4096];

    for (;;) {
        ssize_t n = conn_recv(&sc->c, sink, sizeof(sink));
        if (n < 0 && errno == EAGAIN) {
            sc_io_update(sc);
            return;
        }
        if (n <= 0 || (sc->lingered += (uint32_t)n) > SP_LINGER_MAX)
            break;
    }
    sc_free(sc);
}

static void sc_closing_step(struct sp_conn *sc)
{
    if (!sc->lingering) {
        if (sc_flush(sc) < 0) {
            sc_free(sc);
            return;
        }
        if (sc->outlen) {
            sc_io_update(sc);
            return;
        }
        conn_shutw(&sc->c);
        sc->lingering = true;
    }
    sc_linger(sc);
}

/* Answer `rep` (SOCKS5 code; SOCKS4 gets "rejected") and close after it. */
static void sc_close_with(struct sp_conn *sc, uint8_t rep5)
{
    uint8_t b[SOCKS5_REPLY_MAX];
    int n = sc->version == SOCKS4_VERSION ? socks4_build_reply(SOCKS4_REP_REJECTED, NULL, b, sizeof(b))
                                          : socks5_build_reply(rep5, NULL, b, sizeof(b));

    sc_release_upstream(sc);
    sc_out(sc, b, n);
    sc->state = SC_CLOSING;
    sc_timer_set(sc, SP_LINGER_TIME, 0.);
    sc_closing_step(sc);
}

/* The task failed before it relayed anything: log it, answer, close. */
static void sc_fail(struct sp_conn *sc, enum task_reason reason, uint8_t rep)
{
    sc_task_end(sc, reason); /* before the upstream side and its counters go */
    sc_close_with(sc, rep);
}

static void sc_task_kill(struct task *t, enum task_reason reason)
{
    sc_end(container_of(t, struct sp_conn, t), reason);
}

static void sc_wkill(struct wconn *wc, bool idle_only)
{
    struct sp_conn *sc = container_of(wc, struct sp_conn, wc);

    /* offline: a connection that has not said anything yet is idle; one that is
     * negotiating finishes (negotiation_timeout bounds it), a task runs on */
    if (idle_only && !(sc->state == SC_GREETING && !(sc->in && buf_len(sc->in))) &&
        sc->state != SC_CLOSING)
        return;
    sc_end(sc, TR_CANCELED_AS_SERVER_QUIT);
}

static void on_sc_timer(struct ev_loop *loop, ev_timer *t, int revents);

/* ------------------------------------------------------------ CONNECT */

static int sc_relay_dir_done(struct relay *r, int d)
{
    return RELAY_GO; /* two streams: the relay ends the tunnel itself */
}

static void sc_relay_end(struct relay *r, enum task_reason reason)
{
    struct sp_conn *sc = r->owner;

    sc->relay_on = false; /* the relay stopped itself */
    sc_end(sc, reason);
}

/* Connected: the reply and then the tunnel, both through the relay. */
static void sc_relay_start(struct sp_conn *sc)
{
    struct socks_proxy *sp = sc->srv;
    struct relay_conf rc;
    struct relay *r = &sc->relay;
    uint8_t rep[SOCKS5_REPLY_MAX];
    int n = sc->version == SOCKS4_VERSION
                ? socks4_build_reply(SOCKS4_REP_GRANTED, &sc->cc.bound, rep, sizeof(rep))
                : socks5_build_reply(SOCKS5_REP_SUCCEEDED, &sc->cc.bound, rep, sizeof(rep));
    struct buf *b = buf_get(sc->w->bufs, BUF_SMALL_SIZE);

    if (!b || n < 0) {
        buf_put(sc->w->bufs, b);
        sc_fail(sc, TR_INTERNAL_SERVER_ERROR, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    /* replies not written yet go first */
    memcpy(b->data, sc->out + sc->outoff, (size_t)(sc->outlen - sc->outoff));
    b->tail = (uint32_t)(sc->outlen - sc->outoff);
    sc->outlen = sc->outoff = 0;
    memcpy(buf_end(b), rep, (size_t)n);
    b->tail += (uint32_t)n;

    ev_io_stop(sc->w->loop, &sc->io);
    ev_timer_stop(sc->w->loop, &sc->timer);
    server_relay_conf(&sp->base, &rc);
    relay_init(r, sc->w, &sc->c, &sc->up, &rc, sc);
    r->on_dir_done = sc_relay_dir_done;
    r->on_end = sc_relay_end;
    sc->relay_on = true;
    sc->state = SC_RELAY;
    sc->stage = ST_RELAYING;
    relay_dir_set(r, 1, RM_STREAM, 0, NULL, NULL, b, buf_len(b));
    /* bytes the client sent right after its request go upstream first */
    struct buf *early = sc->in && buf_len(sc->in) ? sc->in : NULL;
    if (early) {
        sc->in = NULL;
        sc->early_bytes = buf_len(early);
    } else {
        /* an idle tunnel holds no buffer */
        buf_put(sc->w->bufs, sc->in);
        sc->in = NULL;
    }
    relay_dir_set(r, 0, RM_STREAM, 0, NULL, NULL, early, early ? buf_len(early) : 0);
    relay_kick(r);
}

static void on_connected(struct connect_ctx *cc, bool ok)
{
    struct sp_conn *sc = container_of(cc, struct sp_conn, cc);

    if (!ok) {
        sc_fail(sc, cc->reason, rep_for_connect(cc->reason, cc->http_status, cc->sys_errno));
        return;
    }
    /* dead loop: the target turned out to be one of our own listeners */
    if (listen_is_own(sc->srv->base.obj.gen, &cc->peer, &cc->bound)) {
        sc_fail(sc, TR_FORBIDDEN_BY_RULE, SOCKS5_REP_NOT_ALLOWED);
        return;
    }
    conn_init(&sc->up, cc->fd);
    cc->fd = -1;
    sc->up_open = true;
    sc->ready_us = now_mono_us();
    sc->stage = ST_CONNECTED;
    sc_relay_start(sc);
}

static void sc_connect(struct sp_conn *sc, const struct upstream_addr *target)
{
    struct socks_proxy *sp = sc->srv;

    sc->cc.target = *target;
    if (!target->port) {
        sc_fail(sc, TR_INVALID_CLIENT_PROTOCOL, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    sc->stage = ST_CONNECTING;
    sc->state = SC_CONNECTING;
    sc->cc.task = &sc->t;
    sc->cc.w = sc->w;
    sc->cc.client = &sc->peer;
    sc->cc.server = &sc->local;
    sc->cc.on_done = on_connected;
    sc_io_update(sc);
    if (escaper_tcp_connect(sp->base.escaper, &sc->cc) < 0)
        sc_fail(sc, sc->cc.reason,
                rep_for_connect(sc->cc.reason, sc->cc.http_status, sc->cc.sys_errno));
}

/* ------------------------------------------------------------ requests */

/* Destination filters and dead-loop detection on an IP target: true when refused
 * (the task failed). */
static bool sc_target_refused(struct sp_conn *sc, const struct upstream_addr *target)
{
    struct socks_proxy *sp = sc->srv;
    struct server_stats_slot *st = &sp->base.stats->slot[sc->w->id];

    if (acl_forbids(acl_ports_check(&sp->base.dst_port_filter, target->port)) ||
        acl_forbids(acl_dst_host_check(&sp->base.dst_host_filter, target))) {
        STAT_ADD(st->forbidden_dest, 1);
        sc_fail(sc, TR_FORBIDDEN_BY_RULE, SOCKS5_REP_NOT_ALLOWED);
        return true;
    }
    if (target->kind == HOST_IP) {
        union sockaddr_any sa;
        socklen_t len;
        ip_to_sockaddr(&target->ip, target->port, &sa, &len);
        if (listen_is_own(sp->base.obj.gen, &sa, &sc->local)) {
            sc_fail(sc, TR_FORBIDDEN_BY_RULE, SOCKS5_REP_NOT_ALLOWED);
            return true;
        }
    }
    return false;
}

/* A parsed request (its bytes are consumed): start the task. */
static void sc_request(struct sp_conn *sc, uint8_t cmd, const struct upstream_addr *target)
{
    struct socks_proxy *sp = sc->srv;

    ev_timer_stop(sc->w->loop, &sc->timer); /* negotiation is over */
    sc->cmd = cmd;
    sc->t.kill = sc_task_kill;
    task_start(&sc->t, sc->w, &sp->base);
    sc->task_on = true;
    sc->stage = ST_CREATED;
    if (cmd != SOCKS_CMD_UDP_ASSOCIATE)
        target_str(target, sc->upstream_str, sizeof(sc->upstream_str));

    if (sc->full) {
        sc_fail(sc, TR_UPSTREAM_NOT_AVAILABLE, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    switch (cmd) {
    case SOCKS_CMD_CONNECT:
        if (!sc_target_refused(sc, target))
            sc_connect(sc, target);
        return;
    case SOCKS_CMD_UDP_ASSOCIATE:
        udp_start(sc, target);
        return;
    default:
        sc_fail(sc, TR_UNIMPLEMENTED_PROTOCOL, SOCKS5_REP_CMD_NOT_SUPPORTED);
        return;
    }
}

/* The method we take among those offered: only "no authentication" until user groups
 * exist; with a user group it will be username/password only. */
static uint8_t sc_choose_method(const struct sp_conn *sc, uint8_t offered)
{
    if (sc->srv->base.user_group)
        return offered & SOCKS5_METHOD_F_USERPASS ? SOCKS5_METHOD_USERPASS
                                                  : SOCKS5_METHOD_NO_ACCEPTABLE;
    return offered & SOCKS5_METHOD_F_NONE ? SOCKS5_METHOD_NONE : SOCKS5_METHOD_NO_ACCEPTABLE;
}

/* RFC 1929 credentials: no user group module exists yet, so nobody passes. */
static bool sc_check_user(struct sp_conn *sc, const struct socks5_auth *a)
{
    return false;
}

enum { P_MORE, P_AGAIN, P_STOP, P_GONE };

/* Parse what is buffered for the current state. P_MORE: read more; P_AGAIN: a message
 * was consumed, parse the rest; P_STOP: a task took over or the connection is closing;
 * P_GONE: sc was freed. */
static int sc_parse(struct sp_conn *sc)
{
    const uint8_t *p = sc->in ? (const uint8_t *)buf_ptr(sc->in) : NULL;
    size_t len = sc->in ? buf_len(sc->in) : 0;
    uint8_t b[SOCKS5_REPLY_MAX];
    int rc;

    switch (sc->state) {
    case SC_GREETING: {
        rc = socks_detect(p, len);
        if (rc == 0)
            return P_MORE;
        if (rc < 0) {
            log_debug("server '%s': not a SOCKS client (first byte 0x%02x)",
                      sc->srv->base.obj.name, p[0]);
            sc_free(sc);
            return P_GONE;
        }
        sc->version = (uint8_t)rc;
        if (rc == SOCKS4_VERSION) {
            struct socks4_request r4;
            rc = socks4_parse_request(p, len, &r4);
            if (rc == 0)
                return P_MORE;
            if (rc < 0) {
                sc_close_with(sc, SOCKS5_REP_GENERAL_FAILURE);
                return P_STOP;
            }
            buf_consume(sc->in, (size_t)rc);
            /* USERID is ident-era information; without ident it proves nothing */
            sc_request(sc, r4.cmd, &r4.target);
            return P_STOP;
        }
        struct socks5_greeting g;
        rc = socks5_parse_greeting(p, len, &g);
        if (rc == 0)
            return P_MORE;
        if (rc < 0) {
            sc_free(sc);
            return P_GONE;
        }
        buf_consume(sc->in, (size_t)rc);
        uint8_t m = sc_choose_method(sc, g.methods);
        sc_out(sc, b, socks5_build_method_reply(m, b, sizeof(b)));
        if (m == SOCKS5_METHOD_NO_ACCEPTABLE) {
            sc->state = SC_CLOSING;
            sc_timer_set(sc, SP_LINGER_TIME, 0.);
            sc_closing_step(sc);
            return P_STOP;
        }
        sc->state = m == SOCKS5_METHOD_USERPASS ? SC_AUTH : SC_REQUEST;
        if (sc_flush(sc) < 0) {
            sc_free(sc);
            return P_GONE;
        }
        return P_AGAIN;
    }
    case SC_AUTH: {
        struct socks5_auth a;
        rc = socks5_parse_auth(p, len, &a);
        if (rc == 0)
            return P_MORE;
        bool ok = rc > 0 && sc_check_user(sc, &a);
        if (rc > 0)
            buf_consume(sc->in, (size_t)rc);
        sc_out(sc, b, socks5_build_auth_reply(ok ? SOCKS5_AUTH_SUCCESS : SOCKS5_AUTH_FAILURE, b,
                                              sizeof(b)));
        if (!ok) {
            STAT_ADD(sc->srv->base.stats->slot[sc->w->id].forbidden_auth, 1);
            sc->state = SC_CLOSING;
            sc_timer_set(sc, SP_LINGER_TIME, 0.);
            sc_closing_step(sc);
            return P_STOP;
        }
        sc->state = SC_REQUEST;
        if (sc_flush(sc) < 0) {
            sc_free(sc);
            return P_GONE;
        }
        return P_AGAIN;
    }
    case SC_REQUEST: {
        struct socks5_request r5;
        rc = socks5_parse_request(p, len, &r5);
        if (rc == 0)
            return P_MORE;
        if (rc < 0) {
            log_debug("server '%s': bad SOCKS5 request: %s", sc->srv->base.obj.name,
                      socks_strerror(rc));
            sc_close_with(sc, socks5_error_reply_code(rc));
            return P_STOP;
        }
        buf_consume(sc->in, (size_t)rc);
        sc_request(sc, r5.cmd, &r5.target);
        return P_STOP;
    }
    default:
        return P_STOP;
    }
}

/* Negotiation: parse what is buffered, read more while a message is incomplete. */
static void sc_read(struct sp_conn *sc)
{
    for (;;) {
        int rc = sc_parse(sc);
        if (rc == P_AGAIN)
            continue;
        if (rc != P_MORE)
            return;
        if (!sc->in) {
            sc->in = buf_get(sc->w->bufs, BUF_SMALL_SIZE);
            if (!sc->in) {
                sc_free(sc);
                return;
            }
        }
        if (buf_room(sc->in) == 0) {
            buf_compact(sc->in);
            /* every message is bounded far below a buffer: cannot happen */
            if (buf_room(sc->in) == 0) {
                sc_free(sc);
                return;
            }
        }
        ssize_t n = conn_recv(&sc->c, buf_end(sc->in), buf_room(sc->in));
        if (n < 0 && errno == EAGAIN) {
            if (buf_len(sc->in) == 0) {
                buf_put(sc->w->bufs, sc->in); /* idle connections hold no buffer */
                sc->in = NULL;
            }
            sc_io_update(sc);
            return;
        }
        if (n <= 0) {
            sc_free(sc); /* closed or reset while negotiating */
            return;
        }
        sc->in->tail += (uint32_t)n;
    }
}

/* ------------------------------------------------------ client connection */

/* Arm the client watcher for what the state needs. */
static void sc_io_update(struct sp_conn *sc)
{
    int ev = 0;

    switch (sc->state) {
    case SC_GREETING:
    case SC_AUTH:
    case SC_REQUEST:
    case SC_UDP:
        ev = EV_READ;
        break;
    case SC_CLOSING:
        ev = sc->lingering ? EV_READ : 0;
        break;
    default:
        break;
    }
    if (sc->outoff < sc->outlen)
        ev |= EV_WRITE;
    if (sc->state == SC_RELAY)
        ev = 0;
    ev_io_stop(sc->w->loop, &sc->io);
    if (ev) {
        ev_io_set(&sc->io, sc->c.fd, ev);
        ev_io_start(sc->w->loop, &sc->io);
    }
}

static void on_sc_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sp_conn *sc = container_of(io, struct sp_conn, io);

    if (sc->state == SC_CLOSING) {
        sc_closing_step(sc);
        return;
    }
    if ((revents & EV_WRITE) && sc_flush(sc) < 0) {
        sc_end(sc, sc->task_on ? TR_CLIENT_TCP_WRITE_FAILED : TR_NONE);
        return;
    }
    if (revents & EV_READ) {
        if (sc->state == SC_UDP) {
            udp_tcp_read(sc);
            return;
        }
        if (sc->state == SC_GREETING || sc->state == SC_AUTH || sc->state == SC_REQUEST) {
            sc_read(sc);
            return;
        }
    }
    sc_io_update(sc);
}

static void sp_accept(struct server *s, struct worker *w, struct accepted *a)
{
    struct socks_proxy *sp = sp_of(s);
    struct sp_conn *sc = calloc(1, sizeof(*sc));

    if (!sc) {
        close(a->fd);
        server_conn_done(s);
        return;
    }
    sc->srv = sp;
    sc->w = w;
    sc->pin = worker_pin(w);
    conn_init(&sc->c, a->fd);
    sc->peer = a->peer;
    sc->local = a->local;
    sc->full = a->full;
    sc->cc.fd = -1;
    sc->wc.kill = sc_wkill;
    worker_conn_add(w, &sc->wc);
    server_client_sockopts(s, a);
    ev_io_init(&sc->io, on_sc_io, a->fd, EV_READ);
    ev_init(&sc->timer, on_sc_timer);
    sc->state = SC_GREETING;
    sc_timer_set(sc, secs(sp->negotiation_timeout_ns), 0.);
    sc_read(sc);
}

/* ------------------------------------------------------------------- UDP
 *
 * UDP ASSOCIATE binds one UDP socket per association: an address of udp_bind_ipv4 /
 * udp_bind_ipv6 for the client's family (random pick), else our address of the TCP
 * connection; a port of udp_bind_port_range, else any. The reply advertises it, with
 * the IP transmuted by transmute_udp_echo_ip. Datagrams are accepted only from the TCP
 * client's IP, and from the port the request declared when it declared one; the first
 * accepted datagram fixes the client's address (the socket is connected to it, so the
 * kernel filters the rest). Datagrams with a bad header, FRAG != 0 or a destination
 * the filters refuse are dropped (counted in forbidden.dest for the filters).
 *
 * use_udp_associate: true (task UdpAssociate): each datagram goes where its header
 * says; answers come back with a header naming their real source.
 * use_udp_associate: false (g3proxy's default, task UdpConnect): one peer per session,
 * as g3proxy does it: the destination of the first datagram is the peer (the
 * request's DST names the client's UDP address in both modes, as RFC 1928 says), the
 * escaper connects to it, answers come back with a header naming the peer as the
 * client named it, and a datagram for any other destination ends the task
 * (InvalidClientProtocol); a refused first destination ends it too (ForbiddenByRule).
 *
 * The association ends with the TCP connection (ClosedByClient; bytes sent on it are
 * InvalidClientProtocol), without a first datagram within udp_client_initial_timeout
 * (ClientAppTimeout), or after task_idle_max_count idle checks
 * (task_idle_check_interval) without a datagram either way (Idle).
 *
 * udp_sock_speed_limit: the client's datagrams are read no faster than the upload
 * limit (reading pauses until the next window, the socket buffer holds the rest);
 * answers over the download limit are dropped. */

static void udp_free(struct sp_conn *sc)
{
    struct sp_udp *su = sc->udp;

    if (!su)
        return;
    sc->udp = NULL;
    escaper_udp_close(&su->u);
    ev_io_stop(sc->w->loop, &su->io);
    ev_timer_stop(sc->w->loop, &su->limit_timer);
    if (su->fd >= 0)
        close(su->fd);
    free(su);
}

static void udp_log_fields(struct sp_conn *sc, struct evrec *r)
{
    struct sp_udp *su = sc->udp;
    char peer[HOST_MAX + 8];

    evrec_addr(r, "tcp_server_addr", &sc->local);
    evrec_addr(r, "tcp_client_addr", &sc->peer);
    if (!su)
        return;
    if (su->bound.sa.sa_family)
        evrec_addr(r, "udp_server_addr", &su->bound);
    if (su->locked)
        evrec_addr(r, "udp_client_addr", &su->client);
    if (su->have_peer) {
        target_str(&su->peer, peer, sizeof(peer));
        evrec_strcpy(r, su->connect_mode ? "upstream" : "initial_peer", peer);
    }
    if (su->connect_mode) {
        if (su->u.bind_ip.family)
            evrec_ip(r, "next_bind_ip", &su->u.bind_ip);
        if (su->u.bound.sa.sa_family)
            evrec_addr(r, "next_bound_addr", &su->u.bound);
        if (su->u.peer.sa.sa_family)
            evrec_addr(r, "next_peer_addr", &su->u.peer);
    }
    evrec_u64(r, "c_rd_bytes", su->u.c_rd_bytes);
    evrec_u64(r, "c_rd_packets", su->u.c_rd_packets);
    evrec_u64(r, "c_wr_bytes", su->u.c_wr_bytes);
    evrec_u64(r, "c_wr_packets", su->u.c_wr_packets);
    evrec_u64(r, "r_rd_bytes", su->u.r_rd_bytes);
    evrec_u64(r, "r_rd_packets", su->u.r_rd_packets);
    evrec_u64(r, "r_wr_bytes", su->u.r_wr_bytes);
    evrec_u64(r, "r_wr_packets", su->u.r_wr_packets);
}

static void udp_account(struct sp_conn *sc, struct server_stats_slot *st)
{
    /* the escaper counted its side as datagrams moved */
    STAT_ADD(st->in_bytes, sc->udp->u.c_rd_bytes);
    STAT_ADD(st->out_bytes, sc->udp->u.c_wr_bytes);
}

/* udp_sock_speed_limit: may `len` more bytes (one more packet when len is 0) pass in
 * this direction now? */
static bool udp_rate_ok(const struct udp_speed_limit *l, struct sp_rate *r, bool up, size_t len,
                        uint64_t now_ms)
{
    uint64_t max_bytes = up ? l->upload_bytes : l->download_bytes;
    uint64_t max_pkts = up ? l->upload_packets : l->download_packets;
    uint64_t win = now_ms >> l->shift;

    if (!l->set)
        return true;
    if (win != r->win) {
        r->win = win;
        r->bytes = r->packets = 0;
    }
    if ((max_pkts && r->packets >= max_pkts) || (max_bytes && r->bytes >= max_bytes))
        return false;
    r->packets += len ? 1 : 0;
    r->bytes += len;
    return true;
}

static uint64_t loop_ms(struct sp_conn *sc)
{
    return (uint64_t)(ev_now(sc->w->loop) * 1000.0);
}

/* An answer from a remote peer: wrap it and send it to the client. */
static void udp_on_recv(struct udp_ctx *u, const union sockaddr_any *from, const void *data,
                        size_t len)
{
    struct sp_udp *su = container_of(u, struct sp_udp, u);
    struct sp_conn *sc = su->sc;
    uint8_t hdr[SOCKS5_UDP_HDR_MAX];
    int h;

    if (!su->locked || !udp_rate_ok(&sc->srv->base.udp_speed, &su->down, false, len, loop_ms(sc))) {
        su->c_dropped++;
        return;
    }
    h = su->connect_mode ? socks5_build_udp_header_host(&su->peer, hdr, sizeof(hdr))
                         : socks5_build_udp_header(from, hdr, sizeof(hdr));
    if (h < 0) {
        su->c_dropped++;
        return;
    }
    struct iovec iov[2] = {{hdr, (size_t)h}, {(void *)data, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(su->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        int err = errno;
        su->c_dropped++;
        /* full buffers, the client's port gone for a moment: datagram loss */
        if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS || err == ECONNREFUSED ||
            err == EMSGSIZE || err == EINTR)
            return;
        sc_end(sc, TR_CLIENT_UDP_SEND_FAILED);
        return;
    }
    u->c_wr_packets++;
    u->c_wr_bytes += (uint64_t)h + len;
}

static void udp_on_error(struct udp_ctx *u)
{
    struct sp_udp *su = container_of(u, struct sp_udp, u);
    sc_end(su->sc, u->reason ? u->reason : TR_UPSTREAM_READ_FAILED);
}

/* One datagram from the client socket. Returns false when sc is gone. */
static bool udp_client_datagram(struct sp_conn *sc, const union sockaddr_any *from,
                                const uint8_t *data, size_t len)
{
    struct sp_udp *su = sc->udp;
    struct socks_proxy *sp = sc->srv;
    struct upstream_addr dst;
    int h;

    if (!su->locked) {
        if (!udp_from_client(&su->client_ip, su->client_port, from)) {
            su->c_dropped++;
            return true;
        }
    }
    su->u.c_rd_packets++;
    su->u.c_rd_bytes += len;
    h = socks5_parse_udp_header(data, len, &dst);
    if (h <= 0) {
        su->c_dropped++; /* bad header, fragment, or shorter than its header */
        return true;
    }
    if (!su->locked) {
        /* the first datagram fixes the client's address: only it gets through now */
        socklen_t alen = from->sa.sa_family == AF_INET6 ? sizeof(from->in6) : sizeof(from->in);
        if (connect(su->fd, &from->sa, alen) < 0) {
            sc_end(sc, TR_CLIENT_UDP_RECV_FAILED);
            return false;
        }
        su->client = *from;
        su->locked = true;
        sc->stage = ST_RELAYING;
        /* from now on the idle checks watch the association */
        double iv = secs(sp->base.task_idle_check_interval_ns);
        sc_timer_set(sc, iv, iv);
    }
    if (su->connect_mode && su->have_peer) {
        if (!same_target(&su->peer, &dst)) {
            sc_end(sc, TR_INVALID_CLIENT_PROTOCOL); /* one peer per UdpConnect session */
            return false;
        }
    } else {
        bool first = !su->have_peer;
        if (first) {
            su->peer = dst;
            su->have_peer = true;
        }
        if (acl_forbids(acl_ports_check(&sp->base.dst_port_filter, dst.port)) ||
            acl_forbids(acl_dst_host_check(&sp->base.dst_host_filter, &dst)) || !dst.port) {
            STAT_ADD(sp->base.stats->slot[sc->w->id].forbidden_dest, 1);
            if (su->connect_mode) {
                sc_end(sc, TR_FORBIDDEN_BY_RULE);
                return false;
            }
            su->c_dropped++;
            return true;
        }
    }
    if (escaper_udp_sendto(&su->u, &dst, data + h, len - (size_t)h) < 0) {
        sc_end(sc, su->u.reason ? su->u.reason : TR_INTERNAL_SERVER_ERROR);
        return false;
    }
    return true;
}

static void on_udp_limit(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct sp_udp *su = container_of(t, struct sp_udp, limit_timer);
    ev_io_start(loop, &su->io);
}

/* Upload limit reached: stop reading until the next window. */
static void udp_pause(struct sp_conn *sc)
{
    struct sp_udp *su = sc->udp;
    const struct udp_speed_limit *l = &sc->srv->base.udp_speed;
    uint64_t now = loop_ms(sc), next = ((now >> l->shift) + 1) << l->shift;

    ev_io_stop(sc->w->loop, &su->io);
    ev_timer_set(&su->limit_timer, MAX((double)(next - now) / 1000.0, 0.001), 0.);
    ev_timer_start(sc->w->loop, &su->limit_timer);
}

static void on_udp_client_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sp_udp *su = container_of(io, struct sp_udp, io);
    struct sp_conn *sc = su->sc;
    struct worker *w = sc->w;
    struct socks_proxy *sp = sc->srv;
    const struct udp_speed_limit *lim = &sp->base.udp_speed;
    size_t psize = (size_t)sp->base.udp_relay_packet_size + SOCKS5_UDP_HDR_MAX;
    unsigned batch = MIN(MAX(sp->base.udp_relay_batch_size, 1u), (unsigned)SP_UDP_BATCH_MAX);
    struct buf *bufs[SP_UDP_BATCH_MAX];
    struct mmsghdr m[SP_UDP_BATCH_MAX];
    struct iovec iov[SP_UDP_BATCH_MAX];
    union sockaddr_any from[SP_UDP_BATCH_MAX];
    uint64_t total = 0, yield = sp->base.udp_relay_yield_size ? sp->base.udp_relay_yield_size
                                                                : (1 << 20);
    unsigned nb = 0;
    bool gone = false;

    for (; nb < batch; nb++) {
        bufs[nb] = buf_get(w->bufs, MAX(psize, (size_t)BUF_DEFAULT_SIZE));
        if (!bufs[nb])
            break;
    }
    if (!nb)
        return; /* out of memory: level-triggered, we come back */
    for (int round = 0; round < SP_UDP_ROUNDS && total < yield && !gone; round++) {
        unsigned want = nb;
        if (lim->set) {
            uint64_t max = lim->upload_packets;
            struct sp_rate *r = &su->up;
            if (!udp_rate_ok(lim, r, true, 0, loop_ms(sc))) {
                udp_pause(sc);
                break;
            }
            if (max && max - r->packets < want)
                want = (unsigned)(max - r->packets);
        }
        for (unsigned i = 0; i < want; i++) {
            iov[i].iov_base = bufs[i]->data;
            iov[i].iov_len = psize;
            memset(&m[i], 0, sizeof(m[i]));
            m[i].msg_hdr.msg_name = &from[i];
            m[i].msg_hdr.msg_namelen = sizeof(from[i]);
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(su->fd, m, want, MSG_DONTWAIT, NULL);
        if (got < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNREFUSED)
                continue; /* ICMP from the client's side: its business */
            if (err != EAGAIN && err != EWOULDBLOCK) {
                sc_end(sc, TR_CLIENT_UDP_RECV_FAILED);
                gone = true;
            }
            break;
        }
        for (int i = 0; i < got && !gone; i++) {
            if (m[i].msg_hdr.msg_flags & MSG_TRUNC) {
                su->c_dropped++; /* longer than udp_relay_packet_size */
                continue;
            }
            size_t len = m[i].msg_len;
            total += len;
            if (lim->set) {
                su->up.packets++;
                su->up.bytes += len;
            }
            gone = !udp_client_datagram(sc, &from[i], (const uint8_t *)bufs[i]->data, len);
        }
        if ((unsigned)got < want)
            break;
    }
    /* sc may be gone, its worker is not */
    for (unsigned i = 0; i < nb; i++)
        buf_put(w->bufs, bufs[i]);
}

/* Bytes or the end of the TCP connection while UDP runs. */
static void udp_tcp_read(struct sp_conn *sc)
{
    char b[64];
    ssize_t n = conn_recv(&sc->c, b, sizeof(b));

    if (n < 0 && errno == EAGAIN)
        return;
    if (n == 0)
        sc_end(sc, TR_CLOSED_BY_CLIENT);
    else if (n > 0)
        sc_end(sc, TR_INVALID_CLIENT_PROTOCOL); /* nothing may follow the request */
    else
        sc_end(sc, TR_CLIENT_TCP_READ_FAILED);
}

/* A UDP socket on ip, in the port range when one is configured. -1 with errno. */
static int udp_bind(struct sp_conn *sc, const struct ip_addr *ip, union sockaddr_any *bound)
{
    struct socks_proxy *sp = sc->srv;
    const struct port_range *pr = &sp->udp_port_range;
    int one = 1, fd = socket(ip->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    union sockaddr_any sa;
    socklen_t len;
    int rc = -1;

    if (fd < 0)
        return -1;
    if (ip->family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    sock_set_udp_misc(fd, ip->family, &sp->base.udp_misc_opts);
    sock_set_buffers(fd, &sp->udp_socket_buffer);
    if (pr->lo) {
        uint64_t rnd = worker_rand(sc->w);
        unsigned tries = MIN((unsigned)(pr->hi - pr->lo + 1), (unsigned)SP_PORT_TRIES);
        for (unsigned i = 0; i < tries && rc < 0; i++) {
            ip_to_sockaddr(ip, port_in_range(pr, rnd, i), &sa, &len);
            rc = bind(fd, &sa.sa, len);
            if (rc < 0 && errno != EADDRINUSE && errno != EACCES)
                break;
        }
    } else {
        ip_to_sockaddr(ip, 0, &sa, &len);
        rc = bind(fd, &sa.sa, len);
    }
    len = sizeof(*bound);
    if (rc < 0 || getsockname(fd, &bound->sa, &len) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* The IP to bind the client's UDP socket on: udp_bind_ipv4/6 for the client's family,
 * else our address of the TCP connection. */
static int udp_pick_ip(struct sp_conn *sc, int family, struct ip_addr *out)
{
    struct socks_proxy *sp = sc->srv;
    const struct sp_ip_list *l = family == AF_INET ? &sp->udp_bind4 : &sp->udp_bind6;
    union sockaddr_any me;
    socklen_t len = sizeof(me);

    if (l->n) {
        *out = l->v[worker_rand(sc->w) % l->n];
        return 0;
    }
    if (getsockname(sc->c.fd, &me.sa, &len) < 0)
        return -1;
    sockaddr_to_ip(&me, out, NULL);
    ip_unmap(out);
    return out->family == family ? 0 : -1;
}

static void udp_start(struct sp_conn *sc, const struct upstream_addr *target)
{
    struct socks_proxy *sp = sc->srv;
    struct sp_udp *su = calloc(1, sizeof(*su));
    struct ip_addr bind_ip;
    union sockaddr_any adv;
    uint8_t b[SOCKS5_REPLY_MAX];

    if (!su) {
        sc_fail(sc, TR_INTERNAL_SERVER_ERROR, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    sc->udp = su;
    su->sc = sc;
    su->fd = -1;
    su->connect_mode = !sp->use_udp_associate;
    sc->stage = ST_PREPARING;
    sockaddr_to_ip(&sc->peer, &su->client_ip, NULL);
    ip_unmap(&su->client_ip);
    /* DST.ADDR names where the client will send from; its IP is the TCP client's
     * anyway (a NATed client cannot know better), its port counts when given */
    su->client_port = target->port;
    if (target->kind == HOST_IP && !ip_unspecified(&target->ip)) {
        struct ip_addr tip = target->ip;
        ip_unmap(&tip);
        if (!ip_eq(&tip, &su->client_ip))
            log_debug("server '%s': UDP ASSOCIATE names %s, datagrams are taken from the "
                      "client's address only", sp->base.obj.name, target->host);
    }
    if (sc->in && buf_len(sc->in)) {
        sc_fail(sc, TR_INVALID_CLIENT_PROTOCOL, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    if (udp_pick_ip(sc, su->client_ip.family, &bind_ip) < 0) {
        sc_fail(sc, TR_INVALID_CLIENT_PROTOCOL, SOCKS5_REP_ATYP_NOT_SUPPORTED);
        return;
    }
    su->fd = udp_bind(sc, &bind_ip, &su->bound);
    if (su->fd < 0) {
        log_warn("server '%s': cannot bind a UDP socket: %s", sp->base.obj.name, strerror(errno));
        sc_fail(sc, TR_INTERNAL_SERVER_ERROR, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    su->u.task = &sc->t;
    su->u.w = sc->w;
    su->u.connect = su->connect_mode;
    su->u.packet_size = (uint32_t)sp->base.udp_relay_packet_size;
    su->u.batch = sp->base.udp_relay_batch_size;
    su->u.yield_size = sp->base.udp_relay_yield_size;
    su->u.sock_buf = sp->udp_socket_buffer;
    su->u.owner = sc;
    su->u.on_recv = udp_on_recv;
    su->u.on_error = udp_on_error;
    sc->stage = ST_CONNECTING;
    if (escaper_udp_open(sp->base.escaper, &su->u) < 0) {
        sc_fail(sc, su->u.reason ? su->u.reason : TR_ESCAPER_NOT_USABLE,
                SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    su->u_open = true;
    udp_echo_addr(&sp->transmute, &su->bound, &adv);
    sc_out(sc, b, socks5_build_reply(SOCKS5_REP_SUCCEEDED, &adv, b, sizeof(b)));
    if (sc_flush(sc) < 0) {
        sc_end(sc, TR_CLIENT_TCP_WRITE_FAILED);
        return;
    }
    sc->stage = ST_REPLYING;
    sc->ready_us = now_mono_us();
    sc->state = SC_UDP;
    ev_io_init(&su->io, on_udp_client_io, su->fd, EV_READ);
    ev_io_start(sc->w->loop, &su->io);
    ev_init(&su->limit_timer, on_udp_limit);
    sc_timer_set(sc, secs(sp->udp_client_initial_timeout_ns), 0.);
    sc_io_update(sc);
}

/* Timer: negotiation timeout, end of linger, no first datagram, or an idle check. */
static void on_sc_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct sp_conn *sc = container_of(t, struct sp_conn, timer);
    struct sp_udp *su = sc->udp;

    if (sc->state == SC_UDP && su) {
        if (!su->locked) {
            sc_end(sc, TR_CLIENT_APP_TIMEOUT); /* no first datagram in time */
            return;
        }
        uint64_t moved = su->u.c_rd_packets + su->u.c_wr_packets + su->u.r_rd_packets +
                         su->u.r_wr_packets;
        if (moved != su->idle_mark) {
            su->idle_mark = moved;
            su->idle_count = 0;
            return;
        }
        if (++su->idle_count >= sc->srv->base.task_idle_max_count)
            sc_end(sc, TR_IDLE);
        return;
    }
    if (sc->state == SC_GREETING || sc->state == SC_AUTH || sc->state == SC_REQUEST)
        log_debug("server '%s': SOCKS negotiation timed out", sc->srv->base.obj.name);
    sc_end(sc, TR_CLIENT_APP_TIMEOUT);
}

/* ------------------------------------------------------------------ config */

static int cp_bind_list(struct conf_ctx *cx, const struct cnode *n, struct sp_ip_list *l,
                        int family, const struct conf_key *k)
{
    size_t cnt = n->type == CN_SEQ ? n->n : 1;

    l->v = arena_alloc(cx->arena, cnt * sizeof(*l->v));
    if (!l->v)
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const struct cnode *item = n->type == CN_SEQ ? n->items[i] : n;
        if (cp_ip(cx, item, &l->v[i], k) < 0)
            return -1;
        if (l->v[i].family != family)
            return conf_fail(cx, item, "expected an IPv%d address", family == AF_INET ? 4 : 6);
    }
    l->n = cnt;
    return 0;
}

static int cp_udp_bind4(struct conf_ctx *cx, const struct cnode *n, void *slot,
                        const struct conf_key *k)
{
    return cp_bind_list(cx, n, slot, AF_INET, k);
}

static int cp_udp_bind6(struct conf_ctx *cx, const struct cnode *n, void *slot,
                        const struct conf_key *k)
{
    return cp_bind_list(cx, n, slot, AF_INET6, k);
}

/* transmute_udp_echo_ip: bool, or a map local IP -> advertised IP */
static int cp_transmute(struct conf_ctx *cx, const struct cnode *n, void *slot,
                        const struct conf_key *k)
{
    struct sp_transmute *tm = slot;

    memset(tm, 0, sizeof(*tm));
    if (n->type != CN_MAP) {
        if (conf_parse_bool(n, &tm->on) < 0)
            return conf_fail(cx, n, "expected a bool or a map of IP addresses");
        return 0;
    }
    tm->on = true;
    tm->v = arena_alloc(cx->arena, (n->n ? n->n : 1) * sizeof(*tm->v));
    if (!tm->v)
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        if (cp_ip(cx, cmap_key(n, i), &tm->v[i].from, k) < 0 ||
            cp_ip(cx, cmap_val(n, i), &tm->v[i].to, k) < 0)
            return -1;
        ip_unmap(&tm->v[i].from);
    }
    tm->n = n->n;
    return 0;
}

#define SOFF(f) offsetof(struct socks_proxy, f)
static const struct conf_key socks_proxy_keys[] = {
    {"use_udp_associate", CK_ALIASES("enable_udp_associate", "udp_associate_enabled"), cp_bool,
     SOFF(use_udp_associate), "false"},
    {"negotiation_timeout", NULL, cp_duration, SOFF(negotiation_timeout_ns), "4s", 1, 3600000},
    {"udp_client_initial_timeout", NULL, cp_duration, SOFF(udp_client_initial_timeout_ns), "30s",
     1, 86400000},
    {"udp_bind_ipv4", NULL, cp_udp_bind4, SOFF(udp_bind4)},
    {"udp_bind_ipv6", NULL, cp_udp_bind6, SOFF(udp_bind6)},
    {"udp_bind_port_range", NULL, cp_port_range, SOFF(udp_port_range)},
    {"udp_socket_buffer", NULL, cp_sock_buffer, SOFF(udp_socket_buffer)},
    {"transmute_udp_echo_ip", CK_ALIASES("auto_reply_local_ip_map"), cp_transmute,
     SOFF(transmute)},
    {"username_params", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {0},
};

static const struct conf_key *const sp_keys[] = {server_base_keys, server_listen_keys,
                                                 server_proxy_keys, socks_proxy_keys, NULL};

static int sp_link(struct server *s, struct generation *g, struct conf_ctx *cx)
{
    return server_link_common(s, g, cx);
}

const struct server_ops server_socks_proxy_ops = {
    .type = "socks_proxy",
    .keys = sp_keys,
    .size = sizeof(struct socks_proxy),
    .link = sp_link,
    .caps = SRV_CAP_TCP_LISTEN,
    .accept = sp_accept,
};
