/* Helpers for tests of config grammars: parse YAML text and run a grammar on it. */
#ifndef PROXYD_TESTCONF_H
#define PROXYD_TESTCONF_H

#include <stdlib.h>
#include "conf.h"
#include "confval.h"

struct tconf {
    struct cfile *f;
    struct arena arena;
    struct conf_ctx cx;
};

/* Parse `yaml` (one document) as if it were the file "t.yaml" and apply `fn` to the
 * document root (or to the value of key `key` when the root is a map and key != NULL).
 * Returns the grammar's result; t->cx.err holds the message on failure. Call
 * tconf_done() after inspecting the slot. */
static inline int tconf_run(struct tconf *t, const char *yaml, conf_parse_fn fn, void *slot,
                            const struct conf_key *k)
{
    char *err = NULL;

    memset(t, 0, sizeof(*t));
    arena_init(&t->arena, 1024);
    t->cx.arena = &t->arena;
    t->cx.kind = "server";
    t->cx.name = "s1";
    t->cx.key = "k";
    t->cx.dir = "/tmp";
    t->f = cfile_parse("t.yaml", yaml, strlen(yaml), &err);
    if (!t->f) {
        t->cx.err = err;
        return -2;
    }
    return fn(&t->cx, t->f->docs[0], slot, k);
}

static inline void tconf_done(struct tconf *t)
{
    free(t->cx.err);
    t->cx.err = NULL;
    arena_free(&t->arena);
    cfile_unref(t->f);
    t->f = NULL;
}

#endif
