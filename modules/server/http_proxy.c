/* Server http_proxy: HTTP/1.x forward proxy.
 *
 * A client connection (struct hp_conn) reads request heads; each request is a task
 * (struct hp_req): absolute-form requests are forwarded (keep-alive both ways,
 * pipelining, upstream connection reuse, https:// spoken over TLS by us), CONNECT
 * opens a tunnel, requests to the proxy itself serve the easy-proxy well-known URI.
 * Bodies and tunnels move through the relay; the request and response heads are
 * parsed strictly (http1.c) and rewritten without hop-by-hop headers.
 *
 * Lifetimes: the connection pins its generation (so its server object stays valid
 * across reloads while it lives) and is listed on the worker so offline/quit can
 * close it; a request is a task with its own pin. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "escaper.h"
#include "evlog.h"
#include "gen.h"
#include "http1.h"
#include "listener.h"
#include "log.h"
#include "registry.h"
#include "relay.h"
#include "server.h"
#include "sockopt.h"
#include "stats.h"
#include "task.h"
#include "upool.h"
#include "worker.h"

#define HP_MAX_HDRS 128
#define HP_ERR_SEND_TIMEOUT 5.0
#define HP_LINGER_TIME 2.0
#define HP_LINGER_MAX (1 << 20)

struct http_proxy {
    struct server base;
    char **local_names;             /* arena: local_server_name */
    size_t nlocal;
    char *auth_realm;
    struct tls_client_conf tls_client;
    struct tls_server_conf tls_server;
    uint64_t req_hdr_timeout_ns, rsp_hdr_timeout_ns;
    uint64_t req_hdr_max, rsp_hdr_max;
    uint32_t log_uri_max_chars;
    uint32_t pipeline_size;
    uint64_t pipeline_idle_ns;
    bool no_early_error_reply;
    bool allow_custom_host;
    bool drop_default_port_in_host;
    uint32_t body_line_max;
    struct http_keepalive up_keepalive;
    bool steal_forwarded_for;
    int append_forwarded;           /* enum forwarded_type */
};

enum hc_state {
    HC_TLS,                         /* TLS handshake with the client (tls_server) */
    HC_HEAD,                        /* reading a request head */
    HC_BUSY,                        /* a request runs */
    HC_ERROR,                       /* writing an error answer, then closing */
    HC_LINGER,                      /* answer sent: draining what the client still sends */
};

struct hp_req;

struct hp_conn {
    struct wconn wc;                /* in worker->conns */
    struct http_proxy *srv;         /* borrowed: pinned */
    struct worker *w;               /* borrowed */
    struct gen_pin *pin;
    struct conn c;                  /* client */
    union sockaddr_any peer, local;
    ev_io io;
    ev_timer timer;
    uint8_t state;
    bool first;                     /* no request finished on it yet */
    bool full;                      /* over max_connections */
    struct buf *in;                 /* client bytes not consumed yet */
    struct http1_scan scan;
    struct buf *out;                /* error answer being written */
    struct hp_req *req;             /* current request, NULL between requests */
    uint32_t nreq;
    uint32_t lingered;              /* bytes drained after an error answer */
};

enum hr_kind { HR_FORWARD, HR_CONNECT };

struct hp_req {
    struct task t;
    struct hp_conn *hc;             /* borrowed */
    enum hr_kind kind;
    enum http1_method method;
    uint8_t client_minor;           /* client's HTTP/1.x minor version */
    bool tls;                       /* https:// forward: TLS to the origin */
    bool reused;                    /* upstream connection came from the pool */
    bool client_keepalive;
    bool up_keepalive;              /* the upstream connection may be pooled */
    bool head_sent;                 /* a response head went to the client */
    bool body_done[2];
    bool upgrade;                   /* request asked for a protocol upgrade */
    bool retried;
    uint8_t stage;                  /* for logs */
    enum http1_body body_kind;      /* request body framing */
    uint64_t body_len;              /* HTTP1_BODY_LENGTH */
    struct connect_ctx cc;
    struct conn up;                 /* upstream */
    bool up_open;
    struct relay relay;
    bool relay_on;
    ev_timer timer;                 /* connect+TLS / response head timeout */
    ev_io tls_io;                   /* origin TLS handshake */
    struct http1_scan rscan;
    struct http1_chunked req_chunks, rsp_chunks;
    unsigned status;                /* sent to the client */
    unsigned origin_status;
    struct buf *req_head;           /* rewritten request head (kept for a retry) */
    uint64_t c_head_bytes;          /* request head bytes read from the client */
    uint64_t ready_us, hdr_sent_us, rsp_hdr_us;
    char method_str[24];
    char *uri;                      /* owned: truncated for logs */
    char *ua;                       /* owned */
    char upstream_str[HOST_MAX + 8];
};

enum { ST_CREATED = 0, ST_CONNECTING, ST_CONNECTED, ST_REPLYING, ST_RELAYING, ST_FINISHED };
static const char *const stage_names[] = {"Created", "Connecting", "Connected", "Replying",
                                          "Relaying", "Finished"};

static void hc_close(struct hp_conn *hc);
static void hc_read_head(struct hp_conn *hc);
static void hc_wait_head(struct hp_conn *hc);
static void req_end(struct hp_req *rq, enum task_reason reason);
static int req_send(struct hp_req *rq);
static void req_connect(struct hp_req *rq);

