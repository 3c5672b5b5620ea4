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

    /* escaper private */
    void *priv;
    void (*cancel)(struct connect_ctx *cc);
};

/* Start connecting through e (route escapers are followed). Returns 0 when on_done
 * will be called later, -1 when it failed at once (results set, on_done not called). */
int escaper_tcp_connect(struct escaper *e, struct connect_ctx *cc);
/* Stop a pending connect; on_done will not be called. No-op when none is pending. */
void escaper_connect_cancel(struct connect_ctx *cc);
/* For escapers: finish a connect (success when cc->fd >= 0). */
void escaper_connect_done(struct connect_ctx *cc);

/* Keys every escaper has: shared_logger, extra_metrics_tags. */
extern const struct conf_key escaper_base_keys[];

/* Escape log record for a failed connect (reference §3 field names). */
void escaper_log_connect_error(struct escaper *e, struct connect_ctx *cc, const char *escaper_type);

#endif
