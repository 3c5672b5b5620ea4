/* Configured objects: the four module kinds (server, escaper, resolver, user group),
 * their ops tables, and the base struct every instance embeds first.
 *
 * Lifetime: an object belongs to exactly one generation and dies with it. A reload
 * builds every object afresh from its config nodes; state that must survive a
 * reload (listening sockets, counters, caches, published data) lives in refcounted
 * blocks that the new object takes over from the previous object of the same name
 * and type through its ops' inherit(). */
#ifndef PROXYD_OBJ_TYPES_H
#define PROXYD_OBJ_TYPES_H

#include <stdint.h>
#include "arena.h"
#include "conf_types.h"
#include "confval_types.h"

struct generation;
struct worker;
struct task;
struct accepted;
struct connect_ctx;
struct udp_ctx;

enum obj_kind {
    OBJ_RESOLVER = 0,
    OBJ_ESCAPER,
    OBJ_USER_GROUP,
    OBJ_SERVER,
    OBJ_NKINDS,
};

struct obj {
    enum obj_kind kind;
    const char *name;           /* arena */
    const char *type;           /* borrowed: canonical module type name */
    struct generation *gen;     /* borrowed: the generation owning this object */
    const struct cnode *conf;   /* borrowed: lives in src */
    struct cfile *src;          /* ref: file holding conf */
    int doc;                    /* document index in src; -1 when inline in the main file */
    struct arena arena;         /* owned: the instance and its parsed config */
};

/* Fields every ops table starts with (same layout in all four kinds). */
#define OBJ_OPS_HEAD(inst)                                                                         \
    const char *type;                /* canonical type name, normalized */                          \
    const char *const *aliases;      /* NULL-terminated extra names, normalized; may be NULL */    \
    const struct conf_key *const *keys; /* NULL-terminated key tables (common ones included) */    \
    size_t size;                     /* instance size; the kind's base struct comes first */      \
    /* after keys are applied: validate and derive. May be NULL. */                                 \
    int (*init)(inst * o, struct conf_ctx * cx);                                                    \
    /* resolve names to objects of the same generation. May be NULL. */                           \
    int (*link)(inst * o, struct generation * g, struct conf_ctx * cx);                            \
    /* take over state from `old`, the same-named object of the previous generation,              \
     * of the same type. Runs on the main thread before the swap. May be NULL. */                 \
    void (*inherit)(inst * o, inst * old);                                                          \
    /* free what the arena does not own. May be NULL. */                                            \
    void (*destroy)(inst * o);                                                                      \
    /* a worker stops using this object (its generation was left): free per-worker                \
     * state. Runs on that worker. May be NULL. */                                                 \
    void (*worker_detach)(inst * o, struct worker * w)

/* ------------------------------------------------------------------ resolvers */
struct resolver;
struct resolve_query;
struct resolve_shared;
struct resolve_slot;
struct evrec;
struct resolve_result {
    int err;                    /* 0 or RESOLVE_E_* */
    size_t n;
    struct ip_addr *ips;        /* borrowed: valid during the callback only */
    uint32_t ttl;               /* seconds */
    uint8_t why;                /* RESOLVE_W_*: detail of err for logs and fail_over; 0 = none */
};
#define RESOLVE_E_NOTFOUND  1   /* NXDOMAIN or no record of that family */
#define RESOLVE_E_TIMEOUT   2
#define RESOLVE_E_REFUSED   3   /* server refused / failed */
#define RESOLVE_E_DENIED    4   /* deny_all, or redirected to nothing */
#define RESOLVE_E_INTERNAL  5
#define RESOLVE_E_CANCELLED 6
/* Details (g3proxy's error_type / error_subtype in the Resolve log, see resolve.c). */
#define RESOLVE_W_NODATA        1   /* the name exists without a record of that family */
#define RESOLVE_W_NXDOMAIN      2   /* ServerError NOTFOUND */
#define RESOLVE_W_FORMERR       3
#define RESOLVE_W_SERVFAIL      4
#define RESOLVE_W_NOTIMP        5
#define RESOLVE_W_REFUSED       6
#define RESOLVE_W_BADQUERY      7   /* DriverError ... */
#define RESOLVE_W_BADNAME       8
#define RESOLVE_W_BADFAMILY     9
#define RESOLVE_W_BADRESP       10
#define RESOLVE_W_CONNREFUSED   11
#define RESOLVE_W_TIMEOUT       12
#define RESOLVE_W_INTERNAL      13
#define RESOLVE_W_NORESOLVER    14  /* LocalError: deny_all */
#define RESOLVE_W_DRIVER_TIMEOUT 15 /* LocalError: protective_query_timeout or max_timeout */
typedef void (*resolve_cb)(void *arg, const struct resolve_result *res);