static struct http_proxy *hp_of(struct server *s)
{
    return container_of(s, struct http_proxy, base);
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* ------------------------------------------------------------- task logs */

static void req_log(struct hp_req *rq)
{
    struct daemon *d = rq->hc->srv->base.obj.gen->d;
    struct evrec r;
    struct relay_dir *up = &rq->relay.dir[0], *down = &rq->relay.dir[1];

    if (!d->evlog || !evlog_enabled(d->evlog, EVLOG_TASK))
        return;
    task_log_begin(&r, &rq->t, "HttpProxy", rq->kind == HR_CONNECT ? "TcpConnect" : "HttpForward",
                   stage_names[rq->stage], rq->cc.used ? rq->cc.used->obj.name : NULL,
                   rq->ready_us);
    evrec_addr(&r, "server_addr", &rq->hc->local);
    evrec_addr(&r, "client_addr", &rq->hc->peer);
    if (rq->upstream_str[0])
        evrec_str(&r, "upstream", rq->upstream_str);
    if (rq->cc.bind_ip.family)
        evrec_ip(&r, "next_bind_ip", &rq->cc.bind_ip);
    if (rq->cc.bound.sa.sa_family)
        evrec_addr(&r, "next_bound_addr", &rq->cc.bound);
    if (rq->cc.peer.sa.sa_family)
        evrec_addr(&r, "next_peer_addr", &rq->cc.peer);
    evrec_u64(&r, "tcp_connect_tries", rq->cc.tries);
    evrec_dur(&r, "tcp_connect_spend", rq->cc.spend_us * 1000);
    evrec_u64(&r, "c_rd_bytes", rq->c_head_bytes + up->read_bytes);
    evrec_u64(&r, "c_wr_bytes", down->bytes);
    evrec_u64(&r, "r_rd_bytes", down->read_bytes);
    evrec_u64(&r, "r_wr_bytes", up->bytes);
    if (rq->kind == HR_FORWARD) {
        evrec_bool(&r, "reuse_connection", rq->reused);
        evrec_str(&r, "method", rq->method_str);
        evrec_str(&r, "uri", rq->uri);
        if (rq->ua)
            evrec_str(&r, "user_agent", rq->ua);
        if (rq->status)
            evrec_u64(&r, "rsp_status", rq->status);
        if (rq->origin_status)
            evrec_u64(&r, "origin_status", rq->origin_status);
        if (rq->hdr_sent_us)
            evrec_dur(&r, "dur_req_send_hdr", (rq->hdr_sent_us - rq->t.start_mono_us) * 1000);
        if (rq->rsp_hdr_us)
            evrec_dur(&r, "dur_rsp_recv_hdr", (rq->rsp_hdr_us - rq->t.start_mono_us) * 1000);
    }
    evlog_emit(d->evlog, &r);
}

/* ------------------------------------------------------------ responses */

/* Our own answer: status line, a few headers and a short text body. */
static struct buf *error_answer(struct hp_conn *hc, unsigned status, const char *detail,
                                bool close_conn)
{
    struct buf *b = buf_get(hc->w->bufs, BUF_SMALL_SIZE);
    char body[512];
    int blen, n;

    if (!b)
        return NULL;
    blen = snprintf(body, sizeof(body), "%u %s%s%s\n", status, http1_reason(status),
                    detail ? ": " : "", detail ? detail : "");
    if (blen >= (int)sizeof(body))
        blen = (int)sizeof(body) - 1;
    n = snprintf(b->data, b->size,
                 "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 "%s%s%s%s\r\n%s",
                 status, http1_reason(status), blen,
                 close_conn ? "Connection: close\r\n" : "",
                 status == 407 ? "Proxy-Authenticate: Basic realm=\"" : "",
                 status == 407 ? hc->srv->auth_realm : "", status == 407 ? "\"\r\n" : "", body);
    b->tail = (uint32_t)MIN(n, (int)b->size);
    return b;
}

static void hc_timer_set(struct hp_conn *hc, double after)
{
    ev_timer_stop(hc->w->loop, &hc->timer);
    ev_timer_set(&hc->timer, after, 0.);
    ev_timer_start(hc->w->loop, &hc->timer);
}

static void hc_io_set(struct hp_conn *hc, int events)
{
    IO_REARM(hc->w->loop, &hc->io, events);
}

/* Closing a socket with unread input makes the kernel send a reset, which can
 * destroy our answer before the client reads it: stop sending, then read and drop
 * what the client still sends, for a bounded time and amount. */
static void hc_linger(struct hp_conn *hc)
{
    char sink[4096];

    for (;;) {
        ssize_t n = recv(hc->c.fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            hc_io_set(hc, EV_READ);
            return;
        }
        if (n <= 0 || (hc->lingered += (uint32_t)n) > HP_LINGER_MAX)
            break;
    }
    hc_close(hc);
}

/* Write hc->out, then linger and close. */
static void hc_flush_error(struct hp_conn *hc)
{
    while (hc->out && buf_len(hc->out)) {
        ssize_t w = conn_send(&hc->c, buf_ptr(hc->out), buf_len(hc->out));
        if (w < 0 && errno == EAGAIN) {
            hc_io_set(hc, hc->c.want == CO_WANT_READ ? EV_READ : EV_WRITE);
            return;
        }
        if (w <= 0) {
            hc_close(hc);
            return;
        }
        buf_consume(hc->out, (size_t)w);
    }
    if (hc->c.xprt != &xprt_tcp) {
        hc_close(hc); /* TLS: a close_notify is as good as it gets */
        return;
    }
    shutdown(hc->c.fd, SHUT_WR);
    hc->state = HC_LINGER;
    hc_timer_set(hc, HP_LINGER_TIME);
    hc_linger(hc);
}

/* Answer an error to the client and close the connection. `early`: the request
 * could not even be parsed. */
static void hc_error(struct hp_conn *hc, unsigned status, const char *detail, bool early)
{
    if (early && hc->srv->no_early_error_reply && hc->first) {
        hc_close(hc); /* do not reveal a proxy to a prober */
        return;
    }
    hc->state = HC_ERROR;
    buf_put(hc->w->bufs, hc->out);
    hc->out = error_answer(hc, status, detail, true);
    hc_timer_set(hc, HP_ERR_SEND_TIMEOUT);
    /* read no more: half-close would make some clients miss the answer */
    hc_flush_error(hc);
}

/* ------------------------------------------------------ request ending */

static void req_free(struct hp_req *rq)
{
    struct worker *w = rq->hc->w;

    escaper_connect_cancel(&rq->cc);
    if (rq->cc.fd >= 0) {
        close(rq->cc.fd);
        rq->cc.fd = -1;
    }
    if (rq->relay_on)
        relay_stop(&rq->relay);
    ev_timer_stop(w->loop, &rq->timer);
    ev_io_stop(w->loop, &rq->tls_io);
    if (rq->up_open)
        conn_close(&rq->up);
    buf_put(w->bufs, rq->req_head);
    free(rq->uri);
    free(rq->ua);
    free(rq);
}

static void req_account(struct hp_req *rq)
{
    struct server_stats_slot *st = &rq->hc->srv->base.stats->slot[rq->hc->w->id];
    struct escaper_stats_slot *es = rq->cc.used ? &rq->cc.used->stats->slot[rq->hc->w->id] : NULL;

    STAT_ADD(st->in_bytes, rq->c_head_bytes + rq->relay.dir[0].read_bytes);
    STAT_ADD(st->out_bytes, rq->relay.dir[1].bytes);
    if (es) {
        STAT_ADD(es->in_bytes, rq->relay.dir[1].read_bytes);
        STAT_ADD(es->out_bytes, rq->relay.dir[0].bytes);
    }
}

/* The request failed before a response head went to the client: answer and close. */
static void req_fail(struct hp_req *rq, enum task_reason reason, unsigned status,
                     const char *detail)
{
    struct hp_conn *hc = rq->hc;

    task_set_reason(&rq->t, reason);
    if (rq->head_sent) {
        req_end(rq, reason);
        return;
    }
    rq->status = status;
    req_log(rq);
    req_account(rq);
    hc->req = NULL;
    task_finish(&rq->t);
    req_free(rq);
    hc_error(hc, status, detail, false);
}

/* The request ended (success or not). Decide what happens to both connections. */
static void req_end(struct hp_req *rq, enum task_reason reason)
{
    struct hp_conn *hc = rq->hc;
    bool keep_client = reason == TR_FINISHED && rq->client_keepalive && rq->body_done[0] &&
                       rq->body_done[1] && !hc->w->offline && hc->nreq < UINT32_MAX;

    task_set_reason(&rq->t, reason);
    rq->stage = ST_FINISHED;
    req_log(rq);
    req_account(rq);

    /* pipelined bytes the request body reader took belong to the connection */
    if (rq->relay_on && keep_client) {
        struct buf *rest = relay_dir_take_rest(&rq->relay, 0);
        if (rest) {
            if (hc->in && buf_len(hc->in)) {
                keep_client = false; /* cannot happen: the head buffer was handed over */
                buf_put(hc->w->bufs, rest);
            } else {
                buf_put(hc->w->bufs, hc->in);
                hc->in = rest;
            }
        }
    }
    if (rq->relay_on) {
        relay_stop(&rq->relay);
        rq->relay_on = false;
    }
    if (rq->up_open && rq->up_keepalive && reason == TR_FINISHED && rq->body_done[0] &&
        rq->body_done[1]) {
        struct upool_key k = {rq->cc.used ? rq->cc.used->obj.name : "", rq->cc.target.host,
                              rq->cc.target.port, rq->tls};
        upool_put(hc->w->upool, &k, &rq->up, secs(hc->srv->up_keepalive.idle_expire_ns),
                  &rq->cc.peer);
        rq->up_open = false;
    }
    hc->req = NULL;
    task_finish(&rq->t);
    req_free(rq);
    if (!keep_client) {
        hc_close(hc);
        return;
    }
    hc->first = false;
    hc_wait_head(hc);
}

static void req_kill(struct task *t, enum task_reason reason)
{
    struct hp_req *rq = container_of(t, struct hp_req, t);
    rq->client_keepalive = false;
    req_end(rq, reason);
}

/* ----------------------------------------------------------- relay glue */

static ssize_t scan_chunked(void *state, const char *p, size_t n, bool *done)
{
    size_t used = 0;
    int rc = http1_chunked_scan(state, p, n, &used);

    if (rc < 0)
        return -1;
    *done = rc == HTTP1_CHUNK_DONE;
    return (ssize_t)used;
}

static void relay_end(struct relay *r, enum task_reason reason)
{
    struct hp_req *rq = r->owner;

    rq->relay_on = false; /* the relay stopped itself */
    if (!rq->head_sent && rq->kind == HR_FORWARD) {
        unsigned st = reason == TR_CLOSED_BY_UPSTREAM || reason == TR_UPSTREAM_READ_FAILED
                          ? 502
                          : reason == TR_IDLE ? 504 : 400;
        if (reason == TR_CLOSED_EARLY_BY_CLIENT || reason == TR_CLIENT_TCP_READ_FAILED ||
            reason == TR_CLIENT_TCP_WRITE_FAILED) {
            rq->client_keepalive = false;
            req_end(rq, reason);
            return;
        }
        req_fail(rq, reason, st, reason == TR_INVALID_CLIENT_PROTOCOL ? "invalid request body"
                                 : st == 504 ? "upstream timed out" : "upstream closed the connection");
        return;
    }
    rq->client_keepalive = false;
    req_end(rq, reason);
}

static int relay_dir_done(struct relay *r, int d)
{
    struct hp_req *rq = r->owner;

    rq->body_done[d] = true;
    if (d == 0 && !rq->head_sent && !ev_is_active(&rq->timer))
        ev_timer_start(rq->hc->w->loop, &rq->timer);
    if (d == 1 && !rq->body_done[0]) {
        /* the answer came before the request body ended: nothing can be reused */
        rq->client_keepalive = false;
        rq->up_keepalive = false;
        req_end(rq, TR_FINISHED);
        return RELAY_GONE;
    }
    if (rq->body_done[0] && rq->body_done[1]) {
        req_end(rq, TR_FINISHED);
        return RELAY_GONE;
    }
    return RELAY_GO;
}

/* Append to a growing head buffer. */
struct hbuild {
    struct buf *b;
    struct worker *w;
    bool failed;
};

static void hb_add(struct hbuild *hb, const char *p, size_t n)
{
    if (hb->failed)
        return;
    if (buf_room(hb->b) < n) {
        struct buf *g = buf_grow(hb->w->bufs, hb->b, MAX((size_t)hb->b->size * 2, buf_len(hb->b) + n + 1024));
        if (!g) {
            hb->failed = true;
            return;
        }
        hb->b = g;
    }
    memcpy(buf_end(hb->b), p, n);
    hb->b->tail += (uint32_t)n;
}

static void hb_str(struct hbuild *hb, const char *s)
{
    hb_add(hb, s, strlen(s));
}

static void hb_hdr(struct hbuild *hb, const struct http1_hdr *h)
{
    hb_add(hb, h->name, h->nlen);
    hb_add(hb, ": ", 2);
    hb_add(hb, h->val, h->vlen);
    hb_add(hb, "\r\n", 2);
}

/* "Content_Length" is a valid header name, but some servers read '_' as '-': a name
 * that would then mean a framing or hop-by-hop header is dropped, never forwarded,
 * so no server behind us frames the message differently from us. */
static bool underscore_alias(const struct http1_hdr *hdr)
{
    static const char *const risky[] = {"content-length", "transfer-encoding", "host",
                                        "connection", "te", "trailer", "upgrade",
                                        "proxy-authorization", "proxy-connection", "keep-alive",
                                        "expect"};
    char name[32];

    if (!memchr(hdr->name, '_', hdr->nlen) || hdr->nlen >= sizeof(name))
        return false;
    for (size_t i = 0; i < hdr->nlen; i++)
        name[i] = hdr->name[i] == '_' ? '-' : (char)tolower((unsigned char)hdr->name[i]);
    name[hdr->nlen] = 0;
    for (size_t i = 0; i < ARRAY_SIZE(risky); i++)
        if (!strcmp(name, risky[i]))
            return true;
    return false;
}

/* Hop-by-hop: the fixed list plus anything named in Connection. */
static bool hop_by_hop(const struct http1_head *h, const struct http1_hdr *hdr)
{
    char name[64];

    if (http1_is_hop_by_hop(hdr->name, hdr->nlen))
        return true;
    if (hdr->nlen >= sizeof(name))
        return false;
    memcpy(name, hdr->name, hdr->nlen);
    name[hdr->nlen] = 0;
    for (size_t i = 0; i < h->nhdrs; i++)
        if (http1_hdr_is(&h->hdrs[i], "connection") &&
            http1_token_list_has(h->hdrs[i].val, h->hdrs[i].vlen, name))
            return true;
    return false;
}

/* -------------------------------------------------------- the response */

/* Build the response head for the client from the origin's. */
static struct buf *build_rsp_head(struct hp_req *rq, const struct http1_head *h, bool keep)
{
    struct hbuild hb = {buf_get(rq->hc->w->bufs, BUF_SMALL_SIZE), rq->hc->w, false};
    char line[64];

