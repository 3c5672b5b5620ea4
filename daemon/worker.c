/* Worker threads; see worker.h. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "registry.h"
#include "server.h"
#include "task.h"
#include "upool.h"
#include "worker.h"

#define ACCEPT_BATCH 64

struct wcall {
    struct list link;
    void (*fn)(struct worker *, void *);
    void *arg;
};

int worker_post(struct worker *w, void (*fn)(struct worker *, void *), void *arg)
{
    struct wcall *c = malloc(sizeof(*c));

    if (!c)
        return -1;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&w->q_lock);
    list_add_tail(&w->q, &c->link);
    pthread_mutex_unlock(&w->q_lock);
    ev_async_send(w->loop, &w->wake);
    return 0;
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = container_of(a, struct worker, wake);
    struct list todo, *pos, *tmp;

    LIST_INIT(&todo);
    pthread_mutex_lock(&w->q_lock);
    if (!list_empty(&w->q)) {
        todo = w->q;
        todo.next->prev = &todo;
        todo.prev->next = &todo;
        LIST_INIT(&w->q);
    }
    pthread_mutex_unlock(&w->q_lock);
    list_for_each_safe(pos, tmp, &todo) {
        struct wcall *c = container_of(pos, struct wcall, link);
        list_del(pos);
        c->fn(w, c->arg);
        free(c);
    }
}

uint64_t worker_rand(struct worker *w)
{
    /* xorshift64* */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ------------------------------------------------------------ generations */

struct gen_pin *worker_pin(struct worker *w)
{
    w->cur->holds++;
    return w->cur;
}

static void gen_detach(struct worker *w, struct generation *g)
{
    for (int k = 0; k < OBJ_NKINDS; k++)
        for (size_t i = 0; i < g->n[k]; i++) {
            struct obj *o = g->objs[k][i];
            const struct obj_ops *ops = obj_ops(o);
            if (ops->worker_detach)
                ops->worker_detach(o, w);
        }
}

void worker_unpin(struct worker *w, struct gen_pin *pin)
{
    if (--pin->holds)
        return;
    list_del(&pin->link);
    gen_detach(w, pin->gen);
    gen_unref(pin->gen);
    free(pin);
}

/* ------------------------------------------------------------- accepting */

static void on_accept(struct ev_loop *loop, ev_io *io, int revents);

static void listeners_free(struct ev_loop *loop, struct wlistener *ls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ev_io_stop(loop, &ls[i].io);
        listen_set_unref(ls[i].ls);
    }
    free(ls);
}

static void listeners_stop(struct worker *w)
{
    listeners_free(w->loop, w->ls, w->nls);
    w->ls = NULL;
    w->nls = 0;
    ev_timer_stop(w->loop, &w->accept_pause);
}

static void listeners_start(struct worker *w, struct generation *g)
{
    size_t n = 0;

    for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
        struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
        if (s->lset)
            n += s->lset->nfd / w->d->nworkers;
    }
    if (!n)
        return;
    w->ls = calloc(n, sizeof(*w->ls));
    if (!w->ls) {
        log_err("worker %u: out of memory: not accepting connections", w->id);
        return;
    }
    for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
        struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
        if (!s->lset)
            continue;
        for (unsigned j = w->id; j < s->lset->nfd; j += w->d->nworkers) {
            struct wlistener *l = &w->ls[w->nls++];
            l->w = w;
            l->srv = s;
            l->ls = s->lset;
            l->fd = s->lset->fds[j];
            listen_set_ref(l->ls);
            ev_io_init(&l->io, on_accept, l->fd, EV_READ);
            ev_io_start(w->loop, &l->io);
        }
    }
}

static bool sockaddr_is_wildcard(const union sockaddr_any *sa)
{
    if (sa->sa.sa_family == AF_INET)
        return sa->in.sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&sa->in6.sin6_addr);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct wlistener *l = container_of(io, struct wlistener, io);
    struct worker *w = l->w;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct accepted a;
        socklen_t len = sizeof(a.peer);

        memset(&a, 0, sizeof(a));
        a.fd = accept4(l->fd, &a.peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (a.fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            /* out of descriptors or memory: the listener stays readable, so stop
             * accepting on this worker for a moment instead of spinning */
            if (ev_now(loop) - w->last_accept_error > 1.0) {
                w->last_accept_error = ev_now(loop);
                log_err("server '%s': accept: %s (pausing 100ms)", l->srv->obj.name,
                        strerror(errno));
            }
            for (size_t j = 0; j < w->nls; j++)
                ev_io_stop(loop, &w->ls[j].io);
            ev_timer_set(&w->accept_pause, 0.1, 0.);
            ev_timer_start(loop, &w->accept_pause);
            return;
        }
        a.sock_peer = a.peer;
        if (sockaddr_is_wildcard(&l->ls->bound)) {
            len = sizeof(a.local);
            getsockname(a.fd, &a.local.sa, &len);
        } else {
            a.local = l->ls->bound;
        }
        server_accept(l->srv, w, &a);
    }
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = container_of(t, struct worker, accept_pause);

    for (size_t j = 0; j < w->nls; j++)
        ev_io_start(loop, &w->ls[j].io);
}

/* --------------------------------------------------------- main-thread calls */

