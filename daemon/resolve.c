/* The resolver cache layer; see resolve.h.
 *
 * Per resolver and worker: a cache (in the refcounted shared block, so that a reload
 * keeps it) and a table of in-flight driver queries (in the object's slot). A job is
 * one caller's wait; it is in exactly one state:
 *   J_WAITING    linked on an in-flight query's waiter list (or orphaned, see below)
 *   J_DEFERRED   answer already known (cache hit, deny): a zero timer delivers it
 *   J_DRIVER     uncached resolver: waits for the driver directly
 *   J_DELIVERING its callback runs; whoever runs it frees the job afterwards
 *
 * Callbacks may end the task that owns a job, and ending the last task of an old
 * generation on this worker detaches that generation right there (worker_detach), and
 * lets the main thread free the objects. Code that delivers answers therefore touches
 * only memory it owns (its local list of waiters, the in-flight record it removed
 * from the table) once the first callback has run. When a slot is freed, jobs still
 * waiting on its queries are orphaned (unlinked, left allocated): their owners, which
 * die in the same detach (fail_over queries of the same generation), cancel them. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <ev.h>

#include "conf.h"
#include "daemon.h"
#include "evlog.h"
#include "gen.h"
#include "log.h"
#include "resolve.h"
#include "resolver.h"
#include "worker.h"

/* Tests include this file and define their own clock. */
#ifndef RESOLVE_NOW_MS
#define RESOLVE_NOW_MS(w) (now_mono_us() / 1000)
#endif

/* Tests include this file and may use a smaller cache. */
#ifndef RESOLVE_CACHE_CAP
#define RESOLVE_CACHE_CAP RESOLVE_CACHE_MAX
#endif

#define RT_MAX_BUCKETS (1u << 17)

/* ------------------------------------------------------------- hash tables */

/* A node keyed by (name, family), embedded in cache entries and in-flight records. */
struct rnode {
    struct rnode *next;         /* hash chain */
    const char *name;           /* borrowed: stored in the container */
    uint32_t hash;
    uint16_t len;
    uint8_t family;
};

struct rtable {
    struct rnode **b;           /* owned: buckets */
    uint32_t mask;              /* buckets - 1 */
    uint32_t count;
};

/* Seeded FNV-1a with a final mix: names come from clients, the seed keeps them from
 * choosing collisions. */
static uint32_t key_hash(uint64_t seed, const char *name, size_t len, int family)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 0x100000001b3ull;
    }
    h ^= (uint64_t)family;
    h *= 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}

static int rt_init(struct rtable *t, uint32_t nb)
{
    t->b = calloc(nb, sizeof(*t->b));
    if (!t->b)
        return -1;
    t->mask = nb - 1;
    t->count = 0;
    return 0;
}

static struct rnode *rt_find(const struct rtable *t, uint32_t hash, const char *name, size_t len,
                             int family)
{
    for (struct rnode *n = t->b[hash & t->mask]; n; n = n->next)
        if (n->hash == hash && n->len == len && n->family == family && !memcmp(n->name, name, len))
            return n;
    return NULL;
}