    if (!hb.b)
        return NULL;
    snprintf(line, sizeof(line), "HTTP/1.%u %u ", rq->client_minor ? 1 : 0, h->status);
    hb_str(&hb, line);
    hb_add(&hb, h->reason, h->reason_len);
    hb_add(&hb, "\r\n", 2);
    for (size_t i = 0; i < h->nhdrs; i++) {
        const struct http1_hdr *x = &h->hdrs[i];
        if ((hop_by_hop(h, x) || underscore_alias(x)) &&
            !(h->status == 101 && (http1_hdr_is(x, "upgrade") || http1_hdr_is(x, "connection"))))
            continue;
        if ((h->flags & HTTP1_F_CL_MERGED) && http1_hdr_is(x, "content-length"))
            continue;
        hb_hdr(&hb, x);
    }
    if (h->flags & HTTP1_F_CL_MERGED) {
        snprintf(line, sizeof(line), "Content-Length: %llu\r\n",
                 (unsigned long long)h->content_length);
        hb_str(&hb, line);
    }
    if (h->body == HTTP1_BODY_CHUNKED)
        hb_str(&hb, "Transfer-Encoding: chunked\r\n");
    if (h->status != 101) {
        if (!keep)
            hb_str(&hb, "Connection: close\r\n");
        else if (rq->client_minor == 0)
            hb_str(&hb, "Connection: keep-alive\r\n");
    }
    hb_add(&hb, "\r\n", 2);
    if (hb.failed) {
        buf_put(rq->hc->w->bufs, hb.b);
        return NULL;
    }
    return hb.b;
}

/* Bytes of the origin's answer sit in the relay's direction-1 buffer: the first
 * `dir->ready` of them are our own (a forwarded interim head not yet written). */
static int on_rsp_hold(struct relay *r, int d)
{
    struct hp_req *rq = r->owner;
    struct http_proxy *hp = rq->hc->srv;
    struct relay_dir *dir = &r->dir[1];
    struct http1_hdr hdrs[HP_MAX_HDRS];
    struct http1_head h;
    size_t off = dir->ready, have = dir->buf ? buf_len(dir->buf) - off : 0;
    int rc;

    rc = have ? http1_parse_response(&rq->rscan, buf_ptr(dir->buf) + off, have, rq->method, &h,
                                     hdrs, HP_MAX_HDRS)
              : 0;
    if (rc == 0) {
        if (dir->src_eof) {
            /* a pooled connection the origin closed before answering: try again (only
             * body-less requests: nothing of the client's was consumed) */
            if (rq->reused && !rq->retried && have == 0 && off == 0 && !rq->head_sent &&
                rq->body_kind == HTTP1_BODY_NONE) {
                rq->retried = true;
                relay_stop(r);
                rq->relay_on = false;
                conn_close(&rq->up);
                rq->up_open = false;
                rq->reused = false;
                req_connect(rq);
                return RELAY_GONE;
            }
            req_fail(rq, TR_CLOSED_BY_UPSTREAM, 502, "upstream closed before answering");
            return RELAY_GONE;
        }
        if (have >= hp->rsp_hdr_max) {
            req_fail(rq, TR_INVALID_UPSTREAM_PROTOCOL, 502, "response head too large");
            return RELAY_GONE;
        }
        if (buf_room(dir->buf) == 0 && dir->buf->head == 0) {
            struct buf *g = buf_grow(rq->hc->w->bufs, dir->buf,
                                     MIN((size_t)dir->buf->size * 2, hp->rsp_hdr_max + off + 1));
            if (!g) {
                req_fail(rq, TR_INTERNAL_SERVER_ERROR, 503, "out of memory");
                return RELAY_GONE;
            }
            dir->buf = g;
        }
        return RELAY_GO;
    }
    if (rc < 0) {
        req_fail(rq, TR_INVALID_UPSTREAM_PROTOCOL, 502, http1_strerror(rc));
        return RELAY_GONE;
    }

    rq->origin_status = h.status;
    bool interim = h.status >= 100 && h.status < 200 && h.status != 101;
    bool keep = rq->client_keepalive && !interim && h.body != HTTP1_BODY_UNTIL_CLOSE &&
                h.body != HTTP1_BODY_TUNNEL;
    if (!interim) {
        rq->client_keepalive = keep;
        rq->up_keepalive = hp->up_keepalive.enable && (h.flags & HTTP1_F_KEEP_ALIVE) &&
                           rq->client_minor == 1;
    }
    if (interim && rq->client_minor == 0) {
        /* HTTP/1.0 clients do not understand interim answers: drop it */
        buf_consume(dir->buf, 0);
        memmove(buf_ptr(dir->buf) + off, buf_ptr(dir->buf) + off + (size_t)rc, have - (size_t)rc);
        dir->buf->tail -= (uint32_t)rc;
        http1_scan_init(&rq->rscan, hp->rsp_hdr_max);
        return on_rsp_hold(r, d);
    }
    struct buf *nh = build_rsp_head(rq, &h, keep || interim);
    if (!nh) {
        req_fail(rq, TR_INTERNAL_SERVER_ERROR, 503, "out of memory");
        return RELAY_GONE;
    }
    /* new buffer: [our unsent bytes][new head][body bytes that came with the head] */
    struct buf *old = relay_dir_take_rest(r, 1);
    size_t pending = off, rest = have - (size_t)rc, hl = buf_len(nh);
    struct buf *nb = buf_get(rq->hc->w->bufs, MAX((size_t)BUF_DEFAULT_SIZE, pending + hl + rest));
    if (!nb) {
        buf_put(rq->hc->w->bufs, old);
        buf_put(rq->hc->w->bufs, nh);
        req_fail(rq, TR_INTERNAL_SERVER_ERROR, 503, "out of memory");
        return RELAY_GONE;
    }
    if (old)
        memcpy(nb->data, buf_ptr(old), pending);
    memcpy(nb->data + pending, buf_ptr(nh), hl);
    if (old)
        memcpy(nb->data + pending + hl, buf_ptr(old) + off + (size_t)rc, rest);
    nb->tail = (uint32_t)(pending + hl + rest);
    buf_put(rq->hc->w->bufs, old);
    buf_put(rq->hc->w->bufs, nh);

    if (interim) {
        relay_dir_set(r, 1, RM_HOLD, 0, NULL, NULL, nb, pending + hl);
        http1_scan_init(&rq->rscan, hp->rsp_hdr_max);
        return RELAY_GO;
    }
    rq->status = h.status;
    rq->head_sent = true;
    rq->rsp_hdr_us = now_mono_us();
    rq->stage = ST_RELAYING;
    ev_timer_stop(rq->hc->w->loop, &rq->timer);
    switch (h.body) {
    case HTTP1_BODY_NONE:
        relay_dir_set(r, 1, RM_LENGTH, 0, NULL, NULL, nb, pending + hl);
        break;
    case HTTP1_BODY_LENGTH:
        relay_dir_set(r, 1, RM_LENGTH, h.content_length, NULL, NULL, nb, pending + hl);
        break;
    case HTTP1_BODY_CHUNKED:
        http1_chunked_init(&rq->rsp_chunks, hp->body_line_max, 0);
        relay_dir_set(r, 1, RM_SCAN, 0, scan_chunked, &rq->rsp_chunks, nb, pending + hl);
        break;
    case HTTP1_BODY_UNTIL_CLOSE:
        relay_dir_set(r, 1, RM_STREAM, 0, NULL, NULL, nb, pending + hl);
        r->dir[1].shut_on_eof = false;
        break;
    case HTTP1_BODY_TUNNEL:
        /* 101: both ways become a tunnel, whatever the request body was */
        relay_dir_set(r, 1, RM_STREAM, 0, NULL, NULL, nb, pending + hl);
        if (!rq->body_done[0] || r->dir[0].mode != RM_STREAM) {
            struct buf *rest0 = relay_dir_take_rest(r, 0);
            relay_dir_set(r, 0, RM_STREAM, 0, NULL, NULL, rest0, rest0 ? buf_len(rest0) : 0);
        }
        rq->client_keepalive = false;
        rq->up_keepalive = false;
        break;
    }
    return RELAY_GO;
}

/* ---------------------------------------------------- sending the request */

static void on_rsp_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hp_req *rq = container_of(t, struct hp_req, timer);

