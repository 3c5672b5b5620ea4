/* Common escaper keys and the connect and UDP entry points. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "escaper.h"
#include "evlog.h"
#include "stats.h"
#include "worker.h"

#define EOFF(f) offsetof(struct escaper, f)
#define ROUTE_MAX_HOPS 16

const struct conf_key escaper_base_keys[] = {
    {"shared_logger", NULL, cp_ascii, EOFF(shared_logger)},
    {"extra_metrics_tags", NULL, cp_metrics_tags, EOFF(extra_tags)},
    {0},
};

static int fail_now(struct connect_ctx *cc, enum task_reason reason, int status, const char *why)
{
    cc->fd = -1;
    cc->reason = reason;
    cc->http_status = status;
    cc->error = why;
    return -1;
}

int escaper_tcp_connect(struct escaper *e, struct connect_ctx *cc)
{
    cc->fd = -1;
    cc->used = NULL;
    cc->tries = 0;
    cc->sys_errno = 0;
    cc->priv = NULL;
    cc->cancel = NULL;
    cc->start_us = now_mono_us();
    /* route escapers choose; the graph has no loops (checked at load) but stay bounded */
    for (int hop = 0; e && (e->ops->caps & ESC_CAP_ROUTE); hop++) {
        if (hop >= ROUTE_MAX_HOPS || !e->ops->select)
            return fail_now(cc, TR_ESCAPER_NOT_USABLE, 503, "no route");
        e = e->ops->select(e, cc->task);
    }
    if (!e || !(e->ops->caps & ESC_CAP_TCP) || !e->ops->tcp_connect)
        return fail_now(cc, TR_ESCAPER_NOT_USABLE, 503, "escaper refuses the request");
    cc->used = e;
    STAT_ADD(e->stats->slot[cc->w->id].task_total, 1);
    return e->ops->tcp_connect(e, cc);
}

void escaper_connect_cancel(struct connect_ctx *cc)
{
    if (cc->cancel) {
        void (*cancel)(struct connect_ctx *) = cc->cancel;
        cc->cancel = NULL;
        cancel(cc);
    }
}

void escaper_connect_done(struct connect_ctx *cc)
{
    cc->cancel = NULL;
    cc->spend_us = now_mono_us() - cc->start_us;
    cc->on_done(cc, cc->fd >= 0);
}

void escaper_log_connect_error(struct escaper *e, struct connect_ctx *cc, const char *escaper_type)
{
    struct daemon *d = e->obj.gen->d;
    struct evrec r;
    char id[33], up[HOST_MAX + 8];

    if (!d || !d->evlog || !evlog_enabled(d->evlog, EVLOG_ESCAPE))
        return;
    evrec_init(&r, EVLOG_ESCAPE, LOG_LV_WARN, cc->error);
    evrec_str(&r, "escaper_type", escaper_type);
    evrec_str(&r, "escaper_name", e->obj.name);
    evrec_str(&r, "escape_type", "TcpConnect");
    if (cc->task)
        evrec_strcpy(&r, "task_id", task_id_str(cc->task, id));
    snprintf(up, sizeof(up), cc->target.kind == HOST_IP && cc->target.ip.family == AF_INET6
                                 ? "[%s]:%u" : "%s:%u", cc->target.host, cc->target.port);
    evrec_strcpy(&r, "upstream", up);
    if (cc->bind_ip.family)
        evrec_ip(&r, "next_bind_ip", &cc->bind_ip);
    if (cc->bound.sa.sa_family)
        evrec_addr(&r, "next_bound_addr", &cc->bound);
    if (cc->peer.sa.sa_family)
        evrec_addr(&r, "next_peer_addr", &cc->peer);
    evrec_u64(&r, "tcp_connect_tries", cc->tries);
    evrec_dur(&r, "tcp_connect_spend", (now_mono_us() - cc->start_us) * 1000);
    evrec_str(&r, "reason", task_reason_name(cc->reason));
    evlog_emit(d->evlog, &r);
}

/* ------------------------------------------------------------------ UDP */

int escaper_udp_open(struct escaper *e, struct udp_ctx *u)
{
    u->used = NULL;
    u->priv = NULL;
    u->reason = TR_NONE;
    u->error = NULL;
    for (int hop = 0; e && (e->ops->caps & ESC_CAP_ROUTE); hop++) {
        if (hop >= ROUTE_MAX_HOPS || !e->ops->select) {
            e = NULL;
            break;
        }
        e = e->ops->select(e, u->task);
    }
    if (!e || !(e->ops->caps & ESC_CAP_UDP) || !e->ops->udp_open) {
        u->reason = TR_ESCAPER_NOT_USABLE;
        u->error = "escaper cannot relay UDP";
        return -1;
    }
    u->used = e;
    STAT_ADD(e->stats->slot[u->w->id].task_total, 1);
    if (e->ops->udp_open(e, u) < 0) {
        u->used = NULL;
        return -1;
    }
    return 0;
}

int escaper_udp_sendto(struct udp_ctx *u, const struct upstream_addr *dst, const void *data,
                       size_t len)
{
    BUG_ON(!u->used);
    return u->used->ops->udp_sendto(u, dst, data, len);
}

void escaper_udp_close(struct udp_ctx *u)
{
    if (u->used && u->priv)
        u->used->ops->udp_close(u);
    u->priv = NULL;
}

void escaper_log_udp_error(struct escaper *e, const struct udp_ctx *u, const char *escaper_type,
                           const struct upstream_addr *dst, const union sockaddr_any *peer,
                           int err)
{
    struct daemon *d = e->obj.gen->d;
    struct evrec r;
    char id[33], up[HOST_MAX + 8];

    if (!d || !d->evlog || !evlog_enabled(d->evlog, EVLOG_ESCAPE))
        return;
    evrec_init(&r, EVLOG_ESCAPE, LOG_LV_WARN, strerror(err));
    evrec_str(&r, "escaper_type", escaper_type);
    evrec_str(&r, "escaper_name", e->obj.name);
    evrec_str(&r, "escape_type", "UdpSendto");
    if (u->task)
        evrec_strcpy(&r, "task_id", task_id_str(u->task, id));
    if (dst) {
        snprintf(up, sizeof(up), dst->kind == HOST_IP && dst->ip.family == AF_INET6
                                     ? "[%s]:%u" : "%s:%u", dst->host, dst->port);
        evrec_strcpy(&r, "upstream", up);
    }
    if (u->bound.sa.sa_family)
        evrec_addr(&r, "next_bound_addr", &u->bound);
    if (peer && peer->sa.sa_family)
        evrec_addr(&r, "next_peer_addr", peer);
    evrec_str(&r, "reason", strerror(err));
    evlog_emit(d->evlog, &r);
}
