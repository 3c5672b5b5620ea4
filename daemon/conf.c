/* Key tables applied to node trees; error formatting with file:line:col. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

void conf_normalize(const char *in, char *out, size_t outsz)
{
    size_t i = 0;

    for (; in[i] && i + 1 < outsz; i++)
        out[i] = in[i] == '-' ? '_' : (char)tolower((unsigned char)in[i]);
    out[i] = 0;
}

const char *cnode_type_name(const struct cnode *n)
{
    switch (n ? n->type : CN_NULL) {
    case CN_SCALAR: return "scalar";
    case CN_SEQ: return "sequence";
    case CN_MAP: return "map";
    default: return "null";
    }
}

const struct cnode *cmap_get(const struct cnode *map, const char *norm)
{
    if (!map || map->type != CN_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(cmap_key(map, i)->norm, norm) == 0)
            return cmap_val(map, i);
    return NULL;
}

bool cnode_equal(const struct cnode *a, const struct cnode *b)
{
    if (a == b)
        return true;
    if (!a || !b || a->type != b->type || a->n != b->n)
        return false;
    switch (a->type) {
    case CN_NULL:
        return true;
    case CN_SCALAR:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
    case CN_SEQ:
        for (size_t i = 0; i < a->n; i++)
            if (!cnode_equal(a->items[i], b->items[i]))
                return false;
        return true;
    case CN_MAP:
        for (size_t i = 0; i < a->n; i++) {
            const struct cnode *bv = cmap_get(b, cmap_key(a, i)->norm);
            if (!bv || !cnode_equal(cmap_val(a, i), bv))
                return false;
        }
        return true;
    }
    return false;
}

int conf_fail(struct conf_ctx *cx, const struct cnode *at, const char *fmt, ...)
{
    char why[768], pos[512] = "", who[384] = "", key[160] = "";
    va_list ap;

    if (cx->err)
        return -1; /* keep the first, most precise error */
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!at)
        at = cx->node;
    if (at && at->file)
        snprintf(pos, sizeof(pos), "%s:%u:%u: ", at->file->path, at->line, at->col);
    if (cx->kind && cx->name)
        snprintf(who, sizeof(who), "%s '%s': ", cx->kind, cx->name);
    else if (cx->kind)
        snprintf(who, sizeof(who), "%s: ", cx->kind);
    if (cx->key)
        snprintf(key, sizeof(key), "key '%s': ", cx->key);
    err_set(&cx->err, "%s%s%s%s", pos, who, key, why);
    return -1;
}

const struct conf_key *conf_key_find(const struct conf_key *const *tables, const char *norm)
{
    for (; *tables; tables++) {
        for (const struct conf_key *k = *tables; k->name; k++) {
            if (strcmp(k->name, norm) == 0)
                return k;
            for (const char *const *a = k->aliases; a && *a; a++)
                if (strcmp(*a, norm) == 0)
                    return k;
        }
    }
    return NULL;
}

static bool in_list(const char *const *l, const char *s)
{
    for (; l && *l; l++)
        if (strcmp(*l, s) == 0)
            return true;
    return false;
}

/* Defaults are written in YAML, exactly as a user would write the value. */
static int apply_default(struct conf_ctx *cx, const struct conf_key *k, void *obj)
{
    char *err = NULL;
    struct cfile *f = cfile_parse("<default>", k->def, strlen(k->def), &err);
    int rc;

    if (!f || f->ndocs != 1) {
        conf_fail(cx, NULL, "bad built-in default '%s': %s", k->def, err ? err : "empty");
        free(err);
        cfile_unref(f);
        return -1;
    }
    rc = k->parse(cx, f->docs[0], (char *)obj + k->off, k);
    cfile_unref(f);
    return rc;
}

int conf_apply(struct conf_ctx *cx, const struct cnode *n, const struct conf_key *const *tables,
               const char *const *skip, void *obj)
{
    const char *saved = cx->key;

    if (!n || n->type != CN_MAP)
        return conf_fail(cx, n, "expected a map, got a %s", cnode_type_name(n));

    for (size_t i = 0; i < n->n; i++) {
        const struct cnode *kn = cmap_key(n, i);
        const struct conf_key *k;

        if (in_list(skip, kn->norm))
            continue;
        cx->key = kn->str;
        k = conf_key_find(tables, kn->norm);
        if (!k) {
            cx->key = NULL;
            conf_fail(cx, kn, "unknown key '%s'", kn->str);
            goto fail;
        }
        if (k->flags & CK_F_UNSUPPORTED) {
            conf_fail(cx, kn, "unsupported: proxyd does not implement this key yet");
            goto fail;
        }
        /* two aliases of the same key in one map */
        for (size_t j = 0; j < i; j++) {
            if (conf_key_find(tables, cmap_key(n, j)->norm) == k) {
                conf_fail(cx, kn, "set twice (also as '%s' at line %u)", cmap_key(n, j)->str,
                          cmap_key(n, j)->line);
                goto fail;
            }
        }
        if (k->parse(cx, cmap_val(n, i), (char *)obj + k->off, k) < 0)
            goto fail;
    }

    for (const struct conf_key *const *t = tables; *t; t++) {
        for (const struct conf_key *k = *t; k->name; k++) {
            bool present = false;

            if (in_list(skip, k->name))
                continue;
            for (size_t i = 0; i < n->n && !present; i++)
                present = conf_key_find(tables, cmap_key(n, i)->norm) == k;
            if (present)
                continue;
            cx->key = k->name;
            if (k->flags & CK_F_REQUIRED) {
                conf_fail(cx, n, "missing required key");
                goto fail;
            }
            if (k->def && k->parse && apply_default(cx, k, obj) < 0)
                goto fail;
        }
    }
    cx->key = saved;
    return 0;
fail:
    cx->key = saved;
    return -1;
}

char *conf_path(struct conf_ctx *cx, const struct cnode *n)
{
    char *p;

    if (!n || n->type != CN_SCALAR || !n->len) {
        conf_fail(cx, n, "expected a path");
        return NULL;
    }
    if (n->str[0] == '/' || !cx->dir)
        p = strdup(n->str);
    else if (asprintf(&p, "%s/%s", cx->dir, n->str) < 0)
        p = NULL;
    if (!p)
        conf_fail(cx, n, "out of memory");
    return p;
}
