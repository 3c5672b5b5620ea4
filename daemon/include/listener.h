/* Listening sockets: one SO_REUSEPORT socket per worker (times `instance`) for each
 * listen address. A set is shared by successive generations while its address and
 * options stay the same, so a reload never closes a listening socket that is still
 * wanted and never refuses a connection attempt.
 *
 * References (atomic): the current generation holds one on each set its servers use;
 * each worker holds one on each set it watches. The last reference closes the
 * sockets, so a set dropped by a reload closes once every worker stopped watching it. */
#ifndef PROXYD_LISTENER_H
#define PROXYD_LISTENER_H

#include <stdbool.h>
#include "confval_types.h"

struct generation;

struct listen_set {
    int refs;                   /* atomic */
    struct listen_conf conf;    /* copy */
    union sockaddr_any bound;   /* actual address (port 0 resolved) */
    unsigned nfd;               /* nworkers * instance */
    int fds[];                  /* fds[i] is watched by worker i % nworkers */
};

/* The set for server `name` listening with conf: the set of cur's (may be NULL)
 * same-named server when its conf is equal, else one of another server of cur with an
 * equal conf and a fixed port (port 0 sets are never shared between names), each with
 * a new reference; or newly bound sockets (nworkers * conf->instance). NULL + *err. */
struct listen_set *listen_get(const struct generation *cur, const char *name,
                              const struct listen_conf *conf, unsigned nworkers, char **err);
void listen_set_ref(struct listen_set *ls);
void listen_set_unref(struct listen_set *ls);
/* Dead-loop detection: is `peer` one of g's listening sockets? `local` is our own
 * address on the connection to peer (a wildcard listener matches a peer on our own
 * address or on loopback). */
bool listen_is_own(const struct generation *g, const union sockaddr_any *peer,
                   const union sockaddr_any *local);
/* Does one of g's listeners use this port (any address)? */
bool listen_port_is_own(const struct generation *g, uint16_t port);

#endif
