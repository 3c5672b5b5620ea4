/* Helpers and common key tables for server modules. */
#ifndef PROXYD_SERVER_H
#define PROXYD_SERVER_H

#include "confval.h"
#include "obj_types.h"

/* name/type are handled by the core; these are the other keys every server has. */
extern const struct conf_key server_base_keys[];
/* listen, listen_in_worker, ingress_network_filter */
extern const struct conf_key server_listen_keys[];
/* escaper, user_group, filters, limits, copy sizes, idle checks, task log flags... */
extern const struct conf_key server_proxy_keys[];

/* link() for servers using server_proxy_keys: resolves escaper and user_group. */
int server_link_common(struct server *s, struct generation *g, struct conf_ctx *cx);

/* A new connection (from a listener or handed over by another server). */
struct accepted {
    int fd;                         /* owned by whoever holds the struct */
    union sockaddr_any peer;        /* client address (from PROXY protocol when used) */
    union sockaddr_any local;       /* our address */
    union sockaddr_any sock_peer;   /* the socket's real peer */
    bool full;                      /* over max_connections: answer "busy" and close */
    uint8_t hops;                   /* servers it was handed over by (loop guard, pp_accept.h) */
};

/* Hand a connection to server s (same generation) on worker w: checks the server's
 * ingress filter and connection limit, counts it, and calls its accept op. */
void server_accept(struct server *s, struct worker *w, struct accepted *a);
struct relay_conf;
/* The relay settings of a server's tasks (copy buffer and yield sizes, idle checks,
 * tcp_sock_speed_limit). */
void server_relay_conf(const struct server *s, struct relay_conf *rc);

/* Apply the server's tcp_misc_opts to an accepted client socket. With the defaults
 * nothing is done: accepted sockets inherit TCP_NODELAY from the listener. */
void server_client_sockopts(struct server *s, const struct accepted *a);
/* Every connection passed to an accept op ends with exactly one call of this. */
void server_conn_done(struct server *s);

#endif