    if (rq->head_sent)
        return;
    req_fail(rq, TR_UPSTREAM_APP_TIMEOUT, 504, "no answer from upstream in time");
}

/* Start the relay: request head and body upstream, the answer back. */
static int req_send(struct hp_req *rq)
{
    struct hp_conn *hc = rq->hc;
    struct http_proxy *hp = hc->srv;
    struct relay_conf rc;
    struct relay *r = &rq->relay;
    struct buf *b;

    rq->stage = ST_CONNECTED;
    ev_io_stop(hc->w->loop, &hc->io); /* the relay watches the client from now on */
    server_relay_conf(&hp->base, &rc);
    relay_init(r, hc->w, &hc->c, &rq->up, &rc, rq);
    r->on_dir_done = relay_dir_done;
    r->on_hold = on_rsp_hold;
    r->on_end = relay_end;
    rq->relay_on = true;
    rq->body_done[0] = rq->body_done[1] = false;

    if (rq->kind == HR_CONNECT) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        b = buf_get(hc->w->bufs, BUF_SMALL_SIZE);
        if (!b) {
            req_fail(rq, TR_INTERNAL_SERVER_ERROR, 503, "out of memory");
            return -1;
        }
        memcpy(b->data, ok, sizeof(ok) - 1);
        b->tail = sizeof(ok) - 1;
        rq->status = 200;
        rq->head_sent = true;
        rq->stage = ST_RELAYING;
        ev_timer_stop(hc->w->loop, &rq->timer);
        relay_dir_set(r, 1, RM_STREAM, 0, NULL, NULL, b, buf_len(b));
        /* bytes the client sent right after the CONNECT head go upstream first */
        struct buf *early = hc->in && buf_len(hc->in) ? hc->in : NULL;
        if (early)
            hc->in = NULL;
        relay_dir_set(r, 0, RM_STREAM, 0, NULL, NULL, early, early ? buf_len(early) : 0);
        rq->client_keepalive = false;
        return relay_kick(r) == RELAY_GONE ? -1 : 0;
    }

    /* [rewritten head][what followed the head, when there is a body] */
    size_t hl = buf_len(rq->req_head);
    size_t extra = rq->body_kind != HTTP1_BODY_NONE && hc->in ? buf_len(hc->in) : 0;
    b = buf_get(hc->w->bufs, MAX((size_t)BUF_DEFAULT_SIZE, hl + extra));
    if (!b) {
        req_fail(rq, TR_INTERNAL_SERVER_ERROR, 503, "out of memory");
        return -1;
    }
    memcpy(b->data, buf_ptr(rq->req_head), hl);
    if (extra)
        memcpy(b->data + hl, buf_ptr(hc->in), extra);
    b->tail = (uint32_t)(hl + extra);
    if (rq->body_kind != HTTP1_BODY_NONE) {
        buf_put(hc->w->bufs, hc->in);
        hc->in = NULL;
    }
    switch (rq->body_kind) {
    case HTTP1_BODY_CHUNKED:
        http1_chunked_init(&rq->req_chunks, hp->body_line_max, 0);
        relay_dir_set(r, 0, RM_SCAN, 0, scan_chunked, &rq->req_chunks, b, hl);
        break;
    case HTTP1_BODY_LENGTH:
        relay_dir_set(r, 0, RM_LENGTH, rq->body_len, NULL, NULL, b, hl);
        break;
    default:
        relay_dir_set(r, 0, RM_LENGTH, 0, NULL, NULL, b, hl);
        break;
    }
    relay_dir_set(r, 1, RM_HOLD, 0, NULL, NULL, NULL, 0);
    http1_scan_init(&rq->rscan, hp->rsp_hdr_max);
    rq->stage = ST_REPLYING;
    rq->hdr_sent_us = now_mono_us();
    ev_timer_stop(hc->w->loop, &rq->timer);
    ev_timer_init(&rq->timer, on_rsp_timeout, secs(hp->rsp_hdr_timeout_ns), 0.);
    /* the wait for the answer starts once the request is all sent (see relay_dir_done) */
    if (rq->body_kind == HTTP1_BODY_NONE)
        ev_timer_start(hc->w->loop, &rq->timer);
    return relay_kick(r) == RELAY_GONE ? -1 : 0;
}

