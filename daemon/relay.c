/* The relay; see relay.h.
 *
 * relay_run() is the single place where bytes move. It loops over both directions
 * until nothing can progress, yields after conf.yield_size bytes (epoll is level
 * triggered, so the watchers fire again on the next loop iteration), then arms each
 * side's watcher with exactly what its pending operations wait for. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "relay.h"
#include "worker.h"


static void relay_arm(struct relay *r);
static int relay_run(struct relay *r);

static bool side_watched_for_close(const struct relay *r, int s);
static enum task_reason read_reason(int s);

static void on_side_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct relay *r = io->data;
    int s = io == &r->side[1].io;

    if (revents & EV_READ) {
        r->side[s].rd_ready = true;
        /* a side that is not being read is watched only to see it go away */
        if (side_watched_for_close(r, s)) {
            char c;
            ssize_t n = recv(r->side[s].c->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                relay_stop(r);
                r->on_end(r, n == 0 ? (s == 0 ? TR_CLOSED_BY_CLIENT : TR_CLOSED_BY_UPSTREAM)
                                    : read_reason(s));
                return;
            }
            if (n > 0)
                r->side[s].watch_quiet = true; /* early bytes (pipelining) wait their turn */
        }
    }
    relay_kick(r);
}

/* Worth a read? TLS may hold decrypted bytes the poller cannot see: always try. */
static bool side_readable(const struct relay_side *s)
{
    return s->rd_ready || s->c->xprt != &xprt_tcp;
}

static uint64_t window_now(const struct relay *r)
{
    /* windows of 2^shift ms */
    return (uint64_t)(ev_now(r->w->loop) * 1000.0) >> r->conf.limit.shift;
}

static void on_limit_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct relay *r = t->data;

    r->dir[0].paused = r->dir[1].paused = false;
    relay_kick(r);
}

static void on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct relay *r = t->data;
    uint64_t moved = r->dir[0].read_bytes + r->dir[1].read_bytes + r->dir[0].bytes + r->dir[1].bytes;

    if (moved != r->idle_mark) {
        r->idle_mark = moved;
        r->idle_count = 0;
        return;
    }
    if (++r->idle_count >= r->conf.idle_max) {
        relay_stop(r);
        r->on_end(r, TR_IDLE);
    }
}

void relay_init(struct relay *r, struct worker *w, struct conn *client, struct conn *upstream,
                const struct relay_conf *conf, void *owner)
{
    memset(r, 0, sizeof(*r));
    r->w = w;
    r->conf = *conf;
    if (!r->conf.buf_size)
        r->conf.buf_size = BUF_DEFAULT_SIZE;
    if (!r->conf.yield_size)
        r->conf.yield_size = 1 << 20;
    r->owner = owner;
    r->first_eof = -1;
    r->side[0].c = client;
    r->side[1].c = upstream;
    for (int i = 0; i < 2; i++) {
        /* both sockets were watched by their owner before: libev knows them */
        IO_INIT_KNOWN(&r->side[i].io, on_side_io, r->side[i].c->fd);
        r->side[i].io.data = r;
        r->dir[i].limit = UINT64_MAX;
    }
    if (conf->limit.set) {
        r->dir[0].limit = conf->limit.upload;
        r->dir[1].limit = conf->limit.download;
    }
    r->splice_ok = !conf->no_splice && client->xprt->can_splice && upstream->xprt->can_splice;
#ifndef HAVE_SPLICE
    r->splice_ok = false;
#endif
    ev_timer_init(&r->limit_timer, on_limit_timer, 0., 0.);
    r->limit_timer.data = r;
    ev_init(&r->idle, on_idle);
    r->idle.data = r;
    if (conf->idle_interval_ns && conf->idle_max) {
        double iv = (double)conf->idle_interval_ns / 1e9;
        ev_timer_set(&r->idle, iv, iv);
        ev_timer_start(w->loop, &r->idle);
    }
}

