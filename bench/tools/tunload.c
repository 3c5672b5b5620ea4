/* tunload: a small load generator for proxy benchmarks (bench/run).
 *
 * Opens TCP connections to a target (a proxy, a TCP forwarder or the origin itself),
 * speaks the proxy's handshake (HTTP absolute-form request, HTTP CONNECT, SOCKS5
 * CONNECT, or nothing), optionally sends one HTTP/1.1 request with "Connection: close"
 * through it and reads the response to the end, then waits for the peer to close.
 *
 *   closed loop:  tunload -m connect -p 127.0.0.1:P -o 127.0.0.1:O -c 32 -d 10
 *   open loop:    tunload -m socks5 ... -r 2000 -c 512 -d 10
 *   one stream:   tunload -m http ... -u /1g -n 1 -c 1
 *   hold tunnels: tunload -m connect ... -u '' -H 9000 -c 200   (until SIGTERM)
 *   idle sink:    tunload -S -l 127.0.0.1:K                     (until SIGTERM)
 *
 * It prints one line of key=value pairs on stdout (see usage()). Everything is
 * non-blocking (epoll, edge-triggered), every connection has a deadline, reads use a
 * 256 KiB buffer, and the number of connections and recorded samples is bounded.
 * Linux only. Built by bench/run with: cc -O2 -pthread -o tunload tunload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 1024            /* handshake replies and response heads */
#define SCRATCH_SIZE (256 * 1024) /* body reads */
#define MAX_SAMPLES (32u << 20)  /* latency samples kept per thread */
#define MAX_THREADS 16
#define MAX_CONNS 100000

enum mode { M_DIRECT, M_HTTP, M_CONNECT, M_SOCKS5, M_TCP };
static const char *mode_names[] = {"direct", "http", "connect", "socks5", "tcp"};

enum state {
    S_FREE,          /* slot unused */
    S_BACKOFF,       /* slot waits after an error before the next connection */
    S_CONNECTING,    /* non-blocking connect in progress */
    S_SEND,          /* writing wbuf, then go to `next` */
    S_CONNECT_REPLY, /* reading the CONNECT reply head */
    S_SOCKS_METHOD,  /* reading the SOCKS5 method choice */
    S_SOCKS_REPLY,   /* reading the SOCKS5 reply */
    S_RESPONSE,      /* reading the HTTP response */
    S_HELD,          /* tunnel established and held idle */
};

enum err { E_CONNECT, E_HANDSHAKE, E_STATUS, E_SHORT, E_IO, E_TIMEOUT, E_NOCLOSE, E_COUNT };
static const char *err_names[] = {"connect", "handshake", "status", "short",
                                  "io", "timeout", "noclose"};

struct conn {
    int fd;
    uint8_t state, next;
    uint8_t done;        /* response complete, waiting for the peer's close */
    uint16_t hlen;       /* bytes in head[] */
    const char *wbuf;    /* what S_SEND writes */
    uint32_t wlen, woff;
    uint64_t t_start;    /* ns, the (scheduled) start */
    uint64_t t_done;     /* ns, response complete */
    uint64_t deadline;   /* ns */
    long long clen;      /* response Content-Length, -1 unknown */
    long long body;      /* body bytes seen */
    int status;
    char head[HEAD_MAX];
};

struct opts {
    enum mode mode;
    struct sockaddr_in target, origin;
    char origin_str[64];
    const char *path;     /* NULL or "" : no request (tunnel only) */
    int conc;             /* connections in flight (closed loop: exactly this many) */
    double rate;          /* > 0: open loop, connections started per second */
    long long total;      /* stop after this many connections (0: no limit) */
    double duration;      /* seconds (0: no limit) */
    double timeout;       /* seconds, per connection */
    int hold;             /* > 0: open this many tunnels and hold them */
    int threads;
    int sink;             /* sink mode */
    struct sockaddr_in listen;
    int verbose;
};

