/* The main thread: signals, reloads, graceful offline, messages from workers. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "conf.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "stats.h"
#include "sdnotify.h"
#include "worker.h"

struct mcall {
    struct list link;
    void (*fn)(void *);
    void *arg;
};

int daemon_post(struct daemon *d, void (*fn)(void *), void *arg)
{
    struct mcall *c = malloc(sizeof(*c));

    if (!c)
        return -1;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&d->mq_lock);
    list_add_tail(&d->mq, &c->link);
    pthread_mutex_unlock(&d->mq_lock);
    ev_async_send(d->loop, &d->mq_wake);
    return 0;
}

/* Run everything posted so far (also used at exit to drain the queue). */
static void mq_run(struct daemon *d)
{
    for (;;) {
        struct mcall *c = NULL;
        pthread_mutex_lock(&d->mq_lock);
        if (!list_empty(&d->mq)) {
            c = container_of(d->mq.next, struct mcall, link);
            list_del(&c->link);
        }
        pthread_mutex_unlock(&d->mq_lock);
        if (!c)
            return;
        c->fn(c->arg);
        free(c);
    }
}

static void on_mq(struct ev_loop *loop, ev_async *a, int revents)
{
    mq_run(container_of(a, struct daemon, mq_wake));
}

uint64_t daemon_alive_tasks(struct daemon *d)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < d->nworkers; i++)
        n += STAT_GET(d->workers[i]->ntasks);
    return n;
}

/* Drop the listening sockets a generation holds (it is no longer current, or we go
 * offline). Under gen_lock: a worker switching generations takes its references on
 * the new generation's sets under the same lock. */
static void gen_release_listeners(struct generation *g)
{
    for (size_t i = 0; g && i < g->n[OBJ_SERVER]; i++) {
        struct server *s = (struct server *)g->objs[OBJ_SERVER][i];
        if (s->lset) {
            listen_set_unref(s->lset);
            s->lset = NULL;
        }
    }
}

/* Make g current: workers switch to it, the old one lives on while tasks use it. */
void daemon_install(struct daemon *d, struct generation *g)
{
    struct generation *old;

    g->id = ++d->gen_seq;
    pthread_mutex_lock(&d->gen_lock);
    old = d->gen;
    d->gen = g;
    gen_release_listeners(old);
    pthread_mutex_unlock(&d->gen_lock);
    workers_switch_gen(d);
    if (old)
        gen_unref(old);
}

int daemon_reload_all(struct daemon *d, char **err)
{
    struct spec_list specs = {0};
    struct generation *g;

    if (d->state != D_RUNNING)
        return err_set(err, "the daemon is going offline");
    sd_notifyf(d, "RELOADING=1\nSTATUS=reloading");
    if (daemon_load_config(d, &specs, false, err) < 0) {
        spec_list_free(&specs);
        sd_notifyf(d, "READY=1\nSTATUS=reload failed, running generation %llu",
                   (unsigned long long)d->gen_seq);
        log_err("reload failed: %s", *err);
        return -1;
    }
    g = gen_build(d, &specs, d->gen, true, err);
    spec_list_free(&specs);
    if (!g) {
        sd_notifyf(d, "READY=1\nSTATUS=reload failed, running generation %llu",
                   (unsigned long long)d->gen_seq);
        log_err("reload failed: %s", *err);
        return -1;
    }
    daemon_install(d, g);
    sd_notifyf(d, "READY=1\nSTATUS=running generation %llu", (unsigned long long)g->id);
    log_notice("reloaded: generation %llu", (unsigned long long)g->id);
    return 0;
}

