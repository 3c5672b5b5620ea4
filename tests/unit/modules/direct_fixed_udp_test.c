/* direct_fixed's UDP path on a real ev_loop with real UDP sockets on loopback and a
 * fake resolver driver answered by hand: sending to IPs and names, the resolution
 * queue and its bounds, the egress filter, the second family, connect mode, datagrams
 * longer than the packet size, and closing from inside the receive callback. */
#include <poll.h>

#include "modules/escaper/direct_fixed.c"

#include "daemon.h"

#include "tap.h"
#include "testconf.h"

static struct daemon td;
static struct generation tg;
static struct worker tw;

/* ------------------------------------------------------------ fake driver */

#define FAKE_MAXQ 64

struct fake_q {
    struct resolve_query base;
    resolve_cb cb;
    void *arg;
    char name[64];
    int family;
};

struct fake {
    struct resolver base;
    struct fake_q *q[FAKE_MAXQ];
    int nq;
};

static struct resolve_query *fake_query(struct resolver *r, struct worker *w, const char *name,
                                        int family, resolve_cb cb, void *arg)
{
    struct fake *f = (struct fake *)r;
    struct fake_q *q = calloc(1, sizeof(*q));

    q->base.r = r;
    q->cb = cb;
    q->arg = arg;
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->family = family;
    f->q[f->nq++] = q;
    return &q->base;
}

static void fake_cancel(struct resolve_query *qb)
{
}

static const struct resolver_ops fake_ops = {
    .type = "fake_drv",
    .size = sizeof(struct fake),
    .query = fake_query,
    .cancel = fake_cancel,
};

static struct fake fk;

static void fake_answer(int i, int err, const char *ip)
{
    struct ip_addr ips[1];
    struct resolve_result res = {.err = err, .ips = ips, .ttl = 300};

    if (ip) {
        ip_parse(ip, &ips[0]);
        res.n = 1;
    }
    fk.q[i]->cb(fk.q[i]->arg, &res);
}

/* ------------------------------------------------------------------ helpers */

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
}

/* Run the loop until *v >= want or max seconds passed. */
static void run_until(const uint64_t *v, uint64_t want, double max)
{
    ev_timer tick;
    ev_tstamp end = ev_time() + max;

    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(tw.loop, &tick);
    while (*v < want && ev_time() < end)
        ev_run(tw.loop, EVRUN_ONCE);
    ev_timer_stop(tw.loop, &tick);
}

static void spin(void)
{
    uint64_t never = 0;
    run_until(&never, 1, 0.05);
}

struct rx {
    uint64_t n;
    char last[256];
    size_t last_len;
    char from[80];
    bool close_in_cb;
};

static void on_recv(struct udp_ctx *u, const union sockaddr_any *from, const void *data, size_t len)
{
    struct rx *rx = u->owner;

    rx->n++;
    rx->last_len = MIN(len, sizeof(rx->last));
    memcpy(rx->last, data, rx->last_len);
    sockaddr_str(from, rx->from, sizeof(rx->from));
    if (rx->close_in_cb)
        escaper_udp_close(u);
}

static uint64_t errors;
static void on_error(struct udp_ctx *u)
{
    errors++;
}

/* A peer socket on 127.0.0.1 (or ::1). */
static int peer_open(const char *host, uint16_t *port)
{
    struct ip_addr a;
    union sockaddr_any sa;
    socklen_t len;
    int fd;

    ip_parse(host, &a);
    fd = socket(a.family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    ip_to_sockaddr(&a, 0, &sa, &len);
    if (fd < 0 || bind(fd, &sa.sa, len) < 0)
        abort();
    len = sizeof(sa);
    getsockname(fd, &sa.sa, &len);
    sockaddr_to_ip(&sa, &a, port);
    return fd;
}

/* Receive what came to the peer (waiting up to 1 s for the first one) and echo each
 * datagram with a prefix. Returns how many. */
static int peer_echo(int fd, int max)
{
    char b[70000];
    union sockaddr_any from;
    int n = 0;

    while (n < max) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, n ? 50 : 1000) <= 0)
            break;
        socklen_t fl = sizeof(from);
        ssize_t r = recvfrom(fd, b + 3, sizeof(b) - 3, 0, &from.sa, &fl);
        if (r < 0)
            break;
        memcpy(b, "re:", 3);
        sendto(fd, b, (size_t)r + 3, 0, &from.sa, fl);
        n++;
    }
    return n;
}

static struct direct_fixed esc;
static struct tconf egress_conf;

static void esc_setup(void)
{
    static const struct conf_key k = {"egress_network_filter"};

    memset(&esc, 0, sizeof(esc));
    esc.base.obj.kind = OBJ_ESCAPER;
    esc.base.obj.name = "direct";
    esc.base.obj.gen = &tg;
    esc.base.ops = &escaper_direct_fixed_ops;
    esc.base.stats = escaper_stats_new();
    esc.resolver = &fk.base;
    if (tconf_run(&egress_conf, "{default: allow, allow: [127.0.0.1, '::1']}", cp_acl_egress,
                  &esc.egress, &k) < 0)
        abort();
}

