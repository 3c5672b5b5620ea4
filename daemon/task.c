/* Task registration on workers; see task.h. */
#include <stdio.h>

#include "evlog.h"
#include "gen.h"
#include "obj_types.h"
#include "stats.h"
#include "task.h"
#include "worker.h"

static const char *const reason_names[TR_NREASONS] = {
    [TR_NONE] = "UnclassifiedError",
    [TR_FINISHED] = "Finished",
    [TR_CLOSED_BY_CLIENT] = "ClosedByClient",
    [TR_CLOSED_EARLY_BY_CLIENT] = "ClosedEarlyByClient",
    [TR_CLOSED_BY_UPSTREAM] = "ClosedByUpstream",
    [TR_CLIENT_TCP_READ_FAILED] = "ClientTcpReadFailed",
    [TR_CLIENT_TCP_WRITE_FAILED] = "ClientTcpWriteFailed",
    [TR_CLIENT_UDP_RECV_FAILED] = "ClientUdpRecvFailed",
    [TR_CLIENT_UDP_SEND_FAILED] = "ClientUdpSendFailed",
    [TR_CLIENT_AUTH_FAILED] = "ClientAuthFailed",
    [TR_CLIENT_APP_TIMEOUT] = "ClientAppTimeout",
    [TR_CLIENT_APP_ERROR] = "ClientAppError",
    [TR_INVALID_CLIENT_PROTOCOL] = "InvalidClientProtocol",
    [TR_UNIMPLEMENTED_PROTOCOL] = "UnimplementedProtocol",
    [TR_UPSTREAM_NOT_RESOLVED] = "UpstreamNotResolved",
    [TR_UPSTREAM_NOT_CONNECTED] = "UpstreamNotConnected",
    [TR_UPSTREAM_NOT_AVAILABLE] = "UpstreamNotAvailable",
    [TR_INVALID_UPSTREAM_PROTOCOL] = "InvalidUpstreamProtocol",
    [TR_UPSTREAM_READ_FAILED] = "UpstreamReadFailed",
    [TR_UPSTREAM_WRITE_FAILED] = "UpstreamWriteFailed",
    [TR_UPSTREAM_TLS_HANDSHAKE_TIMEOUT] = "UpstreamTlsHandshakeTimeout",
    [TR_UPSTREAM_TLS_HANDSHAKE_FAILED] = "UpstreamTlsHandshakeFailed",
    [TR_UPSTREAM_APP_UNAVAILABLE] = "UpstreamAppUnavailable",
    [TR_UPSTREAM_APP_TIMEOUT] = "UpstreamAppTimeout",
    [TR_UPSTREAM_APP_ERROR] = "UpstreamAppError",
    [TR_FORBIDDEN_BY_RULE] = "ForbiddenByRule",
    [TR_ESCAPER_NOT_USABLE] = "EscaperNotUsable",
    [TR_CANCELED_AS_USER_BLOCKED] = "CanceledAsUserBlocked",
    [TR_CANCELED_AS_SERVER_QUIT] = "CanceledAsServerQuit",
    [TR_IDLE] = "Idle",
    [TR_INTERNAL_SERVER_ERROR] = "InternalServerError",
    [TR_INTERNAL_RESOLVER_ERROR] = "InternalResolverError",
    [TR_INTERNAL_TLS_CLIENT_ERROR] = "InternalTlsClientError",
    [TR_UNCLASSIFIED_ERROR] = "UnclassifiedError",
};

const char *task_reason_name(enum task_reason r)
{
    return r < TR_NREASONS && reason_names[r] ? reason_names[r] : "UnclassifiedError";
}

void task_start(struct task *t, struct worker *w, struct server *s)
{
    uint64_t a = worker_rand(w), b = worker_rand(w);

    t->w = w;
    t->srv = s;
    t->pin = worker_pin(w);
    t->start_wall_us = now_wall_us();
    t->start_mono_us = now_mono_us();
    for (int i = 0; i < 8; i++) {
        t->id[i] = (uint8_t)(a >> (8 * i));
        t->id[8 + i] = (uint8_t)(b >> (8 * i));
    }
    t->id[6] = (uint8_t)((t->id[6] & 0x0f) | 0x40); /* version 4 */
    t->id[8] = (uint8_t)((t->id[8] & 0x3f) | 0x80); /* variant */
    list_add_tail(&w->tasks, &t->wlink);
    STAT_ADD(w->ntasks, 1);
    STAT_ADD(s->stats->slot[w->id].task_total, 1);
    STAT_ADD(s->stats->slot[w->id].task_alive, 1);
}

void task_finish(struct task *t)
{
    struct worker *w = t->w;

    list_del(&t->wlink);
    STAT_SUB(w->ntasks, 1);
    STAT_SUB(t->srv->stats->slot[w->id].task_alive, 1);
    worker_unpin(w, t->pin);
    t->pin = NULL;
}

const char *task_id_str(const struct task *t, char *buf)
{
    for (int i = 0; i < 16; i++)
        sprintf(buf + 2 * i, "%02x", t->id[i]);
    return buf;
}

void task_log_begin(struct evrec *r, const struct task *t, const char *server_type,
                    const char *task_type, const char *stage, const char *escaper,
                    uint64_t ready_us)
{
    char id[33];
    uint64_t now = now_mono_us();

    evrec_init(r, EVLOG_TASK, t->reason == TR_FINISHED || t->reason == TR_CLOSED_BY_CLIENT ||
                                      t->reason == TR_CLOSED_BY_UPSTREAM
                                  ? LOG_LV_INFO
                                  : LOG_LV_WARN,
               task_reason_name(t->reason));
    evrec_str(r, "server_type", server_type);
    evrec_str(r, "server_name", t->srv->obj.name);
    evrec_str(r, "task_type", task_type);
    evrec_strcpy(r, "task_id", task_id_str(t, id));
    evrec_str(r, "task_event", "Finished");
    evrec_str(r, "stage", stage);
    evrec_time(r, "start_at", t->start_wall_us);
    if (escaper)
        evrec_str(r, "escaper", escaper);
    evrec_str(r, "reason", task_reason_name(t->reason));
    if (ready_us) {
        evrec_dur(r, "wait_time", 0);
        evrec_dur(r, "ready_time", (ready_us - t->start_mono_us) * 1000);
    }
    evrec_dur(r, "total_time", (now - t->start_mono_us) * 1000);
}
