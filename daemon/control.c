/* The control socket: a Unix stream socket on the main thread. One request per line,
 * one JSON reply per line (`pid` answers the bare pid, as g3proxy's text
 * pre-protocol does). Permissions on the socket are the security boundary. */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "ctlpath.h"
#include "daemon.h"
#include "confval.h"
#include "json.h"
#include "listener.h"
#include "log.h"
#include "registry.h"
#include "resolve.h"
#include "stats.h"
#include "worker.h"

#define CTL_LINE_MAX 1024
#define CTL_MAX_CONNS 64

struct control {
    struct daemon *d;           /* borrowed */
    int nsock;
    struct {
        int fd;
        ev_io io;
        char path[108];
    } sock[2];                  /* <group>.sock and <group>_<pid>.sock */
    struct list conns;
    unsigned nconns;
};

struct cconn {
    struct list link;
    struct control *c;          /* borrowed */
    int fd;
    ev_io io;
    ev_timer timer;
    char in[CTL_LINE_MAX + 2];
    size_t inlen;
    char *out;                  /* owned: pending reply */
    size_t outlen, outoff;
    double recv_timeout, send_timeout;
    bool close_after;
    struct ctl_job *job;        /* a command answered later (resolver query) */
};

/* A command that runs on a worker; its reply comes back through daemon_post(). */
struct ctl_job {
    struct daemon *d;
    struct cconn *cc;           /* NULL once the control connection went away */
    struct worker *w;
    struct gen_pin *pin;
    char resolver[256], domain[256];
    int strategy;
    char *reply;                /* owned */
};

static void cconn_close(struct cconn *cc)
{
    struct ev_loop *loop = cc->c->d->loop;

    if (cc->job)
        cc->job->cc = NULL; /* the job finishes on its own and drops its reply */
    ev_io_stop(loop, &cc->io);
    ev_timer_stop(loop, &cc->timer);
    close(cc->fd);
    list_del(&cc->link);
    cc->c->nconns--;
    free(cc->out);
    free(cc);
}

/* ---------------------------------------------------------------- replies */

static char *reply_error(const char *msg)
{
    struct jbuf jb;
    jb_init(&jb);
    jb_obj_open(&jb);
    jb_kbool(&jb, "ok", false);
    jb_kstr(&jb, "error", msg);
    jb_obj_close(&jb);
    return jb_take(&jb);
}

static char *reply_ok(const char *result)
{
    struct jbuf jb;
    jb_init(&jb);
    jb_obj_open(&jb);
    jb_kbool(&jb, "ok", true);
    if (result)
        jb_kstr(&jb, "result", result);
    jb_obj_close(&jb);
    return jb_take(&jb);
}

static bool kind_parse(const char *s, enum obj_kind *k)
{
    if (!strcmp(s, "server"))
        *k = OBJ_SERVER;
    else if (!strcmp(s, "escaper"))
        *k = OBJ_ESCAPER;
    else if (!strcmp(s, "resolver"))
        *k = OBJ_RESOLVER;
    else if (!strcmp(s, "user-group") || !strcmp(s, "user_group"))
        *k = OBJ_USER_GROUP;
    else
        return false;
    return true;
}

static char *cmd_list(struct daemon *d, enum obj_kind k)
{
    struct jbuf jb;

    jb_init(&jb);
    jb_obj_open(&jb);
    jb_kbool(&jb, "ok", true);
    jb_key(&jb, "names");
    jb_arr_open(&jb);
    for (size_t i = 0; d->gen && i < d->gen->n[k]; i++)
        jb_str(&jb, d->gen->objs[k][i]->name);
    jb_arr_close(&jb);
    jb_obj_close(&jb);
    return jb_take(&jb);
}

static bool server_online(struct daemon *d, const struct server *s)
{
    return d->state == D_RUNNING || d->state == D_OFFLINE_DELAY ? s->lset || !s->listen.set : false;
}