struct resolver_ops {
    OBJ_OPS_HEAD(struct resolver);
    /* Start a query for one family (AF_INET/AF_INET6) on worker w. cb runs later on w
     * (never inside this call), exactly once, unless the returned handle is cancelled
     * first. NULL = failed at once (cb not called): the caller reports
     * RESOLVE_E_DENIED. Called by resolve.c only. */
    struct resolve_query *(*query)(struct resolver *r, struct worker *w, const char *name,
                                   int family, resolve_cb cb, void *arg);
    /* Cancel a pending query: its callback will not run. Never called from inside
     * that query's own callback. May be NULL when query never returns a handle. */
    void (*cancel)(struct resolve_query *q);
    /* Add driver fields to a Resolve log record (c-ares: server, bind_ipv4/6). May be
     * NULL. Any thread that uses r. */
    void (*log_fields)(const struct resolver *r, struct evrec *rec);
};

/* Cache settings: the common resolver keys (resolver_base_keys in resolver.h). */
struct resolver_cache_conf {
    uint64_t graceful_stop_wait_ns;      /* 30s; accepted, see resolver.c */
    uint64_t protective_query_timeout_ns; /* 60s: a driver query never runs longer */
    uint32_t positive_min_ttl;           /* 30 */
    uint32_t positive_max_ttl;           /* 3600 */
    uint32_t negative_min_ttl;           /* 30 */
};

struct resolver {
    struct obj obj;
    const struct resolver_ops *ops; /* borrowed: static */
    struct resolver_cache_conf cache; /* resolver_base_keys */
    /* Caching resolvers only (set up by resolve_cache_init(); NULL for deny_all): */
    struct resolve_shared *shared;  /* ref: the per-worker caches, kept across reloads */
    struct resolve_slot **slots;    /* arena: [nslots] per-worker state (in-flight
                                     * queries), each created and freed on its worker */
    unsigned nslots;
};

/* A resolver query that can be cancelled; drivers embed it. */
struct resolve_query {
    struct resolver *r;             /* borrowed */
};

/* ------------------------------------------------------------------- escapers */
struct escaper;

#define ESC_CAP_TCP          0x01  /* tcp_connect */
#define ESC_CAP_HTTP_FORWARD 0x02  /* next proxy takes absolute-form HTTP requests */
#define ESC_CAP_UDP          0x04  /* relays datagrams: udp_open/udp_sendto/udp_close */
#define ESC_CAP_ROUTE        0x08  /* select() picks another escaper */

struct escaper_ops {
    OBJ_OPS_HEAD(struct escaper);
    unsigned caps;              /* ESC_CAP_* */
    /* Route escapers: the next escaper for this task (same generation), or NULL to
     * refuse. Called on the task's worker. NULL for non-route escapers. */
    struct escaper *(*select)(struct escaper *e, struct task *t);
    /* Connect to cc->target on cc->w (see struct connect_ctx in escaper.h): 0 and
     * escaper_connect_done() later, or -1 with the results set when it failed at
     * once. Set cc->cancel while pending. NULL unless ESC_CAP_TCP. */
    int (*tcp_connect)(struct escaper *e, struct connect_ctx *cc);
    /* Open the escaper side of one UDP association (struct udp_ctx in escaper.h) on
     * u->w: 0, or -1 with u->reason and u->error set (u's callbacks not called).
     * Sockets may be opened lazily by udp_sendto. The state it makes is u->priv.
     * NULL unless ESC_CAP_UDP. */
    int (*udp_open)(struct escaper *e, struct udp_ctx *u);
    /* Send one datagram (data borrowed for the call) to dst; a domain is resolved
     * first (the datagram waits in a small bounded queue meanwhile). 0 when sent,
     * queued or dropped (counted in u), -1 when the association cannot go on
     * (u->reason, u->error set). Never calls u's callbacks from inside the call. NULL
     * unless ESC_CAP_UDP. */
    int (*udp_sendto)(struct udp_ctx *u, const struct upstream_addr *dst, const void *data,
                      size_t len);
    /* Release everything udp_open made; no callback of u runs afterwards. May be
     * called from inside u's callbacks. NULL unless ESC_CAP_UDP. */
    void (*udp_close)(struct udp_ctx *u);
};