int daemon_reload_one(struct daemon *d, enum obj_kind kind, const char *name, char **err)
{
    struct spec_list specs = {0};
    struct generation *g;
    struct obj *o;
    struct cfile *f;
    int rc = -1;

    if (d->state != D_RUNNING)
        return err_set(err, "the daemon is going offline");
    o = gen_find(d->gen, kind, name);
    if (!o)
        return err_set(err, "no %s named '%s'", obj_kind_name(kind), name);
    if (o->doc < 0)
        return err_set(err, "reload is not supported: %s '%s' is written inline in %s; "
                            "reload everything instead (proxyctl reload)",
                       obj_kind_name(kind), name, o->src->path);
    f = cfile_load(o->src->path, err);
    if (!f)
        goto out;
    if ((size_t)o->doc >= f->ndocs || f->docs[o->doc]->type != CN_MAP) {
        err_set(err, "%s: document %d is gone; reload everything instead", f->path, o->doc + 1);
        goto out;
    }
    const struct cnode *nn = cmap_get(f->docs[o->doc], "name");
    if (!nn || nn->type != CN_SCALAR || strcmp(nn->str, name) != 0) {
        const struct cnode *at = nn ? nn : f->docs[o->doc];
        err_set(err, "%s:%u:%u: %s '%s': document %d now defines '%s'; reload everything instead",
                f->path, at->line, at->col, obj_kind_name(kind), name, o->doc + 1,
                nn && nn->type == CN_SCALAR ? nn->str : "?");
        goto out;
    }
    if (spec_list_from_gen(&specs, d->gen) < 0) {
        err_set(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < specs.n; i++) {
        if (specs.v[i].kind == kind && specs.v[i].node == o->conf) {
            cfile_unref(specs.v[i].src);
            specs.v[i].src = f;
            cfile_ref(f);
            specs.v[i].node = f->docs[o->doc];
        }
    }
    sd_notifyf(d, "RELOADING=1\nSTATUS=reloading %s %s", obj_kind_name(kind), name);
    g = gen_build(d, &specs, d->gen, true, err);
    if (g) {
        daemon_install(d, g);
        log_notice("reloaded %s '%s': generation %llu", obj_kind_name(kind), name,
                   (unsigned long long)g->id);
        rc = 0;
    } else {
        log_err("reload of %s '%s' failed: %s", obj_kind_name(kind), name, *err);
    }
    sd_notifyf(d, "READY=1\nSTATUS=running generation %llu", (unsigned long long)d->gen_seq);
out:
    spec_list_free(&specs);
    cfile_unref(f);
    return rc;
}

/* ------------------------------------------------------------- shutdown */

static void offline_step(struct ev_loop *loop, ev_timer *t, int revents);

static void set_state(struct daemon *d, enum daemon_state st, double after)
{
    d->state = st;
    d->state_since_us = now_mono_us();
    ev_timer_stop(d->loop, &d->offline_timer);
    ev_timer_set(&d->offline_timer, after, 0.);
    ev_timer_start(d->loop, &d->offline_timer);
}

static void finish(struct daemon *d)
{
    ev_timer_stop(d->loop, &d->offline_timer);
    ev_break(d->loop, EVBREAK_ALL);
}

static double ns_to_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

static void offline_step(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct daemon *d = container_of(t, struct daemon, offline_timer);
    uint64_t alive = daemon_alive_tasks(d);
    double waited = (double)(now_mono_us() - d->state_since_us) / 1e6;

    switch (d->state) {
    case D_RUNNING:
        return;
    case D_OFFLINE_DELAY:
        /* close listeners: servers go offline */
        log_notice("offline: closing listeners, %llu tasks alive", (unsigned long long)alive);
        workers_go_offline(d);
        pthread_mutex_lock(&d->gen_lock);
        gen_release_listeners(d->gen);
        pthread_mutex_unlock(&d->gen_lock);
        set_state(d, D_DRAINING, ns_to_s(d->runtime.task_wait_delay_ns));
        return;
    case D_DRAINING:
        if (alive == 0) {
            log_notice("offline: no task left, exiting");
            finish(d);
        } else if (waited >= ns_to_s(d->runtime.task_wait_delay_ns + d->runtime.task_wait_timeout_ns)) {
            log_notice("offline: task_wait_timeout reached, cancelling %llu tasks",
                       (unsigned long long)alive);
            workers_kill_tasks(d);
            set_state(d, D_QUITTING, 0.05);
        } else {
            ev_timer_set(t, 0.1, 0.);
            ev_timer_start(loop, t);
        }
        return;
    case D_QUITTING:
        if (alive == 0 || waited >= ns_to_s(d->runtime.task_quit_timeout_ns)) {
            finish(d);
        } else {
            ev_timer_set(t, 0.1, 0.);
            ev_timer_start(loop, t);
        }
        return;
    }
}

void daemon_offline(struct daemon *d)
{
    if (d->state != D_RUNNING)
        return;
    log_notice("going offline in %.3gs", ns_to_s(d->runtime.server_offline_delay_ns));
    sd_notifyf(d, "STOPPING=1\nSTATUS=going offline");
    set_state(d, D_OFFLINE_DELAY, ns_to_s(d->runtime.server_offline_delay_ns));
}

void daemon_quit(struct daemon *d)
{
    log_notice("quitting now");
    sd_notifyf(d, "STOPPING=1\nSTATUS=quitting");
    d->state = D_QUITTING;
    finish(d);
}

/* glibc keeps memory freed after a burst of connections in its arenas; give it back
 * now and then (the main thread does it for every arena) */
static void on_housekeeping(struct ev_loop *loop, ev_timer *t, int revents)
{
    malloc_trim(0);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct daemon *d = ev_userdata(loop);
    char *err = NULL;

    switch (w->signum) {
    case SIGHUP:
        log_notice("SIGHUP: reloading the configuration");
        daemon_reload_all(d, &err);
        free(err);
        break;
    case SIGTERM:
        daemon_offline(d);
        break;
    case SIGINT:
    case SIGQUIT:
        daemon_quit(d);
        break;
    case SIGUSR1:
        log_notice("SIGUSR1: reopening log files");
        evlog_reopen(d->evlog);
        break;
    }
}

/* --------------------------------------------------------------- running */

int daemon_init(struct daemon *d)
{
    pthread_mutex_init(&d->gen_lock, NULL);
    pthread_mutex_init(&d->mq_lock, NULL);
    LIST_INIT(&d->mq);
    arena_init(&d->conf_arena, 4096);
    d->start_wall_us = now_wall_us();
    d->loop = ev_default_loop(EVFLAG_AUTO);
    if (!d->loop)
        return -1;
    ev_set_userdata(d->loop, d);
    ev_async_init(&d->mq_wake, on_mq);
    ev_async_start(d->loop, &d->mq_wake);
    ev_init(&d->offline_timer, offline_step);
    return 0;
}

static unsigned worker_count(struct daemon *d)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n;

    if (cpus < 1)
        cpus = 1;
    if (d->worker.set)
        n = d->worker.thread_number ? d->worker.thread_number : (unsigned)cpus;
    else if (d->runtime.thread_number_set)
        n = d->runtime.thread_number ? d->runtime.thread_number : 1;
    else
        n = (unsigned)cpus;
    return MIN(n, STATS_MAX_WORKERS);
}