void relay_dir_set(struct relay *r, int d, enum relay_mode mode, uint64_t length,
                   relay_scan_fn scan, void *scan_state, struct buf *pre, size_t pre_ready)
{
    struct relay_dir *dir = &r->dir[d];

    dir->mode = (uint8_t)mode;
    dir->remaining = length;
    dir->scan = scan;
    dir->scan_state = scan_state;
    dir->complete = false;
    dir->shut_on_eof = mode == RM_STREAM;
    dir->shut_done = false;
    dir->src_eof = r->side[d].c->flags & CO_F_EOF;
    dir->ready = 0;
    if (pre) {
        BUG_ON(dir->buf && buf_len(dir->buf));
        buf_put(r->w->bufs, dir->buf);
        dir->buf = NULL;
        if (buf_len(pre) == 0) {
            buf_put(r->w->bufs, pre);
        } else {
            dir->buf = pre;
            dir->ready = pre_ready;
        }
    }
}

struct buf *relay_dir_take_rest(struct relay *r, int d)
{
    struct buf *b = r->dir[d].buf;

    r->dir[d].buf = NULL;
    r->dir[d].ready = 0;
    if (b && buf_len(b) == 0) {
        buf_put(r->w->bufs, b);
        return NULL;
    }
    return b;
}

void relay_stop(struct relay *r)
{
    if (r->stopped)
        return;
    r->stopped = true;
    for (int i = 0; i < 2; i++) {
        ev_io_stop(r->w->loop, &r->side[i].io);
        r->side[i].armed = 0;
        buf_put(r->w->bufs, r->dir[i].buf);
        r->dir[i].buf = NULL;
        pipe_put(r->w->pipes, r->dir[i].pipe);
        r->dir[i].pipe = NULL;
    }
    ev_timer_stop(r->w->loop, &r->idle);
    ev_timer_stop(r->w->loop, &r->limit_timer);
}

/* Which error reason belongs to a failed read/write on side s. */
static enum task_reason read_reason(int s)
{
    return s == 0 ? TR_CLIENT_TCP_READ_FAILED : TR_UPSTREAM_READ_FAILED;
}

static enum task_reason write_reason(int s)
{
    return s == 0 ? TR_CLIENT_TCP_WRITE_FAILED : TR_UPSTREAM_WRITE_FAILED;
}

/* How many bytes the speed limit lets this direction read now. */
static size_t limit_allow(struct relay *r, struct relay_dir *dir, size_t want)
{
    uint64_t w;

    if (dir->limit == UINT64_MAX)
        return want;
    w = window_now(r);
    if (w != dir->win) {
        dir->win = w;
        dir->win_used = 0;
    }
    if (dir->win_used >= dir->limit) {
        dir->paused = true;
        if (!ev_is_active(&r->limit_timer)) {
            double next = (double)((w + 1) << r->conf.limit.shift) / 1000.0;
            ev_timer_set(&r->limit_timer, MAX(next - ev_now(r->w->loop), 0.001), 0.);
            ev_timer_start(r->w->loop, &r->limit_timer);
        }
        return 0;
    }
    return (size_t)MIN((uint64_t)want, dir->limit - dir->win_used);
}

/* Validate newly read bytes of a SCAN/LENGTH direction: advance dir->ready. */
static int dir_account(struct relay *r, struct relay_dir *dir)
{
    size_t have = buf_len(dir->buf);

    if (dir->mode == RM_HOLD) {
        return 0;
    } else if (dir->mode == RM_STREAM) {
        dir->ready = have;
    } else if (dir->mode == RM_LENGTH) {
        uint64_t add = MIN((uint64_t)(have - dir->ready), dir->remaining);
        dir->ready += (size_t)add;
        dir->remaining -= add;
    } else if (dir->mode == RM_SCAN && dir->scan && !dir->complete) {
        bool done = false;
        ssize_t ok = dir->scan(dir->scan_state, buf_ptr(dir->buf) + dir->ready, have - dir->ready,
                               &done);
        if (ok < 0)
            return -1;
        dir->ready += (size_t)ok;
        if (done)
            dir->scan = NULL; /* no more bytes belong to this message */
    }
    return 0;
}

static bool dir_message_read(const struct relay_dir *dir)
{
    return (dir->mode == RM_LENGTH && dir->remaining == 0) || (dir->mode == RM_SCAN && !dir->scan);
}

/* Move bytes of direction d through userspace. Returns progress (bytes), or -1 after
 * ending the relay. */