static char *cmd_server_status(struct daemon *d, const char *name)
{
    struct server *s = (struct server *)gen_find(d->gen, OBJ_SERVER, name);
    struct server_stats_slot sum;
    struct jbuf jb;

    if (!s)
        return reply_error("no such server");
    server_stats_sum(s->stats, &sum);
    jb_init(&jb);
    jb_obj_open(&jb);
    jb_kbool(&jb, "ok", true);
    jb_kbool(&jb, "online", server_online(d, s));
    jb_ku64(&jb, "alive_tasks", sum.task_alive);
    jb_ku64(&jb, "total_conn", sum.conn_total);
    jb_ku64(&jb, "total_task", sum.task_total);
    jb_obj_close(&jb);
    return jb_take(&jb);
}

static const char *state_name(enum daemon_state st)
{
    switch (st) {
    case D_RUNNING: return "running";
    case D_OFFLINE_DELAY: return "offline-delay";
    case D_DRAINING: return "draining";
    case D_QUITTING: return "quitting";
    }
    return "?";
}

static char *cmd_stats(struct daemon *d)
{
    struct jbuf jb;
    struct generation *g = d->gen;

    jb_init(&jb);
    jb_obj_open(&jb);
    jb_kbool(&jb, "ok", true);
    jb_kstr(&jb, "version", PROXYD_VERSION);
    jb_ku64(&jb, "pid", (uint64_t)getpid());
    jb_kstr(&jb, "state", state_name(d->state));
    jb_ku64(&jb, "uptime", (now_wall_us() - d->start_wall_us) / 1000000);
    jb_ku64(&jb, "generation", g ? g->id : 0);
    jb_ku64(&jb, "workers", d->nworkers);
    jb_ku64(&jb, "tasks_alive", daemon_alive_tasks(d));
    jb_ku64(&jb, "log_dropped", evlog_dropped(d->evlog));
    jb_key(&jb, "servers");
    jb_arr_open(&jb);
    for (size_t i = 0; g && i < g->n[OBJ_SERVER]; i++) {
        struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
        struct server_stats_slot t;
        server_stats_sum(s->stats, &t);
        jb_obj_open(&jb);
        jb_kstr(&jb, "name", s->obj.name);
        jb_kstr(&jb, "type", s->obj.type);
        jb_kbool(&jb, "online", server_online(d, s));
        if (s->lset) {
            char addr[80];
            jb_kstr(&jb, "listen", sockaddr_str(&s->lset->bound, addr, sizeof(addr)));
        }
        jb_ku64(&jb, "conn_total", t.conn_total);
        jb_ku64(&jb, "conn_alive", (uint64_t)MAX(0, __atomic_load_n(&s->stats->conn_alive, __ATOMIC_RELAXED)));
        jb_ku64(&jb, "task_total", t.task_total);
        jb_ku64(&jb, "task_alive", t.task_alive);
        jb_ku64(&jb, "forbidden_auth", t.forbidden_auth);
        jb_ku64(&jb, "forbidden_dest", t.forbidden_dest);
        jb_ku64(&jb, "forbidden_ingress", t.forbidden_ingress);
        jb_ku64(&jb, "refused_full", t.refused_full);
        jb_ku64(&jb, "in_bytes", t.in_bytes);
        jb_ku64(&jb, "out_bytes", t.out_bytes);
        jb_obj_close(&jb);
    }
    jb_arr_close(&jb);
    jb_key(&jb, "escapers");
    jb_arr_open(&jb);
    for (size_t i = 0; g && i < g->n[OBJ_ESCAPER]; i++) {
        struct escaper *e = (struct escaper *)g->objs[OBJ_ESCAPER][i];
        struct escaper_stats_slot t;
        escaper_stats_sum(e->stats, &t);
        jb_obj_open(&jb);
        jb_kstr(&jb, "name", e->obj.name);
        jb_kstr(&jb, "type", e->obj.type);
        jb_ku64(&jb, "task_total", t.task_total);
        jb_ku64(&jb, "conn_attempt", t.conn_attempt);
        jb_ku64(&jb, "conn_established", t.conn_established);
        jb_ku64(&jb, "conn_error", t.conn_error);
        jb_ku64(&jb, "conn_timeout", t.conn_timeout);
        jb_ku64(&jb, "forbidden_ip", t.forbidden_ip);
        jb_ku64(&jb, "in_bytes", t.in_bytes);
        jb_ku64(&jb, "out_bytes", t.out_bytes);
        jb_obj_close(&jb);
    }
    jb_arr_close(&jb);
    jb_obj_close(&jb);
    return jb_take(&jb);
}

