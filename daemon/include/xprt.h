/* Transports: how bytes go in and out of a connected socket (plain TCP or TLS).
 * Servers, escapers and the relay never call recv/send/SSL_* themselves.
 *
 * recv/send return > 0 for bytes moved, 0 for end of stream (recv only), or -1 with
 * errno: EAGAIN means "try again when c->want says so" (TLS may need to write to
 * read and read to write), anything else is a hard error. */
#ifndef PROXYD_XPRT_H
#define PROXYD_XPRT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CO_WANT_READ  0x1
#define CO_WANT_WRITE 0x2

#define CO_F_EOF   0x01 /* reading side saw the end of stream */
#define CO_F_SHUTW 0x02 /* we shut our writing side */
#define CO_F_ERROR 0x04 /* a hard error happened */

struct conn;

struct xprt_ops {
    const char *name;                  /* "tcp", "tls" */
    bool can_splice;                   /* bytes may bypass userspace (plain TCP) */
    ssize_t (*recv)(struct conn *c, void *buf, size_t len);
    ssize_t (*send)(struct conn *c, const void *buf, size_t len);
    /* Stop sending (TCP FIN; TLS close_notify then FIN). 0 / -1 (EAGAIN: retry). */
    int (*shutw)(struct conn *c);
    /* Release transport state (not the fd). */
    void (*release)(struct conn *c);
};

struct conn {
    int fd;                            /* owned; -1 when closed */
    const struct xprt_ops *xprt;       /* borrowed: static */
    void *ssl;                         /* SSL * for tls, owned */
    unsigned want;                     /* CO_WANT_*: what the last EAGAIN waits for */
    unsigned flags;                    /* CO_F_* */
};

extern const struct xprt_ops xprt_tcp;
extern const struct xprt_ops xprt_tls;

static inline void conn_init(struct conn *c, int fd)
{
    c->fd = fd;
    c->xprt = &xprt_tcp;
    c->ssl = NULL;
    c->want = 0;
    c->flags = 0;
}

static inline ssize_t conn_recv(struct conn *c, void *buf, size_t len)
{
    return c->xprt->recv(c, buf, len);
}

static inline ssize_t conn_send(struct conn *c, const void *buf, size_t len)
{
    return c->xprt->send(c, buf, len);
}

static inline int conn_shutw(struct conn *c)
{
    return c->xprt->shutw(c);
}

/* Release the transport and close the fd. Safe to call twice. */
void conn_close(struct conn *c);

/* ---- TLS ---- */
/* Start a TLS client on a connected c (server name may be NULL: no SNI, no name
 * check). verify_name: check the peer certificate against this name/IP (NULL = no
 * hostname check). 0 / -1 (OOM). */
int conn_tls_client(struct conn *c, void *ssl_ctx, const char *sni, const char *verify_name);
/* Start a TLS server on an accepted c. */
int conn_tls_server(struct conn *c, void *ssl_ctx);
/* Drive the handshake: STEP_DONE, STEP_AGAIN (wait for c->want), STEP_ERROR. On
 * error, *why gets a static description. */
int conn_tls_handshake(struct conn *c, const char **why);

#endif
