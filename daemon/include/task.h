/* Tasks: one proxied request or tunnel. The server module that owns a task embeds
 * struct task; the core keeps every alive task on its worker's list so that offline
 * and `proxyctl kill` can reach it. */
#ifndef PROXYD_TASK_H
#define PROXYD_TASK_H

#include <stdint.h>
#include "common.h"
#include "confval_types.h"

struct worker;
struct gen_pin;
struct server;

/* Termination reasons (g3proxy ServerTaskError names; see task_reason_name()). */
enum task_reason {
    TR_NONE = 0,
    TR_FINISHED,
    TR_CLOSED_BY_CLIENT,
    TR_CLOSED_EARLY_BY_CLIENT,
    TR_CLOSED_BY_UPSTREAM,
    TR_CLIENT_TCP_READ_FAILED,
    TR_CLIENT_TCP_WRITE_FAILED,
    TR_CLIENT_UDP_RECV_FAILED,
    TR_CLIENT_UDP_SEND_FAILED,
    TR_CLIENT_AUTH_FAILED,
    TR_CLIENT_APP_TIMEOUT,
    TR_CLIENT_APP_ERROR,
    TR_INVALID_CLIENT_PROTOCOL,
    TR_UNIMPLEMENTED_PROTOCOL,
    TR_UPSTREAM_NOT_RESOLVED,
    TR_UPSTREAM_NOT_CONNECTED,
    TR_UPSTREAM_NOT_AVAILABLE,
    TR_INVALID_UPSTREAM_PROTOCOL,
    TR_UPSTREAM_READ_FAILED,
    TR_UPSTREAM_WRITE_FAILED,
    TR_UPSTREAM_TLS_HANDSHAKE_TIMEOUT,
    TR_UPSTREAM_TLS_HANDSHAKE_FAILED,
    TR_UPSTREAM_APP_UNAVAILABLE,
    TR_UPSTREAM_APP_TIMEOUT,
    TR_UPSTREAM_APP_ERROR,
    TR_FORBIDDEN_BY_RULE,
    TR_ESCAPER_NOT_USABLE,
    TR_CANCELED_AS_USER_BLOCKED,
    TR_CANCELED_AS_SERVER_QUIT,
    TR_IDLE,
    TR_INTERNAL_SERVER_ERROR,
    TR_INTERNAL_RESOLVER_ERROR,
    TR_INTERNAL_TLS_CLIENT_ERROR,
    TR_UNCLASSIFIED_ERROR,
    TR_NREASONS,
};
const char *task_reason_name(enum task_reason r);

struct task {
    struct list wlink;          /* in worker->tasks */
    struct worker *w;           /* borrowed */
    struct gen_pin *pin;        /* hold on the generation the task started in */
    struct server *srv;         /* borrowed: alive while pinned */
    uint8_t id[16];             /* UUID v4 */
    uint64_t start_wall_us;
    uint64_t start_mono_us;
    enum task_reason reason;    /* set once, where the failure happens */
    /* Cancel the task now (offline, proxyctl kill): must end it with `reason`,
     * possibly after the current callback returns. */
    void (*kill)(struct task *t, enum task_reason reason);
};

/* Register a task on worker w for server s (pins the generation, counts it). */
void task_start(struct task *t, struct worker *w, struct server *s);
/* Unregister: the last call for a task. */
void task_finish(struct task *t);
/* Set the reason unless one is set already. */
static inline void task_set_reason(struct task *t, enum task_reason r)
{
    if (t->reason == TR_NONE)
        t->reason = r;
}
struct evrec;
/* Start a task log record with the fields every task has (reference §3): server
 * type/name, task type/id/event, stage, start_at, user, escaper, reason, times. */
void task_log_begin(struct evrec *r, const struct task *t, const char *server_type,
                    const char *task_type, const char *stage, const char *escaper,
                    uint64_t ready_us);
/* "0f1e...": 32 hex digits. buf >= 33. */
const char *task_id_str(const struct task *t, char *buf);

#endif
