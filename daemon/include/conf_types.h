/* Config node tree: what the YAML files said, with where they said it. Built once by
 * conf_yaml.c (the only file that talks to libyaml); immutable afterwards; shared by
 * the generations built from it (a cfile is refcounted). */
#ifndef PROXYD_CONF_TYPES_H
#define PROXYD_CONF_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include "arena.h"

enum cnode_type {
    CN_NULL = 0, /* ~, null, empty plain scalar */
    CN_SCALAR,
    CN_SEQ,
    CN_MAP,
};

struct cfile;

struct cnode {
    uint8_t type;        /* enum cnode_type */
    uint8_t quoted;      /* scalar was quoted: never null/bool/number by spelling */
    uint32_t line, col;  /* 1-based position of the node's first character */
    struct cfile *file;  /* borrowed: the file holding this node */
    const char *str;     /* scalar text, NUL-terminated (also set for map keys) */
    size_t len;          /* strlen(str) */
    const char *norm;    /* map keys only: lower-cased, '-' replaced by '_' */
    size_t n;            /* number of items (seq) or pairs (map) */
    struct cnode **items; /* seq items; for maps: keys at [2i], values at [2i+1] */
};

/* One parsed YAML file: every document in it. Objects keep a reference on the file
 * their config node lives in, so reloads can compare and single objects re-read. */
struct cfile {
    int refs;            /* main-thread only */
    char *path;          /* owned: as opened */
    char *dir;           /* owned: its directory, base for relative paths in it */
    struct arena arena;  /* all nodes */
    struct cnode **docs; /* arena: document roots */
    size_t ndocs;
};

/* While a module reads its config: who is being configured, for error messages. */
struct conf_ctx {
    const char *kind;    /* "server", "escaper", ... or NULL at top level */
    const char *name;    /* object name or NULL */
    const char *key;     /* key being parsed or NULL */
    const char *dir;     /* base directory for relative paths */
    struct arena *arena; /* borrowed: parsed values are allocated here (the object's) */
    const struct cnode *node; /* borrowed: the object's map: errors without a node point here */
    char *err;           /* owned: first error, formatted "file:line:col: ..." */
};

struct conf_key;
/* A value grammar: parse node into *slot. On error call conf_fail() and return -1. */
typedef int (*conf_parse_fn)(struct conf_ctx *cx, const struct cnode *n, void *slot,
                             const struct conf_key *k);

#define CK_F_REQUIRED    0x1 /* missing key is an error */
#define CK_F_UNSUPPORTED 0x2 /* a g3proxy key proxyd does not implement yet: error if present */
#define CK_F_IGNORED     0x4 /* accepted and has no effect in proxyd (documented as such) */

/* One config key of a module (nginx ngx_command_t style). Defaults live only here. */
struct conf_key {
    const char *name;             /* normalized spelling */
    const char *const *aliases;   /* NULL-terminated normalized aliases, may be NULL */
    conf_parse_fn parse;          /* value grammar; NULL only for CK_F_UNSUPPORTED */
    size_t off;                   /* offset of the slot in the object */
    const char *def;              /* default written as YAML, NULL = zeroed slot */
    int64_t min, max;             /* bounds for numbers/durations/sizes when min < max */
    unsigned flags;               /* CK_F_* */
};

#define CK_ALIASES(...) ((const char *const[]){__VA_ARGS__, NULL})

#endif
