/* Idle upstream connections kept for reuse (http_forward_upstream_keepalive), one pool
 * per worker. An idle connection is watched: if the peer closes it or sends anything,
 * or its idle time expires, it is dropped. */
#ifndef PROXYD_UPOOL_H
#define PROXYD_UPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "confval_types.h"
#include "xprt.h"

struct worker;
struct upool;

struct upool_key {
    const char *escaper;        /* escaper name: connections never cross escapers */
    const char *host;           /* target host (lower-case) */
    uint16_t port;
    bool tls;                   /* TLS to the origin (https forward) */
};

struct upool *upool_new(struct worker *w);
void upool_free(struct upool *p);
/* Keep c for later (takes it; closes it if the pool is full). */
void upool_put(struct upool *p, const struct upool_key *k, struct conn *c, double idle_expire,
               const union sockaddr_any *peer);
/* An idle connection for k into *c (and its peer address); false when none. */
bool upool_get(struct upool *p, const struct upool_key *k, struct conn *c, union sockaddr_any *peer);
size_t upool_idle(const struct upool *p);

#endif