static void ctx_init(struct udp_ctx *u, struct rx *rx, bool connect_mode)
{
    memset(u, 0, sizeof(*u));
    memset(rx, 0, sizeof(*rx));
    u->w = &tw;
    u->connect = connect_mode;
    u->packet_size = 2048;
    u->batch = 8;
    u->yield_size = 1 << 20;
    u->owner = rx;
    u->on_recv = on_recv;
    u->on_error = on_error;
}

static struct upstream_addr target(const char *s)
{
    struct upstream_addr a;
    const char *why;
    if (upstream_parse(s, &a, &why) < 0)
        abort();
    return a;
}

/* -------------------------------------------------------------------- tests */

static void test_families(void)
{
    struct direct_fixed e;

    memset(&e, 0, sizeof(e));
    e.strategy.query = RQ_IPV4_FIRST;
    is_int(dfu_family(&e, 0), AF_INET, "ipv4_first asks A");
    is_int(dfu_family(&e, AF_INET), AF_INET6, "then AAAA");
    is_int(dfu_family(&e, AF_INET6), 0, "then nothing");
    e.strategy.query = RQ_IPV6_FIRST;
    is_int(dfu_family(&e, 0), AF_INET6, "ipv6_first asks AAAA");
    is_int(dfu_family(&e, AF_INET6), AF_INET, "then A");
    e.strategy.query = RQ_IPV4_ONLY;
    is_int(dfu_family(&e, AF_INET), 0, "ipv4_only: A only");
    e.strategy.query = RQ_IPV4_FIRST;
    e.no_ipv4 = true;
    is_int(dfu_family(&e, 0), AF_INET6, "no_ipv4: AAAA first");
    is_int(dfu_family(&e, AF_INET6), 0, "and only");
    e.no_ipv6 = true;
    is_int(dfu_family(&e, 0), 0, "both disabled: nothing");
}

static void test_ip_and_name(void)
{
    struct udp_ctx u;
    struct rx rx;
    uint16_t port;
    int peer = peer_open("127.0.0.1", &port);
    char t[64];
    struct escaper_stats_slot *st = &esc.base.stats->slot[0];

    ctx_init(&u, &rx, false);
    is_int(escaper_udp_open(&esc.base, &u), 0, "open");
    ok(u.used == &esc.base, "used is the escaper");
    snprintf(t, sizeof(t), "127.0.0.1:%u", port);
    struct upstream_addr dst = target(t);
    is_int(escaper_udp_sendto(&u, &dst, "hello", 5), 0, "send to an IP");
    is_int(peer_echo(peer, 1), 1, "the peer got it");
    run_until(&rx.n, 1, 2);
    is_u64(rx.n, 1, "answer delivered");
    ok(rx.last_len == 8 && !memcmp(rx.last, "re:hello", 8), "payload");
    is_str(rx.from, t, "from the peer");
    is_u64(u.r_wr_packets, 1, "r_wr_packets");
    is_u64(u.r_rd_bytes, 8, "r_rd_bytes");
    ok(u.bound.sa.sa_family == AF_INET, "bound address known");

    /* a name: 20 datagrams while it resolves, 16 wait, 4 are dropped */
    snprintf(t, sizeof(t), "peer.test:%u", port);
    dst = target(t);
    int nq = fk.nq;
    for (int i = 0; i < 20; i++)
        is_int(escaper_udp_sendto(&u, &dst, "q", 1), 0, "queued %d", i);
    is_int(fk.nq, nq + 1, "one lookup for all of them");
    is_int(fk.q[nq]->family, AF_INET, "A first");
    is_u64(u.queue_dropped, 4, "queue bound: 4 dropped");
    spin();
    fake_answer(nq, 0, "127.0.0.1");
    is_int(peer_echo(peer, 32), 16, "16 sent after the answer");
    run_until(&rx.n, 17, 2);
    is_u64(rx.n, 17, "their answers came back");
    /* remembered: the next one goes at once */
    is_int(escaper_udp_sendto(&u, &dst, "x", 1), 0, "send again");
    is_int(fk.nq, nq + 1, "no new lookup");
    is_int(peer_echo(peer, 1), 1, "sent at once");
    run_until(&rx.n, 18, 2);

    /* a name that does not resolve in either family */
    dst = target("nowhere.test:53");
    uint64_t dropped = u.dropped;
    escaper_udp_sendto(&u, &dst, "a", 1);
    escaper_udp_sendto(&u, &dst, "b", 1);
    nq = fk.nq;
    spin();
    fake_answer(nq - 1, RESOLVE_E_NOTFOUND, NULL);
    is_int(fk.nq, nq + 1, "the other family is asked");
    is_int(fk.q[nq]->family, AF_INET6, "AAAA");
    spin();
    fake_answer(nq, RESOLVE_E_NOTFOUND, NULL);
    is_u64(u.dropped, dropped + 2, "both datagrams dropped");

    /* the egress filter */
    uint64_t forbidden = st->forbidden_ip;
    dst = target("127.0.0.9:53");
    escaper_udp_sendto(&u, &dst, "no", 2);
    is_u64(st->forbidden_ip, forbidden + 1, "forbidden_ip counted");
    is_int(peer_echo(peer, 1), 0, "nothing sent");
    ok(st->out_bytes >= 5 + 16 + 1, "escaper out_bytes");
    escaper_udp_close(&u);
    ok(u.priv == NULL, "closed");
    escaper_udp_close(&u);
    close(peer);
}