static void rt_grow(struct rtable *t)
{
    uint32_t nb = (t->mask + 1) * 2;
    struct rnode **b = calloc(nb, sizeof(*b));

    if (!b)
        return; /* longer chains, still correct */
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct rnode *n = t->b[i], *next;
        for (; n; n = next) {
            next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(t->b);
    t->b = b;
    t->mask = nb - 1;
}

static void rt_insert(struct rtable *t, struct rnode *n)
{
    if (t->count > t->mask && t->mask + 1 < RT_MAX_BUCKETS)
        rt_grow(t);
    n->next = t->b[n->hash & t->mask];
    t->b[n->hash & t->mask] = n;
    t->count++;
}

static void rt_remove(struct rtable *t, struct rnode *n)
{
    for (struct rnode **p = &t->b[n->hash & t->mask]; *p; p = &(*p)->next) {
        if (*p == n) {
            *p = n->next;
            n->next = NULL;
            t->count--;
            return;
        }
    }
    BUG_ON(1);
}

/* ------------------------------------------------------------------ cache */

struct rc_entry {
    struct rnode key;           /* first: tables hold &key */
    struct list lru;            /* in rcache.lru, least recently used first */
    uint64_t expire_ms, vanish_ms;
    uint8_t err, why, n;
    struct ip_addr ips[];       /* n addresses, then the name */
};

/* One worker's cache of one resolver: touched by that worker only. */
struct rcache {
    struct rtable t;
    struct list lru;
};

/* Shared across the generations of a resolver whose config did not change. */
struct resolve_shared {
    int refs;                   /* atomic */
    unsigned n;
    uint64_t seed;
    struct rcache *c[];         /* owned: per worker, created on that worker */
};

static void rc_drop(struct rcache *c, struct rc_entry *e)
{
    rt_remove(&c->t, &e->key);
    list_del(&e->lru);
    free(e);
}

static struct rcache *rcache_new(void)
{
    struct rcache *c = calloc(1, sizeof(*c));

    if (!c || rt_init(&c->t, 64) < 0) {
        free(c);
        return NULL;
    }
    LIST_INIT(&c->lru);
    return c;
}

static void rcache_free(struct rcache *c)
{
    struct list *pos, *tmp;

    if (!c)
        return;
    list_for_each_safe(pos, tmp, &c->lru)
        free(container_of(pos, struct rc_entry, lru));
    free(c->t.b);
    free(c);
}

static struct resolve_shared *shared_new(unsigned n)
{
    struct resolve_shared *sh = calloc(1, sizeof(*sh) + n * sizeof(sh->c[0]));

    if (!sh)
        return NULL;
    sh->refs = 1;
    sh->n = n;
    if (getrandom(&sh->seed, sizeof(sh->seed), GRND_NONBLOCK) != sizeof(sh->seed))
        sh->seed = now_mono_us() ^ (uint64_t)(uintptr_t)sh;
    return sh;
}

static void shared_unref(struct resolve_shared *sh)
{
    if (!sh || __atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (unsigned i = 0; i < sh->n; i++)
        rcache_free(sh->c[i]);
    free(sh);
}

void resolve_ttl_rule(uint32_t ttl, uint32_t min_ttl, uint32_t max_ttl, uint32_t *expire,
                      uint32_t *vanish)
{
    uint64_t r = ttl, m = min_ttl, mx = max_ttl;

    if (r > mx + m) {
        *expire = max_ttl;
        *vanish = ttl;
    } else if (r > 2 * m) {
        *expire = ttl - min_ttl;
        *vanish = ttl;
    } else if (r > m) {
        *expire = min_ttl;
        *vanish = ttl;
    } else {
        *expire = min_ttl;
        *vanish = min_ttl == UINT32_MAX ? UINT32_MAX : min_ttl + 1;
    }
}

/* ------------------------------------------------------ slots and queries */

struct resolve_slot {
    struct resolver *r;         /* borrowed: the owner */
    struct worker *w;           /* borrowed */
    struct rcache *cache;       /* borrowed: r->shared->c[w->id] */
    struct rtable inflight;     /* struct rinflight by key */
};

/* One driver query for (name, family) on one worker, shared by its waiters. */
struct rinflight {
    struct rnode key;
    struct resolve_slot *s;     /* borrowed */
    struct resolve_query *q;    /* the driver's; NULL once answered or cancelled */
    struct list waiters;        /* struct resolve_job.link */
    ev_timer guard;             /* protective_query_timeout */
    uint64_t start_us;
    char name[];
};

enum { J_WAITING = 1, J_DEFERRED, J_DRIVER, J_DELIVERING };

struct resolve_job {
    struct list link;           /* J_WAITING: in rinflight.waiters (self when orphaned) */
    struct worker *w;           /* borrowed */
    struct resolver *r;         /* borrowed */
    resolve_done_fn cb;
    void *arg;
    int family;
    uint8_t state;
    ev_timer defer;             /* J_DEFERRED */
    struct resolve_query *q;    /* J_DRIVER */
    const char *name;           /* J_DRIVER: stored after ips, for the log */
    uint64_t start_us;          /* J_DRIVER */
    struct resolve_result res;  /* J_DEFERRED: the answer (ips point into ips[]) */
    struct ip_addr ips[];
};

const char *resolve_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case RESOLVE_E_NOTFOUND:
        return "NXDOMAIN";
    case RESOLVE_E_TIMEOUT:
        return "timeout";
    case RESOLVE_E_REFUSED:
        return "refused";
    case RESOLVE_E_DENIED:
        return "denied";
    case RESOLVE_E_INTERNAL:
        return "internal error";
    case RESOLVE_E_CANCELLED:
        return "cancelled";
    default:
        return "unknown error";
    }
}