static void do_switch(struct worker *w, void *arg)
{
    struct daemon *d = w->d;
    struct gen_pin *pin = calloc(1, sizeof(*pin)), *old = w->cur;
    struct wlistener *prev = w->ls;
    size_t nprev = w->nls;
    struct generation *g;

    pthread_mutex_lock(&d->gen_lock);
    g = d->gen;
    if ((old && old->gen == g) || !pin) {
        pthread_mutex_unlock(&d->gen_lock);
        if (!pin)
            log_err("worker %u: out of memory: cannot switch to generation %llu", w->id,
                    (unsigned long long)g->id);
        free(pin);
        return;
    }
    gen_ref(g);
    pin->gen = g;
    pin->holds = 1;
    list_add_tail(&w->pins, &pin->link);
    w->cur = pin;
    /* New watchers first: a socket kept across the reload never goes unwatched. The
     * references on the listening sets are taken under the lock: the main thread
     * drops the sets of a replaced generation under it. */
    w->ls = NULL;
    w->nls = 0;
    if (!w->offline)
        listeners_start(w, g);
    pthread_mutex_unlock(&d->gen_lock);
    if (!w->offline) {
        for (size_t i = 0; i < g->n[OBJ_SERVER]; i++) {
            struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
            if (s->ops->worker_attach)
                s->ops->worker_attach(s, w);
        }
    }
    listeners_free(w->loop, prev, nprev);
    if (old)
        worker_unpin(w, old);
}

void workers_switch_gen(struct daemon *d)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        if (worker_post(d->workers[i], do_switch, NULL) < 0)
            log_err("worker %u: out of memory: cannot switch generation", i);
}

void worker_conn_add(struct worker *w, struct wconn *c)
{
    list_add_tail(&w->conns, &c->link);
}

void worker_conn_del(struct wconn *c)
{
    list_del(&c->link);
}

static void kill_conns(struct worker *w, bool idle_only)
{
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, &w->conns)
        container_of(pos, struct wconn, link)->kill(container_of(pos, struct wconn, link),
                                                    idle_only);
}

static void do_offline(struct worker *w, void *arg)
{
    w->offline = true;
    listeners_stop(w);
    kill_conns(w, true);
}

void workers_go_offline(struct daemon *d)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        worker_post(d->workers[i], do_offline, NULL);
}

static void do_kill(struct worker *w, void *arg)
{
    struct list *pos, *tmp;

    kill_conns(w, false);
    list_for_each_safe(pos, tmp, &w->tasks) {
        struct task *t = container_of(pos, struct task, wlink);
        if (t->kill)
            t->kill(t, TR_CANCELED_AS_SERVER_QUIT);
    }
}

void workers_kill_tasks(struct daemon *d)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        worker_post(d->workers[i], do_kill, NULL);
}

static void do_stop(struct worker *w, void *arg)
{
    do_kill(w, NULL);
    do_offline(w, NULL);
    ev_break(w->loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------- lifecycle */

int worker_create(struct daemon *d, unsigned id, struct worker **out, char **err)
{
    struct worker *w = calloc(1, sizeof(*w));

    if (!w)
        return err_set(err, "out of memory");
    w->d = d;
    w->id = id;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!w->loop) {
        free(w);
        return err_set(err, "cannot create an event loop");
    }
    ev_set_userdata(w->loop, w);
    pthread_mutex_init(&w->q_lock, NULL);
    LIST_INIT(&w->q);
    LIST_INIT(&w->pins);
    LIST_INIT(&w->tasks);
    LIST_INIT(&w->conns);
    ev_async_init(&w->wake, on_wake);
    ev_timer_init(&w->accept_pause, on_accept_pause, 0., 0.);
    ev_async_start(w->loop, &w->wake);
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || !w->rng)
        w->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)id << 32) ^ now_mono_us();
    w->bufs = buf_pool_new();
    w->pipes = pipe_pool_new();
    w->upool = upool_new(w);
    if (!w->bufs || !w->pipes || !w->upool) {
        worker_free(w);
        return err_set(err, "out of memory");
    }
    *out = w;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    do_switch(w, NULL);
    ev_run(w->loop, 0);
    return NULL;
}

int worker_start(struct worker *w)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;

    pthread_attr_init(&attr);
    if (w->d->worker.thread_stack_size)
        pthread_attr_setstacksize(&attr, w->d->worker.thread_stack_size);
    /* workers never take signals: the main thread handles them */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc) {
        errno = rc;
        return -1;
    }
    w->started = true;
    char name[16];
    snprintf(name, sizeof(name), "proxyd-w%u", w->id);
    pthread_setname_np(w->thread, name);
    if (w->d->worker.sched_affinity) {
        /* a map pins only the workers it lists; `true` pins worker i to CPU i */
        int cpu = w->d->worker.cpus ? -1 : (int)w->id;
        if (w->d->worker.cpus && w->id < w->d->worker.ncpus)
            cpu = w->d->worker.cpus[w->id];
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            if (pthread_setaffinity_np(w->thread, sizeof(set), &set))
                log_warn("worker %u: cannot pin to CPU %d", w->id, cpu);
        }
    }
    return 0;
}

void worker_join(struct worker *w)
{
    if (w->started && worker_post(w, do_stop, NULL) == 0)
        pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
    struct list *pos, *tmp;

    if (!w)
        return;
    listeners_stop(w);
    list_for_each_safe(pos, tmp, &w->pins) {
        struct gen_pin *p = container_of(pos, struct gen_pin, link);
        list_del(pos);
        gen_detach(w, p->gen);
        gen_unref(p->gen);
        free(p);
    }
    list_for_each_safe(pos, tmp, &w->q) {
        list_del(pos);
        free(container_of(pos, struct wcall, link));
    }
    upool_free(w->upool);
    buf_pool_free(w->bufs);
    pipe_pool_free(w->pipes);
    ev_loop_destroy(w->loop);
    pthread_mutex_destroy(&w->q_lock);
    free(w);
}