static ssize_t dir_pump_buf(struct relay *r, int d, size_t budget)
{
    struct relay_dir *dir = &r->dir[d];
    struct conn *src = r->side[d].c, *dst = r->side[!d].c;
    size_t moved = 0;

    for (;;) {
        /* bytes handed over or read earlier may not be accounted yet */
        if (dir->buf && buf_len(dir->buf) > dir->ready && dir_account(r, dir) < 0) {
            relay_stop(r);
            r->on_end(r, d == 0 ? TR_INVALID_CLIENT_PROTOCOL : TR_INVALID_UPSTREAM_PROTOCOL);
            return -1;
        }
        /* write what is ready */
        if (dir->buf && dir->ready) {
            ssize_t w = conn_send(dst, buf_ptr(dir->buf), dir->ready);
            if (w < 0) {
                if (errno == EAGAIN)
                    break;
                relay_stop(r);
                r->on_end(r, write_reason(!d));
                return -1;
            }
            buf_consume(dir->buf, (size_t)w);
            dir->ready -= (size_t)w;
            dir->bytes += (uint64_t)w;
            moved += (size_t)w;
            if (dir->ready)
                continue;
        }
        if (dir->buf && buf_len(dir->buf) == 0) {
            buf_put(r->w->bufs, dir->buf);
            dir->buf = NULL;
        }
        if (dir_message_read(dir) || dir->src_eof || moved >= budget)
            break;
        /* read more */
        size_t room;
        if (!dir->buf) {
            dir->buf = buf_get(r->w->bufs, r->conf.buf_size);
            if (!dir->buf) {
                relay_stop(r);
                r->on_end(r, TR_INTERNAL_SERVER_ERROR);
                return -1;
            }
        }
        if (buf_room(dir->buf) == 0)
            buf_compact(dir->buf);
        room = buf_room(dir->buf);
        if (room == 0)
            break; /* unvalidated bytes fill the buffer: the scanner needs more */
        if (dir->mode == RM_LENGTH)
            room = (size_t)MIN((uint64_t)room, dir->remaining);
        room = limit_allow(r, dir, room);
        if (room == 0)
            break;
        if (!side_readable(&r->side[d])) {
            if (buf_len(dir->buf) == 0) {
                buf_put(r->w->bufs, dir->buf);
                dir->buf = NULL;
            }
            break;
        }
        ssize_t n = conn_recv(src, buf_end(dir->buf), room);
        if (n < 0 || (size_t)n < room)
            r->side[d].rd_ready = false; /* drained, most likely: the poller will tell */
        if (n > 0 && (size_t)n == room && room >= BUF_SMALL_SIZE)
            dir->bulk = true;
        if (n < 0) {
            if (errno == EAGAIN) {
                /* nothing to read: an idle direction holds no buffer (and takes the
                 * splice path again next time) */
                if (buf_len(dir->buf) == 0) {
                    buf_put(r->w->bufs, dir->buf);
                    dir->buf = NULL;
                }
                break;
            }
            relay_stop(r);
            r->on_end(r, read_reason(d));
            return -1;
        }
        if (n == 0) {
            dir->src_eof = true;
            if (r->first_eof < 0)
                r->first_eof = d;
            if (dir->mode == RM_HOLD) {
                if (r->on_hold(r, d) == RELAY_GONE)
                    return -1;
                moved++;
                break;
            }
            if (dir->mode == RM_LENGTH || dir->mode == RM_SCAN) {
                /* the message was cut short */
                relay_stop(r);
                r->on_end(r, d == 0 ? TR_CLOSED_EARLY_BY_CLIENT : TR_CLOSED_BY_UPSTREAM);
                return -1;
            }
            continue; /* flush what is left */
        }
        dir->buf->tail += (uint32_t)n;
        dir->read_bytes += (uint64_t)n;
        dir->win_used += (uint64_t)n;
        if (dir->mode == RM_HOLD) {
            if (r->on_hold(r, d) == RELAY_GONE)
                return -1;
            moved++; /* progress: the owner may have changed the mode */
            break;
        }
    }
    return (ssize_t)moved;
}

#ifdef HAVE_SPLICE
/* Move bytes of direction d with splice(). Returns progress, -1 after ending the
 * relay, or -2 when splice is not possible on these sockets (fall back). */
