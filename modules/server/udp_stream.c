/* Server udp_stream (ours; GoProxy's `udp` port forwarding): datagrams received on a
 * UDP address are forwarded to an upstream picked per client, and the upstream's
 * answers go back to that client from the address it sent to.
 *
 * Sessions. A client address (ip:port) gets a session: a task owning one UDP socket
 * connected to the upstream picked for it (upstream_pick_policy, hash key
 * "<client-ip><server-ip>" as tcp_stream). Its datagrams go out on that socket, what
 * comes back on it is sent to the client from the listening socket. A session ends
 * after session_idle_timeout without a datagram either way (reason Idle) and logs a
 * UdpConnect task record. At most max_sessions live at once (over all workers); a
 * datagram that would open one more is dropped. Work per event is bounded: at most
 * UDP_ROUNDS recvmmsg() batches of udp_relay_batch_size datagrams from the listening
 * socket, and udp_relay_batch_size datagrams from an upstream socket.
 *
 * Listening sockets. The core's listeners are TCP only (listener.c), so this module
 * opens its own sockets, through two server ops made for it:
 *  - open_sockets (main thread, only for a generation about to be installed, never for
 *    proxyd -t): one SO_REUSEPORT socket per worker, held in a refcounted block
 *    (struct us_shared). The block of the previous generation's same-named udp_stream
 *    (or, for a fixed port, of any udp_stream) with the same address is taken over
 *    instead: sockets survive reloads as TCP listeners do, and no datagram queued on
 *    them is lost. Bind errors fail the load like TCP ones.
 *  - worker_attach (on each worker, when the generation becomes current): the block's
 *    slot for that worker records the new object as its owner and starts watching the
 *    worker's socket (if it was not already watched for a predecessor).
 * The block also holds each worker's session table, so sessions outlive reloads: a
 * session keeps the object (and configuration) it started with, pinned by its task, and
 * datagrams of its client keep reaching it whatever object owns the slot now; only new
 * clients get the new configuration. A slot whose owner is no longer current (the
 * server was removed, or its address changed so a new block took over) or whose worker
 * is offline still serves existing sessions but opens no new ones; the old sockets
 * close when the last session using them ends (the old object then dies with its
 * generation, whose worker_detach stops the watcher). Limitation: an address that a
 * reload moves away from and a later reload moves back to while old sessions still hold
 * the old sockets gets fresh sockets next to them in the same SO_REUSEPORT group,
 * where the old ones drop new clients until they close (at most session_idle_timeout).
 *
 * Listening on a wildcard address, each datagram's destination address is recorded
 * (IP_PKTINFO / IPV6_RECVPKTINFO) and answers are sent from it, so a multi-homed host
 * answers from the address the client used. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "daemon.h"
#include "evlog.h"
#include "gen.h"
#include "log.h"
#include "pick.h"
#include "registry.h"
#include "server.h"
#include "sockopt.h"
#include "stats.h"
#include "task.h"
#include "worker.h"

#define UDP_ROUNDS 4            /* recvmmsg batches per listening-socket event */
#define UDP_CTL_SIZE 64         /* room for one IP_PKTINFO / IPV6_PKTINFO message */
#define UDP_MIN_BUCKETS 64

struct us_session;
struct udp_stream;

/* Per-worker part of the shared block: touched by that worker only. */
struct us_slot {
    int fd;                         /* owned by the block: this worker's listening socket */
    struct us_shared *sh;           /* borrowed: the block holding this slot */
    struct worker *w;               /* borrowed: set at the first attach */
    ev_io io;                       /* watcher on fd, running on w while there is an owner
                                     * or a session */
    bool io_on;
    struct udp_stream *owner;       /* borrowed: the object of w's current generation, or
                                     * the last one that was current (stale); NULL once
                                     * that one left w */
    struct us_session **buckets;    /* owned: session table, chained by client address */
    size_t nbuckets, count;
    uint64_t seed;
    uint64_t rr;                    /* round-robin counter */
    /* receive batch, sized for the owner's batch and packet size */
    uint32_t batch;
    size_t pkt;
    struct mmsghdr *msgs;           /* owned: one block holding every array below */
    struct iovec *iov;
    union sockaddr_any *names;
    uint8_t (*ctl)[UDP_CTL_SIZE];
    uint8_t *data;
} __attribute__((aligned(64)));

