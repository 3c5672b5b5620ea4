/* Resolver c_ares (and fail_over, deny_all) built through the real config path and
 * run on a real ev_loop against dnsmasq on loopback (reference/test-peers.md §5) and
 * a silent UDP socket. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <ev.h>

#include "conf.h"
#include "confval.h"
#include "daemon.h"
#include "gen.h"
#include "registry.h"
#include "resolve.h"
#include "tap.h"
#include "worker.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

static struct daemon td;
static struct worker tw;
static char tmpdir[] = "/tmp/c_ares_test_XXXXXX";
static char dnslog[256];
static pid_t dns_pid;           /* 0 once reaped */

static void stop_dnsmasq(void)
{
    if (dns_pid > 0) {
        kill(dns_pid, SIGTERM);
        waitpid(dns_pid, NULL, 0);
        dns_pid = 0;
    }
}

/* ------------------------------------------------------------------ peers */

static int udp_socket(uint16_t *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Is the port taken on 127.0.0.1 for this socket type? */
static bool port_busy(int type, uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, type, 0), one = 1;
    bool busy;

    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    busy = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == EADDRINUSE;
    close(fd);
    return busy;
}

/* A port free for both UDP and TCP (dnsmasq takes both). */
static uint16_t free_port(void)
{
    for (int i = 0; i < 50; i++) {
        uint16_t port;
        int fd = udp_socket(&port);
        if (fd < 0)
            return 0;
        close(fd);
        if (!port_busy(SOCK_STREAM, port) && !port_busy(SOCK_DGRAM, port))
            return port;
    }
    return 0;
}