static void test_connect_mode_and_truncation(void)
{
    struct udp_ctx u;
    struct rx rx;
    uint16_t port, port2;
    int peer = peer_open("127.0.0.1", &port), other = peer_open("127.0.0.1", &port2);
    char t[64];

    ctx_init(&u, &rx, true);
    u.packet_size = 100;
    is_int(escaper_udp_open(&esc.base, &u), 0, "open (connect mode)");
    snprintf(t, sizeof(t), "127.0.0.1:%u", port);
    struct upstream_addr dst = target(t);
    escaper_udp_sendto(&u, &dst, "one", 3);
    is_int(peer_echo(peer, 1), 1, "first datagram");
    run_until(&rx.n, 1, 2);
    is_u64(rx.n, 1, "answer");
    ok(u.peer.sa.sa_family == AF_INET, "peer known");
    /* a stranger's datagram never reaches a connected socket */
    sendto(other, "x", 1, 0, &u.bound.sa, sizeof(u.bound.in));
    snprintf(t, sizeof(t), "127.0.0.1:%u", port2);
    dst = target(t);
    escaper_udp_sendto(&u, &dst, "two", 3);
    is_int(peer_echo(peer, 1), 1, "later datagrams go to the peer whatever dst says");
    is_int(peer_echo(other, 1), 0, "not to the other address");
    run_until(&rx.n, 2, 2);
    is_u64(rx.n, 2, "one more answer, none from the stranger");
    /* longer than packet_size: dropped */
    char big[500];
    memset(big, 'b', sizeof(big));
    uint64_t dropped = u.dropped;
    escaper_udp_sendto(&u, &dst, big, sizeof(big));
    is_int(peer_echo(peer, 1), 1, "big datagram sent");
    run_until(&u.dropped, dropped + 1, 1);
    is_u64(u.dropped, dropped + 1, "its answer is too long: dropped");
    is_u64(rx.n, 2, "not delivered");
    escaper_udp_close(&u);
    close(peer);
    close(other);
}

static void test_close_in_callback_and_ipv6(void)
{
    struct udp_ctx u;
    struct rx rx;
    uint16_t port;
    int peer = peer_open("::1", &port);
    char t[64];

    ctx_init(&u, &rx, false);
    rx.close_in_cb = true;
    is_int(escaper_udp_open(&esc.base, &u), 0, "open");
    snprintf(t, sizeof(t), "[::1]:%u", port);
    struct upstream_addr dst = target(t);
    for (int i = 0; i < 3; i++)
        escaper_udp_sendto(&u, &dst, "six", 3);
    is_int(peer_echo(peer, 3), 3, "three datagrams over IPv6");
    run_until(&rx.n, 1, 2);
    spin();
    is_u64(rx.n, 1, "closed from the first callback: no more callbacks");
    ok(u.priv == NULL, "closed");
    is_u64(errors, 0, "no errors");
    close(peer);
}

int main(void)
{
    struct conf_ctx cx;

    td.nworkers = 1;
    tg.d = &td;
    tw.id = 0;
    tw.d = &td;
    tw.rng = 0x1234567;
    tw.loop = ev_loop_new(0);
    tw.bufs = buf_pool_new();
    memset(&fk, 0, sizeof(fk));
    fk.base.obj.kind = OBJ_RESOLVER;
    fk.base.obj.name = "fake";
    fk.base.obj.gen = &tg;
    arena_init(&fk.base.obj.arena, 1024);
    fk.base.ops = &fake_ops;
    fk.base.cache.protective_query_timeout_ns = 60 * NS_PER_SEC;
    fk.base.cache.positive_min_ttl = 1;
    fk.base.cache.positive_max_ttl = 3600;
    fk.base.cache.negative_min_ttl = 1;
    memset(&cx, 0, sizeof(cx));
    cx.arena = &fk.base.obj.arena;
    if (resolve_cache_init(&fk.base, &cx) < 0)
        abort();
    esc_setup();

    test_families();
    test_ip_and_name();
    test_connect_mode_and_truncation();
    test_close_in_callback_and_ipv6();

    resolve_worker_detach(&fk.base, &tw);
    resolve_cache_destroy(&fk.base);
    for (int i = 0; i < fk.nq; i++)
        free(fk.q[i]);
    arena_free(&fk.base.obj.arena);
    tconf_done(&egress_conf);
    escaper_stats_unref(esc.base.stats);
    buf_pool_free(tw.bufs);
    ev_loop_destroy(tw.loop);
    return done_testing();
}