/* ------------------------------------------------------------ connecting */

static void on_tls_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hp_req *rq = container_of(t, struct hp_req, timer);

    ev_io_stop(loop, &rq->tls_io);
    req_fail(rq, TR_UPSTREAM_TLS_HANDSHAKE_TIMEOUT, 504, "TLS handshake with upstream timed out");
}

static void tls_step(struct hp_req *rq)
{
    const char *why = NULL;
    int rc = conn_tls_handshake(&rq->up, &why);

    ev_io_stop(rq->hc->w->loop, &rq->tls_io);
    if (rc == STEP_AGAIN) {
        ev_io_set(&rq->tls_io, rq->up.fd, rq->up.want == CO_WANT_WRITE ? EV_WRITE : EV_READ);
        ev_io_start(rq->hc->w->loop, &rq->tls_io);
        return;
    }
    ev_timer_stop(rq->hc->w->loop, &rq->timer);
    if (rc == STEP_ERROR) {
        char detail[256];
        snprintf(detail, sizeof(detail), "TLS handshake with upstream failed: %s", why);
        req_fail(rq, TR_UPSTREAM_TLS_HANDSHAKE_FAILED, 525, detail);
        return;
    }
    req_send(rq);
}

static void on_tls_io(struct ev_loop *loop, ev_io *io, int revents)
{
    tls_step(container_of(io, struct hp_req, tls_io));
}

static void on_connected(struct connect_ctx *cc, bool ok)
{
    struct hp_req *rq = container_of(cc, struct hp_req, cc);
    struct hp_conn *hc = rq->hc;
    struct http_proxy *hp = hc->srv;

    if (!ok) {
        req_fail(rq, cc->reason, (unsigned)cc->http_status, cc->error);
        return;
    }
    /* dead loop: the target turned out to be one of our own listeners */
    if (listen_is_own(hp->base.obj.gen, &cc->peer, &cc->bound)) {
        close(cc->fd);
        cc->fd = -1;
        req_fail(rq, TR_FORBIDDEN_BY_RULE, 403, "request loop: the target is this proxy");
        return;
    }
    conn_init(&rq->up, cc->fd);
    cc->fd = -1;
    rq->up_open = true;
    rq->ready_us = now_mono_us();
    if (!rq->tls) {
        req_send(rq);
        return;
    }
    if (conn_tls_client(&rq->up, hp->tls_client.ctx,
                        hp->tls_client.disable_sni ? NULL : rq->cc.target.host,
                        hp->tls_client.insecure ? NULL : rq->cc.target.host) < 0) {
        req_fail(rq, TR_INTERNAL_TLS_CLIENT_ERROR, 502, "cannot start TLS");
        return;
    }
    ev_timer_stop(hc->w->loop, &rq->timer);
    ev_timer_init(&rq->timer, on_tls_timeout, secs(hp->tls_client.handshake_timeout_ns), 0.);
    ev_timer_start(hc->w->loop, &rq->timer);
    ev_io_init(&rq->tls_io, on_tls_io, rq->up.fd, EV_WRITE);
    tls_step(rq);
}

static void req_connect(struct hp_req *rq)
{
    struct hp_conn *hc = rq->hc;
    struct escaper *e = hc->srv->base.escaper;

    rq->stage = ST_CONNECTING;
    if (rq->kind == HR_FORWARD && hc->srv->up_keepalive.enable) {
        struct upool_key k = {e->obj.name, rq->cc.target.host, rq->cc.target.port, rq->tls};
        if (upool_get(hc->w->upool, &k, &rq->up, &rq->cc.peer)) {
            rq->up_open = true;
            rq->reused = true;
            rq->cc.used = e;
            rq->ready_us = now_mono_us();
            req_send(rq);
            return;
        }
    }
    rq->cc.task = &rq->t;
    rq->cc.w = hc->w;
    rq->cc.client = &hc->peer;
    rq->cc.server = &hc->local;
    rq->cc.on_done = on_connected;
    if (escaper_tcp_connect(e, &rq->cc) < 0)
        req_fail(rq, rq->cc.reason, (unsigned)rq->cc.http_status, rq->cc.error);
}

/* --------------------------------------------------------- request heads */

static bool is_local_name(const struct http_proxy *hp, const char *host, size_t len)
{
    for (size_t i = 0; i < hp->nlocal; i++)
        if (strlen(hp->local_names[i]) == len && !strncasecmp(hp->local_names[i], host, len))
            return true;
    return false;
}

static char *dup_trunc(const char *p, size_t n, size_t max)
{
    return xstrndup(p, MIN(n, max));
}

/* Fill rq->cc.target from a parsed host:port. */
static int set_target(struct hp_req *rq, const struct http1_hostport *hp)
{
    char host[HOST_MAX + 1];
    const char *why;

    if (hp->len > HOST_MAX)
        return -1;
    memcpy(host, hp->name, hp->len);
    host[hp->len] = 0;
    if (upstream_parse(host, &rq->cc.target, &why) < 0)
        return -1;
    rq->cc.target.port = hp->port;
    snprintf(rq->upstream_str, sizeof(rq->upstream_str),
             hp->kind == HTTP1_HOST_IPV6 ? "[%s]:%u" : "%s:%u", rq->cc.target.host, hp->port);
    return 0;
}

/* Build the request head for the origin (origin-form, hop-by-hop headers removed,
 * Host kept or added, forwarded-for added when configured). */
