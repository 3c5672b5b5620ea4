/* The main config file: top-level keys, hybrid sections (inline list, file, directory)
 * and the process-wide settings (runtime, worker, controller, log). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confval.h"
#include "daemon.h"
#include "evlog.h"
#include "log.h"

#define MAX_SECTION_FILES 4096

enum top_key {
    TK_RUNTIME,
    TK_WORKER,
    TK_LOG,
    TK_STAT,
    TK_CONTROLLER,
    TK_RESOLVER,
    TK_ESCAPER,
    TK_USER_GROUP,
    TK_AUDITOR,
    TK_SERVER,
    TK_N,
};

static const char *const top_names[TK_N] = {
    "runtime", "worker", "log", "stat", "controller", "resolver", "escaper", "user_group",
    "auditor", "server",
};

static int top_key_find(const char *norm)
{
    if (strcmp(norm, "user") == 0)
        return TK_USER_GROUP;
    for (int i = 0; i < TK_N; i++)
        if (strcmp(norm, top_names[i]) == 0)
            return i;
    return -1;
}

static const char *path_suffix(const char *path)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash) ? dot : "";
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every document of one file becomes one object spec. */
static int add_file(struct conf_ctx *cx, const struct cnode *at, enum obj_kind kind,
                    const char *path, struct spec_list *specs)
{
    char *err = NULL;
    struct cfile *f = cfile_load(path, &err);

    if (!f) {
        conf_fail(cx, at, "%s", err);
        free(err);
        return -1;
    }
    for (size_t i = 0; i < f->ndocs; i++) {
        if (f->docs[i]->type == CN_NULL)
            continue; /* an empty document: nothing to build */
        if (spec_list_add(specs, kind, f->docs[i], f, (int)i) < 0) {
            cfile_unref(f);
            return conf_fail(cx, at, "out of memory");
        }
    }
    cfile_unref(f);
    return 0;
}

/* A directory: every regular file (symlinks followed) with the main file's suffix,
 * not recursive, in name order. */