static ssize_t dir_pump_splice(struct relay *r, int d, size_t budget)
{
    struct relay_dir *dir = &r->dir[d];
    struct conn *src = r->side[d].c, *dst = r->side[!d].c;
    size_t moved = 0;

    if (!dir->pipe) {
        dir->pipe = pipe_get(r->w->pipes);
        if (!dir->pipe)
            return -2;
        /* a pipe the kernel kept at a page or two (user pipe memory limit) costs more
         * calls than copying through a buffer */
        if (dir->pipe->cap < (1 << 16)) {
            pipe_put(r->w->pipes, dir->pipe);
            dir->pipe = NULL;
            return -2;
        }
    }
    for (;;) {
        if (dir->pipe->len) {
            ssize_t w = splice(dir->pipe->rfd, NULL, dst->fd, NULL, dir->pipe->len,
                               SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN) {
                    dst->want = CO_WANT_WRITE;
                    break;
                }
                relay_stop(r);
                r->on_end(r, write_reason(!d));
                return -1;
            }
            dir->pipe->len -= (size_t)w;
            dir->bytes += (uint64_t)w;
            moved += (size_t)w;
            if (dir->pipe->len)
                continue;
        }
        if (dir_message_read(dir) || dir->src_eof || moved >= budget)
            break;
        size_t want = dir->pipe->cap;
        if (dir->mode == RM_LENGTH)
            want = (size_t)MIN((uint64_t)want, dir->remaining);
        want = limit_allow(r, dir, want);
        if (want == 0 || !r->side[d].rd_ready)
            break;
        ssize_t n = splice(src->fd, NULL, dir->pipe->wfd, NULL, want,
                           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n < 0 || (size_t)n < want)
            r->side[d].rd_ready = false;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                src->want = CO_WANT_READ;
                break;
            }
            if ((errno == EINVAL || errno == ENOSYS) && dir->read_bytes == 0)
                return -2;
            relay_stop(r);
            r->on_end(r, read_reason(d));
            return -1;
        }
        if (n == 0) {
            dir->src_eof = true;
            src->flags |= CO_F_EOF;
            if (r->first_eof < 0)
                r->first_eof = d;
            if (dir->mode == RM_LENGTH) {
                relay_stop(r);
                r->on_end(r, d == 0 ? TR_CLOSED_EARLY_BY_CLIENT : TR_CLOSED_BY_UPSTREAM);
                return -1;
            }
            continue;
        }
        dir->pipe->len += (size_t)n;
        dir->read_bytes += (uint64_t)n;
        dir->win_used += (uint64_t)n;
        if (dir->mode == RM_LENGTH)
            dir->remaining -= (uint64_t)n;
    }
    if (dir->pipe && dir->pipe->len == 0) {
        pipe_put(r->w->pipes, dir->pipe);
        dir->pipe = NULL;
    }
    return (ssize_t)moved;
}
#endif

/* Is direction d all written out? */
static bool dir_drained(const struct relay_dir *dir)
{
    return !(dir->buf && dir->ready) && !(dir->pipe && dir->pipe->len);
}

static ssize_t dir_pump(struct relay *r, int d, size_t budget)
{
    struct relay_dir *dir = &r->dir[d];

#ifdef HAVE_SPLICE
    /* splice when nobody needs to see the bytes and no userspace bytes wait */
    /* splice costs two calls per chunk: only worth it once the bytes come in bulk */
    if (r->splice_ok && dir->bulk && (dir->mode == RM_STREAM || dir->mode == RM_LENGTH) &&
        !dir->buf) {
        ssize_t n = dir_pump_splice(r, d, budget);
        if (n != -2)
            return n;
        r->splice_ok = false; /* not possible here: stay in userspace from now on */
        if (dir->pipe) {
            pipe_put(r->w->pipes, dir->pipe);
            dir->pipe = NULL;
        }
    }
#endif
    return dir_pump_buf(r, d, budget);
}