static int build_req_head(struct hp_req *rq, const struct http1_head *h, const struct http1_url *u,
                          const char *path, size_t path_len)
{
    struct hp_conn *hc = rq->hc;
    struct http_proxy *hp = hc->srv;
    struct hbuild hb = {buf_get(hc->w->bufs, BUF_SMALL_SIZE), hc->w, false};
    bool has_host = false, upgrade = false;
    char ip[64];
    struct ip_addr cip;

    if (!hb.b)
        return -1;
    hb_add(&hb, h->method_str, h->method_len);
    hb_add(&hb, " ", 1);
    if (u && u->path_needs_slash)
        hb_add(&hb, "/", 1);
    hb_add(&hb, path, path_len);
    hb_str(&hb, rq->client_minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
    upgrade = (h->flags & HTTP1_F_CONN_UPGRADE) && (h->flags & HTTP1_F_UPGRADE);
    for (size_t i = 0; i < h->nhdrs; i++) {
        const struct http1_hdr *x = &h->hdrs[i];
        if (http1_hdr_is(x, "host")) {
            if (!hp->allow_custom_host || !x->vlen)
                continue; /* replaced by the URL's host below */
            has_host = true;
            if (hp->drop_default_port_in_host) {
                size_t vl = x->vlen;
                const char *dp = rq->tls ? ":443" : ":80";
                size_t dl = strlen(dp);
                if (vl > dl && !memcmp(x->val + vl - dl, dp, dl)) {
                    hb_add(&hb, x->name, x->nlen);
                    hb_add(&hb, ": ", 2);
                    hb_add(&hb, x->val, vl - dl);
                    hb_add(&hb, "\r\n", 2);
                    continue;
                }
            }
        } else if (upgrade && http1_hdr_is(x, "upgrade")) {
            /* forwarded: the client asked to switch protocols */
        } else if (hop_by_hop(h, x) || underscore_alias(x)) {
            continue;
        } else if ((h->flags & HTTP1_F_CL_MERGED) && http1_hdr_is(x, "content-length")) {
            continue;
        } else if (hp->steal_forwarded_for &&
                   (http1_hdr_is(x, "forwarded") || http1_hdr_is(x, "x-forwarded-for"))) {
            continue;
        } else if (hp->append_forwarded == FWD_CLASSIC && http1_hdr_is(x, "x-forwarded-for")) {
            continue; /* re-added below with the client appended */
        }
        hb_hdr(&hb, x);
    }
    if (!has_host) {
        char hostline[HOST_MAX + 32];
        bool v6 = rq->cc.target.kind == HOST_IP && rq->cc.target.ip.family == AF_INET6;
        bool default_port = (rq->tls && rq->cc.target.port == 443) ||
                            (!rq->tls && rq->cc.target.port == 80);
        if (default_port)
            snprintf(hostline, sizeof(hostline), v6 ? "Host: [%s]\r\n" : "Host: %s\r\n",
                     rq->cc.target.host);
        else
            snprintf(hostline, sizeof(hostline), v6 ? "Host: [%s]:%u\r\n" : "Host: %s:%u\r\n",
                     rq->cc.target.host, rq->cc.target.port);
        hb_str(&hb, hostline);
    }
    if (h->flags & HTTP1_F_CL_MERGED) {
        char line[64];
        snprintf(line, sizeof(line), "Content-Length: %llu\r\n",
                 (unsigned long long)h->content_length);
        hb_str(&hb, line);
    }
    if (h->body == HTTP1_BODY_CHUNKED)
        hb_str(&hb, "Transfer-Encoding: chunked\r\n");
    sockaddr_to_ip(&hc->peer, &cip, NULL);
    ip_str(&cip, ip, sizeof(ip));
    if (hp->append_forwarded == FWD_CLASSIC) {
        const struct http1_hdr *xff = http1_find_hdr(h, "x-forwarded-for");
        hb_str(&hb, "X-Forwarded-For: ");
        if (xff && !hp->steal_forwarded_for && xff->vlen) {
            hb_add(&hb, xff->val, xff->vlen);
            hb_str(&hb, ", ");
        }
        hb_str(&hb, ip);
        hb_str(&hb, "\r\n");
    } else if (hp->append_forwarded == FWD_STANDARD) {
        hb_str(&hb, cip.family == AF_INET6 ? "Forwarded: for=\"[" : "Forwarded: for=");
        hb_str(&hb, ip);
        hb_str(&hb, cip.family == AF_INET6 ? "]\"\r\n" : "\r\n");
    }
    if (upgrade)
        hb_str(&hb, "Connection: upgrade\r\n");
    else if (!rq->client_minor || !hp->up_keepalive.enable)
        hb_str(&hb, "Connection: close\r\n");
    hb_add(&hb, "\r\n", 2);
    if (hb.failed) {
        buf_put(hc->w->bufs, hb.b);
        return -1;
    }
    rq->upgrade = upgrade;
    rq->req_head = hb.b;
    return 0;
}

/* /.well-known/easy-proxy/{http|https}/{host}/{port}/{path}?{query} */
static int easy_proxy(struct hp_req *rq, const char *p, size_t n, struct http1_url *u,
                      const char **path, size_t *path_len)
{
    static const char pfx[] = "/.well-known/easy-proxy/";
    const char *end = p + n, *q;
    char tmp[HOST_MAX + 16];

    if (n < sizeof(pfx) - 1 || memcmp(p, pfx, sizeof(pfx) - 1))
        return -1;
    p += sizeof(pfx) - 1;
    memset(u, 0, sizeof(*u));
    if ((size_t)(end - p) >= 5 && !memcmp(p, "http/", 5)) {
        u->scheme = HTTP1_SCHEME_HTTP;
        p += 5;
    } else if ((size_t)(end - p) >= 6 && !memcmp(p, "https/", 6)) {
        u->scheme = HTTP1_SCHEME_HTTPS;
        p += 6;
    } else {
        return -2; /* ftp and anything else */
    }
    q = memchr(p, '/', (size_t)(end - p));
    if (!q || q == p || (size_t)(q - p) >= sizeof(tmp))
        return -1;
    const char *host = p;
    size_t hlen = (size_t)(q - p);
    p = q + 1;
    q = p;
    while (q < end && *q != '/' && *q != '?')
        q++;
    if (q == p || (size_t)(q - p) > 5)
        return -1;
    /* host:port text for the common authority parser */
    size_t plen = (size_t)(q - p);
    if (hlen + 1 + plen >= sizeof(tmp))
        return -1;
    memcpy(tmp, host, hlen);
    tmp[hlen] = ':';
    memcpy(tmp + hlen + 1, p, plen);
    if (http1_parse_authority(tmp, hlen + 1 + plen, &u->host) < 0)
        return -1;
    if (set_target(rq, &u->host) < 0)
        return -1;
    *path = q < end ? q : "/";
    *path_len = q < end ? (size_t)(end - q) : 1;
    u->path_needs_slash = q < end && *q == '?';
    return 0;
}

static void req_start(struct hp_conn *hc, const struct http1_head *h)
{
    struct http_proxy *hp = hc->srv;
    struct server_stats_slot *st = &hp->base.stats->slot[hc->w->id];
    struct hp_req *rq = calloc(1, sizeof(*rq));
    struct http1_url url;
    const char *path = NULL;
    size_t path_len = 0;
    int rc;

    if (!rq) {
        hc_error(hc, 503, "out of memory", false);
        return;
    }
    rq->hc = hc;
    rq->cc.fd = -1;
    rq->method = h->method;
    rq->client_minor = h->version_minor;
    rq->c_head_bytes = h->head_len;
    rq->client_keepalive = (h->flags & HTTP1_F_KEEP_ALIVE) && !(h->flags & HTTP1_F_PROXY_CONN &&
                                                                 h->version_minor == 0);
    rq->t.kill = req_kill;
    snprintf(rq->method_str, sizeof(rq->method_str), "%.*s", (int)MIN(h->method_len, 23),
             h->method_str);
    rq->uri = dup_trunc(h->target, h->target_len, hp->log_uri_max_chars);
    const struct http1_hdr *ua = http1_find_hdr(h, "user-agent");
    if (ua)
        rq->ua = dup_trunc(ua->val, ua->vlen, 256);
    ev_init(&rq->timer, on_rsp_timeout);
    ev_init(&rq->tls_io, on_tls_io);
    task_start(&rq->t, hc->w, &hp->base);
    hc->req = rq;
    hc->nreq++;
    hc->state = HC_BUSY;
    rq->body_kind = h->body;
    rq->body_len = h->content_length;

    if (hc->full) {
        req_fail(rq, TR_UPSTREAM_NOT_AVAILABLE, 503, "too many connections");
        return;
    }
    if (h->form == HTTP1_FORM_AUTHORITY) {
        struct http1_hostport a;
        rq->kind = HR_CONNECT;
        if (http1_parse_authority(h->target, h->target_len, &a) < 0 || set_target(rq, &a) < 0) {
            req_fail(rq, TR_INVALID_CLIENT_PROTOCOL, 400, "bad CONNECT target");
            return;
        }
    } else if (h->form == HTTP1_FORM_ABSOLUTE) {
        rq->kind = HR_FORWARD;
        if (http1_parse_absolute_url(h->target, h->target_len, &url) < 0) {
            req_fail(rq, TR_INVALID_CLIENT_PROTOCOL, 400, "bad request target");
            return;
        }
        if (url.scheme == HTTP1_SCHEME_FTP) {
            req_fail(rq, TR_UNIMPLEMENTED_PROTOCOL, 501, "FTP over HTTP is not supported");
            return;
        }
        if (url.scheme != HTTP1_SCHEME_HTTP && url.scheme != HTTP1_SCHEME_HTTPS) {
            req_fail(rq, TR_UNIMPLEMENTED_PROTOCOL, 501, "unsupported URL scheme");
            return;
        }
        if (is_local_name(hp, url.host.name, url.host.len)) {
            rc = easy_proxy(rq, url.path, url.path_len, &url, &path, &path_len);
            if (rc < 0) {
                req_fail(rq, TR_INVALID_CLIENT_PROTOCOL, rc == -2 ? 501 : 404,
                         "not a proxy request");
                return;
            }
        } else {
            if (set_target(rq, &url.host) < 0) {
                req_fail(rq, TR_INVALID_CLIENT_PROTOCOL, 400, "bad request target");
                return;
            }
            path = url.path;
            path_len = url.path_len;
        }
        rq->tls = url.scheme == HTTP1_SCHEME_HTTPS;
        if (rq->tls && !hp->tls_client.ctx) {
            req_fail(rq, TR_INTERNAL_TLS_CLIENT_ERROR, 501, "https forwarding is not configured");
            return;
        }
    } else if (h->form == HTTP1_FORM_ORIGIN) {
        /* addressed to the proxy itself */
        rq->kind = HR_FORWARD;
        rc = easy_proxy(rq, h->target, h->target_len, &url, &path, &path_len);
        if (rc < 0) {
            req_fail(rq, TR_INVALID_CLIENT_PROTOCOL, rc == -2 ? 501 : 404, "not a proxy request");
            return;
        }
        rq->tls = url.scheme == HTTP1_SCHEME_HTTPS;
        if (rq->tls && !hp->tls_client.ctx) {
            req_fail(rq, TR_INTERNAL_TLS_CLIENT_ERROR, 501, "https forwarding is not configured");
            return;
        }
    } else {
        req_fail(rq, TR_INVALID_CLIENT_PROTOCOL, 400, "not a proxy request");
        return;
    }

    /* filters: destination port, host, and our own listeners */
    if (acl_forbids(acl_ports_check(&hp->base.dst_port_filter, rq->cc.target.port)) ||
        acl_forbids(acl_dst_host_check(&hp->base.dst_host_filter, &rq->cc.target))) {
        STAT_ADD(st->forbidden_dest, 1);
        req_fail(rq, TR_FORBIDDEN_BY_RULE, 403, "forbidden by the destination filter");
        return;
    }
    if (rq->cc.target.kind == HOST_IP) {
        union sockaddr_any sa;
        socklen_t len;
        ip_to_sockaddr(&rq->cc.target.ip, rq->cc.target.port, &sa, &len);
        if (listen_is_own(hp->base.obj.gen, &sa, &hc->local)) {
            req_fail(rq, TR_FORBIDDEN_BY_RULE, 403, "request loop: the target is this proxy");
            return;
        }
    }
    if (rq->kind == HR_FORWARD && build_req_head(rq, h, &url, path, path_len) < 0) {
        req_fail(rq, TR_INTERNAL_SERVER_ERROR, 503, "out of memory");
        return;
    }
    /* the head is consumed; what follows it (body, pipelined requests) stays, and an
     * empty buffer goes back to the pool: a tunnel or a wait holds none */
    buf_consume(hc->in, h->head_len);
    if (!buf_len(hc->in)) {
        buf_put(hc->w->bufs, hc->in);
        hc->in = NULL;
    }
    req_connect(rq);
}

/* ------------------------------------------------------ client connection */

static void hc_free(struct hp_conn *hc)
{
    struct worker *w = hc->w;
    struct server *s = &hc->srv->base;
    struct gen_pin *pin = hc->pin;

    ev_io_stop(w->loop, &hc->io);
    ev_timer_stop(w->loop, &hc->timer);
    conn_close(&hc->c);
    buf_put(w->bufs, hc->in);
    buf_put(w->bufs, hc->out);
    worker_conn_del(&hc->wc);
    server_conn_done(s);
    free(hc);
    worker_unpin(w, pin); /* may free the server: last */
}

static void hc_close(struct hp_conn *hc)
{
    if (hc->req) {
        struct hp_req *rq = hc->req;
        hc->req = NULL;
        task_set_reason(&rq->t, TR_CLOSED_BY_CLIENT);
        rq->stage = ST_FINISHED;
        req_log(rq);
        req_account(rq);
        task_finish(&rq->t);
        req_free(rq);
    }
    hc_free(hc);
}

static void hc_kill(struct wconn *wc, bool idle_only)
{
    struct hp_conn *hc = container_of(wc, struct hp_conn, wc);

    if (idle_only && hc->state != HC_HEAD)
        return; /* a running request finishes first; the connection closes after it */
    if (idle_only && hc->in && buf_len(hc->in))
        return; /* a request is arriving */
    hc_close(hc);
}

static void on_hc_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct hp_conn *hc = container_of(t, struct hp_conn, timer);

    if (hc->state == HC_HEAD && hc->in && buf_len(hc->in)) {
        hc_error(hc, 408, "request head not received in time", true);
        return;
    }
    hc_close(hc); /* idle keep-alive, error answer not taken, or TLS handshake stuck */
}