/* ----------------------------------------------------------------- logging */

struct why_desc {
    const char *type, *subtype, *text;
};

static const struct why_desc why_descs[] = {
    [RESOLVE_W_NODATA] = {"ServerError", "NODATA", "no record of that type"},
    [RESOLVE_W_NXDOMAIN] = {"ServerError", "NOTFOUND", "server claims domain name not found"},
    [RESOLVE_W_FORMERR] = {"ServerError", "FORMERR", "server claims query was malformed"},
    [RESOLVE_W_SERVFAIL] = {"ServerError", "SERVFAIL", "server returned general failure"},
    [RESOLVE_W_NOTIMP] = {"ServerError", "NOTIMP", "server does not implement requested operation"},
    [RESOLVE_W_REFUSED] = {"ServerError", "REFUSED", "server refused query"},
    [RESOLVE_W_BADQUERY] = {"DriverError", "BadQuery", "malformed DNS query"},
    [RESOLVE_W_BADNAME] = {"DriverError", "BadName", "malformed domain name"},
    [RESOLVE_W_BADFAMILY] = {"DriverError", "BadFamily", "unsupported address family"},
    [RESOLVE_W_BADRESP] = {"DriverError", "BadResp", "malformed DNS reply"},
    [RESOLVE_W_CONNREFUSED] = {"DriverError", "ConnRefused", "connection refused by server"},
    [RESOLVE_W_TIMEOUT] = {"DriverError", "Timeout", "timeout while contacting server"},
    [RESOLVE_W_INTERNAL] = {"DriverError", "InternalError", "internal error"},
    [RESOLVE_W_NORESOLVER] = {"LocalError", "NoResolverSet", "resolver denies every query"},
    [RESOLVE_W_DRIVER_TIMEOUT] = {"LocalError", "DriverTimedOut", "driver timed out"},
};

static const struct why_desc *why_of(const struct resolve_result *res)
{
    static const uint8_t by_err[] = {
        [RESOLVE_E_NOTFOUND] = RESOLVE_W_NXDOMAIN, [RESOLVE_E_TIMEOUT] = RESOLVE_W_TIMEOUT,
        [RESOLVE_E_REFUSED] = RESOLVE_W_REFUSED,   [RESOLVE_E_DENIED] = RESOLVE_W_NORESOLVER,
        [RESOLVE_E_INTERNAL] = RESOLVE_W_INTERNAL, [RESOLVE_E_CANCELLED] = RESOLVE_W_INTERNAL,
    };
    unsigned why = res->why;

    if (!why || why >= ARRAY_SIZE(why_descs))
        why = res->err > 0 && (size_t)res->err < ARRAY_SIZE(by_err) ? by_err[res->err]
                                                                    : RESOLVE_W_INTERNAL;
    return &why_descs[why];
}

/* Resolve log record for an error (g3proxy logs errors only; "no record of that
 * family" is an empty answer there, not an error). */
