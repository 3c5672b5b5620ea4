/* Common resolver keys. */
#include <stddef.h>

#include "conf.h"
#include "resolver.h"

#define ROFF(f) offsetof(struct resolver, cache.f)

/* graceful_stop_wait: g3proxy keeps a replaced resolver running that long for its
 * pending queries; here an old resolver object lives until the last task that started
 * with it ends, so the key is accepted and has no effect. */
const struct conf_key resolver_base_keys[] = {
    {"graceful_stop_wait", NULL, cp_duration, ROFF(graceful_stop_wait_ns), "30s"},
    {"protective_query_timeout", NULL, cp_duration, ROFF(protective_query_timeout_ns), "60s", 1,
     86400000},
    {"positive_min_ttl", NULL, cp_u32, ROFF(positive_min_ttl), "30"},
    {"positive_max_ttl", CK_ALIASES("positive_ttl", "max_cache_ttl", "maximum_cache_ttl"), cp_u32,
     ROFF(positive_max_ttl), "3600"},
    {"negative_min_ttl", CK_ALIASES("negative_ttl", "protective_cache_ttl"), cp_u32,
     ROFF(negative_min_ttl), "30"},
    {0},
};

int resolver_check_ttls(struct resolver *r, struct conf_ctx *cx)
{
    int rc = 0;

    if (r->cache.positive_min_ttl > r->cache.positive_max_ttl) {
        cx->key = "positive_min_ttl";
        rc = conf_fail(cx, cmap_get(cx->node, "positive_min_ttl"),
                       "positive_min_ttl (%u) is larger than positive_max_ttl (%u)",
                       r->cache.positive_min_ttl, r->cache.positive_max_ttl);
        cx->key = NULL;
    }
    return rc;
}

void resolver_log_type(const struct resolver *r, char *buf, size_t len)
{
    size_t i = 0;

    for (const char *p = r->ops->type; *p && i + 1 < len; p++)
        buf[i++] = *p == '_' ? '-' : *p;
    if (len)
        buf[i] = 0;
}
