/* Name resolution for tasks: the cache with g3proxy's TTL rules above the resolver
 * drivers, one cache per resolver per worker (no locks), queries that can be
 * cancelled, and concurrent queries for the same name and family coalesced.
 *
 * Cache rules (reference §1.7): a record with TTL R, positive_min_ttl m and
 * positive_max_ttl M expires (is refreshed on the next lookup) and vanishes (is
 * dropped) at:  R > M+m: expire M, vanish R;  R > 2m: expire R-m, vanish R;
 * R > m: expire m, vanish R;  else expire m, vanish m+1. A lookup finding an expired
 * but not vanished entry answers from it and refreshes it in the background.
 * Negative answers are kept negative_min_ttl seconds. */
#ifndef PROXYD_RESOLVE_H
#define PROXYD_RESOLVE_H

#include <stdint.h>
#include "obj_types.h"

struct worker;
struct resolve_job;

/* Called once on the job's worker unless cancelled. res->ips is valid during the
 * call only. family is the one asked for. */
typedef void (*resolve_done_fn)(void *arg, int family, const struct resolve_result *res);

/* Look name up (lower-case domain, no trailing dot) for family AF_INET or AF_INET6
 * through resolver r on worker w. The callback always runs later, from the event
 * loop (never inside this call), even for cache hits. NULL on OOM. */
struct resolve_job *resolve_start(struct resolver *r, struct worker *w, const char *name,
                                  int family, resolve_done_fn cb, void *arg);
/* The callback will not run; the job is freed. NULL ok. */
void resolve_cancel(struct resolve_job *j);

/* Errors as short text for logs and HTTP bodies ("NXDOMAIN", "timeout", ...). */
const char *resolve_strerror(int err);

/* Common resolver keys: graceful_stop_wait, protective_query_timeout,
 * positive_min_ttl, positive_max_ttl, negative_min_ttl (alias negative_ttl).
 * Resolver modules that cache include this table and embed struct resolver_cache_conf
 * right after struct resolver. */
struct resolver_cache_conf {
    uint64_t graceful_stop_wait_ns;      /* 30s */
    uint64_t protective_query_timeout_ns; /* 60s: a driver query never runs longer */
    uint32_t positive_min_ttl;           /* 30 */
    uint32_t positive_max_ttl;           /* 3600 */
    uint32_t negative_min_ttl;           /* 30 */
};

#endif
