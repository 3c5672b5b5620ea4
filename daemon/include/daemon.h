/* Process state: one struct daemon, owned by the main thread, passed explicitly. */
#ifndef PROXYD_DAEMON_H
#define PROXYD_DAEMON_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "evlog.h"
#include "gen.h"

struct worker;
struct control;
struct evlog;

/* runtime: and worker: (reference §1.3); not reloadable. */
struct runtime_conf {
    uint32_t thread_number;           /* runtime.thread_number (0 = unset) */
    bool thread_number_set;
    uint64_t server_offline_delay_ns; /* 4s */
    uint64_t task_wait_delay_ns;      /* 2s */
    uint64_t task_wait_timeout_ns;    /* 10h */
    uint64_t task_quit_timeout_ns;    /* 30min */
    char *thread_name;
    uint64_t thread_stack_size;
    uint32_t max_io_events_per_tick;
};

struct worker_conf {
    bool set;                         /* a worker: section exists */
    uint32_t thread_number;           /* 0 = one per CPU */
    uint32_t thread_number_per_runtime;
    uint64_t thread_stack_size;
    uint32_t max_io_events_per_tick;
    bool sched_affinity;              /* pin worker i to CPU i (or cpus[i]) */
    int *cpus;                        /* owned: per-worker CPU when given as a map, -1 = none */
    size_t ncpus;
};

struct controller_conf {
    uint64_t recv_timeout_ns;         /* 30s */
    uint64_t send_timeout_ns;         /* 1s */
};

enum daemon_state {
    D_RUNNING = 0,
    D_OFFLINE_DELAY,   /* graceful offline: waiting server_offline_delay */
    D_DRAINING,        /* listeners closed, waiting for tasks */
    D_QUITTING,        /* tasks were told to quit */
};

/* Command-line options. */
struct daemon_opts {
    const char *config;       /* -c: file or directory */
    const char *group;        /* -G: daemon group ("" = none) */
    const char *control_dir;  /* -C */
    const char *pid_file;     /* -p */
    bool test;                /* -t */
    bool systemd;             /* -s */
    bool daemonize;           /* -d */
    int verbose;              /* -v count */
};

struct daemon {
    struct daemon_opts opts;
    char *main_path;                  /* owned: the main config file actually loaded */
    struct runtime_conf runtime;
    struct worker_conf worker;
    struct controller_conf controller;
    struct evlog_conf log_conf;
    struct arena conf_arena;          /* top-level settings */

    struct ev_loop *loop;             /* main thread loop */
    unsigned nworkers;
    struct worker **workers;          /* owned */

    pthread_mutex_t gen_lock;         /* guards gen for workers reading it */
    struct generation *gen;           /* ref: current */
    uint64_t gen_seq;

    /* messages from workers to the main thread */
    pthread_mutex_t mq_lock;
    struct list mq;
    ev_async mq_wake;

    ev_signal sig_hup, sig_term, sig_int, sig_quit, sig_usr1;
    ev_timer offline_timer;
    ev_timer housekeeping;            /* periodic: return freed memory to the system */
    enum daemon_state state;
    uint64_t state_since_us;

    struct control *control;          /* owned */
    struct evlog *evlog;              /* owned: event log sinks */
    uint64_t start_wall_us;
};

/* Run fn(arg) on the main thread soon. Any thread. Returns -1 on OOM. */
int daemon_post(struct daemon *d, void (*fn)(void *), void *arg);

/* Full reload (SIGHUP, proxyctl reload). 0, or -1 with *err ("file:line:col: ..."). */
int daemon_reload_all(struct daemon *d, char **err);
/* Re-read one object from its own file. */
int daemon_reload_one(struct daemon *d, enum obj_kind kind, const char *name, char **err);
/* Start graceful offline (SIGTERM, proxyctl offline). */
void daemon_offline(struct daemon *d);
/* Quit now: tasks are cancelled (SIGINT, SIGQUIT). */
void daemon_quit(struct daemon *d);
/* Live tasks over all workers. */
uint64_t daemon_alive_tasks(struct daemon *d);

/* Lifecycle (main.c): init; bind (the first generation with its listeners: before
 * detaching, so a bind error reaches the caller); start (workers and signals: after
 * detaching, threads do not survive fork); run until offline or quit; shut down. */
int daemon_init(struct daemon *d);
int daemon_bind(struct daemon *d, const struct spec_list *specs, char **err);
int daemon_start(struct daemon *d, char **err);
void daemon_run(struct daemon *d);
void daemon_shutdown(struct daemon *d);
/* Make g the current generation (main thread). */
void daemon_install(struct daemon *d, struct generation *g);

/* Load the main config file (or directory) into top-level settings and object
 * specs. Used at start and for full reloads (top-level settings are read only at
 * start: with settings == false they are checked for syntax only). */
int daemon_load_config(struct daemon *d, struct spec_list *specs, bool settings, char **err);

#endif