static void log_error(struct resolver *r, const char *name, int family,
                      const struct resolve_result *res, const char *source, uint64_t dur_us)
{
    struct daemon *d = r->obj.gen ? r->obj.gen->d : NULL;
    const struct why_desc *wd;
    char type[32];

    if (!res->err || res->err == RESOLVE_E_CANCELLED || res->why == RESOLVE_W_NODATA)
        return;
    if (!d || !d->evlog || !evlog_enabled(d->evlog, EVLOG_RESOLVE))
        return;
    wd = why_of(res);
    struct evrec *rec = malloc(sizeof(*rec));
    if (!rec)
        return;
    evrec_init(rec, EVLOG_RESOLVE, LOG_LV_WARN, wd->text);
    resolver_log_type(r, type, sizeof(type));
    evrec_str(rec, "resolver_type", type);
    evrec_str(rec, "resolver_name", r->obj.name);
    evrec_str(rec, "query_type", family == AF_INET6 ? "AAAA" : "A");
    evrec_dur(rec, "duration", dur_us * 1000);
    evrec_str(rec, "rr_source", source);
    evrec_str(rec, "error_type", wd->type);
    evrec_str(rec, "error_subtype", wd->subtype);
    evrec_str(rec, "domain", name);
    if (r->ops->log_fields)
        r->ops->log_fields(r, rec);
    evlog_emit(d->evlog, rec);
    free(rec);
}

/* -------------------------------------------------------------- delivering */

static struct resolve_job *job_new(struct resolver *r, struct worker *w, int family,
                                   resolve_done_fn cb, void *arg, size_t nips, size_t namelen)
{
    struct resolve_job *j = malloc(sizeof(*j) + nips * sizeof(j->ips[0]) + namelen);

    if (!j)
        return NULL;
    memset(j, 0, sizeof(*j));
    LIST_INIT(&j->link);
    j->w = w;
    j->r = r;
    j->cb = cb;
    j->arg = arg;
    j->family = family;
    return j;
}

static void on_defer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct resolve_job *j = container_of(t, struct resolve_job, defer);

    j->state = J_DELIVERING;
    j->res.ips = j->ips;
    j->cb(j->arg, j->family, &j->res);
    free(j);
}

static void job_defer(struct resolve_job *j)
{
    j->state = J_DEFERRED;
    ev_timer_init(&j->defer, on_defer, 0., 0.);
    ev_timer_start(j->w->loop, &j->defer);
}

/* A job answered at once with an error (cache-less failure). */
static struct resolve_job *job_fail(struct resolver *r, struct worker *w, const char *name,
                                    int family, resolve_done_fn cb, void *arg, int err, int why)
{
    struct resolve_job *j = job_new(r, w, family, cb, arg, 0, 0);

    if (!j)
        return NULL;
    j->res.err = err;
    j->res.why = (uint8_t)why;
    log_error(r, name, family, &j->res, "query", 0);
    job_defer(j);
    return j;
}

/* Run the callbacks of the jobs on `todo` (a local list). Touches nothing but the
 * jobs: a callback may free the resolver's per-worker state. */
static void deliver_list(struct list *todo, int family, const struct resolve_result *res)
{
    while (!list_empty(todo)) {
        struct resolve_job *j = container_of(todo->next, struct resolve_job, link);
        list_del(&j->link);
        j->state = J_DELIVERING;
        j->cb(j->arg, family, res);
        free(j);
    }
}