struct thr {
    int id;
    struct opts o;        /* this thread's share */
    int ep;
    struct conn *conns;
    int nconns;
    char *scratch;
    uint32_t *samples;
    size_t nsamples, samples_cap;
    long long started, ok, errs[E_COUNT], inflight, established, dropped;
    int ready, alive;     /* hold mode: all tunnels tried; alive at release */
    unsigned long long bytes;
    uint64_t t0, t_end, t_last;
    char req_http[512], req_origin[512], req_connect[256];
    size_t len_http, len_origin, len_connect;
    unsigned char socks_greet[3], socks_req[10];
    char first_err[160];
    pthread_t tid;
};

static volatile sig_atomic_t g_stop, g_release;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...);
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tunload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        g_release = 1;
    else
        g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: tunload -m MODE -p HOST:PORT [-o HOST:PORT] [options]\n"
"       tunload -S -l HOST:PORT\n"
"  -m MODE       direct|tcp (plain request to -p), http (absolute-form request to the\n"
"                proxy), connect (HTTP CONNECT), socks5 (SOCKS5 CONNECT, no auth)\n"
"  -p HOST:PORT  where connections go (IPv4)\n"
"  -o HOST:PORT  the origin named in requests, CONNECT and SOCKS5 (default: -p)\n"
"  -u PATH       request path, default /100b; '' sends no request (tunnel only)\n"
"  -c N          connections in flight, default 1 (closed loop: always N)\n"
"  -r RATE       open loop: start RATE connections/s (at most -c in flight);\n"
"                latency then counts from the scheduled start\n"
"  -n N          stop after N connections;  -d SECS  stop after SECS seconds\n"
"  -t SECS       per-connection timeout, default 10\n"
"  -T N          threads, default 1 (-c, -r, -n are split between them)\n"
"  -H N          open N tunnels (handshake only) with -c in flight, print\n"
"                'READY ok=..', hold them until SIGTERM/SIGUSR1, print 'HELD alive=..'\n"
"  -S -l H:P     sink: accept connections, read and drop, never answer (until SIGTERM)\n"
"  -v            print the first error of each thread on stderr\n"
"output (one line): mode ok err err_<kind>.. elapsed_s rate p50_ms p90_ms p99_ms\n"
"                   max_ms bytes gbit_s\n");
}

static void parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        die("bad address '%s' (want IPv4:PORT)", s);
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    if (*end || port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        die("bad address '%s' (want IPv4:PORT)", s);
    sa->sin_port = htons((uint16_t)port);
}

static double parse_num(const char *s, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0)
        die("bad %s '%s'", what, s);
    return v;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ------------------------------------------------------------------ client */

__attribute__((format(printf, 3, 4))) static void note_err(struct thr *t, enum err e,
                                                           const char *fmt, ...);
