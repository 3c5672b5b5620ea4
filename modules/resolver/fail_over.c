/* Resolver fail_over: ask the primary resolver; when it has not answered within
 * fallback_delay (or failed before), ask the standby too. The primary's answer wins if
 * it comes before the delay; after it, the first good answer of either; when both
 * fail, the last error. Both next resolvers are queried through their caches
 * (resolve_start), and fail_over caches the outcome in its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "conf.h"
#include "evlog.h"
#include "gen.h"
#include "registry.h"
#include "resolve.h"
#include "resolver.h"
#include "worker.h"

extern const struct resolver_ops resolver_fail_over_ops;

struct fail_over {
    struct resolver base;
    char *primary_name;             /* arena */
    char *standby_name;             /* arena */
    struct resolver *primary;       /* borrowed: same generation */
    struct resolver *standby;       /* borrowed: same generation */
    uint64_t fallback_delay_ns;
    bool retry_empty_record;
};

struct fo_query {
    struct resolve_query base;
    struct fail_over *fo;           /* borrowed */
    struct worker *w;               /* borrowed */
    resolve_cb cb;
    void *arg;
    int family;
    struct resolve_job *pj, *sj;    /* pending jobs on primary / standby */
    bool p_done, s_started, s_done;
    ev_timer delay;                 /* fallback_delay */
    char name[];
};

#define FOFF(f) offsetof(struct fail_over, f)

/* negative_ttl (g3proxy's fail_over key) is an alias of negative_min_ttl in the common
 * table; positive_min_ttl / positive_max_ttl are accepted as a proxyd extension. */
static const struct conf_key fail_over_keys[] = {
    {"primary", NULL, cp_node_name, FOFF(primary_name), NULL, 0, 0, CK_F_REQUIRED},
    {"standby", NULL, cp_node_name, FOFF(standby_name), NULL, 0, 0, CK_F_REQUIRED},
    {"fallback_delay", CK_ALIASES("delay", "fallback_timeout", "timeout"), cp_duration,
     FOFF(fallback_delay_ns), "100ms", 0, 3600000},
    {"retry_empty_record", NULL, cp_bool, FOFF(retry_empty_record), "false"},
    {0},
};

static const struct conf_key *const fail_over_key_tables[] = {fail_over_keys, resolver_base_keys,
                                                              NULL};

static int fail_over_init(struct resolver *r, struct conf_ctx *cx)
{
    struct fail_over *fo = container_of(r, struct fail_over, base);

    if (!strcmp(fo->primary_name, fo->standby_name)) {
        cx->key = "standby";
        return conf_fail(cx, cmap_get(cx->node, "standby"),
                         "the primary and standby resolvers must differ");
    }
    if (resolver_check_ttls(r, cx) < 0)
        return -1;
    return resolve_cache_init(r, cx);
}

/* Depth-first walk from `name` through fail_over resolvers, by the names in their
 * config (the others may not be linked yet). path holds the names on the way. */
static int find_loop(struct generation *g, const struct fail_over *self, const char *name,
                     const char **path, size_t depth, size_t max, uint8_t *seen)
{
    size_t idx;
    struct obj *o = NULL;

    for (idx = 0; idx < g->n[OBJ_RESOLVER]; idx++) {
        if (!strcmp(g->objs[OBJ_RESOLVER][idx]->name, name)) {
            o = g->objs[OBJ_RESOLVER][idx];
            break;
        }
    }
    if (!o || ((struct resolver *)o)->ops != &resolver_fail_over_ops)
        return 0;
    path[depth] = o->name;
    if (o == &self->base.obj)
        return 1;
    if (seen[idx] || depth + 1 >= max)
        return 0;
    seen[idx] = 1;
    const struct fail_over *f = (const struct fail_over *)o;
    if (find_loop(g, self, f->primary_name, path, depth + 1, max, seen) ||
        find_loop(g, self, f->standby_name, path, depth + 1, max, seen))
        return 1;
    return 0;
}

static int check_loop(struct fail_over *fo, struct generation *g, struct conf_ctx *cx)
{
    size_t max = g->n[OBJ_RESOLVER] + 2;
    const char **path = calloc(max, sizeof(*path));
    uint8_t *seen = calloc(max, 1);
    int rc = 0;

    if (!path || !seen) {
        rc = conf_fail(cx, NULL, "out of memory");
        goto out;
    }
    path[0] = fo->base.obj.name;
    for (int i = 0; i < 2 && !rc; i++) {
        const char *next = i ? fo->standby_name : fo->primary_name;
        memset(seen, 0, max);
        if (find_loop(g, fo, next, path, 1, max, seen)) {
            char msg[512];
            size_t k = 0;
            for (size_t j = 0; j < max && path[j] && k < sizeof(msg); j++) {
                k += (size_t)snprintf(msg + k, sizeof(msg) - k, "%s'%s'", j ? " -> " : "",
                                      path[j]);
                if (j && path[j] == fo->base.obj.name)
                    break;
            }
            cx->key = i ? "standby" : "primary";
            rc = conf_fail(cx, cmap_get(cx->node, cx->key), "resolvers form a loop: %s", msg);
        }
    }
out:
    free(path);
    free(seen);
    return rc;
}