static char *cmd_check(struct daemon *d)
{
    struct spec_list specs = {0};
    struct generation *g = NULL;
    char *err = NULL, *r;

    if (daemon_load_config(d, &specs, false, &err) == 0)
        g = gen_build(d, &specs, NULL, false, &err);
    spec_list_free(&specs);
    if (g) {
        gen_unref(g);
        return reply_ok("the configuration on disk is valid");
    }
    r = reply_error(err ? err : "invalid configuration");
    free(err);
    return r;
}

/* reload (kind < 0) or reload-KIND NAME */
static char *cmd_reload(struct daemon *d, int kind, const char *name)
{
    char *err = NULL, *r;
    int rc = kind < 0 ? daemon_reload_all(d, &err)
                      : daemon_reload_one(d, (enum obj_kind)kind, name, &err);

    if (rc == 0)
        return reply_ok("success");
    r = reply_error(err ? err : "reload failed");
    free(err);
    return r;
}

static void cconn_step(struct cconn *cc);
static void queue_reply(struct cconn *cc, char *reply);

/* Main thread: the worker answered. */
static void job_finish(void *arg)
{
    struct ctl_job *j = arg;

    if (j->cc) {
        j->cc->job = NULL;
        queue_reply(j->cc, j->reply ? j->reply : reply_error("out of memory"));
        j->reply = NULL;
        cconn_step(j->cc);
    }
    free(j->reply);
    free(j);
}

/* Worker: the query finished. */
static void job_resolved(void *arg, int err, const struct ip_addr *ips, size_t n)
{
    struct ctl_job *j = arg;
    struct jbuf jb;
    char ip[64];

    jb_init(&jb);
    jb_obj_open(&jb);
    if (err) {
        jb_kbool(&jb, "ok", false);
        jb_kstr(&jb, "error", resolve_strerror(err));
        jb_kbool(&jb, "query_failed", true);
    } else {
        jb_kbool(&jb, "ok", true);
        jb_key(&jb, "ips");
        jb_arr_open(&jb);
        for (size_t i = 0; i < n; i++)
            jb_str(&jb, ip_str(&ips[i], ip, sizeof(ip)));
        jb_arr_close(&jb);
    }
    jb_obj_close(&jb);
    j->reply = jb_take(&jb);
    if (j->pin)
        worker_unpin(j->w, j->pin);
    j->pin = NULL;
    if (daemon_post(j->d, job_finish, j) < 0) {
        free(j->reply); /* cannot reach the main thread: drop it */
        free(j);
    }
}

/* Worker: look the resolver up in the worker's own current generation and query. */
static void job_start(struct worker *w, void *arg)
{
    struct ctl_job *j = arg;
    struct gen_pin *pin = w->cur ? worker_pin(w) : NULL;
    struct resolver *r = pin ? (struct resolver *)gen_find(pin->gen, OBJ_RESOLVER, j->resolver)
                             : NULL;

    j->pin = pin;
    if (!r) {
        job_resolved(j, RESOLVE_E_INTERNAL, NULL, 0);
        return;
    }
    if (resolve_control_query(r, w, j->domain, j->strategy, job_resolved, j) < 0)
        job_resolved(j, RESOLVE_E_INTERNAL, NULL, 0);
}

static int strategy_parse(const char *s)
{
    char n[32];
    size_t j = 0;

    for (; *s && j + 1 < sizeof(n); s++)
        if (*s != '_' && *s != '-')
            n[j++] = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
    n[j] = 0;
    if (!strcmp(n, "ipv4first"))
        return RQ_IPV4_FIRST;
    if (!strcmp(n, "ipv6first"))
        return RQ_IPV6_FIRST;
    if (!strcmp(n, "ipv4only"))
        return RQ_IPV4_ONLY;
    if (!strcmp(n, "ipv6only"))
        return RQ_IPV6_ONLY;
    return -1;
}

