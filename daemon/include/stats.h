/* Counters of servers and escapers. Each worker writes its own slot (no atomics on
 * the data path); readers sum the slots. Blocks are refcounted so that a reloaded
 * object keeps counting where its predecessor stopped. */
#ifndef PROXYD_STATS_H
#define PROXYD_STATS_H

#include <stdint.h>
#include "common.h"

#define STATS_MAX_WORKERS 256

struct server_stats_slot {
    uint64_t conn_total;        /* accepted connections */
    uint64_t task_total;        /* tasks started */
    uint64_t task_alive;        /* tasks running now */
    uint64_t forbidden_auth;    /* auth failed */
    uint64_t forbidden_dest;    /* destination denied by a filter */
    uint64_t forbidden_ingress; /* client address denied */
    uint64_t refused_full;      /* max_connections reached */
    uint64_t in_bytes;          /* read from clients */
    uint64_t out_bytes;         /* written to clients */
} __attribute__((aligned(64)));

struct server_stats {
    int refs;                   /* atomic */
    int64_t conn_alive;         /* atomic: open client connections (max_connections) */
    unsigned nslots;
    struct server_stats_slot slot[];
};

struct escaper_stats_slot {
    uint64_t task_total;
    uint64_t conn_attempt;
    uint64_t conn_established;
    uint64_t conn_error;
    uint64_t conn_timeout;
    uint64_t forbidden_ip;      /* egress filter */
    uint64_t in_bytes;          /* read from upstream */
    uint64_t out_bytes;         /* written to upstream */
} __attribute__((aligned(64)));

struct escaper_stats {
    int refs;
    unsigned nslots;
    struct escaper_stats_slot slot[];
};

/* Sized for STATS_MAX_WORKERS so a block never has to grow. */
struct server_stats *server_stats_new(void);
struct server_stats *server_stats_ref(struct server_stats *s);
void server_stats_unref(struct server_stats *s);   /* NULL ok */
void server_stats_sum(const struct server_stats *s, struct server_stats_slot *out);

struct escaper_stats *escaper_stats_new(void);
struct escaper_stats *escaper_stats_ref(struct escaper_stats *s);
void escaper_stats_unref(struct escaper_stats *s);
void escaper_stats_sum(const struct escaper_stats *s, struct escaper_stats_slot *out);

#endif