static int add_dir(struct conf_ctx *cx, const struct cnode *at, enum obj_kind kind,
                   const char *dir, const char *suffix, struct spec_list *specs)
{
    DIR *dp = opendir(dir);
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *de;

    if (!dp)
        return conf_fail(cx, at, "cannot open directory %s: %s", dir, strerror(errno));
    while ((de = readdir(dp))) {
        struct stat st;
        char *p;
        if (de->d_name[0] == '.' || strcmp(path_suffix(de->d_name), suffix) != 0)
            continue;
        size_t dl = strlen(dir);
        if (asprintf(&p, "%.*s/%s", (int)(dl > 1 && dir[dl - 1] == '/' ? dl - 1 : dl), dir,
                     de->d_name) < 0) {
            rc = conf_fail(cx, at, "out of memory");
            break;
        }
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode) || n >= MAX_SECTION_FILES) {
            free(p);
            continue;
        }
        char **v = realloc(names, (n + 1) * sizeof(*v));
        if (!v) {
            free(p);
            rc = conf_fail(cx, at, "out of memory");
            break;
        }
        names = v;
        names[n++] = p;
    }
    closedir(dp);
    if (rc == 0)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = add_file(cx, at, kind, names[i], specs);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int add_path(struct conf_ctx *cx, const struct cnode *n, enum obj_kind kind,
                    const char *suffix, struct spec_list *specs)
{
    struct stat st;
    char *p = conf_path(cx, n);
    int rc;

    if (!p)
        return -1;
    if (stat(p, &st) < 0)
        rc = conf_fail(cx, n, "cannot read %s: %s", p, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        rc = add_dir(cx, n, kind, p, suffix, specs);
    else
        rc = add_file(cx, n, kind, p, specs);
    free(p);
    return rc;
}

/* hybrid map: a list of inline maps and/or paths, or a single path */
static int add_section(struct conf_ctx *cx, struct cfile *main, const struct cnode *v,
                       enum obj_kind kind, struct spec_list *specs)
{
    const char *suffix = path_suffix(main->path);

    if (v->type == CN_NULL)
        return 0;
    if (v->type == CN_SCALAR)
        return add_path(cx, v, kind, suffix, specs);
    if (v->type != CN_SEQ)
        return conf_fail(cx, v, "expected a list of %s definitions, a file or a directory",
                         obj_kind_name(kind));
    for (size_t i = 0; i < v->n; i++) {
        const struct cnode *it = v->items[i];
        if (it->type == CN_MAP) {
            if (spec_list_add(specs, kind, it, main, -1) < 0)
                return conf_fail(cx, it, "out of memory");
        } else if (it->type == CN_SCALAR) {
            if (add_path(cx, it, kind, suffix, specs) < 0)
                return -1;
        } else {
            return conf_fail(cx, it, "expected a map or a path, got a %s", cnode_type_name(it));
        }
    }
    return 0;
}

/* ------------------------------------------------------------ settings */

#define ROFF(f) offsetof(struct runtime_conf, f)
static const struct conf_key runtime_keys[] = {
    {"thread_number", NULL, cp_u32, ROFF(thread_number), NULL, 0, 1024},
    {"thread_name", NULL, cp_ascii, ROFF(thread_name)},
    {"thread_stack_size", NULL, cp_size, ROFF(thread_stack_size)},
    {"max_io_events_per_tick", NULL, cp_u32, ROFF(max_io_events_per_tick), "1024"},
    {"server_offline_delay", NULL, cp_duration, ROFF(server_offline_delay_ns), "4s"},
    {"task_wait_delay", NULL, cp_duration, ROFF(task_wait_delay_ns), "2s"},
    {"task_wait_timeout", NULL, cp_duration, ROFF(task_wait_timeout_ns), "10h"},
    {"task_quit_timeout", NULL, cp_duration, ROFF(task_quit_timeout_ns), "30min"},
    {0},
};

/* sched_affinity: bool, or a map thread id -> cpu set (only one CPU per worker is
 * used: the first of the set). */
static int cp_sched_affinity(struct conf_ctx *cx, const struct cnode *n, void *slot,
                             const struct conf_key *k)
{
    struct worker_conf *wc = container_of((bool *)slot, struct worker_conf, sched_affinity);

    if (n->type != CN_MAP)
        return cp_bool(cx, n, slot, k);
    wc->sched_affinity = true;
    for (size_t i = 0; i < n->n; i++) {
        const struct cnode *kn = cmap_key(n, i), *vn = cmap_val(n, i);
        int64_t id, cpu;
        const char *s;
        if (conf_parse_i64(kn->str, &id) < 0 || id < 0 || id >= 1024)
            return conf_fail(cx, kn, "expected a worker number, got '%s'", kn->str);
        if (vn->type == CN_SEQ && vn->n)
            vn = vn->items[0];
        if (conf_scalar(cx, vn, &s) < 0)
            return -1;
        char first[16];
        size_t fl = strcspn(s, ",-");
        if (fl >= sizeof(first) || (memcpy(first, s, fl), first[fl] = 0,
                                    conf_parse_i64(first, &cpu) < 0) || cpu < 0 || cpu >= 4096)
            return conf_fail(cx, vn, "invalid CPU set '%s'", s);
        if ((size_t)id >= wc->ncpus) {
            int *v = realloc(wc->cpus, (size_t)(id + 1) * sizeof(int));
            if (!v)
                return conf_fail(cx, n, "out of memory");
            for (size_t j = wc->ncpus; j <= (size_t)id; j++)
                v[j] = -1;
            wc->cpus = v;
            wc->ncpus = (size_t)id + 1;
        }
        wc->cpus[id] = (int)cpu;
    }
    return 0;
}

#define WOFF(f) offsetof(struct worker_conf, f)
static const struct conf_key worker_keys[] = {
    {"thread_number", CK_ALIASES("threads_total", "thread_number_total"), cp_u32,
     WOFF(thread_number), NULL, 0, 1024},
    {"thread_number_per_runtime", CK_ALIASES("threads_per_runtime"), cp_u32,
     WOFF(thread_number_per_runtime), "1", 1, 1},
    {"thread_stack_size", NULL, cp_size, WOFF(thread_stack_size)},
    {"sched_affinity", NULL, cp_sched_affinity, WOFF(sched_affinity)},
    {"max_io_events_per_tick", NULL, cp_u32, WOFF(max_io_events_per_tick), "1024"},
    {0},
};

#define COFF(f) offsetof(struct controller_conf, f)
static const struct conf_key controller_local_keys[] = {
    {"recv_timeout", NULL, cp_duration, COFF(recv_timeout_ns), "30"},
    {"send_timeout", NULL, cp_duration, COFF(send_timeout_ns), "1"},
    {0},
};

static int cp_controller_local(struct conf_ctx *cx, const struct cnode *n, void *slot,
                               const struct conf_key *k)
{
    static const struct conf_key *const t[] = {controller_local_keys, NULL};
    static const char empty[] = "{}";
    if (n->type == CN_NULL) {
        char *err = NULL;
        struct cfile *f = cfile_parse("<default>", empty, sizeof(empty) - 1, &err);
        int rc = f ? conf_apply(cx, f->docs[0], t, NULL, slot) : -1;
        cfile_unref(f);
        free(err);
        return rc;
    }
    return conf_apply(cx, n, t, NULL, slot);
}

static const struct conf_key controller_keys[] = {
    {"local", NULL, cp_controller_local, 0, "{}"},
    {0},
};

static int apply_section(struct conf_ctx *cx, const struct cnode *v, const struct conf_key *keys,
                         void *obj)
{
    const struct conf_key *const t[] = {keys, NULL};
    static const char empty[] = "{}";

    if (v && v->type == CN_NULL)
        v = NULL;
    if (!v) {
        char *err = NULL;
        struct cfile *f = cfile_parse("<default>", empty, sizeof(empty) - 1, &err);
        int rc = f ? conf_apply(cx, f->docs[0], t, NULL, obj) : -1;
        cfile_unref(f);
        free(err);
        return rc;
    }
    return conf_apply(cx, v, t, NULL, obj);
}

static int find_main(const char *path, char **out, char **err)
{
    static const char *const names[] = {"main.yaml", "main.yml", "main.conf",
                                        "g3proxy.yaml", "g3proxy.yml", "g3proxy.conf"};
    struct stat st;

    if (stat(path, &st) < 0)
        return err_set(err, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        *out = realpath(path, NULL);
        return *out ? 0 : err_set(err, "%s: %s", path, strerror(errno));
    }
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        char *p;
        if (asprintf(&p, "%s/%s", path, names[i]) < 0)
            return err_set(err, "out of memory");
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            *out = realpath(p, NULL);
            free(p);
            return *out ? 0 : err_set(err, "%s: %s", path, strerror(errno));
        }
        free(p);
    }
    return err_set(err, "%s: no main.yaml (or main.yml, main.conf, g3proxy.yaml) in this directory",
                   path);
}