static void hc_tls_step(struct hp_conn *hc)
{
    const char *why = NULL;
    int rc = conn_tls_handshake(&hc->c, &why);

    if (rc == STEP_AGAIN) {
        hc_io_set(hc, hc->c.want == CO_WANT_WRITE ? EV_WRITE : EV_READ);
        return;
    }
    if (rc == STEP_ERROR) {
        log_debug("server '%s': client TLS handshake failed: %s", hc->srv->base.obj.name, why);
        hc_close(hc);
        return;
    }
    hc_wait_head(hc);
}

static void on_hc_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct hp_conn *hc = container_of(io, struct hp_conn, io);

    switch (hc->state) {
    case HC_TLS:
        hc_tls_step(hc);
        break;
    case HC_HEAD:
        hc_read_head(hc);
        break;
    case HC_ERROR:
        hc_flush_error(hc);
        break;
    case HC_LINGER:
        hc_linger(hc);
        break;
    default:
        hc_io_set(hc, 0);
        break;
    }
}

/* Between requests: parse what is buffered, else wait for more. */
static void hc_wait_head(struct hp_conn *hc)
{
    struct http_proxy *hp = hc->srv;

    hc->state = HC_HEAD;
    http1_scan_init(&hc->scan, hp->req_hdr_max);
    if (hc->in && buf_len(hc->in)) {
        hc_read_head(hc);
        return;
    }
    if (hc->w->offline) {
        hc_close(hc);
        return;
    }
    hc_io_set(hc, EV_READ);
    hc_timer_set(hc, hc->first ? secs(hp->req_hdr_timeout_ns) : secs(hp->pipeline_idle_ns));
}