/* Listening sockets and session tables, shared by successive generations. */
struct us_shared {
    int refs;                       /* atomic: objects using it */
    union sockaddr_any addr;        /* as configured */
    union sockaddr_any bound;       /* actual address (port 0 resolved) */
    bool pktinfo;                   /* wildcard address: destination recorded */
    int64_t sessions;               /* atomic: live sessions on all workers */
    unsigned nslots;
    struct us_slot slot[];          /* one per worker */
};

struct udp_stream {
    struct server base;
    union sockaddr_any listen;
    struct weighted_addrs upstream;
    int pick_policy;
    struct picker picker;
    union sockaddr_any *up_sa;      /* arena: [upstream.n] */
    uint64_t idle_ns;
    uint32_t max_sessions;
    struct sock_buffer sock_buf;
    struct us_shared *shared;       /* ref; NULL until open_sockets (never with proxyd -t) */
};

struct us_session {
    struct task t;
    struct us_session *next;        /* hash chain */
    struct udp_stream *srv;         /* borrowed: pinned by t */
    struct us_shared *sh;           /* borrowed: srv holds a reference */
    struct us_slot *slot;           /* borrowed: in sh */
    union sockaddr_any client;
    union sockaddr_any local;       /* address the client sent to */
    int local_ifindex;
    bool has_local;                 /* answer with pktinfo */
    int fd;                         /* owned: connected to the upstream */
    ev_io io;
    ev_timer idle;
    ev_tstamp last;                 /* last datagram either way */
    union sockaddr_any up_peer, up_bound;
    uint64_t c_rd_bytes, c_rd_pkts, c_wr_bytes, c_wr_pkts;
    uint64_t r_rd_bytes, r_rd_pkts, r_wr_bytes, r_wr_pkts;
    /* udp_sock_speed_limit: this window's use, per direction (0 up, 1 down) */
    uint64_t win[2], win_bytes[2], win_pkts[2];
};

static struct udp_stream *us_of(struct server *s)
{
    return container_of(s, struct udp_stream, base);
}

static socklen_t sa_len(const union sockaddr_any *sa)
{
    return sa->sa.sa_family == AF_INET ? sizeof(sa->in) : sizeof(sa->in6);
}

static bool sa_equal(const union sockaddr_any *a, const union sockaddr_any *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return a->in6.sin6_port == b->in6.sin6_port &&
           !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr)) &&
           a->in6.sin6_scope_id == b->in6.sin6_scope_id;
}

static uint16_t sa_port(const union sockaddr_any *sa)
{
    return ntohs(sa->sa.sa_family == AF_INET ? sa->in.sin_port : sa->in6.sin6_port);
}

static bool sa_wildcard(const union sockaddr_any *sa)
{
    if (sa->sa.sa_family == AF_INET)
        return sa->in.sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&sa->in6.sin6_addr);
}

/* ------------------------------------------------------------ shared block */

static void shared_unref(struct us_shared *sh)
{
    if (!sh || __atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* every worker stopped its watcher (worker_detach) before the last object died */
    for (unsigned i = 0; i < sh->nslots; i++) {
        if (sh->slot[i].fd >= 0)
            close(sh->slot[i].fd);
        free(sh->slot[i].buckets);
        free(sh->slot[i].msgs);
    }
    free(sh);
}

static int udp_socket_opts(const struct udp_stream *us, int fd, int family)
{
    if (sock_set_udp_misc(fd, family, &us->base.udp_misc_opts) < 0)
        return -1;
    return sock_set_buffers(fd, &us->sock_buf);
}

static int bind_one(const struct udp_stream *us, const union sockaddr_any *addr, bool pktinfo)
{
    int fd = socket(addr->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, zero = 0, e;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (addr->sa.sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
        goto fail;
    if (pktinfo && (addr->sa.sa_family == AF_INET
                        ? setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))
                        : setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))) < 0)
        goto fail;
    if (udp_socket_opts(us, fd, addr->sa.sa_family) < 0)
        goto fail;
    if (bind(fd, &addr->sa, sa_len(addr)) < 0)
        goto fail;
    return fd;
fail:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

static struct us_shared *shared_find(struct generation *old, const struct udp_stream *us)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; old && i < old->n[OBJ_SERVER]; i++) {
            struct server *o = (struct server *)old->objs[OBJ_SERVER][i];
            if (o->ops != &server_udp_stream_ops || !us_of(o)->shared ||
                !sa_equal(&us_of(o)->shared->addr, &us->listen))
                continue;
            /* the same server's sockets; else another's with the same fixed port */
            if (pass == 0 ? strcmp(o->obj.name, us->base.obj.name) != 0
                          : sa_port(&us->listen) == 0)
                continue;
            return us_of(o)->shared;
        }
    }
    return NULL;
}