/* Keep an answer in the worker's cache. */
static void cache_store(struct resolve_slot *s, struct rinflight *in,
                        const struct resolve_result *res, uint64_t now)
{
    const struct resolver_cache_conf *cc = &s->r->cache;
    struct rcache *c = s->cache;
    struct rnode *k = &in->key;
    struct rc_entry *old, *e;
    uint64_t expire, vanish;
    size_t n = 0;

    if (res->err == RESOLVE_E_DENIED || res->err == RESOLVE_E_CANCELLED)
        return;
    old = (struct rc_entry *)rt_find(&c->t, k->hash, k->name, k->len, k->family);
    if (res->err) {
        if (old && !old->err && now < old->vanish_ms) {
            /* a failed refresh: serve the stale answer a while longer */
            old->expire_ms = MIN(now + (uint64_t)cc->negative_min_ttl * 1000, old->vanish_ms);
            return;
        }
        if (!cc->negative_min_ttl) {
            if (old)
                rc_drop(c, old);
            return;
        }
        expire = vanish = now + (uint64_t)cc->negative_min_ttl * 1000;
    } else {
        uint32_t ex, va;
        resolve_ttl_rule(res->ttl, cc->positive_min_ttl, cc->positive_max_ttl, &ex, &va);
        expire = now + (uint64_t)ex * 1000;
        vanish = now + (uint64_t)va * 1000;
        n = MIN(res->n, (size_t)RESOLVE_MAX_ADDRS);
    }
    if (old)
        rc_drop(c, old);

    /* make room: the least recently used go first, vanished ones on the way */
    for (int i = 0; i < 4 && !list_empty(&c->lru); i++) {
        struct rc_entry *h = container_of(c->lru.next, struct rc_entry, lru);
        if (now < h->vanish_ms && c->t.count < RESOLVE_CACHE_CAP)
            break;
        rc_drop(c, h);
    }

    e = malloc(sizeof(*e) + n * sizeof(e->ips[0]) + k->len + 1);
    if (!e)
        return;
    memset(e, 0, sizeof(*e));
    char *name = (char *)&e->ips[n];
    memcpy(name, k->name, k->len);
    name[k->len] = 0;
    e->key.name = name;
    e->key.len = k->len;
    e->key.family = k->family;
    e->key.hash = k->hash;
    e->expire_ms = expire;
    e->vanish_ms = vanish;
    e->err = (uint8_t)res->err;
    e->why = res->why;
    e->n = (uint8_t)n;
    if (n)
        memcpy(e->ips, res->ips, n * sizeof(e->ips[0]));
    rt_insert(&c->t, &e->key);
    list_add_tail(&c->lru, &e->lru);
}

/* The driver query of `in` has an answer (or was given up): cache it, log it, then
 * run the waiters' callbacks. `in` is already out of the table; freed here. */
static void inflight_finish(struct rinflight *in, const struct resolve_result *res)
{
    struct resolve_slot *s = in->s;
    struct resolve_result empty;
    struct list todo;

    if (!res->err && !res->n) {
        /* a driver answering "nothing" means no record */
        empty = *res;
        empty.err = RESOLVE_E_NOTFOUND;
        empty.why = RESOLVE_W_NODATA;
        res = &empty;
    }
    cache_store(s, in, res, RESOLVE_NOW_MS(s->w));
    log_error(s->r, in->name, in->key.family, res, "query", now_mono_us() - in->start_us);

    LIST_INIT(&todo);
    if (!list_empty(&in->waiters)) {
        todo.next = in->waiters.next;
        todo.prev = in->waiters.prev;
        todo.next->prev = &todo;
        todo.prev->next = &todo;
        LIST_INIT(&in->waiters);
    }
    /* from here on `s` and the resolver may go away under us */
    deliver_list(&todo, in->key.family, res);
    free(in);
}

static void on_driver_done(void *arg, const struct resolve_result *res)
{
    struct rinflight *in = arg;
    struct resolve_slot *s = in->s;

    in->q = NULL;
    ev_timer_stop(s->w->loop, &in->guard);
    rt_remove(&s->inflight, &in->key);
    inflight_finish(in, res);
}

static void on_guard(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct rinflight *in = container_of(t, struct rinflight, guard);
    struct resolve_slot *s = in->s;
    struct resolve_result res = {.err = RESOLVE_E_TIMEOUT, .why = RESOLVE_W_DRIVER_TIMEOUT};
    struct resolve_query *q = in->q;

    in->q = NULL;
    rt_remove(&s->inflight, &in->key);
    if (q && s->r->ops->cancel)
        s->r->ops->cancel(q);
    inflight_finish(in, &res);
}

