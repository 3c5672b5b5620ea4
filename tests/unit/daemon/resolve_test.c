/* The resolver cache layer (daemon/resolve.c) and the fail_over module, driven by a
 * fake driver that the test answers by hand, on a real ev_loop with a fake clock for
 * the cache. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t test_now_ms = 1000000;
#define RESOLVE_NOW_MS(w) (test_now_ms)
#define RESOLVE_CACHE_CAP 4

#include "daemon/resolve.c"
#include "modules/resolver/fail_over.c"

#include "registry.h"
#include "tap.h"

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
    bool cancelled, answered;
};

struct fake {
    struct resolver base;
    struct fake_q *q[FAKE_MAXQ];
    int nq;
    bool refuse;            /* query returns NULL */
};

static struct resolve_query *fake_query(struct resolver *r, struct worker *w, const char *name,
                                        int family, resolve_cb cb, void *arg)
{
    struct fake *f = (struct fake *)r;
    struct fake_q *q;

    if (f->refuse || f->nq >= FAKE_MAXQ)
        return NULL;
    q = calloc(1, sizeof(*q));
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
    ((struct fake_q *)qb)->cancelled = true;
}

static const struct resolver_ops fake_ops = {
    .type = "fake_drv",
    .size = sizeof(struct fake),
    .query = fake_query,
    .cancel = fake_cancel,
};

static void obj_setup(struct resolver *r, const char *name, const void *ops)
{
    r->obj.kind = OBJ_RESOLVER;
    r->obj.name = name;
    r->obj.type = ((const struct resolver_ops *)ops)->type;
    r->obj.gen = &tg;
    arena_init(&r->obj.arena, 1024);
    r->ops = ops;
    r->cache.protective_query_timeout_ns = 60 * NS_PER_SEC;
    r->cache.positive_min_ttl = 30;
    r->cache.positive_max_ttl = 3600;
    r->cache.negative_min_ttl = 30;
}

static void fake_init(struct fake *f, const char *name)
{
    struct conf_ctx cx = {.arena = &f->base.obj.arena};

    memset(f, 0, sizeof(*f));
    obj_setup(&f->base, name, &fake_ops);
    if (resolve_cache_init(&f->base, &cx) < 0)
        abort();
}

static void fake_free(struct fake *f)
{
    resolve_worker_detach(&f->base, &tw);
    resolve_cache_destroy(&f->base);
    for (int i = 0; i < f->nq; i++)
        free(f->q[i]);
    arena_free(&f->base.obj.arena);
}

/* Answer fake query i. */
static void fake_answer(struct fake *f, int i, int err, uint8_t why, const char *ip, uint32_t ttl)
{
    struct ip_addr ips[2];
    struct resolve_result res = {.err = err, .why = why, .ips = ips, .ttl = ttl};
    struct fake_q *q = f->q[i];

    if (ip) {
        ip_parse(ip, &ips[0]);
        res.n = 1;
    }
    q->answered = true;
    q->cb(q->arg, &res);
}

/* ---------------------------------------------------------------- helpers */

struct got {
    int calls;
    int family;
    int err;
    uint8_t why;
    size_t n;
    uint32_t ttl;
    char ip[64];
};

static void on_got(void *arg, int family, const struct resolve_result *res)
{
    struct got *g = arg;

    g->calls++;
    g->family = family;
    g->err = res->err;
    g->why = res->why;
    g->n = res->n;
    g->ttl = res->ttl;
    g->ip[0] = 0;
    if (res->n)
        ip_str(&res->ips[0], g->ip, sizeof(g->ip));
}

static void spin(void)
{
    for (int i = 0; i < 4; i++)
        ev_run(tw.loop, EVRUN_NOWAIT);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
}

/* Run the loop until *calls > 0 or max seconds passed. */
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

static void run_for(double secs)
{
    int never = 0;
    run_until(&never, secs);
}

/* ------------------------------------------------------------------ tests */

static void test_ttl_rules(void)
{
    static const struct {
        uint32_t r, expire, vanish;
    } v[] = {
        {0, 30, 31},     {10, 30, 31},      {30, 30, 31},       {31, 30, 31},
        {45, 30, 45},    {60, 30, 60},      {61, 31, 61},       {100, 70, 100},
        {3630, 3600, 3630}, {3631, 3600, 3631}, {86400, 3600, 86400},
    };

    for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
        uint32_t e, va;
        resolve_ttl_rule(v[i].r, 30, 3600, &e, &va);
        ok(e == v[i].expire && va == v[i].vanish, "ttl %u: expire %u vanish %u (got %u %u)",
           v[i].r, v[i].expire, v[i].vanish, e, va);
    }
}