static void hc_read_head(struct hp_conn *hc)
{
    struct http_proxy *hp = hc->srv;
    struct http1_hdr hdrs[HP_MAX_HDRS];
    struct http1_head h;

    for (;;) {
        if (hc->in && buf_len(hc->in)) {
            int rc = http1_parse_request(&hc->scan, buf_ptr(hc->in), buf_len(hc->in), &h, hdrs,
                                         HP_MAX_HDRS);
            if (rc > 0) {
                /* the read watcher stays until the relay takes the socket over (in
                 * req_send); should the client send before then, on_hc_io stops it */
                if ((hc->io.events & (EV_READ | EV_WRITE)) != EV_READ)
                    hc_io_set(hc, 0);
                ev_timer_stop(hc->w->loop, &hc->timer);
                req_start(hc, &h);
                return;
            }
            if (rc < 0) {
                hc_error(hc, (unsigned)http1_err_status(rc), http1_strerror(rc), true);
                return;
            }
        }
        if (!hc->in) {
            hc->in = buf_get(hc->w->bufs, BUF_SMALL_SIZE); /* grows for big heads */
            if (!hc->in) {
                hc_close(hc);
                return;
            }
        }
        if (buf_room(hc->in) == 0) {
            buf_compact(hc->in);
            if (buf_room(hc->in) == 0) {
                if (hc->in->size > hp->req_hdr_max) {
                    hc_error(hc, 431, "request head too large", true);
                    return;
                }
                struct buf *g = buf_grow(hc->w->bufs, hc->in,
                                         MIN((size_t)hc->in->size * 2, (size_t)hp->req_hdr_max + 1));
                if (!g) {
                    hc_close(hc);
                    return;
                }
                hc->in = g;
                http1_scan_init(&hc->scan, hp->req_hdr_max); /* the buffer moved */
            }
        }
        ssize_t n = conn_recv(&hc->c, buf_end(hc->in), buf_room(hc->in));
        if (n < 0 && errno == EAGAIN) {
            bool was_empty = buf_len(hc->in) == 0;
            hc_io_set(hc, hc->c.want == CO_WANT_WRITE ? EV_WRITE : EV_READ);
            if (was_empty) {
                /* idle connections hold no buffer */
                buf_put(hc->w->bufs, hc->in);
                hc->in = NULL;
            }
            return;
        }
        if (n <= 0) {
            hc_close(hc); /* closed between requests, or a reset */
            return;
        }
        if (buf_len(hc->in) == 0 && !hc->first)
            hc_timer_set(hc, secs(hp->req_hdr_timeout_ns));
        hc->in->tail += (uint32_t)n;
    }
}

static void hp_accept(struct server *s, struct worker *w, struct accepted *a)
{
    struct http_proxy *hp = hp_of(s);
    struct hp_conn *hc = calloc(1, sizeof(*hc));

    if (!hc) {
        close(a->fd);
        server_conn_done(s);
        return;
    }
    hc->srv = hp;
    hc->w = w;
    hc->pin = worker_pin(w);
    conn_init(&hc->c, a->fd);
    hc->peer = a->peer;
    hc->local = a->local;
    hc->first = true;
    hc->full = a->full;
    hc->wc.kill = hc_kill;
    worker_conn_add(w, &hc->wc);
    server_client_sockopts(s, a);
    ev_io_init(&hc->io, on_hc_io, a->fd, EV_READ);
    ev_init(&hc->timer, on_hc_timer);
    if (hp->tls_server.ctx) {
        if (conn_tls_server(&hc->c, hp->tls_server.ctx) < 0) {
            hc_close(hc);
            return;
        }
        hc->state = HC_TLS;
        hc_timer_set(hc, secs(hp->tls_server.handshake_timeout_ns));
        hc_tls_step(hc);
        return;
    }
    hc_wait_head(hc);
}

/* ------------------------------------------------------------------ config */

static int cp_local_names(struct conf_ctx *cx, const struct cnode *n, void *slot,
                          const struct conf_key *k)
{
    struct http_proxy *hp = container_of((char ***)slot, struct http_proxy, local_names);
    size_t cnt = n->type == CN_SEQ ? n->n : 1;

    hp->local_names = arena_alloc(cx->arena, cnt * sizeof(char *));
    if (!hp->local_names)
        return conf_fail(cx, n, "out of memory");
    for (size_t i = 0; i < cnt; i++)
        if (cp_host(cx, n->type == CN_SEQ ? n->items[i] : n, &hp->local_names[i], k) < 0)
            return -1;
    hp->nlocal = cnt;
    return 0;
}

#define HOFF(f) offsetof(struct http_proxy, f)
static const struct conf_key http_proxy_keys[] = {
    {"local_server_name", NULL, cp_local_names, HOFF(local_names)},
    {"auth_realm", NULL, cp_ascii, HOFF(auth_realm), "proxy"},
    {"tls_client", NULL, cp_tls_client, HOFF(tls_client), "{}"},
    {"tls_server", CK_ALIASES("tls"), cp_tls_server, HOFF(tls_server)},
    {"req_header_recv_timeout", NULL, cp_duration, HOFF(req_hdr_timeout_ns), "30s", 1, 3600000},
    {"rsp_header_recv_timeout", NULL, cp_duration, HOFF(rsp_hdr_timeout_ns), "60s", 1, 3600000},
    {"req_header_max_size", NULL, cp_size, HOFF(req_hdr_max), "64KiB", 1024, 16 << 20},
    {"rsp_header_max_size", NULL, cp_size, HOFF(rsp_hdr_max), "64KiB", 1024, 16 << 20},
    {"log_uri_max_chars", CK_ALIASES("uri_log_max_chars"), cp_u32, HOFF(log_uri_max_chars),
     "1024", 16, 1 << 20},
    {"pipeline_size", NULL, cp_u32, HOFF(pipeline_size), "10", 1, 1024},
    {"pipeline_read_idle_timeout", NULL, cp_duration, HOFF(pipeline_idle_ns), "5min", 1, 86400000},
    {"no_early_error_reply", NULL, cp_bool, HOFF(no_early_error_reply), "false"},
    {"allow_custom_host", NULL, cp_bool, HOFF(allow_custom_host), "true"},
    {"drop_default_port_in_host", NULL, cp_bool, HOFF(drop_default_port_in_host), "false"},
    {"body_line_max_length", NULL, cp_u32, HOFF(body_line_max), "8192", 64, 1 << 20},
    {"http_forward_upstream_keepalive", NULL, cp_http_keepalive, HOFF(up_keepalive), "true"},
    {"steal_forwarded_for", NULL, cp_bool, HOFF(steal_forwarded_for), "false"},
    {"append_forwarded_for", NULL, cp_forwarded_type, HOFF(append_forwarded), "none"},
    {"server_id", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"username_params", CK_ALIASES("username_params_to_escaper_addr"), NULL, 0, NULL, 0, 0,
     CK_F_UNSUPPORTED},
    {"ftp_client", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"tls_ticketer", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"http_forward_mark_upstream", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"echo_chained_info", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"untrusted_read_speed_limit", CK_ALIASES("untrusted_read_limit"), NULL, 0, NULL, 0, 0,
     CK_F_UNSUPPORTED},
    {"egress_path_selection_header", CK_ALIASES("path_selection_header"), NULL, 0, NULL, 0, 0,
     CK_F_UNSUPPORTED},
    {0},
};

static const struct conf_key *const hp_keys[] = {server_base_keys, server_listen_keys,
                                                 server_proxy_keys, http_proxy_keys, NULL};

static int hp_link(struct server *s, struct generation *g, struct conf_ctx *cx)
{
    return server_link_common(s, g, cx);
}

const struct server_ops server_http_proxy_ops = {
    .type = "http_proxy",
    .keys = hp_keys,
    .size = sizeof(struct http_proxy),
    .link = hp_link,
    .caps = SRV_CAP_TCP_LISTEN,
    .accept = hp_accept,
};