static int us_open_sockets(struct server *s, struct generation *old, struct conf_ctx *cx)
{
    struct udp_stream *us = us_of(s);
    struct daemon *d = s->obj.gen->d;
    unsigned n = d && d->nworkers ? d->nworkers : 1;
    const struct cnode *ln = cmap_get(s->obj.conf, "listen");
    struct us_shared *sh = shared_find(old, us);
    union sockaddr_any addr = us->listen;
    char buf[80];

    cx->key = "listen";
    if (sh && sh->nslots == n) {
        __atomic_add_fetch(&sh->refs, 1, __ATOMIC_RELAXED);
        us->shared = sh;
        /* options may have changed: they apply to the sockets kept */
        for (unsigned i = 0; i < sh->nslots; i++)
            udp_socket_opts(us, sh->slot[i].fd, sh->bound.sa.sa_family);
        return 0;
    }
    /* the slots are cache-line aligned: so must the block be */
    size_t size = sizeof(*sh) + n * sizeof(sh->slot[0]);
    sh = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (!sh)
        return conf_fail(cx, ln, "out of memory");
    memset(sh, 0, size);
    sh->refs = 1;
    sh->addr = us->listen;
    sh->pktinfo = sa_wildcard(&us->listen);
    sh->nslots = n;
    for (unsigned i = 0; i < n; i++) {
        sh->slot[i].fd = -1;
        sh->slot[i].sh = sh;
    }
    us->shared = sh; /* destroy() closes what was opened */
    for (unsigned i = 0; i < n; i++) {
        int fd = bind_one(us, &addr, sh->pktinfo);
        if (fd < 0)
            return conf_fail(cx, ln, "cannot listen on UDP %s: %s",
                             sockaddr_str(&addr, buf, sizeof(buf)), strerror(errno));
        sh->slot[i].fd = fd;
        if (i == 0) {
            /* port 0: the other workers' sockets share the port the kernel chose */
            socklen_t len = sizeof(sh->bound);
            getsockname(fd, &sh->bound.sa, &len);
            addr = sh->bound;
        }
    }
    log_notice("server '%s' (udp_stream) listening on UDP %s", s->obj.name,
               sockaddr_str(&sh->bound, buf, sizeof(buf)));
    cx->key = NULL;
    return 0;
}

/* ------------------------------------------------------------- session table */

static size_t sess_hash(const struct us_slot *sl, const union sockaddr_any *a)
{
    uint8_t k[26];
    size_t len;

    memcpy(k, &sl->seed, 8);
    if (a->sa.sa_family == AF_INET) {
        memcpy(k + 8, &a->in.sin_port, 2);
        memcpy(k + 10, &a->in.sin_addr, 4);
        len = 14;
    } else {
        memcpy(k + 8, &a->in6.sin6_port, 2);
        memcpy(k + 10, &a->in6.sin6_addr, 16);
        len = 26;
    }
    return (size_t)pick_hash(k, len) & (sl->nbuckets - 1);
}

static struct us_session *sess_find(struct us_slot *sl, const union sockaddr_any *a)
{
    if (!sl->nbuckets)
        return NULL;
    for (struct us_session *s = sl->buckets[sess_hash(sl, a)]; s; s = s->next)
        if (sa_equal(&s->client, a))
            return s;
    return NULL;
}

static void sess_grow(struct us_slot *sl)
{
    size_t n = sl->nbuckets ? sl->nbuckets * 2 : UDP_MIN_BUCKETS;
    struct us_session **b = calloc(n, sizeof(*b)), **old = sl->buckets;
    size_t oldn = sl->nbuckets;

    if (!b)
        return; /* longer chains, still correct */
    sl->buckets = b;
    sl->nbuckets = n;
    for (size_t i = 0; i < oldn; i++)
        for (struct us_session *s = old[i], *nx; s; s = nx) {
            nx = s->next;
            size_t h = sess_hash(sl, &s->client);
            s->next = b[h];
            b[h] = s;
        }
    free(old);
}

static int sess_insert(struct us_slot *sl, struct us_session *s)
{
    if (sl->count >= sl->nbuckets * 2 || !sl->nbuckets)
        sess_grow(sl);
    if (!sl->nbuckets)
        return -1;
    size_t h = sess_hash(sl, &s->client);
    s->next = sl->buckets[h];
    sl->buckets[h] = s;
    sl->count++;
    return 0;
}