int daemon_bind(struct daemon *d, const struct spec_list *specs, char **err)
{
    d->nworkers = worker_count(d);
    /* the first generation opens its listeners before any worker runs */
    d->gen = gen_build(d, specs, NULL, true, err);
    if (!d->gen)
        return -1;
    d->gen->id = ++d->gen_seq;
    return 0;
}

int daemon_start(struct daemon *d, char **err)
{
    d->workers = calloc(d->nworkers, sizeof(*d->workers));
    if (!d->workers)
        return err_set(err, "out of memory");
    for (unsigned i = 0; i < d->nworkers; i++)
        if (worker_create(d, i, &d->workers[i], err) < 0)
            return -1;
    for (unsigned i = 0; i < d->nworkers; i++)
        if (worker_start(d->workers[i]) < 0)
            return err_set(err, "cannot start worker thread: %s", strerror(errno));

    ev_signal_init(&d->sig_hup, on_signal, SIGHUP);
    ev_signal_init(&d->sig_term, on_signal, SIGTERM);
    ev_signal_init(&d->sig_int, on_signal, SIGINT);
    ev_signal_init(&d->sig_quit, on_signal, SIGQUIT);
    ev_signal_init(&d->sig_usr1, on_signal, SIGUSR1);
    ev_signal_start(d->loop, &d->sig_hup);
    ev_signal_start(d->loop, &d->sig_term);
    ev_signal_start(d->loop, &d->sig_int);
    ev_signal_start(d->loop, &d->sig_quit);
    ev_signal_start(d->loop, &d->sig_usr1);
    ev_timer_init(&d->housekeeping, on_housekeeping, 10., 10.);
    ev_timer_start(d->loop, &d->housekeeping);
    return 0;
}

void daemon_run(struct daemon *d)
{
    ev_run(d->loop, 0);
}

void daemon_shutdown(struct daemon *d)
{
    for (unsigned i = 0; d->workers && i < d->nworkers; i++)
        if (d->workers[i])
            worker_join(d->workers[i]);
    control_close(d->control);
    d->control = NULL;
    pthread_mutex_lock(&d->gen_lock);
    gen_release_listeners(d->gen);
    pthread_mutex_unlock(&d->gen_lock);
    for (unsigned i = 0; d->workers && i < d->nworkers; i++)
        worker_free(d->workers[i]);
    free(d->workers);
    d->workers = NULL;
    d->nworkers = 0;
    if (d->gen)
        gen_unref(d->gen);
    d->gen = NULL;
    mq_run(d); /* generations posted for destruction */
    evlog_close(d->evlog);
    d->evlog = NULL;
    free(d->main_path);
    free(d->worker.cpus);
    arena_free(&d->conf_arena);
}