static void note_err(struct thr *t, enum err e, const char *fmt, ...)
{
    t->errs[e]++;
    if (!t->first_err[0]) {
        va_list ap;
        va_start(ap, fmt);
        int n = snprintf(t->first_err, sizeof t->first_err, "%s: ", err_names[e]);
        vsnprintf(t->first_err + n, sizeof t->first_err - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

static void record(struct thr *t, uint64_t lat_ns)
{
    if (t->nsamples == t->samples_cap) {
        if (t->samples_cap >= MAX_SAMPLES)
            return; /* bounded: later samples are not kept (counts still are) */
        size_t cap = t->samples_cap ? t->samples_cap * 2 : 65536;
        uint32_t *p = realloc(t->samples, cap * sizeof *p);
        if (!p)
            return;
        t->samples = p;
        t->samples_cap = cap;
    }
    uint64_t us = lat_ns / 1000;
    t->samples[t->nsamples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* Close a slot. abort: reset the connection (no TIME_WAIT on our side). */
static void conn_close(struct thr *t, struct conn *c, int abort)
{
    if (c->fd >= 0) {
        if (abort) {
            struct linger l = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
        t->inflight--;
    }
    c->state = S_FREE;
}

static void conn_fail(struct thr *t, struct conn *c, enum err e, uint64_t now)
{
    conn_close(t, c, 1);
    if (t->o.hold)
        return; /* hold mode does not retry */
    c->state = S_BACKOFF; /* closed loop: wait a little before the next try */
    c->deadline = now + 10 * 1000000ull;
    (void)e;
}

static void conn_success(struct thr *t, struct conn *c, uint64_t now)
{
    t->ok++;
    record(t, c->t_done - c->t_start);
    t->t_last = now;
    conn_close(t, c, 0);
}

static void start_send(struct conn *c, const void *buf, size_t len, enum state next)
{
    c->wbuf = buf;
    c->wlen = (uint32_t)len;
    c->woff = 0;
    c->state = S_SEND;
    c->next = (uint8_t)next;
    c->hlen = 0;
}

/* After the handshake: send the request, or the tunnel is established. */
static int tunnel_ready(struct thr *t, struct conn *c, uint64_t now)
{
    if (t->o.path && t->o.path[0]) {
        start_send(c, t->req_origin, t->len_origin, S_RESPONSE);
        return 1;
    }
    c->t_done = now;
    if (t->o.hold) {
        t->established++;
        record(t, now - c->t_start);
        c->state = S_HELD;
        c->hlen = 0;
        return 0;
    }
    /* tunnel only, not held: count it and close */
    conn_success(t, c, now);
    return 0;
}

static long long find_clen(const char *h, size_t n)
{
    static const char key[] = "\r\ncontent-length:";
    for (size_t i = 0; i + sizeof key - 1 <= n; i++) {
        if (strncasecmp(h + i, key, sizeof key - 1) == 0) {
            const char *p = h + i + sizeof key - 1;
            while (*p == ' ' || *p == '\t')
                p++;
            char *end;
            long long v = strtoll(p, &end, 10);
            return end == p || v < 0 ? -2 : v;
        }
    }
    return -1;
}

/* Parse a response head in c->head[0, hlen). Returns its length, 0 if incomplete,
 * -1 if malformed. */
static int parse_head(struct conn *c)
{
    char *e = memmem(c->head, c->hlen, "\r\n\r\n", 4);
    if (!e)
        return c->hlen >= HEAD_MAX ? -1 : 0;
    size_t n = (size_t)(e - c->head) + 4;
    if (n < 12 || memcmp(c->head, "HTTP/1.", 7) != 0)
        return -1;
    c->status = atoi(c->head + 9);
    c->head[n - 2] = 0; /* find_clen may scan up to here */
    c->clen = find_clen(c->head, n - 2);
    return (int)n;
}

/* Drive one connection as far as it goes. */
static void drive(struct thr *t, struct conn *c, uint32_t events, uint64_t now)
{
    for (;;) {
        switch (c->state) {
        case S_CONNECTING: {
            int err = 0;
            socklen_t l = sizeof err;
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) {
                note_err(t, E_CONNECT, "%s", strerror(err));
                conn_fail(t, c, E_CONNECT, now);
                return;
            }
            switch (t->o.mode) {
            case M_HTTP:
                start_send(c, t->req_http, t->len_http, S_RESPONSE);
                break;
            case M_CONNECT:
                start_send(c, t->req_connect, t->len_connect, S_CONNECT_REPLY);
                break;
            case M_SOCKS5:
                start_send(c, t->socks_greet, 3, S_SOCKS_METHOD);
                break;
            default:
                if (!tunnel_ready(t, c, now))
                    return;
            }
            break;
        }
        case S_SEND: {
            ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return;
                note_err(t, E_IO, "send: %s", strerror(errno));
                conn_fail(t, c, E_IO, now);
                return;
            }
            c->woff += (uint32_t)n;
            if (c->woff == c->wlen) {
                c->state = c->next;
                c->hlen = 0;
            }
            break;
        }
        case S_CONNECT_REPLY:
        case S_SOCKS_METHOD:
        case S_SOCKS_REPLY:
        case S_RESPONSE:
        case S_HELD: {
            char *dst;
            size_t room;
            int in_head = c->state != S_RESPONSE || (c->state == S_RESPONSE && c->status == 0);
            if (in_head) {
                dst = c->head + c->hlen;
                room = HEAD_MAX - c->hlen;
            } else {
                dst = t->scratch;
                room = SCRATCH_SIZE;
            }
            ssize_t n = recv(c->fd, dst, room, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return;
                if (c->state == S_HELD) {
                    t->dropped++;
                    conn_close(t, c, 1);
                    return;
                }
                note_err(t, E_IO, "recv: %s", strerror(errno));
                conn_fail(t, c, E_IO, now);
                return;
            }
            if (c->state == S_HELD) {
                if (n == 0) { /* the proxy or the sink closed the tunnel */
                    t->dropped++;
                    conn_close(t, c, 0);
                    return;
                }
                continue; /* unexpected data: drop it */
            }
            if (n == 0) { /* end of stream */
                if (c->state == S_RESPONSE && c->status == 200 &&
                    (c->clen < 0 || c->body == c->clen)) {
                    if (!c->done)
                        c->t_done = now;
                    conn_success(t, c, now);
                } else if (c->state == S_RESPONSE && c->status != 0 && c->status != 200) {
                    note_err(t, E_STATUS, "HTTP status %d", c->status);
                    conn_fail(t, c, E_STATUS, now);
                } else if (c->state == S_RESPONSE && c->status != 0) {
                    note_err(t, E_SHORT, "body %lld of %lld bytes", c->body, c->clen);
                    conn_fail(t, c, E_SHORT, now);
                } else {
                    note_err(t, c->state == S_RESPONSE ? E_SHORT : E_HANDSHAKE,
                             "closed in state %d after %u bytes", c->state, c->hlen);
                    conn_fail(t, c, c->state == S_RESPONSE ? E_SHORT : E_HANDSHAKE, now);
                }
                return;
            }
            if (!in_head) {
                c->body += n;
                t->bytes += (unsigned long long)n;
                if (c->clen >= 0 && c->body > c->clen) {
                    note_err(t, E_SHORT, "body longer than %lld", c->clen);
                    conn_fail(t, c, E_SHORT, now);
                    return;
                }
                if (!c->done && c->clen >= 0 && c->body == c->clen) {
                    c->done = 1; /* complete; now wait for the close */
                    c->t_done = now;
                }
                continue;
            }
            c->hlen = (uint16_t)(c->hlen + n);
            if (c->state == S_SOCKS_METHOD) {
                if (c->hlen < 2)
                    continue;
                if (c->hlen > 2 || (unsigned char)c->head[0] != 5 || c->head[1] != 0) {
                    note_err(t, E_HANDSHAKE, "SOCKS5 method reply %02x %02x",
                             (unsigned char)c->head[0], (unsigned char)c->head[1]);
                    conn_fail(t, c, E_HANDSHAKE, now);
                    return;
                }
                start_send(c, t->socks_req, 10, S_SOCKS_REPLY);
            } else if (c->state == S_SOCKS_REPLY) {
                if (c->hlen < 5)
                    continue;
                unsigned char *h = (unsigned char *)c->head;
                size_t need = h[3] == 1 ? 10 : h[3] == 4 ? 22 : h[3] == 3 ? 7u + h[4] : 0;
                if (h[0] != 5 || need == 0 || h[1] != 0) {
                    note_err(t, E_HANDSHAKE, "SOCKS5 reply %02x %02x atyp %02x", h[0], h[1],
                             h[3]);
                    conn_fail(t, c, E_HANDSHAKE, now);
                    return;
                }
                if (c->hlen < need)
                    continue;
                if (c->hlen > need) {
                    note_err(t, E_HANDSHAKE, "data after the SOCKS5 reply");
                    conn_fail(t, c, E_HANDSHAKE, now);
                    return;
                }
                if (!tunnel_ready(t, c, now))
                    return;
            } else if (c->state == S_CONNECT_REPLY) {
                int hl = parse_head(c);
                if (hl == 0)
                    continue;
                if (hl < 0 || c->status / 100 != 2 || hl != c->hlen) {
                    note_err(t, E_HANDSHAKE, "CONNECT answered: %.40s", c->head);
                    conn_fail(t, c, E_HANDSHAKE, now);
                    return;
                }
                c->status = 0;
                c->clen = -1;
                if (!tunnel_ready(t, c, now))
                    return;
            } else { /* S_RESPONSE head */
                int hl = parse_head(c);
                if (hl == 0)
                    continue;
                if (hl < 0) {
                    note_err(t, E_STATUS, "bad response head: %.40s", c->head);
                    conn_fail(t, c, E_STATUS, now);
                    return;
                }
                if (c->status == 0)
                    c->status = 1; /* parsed, unusual status */
                if (c->clen == -2) {
                    note_err(t, E_STATUS, "bad Content-Length");
                    conn_fail(t, c, E_STATUS, now);
                    return;
                }
                c->body = c->hlen - hl;
                t->bytes += (unsigned long long)c->body;
                if (c->clen >= 0 && c->body > c->clen) {
                    note_err(t, E_SHORT, "body longer than %lld", c->clen);
                    conn_fail(t, c, E_SHORT, now);
                    return;
                }
                if (c->clen >= 0 && c->body == c->clen) {
                    c->done = 1;
                    c->t_done = now;
                }
            }
            break;
        }
        default:
            return;
        }
    }
}

/* Start a connection in slot c. */
static void conn_start(struct thr *t, struct conn *c, uint64_t sched, uint64_t now)
{
    memset(c, 0, offsetof(struct conn, head));
    c->fd = -1;
    c->clen = -1;
    c->t_start = sched;
    c->deadline = now + (uint64_t)(t->o.timeout * 1e9);
    t->started++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_err(t, E_CONNECT, "socket: %s", strerror(errno));
        conn_fail(t, c, E_CONNECT, now);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    t->inflight++;
    if (connect(fd, (struct sockaddr *)&t->o.target, sizeof t->o.target) < 0 &&
        errno != EINPROGRESS) {
        note_err(t, E_CONNECT, "connect: %s", strerror(errno));
        conn_fail(t, c, E_CONNECT, now);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        note_err(t, E_CONNECT, "epoll_ctl: %s", strerror(errno));
        conn_fail(t, c, E_CONNECT, now);
        return;
    }
    c->state = S_CONNECTING;
}

static int may_start(struct thr *t, uint64_t now)
{
    if (g_stop)
        return 0;
    if (t->o.hold)
        return t->started < t->o.hold;
    if (t->o.total && t->started >= t->o.total)
        return 0;
    if (t->t_end && now >= t->t_end)
        return 0;
    return 1;
}

static void build_requests(struct thr *t)
{
    const struct opts *o = &t->o;
    const char *path = o->path && o->path[0] ? o->path : "/";
    t->len_http = (size_t)snprintf(t->req_http, sizeof t->req_http,
        "GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
        o->origin_str, path, o->origin_str);
    t->len_origin = (size_t)snprintf(t->req_origin, sizeof t->req_origin,
        "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, o->origin_str);
    t->len_connect = (size_t)snprintf(t->req_connect, sizeof t->req_connect,
        "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", o->origin_str, o->origin_str);
    if (o->mode == M_HTTP && (!o->path || !o->path[0]))
        die("-m http needs a request path");
    memcpy(t->socks_greet, "\x05\x01\x00", 3);
    t->socks_req[0] = 5;
    t->socks_req[1] = 1;
    t->socks_req[2] = 0;
    t->socks_req[3] = 1;
    memcpy(t->socks_req + 4, &o->origin.sin_addr, 4);
    memcpy(t->socks_req + 8, &o->origin.sin_port, 2);
}

static int count_alive(struct thr *t)
{
    int alive = 0;
    char b;
    for (int i = 0; i < t->nconns; i++) {
        struct conn *c = &t->conns[i];
        if (c->state != S_HELD || c->fd < 0)
            continue;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            alive++;
    }
    return alive;
}

static void *client_thread(void *arg)
{
    struct thr *t = arg;
    struct epoll_event evs[256];
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (t->ep < 0)
        die("epoll_create1: %s", strerror(errno));
    t->nconns = t->o.hold ? t->o.hold : t->o.conc;
    t->conns = calloc((size_t)t->nconns, sizeof *t->conns);
    t->scratch = malloc(SCRATCH_SIZE);
    if (!t->conns || !t->scratch)
        die("out of memory");
    for (int i = 0; i < t->nconns; i++)
        t->conns[i].fd = -1;
    build_requests(t);

    uint64_t now = now_ns();
    t->t0 = now;
    t->t_end = t->o.duration > 0 ? now + (uint64_t)(t->o.duration * 1e9) : 0;
    uint64_t interval = t->o.rate > 0 ? (uint64_t)(1e9 / t->o.rate) : 0;
    uint64_t next_start = now;
    uint64_t next_scan = now;
    int free_hint = 0;
    int ready_printed = 0;

    for (;;) {
        now = now_ns();
        /* start connections */
        if (t->o.hold) {
            /* open the tunnels, at most -c handshakes at a time */
            while (t->inflight - (t->established - t->dropped) < t->o.conc &&
                   free_hint < t->nconns &&
                   may_start(t, now)) {
                conn_start(t, &t->conns[free_hint++], now, now);
            }
        } else if (interval) {
            while (next_start <= now && may_start(t, now)) {
                struct conn *c = NULL;
                for (int i = 0; i < t->nconns; i++) {
                    int j = (free_hint + i) % t->nconns;
                    if (t->conns[j].state == S_FREE) {
                        c = &t->conns[j];
                        free_hint = j + 1;
                        break;
                    }
                }
                if (!c)
                    break; /* all -c slots busy: start late, latency shows it */
                conn_start(t, c, next_start, now);
                next_start += interval;
            }
        } else {
            for (int i = 0; i < t->nconns && may_start(t, now); i++)
                if (t->conns[i].state == S_FREE)
                    conn_start(t, &t->conns[i], now, now);
        }

        /* done? */
        int starting = may_start(t, now);
        if (t->o.hold) {
            if (!ready_printed && !starting &&
                t->inflight == t->established - t->dropped) {
                ready_printed = 1;
                t->t_last = now;
                __atomic_store_n(&t->ready, 1, __ATOMIC_RELEASE); /* main prints READY */
            }
            if (g_stop || g_release) {
                t->alive = count_alive(t);
                break;
            }
        } else if (!starting && (t->inflight == 0 || g_stop ||
                                 (t->t_end && now >= t->t_end))) {
            break;
        }

        /* timers: deadlines and back-off, every 5 ms at most */
        if (now >= next_scan) {
            next_scan = now + 5 * 1000000ull;
            for (int i = 0; i < t->nconns; i++) {
                struct conn *c = &t->conns[i];
                if (c->state == S_BACKOFF && now >= c->deadline) {
                    c->state = S_FREE;
                    if (!interval && !t->o.hold && may_start(t, now))
                        conn_start(t, c, now, now);
                } else if (c->state != S_FREE && c->state != S_BACKOFF &&
                           c->state != S_HELD && now >= c->deadline) {
                    if (c->done) {
                        /* answered in full, but the proxy did not close */
                        note_err(t, E_NOCLOSE, "response complete, no close");
                        conn_fail(t, c, E_NOCLOSE, now);
                    } else {
                        note_err(t, E_TIMEOUT, "state %d", c->state);
                        conn_fail(t, c, E_TIMEOUT, now);
                    }
                }
            }
        }

        int wait_ms = 5;
        if (interval && next_start > now) {
            uint64_t d = (next_start - now) / 1000000u;
            wait_ms = d < 5 ? (int)d : 5;
        }
        if (t->o.hold && ready_printed)
            wait_ms = 100;
        int n = epoll_wait(t->ep, evs, 256, wait_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != S_FREE && c->state != S_BACKOFF)
                drive(t, c, evs[i].events, now);
        }
    }

    now = now_ns();
    if (!t->o.hold && t->t_end && now > t->t_end && !t->o.total)
        now = t->t_end; /* the measured window is exactly -d */
    if (t->o.total || t->o.hold)
        now = t->t_last > t->t0 ? t->t_last : now;
    t->t_last = now;
    /* what is still in flight is cut off, not counted */
    for (int i = 0; i < t->nconns; i++) {
        struct conn *c = &t->conns[i];
        if (c->state == S_HELD && !t->o.hold)
            continue;
        if (c->fd >= 0)
            conn_close(t, c, !t->o.hold);
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *s, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)n);
    if (i >= n)
        i = n - 1;
    return s[i] / 1000.0;
}

static int run_client(struct opts *o)
{
    struct thr thr[MAX_THREADS];
    int nt = o->hold ? 1 : o->threads;
    memset(thr, 0, sizeof thr);
    for (int i = 0; i < nt; i++) {
        struct thr *t = &thr[i];
        t->id = i;
        t->o = *o;
        t->o.conc = o->conc / nt + (i < o->conc % nt);
        if (t->o.conc < 1)
            t->o.conc = 1;
        t->o.rate = o->rate / nt;
        if (o->total)
            t->o.total = o->total / nt + (i < o->total % nt);
        if (o->total && t->o.total == 0)
            continue;
        if (pthread_create(&t->tid, NULL, client_thread, t))
            die("pthread_create failed");
    }
    if (o->hold) {
        /* wait for the tunnels, report, hold until told, report again */
        struct thr *t = &thr[0];
        while (!g_stop && !g_release && !__atomic_load_n(&t->ready, __ATOMIC_ACQUIRE))
            usleep(10000);
        long long err = 0;
        for (int e = 0; e < E_COUNT; e++)
            err += t->errs[e];
        qsort(t->samples, t->nsamples, sizeof *t->samples, cmp_u32);
        double el = (double)(t->t_last - t->t0) / 1e9;
        printf("READY mode=%s ok=%lld err=%lld setup_s=%.3f rate=%.1f p50_ms=%.3f "
               "p99_ms=%.3f\n", mode_names[o->mode], t->established, err, el,
               el > 0 ? (double)t->established / el : 0,
               pct_ms(t->samples, t->nsamples, 50), pct_ms(t->samples, t->nsamples, 99));
        if (err && t->first_err[0])
            fprintf(stderr, "tunload: first error: %s\n", t->first_err);
        fflush(stdout);
        while (!g_stop && !g_release)
            usleep(10000); /* the signal may be taken by either thread */
        pthread_join(t->tid, NULL); /* it counts the live tunnels, then closes them */
        printf("HELD alive=%d of=%lld dropped=%lld\n", t->alive, t->established, t->dropped);
        fflush(stdout);
        return t->alive == t->established ? 0 : 1;
    }

    long long ok = 0, errs[E_COUNT] = {0}, err = 0;
    unsigned long long bytes = 0;
    uint64_t t0 = UINT64_MAX, t1 = 0;
    size_t ns = 0;
    int shown = 0;
    for (int i = 0; i < nt; i++) {
        struct thr *t = &thr[i];
        if (!t->tid)
            continue;
        pthread_join(t->tid, NULL);
        ok += t->ok;
        bytes += t->bytes;
        for (int e = 0; e < E_COUNT; e++) {
            errs[e] += t->errs[e];
            err += t->errs[e];
        }
        if (t->t0 < t0)
            t0 = t->t0;
        if (t->t_last > t1)
            t1 = t->t_last;
        ns += t->nsamples;
        if (t->first_err[0] && (o->verbose || !shown++))
            fprintf(stderr, "tunload: thread %d first error: %s\n", i, t->first_err);
    }
    uint32_t *all = malloc((ns ? ns : 1) * sizeof *all);
    if (!all)
        die("out of memory");
    size_t k = 0;
    for (int i = 0; i < nt; i++) {
        if (thr[i].nsamples)
            memcpy(all + k, thr[i].samples, thr[i].nsamples * sizeof *all);
        k += thr[i].nsamples;
    }
    qsort(all, ns, sizeof *all, cmp_u32);
    double el = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
    printf("mode=%s ok=%lld err=%lld", mode_names[o->mode], ok, err);
    for (int e = 0; e < E_COUNT; e++)
        printf(" err_%s=%lld", err_names[e], errs[e]);
    printf(" elapsed_s=%.3f rate=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f"
           " bytes=%llu gbit_s=%.3f\n",
           el, el > 0 ? (double)ok / el : 0, pct_ms(all, ns, 50), pct_ms(all, ns, 90),
           pct_ms(all, ns, 99), ns ? all[ns - 1] / 1000.0 : 0, bytes,
           el > 0 ? (double)bytes * 8 / el / 1e9 : 0);
    fflush(stdout);
    free(all);
    return ok > 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ sink */

static int run_sink(struct opts *o)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (ls < 0)
        die("socket: %s", strerror(errno));
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&o->listen, sizeof o->listen) < 0)
        die("bind: %s", strerror(errno));
    if (listen(ls, 4096) < 0)
        die("listen: %s", strerror(errno));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = ls};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0)
        die("epoll: %s", strerror(errno));
    char *buf = malloc(SCRATCH_SIZE);
    if (!buf)
        die("out of memory");
    printf("READY sink\n");
    fflush(stdout);
    long long accepted = 0, open = 0;
    struct epoll_event evs[256];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                            break;
                        if (errno == EMFILE || errno == ENFILE) {
                            fprintf(stderr, "tunload sink: accept: %s\n", strerror(errno));
                            break; /* level of the listener stays: retried next event */
                        }
                        die("accept: %s", strerror(errno));
                    }
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                              .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0) {
                        close(c);
                        continue;
                    }
                    accepted++;
                    open++;
                }
                continue;
            }
            for (;;) {
                ssize_t r = recv(fd, buf, SCRATCH_SIZE, 0);
                if (r > 0)
                    continue;
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                close(fd);
                open--;
                break;
            }
        }
    }
    printf("sink accepted=%lld open=%lld\n", accepted, open);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof o);
    o.mode = M_DIRECT;
    o.path = "/100b";
    o.conc = 1;
    o.timeout = 10;
    o.threads = 1;
    const char *target = NULL, *origin = NULL, *listen_at = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "m:p:o:u:c:r:n:d:t:T:H:Sl:vh")) != -1) {
        switch (opt) {
        case 'm': {
            int i;
            for (i = 0; i < 5 && strcmp(optarg, mode_names[i]); i++)
                ;
            if (i == 5)
                die("unknown mode '%s'", optarg);
            o.mode = (enum mode)i;
            break;
        }
        case 'p': target = optarg; break;
        case 'o': origin = optarg; break;
        case 'u': o.path = optarg; break;
        case 'c': o.conc = (int)parse_num(optarg, "-c"); break;
        case 'r': o.rate = parse_num(optarg, "-r"); break;
        case 'n': o.total = (long long)parse_num(optarg, "-n"); break;
        case 'd': o.duration = parse_num(optarg, "-d"); break;
        case 't': o.timeout = parse_num(optarg, "-t"); break;
        case 'T': o.threads = (int)parse_num(optarg, "-T"); break;
        case 'H': o.hold = (int)parse_num(optarg, "-H"); break;
        case 'S': o.sink = 1; break;
        case 'l': listen_at = optarg; break;
        case 'v': o.verbose = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait and pause return EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if (o.sink) {
        if (!listen_at)
            die("-S needs -l HOST:PORT");
        parse_addr(listen_at, &o.listen);
        return run_sink(&o);
    }
    if (!target)
        die("-p HOST:PORT is required (see -h)");
    parse_addr(target, &o.target);
    parse_addr(origin ? origin : target, &o.origin);
    snprintf(o.origin_str, sizeof o.origin_str, "%s", origin ? origin : target);
    if (o.conc < 1 || o.conc > MAX_CONNS || o.hold > MAX_CONNS)
        die("-c and -H must be within 1..%d", MAX_CONNS);
    if (o.threads < 1 || o.threads > MAX_THREADS)
        die("-T must be within 1..%d", MAX_THREADS);
    if (o.timeout <= 0)
        die("-t must be positive");
    if (!o.hold && !o.total && o.duration <= 0)
        die("give -n, -d or -H");
    if (o.hold && (o.mode == M_HTTP))
        die("-H needs a tunnel mode (connect, socks5, tcp, direct)");
    if (o.hold)
        o.path = "";
    return run_client(&o);
}
