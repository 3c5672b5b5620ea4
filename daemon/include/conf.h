/* Reading config: files to node trees, node trees to structs through key tables. */
#ifndef PROXYD_CONF_H
#define PROXYD_CONF_H

#include <stdbool.h>
#include "common.h"
#include "conf_types.h"

/* Parse every YAML document of a file (max 16 MiB, depth 64). NULL + *err on failure. */
struct cfile *cfile_load(const char *path, char **err);
/* Parse YAML text held in memory; name is used in error messages. */
struct cfile *cfile_parse(const char *name, const char *text, size_t len, char **err);
void cfile_ref(struct cfile *f);
void cfile_unref(struct cfile *f);

/* Map lookup by normalized key (NULL if absent or n is not a map). */
const struct cnode *cmap_get(const struct cnode *map, const char *norm);
static inline const struct cnode *cmap_key(const struct cnode *map, size_t i)
{
    return map->items[2 * i];
}
static inline const struct cnode *cmap_val(const struct cnode *map, size_t i)
{
    return map->items[2 * i + 1];
}
/* Deep equality of two trees (positions ignored). */
bool cnode_equal(const struct cnode *a, const struct cnode *b);
/* Normalize a string as keys are: lower-case, '-' -> '_' into out (size >= strlen+1). */
void conf_normalize(const char *in, char *out, size_t outsz);
const char *cnode_type_name(const struct cnode *n);

/* Record an error at node `at` (may be NULL): "file:line:col: kind 'name': key 'k': why".
 * Keeps the first error only. Returns -1. */
int conf_fail(struct conf_ctx *cx, const struct cnode *at, const char *fmt, ...) PRINTF(3, 4);

/* Apply key tables to map `n` writing into obj: every key must be in one of the
 * NULL-terminated tables (else "unknown key"); missing keys get their default.
 * Keys listed in `skip` (NULL-terminated, may be NULL) are left to the caller. */
int conf_apply(struct conf_ctx *cx, const struct cnode *n, const struct conf_key *const *tables,
               const char *const *skip, void *obj);

/* Is the normalized key of pair i one of the table's names or aliases? */
const struct conf_key *conf_key_find(const struct conf_key *const *tables, const char *norm);

/* Resolve a path from config relative to cx->dir. Returns malloc'd path or NULL. */
char *conf_path(struct conf_ctx *cx, const struct cnode *n);

#endif
