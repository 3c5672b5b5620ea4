/* direct_fixed's TCP connect (Happy Eyeballs, RFC 8305) on a real ev_loop with real
 * sockets on loopback and a fake resolver answered by hand: family preference and the
 * resolution delay, the connection attempt delay, the second resolution timeout,
 * retries, the egress filter, error classification and cancellation. */
#include <poll.h>

#include "modules/escaper/direct_fixed.c"

#include "daemon.h"

#include "tap.h"
#include "testconf.h"

static struct daemon td;
static struct generation tg;
static struct worker tw;

/* ------------------------------------------------------------ fake driver */

struct fake_q {
    struct resolve_query base;
    resolve_cb cb;
    void *arg;
    int family;
    bool cancelled;
};

struct fake {
    struct resolver base;
    struct fake_q *q[64];
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
    q->family = family;
    f->q[f->nq++] = q;
    return &q->base;
}

static void fake_cancel(struct resolve_query *qb)
{
    ((struct fake_q *)qb)->cancelled = true;
}

static const struct resolver_ops fake_ops = {
    .type = "fake_drv",
    .size = sizeof(struct fake),
    .query = fake_query,
    .cancel = fake_cancel,
};

static struct fake fk;

/* the pending query for a family, or NULL */
static struct fake_q *pending(int family)
{
    for (int i = fk.nq - 1; i >= 0; i--)
        if (fk.q[i]->family == family && !fk.q[i]->cancelled && fk.q[i]->cb)
            return fk.q[i];
    return NULL;
}

static void answer(int family, const char *ip)
{
    struct fake_q *q = pending(family);
    struct ip_addr a[1];
    struct resolve_result res = {.ips = a, .ttl = 60};

    if (!q)
        return;
    if (ip) {
        ip_parse(ip, &a[0]);
        res.n = 1;
    } else {
        res.err = RESOLVE_E_NOTFOUND;
    }
    resolve_cb cb = q->cb;
    q->cb = NULL;
    cb(q->arg, &res);
}

/* ------------------------------------------------------------------ helpers */

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
}

static int done_count;
static bool done_ok;

static void on_done(struct connect_ctx *cc, bool ok)
{
    done_count++;
    done_ok = ok;
}

/* run the loop until the connect finished or max seconds passed; returns seconds */
static double run_until_done(double max)
{
    ev_timer tick;
    ev_tstamp start = ev_time(), end = start + max;

    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(tw.loop, &tick);
    while (!done_count && ev_time() < end)
        ev_run(tw.loop, EVRUN_ONCE);
    ev_timer_stop(tw.loop, &tick);
    return ev_time() - start;
}

static void run_for(double secs)
{
    ev_timer tick;
    ev_tstamp end = ev_time() + secs;

    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(tw.loop, &tick);
    while (ev_time() < end)
        ev_run(tw.loop, EVRUN_ONCE);
    ev_timer_stop(tw.loop, &tick);
}

