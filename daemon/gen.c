/* Generations: build every object from its config, link names, check for loops,
 * inherit state from the previous generation, open or reuse listeners. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "confval.h"
#include "daemon.h"
#include "gen.h"
#include "listener.h"
#include "log.h"
#include "registry.h"
#include "stats.h"

static const char *const kind_names[OBJ_NKINDS] = {"resolver", "escaper", "user-group", "server"};

const char *obj_kind_name(enum obj_kind k)
{
    return k < OBJ_NKINDS ? kind_names[k] : "?";
}

int spec_list_add(struct spec_list *l, enum obj_kind kind, const struct cnode *node,
                  struct cfile *src, int doc)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct obj_spec *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (struct obj_spec){kind, node, src, doc};
    cfile_ref(src);
    return 0;
}

void spec_list_free(struct spec_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        cfile_unref(l->v[i].src);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

int spec_list_from_gen(struct spec_list *l, const struct generation *g)
{
    for (int k = 0; k < OBJ_NKINDS; k++)
        for (size_t i = 0; i < g->n[k]; i++) {
            struct obj *o = g->objs[k][i];
            if (spec_list_add(l, o->kind, o->conf, o->src, o->doc) < 0)
                return -1;
        }
    return 0;
}

struct obj *gen_find(const struct generation *g, enum obj_kind kind, const char *name)
{
    if (!g || !name)
        return NULL;
    for (size_t i = 0; i < g->n[kind]; i++)
        if (strcmp(g->objs[kind][i]->name, name) == 0)
            return g->objs[kind][i];
    return NULL;
}

struct obj *gen_link(struct generation *g, struct conf_ctx *cx, enum obj_kind kind,
                     const char *name)
{
    struct obj *o = gen_find(g, kind, name);

    if (!o) {
        /* point at the value that names it */
        const struct cnode *at = NULL;
        char norm[64];
        if (cx->key) {
            conf_normalize(cx->key, norm, sizeof(norm));
            at = cmap_get(cx->node, norm);
        }
        conf_fail(cx, at, "%s '%s' is not defined", obj_kind_name(kind), name);
    }
    return o;
}

static void obj_destroy(struct obj *o)
{
    const struct obj_ops *ops = obj_ops(o);

    if (ops && ops->destroy)
        ops->destroy(o);
    if (o->kind == OBJ_SERVER) {
        struct server *s = (struct server *)o;
        if (s->lset)
            listen_set_unref(s->lset);
        server_stats_unref(s->stats);
    } else if (o->kind == OBJ_ESCAPER) {
        escaper_stats_unref(((struct escaper *)o)->stats);
    }
    cfile_unref(o->src);
    struct arena a = o->arena; /* the object lives in its own arena */
    arena_free(&a);
}

static void gen_destroy(struct generation *g)
{
    /* servers first: they refer to the others */
    for (int k = OBJ_NKINDS; k-- > 0;) {
        for (size_t i = g->n[k]; i-- > 0;)
            obj_destroy(g->objs[k][i]);
        free(g->objs[k]);
    }
    free(g->own);
    free(g);
}

void gen_ref(struct generation *g)
{
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
}

static void gen_destroy_cb(void *arg)
{
    gen_destroy(arg);
}

void gen_unref(struct generation *g)
{
    if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* objects were built on the main thread and their destroy hooks may touch
     * main-thread state: destroy there */
    if (!g->d || daemon_post(g->d, gen_destroy_cb, g) < 0)
        gen_destroy(g);
}

/* ---------------------------------------------------------------- building */

static int obj_append(struct generation *g, struct obj *o)
{
    struct obj **v = realloc(g->objs[o->kind], (g->n[o->kind] + 1) * sizeof(*v));

    if (!v)
        return -1;
    v[g->n[o->kind]++] = o;
    g->objs[o->kind] = v;
    return 0;
}

static const char *const skip_name_type[] = {"name", "type", NULL};

/* Build one object from its spec (keys applied, init run; not linked). */
static struct obj *obj_build(struct generation *g, const struct obj_spec *sp, char **err)
{
    struct conf_ctx cx = {.kind = obj_kind_name(sp->kind), .dir = sp->src->dir, .node = sp->node};
    const struct cnode *n = sp->node, *nn, *tn;
    const struct obj_ops *ops;
    char norm[64];
    bool unsupported = false;
    struct arena a;
    struct obj *o;
    const char *name;