static void sess_remove(struct us_slot *sl, struct us_session *s)
{
    struct us_session **pp = &sl->buckets[sess_hash(sl, &s->client)];

    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = s->next;
        sl->count--;
    }
}

/* ------------------------------------------------------------------ sessions */

static void sess_log(struct us_session *s)
{
    struct daemon *d = s->srv->base.obj.gen->d;
    struct evrec r;
    char up[80];

    if (!d || !d->evlog || !evlog_enabled(d->evlog, EVLOG_TASK))
        return;
    task_log_begin(&r, &s->t, "UdpStream", "UdpConnect", "Relaying", NULL, s->t.start_mono_us);
    evrec_addr(&r, "udp_server_addr", &s->local);
    evrec_addr(&r, "udp_client_addr", &s->client);
    evrec_strcpy(&r, "upstream", sockaddr_str(&s->up_peer, up, sizeof(up)));
    if (s->up_bound.sa.sa_family)
        evrec_addr(&r, "next_bound_addr", &s->up_bound);
    evrec_addr(&r, "next_peer_addr", &s->up_peer);
    evrec_u64(&r, "c_rd_bytes", s->c_rd_bytes);
    evrec_u64(&r, "c_rd_packets", s->c_rd_pkts);
    evrec_u64(&r, "c_wr_bytes", s->c_wr_bytes);
    evrec_u64(&r, "c_wr_packets", s->c_wr_pkts);
    evrec_u64(&r, "r_rd_bytes", s->r_rd_bytes);
    evrec_u64(&r, "r_rd_packets", s->r_rd_pkts);
    evrec_u64(&r, "r_wr_bytes", s->r_wr_bytes);
    evrec_u64(&r, "r_wr_packets", s->r_wr_pkts);
    evlog_emit(d->evlog, &r);
}

/* A slot without an owner serves its remaining sessions; with neither, it stops. */
static void slot_maybe_stop(struct us_slot *sl)
{
    if (!sl->owner && !sl->count && sl->io_on) {
        ev_io_stop(sl->w->loop, &sl->io);
        sl->io_on = false;
    }
}

static void sess_end(struct us_session *s, enum task_reason reason)
{
    struct worker *w = s->t.w;
    struct server_stats_slot *st = &s->srv->base.stats->slot[w->id];

    task_set_reason(&s->t, reason);
    sess_log(s);
    STAT_ADD(st->in_bytes, s->c_rd_bytes);
    STAT_ADD(st->out_bytes, s->c_wr_bytes);
    sess_remove(s->slot, s);
    __atomic_sub_fetch(&s->sh->sessions, 1, __ATOMIC_RELAXED);
    slot_maybe_stop(s->slot);
    ev_io_stop(w->loop, &s->io);
    ev_timer_stop(w->loop, &s->idle);
    close(s->fd);
    task_finish(&s->t); /* may release the server and its block: nothing of them after */
    free(s);
}

static void sess_kill(struct task *t, enum task_reason reason)
{
    sess_end(container_of(t, struct us_session, t), reason);
}

static void on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct us_session *s = container_of(t, struct us_session, idle);
    ev_tstamp left = s->last + (double)s->srv->idle_ns / 1e9 - ev_now(loop);

    /* the timer is not re-armed per datagram: it checks the last activity when due */
    if (left > 0.001) {
        ev_timer_set(t, left, 0.);
        ev_timer_start(loop, t);
        return;
    }
    sess_end(s, TR_IDLE);
}

/* udp_sock_speed_limit: may this datagram pass in direction dir (0 up, 1 down)? */
static bool speed_ok(struct us_session *s, int dir, size_t len)
{
    const struct udp_speed_limit *l = &s->srv->base.udp_speed;
    uint64_t maxb, maxp, win;

    if (!l->set)
        return true;
    maxb = dir ? l->download_bytes : l->upload_bytes;
    maxp = dir ? l->download_packets : l->upload_packets;
    win = (uint64_t)(ev_now(s->t.w->loop) * 1000.0) >> l->shift;
    if (win != s->win[dir]) {
        s->win[dir] = win;
        s->win_bytes[dir] = s->win_pkts[dir] = 0;
    }
    if ((maxb && s->win_bytes[dir] + len > maxb) || (maxp && s->win_pkts[dir] + 1 > maxp))
        return false;
    s->win_bytes[dir] += len;
    s->win_pkts[dir]++;
    return true;
}