/* resolver NAME query DOMAIN [STRATEGY]: NULL when the reply comes later. */
static char *cmd_resolver_query(struct cconn *cc, char **argv, int argc)
{
    struct daemon *d = cc->c->d;
    struct resolver *r = (struct resolver *)gen_find(d->gen, OBJ_RESOLVER, argv[1]);
    int strategy = RQ_IPV4_FIRST;
    struct ctl_job *j;

    if (!r)
        return reply_error("no such resolver");
    if (argc == 5 && (strategy = strategy_parse(argv[4])) < 0)
        return reply_error("invalid query strategy");
    if (strlen(argv[3]) >= sizeof(j->domain) || domain_check(argv[3], strlen(argv[3])) < 0)
        return reply_error("invalid domain name");
    if (!d->nworkers || d->state == D_QUITTING)
        return reply_error("no worker to run the query");
    j = calloc(1, sizeof(*j));
    if (!j)
        return reply_error("out of memory");
    j->d = d;
    j->cc = cc;
    j->w = d->workers[0];
    j->strategy = strategy;
    snprintf(j->resolver, sizeof(j->resolver), "%s", argv[1]);
    for (size_t i = 0; argv[3][i] && i + 1 < sizeof(j->domain); i++)
        j->domain[i] = (char)(argv[3][i] >= 'A' && argv[3][i] <= 'Z' ? argv[3][i] + 32 : argv[3][i]);
    if (worker_post(j->w, job_start, j) < 0) {
        free(j);
        return reply_error("out of memory");
    }
    cc->job = j;
    return NULL;
}

/* Split line into at most max words (in place). */
static int split(char *line, char **argv, int max)
{
    int n = 0;
    char *save = NULL;

    for (char *t = strtok_r(line, " \t\r", &save); t && n < max; t = strtok_r(NULL, " \t\r", &save))
        argv[n++] = t;
    return n;
}

/* Execute one request line. Returns the reply (malloc'd, without newline) or NULL to
 * send nothing. */
static char *ctl_exec(struct cconn *cc, char *line)
{
    struct daemon *d = cc->c->d;
    char *argv[8];
    int argc = split(line, argv, 8);
    enum obj_kind k;

    if (argc == 0)
        return NULL;
    for (char *p = argv[0]; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);

    if (!strcmp(argv[0], "pid") && argc == 1) {
        char *s;
        return asprintf(&s, "%d", (int)getpid()) < 0 ? NULL : s;
    }
    if (!strcmp(argv[0], "quit")) {
        cc->close_after = true;
        return NULL;
    }
    if (!strcmp(argv[0], "set") && argc == 3) {
        char *end, *s;
        unsigned long v = strtoul(argv[2], &end, 10);
        if (*end || v == 0 || v > 3600)
            return asprintf(&s, "Error: invalid u64 value for %s", argv[1]) < 0 ? NULL : s;
        if (!strcmp(argv[1], "recv_timeout"))
            cc->recv_timeout = (double)v;
        else if (!strcmp(argv[1], "send_timeout"))
            cc->send_timeout = (double)v;
        else
            return asprintf(&s, "Error: invalid key %s", argv[1]) < 0 ? NULL : s;
        return asprintf(&s, "%s = %lu", argv[1], v) < 0 ? NULL : s;
    }
    if (!strcmp(argv[0], "capnp"))
        return reply_error("Cap'n Proto RPC is not supported: use proxyctl");
    if (!strcmp(argv[0], "version") && argc == 1) {
        struct jbuf jb;
        jb_init(&jb);
        jb_obj_open(&jb);
        jb_kbool(&jb, "ok", true);
        jb_kstr(&jb, "version", PROXYD_VERSION);
        jb_obj_close(&jb);
        return jb_take(&jb);
    }
    if (!strcmp(argv[0], "offline") && argc == 1) {
        daemon_offline(d);
        return reply_ok("success");
    }
    if (!strcmp(argv[0], "list") && argc == 2 && kind_parse(argv[1], &k))
        return cmd_list(d, k);
    if (!strcmp(argv[0], "reload") && argc == 1)
        return cmd_reload(d, -1, NULL);
    if (!strncmp(argv[0], "reload-", 7) && argc == 2 && kind_parse(argv[0] + 7, &k))
        return cmd_reload(d, (int)k, argv[1]);
    if (!strcmp(argv[0], "server") && argc == 3 && !strcmp(argv[2], "status"))
        return cmd_server_status(d, argv[1]);
    if (!strcmp(argv[0], "stats") && argc == 1)
        return cmd_stats(d);
    if (!strcmp(argv[0], "resolver") && (argc == 4 || argc == 5) && !strcmp(argv[2], "query"))
        return cmd_resolver_query(cc, argv, argc);
    if (!strcmp(argv[0], "check") && argc == 1)
        return cmd_check(d);
    return reply_error("unknown command");
}

