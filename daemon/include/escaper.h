/* Escapers: how a task's connection leaves proxyd. Servers ask for a connection to
 * a target with escaper_tcp_connect(); route escapers pick the next escaper first. */
#ifndef PROXYD_ESCAPER_H
#define PROXYD_ESCAPER_H

#include <stdbool.h>
#include "confval.h"
#include "obj_types.h"
#include "task.h"

struct worker;

/* One connection request of a task. The server embeds it in its task, fills the
 * inputs, and gets on_done() exactly once unless it calls escaper_connect_cancel()
 * first. */
struct connect_ctx {
    /* inputs */
    struct task *task;                  /* borrowed */
    struct worker *w;                   /* borrowed: the task's worker */
    struct upstream_addr target;        /* host and port to reach */
    const union sockaddr_any *client;   /* the task's client and our address facing it */
    const union sockaddr_any *server;   /* (for PROXY protocol headers); may be NULL */
    void (*on_done)(struct connect_ctx *cc, bool ok);

    /* results (also filled on failure, for logs and error answers) */
    int fd;                             /* connected socket on success, else -1; owned by the caller after on_done */
    struct escaper *used;               /* escaper that made the connection */
    union sockaddr_any bound;           /* our address of the upstream socket */
    union sockaddr_any peer;            /* the address we connected to */
    struct ip_addr bind_ip;             /* bind_ip used, family 0 = none */
    uint32_t tries;                     /* connect attempts */
    uint64_t start_us, spend_us;        /* monotonic */
    enum task_reason reason;            /* on failure */
    int http_status;                    /* on failure: 403 502 503 504 521 522 523 530 */
    const char *error;                  /* on failure: static text */
    int sys_errno;                      /* on failure: errno of the last attempt, 0 = none
                                         * (tells host from network unreachable) */

    /* escaper private */
    void *priv;
    void (*cancel)(struct connect_ctx *cc);
};

/* One UDP association of a task (SOCKS5 UDP ASSOCIATE, UDP connect): the escaper
 * side. The server embeds it, fills the inputs, calls escaper_udp_open() once, then
 * escaper_udp_sendto() for each datagram of the client, and escaper_udp_close() at
 * the end (also after a failed open: it is a no-op then). Answers come back through
 * on_recv(), from the worker's event loop. */
struct udp_ctx {
    /* inputs */
    struct task *task;                  /* borrowed */
    struct worker *w;                   /* borrowed: the task's worker */
    bool connect;                       /* UdpConnect: one peer only. The first datagram's
                                         * destination becomes the peer (the socket is
                                         * connected to it: answers from anyone else are
                                         * discarded) and later datagrams go to it whatever
                                         * their dst says (the server checks they agree) */
    uint32_t packet_size;               /* largest datagram read from remote peers
                                         * (udp_relay_packet_size); longer ones are dropped */
    uint32_t batch;                     /* datagrams per receive call (udp_relay_batch_size) */
    uint64_t yield_size;                /* bytes read per event before yielding (udp_relay_yield_size) */
    struct sock_buffer sock_buf;        /* the server's udp_socket_buffer (0 = system default) */
    void *owner;                        /* borrowed: for the callbacks */
    /* A datagram from a remote peer; data is valid during the call only. The owner may
     * end the association from here (escaper_udp_close()). */
    void (*on_recv)(struct udp_ctx *u, const union sockaddr_any *from, const void *data,
                    size_t len);
    /* The escaper side failed for good (u->reason, u->error set). Called from the event
     * loop only; the owner ends the association. */
    void (*on_error)(struct udp_ctx *u);

    /* counters: c_* are the server's (client side, datagrams with their SOCKS header),
     * r_* the escaper's (remote side, payloads) */
    uint64_t c_rd_packets, c_rd_bytes, c_wr_packets, c_wr_bytes;
    uint64_t r_rd_packets, r_rd_bytes, r_wr_packets, r_wr_bytes;
    uint64_t dropped;                   /* escaper side: datagrams not sent or not delivered
                                         * (unresolved, forbidden, send errors, too long) */
    uint64_t queue_dropped;             /* of which: the resolution queue was full */

    /* results (for logs) */
    struct escaper *used;               /* escaper that handles the association */
    struct ip_addr bind_ip;             /* bind_ip used, family 0 = none */
    union sockaddr_any bound;           /* our address of the last socket used */
    union sockaddr_any peer;            /* connect mode: the peer, once known */
    enum task_reason reason;            /* on failure */
    const char *error;                  /* on failure: static text */

    /* escaper private */
    void *priv;
};

/* Start connecting through e (route escapers are followed). Returns 0 when on_done
 * will be called later, -1 when it failed at once (results set, on_done not called). */
int escaper_tcp_connect(struct escaper *e, struct connect_ctx *cc);
/* Stop a pending connect; on_done will not be called. No-op when none is pending. */
void escaper_connect_cancel(struct connect_ctx *cc);
/* For escapers: finish a connect (success when cc->fd >= 0). */
void escaper_connect_done(struct connect_ctx *cc);

/* Open a UDP association through e (route escapers are followed): 0, or -1 with
 * u->reason and u->error set (e.g. EscaperNotUsable when the escaper has no UDP). */
int escaper_udp_open(struct escaper *e, struct udp_ctx *u);
/* Send one datagram to dst (see escaper_ops.udp_sendto): 0 = sent, queued or dropped
 * (counted), -1 = the association cannot go on (u->reason, u->error set). */
int escaper_udp_sendto(struct udp_ctx *u, const struct upstream_addr *dst, const void *data,
                       size_t len);
/* End the association: no callback runs afterwards. No-op when it is not open. Safe
 * from inside u's callbacks. */
void escaper_udp_close(struct udp_ctx *u);

/* Keys every escaper has: shared_logger, extra_metrics_tags. */
extern const struct conf_key escaper_base_keys[];

/* Escape log record for a failed connect (reference §3 field names). */
void escaper_log_connect_error(struct escaper *e, struct connect_ctx *cc, const char *escaper_type);
/* Escape log record for a datagram that could not be sent (escape_type UdpSendto). dst
 * is the target as the client named it, peer the address tried (may be NULL), err an
 * errno value. */
void escaper_log_udp_error(struct escaper *e, const struct udp_ctx *u, const char *escaper_type,
                           const struct upstream_addr *dst, const union sockaddr_any *peer,
                           int err);

#endif