static void test_cache(void)
{
    struct fake f;
    struct got a = {0}, b = {0}, c = {0}, d = {0};
    struct resolve_job *j;

    fake_init(&f, "fake");
    j = resolve_start(&f.base, &tw, "a.test", AF_INET, on_got, &a);
    ok(j && f.nq == 1 && a.calls == 0, "miss: one driver query, no answer yet");
    is_str(f.q[0]->name, "a.test", "driver asked for the name");
    fake_answer(&f, 0, 0, 0, "192.0.2.1", 100);
    ok(a.calls == 1 && a.err == 0 && !strcmp(a.ip, "192.0.2.1") && a.family == AF_INET,
       "answer delivered");

    j = resolve_start(&f.base, &tw, "a.test", AF_INET, on_got, &b);
    ok(j && b.calls == 0, "hit: not answered inside resolve_start");
    spin();
    ok(b.calls == 1 && !strcmp(b.ip, "192.0.2.1") && f.nq == 1, "hit: answered from cache");
    is_int(b.ttl, 100, "hit: remaining ttl");

    /* R = 100: expire 70, vanish 100 */
    test_now_ms += 71 * 1000;
    memset(&c, 0, sizeof(c));
    resolve_start(&f.base, &tw, "a.test", AF_INET, on_got, &c);
    spin();
    ok(c.calls == 1 && !strcmp(c.ip, "192.0.2.1"), "expired: stale answer served");
    ok(f.nq == 2 && !strcmp(f.q[1]->name, "a.test"), "expired: refreshed in the background");
    fake_answer(&f, 1, 0, 0, "192.0.2.2", 300);
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "a.test", AF_INET, on_got, &d);
    spin();
    ok(d.calls == 1 && !strcmp(d.ip, "192.0.2.2") && f.nq == 2, "refresh stored the new answer");

    /* a failed refresh keeps the stale answer */
    test_now_ms += 280 * 1000; /* expire 270 passed, vanish 300 not */
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "a.test", AF_INET, on_got, &d);
    spin();
    ok(d.calls == 1 && !strcmp(d.ip, "192.0.2.2") && f.nq == 3, "stale again: refreshing");
    fake_answer(&f, 2, RESOLVE_E_TIMEOUT, RESOLVE_W_TIMEOUT, NULL, 0);
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "a.test", AF_INET, on_got, &d);
    spin();
    ok(d.calls == 1 && d.err == 0 && !strcmp(d.ip, "192.0.2.2") && f.nq == 3,
       "failed refresh: stale answer kept, no new query at once");

    /* vanished: a new query, the caller waits */
    test_now_ms += 30 * 1000;
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "a.test", AF_INET, on_got, &d);
    spin();
    ok(d.calls == 0 && f.nq == 4, "vanished: miss, the caller waits for the driver");
    fake_answer(&f, 3, 0, 0, "192.0.2.3", 300);
    ok(d.calls == 1 && !strcmp(d.ip, "192.0.2.3"), "vanished: fresh answer");

    /* the other family is another key */
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "a.test", AF_INET6, on_got, &d);
    ok(f.nq == 5 && f.q[4]->family == AF_INET6, "AAAA is cached apart from A");
    fake_answer(&f, 4, RESOLVE_E_NOTFOUND, RESOLVE_W_NODATA, NULL, 0);
    ok(d.calls == 1 && d.err == RESOLVE_E_NOTFOUND && d.why == RESOLVE_W_NODATA,
       "no data reported");

    /* negative entries: kept negative_min_ttl, never stale */
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "a.test", AF_INET6, on_got, &d);
    spin();
    ok(d.calls == 1 && d.err == RESOLVE_E_NOTFOUND && f.nq == 5, "negative answer cached");
    test_now_ms += 30 * 1000;
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "a.test", AF_INET6, on_got, &d);
    spin();
    ok(d.calls == 0 && f.nq == 6, "negative answer gone after negative_min_ttl");
    fake_answer(&f, 5, RESOLVE_E_NOTFOUND, RESOLVE_W_NXDOMAIN, NULL, 0);

    /* an empty success counts as no data */
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "empty.test", AF_INET, on_got, &d);
    fake_answer(&f, 6, 0, 0, NULL, 100);
    ok(d.calls == 1 && d.err == RESOLVE_E_NOTFOUND && d.why == RESOLVE_W_NODATA,
       "empty answer = not found");

    /* bad input fails asynchronously */
    memset(&d, 0, sizeof(d));
    ok(resolve_start(&f.base, &tw, "", AF_INET, on_got, &d) && d.calls == 0, "empty name: job");
    spin();
    ok(d.calls == 1 && d.err == RESOLVE_E_NOTFOUND, "empty name: not found, later");
    fake_free(&f);
}