/* ------------------------------------------------------------------- I/O */

static void on_cconn(struct ev_loop *loop, ev_io *io, int revents);

static void arm(struct cconn *cc, int events, double timeout)
{
    struct ev_loop *loop = cc->c->d->loop;

    ev_io_stop(loop, &cc->io);
    if (events) {
        ev_io_set(&cc->io, cc->fd, events);
        ev_io_start(loop, &cc->io);
    }
    ev_timer_stop(loop, &cc->timer);
    ev_timer_set(&cc->timer, timeout, 0.);
    ev_timer_start(loop, &cc->timer);
}

static void queue_reply(struct cconn *cc, char *reply)
{
    size_t n;
    char *out;

    if (!reply)
        return;
    n = strlen(reply);
    out = realloc(reply, n + 2);
    if (!out) {
        free(reply);
        cc->close_after = true;
        return;
    }
    out[n] = '\n';
    out[n + 1] = 0;
    cc->out = out;
    cc->outlen = n + 1;
    cc->outoff = 0;
}

/* Handle complete lines in the input; queue replies. */
static void process_input(struct cconn *cc)
{
    char *nl;

    while (!cc->out && !cc->job && !cc->close_after && (nl = memchr(cc->in, '\n', cc->inlen))) {
        size_t used = (size_t)(nl - cc->in) + 1;
        *nl = 0;
        char *reply = ctl_exec(cc, cc->in);
        memmove(cc->in, cc->in + used, cc->inlen - used);
        cc->inlen -= used;
        queue_reply(cc, reply);
    }
    if (!cc->out && !cc->close_after && cc->inlen > CTL_LINE_MAX) {
        queue_reply(cc, reply_error("request line too long"));
        cc->close_after = true;
    }
}

static void cconn_step(struct cconn *cc)
{
    for (;;) {
        if (cc->out) {
            ssize_t w = send(cc->fd, cc->out + cc->outoff, cc->outlen - cc->outoff,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                arm(cc, EV_WRITE, cc->send_timeout);
                return;
            }
            if (w < 0) {
                cconn_close(cc);
                return;
            }
            cc->outoff += (size_t)w;
            if (cc->outoff < cc->outlen)
                continue;
            free(cc->out);
            cc->out = NULL;
        }
        if (cc->close_after) {
            cconn_close(cc);
            return;
        }
        process_input(cc);
        if (cc->out || cc->close_after)
            continue;
        if (cc->job) {
            /* the answer comes from a worker; the timer still bounds the wait */
            arm(cc, 0, cc->recv_timeout);
            return;
        }
        ssize_t r = recv(cc->fd, cc->in + cc->inlen, sizeof(cc->in) - cc->inlen, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            arm(cc, EV_READ, cc->recv_timeout);
            return;
        }
        if (r <= 0) {
            cconn_close(cc);
            return;
        }
        cc->inlen += (size_t)r;
    }
}

static void on_cconn(struct ev_loop *loop, ev_io *io, int revents)
{
    cconn_step(container_of(io, struct cconn, io));
}

static void on_cconn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    cconn_close(container_of(t, struct cconn, timer));
}

static void on_control_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct control *c = ev_userdata(loop) ? ((struct daemon *)ev_userdata(loop))->control : NULL;
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct cconn *cc;

    if (fd < 0)
        return;
    if (!c || c->nconns >= CTL_MAX_CONNS || !(cc = calloc(1, sizeof(*cc)))) {
        close(fd);
        return;
    }
    cc->c = c;
    cc->fd = fd;
    cc->recv_timeout = (double)c->d->controller.recv_timeout_ns / 1e9;
    cc->send_timeout = (double)c->d->controller.send_timeout_ns / 1e9;
    if (cc->recv_timeout <= 0)
        cc->recv_timeout = 30;
    if (cc->send_timeout <= 0)
        cc->send_timeout = 1;
    list_add_tail(&c->conns, &cc->link);
    c->nconns++;
    ev_io_init(&cc->io, on_cconn, fd, EV_READ);
    ev_timer_init(&cc->timer, on_cconn_timeout, cc->recv_timeout, 0.);
    cconn_step(cc);
}

