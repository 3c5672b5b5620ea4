/* Helpers and common key tables for resolver modules. */
#ifndef PROXYD_RESOLVER_H
#define PROXYD_RESOLVER_H

#include "confval.h"
#include "obj_types.h"

/* Every key g3proxy's caching resolvers (c_ares, hickory) share, writing into
 * struct resolver's cache member:
 *   graceful_stop_wait        duration  30s   accepted (an old resolver lives as long
 *                                             as the tasks that use it)
 *   protective_query_timeout  duration  60s   a driver query never runs longer
 *   positive_min_ttl          u32       30    (aliases: none)
 *   positive_max_ttl          u32       3600  (positive_ttl, max_cache_ttl, maximum_cache_ttl)
 *   negative_min_ttl          u32       30    (negative_ttl, protective_cache_ttl)
 * deny_all accepts them too (they have no effect there); fail_over too (g3proxy's
 * fail_over negative_ttl is the alias above; the positive ones are a proxyd extension). */
extern const struct conf_key resolver_base_keys[];

/* init() helper: positive_min_ttl <= positive_max_ttl. 0 / -1 with conf_fail(). */
int resolver_check_ttls(struct resolver *r, struct conf_ctx *cx);

/* "c-ares" for c_ares: the resolver_type field of Resolve logs. */
void resolver_log_type(const struct resolver *r, char *buf, size_t len);

#endif