/* Start a driver query for a key; NULL when the driver refused at once (or OOM). */
static struct rinflight *inflight_start(struct resolve_slot *s, const char *name, size_t len,
                                        int family, uint32_t hash)
{
    struct resolver *r = s->r;
    struct rinflight *in = malloc(sizeof(*in) + len + 1);

    if (!in)
        return NULL;
    memset(in, 0, sizeof(*in));
    memcpy(in->name, name, len);
    in->name[len] = 0;
    in->key.name = in->name;
    in->key.len = (uint16_t)len;
    in->key.family = (uint8_t)family;
    in->key.hash = hash;
    in->s = s;
    LIST_INIT(&in->waiters);
    in->start_us = now_mono_us();
    in->q = r->ops->query(r, s->w, in->name, family, on_driver_done, in);
    if (!in->q) {
        free(in);
        return NULL;
    }
    rt_insert(&s->inflight, &in->key);
    ev_timer_init(&in->guard, on_guard, (double)r->cache.protective_query_timeout_ns / 1e9, 0.);
    ev_timer_start(s->w->loop, &in->guard);
    return in;
}

static struct resolve_slot *slot_get(struct resolver *r, struct worker *w)
{
    struct resolve_slot *s;

    if (w->id >= r->nslots || w->id >= r->shared->n)
        return NULL;
    s = r->slots[w->id];
    if (s)
        return s;
    if (!r->shared->c[w->id] && !(r->shared->c[w->id] = rcache_new()))
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s || rt_init(&s->inflight, 16) < 0) {
        free(s);
        return NULL;
    }
    s->r = r;
    s->w = w;
    s->cache = r->shared->c[w->id];
    r->slots[w->id] = s;
    return s;
}

static void slot_free(struct resolve_slot *s)
{
    struct resolver *r = s->r;

    for (uint32_t i = 0; i <= s->inflight.mask; i++) {
        struct rnode *n = s->inflight.b[i], *next;
        for (; n; n = next) {
            struct rinflight *in = container_of(n, struct rinflight, key);
            struct list *pos, *tmp;

            next = n->next;
            ev_timer_stop(s->w->loop, &in->guard);
            if (in->q && r->ops->cancel)
                r->ops->cancel(in->q);
            list_for_each_safe(pos, tmp, &in->waiters)
                list_del(pos); /* orphaned: the owner cancels it */
            free(in);
        }
    }
    free(s->inflight.b);
    free(s);
}

/* ------------------------------------------------------------------- API */

static struct resolve_job *start_uncached(struct resolver *r, struct worker *w, const char *name,
                                          size_t len, int family, resolve_done_fn cb, void *arg);