    if (!n || n->type != CN_MAP) {
        conf_fail(&cx, n, "expected a map, got a %s", cnode_type_name(n));
        goto fail_noarena;
    }
    nn = cmap_get(n, "name");
    if (!nn) {
        conf_fail(&cx, n, "missing key 'name'");
        goto fail_noarena;
    }
    arena_init(&a, 4096);
    cx.arena = &a;
    cx.key = "name";
    if (cp_node_name(&cx, nn, &name, NULL) < 0)
        goto fail;
    cx.key = NULL;
    cx.name = name;
    if (gen_find(g, sp->kind, name)) {
        conf_fail(&cx, nn, "duplicate name (already defined)");
        goto fail;
    }

    tn = cmap_get(n, "type");
    if (!tn && sp->kind == OBJ_USER_GROUP) {
        conf_normalize("basic", norm, sizeof(norm));
    } else if (!tn || tn->type != CN_SCALAR) {
        conf_fail(&cx, tn ? tn : n, tn ? "key 'type' must be a string" : "missing key 'type'");
        goto fail;
    } else {
        conf_normalize(tn->str, norm, sizeof(norm));
    }
    ops = registry_find(sp->kind, norm, &unsupported);
    if (!ops) {
        cx.key = "type";
        conf_fail(&cx, tn, unsupported ? "unsupported: %s type '%s' is not implemented yet"
                                       : "unknown %s type '%s'",
                  obj_kind_name(sp->kind), tn ? tn->str : norm);
        goto fail;
    }

    o = arena_alloc(&a, ops->size);
    if (!o) {
        conf_fail(&cx, n, "out of memory");
        goto fail;
    }
    o->kind = sp->kind;
    o->name = name;
    o->type = ops->type;
    o->gen = g;
    o->conf = n;
    o->src = sp->src;
    cfile_ref(sp->src);
    o->doc = sp->doc;
    obj_set_ops(o, ops);

    if (conf_apply(&cx, n, ops->keys, skip_name_type, o) < 0 || (ops->init && ops->init(o, &cx) < 0)) {
        o->arena = a;
        if (!cx.err)
            conf_fail(&cx, n, "initialization failed");
        *err = cx.err;
        obj_destroy(o);
        return NULL;
    }
    o->arena = a;
    return o;

fail:
    arena_free(&a);
fail_noarena:
    *err = cx.err;
    return NULL;
}

/* Depth-first search over escaper->next; 1 = on stack, 2 = done. */
static int escaper_dfs(struct escaper *e, uint8_t *mark, struct generation *g, char **err)
{
    size_t idx = 0;

    while (g->objs[OBJ_ESCAPER][idx] != &e->obj)
        idx++;
    if (mark[idx] == 2)
        return 0;
    if (mark[idx] == 1) {
        const struct cnode *n = e->obj.conf;
        return err_set(err, "%s:%u:%u: escaper '%s': escapers form a loop through '%s'",
                       n->file->path, n->line, n->col, e->obj.name, e->obj.name);
    }
    mark[idx] = 1;
    for (size_t i = 0; i < e->nnext; i++)
        if (escaper_dfs(e->next[i], mark, g, err) < 0)
            return -1;
    mark[idx] = 2;
    return 0;
}

static int check_escaper_loops(struct generation *g, char **err)
{
    uint8_t *mark = calloc(g->n[OBJ_ESCAPER] + 1, 1);
    int rc = 0;

    if (!mark)
        return err_set(err, "out of memory");
    for (size_t i = 0; i < g->n[OBJ_ESCAPER] && rc == 0; i++)
        rc = escaper_dfs((struct escaper *)g->objs[OBJ_ESCAPER][i], mark, g, err);
    free(mark);
    return rc;
}

/* An error about server s's listen key, at that key. */
static void listen_error(char **err, const struct server *s, const char *why)
{
    const struct cnode *ln = cmap_get(s->obj.conf, "listen");

    if (!ln)
        ln = s->obj.conf;
    err_set(err, "%s:%u:%u: server '%s': key 'listen': %s", ln->file->path, ln->line, ln->col,
            s->obj.name, why);
}

struct generation *gen_build(struct daemon *d, const struct spec_list *specs,
                             struct generation *old, bool bind_listeners, char **err)
{
    struct generation *g = calloc(1, sizeof(*g));

    *err = NULL;
    if (!g) {
        err_set(err, "out of memory");
        return NULL;
    }
    g->refs = 1;
    g->d = d;