static int fail_over_link(struct resolver *r, struct generation *g, struct conf_ctx *cx)
{
    struct fail_over *fo = container_of(r, struct fail_over, base);

    cx->key = "primary";
    fo->primary = (struct resolver *)gen_link(g, cx, OBJ_RESOLVER, fo->primary_name);
    if (!fo->primary)
        return -1;
    cx->key = "standby";
    fo->standby = (struct resolver *)gen_link(g, cx, OBJ_RESOLVER, fo->standby_name);
    if (!fo->standby)
        return -1;
    cx->key = NULL;
    return check_loop(fo, g, cx);
}

/* Same config here and in everything it queries (links are loop-free by now). */
static bool same_conf(const struct resolver *a, const struct resolver *b)
{
    if (a->ops != b->ops || strcmp(a->obj.name, b->obj.name) ||
        !cnode_equal(a->obj.conf, b->obj.conf))
        return false;
    if (a->ops != &resolver_fail_over_ops)
        return true;
    const struct fail_over *fa = (const struct fail_over *)a, *fb = (const struct fail_over *)b;
    return fa->primary && fb->primary && same_conf(fa->primary, fb->primary) &&
           same_conf(fa->standby, fb->standby);
}

static void fail_over_inherit(struct resolver *r, struct resolver *old)
{
    if (same_conf(r, old))
        resolve_cache_inherit(r, old);
}

static void fail_over_destroy(struct resolver *r)
{
    resolve_cache_destroy(r);
}

/* ---------------------------------------------------------------- queries */

/* g3proxy: an empty answer counts as an answer unless retry_empty_record. */
static bool usable(const struct fail_over *fo, const struct resolve_result *res)
{
    if (!res->err)
        return res->n > 0 || !fo->retry_empty_record;
    return !fo->retry_empty_record && res->why == RESOLVE_W_NODATA;
}

/* Deliver res and free q. Runs inside a callback of a next resolver's job; res
 * belongs to that resolver's delivery. */
static void fo_finish(struct fo_query *q, const struct resolve_result *res)
{
    ev_timer_stop(q->w->loop, &q->delay);
    resolve_cancel(q->pj);
    resolve_cancel(q->sj);
    q->pj = q->sj = NULL;
    /* the cache layer does not cancel what it is being given: q stays ours */
    q->cb(q->arg, res);
    free(q);
}

static void on_standby(void *arg, int family, const struct resolve_result *res);

static int start_standby(struct fo_query *q)
{
    q->s_started = true;
    q->sj = resolve_start(q->fo->standby, q->w, q->name, q->family, on_standby, q);
    if (!q->sj) {
        q->s_done = true;
        return -1;
    }
    return 0;
}

static void on_primary(void *arg, int family, const struct resolve_result *res)
{
    struct fo_query *q = arg;

    q->pj = NULL;
    q->p_done = true;
    if (usable(q->fo, res)) {
        fo_finish(q, res);
        return;
    }
    if (!q->s_started) {
        /* failed before the delay: the standby decides */
        ev_timer_stop(q->w->loop, &q->delay);
        if (start_standby(q) < 0)
            fo_finish(q, res);
        return;
    }
    if (q->s_done)
        fo_finish(q, res);
}

static void on_standby(void *arg, int family, const struct resolve_result *res)
{
    struct fo_query *q = arg;

    q->sj = NULL;
    q->s_done = true;
    if (usable(q->fo, res) || q->p_done)
        fo_finish(q, res);
}

static void on_delay(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct fo_query *q = container_of(t, struct fo_query, delay);

    if (!q->s_started)
        start_standby(q); /* on OOM the primary alone decides */
}

static struct resolve_query *fail_over_query(struct resolver *r, struct worker *w,
                                             const char *name, int family, resolve_cb cb,
                                             void *arg)
{
    struct fail_over *fo = container_of(r, struct fail_over, base);
    size_t len = strlen(name);
    struct fo_query *q = calloc(1, sizeof(*q) + len + 1);

    if (!q)
        return NULL;
    memcpy(q->name, name, len + 1);
    q->base.r = r;
    q->fo = fo;
    q->w = w;
    q->cb = cb;
    q->arg = arg;
    q->family = family;
    ev_timer_init(&q->delay, on_delay, (double)fo->fallback_delay_ns / 1e9, 0.);
    q->pj = resolve_start(fo->primary, w, q->name, family, on_primary, q);
    if (!q->pj) {
        q->p_done = true;
        if (start_standby(q) < 0) {
            free(q);
            return NULL;
        }
        return &q->base;
    }
    ev_timer_start(w->loop, &q->delay);
    return &q->base;
}

static void fail_over_cancel(struct resolve_query *qb)
{
    struct fo_query *q = container_of(qb, struct fo_query, base);

    ev_timer_stop(q->w->loop, &q->delay);
    resolve_cancel(q->pj);
    resolve_cancel(q->sj);
    free(q);
}

static void fail_over_log_fields(const struct resolver *r, struct evrec *rec)
{
    const struct fail_over *fo = (const struct fail_over *)r;

    evrec_str(rec, "next_primary", fo->primary_name);
    evrec_str(rec, "next_standby", fo->standby_name);
}

const struct resolver_ops resolver_fail_over_ops = {
    .type = "fail_over",
    .aliases = CK_ALIASES("failover"),
    .keys = fail_over_key_tables,
    .size = sizeof(struct fail_over),
    .init = fail_over_init,
    .link = fail_over_link,
    .inherit = fail_over_inherit,
    .destroy = fail_over_destroy,
    .worker_detach = resolve_worker_detach,
    .query = fail_over_query,
    .cancel = fail_over_cancel,
    .log_fields = fail_over_log_fields,
};
