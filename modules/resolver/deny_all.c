/* Resolver deny_all: every query fails. The default for escapers that need a
 * resolver when none fits, and a way to forbid name resolution outright. */
#include "registry.h"
#include "resolver.h"

static const struct conf_key *const deny_all_keys[] = {resolver_base_keys, NULL};

static struct resolve_query *deny_all_query(struct resolver *r, struct worker *w, const char *name,
                                            int family, resolve_cb cb, void *arg)
{
    return NULL; /* failed at once: the caller reports RESOLVE_E_DENIED */
}

const struct resolver_ops resolver_deny_all_ops = {
    .type = "deny_all",
    .aliases = NULL,
    .keys = deny_all_keys,
    .size = sizeof(struct resolver),
    .query = deny_all_query,
};
