/* Server tcp_stream: TCP port mapping. Every accepted connection is one task: pick an
 * upstream (upstream_pick_policy, hash key "<client-ip><server-ip>"), connect to it
 * through the escaper (which sees the client and server addresses, so direct_fixed's
 * use_proxy_protocol works), optionally speak TLS to it (tls_client), then relay
 * both ways until both streams end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "escaper.h"
#include "evlog.h"
#include "gen.h"
#include "listener.h"
#include "log.h"
#include "pick.h"
#include "registry.h"
#include "relay.h"
#include "server.h"
#include "sockopt.h"
#include "stats.h"
#include "task.h"
#include "worker.h"

/* one round-robin counter per worker, padded to a cache line (the arena does not align
 * to 64: false sharing is avoided, not alignment) */
struct ts_counter {
    uint64_t v;
    char pad[56];
};

struct tcp_stream {
    struct server base;
    struct weighted_addrs upstream;
    int pick_policy;                /* enum pick_policy */
    struct picker picker;
    struct tls_client_conf tls_client;
    char *tls_name;                 /* upstream_tls_name; NULL = the upstream's host */
    struct ts_counter *rr;          /* arena: [nrr] */
    unsigned nrr;
};

enum { ST_CREATED = 0, ST_CONNECTING, ST_CONNECTED, ST_RELAYING, ST_FINISHED };
static const char *const stage_names[] = {"Created", "Connecting", "Connected", "Relaying",
                                          "Finished"};

struct ts_task {
    struct task t;
    struct tcp_stream *srv;         /* borrowed: pinned by t */
    struct conn client, up;
    bool up_open;
    union sockaddr_any peer, local;
    struct connect_ctx cc;
    struct relay relay;
    bool relay_on;
    ev_io tls_io;
    ev_timer timer;                 /* TLS handshake */
    uint8_t stage;
    uint64_t ready_us;
    char upstream_str[HOST_MAX + 8];
};

static struct tcp_stream *ts_of(struct server *s)
{
    return container_of(s, struct tcp_stream, base);
}

static void ts_log(struct ts_task *ts)
{
    struct daemon *d = ts->srv->base.obj.gen->d;
    struct relay_dir *up = &ts->relay.dir[0], *down = &ts->relay.dir[1];
    struct evrec r;

    if (!d || !d->evlog || !evlog_enabled(d->evlog, EVLOG_TASK))
        return;
    task_log_begin(&r, &ts->t, "TcpStream", "TcpConnect", stage_names[ts->stage],
                   ts->cc.used ? ts->cc.used->obj.name : NULL, ts->ready_us);
    evrec_addr(&r, "server_addr", &ts->local);
    evrec_addr(&r, "client_addr", &ts->peer);
    if (ts->upstream_str[0])
        evrec_str(&r, "upstream", ts->upstream_str);
    if (ts->cc.bind_ip.family)
        evrec_ip(&r, "next_bind_ip", &ts->cc.bind_ip);
    if (ts->cc.bound.sa.sa_family)
        evrec_addr(&r, "next_bound_addr", &ts->cc.bound);
    if (ts->cc.peer.sa.sa_family)
        evrec_addr(&r, "next_peer_addr", &ts->cc.peer);
    evrec_u64(&r, "tcp_connect_tries", ts->cc.tries);
    evrec_dur(&r, "tcp_connect_spend", ts->cc.spend_us * 1000);
    evrec_u64(&r, "c_rd_bytes", up->read_bytes);
    evrec_u64(&r, "c_wr_bytes", down->bytes);
    evrec_u64(&r, "r_rd_bytes", down->read_bytes);
    evrec_u64(&r, "r_wr_bytes", up->bytes);
    evlog_emit(d->evlog, &r);
}

/* The task ended: log, count, close both sides, end the client connection. */
static void ts_end(struct ts_task *ts, enum task_reason reason)
{
    struct worker *w = ts->t.w;
    struct server *s = &ts->srv->base;
    struct server_stats_slot *st = &s->stats->slot[w->id];

    task_set_reason(&ts->t, reason);
    ts->stage = ST_FINISHED;
    ts_log(ts);
    STAT_ADD(st->in_bytes, ts->relay.dir[0].read_bytes);
    STAT_ADD(st->out_bytes, ts->relay.dir[1].bytes);
    if (ts->cc.used) {
        struct escaper_stats_slot *es = &ts->cc.used->stats->slot[w->id];
        STAT_ADD(es->in_bytes, ts->relay.dir[1].read_bytes);
        STAT_ADD(es->out_bytes, ts->relay.dir[0].bytes);
    }
    escaper_connect_cancel(&ts->cc);
    if (ts->cc.fd >= 0)
        close(ts->cc.fd);
    if (ts->relay_on)
        relay_stop(&ts->relay);
    ev_io_stop(w->loop, &ts->tls_io);
    ev_timer_stop(w->loop, &ts->timer);
    if (ts->up_open)
        conn_close(&ts->up);
    conn_close(&ts->client);
    server_conn_done(s);
    task_finish(&ts->t); /* may free the server: last but for our own memory */
    free(ts);
}

