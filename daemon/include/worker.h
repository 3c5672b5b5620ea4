/* Worker threads: one ev_loop each. A connection stays on the worker that accepted it,
 * so the data path takes no locks. The main thread talks to a worker only through
 * worker_post(). */
#ifndef PROXYD_WORKER_H
#define PROXYD_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "gen.h"

struct daemon;
struct listen_set;
struct server;

/* A generation pinned by a worker: the worker's own hold while it is current, plus
 * one per task that started on it. */
struct gen_pin {
    struct list link;           /* in worker->pins */
    struct generation *gen;     /* ref (one for the whole pin) */
    uint64_t holds;
};

struct wlistener {
    ev_io io;
    struct worker *w;           /* borrowed */
    struct server *srv;         /* borrowed: current generation */
    struct listen_set *ls;      /* ref */
    int fd;                     /* borrowed from ls */
};

struct buf_pool;
struct pipe_pool;
struct upool;

struct worker {
    struct daemon *d;           /* borrowed */
    unsigned id;
    pthread_t thread;
    struct ev_loop *loop;       /* owned */
    ev_async wake;
    pthread_mutex_t q_lock;
    struct list q;              /* posted calls (struct wcall) */

    struct gen_pin *cur;        /* pin of the current generation */
    struct list pins;           /* every gen_pin */
    struct wlistener *ls;       /* owned: array */
    size_t nls;
    bool offline;               /* listeners stopped for good */
    bool started;               /* the thread runs */

    struct list tasks;          /* alive tasks */
    struct list conns;          /* client connections that outlive tasks (keep-alive) */
    uint64_t ntasks;            /* STAT: read by the main thread */
    uint64_t rng;               /* xorshift state */
    ev_tstamp last_accept_error;
    ev_timer accept_pause;      /* accepting paused after EMFILE/ENFILE */

    struct buf_pool *bufs;      /* owned */
    struct pipe_pool *pipes;    /* owned */
    struct upool *upool;        /* owned: idle upstream connections */
};

int worker_create(struct daemon *d, unsigned id, struct worker **out, char **err);
int worker_start(struct worker *w);
/* Ask the thread to finish its loop and join it. Main thread. */
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* Run fn(w, arg) on worker w soon. Any thread. -1 on OOM. */
int worker_post(struct worker *w, void (*fn)(struct worker *, void *), void *arg);

/* Main thread, after a new generation was installed: every worker switches to it. */
void workers_switch_gen(struct daemon *d);
/* Stop accepting for good (graceful offline). */
void workers_go_offline(struct daemon *d);
/* Cancel every task (end of graceful offline, or fast quit). */
void workers_kill_tasks(struct daemon *d);

/* A client connection that can sit between tasks (HTTP keep-alive). Offline closes
 * idle ones at once and the others when their request ends; quit closes all. */
struct wconn {
    struct list link;           /* in worker->conns */
    /* Close now if idle (idle_only) or unconditionally. */
    void (*kill)(struct wconn *c, bool idle_only);
};
void worker_conn_add(struct worker *w, struct wconn *c);
void worker_conn_del(struct wconn *c);

/* Pin the current generation for a new task; release it when the task ends. A worker
 * always has a current generation once its thread runs. */
struct gen_pin *worker_pin(struct worker *w);
void worker_unpin(struct worker *w, struct gen_pin *pin);

/* Random numbers for the data path (not for secrets). */
uint64_t worker_rand(struct worker *w);

#endif