/* A listening socket on host; *port gets its port (or uses *port when non-zero). */
static int listener(const char *host, uint16_t *port, int backlog)
{
    struct ip_addr a;
    union sockaddr_any sa;
    socklen_t len;
    int one = 1, fd;

    ip_parse(host, &a);
    fd = socket(a.family, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a.family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    ip_to_sockaddr(&a, *port, &sa, &len);
    if (bind(fd, &sa.sa, len) < 0 || listen(fd, backlog) < 0) {
        close(fd);
        return -1;
    }
    len = sizeof(sa);
    getsockname(fd, &sa.sa, &len);
    sockaddr_to_ip(&sa, &a, port);
    return fd;
}

/* a port nobody listens on */
static uint16_t closed_port(void)
{
    uint16_t p = 0;
    int fd = listener("127.0.0.1", &p, 1);
    close(fd);
    return p;
}

static struct direct_fixed esc;
static struct tconf tcf[4];

static void esc_setup(const char *he)
{
    static const struct conf_key k = {"k"};

    memset(&esc, 0, sizeof(esc));
    esc.base.obj.kind = OBJ_ESCAPER;
    esc.base.obj.name = "direct";
    esc.base.obj.gen = &tg;
    esc.base.ops = &escaper_direct_fixed_ops;
    esc.base.stats = escaper_stats_new();
    esc.resolver = &fk.base;
    for (int i = 0; i < 4; i++)
        tconf_done(&tcf[i]);
    if (tconf_run(&tcf[0], "{default: allow, allow: [127.0.0.1, '::1']}", cp_acl_egress,
                  &esc.egress, &k) < 0 ||
        tconf_run(&tcf[1], he, cp_happy_eyeballs, &esc.he, &k) < 0 ||
        tconf_run(&tcf[2], "{max_retry: 3, each_timeout: 1s}", cp_tcp_connect, &esc.tcp_connect,
                  &k) < 0 ||
        tconf_run(&tcf[3], "{}", cp_tcp_misc_opts, &esc.tcp_misc_opts, &k) < 0)
        abort();
}

static struct connect_ctx cc;

static int start(const char *host, uint16_t port)
{
    const char *why;

    memset(&cc, 0, sizeof(cc));
    cc.w = &tw;
    cc.on_done = on_done;
    done_count = 0;
    done_ok = false;
    if (upstream_parse(host, &cc.target, &why) < 0)
        abort();
    cc.target.port = port;
    return escaper_tcp_connect(&esc.base, &cc);
}

static int peer_family(void)
{
    return cc.peer.sa.sa_family;
}

int main(void)
{
    uint16_t p4 = 0, p6;
    int l4, l6;

    tw.loop = ev_loop_new(EVFLAG_AUTO);
    tw.rng = 42;
    tw.d = &td;
    td.nworkers = 1;
    tg.d = &td;
    fk.base.ops = &fake_ops;
    fk.base.obj.kind = OBJ_RESOLVER;
    fk.base.obj.name = "fake";
    fk.base.obj.gen = &tg;

    esc_setup("{resolution_delay: 50ms, connection_attempt_delay: 250ms, "
              "second_resolution_timeout: 200ms}");
    l4 = listener("127.0.0.1", &p4, 16);
    p6 = p4;
    l6 = listener("::1", &p6, 16);
    ok(l4 >= 0, "IPv4 listener");

    /* an IP target: no resolution, connected from the loop (never inside the call) */
    ok(start("127.0.0.1", p4) == 0, "connect to an IP starts");
    is_int(done_count, 0, "no callback inside escaper_tcp_connect");
    run_until_done(2);
    ok(done_count == 1 && done_ok && cc.fd >= 0, "connected to 127.0.0.1");
    is_int(cc.tries, 1, "one attempt");
    is_int(peer_family(), AF_INET, "peer is IPv4");
    close(cc.fd);

    /* refused: 521 and the reason */
    ok(start("127.0.0.1", closed_port()) == 0, "connect to a closed port starts");
    run_until_done(2);
    ok(done_count == 1 && !done_ok, "refused connect fails");
    is_int(cc.reason, TR_UPSTREAM_NOT_CONNECTED, "reason UpstreamNotConnected");
    is_int(cc.http_status, 521, "status 521");

    /* egress filter: 127.0.0.2 is loopback and not allowed */
    ok(start("127.0.0.2", p4) == 0, "connect to a forbidden IP starts");
    run_until_done(2);
    ok(done_count == 1 && !done_ok, "forbidden target fails");
    is_int(cc.reason, TR_FORBIDDEN_BY_RULE, "reason ForbiddenByRule");
    is_int(cc.http_status, 403, "status 403");

    /* a name: A answers, AAAA never does -> connect once the second timeout passes?
     * No: the preferred family (IPv4) answered, so attempts start at once */
    ok(start("v4.test", p4) == 0, "name lookup starts");
    ok(pending(AF_INET) && pending(AF_INET6), "both families asked");
    answer(AF_INET, "127.0.0.1");
    double t = run_until_done(2);
    ok(done_count == 1 && done_ok, "connected with the IPv4 answer");
    ok(t < 0.2, "without waiting for AAAA (%.3fs)", t);
    ok(pending(AF_INET6) == NULL, "the AAAA lookup was cancelled at success");
    close(cc.fd);

    if (l6 >= 0) {
        /* AAAA first, A within the resolution delay: IPv4 (preferred) is tried first */
        start("both.test", p4);
        answer(AF_INET6, "::1");
        run_for(0.01);
        is_int(done_count, 0, "waiting the resolution delay for A");
        answer(AF_INET, "127.0.0.1");
        run_until_done(2);
        ok(done_ok && peer_family() == AF_INET, "the preferred family won");
        close(cc.fd);

        /* AAAA first, A never: after the resolution delay IPv6 is used */
        start("v6only.test", p4);
        answer(AF_INET6, "::1");
        t = run_until_done(2);
        ok(done_ok && peer_family() == AF_INET6, "IPv6 used after the resolution delay");
        ok(t >= 0.04 && t < 0.5, "after about 50ms (%.3fs)", t);
        close(cc.fd);
    } else {
        ok(1, "# SKIP no IPv6 loopback");
        ok(1, "# SKIP no IPv6 loopback");
        ok(1, "# SKIP no IPv6 loopback");
    }

    /* second_resolution_timeout: A refused, AAAA never answers -> fail after ~200ms */
    start("slow6.test", closed_port());
    answer(AF_INET, "127.0.0.1");
    t = run_until_done(3);
    ok(done_count == 1 && !done_ok, "fails without the AAAA answer");
    ok(t >= 0.15 && t < 1.0, "after the second resolution timeout (%.3fs)", t);
    is_int(cc.http_status, 521, "refused");

    /* connection attempt delay: a first address that never answers (a full accept
     * queue drops the SYN), a second good one: success after ~250ms, not 1s */
    uint16_t pb = 0;
    int black = listener("127.0.0.1", &pb, 0);
    int fill[3];
    for (int i = 0; i < 3; i++) {
        union sockaddr_any sa;
        socklen_t len;
        struct ip_addr a;
        ip_parse("127.0.0.1", &a);
        ip_to_sockaddr(&a, pb, &sa, &len);
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], &sa.sa, len);
    }
    run_for(0.1);
    /* both addresses are 127.0.0.1 with different ports is not possible through one
     * name: use the black-holed port for the name, then check the retry budget */
    start("black.test", pb);
    answer(AF_INET, "127.0.0.1");
    answer(AF_INET6, NULL);
    t = run_until_done(3);
    ok(done_count == 1 && !done_ok, "a black-holed target fails");
    is_int(cc.http_status, 522, "connect timeout is 522");
    ok(t >= 0.9 && t < 2.5, "after each_timeout (%.3fs)", t);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(black);

    /* cancellation: the callback never runs, the lookups are cancelled */
    start("cancel.test", p4);
    escaper_connect_cancel(&cc);
    answer(AF_INET, "127.0.0.1");
    run_for(0.1);
    is_int(done_count, 0, "no callback after cancel");

    /* a name that does not resolve: 530 */
    start("nx.test", p4);
    answer(AF_INET, NULL);
    answer(AF_INET6, NULL);
    run_until_done(2);
    ok(done_count == 1 && !done_ok, "NXDOMAIN fails");
    is_int(cc.reason, TR_UPSTREAM_NOT_RESOLVED, "reason UpstreamNotResolved");
    is_int(cc.http_status, 530, "status 530");

    close(l4);
    if (l6 >= 0)
        close(l6);
    for (int i = 0; i < fk.nq; i++)
        free(fk.q[i]);
    for (int i = 0; i < 4; i++)
        tconf_done(&tcf[i]);
    escaper_stats_unref(esc.base.stats);
    ev_loop_destroy(tw.loop);
    return done_testing();
}