static void test_lru(void)
{
    struct fake f;
    struct got g = {0};
    char name[32];

    fake_init(&f, "lru");
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        resolve_start(&f.base, &tw, name, AF_INET, on_got, &g);
        fake_answer(&f, i, 0, 0, "192.0.2.9", 600);
    }
    is_int(f.base.shared->c[0]->t.count, 4, "cache capped (4 in this test)");
    resolve_start(&f.base, &tw, "n0.test", AF_INET, on_got, &g);
    spin();
    is_int(f.nq, 6, "least recently used entry evicted");
    fake_answer(&f, 5, 0, 0, "192.0.2.9", 600);
    resolve_start(&f.base, &tw, "n4.test", AF_INET, on_got, &g);
    spin();
    is_int(f.nq, 6, "recent entry kept");
    fake_free(&f);
}

static void test_coalesce_cancel(void)
{
    struct fake f;
    struct got a = {0}, b = {0}, c = {0}, d = {0};
    struct resolve_job *ja, *jb, *jc;

    fake_init(&f, "co");
    ja = resolve_start(&f.base, &tw, "c.test", AF_INET, on_got, &a);
    jb = resolve_start(&f.base, &tw, "c.test", AF_INET, on_got, &b);
    jc = resolve_start(&f.base, &tw, "c.test", AF_INET, on_got, &c);
    ok(ja && jb && jc && f.nq == 1, "three lookups, one driver query");
    resolve_cancel(jb);
    fake_answer(&f, 0, 0, 0, "192.0.2.5", 60);
    ok(a.calls == 1 && c.calls == 1 && b.calls == 0, "waiters answered, the cancelled one not");
    spin();
    is_int(b.calls, 0, "cancelled callback never runs");

    /* every waiter gone: the query goes on and fills the cache */
    memset(&a, 0, sizeof(a));
    ja = resolve_start(&f.base, &tw, "d.test", AF_INET, on_got, &a);
    resolve_cancel(ja);
    ok(f.nq == 2 && !f.q[1]->cancelled, "last waiter cancelled: driver query kept");
    fake_answer(&f, 1, 0, 0, "192.0.2.6", 60);
    ok(a.calls == 0, "nobody called");
    resolve_start(&f.base, &tw, "d.test", AF_INET, on_got, &d);
    spin();
    ok(d.calls == 1 && !strcmp(d.ip, "192.0.2.6") && f.nq == 2, "its answer was cached");

    /* a cache hit cancelled before delivery */
    memset(&a, 0, sizeof(a));
    ja = resolve_start(&f.base, &tw, "d.test", AF_INET, on_got, &a);
    resolve_cancel(ja);
    spin();
    is_int(a.calls, 0, "cancelled cache hit never delivered");
    resolve_cancel(NULL);

    /* protective_query_timeout bounds a driver query */
    f.base.cache.protective_query_timeout_ns = 20 * NS_PER_MS;
    memset(&a, 0, sizeof(a));
    resolve_start(&f.base, &tw, "slow.test", AF_INET, on_got, &a);
    run_until(&a.calls, 2);
    ok(a.calls == 1 && a.err == RESOLVE_E_TIMEOUT && a.why == RESOLVE_W_DRIVER_TIMEOUT,
       "protective timeout answers TIMEOUT");
    ok(f.q[2]->cancelled, "and cancels the driver query");
    /* without waiters too */
    ja = resolve_start(&f.base, &tw, "slow2.test", AF_INET, on_got, &b);
    resolve_cancel(ja);
    run_for(0.1);
    ok(f.q[3]->cancelled, "background query bounded as well");

    /* detach with a waiter still attached: the job is orphaned, its owner frees it */
    f.base.cache.protective_query_timeout_ns = 60 * NS_PER_SEC;
    memset(&a, 0, sizeof(a));
    ja = resolve_start(&f.base, &tw, "orphan.test", AF_INET, on_got, &a);
    resolve_worker_detach(&f.base, &tw);
    ok(f.q[4]->cancelled && f.base.slots[0] == NULL, "detach cancels driver queries");
    resolve_cancel(ja);
    spin();
    is_int(a.calls, 0, "orphaned job never called");

    /* a new slot after detach still sees the shared cache */
    memset(&d, 0, sizeof(d));
    resolve_start(&f.base, &tw, "d.test", AF_INET, on_got, &d);
    spin();
    ok(d.calls == 1 && f.nq == 5, "cache survives the slot");
    fake_free(&f);
}