/* Send to the client from the address it sent to. */
static ssize_t send_to_client(struct us_session *s, const void *p, size_t len)
{
    struct iovec iov = {(void *)p, len};
    struct msghdr mh = {.msg_name = &s->client, .msg_namelen = sa_len(&s->client),
                        .msg_iov = &iov, .msg_iovlen = 1};
    union {
        struct cmsghdr align;
        uint8_t b[UDP_CTL_SIZE];
    } ctl;
    ssize_t n;

    if (s->has_local) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.b;
        struct cmsghdr *c = (struct cmsghdr *)ctl.b;
        if (s->local.sa.sa_family == AF_INET) {
            struct in_pktinfo pi = {.ipi_ifindex = s->local_ifindex,
                                    .ipi_spec_dst = s->local.in.sin_addr};
            mh.msg_controllen = CMSG_SPACE(sizeof(pi));
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        } else {
            struct in6_pktinfo pi = {.ipi6_addr = s->local.in6.sin6_addr,
                                     .ipi6_ifindex = (unsigned)s->local_ifindex};
            mh.msg_controllen = CMSG_SPACE(sizeof(pi));
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        }
    }
    do
        n = sendmsg(s->slot->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

/* Datagrams from the upstream, back to the client. */
static void on_sess_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct us_session *s = container_of(io, struct us_session, io);
    struct us_slot *sl = s->slot;
    uint32_t batch = s->srv->base.udp_relay_batch_size;

    for (uint32_t i = 0; i < batch; i++) {
        ssize_t n = recv(s->fd, sl->data, sl->pkt, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED)
                continue; /* ICMP unreachable from the upstream: datagram lost */
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                sess_end(s, TR_UPSTREAM_READ_FAILED);
            return;
        }
        s->last = ev_now(loop);
        s->r_rd_bytes += (uint64_t)n;
        s->r_rd_pkts++;
        if ((size_t)n > sl->pkt || !speed_ok(s, 1, (size_t)n))
            continue; /* too big for udp_relay_packet_size, or over the limit: dropped */
        if (send_to_client(s, sl->data, (size_t)n) == n) {
            s->c_wr_bytes += (uint64_t)n;
            s->c_wr_pkts++;
        }
    }
}