static pid_t start_dnsmasq(uint16_t port)
{
    char portarg[32], pidarg[300];
    pid_t pid;

    snprintf(portarg, sizeof(portarg), "--port=%u", port);
    snprintf(pidarg, sizeof(pidarg), "--pid-file=%s/dnsmasq.pid", tmpdir);
    snprintf(dnslog, sizeof(dnslog), "%s/dns.log", tmpdir);
    pid = fork();
    if (pid == 0) {
        int fd = open(dnslog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(DNSMASQ, "dnsmasq", "-k", "-C", "/dev/null", portarg, "--listen-address=127.0.0.1",
              "--bind-interfaces", "--no-resolv", "--no-hosts", pidarg, "--log-facility=-",
              "--log-queries", "--address=/origin.test/127.0.0.1", "--host-record=v6.test,::1",
              "--address=/blocked.test/", "--host-record=two.test,127.0.0.2",
              "--host-record=two.test,127.0.0.3", "--address=/#/", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && pid > 0; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        if (port_busy(SOCK_DGRAM, port) && port_busy(SOCK_STREAM, port)) {
            usleep(20000);
            if (waitpid(pid, NULL, WNOHANG) == pid)
                return -1;  /* someone else's port after all */
            return pid;
        }
        usleep(10000);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

static int count_in_log(const char *needle)
{
    char buf[65536];
    int fd = open(dnslog, O_RDONLY), n = 0;
    ssize_t len = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

    if (fd >= 0)
        close(fd);
    if (len <= 0)
        return 0;
    buf[len] = 0;
    for (const char *p = buf; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---------------------------------------------------------------- helpers */

struct got {
    int calls, err;
    uint8_t why;
    size_t n;
    char ip[2][64];
    double at;
};

static void on_got(void *arg, int family, const struct resolve_result *res)
{
    struct got *g = arg;

    g->calls++;
    g->err = res->err;
    g->why = res->why;
    g->n = res->n;
    g->at = ev_time();
    for (size_t i = 0; i < res->n && i < 2; i++)
        ip_str(&res->ips[i], g->ip[i], sizeof(g->ip[i]));
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
}

static void run_until(const int *calls, double max)
{
    ev_timer tick;
    ev_tstamp end = ev_time() + max;

    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(tw.loop, &tick);
    while (!*calls && ev_time() < end)
        ev_run(tw.loop, EVRUN_ONCE);
    ev_timer_stop(tw.loop, &tick);
}

/* Resolve and wait; returns the time it took. */
static double lookup(struct resolver *r, const char *name, int family, struct got *g, double max)
{
    double t0 = ev_time();

    memset(g, 0, sizeof(*g));
    if (!resolve_start(r, &tw, name, family, on_got, g))
        return -1;
    run_until(&g->calls, max);
    return g->calls ? g->at - t0 : -1;
}

static struct generation *build(const char *yaml, struct generation *old, struct cfile **cf,
                                char **err)
{
    struct spec_list specs = {0};
    struct generation *g;

    *err = NULL;
    *cf = cfile_parse("t.yaml", yaml, strlen(yaml), err);
    if (!*cf)
        return NULL;
    const struct cnode *root = (*cf)->docs[0];
    for (size_t i = 0; i < root->n; i++)
        spec_list_add(&specs, OBJ_RESOLVER, root->items[i], *cf, 0);
    g = gen_build(&td, &specs, old, false, err);
    spec_list_free(&specs);
    return g;
}

static void gen_done(struct generation *g, struct cfile *cf)
{
    if (g) {
        for (size_t i = 0; i < g->n[OBJ_RESOLVER]; i++) {
            struct resolver *r = (struct resolver *)g->objs[OBJ_RESOLVER][i];
            if (r->ops->worker_detach)
                r->ops->worker_detach(r, &tw);
        }
        g->d = NULL; /* destroy here, not through the (absent) main loop */
        gen_unref(g);
    }
    cfile_unref(cf);
}

static void expect_error(const char *yaml, const char *want, const char *what)
{
    struct cfile *cf;
    char *err;
    struct generation *g = build(yaml, NULL, &cf, &err);

    ok(!g && err && strstr(err, want), "config error: %s", what);
    if (!(err && strstr(err, want)))
        printf("#   got: %s\n", err ? err : "(built)");
    free(err);
    gen_done(g, cf);
}

static struct resolver *res_find(struct generation *g, const char *name)
{
    return (struct resolver *)gen_find(g, OBJ_RESOLVER, name);
}

/* ------------------------------------------------------------------ tests */

static void test_config(uint16_t port)
{
    char y[2048];

    expect_error("- {name: x, type: c_ares, bogus: 1}", "unknown key 'bogus'", "unknown key");
    expect_error("- {name: x, type: c_ares, server: 'nohost'}", "invalid DNS server", "bad server");
    expect_error("- {name: x, type: c_ares, server: '0.0.0.0'}", "unspecified",
                 "unspecified server");
    expect_error("- {name: x, type: c_ares, server: '224.0.0.1:53'}", "multicast",
                 "multicast server");
    expect_error("- {name: x, type: c_ares, bind_ipv4: '::1'}", "IPv4", "bind_ipv4 family");
    expect_error("- {name: x, type: c_ares, each_tries: 0}", "out of range", "each_tries bounds");
    expect_error("- {name: x, type: c_ares, positive_min_ttl: 100, positive_max_ttl: 10}",
                 "larger than", "ttl order");
    expect_error("- {name: x, type: hickory, server: 127.0.0.1}", "unsupported",
                 "hickory unsupported");
    expect_error("- {name: x, type: fail_over, primary: a}", "missing required key",
                 "fail_over needs standby");
    expect_error("- {name: a, type: c_ares}\n- {name: x, type: fail_over, primary: a, standby: a}",
                 "must differ", "primary = standby");
    expect_error("- {name: x, type: fail_over, primary: a, standby: b}", "not defined",
                 "missing next resolver");
    expect_error("- {name: d, type: deny_all}\n"
                 "- {name: a, type: fail_over, primary: b, standby: d}\n"
                 "- {name: b, type: failover, primary: d, standby: a}",
                 "resolvers form a loop", "fail_over loop");

    snprintf(y, sizeof(y),
             "- name: full\n"
             "  type: c-ares\n"
             "  server: \"127.0.0.1:%u [::1]:53 127.0.0.2\"\n"
             "  each_timeout: 2s\n"
             "  each_tries: 2\n"
             "  max_timeout: 5000\n"
             "  udp_max_quires: 10\n"
             "  round_robin: true\n"
             "  socket_send_buffer_size: 64KiB\n"
             "  socket_recv_buffer_size: 65536\n"
             "  bind_ipv4: 127.0.0.1\n"
             "  bind_ipv6: '::1'\n"
             "  graceful_stop_wait: 10s\n"
             "  protective_query_timeout: 30s\n"
             "  positive_min_ttl: 10\n"
             "  max_cache_ttl: 600\n"
             "  negative_ttl: 5\n"
             "- name: fo\n"
             "  type: FailOver\n"
             "  primary: full\n"
             "  standby: d\n"
             "  fallback_timeout: 1s\n"
             "  negative_ttl: 7\n"
             "  retry_empty_record: true\n"
             "- {name: d, type: denyall}\n",
             port);
    struct cfile *cf;
    char *err;
    struct generation *g = build(y, NULL, &cf, &err);
    ok(g != NULL, "every key accepted%s%s", err ? ": " : "", err ? err : "");
    free(err);
    if (g) {
        struct resolver *r = res_find(g, "full"), *fo = res_find(g, "fo");
        ok(r && !strcmp(r->obj.type, "c_ares") && r->cache.positive_max_ttl == 600 &&
               r->cache.negative_min_ttl == 5 && r->cache.positive_min_ttl == 10 &&
               r->cache.protective_query_timeout_ns == 30 * NS_PER_SEC,
           "common cache keys and aliases");
        ok(fo && !strcmp(fo->obj.type, "fail_over") && fo->cache.negative_min_ttl == 7 &&
               fo->cache.positive_max_ttl == 3600,
           "fail_over negative_ttl");
    }
    gen_done(g, cf);
}

static void test_reload(uint16_t port)
{
    char y1[512], y2[512];
    struct cfile *c1, *c2, *c3;
    char *err;
    struct generation *g1, *g2, *g3;

    snprintf(y1, sizeof(y1),
             "- {name: a, type: c_ares, server: '127.0.0.1:%u'}\n"
             "- {name: b, type: c_ares, server: '127.0.0.1:%u'}\n"
             "- {name: f, type: fail_over, primary: a, standby: b}\n",
             port, port);
    snprintf(y2, sizeof(y2),
             "- {name: a, type: c_ares, server: '127.0.0.1:%u'}\n"
             "- {name: b, type: c_ares, server: '127.0.0.1:%u', each_tries: 5}\n"
             "- {name: f, type: fail_over, primary: a, standby: b}\n",
             port, port);
    g1 = build(y1, NULL, &c1, &err);
    free(err);
    g2 = build(y1, g1, &c2, &err);
    free(err);
    g3 = build(y2, g2, &c3, &err);
    free(err);
    ok(g1 && g2 && g3, "three generations");
    if (g1 && g2 && g3) {
        ok(res_find(g1, "a")->shared == res_find(g2, "a")->shared &&
               res_find(g1, "f")->shared == res_find(g2, "f")->shared,
           "unchanged resolvers keep their cache across a reload");
        ok(res_find(g2, "a")->shared == res_find(g3, "a")->shared, "a unchanged again: kept");
        ok(res_find(g2, "b")->shared != res_find(g3, "b")->shared, "b changed: fresh cache");
        ok(res_find(g2, "f")->shared != res_find(g3, "f")->shared,
           "fail_over whose standby changed: fresh cache");
    }
    gen_done(g1, c1);
    gen_done(g2, c2);
    gen_done(g3, c3);
}

static void on_ctl(void *arg, int err, const struct ip_addr *ips, size_t n)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    g->n = n;
    for (size_t i = 0; i < n && i < 2; i++)
        ip_str(&ips[i], g->ip[i], sizeof(g->ip[i]));
}

static void test_queries(uint16_t port, uint16_t silent_port)
{
    char y[2048];
    struct cfile *cf;
    char *err;
    struct generation *g;
    struct got a;
    double t;

    snprintf(y, sizeof(y),
             "- {name: dns, type: c-ares, server: '127.0.0.1:%u', each_timeout: 500, "
             "each_tries: 2}\n"
             "- {name: silent, type: cares, server: ['127.0.0.1:%u'], each_timeout: 100, "
             "each_tries: 2}\n"
             "- {name: capped, type: CAres, server: '127.0.0.1:%u', each_timeout: 2s, "
             "each_tries: 3, max_timeout: 150}\n"
             "- {name: fo, type: failover, primary: silent, standby: dns, fallback_delay: 50ms}\n"
             "- {name: deny, type: deny_all}\n",
             port, silent_port, silent_port);
    g = build(y, NULL, &cf, &err);
    ok(g != NULL, "resolvers built%s%s", err ? ": " : "", err ? err : "");
    free(err);
    if (!g) {
        gen_done(g, cf);
        return;
    }
    struct resolver *r = res_find(g, "dns"), *silent = res_find(g, "silent"),
                    *capped = res_find(g, "capped"), *fo = res_find(g, "fo"),
                    *deny = res_find(g, "deny");

    lookup(r, "origin.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == 0 && a.n == 1 && !strcmp(a.ip[0], "127.0.0.1"), "A answer");
    lookup(r, "v6.test", AF_INET6, &a, 5);
    ok(a.calls == 1 && a.err == 0 && a.n == 1 && !strcmp(a.ip[0], "::1"), "AAAA answer");
    lookup(r, "two.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == 0 && a.n == 2, "two A records");
    lookup(r, "blocked.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == RESOLVE_E_NOTFOUND && a.why == RESOLVE_W_NXDOMAIN, "NXDOMAIN");
    lookup(r, "v6.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == RESOLVE_E_NOTFOUND, "no A record for an AAAA-only name");

    /* /etc/hosts through a resolver whose server never answers */
    t = lookup(silent, "localhost", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == 0 && !strcmp(a.ip[0], "127.0.0.1") && t < 0.25,
       "localhost from /etc/hosts, no network (%.3fs)", t);

    t = lookup(silent, "nothing.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == RESOLVE_E_TIMEOUT && a.why == RESOLVE_W_TIMEOUT,
       "timeout from a silent server");
    ok(t >= 0.15 && t < 1.5, "within each_timeout x tries (%.3fs)", t);
    t = lookup(capped, "nothing.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == RESOLVE_E_TIMEOUT && t >= 0.1 && t < 1.0,
       "max_timeout cuts a 2s each_timeout short (%.3fs)", t);

    /* cancellation: the callback never runs; the answer still fills the cache */
    struct got c = {0};
    struct resolve_job *j = resolve_start(r, &tw, "cancel.test", AF_INET, on_got, &c);
    resolve_cancel(j);
    run_until(&c.calls, 0.3);
    is_int(c.calls, 0, "cancelled query never calls back");
    lookup(r, "cancel.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == RESOLVE_E_NOTFOUND, "its answer was cached");
    is_int(count_in_log("query[A] cancel.test"), 1, "dnsmasq asked once for cancel.test");

    /* cache hits: no second query */
    lookup(r, "origin.test", AF_INET, &a, 5);
    ok(a.calls == 1 && !strcmp(a.ip[0], "127.0.0.1"), "second A lookup answered");
    is_int(count_in_log("query[A] origin.test"), 1, "dnsmasq asked once for origin.test");

    /* control query: A then AAAA */
    memset(&a, 0, sizeof(a));
    ok(resolve_control_query(r, &tw, "v6.test", RQ_IPV4_FIRST, on_ctl, &a) == 0, "control query");
    run_until(&a.calls, 5);
    ok(a.calls == 1 && a.err == 0 && a.n == 1 && !strcmp(a.ip[0], "::1"),
       "control query merges both families");

    /* fail_over: silent primary, standby answers after fallback_delay */
    t = lookup(fo, "www.origin.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == 0 && !strcmp(a.ip[0], "127.0.0.1") && t >= 0.04 && t < 0.5,
       "fail_over: standby answers after the delay (%.3fs)", t);

    lookup(deny, "origin.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == RESOLVE_E_DENIED, "deny_all: DENIED");

    /* dnsmasq gone: cached answers still come */
    stop_dnsmasq();
    t = lookup(r, "origin.test", AF_INET, &a, 5);
    ok(a.calls == 1 && a.err == 0 && !strcmp(a.ip[0], "127.0.0.1"),
       "cached answer without dnsmasq (%.3fs)", t);

    /* a query in flight when the worker lets the resolver go: never called back */
    memset(&c, 0, sizeof(c));
    j = resolve_start(silent, &tw, "inflight.test", AF_INET, on_got, &c);
    silent->ops->worker_detach(silent, &tw);
    run_until(&c.calls, 0.4);
    is_int(c.calls, 0, "no callback after the channel was destroyed");
    resolve_cancel(j);

    gen_done(g, cf);
}

int main(void)
{
    uint16_t port = 0, silent_port = 0;
    int silent;

    signal(SIGPIPE, SIG_IGN);
    td.nworkers = 1;
    tw.id = 0;
    tw.d = &td;
    tw.loop = ev_loop_new(0);

    if (access(DNSMASQ, X_OK) < 0) {
        printf("ok 1 # SKIP dnsmasq missing\n1..1\n");
        return 0;
    }
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    silent = udp_socket(&silent_port);
    port = free_port();

    test_config(port);
    test_reload(port);

    for (int i = 0; i < 5 && dns_pid <= 0; i++) {
        if (i)
            port = free_port();
        dns_pid = start_dnsmasq(port);
    }
    ok(dns_pid > 0, "dnsmasq started on port %u", port);
    if (dns_pid <= 0) {
        char b[4096];
        int fd = open(dnslog, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, b, sizeof(b) - 1) : -1;
        b[n > 0 ? n : 0] = 0;
        printf("# dnsmasq log: %s\n", b);
    }
    if (dns_pid > 0)
        test_queries(port, silent_port);
    stop_dnsmasq();

    close(silent);
    ev_loop_destroy(tw.loop);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmpdir);
    return done_testing();
}