struct escaper {
    struct obj obj;
    const struct escaper_ops *ops;  /* borrowed: static */
    struct escaper **next;          /* arena: escapers this one may hand tasks to (route types) */
    size_t nnext;
    struct escaper_stats *stats;    /* ref: survives reloads */
    char *shared_logger;            /* escaper_base_keys */
    struct metrics_tags extra_tags;
};

/* ---------------------------------------------------------------- user groups */
struct user_group;
struct user_group_ops {
    OBJ_OPS_HEAD(struct user_group);
};

struct user_group {
    struct obj obj;
    const struct user_group_ops *ops; /* borrowed: static */
};

/* -------------------------------------------------------------------- servers */
struct server;
struct listen_set;

#define SRV_CAP_TCP_LISTEN 0x01  /* listen key opens TCP listeners */

struct server_ops {
    OBJ_OPS_HEAD(struct server);
    unsigned caps;              /* SRV_CAP_* */
    /* A connection for this server on worker w (from its listener or handed over by
     * another server). Takes ownership of a->fd in every case. */
    void (*accept)(struct server *s, struct worker *w, struct accepted *a);
    /* Servers with sockets of their own (not SRV_CAP_TCP_LISTEN, e.g. UDP): open or
     * take over (from old's same-named object, old may be NULL) what they listen on.
     * Main thread, after inherit(), only for a generation about to be installed
     * (never for proxyd -t). 0, or -1 with conf_fail(cx). May be NULL. */
    int (*open_sockets)(struct server *s, struct generation *old, struct conf_ctx *cx);
    /* This server's generation became the current one on worker w (which is not
     * offline): start watching per-worker sockets. Runs on w. May be NULL. */
    void (*worker_attach)(struct server *s, struct worker *w);
};

struct server_stats;
/* Fields behind the common server keys (server_*_keys in server.h). */
struct server {
    struct obj obj;
    const struct server_ops *ops;   /* borrowed: static */
    struct listen_set *lset;        /* ref while this server's generation is current, else NULL */
    struct server_stats *stats;     /* ref: survives reloads */

    /* server_listen_keys */
    struct listen_conf listen;      /* set when the server listens itself */
    struct acl_net ingress;         /* ingress_network_filter */
    bool listen_in_worker;          /* accepted; proxyd always accepts on workers */

    /* server_proxy_keys */
    char *escaper_name;
    struct escaper *escaper;        /* borrowed: same generation */
    char *user_group_name;          /* NULL = no auth */
    struct user_group *user_group;  /* borrowed: same generation, may be NULL */
    struct acl_dst_host dst_host_filter;
    struct acl_ports dst_port_filter;
    struct tcp_speed_limit tcp_speed;
    struct udp_speed_limit udp_speed;
    uint64_t tcp_copy_buffer_size;
    uint64_t tcp_copy_yield_size;
    uint64_t udp_relay_packet_size;
    uint64_t udp_relay_yield_size;
    uint32_t udp_relay_batch_size;
    struct sock_misc_opts tcp_misc_opts;
    struct sock_misc_opts udp_misc_opts;
    uint64_t task_idle_check_interval_ns;
    uint32_t task_idle_max_count;
    bool flush_task_log_on_created;
    bool flush_task_log_on_connected;
    uint64_t task_log_flush_interval_ns;
    uint64_t max_connections;       /* 0 = unlimited (GoProxy --max-conns) */

    /* server_base_keys */
    char *shared_logger;
    struct metrics_tags extra_tags;
};

#endif