/* One full pass; returns RELAY_GONE if the relay ended. */
static int relay_run(struct relay *r)
{
    size_t total = 0;

    for (;;) {
        ssize_t progress = 0;

        for (int d = 0; d < 2; d++) {
            struct relay_dir *dir = &r->dir[d];
            if (dir->mode == RM_OFF || dir->complete)
                continue;
            ssize_t n = dir_pump(r, d, r->conf.yield_size);
            if (n < 0)
                return RELAY_GONE;
            progress += n;

            if (dir_drained(dir) && dir_message_read(dir)) {
                dir->complete = true;
                if (r->on_dir_done(r, d) == RELAY_GONE)
                    return RELAY_GONE;
                progress++; /* the owner may have changed modes: loop again */
                continue;
            }
            if (dir->mode == RM_STREAM && dir->src_eof && dir_drained(dir) && !dir->shut_done) {
                /* the other way is over too: closing is about to send the FIN (TLS
                 * still needs its close_notify) */
                bool last = r->dir[!d].mode == RM_STREAM && r->dir[!d].complete &&
                            r->side[!d].c->xprt == &xprt_tcp;
                if (dir->shut_on_eof && !last) {
                    struct relay_side *dst = &r->side[!d];
                    if (conn_shutw(dst->c) < 0 && errno == EAGAIN) {
                        dst->shut_pending = true;
                        continue;
                    }
                    dst->shut_pending = false;
                }
                dir->shut_done = true;
                dir->complete = true;
                progress++;
                /* a stream next to a framed message (an HTTP answer delimited by the
                 * close) is the owner's business; two streams are a tunnel (below) */
                if (r->dir[!d].mode != RM_STREAM && r->on_dir_done(r, d) == RELAY_GONE)
                    return RELAY_GONE;
            }
        }

        /* both stream directions done: the tunnel ended */
        if (r->dir[0].mode == RM_STREAM && r->dir[1].mode == RM_STREAM && r->dir[0].complete &&
            r->dir[1].complete) {
            /* the side that closed first names the reason */
            enum task_reason reason = r->first_eof == 0   ? TR_CLOSED_BY_CLIENT
                                      : r->first_eof == 1 ? TR_CLOSED_BY_UPSTREAM
                                                          : TR_FINISHED;
            relay_stop(r);
            r->on_end(r, reason);
            return RELAY_GONE;
        }
        total += (size_t)progress;
        if (progress == 0 || total >= r->conf.yield_size)
            break;
    }
    relay_arm(r);
    return RELAY_GO;
}

/* Side s is not being read (its direction ended or is off) while the other way still
 * runs (an HTTP answer is coming): keep reading interest to notice a close, which
 * also keeps the socket's watcher mask steady (no epoll_ctl per request). Plain TCP
 * only: a TLS record is not a close. */
static bool side_watched_for_close(const struct relay *r, int s)
{
    const struct relay_dir *in = &r->dir[s], *out = &r->dir[!s];

    return (in->mode == RM_OFF || in->complete) && !in->src_eof && !r->side[s].watch_quiet &&
           r->side[s].c->xprt == &xprt_tcp && out->mode != RM_OFF && !out->complete;
}

/* Arm each side's watcher for what its pending operations need. */
static void relay_arm(struct relay *r)
{
    for (int s = 0; s < 2; s++) {
        struct relay_side *side = &r->side[s];
        struct relay_dir *in = &r->dir[s], *out = &r->dir[!s];
        unsigned ev = 0;
        /* a buffer full of bytes that cannot leave yet (waiting for the writer, the
         * scanner or the owner) stops reading */
        bool full = in->buf && buf_room(in->buf) == 0 && (in->ready || in->buf->head == 0);
        bool wants_read = in->mode != RM_OFF && !in->complete && !in->src_eof && !in->paused &&
                          !dir_message_read(in) && !full;
        bool wants_write = (out->mode != RM_OFF && !dir_drained(out)) || side->shut_pending;

        /* TLS may need the opposite event to make progress */
        if (wants_read)
            ev |= side->c->want == CO_WANT_WRITE && side->c->xprt == &xprt_tls ? EV_WRITE : EV_READ;
        else if (side_watched_for_close(r, s))
            ev |= EV_READ;
        if (wants_write)
            ev |= side->c->want == CO_WANT_READ && side->c->xprt == &xprt_tls ? EV_READ : EV_WRITE;
        if (ev == side->armed)
            continue;
        side->armed = ev;
        IO_REARM(r->w->loop, &side->io, (int)ev);
    }
}

int relay_kick(struct relay *r)
{
    if (r->stopped)
        return RELAY_GO;
    if (r->running) {
        r->again = true;
        return RELAY_GO;
    }
    r->running = true;
    do {
        r->again = false;
        if (relay_run(r) == RELAY_GONE)
            return RELAY_GONE; /* r may be freed: do not touch it */
    } while (r->again && !r->stopped);
    r->running = false;
    return RELAY_GO;
}