static struct us_session *sess_open(struct us_slot *sl, struct udp_stream *us,
                                    const union sockaddr_any *client,
                                    const union sockaddr_any *local, int ifindex, bool has_local)
{
    struct worker *w = sl->w;
    struct us_shared *sh = us->shared;
    struct ip_addr cip, sip;
    char key[96], ip[46];
    struct us_session *s;
    socklen_t len;

    if (__atomic_add_fetch(&sh->sessions, 1, __ATOMIC_RELAXED) > (int64_t)us->max_sessions) {
        __atomic_sub_fetch(&sh->sessions, 1, __ATOMIC_RELAXED);
        STAT_ADD(us->base.stats->slot[w->id].refused_full, 1);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        __atomic_sub_fetch(&sh->sessions, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    s->srv = us;
    s->sh = sh;
    s->slot = sl;
    s->client = *client;
    s->local = *local;
    s->local_ifindex = ifindex;
    s->has_local = has_local;

    sockaddr_to_ip(client, &cip, NULL);
    sockaddr_to_ip(local, &sip, NULL);
    snprintf(key, sizeof(key), "%s", ip_str(&cip, ip, sizeof(ip)));
    size_t kl = strlen(key);
    snprintf(key + kl, sizeof(key) - kl, "%s", ip_str(&sip, ip, sizeof(ip)));
    uint32_t i = picker_pick(&us->picker, worker_rand(w), sl->rr++, key, strlen(key));
    s->up_peer = us->up_sa[i];

    s->fd = socket(s->up_peer.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || udp_socket_opts(us, s->fd, s->up_peer.sa.sa_family) < 0 ||
        connect(s->fd, &s->up_peer.sa, sa_len(&s->up_peer)) < 0 || sess_insert(sl, s) < 0) {
        char a[80];
        log_debug("server '%s': cannot open a UDP session to %s: %s", us->base.obj.name,
                  sockaddr_str(&s->up_peer, a, sizeof(a)), strerror(errno));
        if (s->fd >= 0)
            close(s->fd);
        free(s);
        __atomic_sub_fetch(&sh->sessions, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    len = sizeof(s->up_bound);
    getsockname(s->fd, &s->up_bound.sa, &len);
    s->t.kill = sess_kill;
    task_start(&s->t, w, &us->base);
    STAT_ADD(us->base.stats->slot[w->id].conn_total, 1);
    s->last = ev_now(w->loop);
    ev_io_init(&s->io, on_sess_io, s->fd, EV_READ);
    ev_io_start(w->loop, &s->io);
    ev_timer_init(&s->idle, on_idle, (double)us->idle_ns / 1e9, 0.);
    ev_timer_start(w->loop, &s->idle);
    return s;
}

/* The destination address of a received datagram, from its pktinfo. */
static bool msg_local(struct msghdr *mh, uint16_t port, union sockaddr_any *local, int *ifindex)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            memset(local, 0, sizeof(*local));
            local->in.sin_family = AF_INET;
            local->in.sin_addr = pi.ipi_addr;
            local->in.sin_port = htons(port);
            *ifindex = pi.ipi_ifindex;
            return true;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            memset(local, 0, sizeof(*local));
            local->in6.sin6_family = AF_INET6;
            local->in6.sin6_addr = pi.ipi6_addr;
            local->in6.sin6_port = htons(port);
            *ifindex = (int)pi.ipi6_ifindex;
            return true;
        }
    }
    return false;
}

static void client_datagram(struct us_slot *sl, struct us_shared *sh, bool stale, unsigned k,
                            size_t len)
{
    struct mmsghdr *m = &sl->msgs[k];
    union sockaddr_any *client = &sl->names[k];
    struct udp_stream *us = sl->owner;
    struct worker *w = sl->w;
    struct us_session *s;

    if (m->msg_hdr.msg_flags & MSG_TRUNC)
        return; /* bigger than udp_relay_packet_size */
    s = sess_find(sl, client);
    if (!s) {
        union sockaddr_any local = sh->bound;
        int ifindex = 0;
        bool has_local = sh->pktinfo && msg_local(&m->msg_hdr, sa_port(&sh->bound), &local,
                                                  &ifindex);
        struct ip_addr ip;

        if (stale)
            return; /* server gone, moved or offline: no new session */
        sockaddr_to_ip(client, &ip, NULL);
        if (acl_forbids(acl_net_check(&us->base.ingress, &ip))) {
            STAT_ADD(us->base.stats->slot[w->id].forbidden_ingress, 1);
            return;
        }
        s = sess_open(sl, us, client, &local, ifindex, has_local);
        if (!s)
            return;
    }
    s->last = ev_now(w->loop);
    s->c_rd_bytes += len;
    s->c_rd_pkts++;
    if (!speed_ok(s, 0, len))
        return;
    for (int tries = 0; tries < 2; tries++) {
        ssize_t n = send(s->fd, sl->iov[k].iov_base, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == (ssize_t)len) {
            s->r_wr_bytes += len;
            s->r_wr_pkts++;
            return;
        }
        /* an earlier ICMP error is reported once, on this call: send again */
        if (n >= 0 || errno != ECONNREFUSED)
            return;
    }
}

static void on_listen_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct us_slot *sl = container_of(io, struct us_slot, io);
    struct udp_stream *us = sl->owner;
    struct us_shared *sh = sl->sh;
    struct worker *w = sl->w;
    bool stale = !us || w->offline || !w->cur || us->base.obj.gen != w->cur->gen;

    for (int round = 0; round < UDP_ROUNDS; round++) {
        for (uint32_t k = 0; k < sl->batch; k++) {
            sl->iov[k] = (struct iovec){sl->data + (size_t)k * sl->pkt, sl->pkt};
            sl->msgs[k].msg_hdr = (struct msghdr){
                .msg_name = &sl->names[k], .msg_namelen = sizeof(sl->names[k]),
                .msg_iov = &sl->iov[k], .msg_iovlen = 1,
                .msg_control = sh->pktinfo ? sl->ctl[k] : NULL,
                .msg_controllen = sh->pktinfo ? UDP_CTL_SIZE : 0};
            sl->msgs[k].msg_len = 0;
        }
        int n = recvmmsg(sl->fd, sl->msgs, sl->batch, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN, or an error the next event retries */
        for (int k = 0; k < n; k++)
            client_datagram(sl, sh, stale, (unsigned)k, sl->msgs[k].msg_len);
        if ((uint32_t)n < sl->batch)
            return;
    }
}

/* Receive arrays for the owner's batch and packet sizes. 0 / -1 (OOM: old ones kept). */
static int slot_rx_alloc(struct us_slot *sl, uint32_t batch, size_t pkt)
{
    size_t msgs = batch * sizeof(struct mmsghdr), iov = batch * sizeof(struct iovec);
    size_t names = batch * sizeof(union sockaddr_any), ctl = batch * (size_t)UDP_CTL_SIZE;
    uint8_t *b;

    if (sl->msgs && sl->batch == batch && sl->pkt == pkt)
        return 0;
    b = malloc(msgs + iov + names + ctl + batch * pkt);
    if (!b)
        return -1;
    free(sl->msgs);
    sl->msgs = (struct mmsghdr *)b;
    sl->iov = (struct iovec *)(b + msgs);
    sl->names = (union sockaddr_any *)(b + msgs + iov);
    sl->ctl = (uint8_t(*)[UDP_CTL_SIZE])(b + msgs + iov + names);
    sl->data = b + msgs + iov + names + ctl;
    sl->batch = batch;
    sl->pkt = pkt;
    return 0;
}

static void us_worker_attach(struct server *s, struct worker *w)
{
    struct udp_stream *us = us_of(s);
    struct us_shared *sh = us->shared;
    struct us_slot *sl;

    if (!sh || w->id >= sh->nslots)
        return;
    sl = &sh->slot[w->id];
    if (slot_rx_alloc(sl, us->base.udp_relay_batch_size, us->base.udp_relay_packet_size) < 0 &&
        !sl->msgs) {
        log_err("server '%s': out of memory: worker %u does not serve UDP", s->obj.name, w->id);
        return;
    }
    sl->owner = us;
    sl->w = w;
    if (!sl->seed)
        sl->seed = worker_rand(w) | 1;
    if (!sl->io_on) {
        ev_io_init(&sl->io, on_listen_io, sl->fd, EV_READ);
        ev_io_start(w->loop, &sl->io);
        sl->io_on = true;
    }
}

static void us_worker_detach(struct server *s, struct worker *w)
{
    struct udp_stream *us = us_of(s);
    struct us_shared *sh = us->shared;
    struct us_slot *sl;

    if (!sh || w->id >= sh->nslots)
        return;
    sl = &sh->slot[w->id];
    if (sl->owner != us)
        return; /* a successor took the slot over */
    /* sessions of this or older objects may remain: they pin their own objects, which
     * keep the block alive, and the watcher serves them until the last one ends */
    sl->owner = NULL;
    slot_maybe_stop(sl);
}

static void us_destroy(struct server *s)
{
    shared_unref(us_of(s)->shared);
}

/* ------------------------------------------------------------------- config */

/* A port (any address) or "ip[:port]". */
static int cp_udp_listen(struct conf_ctx *cx, const struct cnode *n, void *slot,
                         const struct conf_key *k)
{
    union sockaddr_any *sa = slot;
    const char *s;
    int64_t port;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_i64(s, &port) == 0) {
        if (port < 0 || port > 65535)
            return conf_fail(cx, n, "invalid port %s", s);
        memset(sa, 0, sizeof(*sa));
        sa->in6.sin6_family = AF_INET6;
        sa->in6.sin6_addr = in6addr_any;
        sa->in6.sin6_port = htons((uint16_t)port);
        return 0;
    }
    return cp_sockaddr(cx, n, slot, k);
}

