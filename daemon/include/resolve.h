/* Name resolution for tasks: the cache with g3proxy's TTL rules above the resolver
 * drivers, one cache per resolver per worker (no locks), queries that can be
 * cancelled, and concurrent queries for the same name and family coalesced.
 *
 * Cache rules (reference §1.7): a record with TTL R, positive_min_ttl m and
 * positive_max_ttl M expires (is refreshed on the next lookup) and vanishes (is
 * dropped) at:  R > M+m: expire M, vanish R;  R > 2m: expire R-m, vanish R;
 * R > m: expire m, vanish R;  else expire m, vanish m+1. A lookup finding an expired
 * but not vanished entry answers from it and refreshes it in the background.
 * Errors (NXDOMAIN, no data, timeouts, refusals) are kept negative_min_ttl seconds
 * and never served stale; a failed refresh keeps the stale positive entry until it
 * vanishes (retrying at most every negative_min_ttl). deny_all answers are not cached.
 *
 * Per worker and resolver, at most RESOLVE_CACHE_MAX entries are kept (least
 * recently used evicted first), each with at most RESOLVE_MAX_ADDRS addresses.
 *
 * Lifetime: the cache of a resolver lives in a refcounted block that a reload hands
 * to the same-named resolver when its config is unchanged; the in-flight state lives
 * in the resolver object, per worker, and dies with it (worker_detach). A resolver
 * may be used on worker w only while w pins its generation (tasks do). */
#ifndef PROXYD_RESOLVE_H
#define PROXYD_RESOLVE_H

#include <stdint.h>
#include "obj_types.h"

struct worker;
struct conf_ctx;
struct resolve_job;

#define RESOLVE_CACHE_MAX 65536 /* entries per resolver per worker */
#define RESOLVE_MAX_ADDRS 32    /* addresses kept per (name, family) */

/* Called once on the job's worker unless cancelled. res->ips is valid during the
 * call only. family is the one asked for. The job is freed when the callback
 * returns: do not cancel it from inside its own callback (cancelling other jobs,
 * starting new ones and ending the task are fine). */
typedef void (*resolve_done_fn)(void *arg, int family, const struct resolve_result *res);

/* Look name up (lower-case domain, no trailing dot) for family AF_INET or AF_INET6
 * through resolver r on worker w. The callback always runs later, from the event
 * loop (never inside this call), even for cache hits and deny_all. NULL on OOM. */
struct resolve_job *resolve_start(struct resolver *r, struct worker *w, const char *name,
                                  int family, resolve_done_fn cb, void *arg);
/* The callback will not run; the job is freed. NULL ok. When it was the last one
 * waiting for a driver query, that query goes on to fill the cache (bounded by
 * protective_query_timeout). */
void resolve_cancel(struct resolve_job *j);

/* Errors as short text for logs and HTTP bodies ("NXDOMAIN", "timeout", ...). */
const char *resolve_strerror(int err);

/* proxyctl `resolver NAME query DOMAIN`: run on worker w, which must keep r's
 * generation pinned until done runs (worker_pin()/worker_unpin()). Queries A and/or
 * AAAA per strategy (enum resolve_order) and calls done once, later, with the
 * addresses merged in strategy order (ips valid during the call only). err is 0 when
 * any address came back, else the first family's error in strategy order. Returns 0,
 * or -1 on OOM (done not called). Cannot be cancelled. */
int resolve_control_query(struct resolver *r, struct worker *w, const char *name, int strategy,
                          void (*done)(void *arg, int err, const struct ip_addr *ips, size_t n),
                          void *arg);

/* ---- for resolver modules ---- */

/* init(): give r a cache (per-worker slots and a fresh shared block). Resolvers
 * without it (deny_all) pass every lookup straight to their driver. 0 / -1. */
int resolve_cache_init(struct resolver *r, struct conf_ctx *cx);
/* inherit(): take over old's cache (call only when the config is unchanged). */
void resolve_cache_inherit(struct resolver *r, struct resolver *old);
/* destroy(): drop the cache reference (main thread). Slots still present (a worker
 * never detached) are freed too; their loops must still exist. */
void resolve_cache_destroy(struct resolver *r);
/* worker_detach(): cancel r's driver queries on w and free r's state there. Call it
 * before tearing down driver state of w (the queries are cancelled through the
 * driver). Jobs still waiting are left for their owners to cancel. */
void resolve_worker_detach(struct resolver *r, struct worker *w);

/* The TTL rules above: expire and vanish delays (seconds) for a record TTL. */
void resolve_ttl_rule(uint32_t ttl, uint32_t min_ttl, uint32_t max_ttl, uint32_t *expire,
                      uint32_t *vanish);

#endif