/* Cancel another job from inside a callback, start a new one, end "the task". */
struct reentrant {
    struct resolve_job *other;
    struct fake *f;
    struct got inner;
    int calls;
};

static void on_reentrant(void *arg, int family, const struct resolve_result *res)
{
    struct reentrant *re = arg;

    re->calls++;
    resolve_cancel(re->other);
    re->other = NULL;
    resolve_start(&re->f->base, &tw, "re.test", AF_INET, on_got, &re->inner);
}

static void test_reentrant(void)
{
    struct fake f;
    struct reentrant re = {0};
    struct got b = {0};

    fake_init(&f, "re");
    re.f = &f;
    resolve_start(&f.base, &tw, "re.test", AF_INET, on_reentrant, &re);
    re.other = resolve_start(&f.base, &tw, "re.test", AF_INET, on_got, &b);
    fake_answer(&f, 0, 0, 0, "192.0.2.7", 60);
    ok(re.calls == 1 && b.calls == 0, "a callback cancels a sibling waiting on the same query");
    spin();
    ok(re.inner.calls == 1 && !strcmp(re.inner.ip, "192.0.2.7") && f.nq == 1,
       "a lookup from inside a callback hits the fresh entry");
    fake_free(&f);
}

static void test_inherit(void)
{
    struct fake a, b;
    struct got g = {0};

    fake_init(&a, "inh");
    fake_init(&b, "inh");
    resolve_start(&a.base, &tw, "keep.test", AF_INET, on_got, &g);
    fake_answer(&a, 0, 0, 0, "192.0.2.8", 600);
    resolve_cache_inherit(&b.base, &a.base);
    ok(a.base.shared == b.base.shared && a.base.shared->refs == 2, "cache block shared");
    memset(&g, 0, sizeof(g));
    resolve_start(&b.base, &tw, "keep.test", AF_INET, on_got, &g);
    spin();
    ok(g.calls == 1 && b.nq == 0 && !strcmp(g.ip, "192.0.2.8"), "new object answers from it");
    fake_free(&a);
    ok(b.base.shared && b.base.shared->refs == 1, "old object gone, block kept");
    fake_free(&b);
}

static void test_deny(void)
{
    struct resolver deny;
    struct fake f;
    struct got g = {0};
    struct resolve_job *j;

    memset(&deny, 0, sizeof(deny));
    obj_setup(&deny, "deny", &resolver_deny_all_ops);
    j = resolve_start(&deny, &tw, "x.test", AF_INET, on_got, &g);
    ok(j && g.calls == 0, "deny_all: not answered inside resolve_start");
    spin();
    ok(g.calls == 1 && g.err == RESOLVE_E_DENIED, "deny_all: DENIED later");
    memset(&g, 0, sizeof(g));
    j = resolve_start(&deny, &tw, "x.test", AF_INET, on_got, &g);
    resolve_cancel(j);
    spin();
    is_int(g.calls, 0, "deny_all: cancellable");
    arena_free(&deny.obj.arena);

    fake_init(&f, "refuser");
    f.refuse = true;
    memset(&g, 0, sizeof(g));
    resolve_start(&f.base, &tw, "x.test", AF_INET, on_got, &g);
    ok(g.calls == 0, "driver failing at once: no synchronous call");
    spin();
    ok(g.calls == 1 && g.err == RESOLVE_E_DENIED, "driver failing at once: DENIED");
    fake_free(&f);
    is_str(resolve_strerror(RESOLVE_E_NOTFOUND), "NXDOMAIN", "strerror");
    is_str(resolve_strerror(RESOLVE_E_TIMEOUT), "timeout", "strerror timeout");
}

