/* Waiting for a PROXY protocol header and/or the first byte before a hand-over; see
 * pp_accept.h.
 *
 * The header is taken without reading past it: the bytes are peeked, and because the
 * parser is prefix-stable, a "need more" answer proves every byte peeked so far belongs
 * to the header, so those are read (which also stops a level-triggered watcher from
 * firing again for bytes already seen); once the parser names the header's length,
 * exactly the rest of it is read. The first byte of what follows is only peeked. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "pp_accept.h"
#include "proxy_proto.h"
#include "worker.h"

enum { PA_PROXY_PROTO = 0, PA_PEEK };

struct pa_wait {
    struct wconn wc;            /* in worker->conns */
    struct server *s;           /* borrowed: pinned */
    struct worker *w;           /* borrowed */
    struct gen_pin *pin;
    struct accepted a;          /* a.fd owned */
    struct pre_accept_conf c;
    pre_accept_done_fn done;
    ev_io io;
    ev_timer timer;
    uint8_t stage;
    size_t held;                /* header bytes read so far */
    uint8_t hdr[];              /* PROXY_PROTO_MAX_LEN bytes when c.proxy_protocol */
};

static void pa_finish(struct pa_wait *pw, bool ok, int first_byte)
{
    struct server *s = pw->s;
    struct worker *w = pw->w;
    struct gen_pin *pin = pw->pin;

    ev_io_stop(w->loop, &pw->io);
    ev_timer_stop(w->loop, &pw->timer);
    worker_conn_del(&pw->wc);
    if (ok)
        pw->done(s, w, &pw->a, first_byte);
    else
        close(pw->a.fd);
    server_conn_done(s);
    free(pw);
    worker_unpin(w, pin); /* may free s: last */
}

static void pa_timer(struct pa_wait *pw, uint64_t ns)
{
    ev_timer_stop(pw->w->loop, &pw->timer);
    ev_timer_set(&pw->timer, (double)ns / 1e9, 0.);
    ev_timer_start(pw->w->loop, &pw->timer);
}

static void pa_drop(struct pa_wait *pw, const char *why)
{
    char addr[64];

    log_debug("server '%s': connection from %s dropped: %s", pw->s->obj.name,
              sockaddr_str(&pw->a.sock_peer, addr, sizeof(addr)), why);
    pa_finish(pw, false, -1);
}

/* One step of reading the header: STEP_AGAIN, STEP_DONE or STEP_ERROR (*why set). */
static int pa_header_step(struct pa_wait *pw, const char **why)
{
    struct proxy_proto_info info;
    ssize_t n;
    int rc;

    do
        n = recv(pw->a.fd, pw->hdr + pw->held, PROXY_PROTO_MAX_LEN - pw->held,
                 MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return STEP_AGAIN;
    if (n <= 0) {
        *why = n == 0 ? "closed before the PROXY protocol header ended" : "read error";
        return STEP_ERROR;
    }
    rc = proxy_proto_parse(pw->hdr, pw->held + (size_t)n, &info);
    if (rc < 0) {
        *why = proxy_proto_strerror(rc);
        return STEP_ERROR;
    }
    /* all peeked bytes are header bytes (rc == 0), or only the rest of it (rc > 0) */
    size_t take = rc == 0 ? (size_t)n : (size_t)rc - pw->held;
    if (recv(pw->a.fd, pw->hdr + pw->held, take, MSG_DONTWAIT) != (ssize_t)take) {
        *why = "read error";
        return STEP_ERROR;
    }
    pw->held += take;
    if (rc == 0)
        return STEP_AGAIN;
    if (info.version != pw->c.proxy_protocol) {
        *why = info.version == 1 ? "PROXY protocol v1 header where v2 is configured"
                                 : "PROXY protocol v2 header where v1 is configured";
        return STEP_ERROR;
    }
    if (info.command == PROXY_PROTO_CMD_PROXY && info.src.sa.sa_family) {
        pw->a.peer = info.src;
        pw->a.local = info.dst;
    }
    return STEP_DONE;
}

static void pa_step(struct pa_wait *pw)
{
    const char *why = NULL;

    if (pw->stage == PA_PROXY_PROTO) {
        int rc = pa_header_step(pw, &why);
        if (rc == STEP_ERROR) {
            pa_drop(pw, why);
            return;
        }
        if (rc == STEP_AGAIN) {
            ev_io_start(pw->w->loop, &pw->io);
            return;
        }
        if (!pw->c.peek) {
            pa_finish(pw, true, -1);
            return;
        }
        pw->stage = PA_PEEK;
        pa_timer(pw, pw->c.peek_timeout_ns);
    }

    uint8_t b;
    ssize_t n;
    do
        n = recv(pw->a.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ev_io_start(pw->w->loop, &pw->io);
        return;
    }
    if (n <= 0) {
        pa_drop(pw, n == 0 ? "closed before sending anything" : "read error");
        return;
    }
    pa_finish(pw, true, b);
}

static void on_pa_io(struct ev_loop *loop, ev_io *io, int revents)
{
    pa_step(container_of(io, struct pa_wait, io));
}

static void on_pa_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pa_wait *pw = container_of(t, struct pa_wait, timer);

    pa_drop(pw, pw->stage == PA_PROXY_PROTO ? "no PROXY protocol header in time"
                                            : "protocol detection timed out");
}

static void pa_kill(struct wconn *wc, bool idle_only)
{
    /* nothing was handed over yet: always idle */
    pa_finish(container_of(wc, struct pa_wait, wc), false, -1);
}

void pre_accept(struct server *s, struct worker *w, struct accepted *a,
                const struct pre_accept_conf *c, pre_accept_done_fn done)
{
    struct pa_wait *pw;

    if (!c->proxy_protocol && !c->peek) {
        done(s, w, a, -1);
        server_conn_done(s);
        return;
    }
    pw = calloc(1, sizeof(*pw) + (c->proxy_protocol ? PROXY_PROTO_MAX_LEN : 0));
    if (!pw) {
        close(a->fd);
        server_conn_done(s);
        return;
    }
    pw->s = s;
    pw->w = w;
    pw->pin = worker_pin(w);
    pw->a = *a;
    pw->c = *c;
    pw->done = done;
    pw->wc.kill = pa_kill;
    worker_conn_add(w, &pw->wc);
    ev_io_init(&pw->io, on_pa_io, a->fd, EV_READ);
    ev_init(&pw->timer, on_pa_timer);
    pw->stage = c->proxy_protocol ? PA_PROXY_PROTO : PA_PEEK;
    pa_timer(pw, c->proxy_protocol ? c->pp_timeout_ns : c->peek_timeout_ns);
    pa_step(pw);
}

void pre_accept_hand_over(struct server *from, struct server *to, struct worker *w,
                          struct accepted *a)
{
    if (++a->hops > SERVER_MAX_HOPS) {
        log_warn("server '%s': connection dropped after %d hand-overs: do servers hand "
                 "connections to each other in a loop?", from->obj.name, SERVER_MAX_HOPS);
        close(a->fd);
        return;
    }
    server_accept(to, w, a);
}