static bool is_loopback_ip(const struct ip_addr *ip)
{
    return ip->family == AF_INET ? (ntohl(ip->v4.s_addr) >> 24) == 127
                                 : IN6_IS_ADDR_LOOPBACK(&ip->v6);
}

static bool ip_equal(const struct ip_addr *a, const struct ip_addr *b)
{
    return a->family == b->family && !memcmp(a->b, b->b, a->family == AF_INET ? 4 : 16);
}

static int us_init(struct server *s, struct conf_ctx *cx)
{
    struct udp_stream *us = us_of(s);
    const struct cnode *un = cmap_get(s->obj.conf, "upstream");
    struct pick_node *nodes;
    struct ip_addr lip;
    uint16_t lport;

    if (!un)
        un = cmap_get(s->obj.conf, "proxy_pass");
    cx->key = "upstream";
    sockaddr_to_ip(&us->listen, &lip, &lport);
    nodes = arena_alloc(cx->arena, us->upstream.n * sizeof(*nodes));
    us->up_sa = arena_alloc(cx->arena, us->upstream.n * sizeof(*us->up_sa));
    if (!nodes || !us->up_sa)
        return conf_fail(cx, un, "out of memory");
    for (size_t i = 0; i < us->upstream.n; i++) {
        const struct upstream_addr *ua = &us->upstream.v[i].addr;
        char id[HOST_MAX + 8];
        socklen_t len;
        if (ua->kind != HOST_IP)
            return conf_fail(cx, un, "upstream '%s': udp_stream needs an IP address", ua->host);
        if (!ua->port)
            return conf_fail(cx, un, "upstream '%s' needs a port", ua->host);
        /* datagrams sent to ourselves would circle for ever */
        if (ua->port == lport && (sa_wildcard(&us->listen) ? is_loopback_ip(&ua->ip)
                                                           : ip_equal(&ua->ip, &lip)))
            return conf_fail(cx, un, "upstream '%s' is this server's own address", ua->host);
        ip_to_sockaddr(&ua->ip, ua->port, &us->up_sa[i], &len);
        sockaddr_str(&us->up_sa[i], id, sizeof(id));
        nodes[i].id = arena_strndup(cx->arena, id, strlen(id));
        nodes[i].weight = us->upstream.v[i].weight;
        if (!nodes[i].id)
            return conf_fail(cx, un, "out of memory");
    }
    if (picker_init(&us->picker, cx->arena, (enum pick_policy)us->pick_policy, nodes,
                    us->upstream.n) < 0)
        return conf_fail(cx, un, "cannot build the pick table (out of memory?)");
    cx->key = NULL;
    return 0;
}