static void ts_kill(struct task *t, enum task_reason reason)
{
    ts_end(container_of(t, struct ts_task, t), reason);
}

static void on_relay_end(struct relay *r, enum task_reason reason)
{
    struct ts_task *ts = r->owner;

    ts->relay_on = false; /* the relay stopped itself */
    ts_end(ts, reason);
}

static int on_dir_done(struct relay *r, int d)
{
    return RELAY_GO; /* two STREAM directions: the relay ends the tunnel itself */
}

static void ts_relay(struct ts_task *ts)
{
    struct server *s = &ts->srv->base;
    struct relay_conf rc;

    ts->stage = ST_RELAYING;
    server_relay_conf(s, &rc);
    relay_init(&ts->relay, ts->t.w, &ts->client, &ts->up, &rc, ts);
    ts->relay.on_end = on_relay_end;
    ts->relay.on_dir_done = on_dir_done;
    ts->relay_on = true;
    relay_dir_set(&ts->relay, 0, RM_STREAM, 0, NULL, NULL, NULL, 0);
    relay_dir_set(&ts->relay, 1, RM_STREAM, 0, NULL, NULL, NULL, 0);
    relay_kick(&ts->relay);
}

/* ------------------------------------------------------------- upstream TLS */

static void on_tls_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    ts_end(container_of(t, struct ts_task, timer), TR_UPSTREAM_TLS_HANDSHAKE_TIMEOUT);
}

static void tls_step(struct ts_task *ts)
{
    struct worker *w = ts->t.w;
    const char *why = NULL;
    int rc = conn_tls_handshake(&ts->up, &why);

    ev_io_stop(w->loop, &ts->tls_io);
    if (rc == STEP_AGAIN) {
        ev_io_set(&ts->tls_io, ts->up.fd, ts->up.want == CO_WANT_WRITE ? EV_WRITE : EV_READ);
        ev_io_start(w->loop, &ts->tls_io);
        return;
    }
    ev_timer_stop(w->loop, &ts->timer);
    if (rc == STEP_ERROR) {
        log_debug("server '%s': TLS handshake with %s failed: %s", ts->srv->base.obj.name,
                  ts->upstream_str, why);
        ts_end(ts, TR_UPSTREAM_TLS_HANDSHAKE_FAILED);
        return;
    }
    ts_relay(ts);
}

static void on_tls_io(struct ev_loop *loop, ev_io *io, int revents)
{
    tls_step(container_of(io, struct ts_task, tls_io));
}

static void ts_start_tls(struct ts_task *ts)
{
    struct tcp_stream *sv = ts->srv;
    const char *name = sv->tls_name ? sv->tls_name : ts->cc.target.host;

    if (conn_tls_client(&ts->up, sv->tls_client.ctx, sv->tls_client.disable_sni ? NULL : name,
                        sv->tls_client.insecure ? NULL : name) < 0) {
        ts_end(ts, TR_INTERNAL_TLS_CLIENT_ERROR);
        return;
    }
    ev_timer_init(&ts->timer, on_tls_timeout, (double)sv->tls_client.handshake_timeout_ns / 1e9,
                  0.);
    ev_timer_start(ts->t.w->loop, &ts->timer);
    ev_io_init(&ts->tls_io, on_tls_io, ts->up.fd, EV_WRITE);
    tls_step(ts);
}

/* --------------------------------------------------------------- connecting */

static void on_connected(struct connect_ctx *cc, bool ok)
{
    struct ts_task *ts = container_of(cc, struct ts_task, cc);

    if (!ok) {
        ts_end(ts, cc->reason);
        return;
    }
    /* dead loop: the upstream is one of our own listeners */
    if (listen_is_own(ts->srv->base.obj.gen, &cc->peer, &cc->bound)) {
        ts_end(ts, TR_FORBIDDEN_BY_RULE);
        return;
    }
    conn_init(&ts->up, cc->fd);
    cc->fd = -1;
    ts->up_open = true;
    ts->stage = ST_CONNECTED;
    ts->ready_us = now_mono_us();
    if (ts->srv->tls_client.ctx)
        ts_start_tls(ts);
    else
        ts_relay(ts);
}