int daemon_load_config(struct daemon *d, struct spec_list *specs, bool settings, char **err)
{
    struct conf_ctx cx = {.arena = &d->conf_arena};
    const struct cnode *top[TK_N] = {0};
    char *path = NULL;
    struct cfile *main;
    int rc = -1;

    *err = NULL;
    if (find_main(d->opts.config, &path, err) < 0)
        return -1;
    main = cfile_load(path, err);
    if (!main) {
        free(path);
        return -1;
    }
    cx.dir = main->dir;

    /* several documents are read as if they were one */
    for (size_t i = 0; i < main->ndocs; i++) {
        const struct cnode *root = main->docs[i];
        if (root->type == CN_NULL)
            continue;
        if (root->type != CN_MAP) {
            conf_fail(&cx, root, "a document of the main file must be a map, not a %s",
                      cnode_type_name(root));
            goto out;
        }
        for (size_t j = 0; j < root->n; j++) {
            const struct cnode *kn = cmap_key(root, j);
            int tk = top_key_find(kn->norm);
            if (tk < 0) {
                conf_fail(&cx, kn, "unknown top-level key '%s'", kn->str);
                goto out;
            }
            if (top[tk]) {
                conf_fail(&cx, kn, "key '%s' given twice (first at line %u)", kn->str,
                          top[tk]->line);
                goto out;
            }
            top[tk] = cmap_val(root, j);
        }
    }

    if (top[TK_AUDITOR] && top[TK_AUDITOR]->type != CN_NULL) {
        cx.key = "auditor";
        conf_fail(&cx, top[TK_AUDITOR], "unsupported: auditors (ICAP, TLS interception, protocol "
                                        "inspection) are not implemented");
        goto out;
    }
    if (top[TK_STAT] && top[TK_STAT]->type != CN_NULL) {
        cx.key = "stat";
        conf_fail(&cx, top[TK_STAT], "unsupported: StatsD export is not implemented yet");
        goto out;
    }

    static const enum obj_kind sect_kind[TK_N] = {
        [TK_RESOLVER] = OBJ_RESOLVER, [TK_ESCAPER] = OBJ_ESCAPER,
        [TK_USER_GROUP] = OBJ_USER_GROUP, [TK_SERVER] = OBJ_SERVER};
    static const int order[] = {TK_RESOLVER, TK_ESCAPER, TK_USER_GROUP, TK_SERVER};
    for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
        int tk = order[i];
        if (!top[tk])
            continue;
        cx.key = top_names[tk];
        if (add_section(&cx, main, top[tk], sect_kind[tk], specs) < 0)
            goto out;
    }
    cx.key = NULL;

    /* process settings: parsed for real at start; on reload only checked */
    struct runtime_conf rt = {0};
    struct worker_conf wk = {0};
    struct controller_conf ctl = {0};
    struct evlog_conf lg = {0};
    struct arena scratch;
    struct conf_ctx scx = cx;
    if (!settings) {
        arena_init(&scratch, 1024);
        scx.arena = &scratch;
    }
    scx.kind = "runtime";
    rc = apply_section(&scx, top[TK_RUNTIME], runtime_keys, &rt);
    if (rc == 0) {
        scx.kind = "worker";
        rc = apply_section(&scx, top[TK_WORKER], worker_keys, &wk);
        wk.set = top[TK_WORKER] != NULL;
    }
    if (rc == 0) {
        scx.kind = "controller";
        rc = apply_section(&scx, top[TK_CONTROLLER], controller_keys, &ctl);
    }
    if (rc == 0) {
        scx.kind = "log";
        rc = evlog_conf_parse(&scx, top[TK_LOG], &lg);
    }
    if (rc == 0)
        rt.thread_number_set = top[TK_RUNTIME] && cmap_get(top[TK_RUNTIME], "thread_number");
    if (settings && rc == 0) {
        d->runtime = rt;
        d->worker = wk;
        d->controller = ctl;
        d->log_conf = lg;
    } else {
        free(wk.cpus);
    }
    if (!settings)
        arena_free(&scratch);
    cx.err = scx.err;
    if (rc < 0)
        goto out;

    if (settings) {
        free(d->main_path);
        d->main_path = path;
        path = NULL;
    }
    rc = 0;
out:
    if (rc < 0) {
        *err = cx.err;
        cx.err = NULL;
    }
    free(cx.err);
    free(path);
    cfile_unref(main);
    return rc;
}
