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

/* The position and context every error of tconf_run() starts with. */
#define P "t.yaml:1:1: server 's1': key 'k': "

/* Parse `yaml` (one document) as if it were the file "t.yaml" and apply `fn` to the
 * document root; k supplies bounds (may be NULL). Returns the grammar's result;
 * t->cx.err holds the message on failure. Call tconf_done() after inspecting the slot. */
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

/* yaml on one line, for test names (static buffer) */
static inline const char *tc_one_line(const char *yaml)
{
    static char buf[512];
    size_t o = 0;

    for (; *yaml && o + 3 < sizeof(buf); yaml++) {
        if (*yaml == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *yaml;
        }
    }
    buf[o] = 0;
    return buf;
}

/* One check: fn rejects yaml with an error starting with prefix and containing why.
 * slot must be large enough for fn's type. Needs tap.h. */
static inline void tc_check_err(const char *file, int line, const char *yaml, conf_parse_fn fn,
                                void *slot, const struct conf_key *k, const char *prefix,
                                const char *why)
{
    struct tconf t;
    int rc = tconf_run(&t, yaml, fn, slot, k);

    if (!tap_ok(rc == -1 && t.cx.err && strncmp(t.cx.err, prefix, strlen(prefix)) == 0 &&
                    strstr(t.cx.err, why),
                file, line, "rejects %s", tc_one_line(yaml)))
        printf("#   rc %d, got: '%s'\n#   expected: '%s...%s'\n", rc,
               t.cx.err ? t.cx.err : "(null)", prefix, why);
    tconf_done(&t);
}

/* One check: fn parses yaml into slot. t stays alive (values may point into its
 * arena) until the caller's tconf_done(). Returns the grammar's result. */
static inline int tc_parse_ok(const char *file, int line, struct tconf *t, const char *yaml,
                              conf_parse_fn fn, void *slot, const struct conf_key *k)
{
    int rc = tconf_run(t, yaml, fn, slot, k);

    if (!tap_ok(rc == 0, file, line, "parses %s", tc_one_line(yaml)))
        printf("#   error: %s\n", t->cx.err ? t->cx.err : "(none)");
    return rc;
}

#endif