/* Two udp_stream servers on one address would share its datagrams at random. */
static int us_link(struct server *s, struct generation *g, struct conf_ctx *cx)
{
    struct udp_stream *us = us_of(s);

    if (sa_port(&us->listen) == 0)
        return 0;
    for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
        struct server *o = (struct server *)g->objs[OBJ_SERVER][i];
        if (o == s)
            break;
        if (o->ops == &server_udp_stream_ops && sa_equal(&us_of(o)->listen, &us->listen)) {
            cx->key = "listen";
            return conf_fail(cx, cmap_get(s->obj.conf, "listen"),
                             "address already used by server '%s'", o->obj.name);
        }
    }
    return 0;
}

#define SOFF(f) offsetof(struct server, f)
#define UOFF(f) offsetof(struct udp_stream, f)
static const struct conf_key udp_stream_keys[] = {
    {"listen", NULL, cp_udp_listen, UOFF(listen), NULL, 0, 0, CK_F_REQUIRED},
    {"upstream", CK_ALIASES("proxy_pass"), cp_weighted_addrs, UOFF(upstream), NULL, 0, 0,
     CK_F_REQUIRED},
    {"upstream_pick_policy", NULL, cp_pick_policy, UOFF(pick_policy), "random"},
    {"session_idle_timeout", CK_ALIASES("udp_idle_timeout"), cp_duration, UOFF(idle_ns), "60s",
     1, 86400000},
    {"max_sessions", NULL, cp_u32, UOFF(max_sessions), "4096", 1, 1 << 24},
    {"ingress_network_filter", CK_ALIASES("ingress_net_filter"), cp_acl_ingress, SOFF(ingress)},
    {"udp_misc_opts", NULL, cp_udp_misc_opts, SOFF(udp_misc_opts)},
    {"udp_sock_speed_limit", CK_ALIASES("udp_relay_speed_limit", "udp_relay_limit", "relay_limit"),
     cp_udp_speed_limit, SOFF(udp_speed)},
    {"udp_relay_packet_size", NULL, cp_size, SOFF(udp_relay_packet_size), "65535", 512, 65535},
    {"udp_relay_batch_size", NULL, cp_u32, SOFF(udp_relay_batch_size), "8", 1, 1024},
    {"udp_socket_buffer", NULL, cp_sock_buffer, UOFF(sock_buf)},
    {0},
};

static const struct conf_key *const us_keys[] = {server_base_keys, udp_stream_keys, NULL};

const struct server_ops server_udp_stream_ops = {
    .type = "udp_stream",
    .aliases = (const char *const[]){"udpstream", NULL},
    .keys = us_keys,
    .size = sizeof(struct udp_stream),
    .init = us_init,
    .link = us_link,
    .destroy = us_destroy,
    .worker_detach = us_worker_detach,
    .accept = NULL, /* no TCP connections: port servers refuse it as a target */
    .open_sockets = us_open_sockets,
    .worker_attach = us_worker_attach,
};