struct resolve_job *resolve_start(struct resolver *r, struct worker *w, const char *name,
                                  int family, resolve_done_fn cb, void *arg)
{
    size_t len = strlen(name);
    struct resolve_slot *s;
    struct rc_entry *e;
    struct rinflight *in;
    struct resolve_job *j;
    uint64_t now;
    uint32_t hash;

    if (family != AF_INET && family != AF_INET6)
        return job_fail(r, w, name, family, cb, arg, RESOLVE_E_INTERNAL, RESOLVE_W_BADFAMILY);
    if (!len || len > HOST_MAX)
        return job_fail(r, w, name, family, cb, arg, RESOLVE_E_NOTFOUND, RESOLVE_W_BADNAME);
    if (!r->shared)
        return start_uncached(r, w, name, len, family, cb, arg);
    s = slot_get(r, w);
    if (!s)
        return NULL;

    now = RESOLVE_NOW_MS(w);
    hash = key_hash(r->shared->seed, name, len, family);
    e = (struct rc_entry *)rt_find(&s->cache->t, hash, name, len, family);
    if (e && now >= e->vanish_ms) {
        rc_drop(s->cache, e);
        e = NULL;
    }
    if (e) {
        j = job_new(r, w, family, cb, arg, e->n, 0);
        if (!j)
            return NULL;
        list_del(&e->lru);
        list_add_tail(&s->cache->lru, &e->lru);
        j->res.err = e->err;
        j->res.why = e->why;
        j->res.n = e->n;
        j->res.ttl = (uint32_t)MIN((e->vanish_ms - now + 999) / 1000, (uint64_t)UINT32_MAX);
        memcpy(j->ips, e->ips, e->n * sizeof(e->ips[0]));
        if (e->err)
            log_error(r, name, family, &j->res, "cache", 0);
        else if (now >= e->expire_ms && !rt_find(&s->inflight, hash, name, len, family))
            inflight_start(s, name, len, family, hash); /* refresh in the background */
        job_defer(j);
        return j;
    }

    j = job_new(r, w, family, cb, arg, 0, 0);
    if (!j)
        return NULL;
    in = (struct rinflight *)rt_find(&s->inflight, hash, name, len, family);
    if (!in && !(in = inflight_start(s, name, len, family, hash))) {
        free(j);
        return job_fail(r, w, name, family, cb, arg, RESOLVE_E_DENIED, RESOLVE_W_NORESOLVER);
    }
    j->state = J_WAITING;
    list_add_tail(&in->waiters, &j->link);
    return j;
}

static void on_uncached_done(void *arg, const struct resolve_result *res)
{
    struct resolve_job *j = arg;

    j->q = NULL;
    j->state = J_DELIVERING;
    log_error(j->r, j->name, j->family, res, "query", now_mono_us() - j->start_us);
    j->cb(j->arg, j->family, res);
    free(j);
}

static struct resolve_job *start_uncached(struct resolver *r, struct worker *w, const char *name,
                                          size_t len, int family, resolve_done_fn cb, void *arg)
{
    struct resolve_job *j = job_new(r, w, family, cb, arg, 0, len + 1);
    char *copy;

    if (!j)
        return NULL;
    copy = (char *)&j->ips[0];
    memcpy(copy, name, len + 1);
    j->name = copy;
    j->start_us = now_mono_us();
    j->q = r->ops->query(r, w, copy, family, on_uncached_done, j);
    if (!j->q) {
        j->res.err = RESOLVE_E_DENIED;
        j->res.why = RESOLVE_W_NORESOLVER;
        log_error(r, name, family, &j->res, "query", 0);
        job_defer(j);
        return j;
    }
    j->state = J_DRIVER;
    return j;
}

void resolve_cancel(struct resolve_job *j)
{
    if (!j)
        return;
    switch (j->state) {
    case J_WAITING:
        list_del(&j->link); /* the driver query goes on to fill the cache */
        break;
    case J_DEFERRED:
        ev_timer_stop(j->w->loop, &j->defer);
        break;
    case J_DRIVER:
        if (j->r->ops->cancel)
            j->r->ops->cancel(j->q);
        break;
    case J_DELIVERING:
        return; /* its deliverer frees it */
    default:
        break;
    }
    free(j);
}

/* ------------------------------------------------------------ lifecycle */

int resolve_cache_init(struct resolver *r, struct conf_ctx *cx)
{
    struct daemon *d = r->obj.gen ? r->obj.gen->d : NULL;
    unsigned n = d && d->nworkers ? d->nworkers : 1;

    r->slots = arena_alloc(cx->arena, n * sizeof(*r->slots));
    r->shared = r->slots ? shared_new(n) : NULL;
    if (!r->shared)
        return conf_fail(cx, NULL, "out of memory");
    r->nslots = n;
    return 0;
}

void resolve_cache_inherit(struct resolver *r, struct resolver *old)
{
    if (!r->shared || !old->shared || r->shared == old->shared || r->shared->n != old->shared->n)
        return;
    /* r is not visible to any worker yet: its own block is still empty */
    shared_unref(r->shared);
    __atomic_add_fetch(&old->shared->refs, 1, __ATOMIC_RELAXED);
    r->shared = old->shared;
}