/* ------------------------------------------------------------- fail_over */

static void fo_init(struct fail_over *fo, struct fake *p, struct fake *s, double delay)
{
    struct conf_ctx cx = {.arena = &fo->base.obj.arena};

    memset(fo, 0, sizeof(*fo));
    obj_setup(&fo->base, "fo", &resolver_fail_over_ops);
    fo->primary = &p->base;
    fo->standby = &s->base;
    fo->primary_name = "p";
    fo->standby_name = "s";
    fo->fallback_delay_ns = (uint64_t)(delay * 1e9);
    if (resolve_cache_init(&fo->base, &cx) < 0)
        abort();
}

static void fo_free(struct fail_over *fo)
{
    resolve_worker_detach(&fo->base, &tw);
    resolve_cache_destroy(&fo->base);
    arena_free(&fo->base.obj.arena);
}

static void test_fail_over(void)
{
    struct fake p, s;
    struct fail_over fo;
    struct got g = {0};

    fake_init(&p, "p");
    fake_init(&s, "s");
    fo_init(&fo, &p, &s, 0.2);

    /* primary fast */
    resolve_start(&fo.base, &tw, "a.test", AF_INET, on_got, &g);
    ok(p.nq == 1 && s.nq == 0, "primary asked first, standby not yet");
    fake_answer(&p, 0, 0, 0, "192.0.2.1", 300);
    ok(g.calls == 1 && !strcmp(g.ip, "192.0.2.1"), "primary fast success wins");
    run_for(0.25);
    is_int(s.nq, 0, "standby never asked");

    /* primary slow: the standby is asked after the delay and wins */
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "b.test", AF_INET, on_got, &g);
    run_for(0.02);
    is_int(s.nq, 0, "standby not asked before fallback_delay");
    run_for(0.25);
    is_int(s.nq, 1, "standby asked after fallback_delay");
    fake_answer(&s, 0, 0, 0, "192.0.2.2", 300);
    ok(g.calls == 1 && !strcmp(g.ip, "192.0.2.2"), "primary slow: standby wins");
    fake_answer(&p, 1, 0, 0, "192.0.2.1", 300); /* late: fills p's cache only */
    is_int(g.calls, 1, "late primary answer not delivered again");

    /* primary answers after the delay but before the standby: primary wins */
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "c.test", AF_INET, on_got, &g);
    run_for(0.25);
    ok(p.nq == 3 && s.nq == 2, "both asked");
    fake_answer(&p, 2, 0, 0, "192.0.2.3", 300);
    ok(g.calls == 1 && !strcmp(g.ip, "192.0.2.3"), "first success after the delay wins");
    fake_answer(&s, 1, 0, 0, "192.0.2.4", 300);

    /* primary fails early: standby asked at once; both fail: last error */
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "d.test", AF_INET, on_got, &g);
    fake_answer(&p, 3, RESOLVE_E_REFUSED, RESOLVE_W_REFUSED, NULL, 0);
    ok(s.nq == 3 && g.calls == 0, "primary failure before the delay: standby asked at once");
    fake_answer(&s, 2, RESOLVE_E_TIMEOUT, RESOLVE_W_TIMEOUT, NULL, 0);
    ok(g.calls == 1 && g.err == RESOLVE_E_TIMEOUT, "both fail: the last error");

    /* after the delay: standby fails first, then primary: primary's error */
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "e.test", AF_INET, on_got, &g);
    run_for(0.25);
    fake_answer(&s, 3, RESOLVE_E_REFUSED, RESOLVE_W_SERVFAIL, NULL, 0);
    ok(g.calls == 0, "standby failure waits for the primary");
    fake_answer(&p, 4, RESOLVE_E_NOTFOUND, RESOLVE_W_NXDOMAIN, NULL, 0);
    ok(g.calls == 1 && g.err == RESOLVE_E_NOTFOUND, "both fail: the last error (primary)");

    /* primary fails early, standby succeeds */
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "f.test", AF_INET, on_got, &g);
    fake_answer(&p, 5, RESOLVE_E_TIMEOUT, RESOLVE_W_TIMEOUT, NULL, 0);
    fake_answer(&s, 4, 0, 0, "192.0.2.6", 300);
    ok(g.calls == 1 && g.err == 0 && !strcmp(g.ip, "192.0.2.6"), "standby rescues");

    /* no data from the primary is an answer, unless retry_empty_record */
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "g.test", AF_INET, on_got, &g);
    fake_answer(&p, 6, RESOLVE_E_NOTFOUND, RESOLVE_W_NODATA, NULL, 0);
    ok(g.calls == 1 && g.err == RESOLVE_E_NOTFOUND && s.nq == 5, "no data is final");
    fo.retry_empty_record = true;
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "h.test", AF_INET, on_got, &g);
    fake_answer(&p, 7, RESOLVE_E_NOTFOUND, RESOLVE_W_NODATA, NULL, 0);
    ok(g.calls == 0 && s.nq == 6, "retry_empty_record: standby asked");
    fake_answer(&s, 5, 0, 0, "192.0.2.8", 300);
    ok(g.calls == 1 && !strcmp(g.ip, "192.0.2.8"), "retry_empty_record: standby's answer");
    fo.retry_empty_record = false;

    /* fail_over caches its answers (the cache holds 4 entries in this test) */
    memset(&g, 0, sizeof(g));
    resolve_start(&fo.base, &tw, "h.test", AF_INET, on_got, &g);
    spin();
    ok(g.calls == 1 && p.nq == 8 && s.nq == 6 && !strcmp(g.ip, "192.0.2.8"),
       "fail_over cache hit");

    /* cancelling the task's job cancels nothing below while it fills the cache */
    struct resolve_job *j = resolve_start(&fo.base, &tw, "i.test", AF_INET, on_got, &g);
    resolve_cancel(j);
    ok(p.nq == 9 && !p.q[8]->cancelled, "fail_over query continues without waiters");

    /* detach in the worst order: the next resolvers first, then fail_over */
    resolve_worker_detach(&p.base, &tw);
    ok(p.q[8]->cancelled, "primary's query cancelled at detach");
    fo_free(&fo);
    fake_free(&p);
    fake_free(&s);
}