/* ---------------------------------------------------------------- setup */

/* A socket file is stale when nobody answers on it. */
static bool socket_alive(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool alive;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    alive = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return alive;
}

static int bind_one(struct control *c, const char *path, char **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return err_set(err, "control socket path too long: %s", path);
    if (socket_alive(path))
        return err_set(err, "another proxyd answers on %s (use -G to run several)", path);
    unlink(path);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        err_set(err, "control socket %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    chmod(path, 0660);
    /* members of group proxyd may steer the daemon */
    struct group *gr = getgrnam("proxyd");
    if (gr && chown(path, (uid_t)-1, gr->gr_gid) < 0)
        log_debug("control socket %s: cannot give it to group proxyd", path);
    int i = c->nsock++;
    c->sock[i].fd = fd;
    snprintf(c->sock[i].path, sizeof(c->sock[i].path), "%s", path);
    ev_io_init(&c->sock[i].io, on_control_accept, fd, EV_READ);
    ev_io_start(c->d->loop, &c->sock[i].io);
    return 0;
}

static int pick_dir(struct daemon *d, char *dir, size_t len, char **err)
{
    char cand[4][256];
    size_t n;

    if (d->opts.control_dir) {
        snprintf(dir, len, "%s", d->opts.control_dir);
        if (mkdir(dir, 0750) < 0 && errno != EEXIST)
            return err_set(err, "control directory %s: %s", dir, strerror(errno));
        return 0;
    }
    n = ctl_dir_candidates(cand, 4);
    for (size_t i = 0; i < n; i++) {
        /* /tmp/proxyd-$UID is private to its user */
        bool shared = strncmp(cand[i], "/tmp/", 5) == 0;
        struct stat st;
        if (mkdir(cand[i], shared ? 0700 : 0750) < 0 && errno != EEXIST)
            continue;
        /* anybody may create /tmp/proxyd-$UID first: use it only if it is ours and
         * nobody else can write in it */
        if (shared && (lstat(cand[i], &st) < 0 || !S_ISDIR(st.st_mode) ||
                       st.st_uid != geteuid() || (st.st_mode & 022)))
            continue;
        if (access(cand[i], W_OK | X_OK) == 0) {
            snprintf(dir, len, "%s", cand[i]);
            return 0;
        }
    }
    return err_set(err, "no writable control directory (tried $RUNTIME_DIRECTORY, /run/proxyd, "
                        "$XDG_RUNTIME_DIR/proxyd, /tmp/proxyd-$UID); use -C DIR");
}

int control_open(struct daemon *d, char **err)
{
    struct control *c = calloc(1, sizeof(*c));
    char dir[256], path[512];

    if (!c)
        return err_set(err, "out of memory");
    c->d = d;
    LIST_INIT(&c->conns);
    d->control = c;
    if (pick_dir(d, dir, sizeof(dir), err) < 0)
        return -1;
    if (ctl_socket_path(path, sizeof(path), dir, d->opts.group, 0) < 0 || bind_one(c, path, err) < 0)
        return -1;
    if (ctl_socket_path(path, sizeof(path), dir, d->opts.group, getpid()) < 0 ||
        bind_one(c, path, err) < 0)
        return -1;
    log_info("control sockets: %s, %s", c->sock[0].path, c->sock[1].path);
    return 0;
}

void control_close(struct control *c)
{
    struct list *pos, *tmp;

    if (!c)
        return;
    list_for_each_safe(pos, tmp, &c->conns)
        cconn_close(container_of(pos, struct cconn, link));
    for (int i = 0; i < c->nsock; i++) {
        ev_io_stop(c->d->loop, &c->sock[i].io);
        close(c->sock[i].fd);
        unlink(c->sock[i].path);
    }
    free(c);
}