void resolve_cache_destroy(struct resolver *r)
{
    for (unsigned i = 0; r->slots && i < r->nslots; i++) {
        if (r->slots[i]) {
            slot_free(r->slots[i]);
            r->slots[i] = NULL;
        }
    }
    shared_unref(r->shared);
    r->shared = NULL;
}

void resolve_worker_detach(struct resolver *r, struct worker *w)
{
    struct resolve_slot *s;

    if (!r->slots || w->id >= r->nslots || !(s = r->slots[w->id]))
        return;
    r->slots[w->id] = NULL;
    slot_free(s);
}

/* -------------------------------------------------------- control queries */

struct ctl_query {
    struct resolve_job *j[2];
    int family[2];
    int nfam, pending;
    int err[2];
    struct ip_addr *ips[2];     /* owned: copies */
    size_t n[2];
    void (*done)(void *arg, int err, const struct ip_addr *ips, size_t n);
    void *arg;
};

static void ctl_finish(struct ctl_query *cq)
{
    struct ip_addr *all = malloc((cq->n[0] + cq->n[1] + 1) * sizeof(*all));
    size_t k = 0;
    int err = 0;

    if (!all) {
        cq->done(cq->arg, RESOLVE_E_INTERNAL, NULL, 0);
    } else {
        for (int i = 0; i < cq->nfam; i++) {
            if (cq->n[i])
                memcpy(all + k, cq->ips[i], cq->n[i] * sizeof(*all));
            k += cq->n[i];
            if (!err)
                err = cq->err[i];
        }
        if (k)
            err = 0;
        else if (!err)
            err = RESOLVE_E_NOTFOUND;
        cq->done(cq->arg, err, all, k);
    }
    free(all);
    free(cq->ips[0]);
    free(cq->ips[1]);
    free(cq);
}

static void on_ctl_resolved(void *arg, int family, const struct resolve_result *res)
{
    struct ctl_query *cq = arg;
    int i = cq->family[0] == family ? 0 : 1;

    cq->j[i] = NULL;
    cq->err[i] = res->err;
    if (!res->err && res->n && (cq->ips[i] = malloc(res->n * sizeof(*res->ips)))) {
        memcpy(cq->ips[i], res->ips, res->n * sizeof(*res->ips));
        cq->n[i] = res->n;
    } else if (!res->err && res->n) {
        cq->err[i] = RESOLVE_E_INTERNAL;
    }
    if (--cq->pending == 0)
        ctl_finish(cq);
}

int resolve_control_query(struct resolver *r, struct worker *w, const char *name, int strategy,
                          void (*done)(void *arg, int err, const struct ip_addr *ips, size_t n),
                          void *arg)
{
    struct ctl_query *cq = calloc(1, sizeof(*cq));

    if (!cq)
        return -1;
    cq->done = done;
    cq->arg = arg;
    switch (strategy) {
    case RQ_IPV6_FIRST:
        cq->family[cq->nfam++] = AF_INET6;
        cq->family[cq->nfam++] = AF_INET;
        break;
    case RQ_IPV4_ONLY:
        cq->family[cq->nfam++] = AF_INET;
        break;
    case RQ_IPV6_ONLY:
        cq->family[cq->nfam++] = AF_INET6;
        break;
    default:
        cq->family[cq->nfam++] = AF_INET;
        cq->family[cq->nfam++] = AF_INET6;
        break;
    }
    for (int i = 0; i < cq->nfam; i++) {
        cq->j[i] = resolve_start(r, w, name, cq->family[i], on_ctl_resolved, cq);
        if (!cq->j[i]) {
            for (int k = 0; k < i; k++)
                resolve_cancel(cq->j[k]);
            free(cq);
            return -1;
        }
        cq->pending++;
    }
    return 0;
}