static void test_fail_over_links(void)
{
    struct fail_over a, b;
    struct fake c;
    struct obj *objs[3] = {&a.base.obj, &b.base.obj, &c.base.obj};
    struct generation g = {.d = &td};
    struct conf_ctx cx = {.kind = "resolver", .name = "a"};
    struct cfile *cf;
    char *err = NULL;
    const char *y = "a: 1\n";

    cf = cfile_parse("t.yaml", y, strlen(y), &err);
    cx.node = cf->docs[0];
    fake_init(&c, "c");
    fo_init(&a, &c, &c, 0.1);
    fo_init(&b, &c, &c, 0.1);
    a.base.obj.name = "a";
    b.base.obj.name = "b";
    a.base.obj.conf = b.base.obj.conf = c.base.obj.conf = cf->docs[0];
    g.objs[OBJ_RESOLVER] = objs;
    g.n[OBJ_RESOLVER] = 3;

    a.primary_name = "c";
    a.standby_name = "b";
    b.primary_name = "c";
    b.standby_name = "a";
    ok(fail_over_link(&a.base, &g, &cx) < 0 && cx.err && strstr(cx.err, "loop"),
       "fail_over loop rejected at link");
    like(cx.err, "'a' -> 'b' -> 'a'", "loop message names the path");
    free(cx.err);
    cx.err = NULL;

    b.standby_name = "c";
    ok(fail_over_link(&a.base, &g, &cx) == 0 && a.primary == &c.base && a.standby == &b.base,
       "chain without a loop links");
    ok(fail_over_link(&b.base, &g, &cx) == 0, "second level links");

    b.primary_name = "nope";
    ok(fail_over_link(&b.base, &g, &cx) < 0 && cx.err && strstr(cx.err, "not defined"),
       "missing next resolver reported");
    free(cx.err);
    cx.err = NULL;

    fo_free(&a);
    fo_free(&b);
    fake_free(&c);
    cfile_unref(cf);
}

/* -------------------------------------------------------------- control */

struct ctl_got {
    int calls, err;
    size_t n;
    char ips[4][64];
};

static void on_ctl(void *arg, int err, const struct ip_addr *ips, size_t n)
{
    struct ctl_got *c = arg;

    c->calls++;
    c->err = err;
    c->n = n;
    for (size_t i = 0; i < n && i < 4; i++)
        ip_str(&ips[i], c->ips[i], sizeof(c->ips[i]));
}