    /* build in dependency order: resolvers, escapers, user groups, servers */
    for (int k = 0; k < OBJ_NKINDS; k++) {
        for (size_t i = 0; i < specs->n; i++) {
            if (specs->v[i].kind != (enum obj_kind)k)
                continue;
            struct obj *o = obj_build(g, &specs->v[i], err);
            if (!o)
                goto fail;
            if (obj_append(g, o) < 0) {
                obj_destroy(o);
                err_set(err, "out of memory");
                goto fail;
            }
        }
    }

    /* link names */
    for (int k = 0; k < OBJ_NKINDS; k++) {
        for (size_t i = 0; i < g->n[k]; i++) {
            struct obj *o = g->objs[k][i];
            const struct obj_ops *ops = obj_ops(o);
            struct conf_ctx cx = {.kind = obj_kind_name(o->kind), .name = o->name,
                                  .dir = o->src->dir, .arena = &o->arena, .node = o->conf};
            if (ops->link && ops->link(o, g, &cx) < 0) {
                if (!cx.err)
                    conf_fail(&cx, o->conf, "linking failed");
                *err = cx.err;
                goto fail;
            }
        }
    }
    if (check_escaper_loops(g, err) < 0)
        goto fail;

    /* inherit state from the previous generation; fresh state otherwise */
    for (int k = 0; k < OBJ_NKINDS; k++) {
        for (size_t i = 0; i < g->n[k]; i++) {
            struct obj *o = g->objs[k][i];
            const struct obj_ops *ops = obj_ops(o);
            struct obj *prev = gen_find(old, o->kind, o->name);

            if (prev && prev->type != o->type)
                prev = NULL;
            if (o->kind == OBJ_SERVER) {
                struct server *s = (struct server *)o;
                s->stats = prev ? server_stats_ref(((struct server *)prev)->stats)
                                : server_stats_new();
                if (!s->stats) {
                    err_set(err, "out of memory");
                    goto fail;
                }
            } else if (o->kind == OBJ_ESCAPER) {
                struct escaper *e = (struct escaper *)o;
                e->stats = prev ? escaper_stats_ref(((struct escaper *)prev)->stats)
                                : escaper_stats_new();
                if (!e->stats) {
                    err_set(err, "out of memory");
                    goto fail;
                }
            }
            if (prev && ops->inherit)
                ops->inherit(o, prev);
        }
    }

    /* two servers on one fixed address would share its connections at random */
    for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
        struct server *a = (struct server *)g->objs[OBJ_SERVER][i];
        if (!(a->ops->caps & SRV_CAP_TCP_LISTEN) || !a->listen.set)
            continue;
        uint16_t pa = ntohs(a->listen.addr.sa.sa_family == AF_INET ? a->listen.addr.in.sin_port
                                                                  : a->listen.addr.in6.sin6_port);
        for (size_t j = 0; pa && j < i; j++) {
            struct server *b = (struct server *)g->objs[OBJ_SERVER][j];
            if ((b->ops->caps & SRV_CAP_TCP_LISTEN) && b->listen.set &&
                b->listen.addrlen == a->listen.addrlen &&
                !memcmp(&b->listen.addr, &a->listen.addr, a->listen.addrlen)) {
                char why[300];
                snprintf(why, sizeof(why), "address already used by server '%s'", b->obj.name);
                listen_error(err, a, why);
                goto fail;
            }
        }
    }

    /* listening sockets last: nothing is opened for a config that fails earlier. TCP
     * first: a server's open_sockets may adjust sockets it takes over from the
     * running generation, so it comes once nothing else can fail but itself. */
    if (bind_listeners) {
        for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
            struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
            char *lerr = NULL;

            if (!(s->ops->caps & SRV_CAP_TCP_LISTEN) || !s->listen.set)
                continue;
            s->lset = listen_get(old, s->obj.name, &s->listen, d->nworkers, &lerr);
            if (!s->lset) {
                listen_error(err, s, lerr);
                free(lerr);
                goto fail;
            }
        }
        for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
            struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
            struct conf_ctx cx = {.kind = "server", .name = s->obj.name, .dir = s->obj.src->dir,
                                  .arena = &s->obj.arena, .node = s->obj.conf};

            if (s->ops->open_sockets && s->ops->open_sockets(s, old, &cx) < 0) {
                *err = cx.err ? cx.err : strdup("cannot open sockets");
                goto fail;
            }
        }
        /* our own addresses stay known to tasks of this generation after it is replaced */
        g->own = calloc(g->n[OBJ_SERVER] + 1, sizeof(*g->own));
        if (!g->own) {
            err_set(err, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
            struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
            if (s->lset)
                g->own[g->nown++] = s->lset->bound;
        }
    }
    return g;

fail:
    gen_destroy(g);
    return NULL;
}
