/* Generations: one immutable, fully linked set of objects built from config.
 *
 * Built on the main thread, published with gen_install(); workers switch to the new
 * one and keep the old one pinned while their tasks that started on it run. A failed
 * build changes nothing. */
#ifndef PROXYD_GEN_H
#define PROXYD_GEN_H

#include <stdbool.h>
#include "obj_types.h"

struct daemon;

/* Where an object's config came from: a map node in a parsed file. */
struct obj_spec {
    enum obj_kind kind;
    const struct cnode *node;   /* borrowed: lives in src */
    struct cfile *src;          /* ref held by the spec list */
    int doc;                    /* document index in src, -1 = inline in the main file */
};

struct spec_list {
    size_t n, cap;
    struct obj_spec *v;         /* owned */
};

struct generation {
    int refs;                   /* atomic: main's ref + one per worker that uses it */
    uint64_t id;                /* 1, 2, ... */
    struct obj **objs[OBJ_NKINDS]; /* owned: objects by kind, in config order */
    size_t n[OBJ_NKINDS];
    struct daemon *d;           /* borrowed */
    union sockaddr_any *own;    /* owned: bound listen addresses (dead-loop detection) */
    size_t nown;
};

/* Build a generation from specs. old (may be NULL) is the current one: state is
 * inherited from its same-named objects and its listening sockets are reused. With
 * bind_listeners false nothing is opened (proxyd -t). NULL + *err on failure. */
struct generation *gen_build(struct daemon *d, const struct spec_list *specs,
                             struct generation *old, bool bind_listeners, char **err);
void gen_ref(struct generation *g);
/* Drop a reference; the last one destroys the generation and its objects. Any thread. */
void gen_unref(struct generation *g);

struct obj *gen_find(const struct generation *g, enum obj_kind kind, const char *name);
/* Resolve a reference key while linking: on a missing object, fail with a message
 * naming it. Returns the object or NULL. */
struct obj *gen_link(struct generation *g, struct conf_ctx *cx, enum obj_kind kind,
                     const char *name);
const char *obj_kind_name(enum obj_kind k);   /* "server", "user-group", ... */

int spec_list_add(struct spec_list *l, enum obj_kind kind, const struct cnode *node,
                  struct cfile *src, int doc);
void spec_list_free(struct spec_list *l);
/* The specs that built g (to rebuild it with one object re-read). */
int spec_list_from_gen(struct spec_list *l, const struct generation *g);

#endif