static void test_control(void)
{
    struct fake f;
    struct ctl_got c = {0};

    fake_init(&f, "ctl");
    ok(resolve_control_query(&f.base, &tw, "x.test", RQ_IPV6_FIRST, on_ctl, &c) == 0 && f.nq == 2,
       "control query asks both families");
    ok(f.q[0]->family == AF_INET6 && f.q[1]->family == AF_INET, "preferred family first");
    fake_answer(&f, 1, 0, 0, "192.0.2.1", 60);
    ok(c.calls == 0, "waits for both");
    fake_answer(&f, 0, 0, 0, "2001:db8::1", 60);
    ok(c.calls == 1 && c.n == 2 && !strcmp(c.ips[0], "2001:db8::1") &&
           !strcmp(c.ips[1], "192.0.2.1"),
       "merged in strategy order");

    memset(&c, 0, sizeof(c));
    resolve_control_query(&f.base, &tw, "y.test", RQ_IPV4_ONLY, on_ctl, &c);
    ok(f.nq == 3 && f.q[2]->family == AF_INET, "ipv4 only");
    fake_answer(&f, 2, RESOLVE_E_NOTFOUND, RESOLVE_W_NXDOMAIN, NULL, 0);
    ok(c.calls == 1 && c.n == 0 && c.err == RESOLVE_E_NOTFOUND, "error reported");
    fake_free(&f);
}

/* ---------------------------------------------------------------- logging */

static void test_log(void)
{
    struct evlog_conf lc;
    struct fake f;
    struct got g = {0};
    char path[] = "/tmp/resolve_test_log_XXXXXX", buf[4096] = "";
    char *err = NULL;
    int fd = mkstemp(path);
    ssize_t n;

    memset(&lc, 0, sizeof(lc));
    lc.sink[EVLOG_RESOLVE].driver = EVD_FILE;
    lc.sink[EVLOG_RESOLVE].format = EVF_JSON;
    lc.sink[EVLOG_RESOLVE].path = path;
    lc.sink[EVLOG_RESOLVE].queue_size = 64;
    if (fd < 0 || evlog_open(&td.evlog, &lc, "test", &err) < 0 || evlog_start(td.evlog) < 0) {
        printf("ok %d # SKIP event log unavailable: %s\n", ++tap_n, err ? err : "?");
        free(err);
        return;
    }
    fake_init(&f, "logged");
    resolve_start(&f.base, &tw, "gone.test", AF_INET6, on_got, &g);
    fake_answer(&f, 0, RESOLVE_E_NOTFOUND, RESOLVE_W_NXDOMAIN, NULL, 0);
    resolve_start(&f.base, &tw, "gone.test", AF_INET6, on_got, &g);
    spin();
    resolve_start(&f.base, &tw, "nodata.test", AF_INET, on_got, &g);
    fake_answer(&f, 1, RESOLVE_E_NOTFOUND, RESOLVE_W_NODATA, NULL, 0);
    evlog_close(td.evlog);
    td.evlog = NULL;
    n = read(fd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = 0;
    like(buf, "\"resolver_name\":\"logged\"", "Resolve log: resolver_name");
    like(buf, "\"resolver_type\":\"fake-drv\"", "Resolve log: resolver_type");
    like(buf, "\"query_type\":\"AAAA\"", "Resolve log: query_type");
    like(buf, "\"rr_source\":\"query\"", "Resolve log: rr_source query");
    like(buf, "\"rr_source\":\"cache\"", "Resolve log: rr_source cache");
    like(buf, "\"error_subtype\":\"NOTFOUND\"", "Resolve log: error_subtype");
    like(buf, "\"domain\":\"gone.test\"", "Resolve log: domain");
    ok(!strstr(buf, "nodata.test"), "no data is not logged as an error");
    close(fd);
    unlink(path);
    fake_free(&f);
}

int main(void)
{
    td.nworkers = 1;
    tg.d = &td;
    tw.id = 0;
    tw.d = &td;
    tw.loop = ev_loop_new(0);

    test_ttl_rules();
    test_cache();
    test_lru();
    test_coalesce_cancel();
    test_reentrant();
    test_inherit();
    test_deny();
    test_fail_over();
    test_fail_over_links();
    test_control();
    test_log();

    ev_loop_destroy(tw.loop);
    return done_testing();
}