static void ts_accept(struct server *s, struct worker *w, struct accepted *a)
{
    struct tcp_stream *sv = ts_of(s);
    struct ts_task *ts = calloc(1, sizeof(*ts));
    struct ip_addr cip, sip;
    char key[2 * 46], ip[46];
    union sockaddr_any sa;
    socklen_t salen;

    if (!ts) {
        close(a->fd);
        server_conn_done(s);
        return;
    }
    ts->srv = sv;
    ts->cc.fd = -1;
    ts->peer = a->peer;
    ts->local = a->local;
    conn_init(&ts->client, a->fd);
    ev_init(&ts->tls_io, on_tls_io);
    ev_init(&ts->timer, on_tls_timeout);
    ts->t.kill = ts_kill;
    task_start(&ts->t, w, s);
    server_client_sockopts(s, a);
    if (a->full) {
        ts_end(ts, TR_UPSTREAM_NOT_AVAILABLE);
        return;
    }

    /* pick: the hashing policies key on "<client-ip><server-ip>" */
    sockaddr_to_ip(&ts->peer, &cip, NULL);
    sockaddr_to_ip(&ts->local, &sip, NULL);
    snprintf(key, sizeof(key), "%s", ip_str(&cip, ip, sizeof(ip)));
    size_t kl = strlen(key);
    snprintf(key + kl, sizeof(key) - kl, "%s", ip_str(&sip, ip, sizeof(ip)));
    uint64_t seq = w->id < sv->nrr ? sv->rr[w->id].v++ : 0;
    uint32_t i = picker_pick(&sv->picker, worker_rand(w), seq, key, strlen(key));
    const struct upstream_addr *ua = &sv->upstream.v[i].addr;

    ts->cc.target = *ua;
    snprintf(ts->upstream_str, sizeof(ts->upstream_str),
             ua->kind == HOST_IP && ua->ip.family == AF_INET6 ? "[%s]:%u" : "%s:%u", ua->host,
             ua->port);
    if (acl_forbids(acl_ports_check(&s->dst_port_filter, ua->port)) ||
        acl_forbids(acl_dst_host_check(&s->dst_host_filter, ua))) {
        STAT_ADD(s->stats->slot[w->id].forbidden_dest, 1);
        ts_end(ts, TR_FORBIDDEN_BY_RULE);
        return;
    }
    if (ua->kind == HOST_IP) {
        ip_to_sockaddr(&ua->ip, ua->port, &sa, &salen);
        if (listen_is_own(s->obj.gen, &sa, &ts->local)) {
            ts_end(ts, TR_FORBIDDEN_BY_RULE);
            return;
        }
    }
    ts->stage = ST_CONNECTING;
    ts->cc.task = &ts->t;
    ts->cc.w = w;
    ts->cc.client = &ts->peer;
    ts->cc.server = &ts->local;
    ts->cc.on_done = on_connected;
    if (escaper_tcp_connect(s->escaper, &ts->cc) < 0)
        ts_end(ts, ts->cc.reason);
}

/* ------------------------------------------------------------------- config */

static int ts_init(struct server *s, struct conf_ctx *cx)
{
    struct tcp_stream *sv = ts_of(s);
    struct daemon *d = s->obj.gen ? s->obj.gen->d : NULL;
    const struct cnode *un = cmap_get(s->obj.conf, "upstream");
    struct pick_node *nodes;

    if (!un)
        un = cmap_get(s->obj.conf, "proxy_pass");
    cx->key = "upstream";
    nodes = arena_alloc(cx->arena, sv->upstream.n * sizeof(*nodes));
    if (!nodes)
        return conf_fail(cx, un, "out of memory");
    for (size_t i = 0; i < sv->upstream.n; i++) {
        const struct upstream_addr *ua = &sv->upstream.v[i].addr;
        char id[HOST_MAX + 8];
        if (!ua->port)
            return conf_fail(cx, un, "upstream '%s' needs a port", ua->host);
        snprintf(id, sizeof(id), "%s:%u", ua->host, ua->port);
        nodes[i].id = arena_strndup(cx->arena, id, strlen(id));
        nodes[i].weight = sv->upstream.v[i].weight;
        if (!nodes[i].id)
            return conf_fail(cx, un, "out of memory");
    }
    if (picker_init(&sv->picker, cx->arena, (enum pick_policy)sv->pick_policy, nodes,
                    sv->upstream.n) < 0)
        return conf_fail(cx, un, "cannot build the pick table (out of memory?)");
    sv->nrr = d && d->nworkers ? d->nworkers : 1;
    sv->rr = arena_alloc(cx->arena, sv->nrr * sizeof(*sv->rr));
    if (!sv->rr)
        return conf_fail(cx, un, "out of memory");
    cx->key = NULL;
    return 0;
}

static int ts_link(struct server *s, struct generation *g, struct conf_ctx *cx)
{
    return server_link_common(s, g, cx);
}

#define TOFF(f) offsetof(struct tcp_stream, f)
static const struct conf_key tcp_stream_keys[] = {
    {"upstream", CK_ALIASES("proxy_pass"), cp_weighted_addrs, TOFF(upstream), NULL, 0, 0,
     CK_F_REQUIRED},
    {"upstream_pick_policy", NULL, cp_pick_policy, TOFF(pick_policy), "random"},
    {"tls_client", NULL, cp_tls_client, TOFF(tls_client)},
    {"upstream_tls_name", NULL, cp_host, TOFF(tls_name)},
    {"auth_by_client_ip", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {0},
};

static const struct conf_key *const ts_keys[] = {server_base_keys, server_listen_keys,
                                                 server_proxy_keys, tcp_stream_keys, NULL};

const struct server_ops server_tcp_stream_ops = {
    .type = "tcp_stream",
    .aliases = (const char *const[]){"tcpstream", NULL},
    .keys = ts_keys,
    .size = sizeof(struct tcp_stream),
    .init = ts_init,
    .link = ts_link,
    .caps = SRV_CAP_TCP_LISTEN,
    .accept = ts_accept,
};
