/* The only file that talks to libyaml: YAML text to a struct cnode tree.
 *
 * Bounded: input size, nesting depth and alias count are capped so a hostile or
 * broken file cannot make the loader run away. Aliases share the anchored subtree
 * (the tree is immutable, so sharing is safe). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "conf.h"

#define CONF_MAX_FILE  (16u << 20)
#define CONF_MAX_DEPTH 64
#define CONF_MAX_ANCHORS 4096
#define CONF_MAX_ALIASES 256
/* Nodes in a file counting every alias as the subtree it stands for, so walks of the
 * tree (cnode_equal, grammars) stay bounded when aliases nest aliases ("billion
 * laughs"); about what a CONF_MAX_FILE file without aliases can hold. */
#define CONF_MAX_EXPANDED (1u << 24)

struct anchor {
    const char *name;
    struct cnode *node;
    size_t weight; /* nodes in the subtree, aliases expanded */
};

struct ybuild {
    struct cfile *f;
    yaml_parser_t p;
    char **err;
    struct anchor *anchors;
    size_t nanchors;
    size_t naliases;
    size_t expanded; /* nodes so far, aliases expanded */
    int depth;
};

/* Growable pointer vector for seq/map children while parsing. */
struct pvec {
    struct cnode **v;
    size_t n, cap;
};

static int pvec_push(struct pvec *pv, struct cnode *n)
{
    if (pv->n == pv->cap) {
        size_t cap = pv->cap ? pv->cap * 2 : 8;
        struct cnode **v = realloc(pv->v, cap * sizeof(*v));

        if (!v)
            return -1;
        pv->v = v;
        pv->cap = cap;
    }
    pv->v[pv->n++] = n;
    return 0;
}

static int ybuild_fail(struct ybuild *b, const yaml_mark_t *m, const char *why)
{
    return err_set(b->err, "%s:%zu:%zu: YAML: %s", b->f->path, m->line + 1, m->column + 1, why);
}

/* Count w more nodes (aliases count as their whole subtree). */
static int expand(struct ybuild *b, size_t w, const yaml_mark_t *m)
{
    if (w > CONF_MAX_EXPANDED - b->expanded)
        return ybuild_fail(b, m, "too many nodes once aliases are expanded");
    b->expanded += w;
    return 0;
}

/* libyaml's error: at the construct it was reading when it has one ("while parsing a
 * flow sequence" started at the '['), else where it stopped. */
static int ybuild_syntax(struct ybuild *b)
{
    char why[256];

    if (b->p.context) {
        snprintf(why, sizeof(why), "%s: %s (at line %zu, column %zu)", b->p.context,
                 b->p.problem ? b->p.problem : "parse error", b->p.problem_mark.line + 1,
                 b->p.problem_mark.column + 1);
        return ybuild_fail(b, &b->p.context_mark, why);
    }
    return ybuild_syntax(b);
}

static struct cnode *node_new(struct ybuild *b, const yaml_mark_t *m, int type)
{
    struct cnode *n;

    if (expand(b, 1, m) < 0)
        return NULL;
    n = arena_alloc(&b->f->arena, sizeof(*n));
    if (!n) {
        err_set(b->err, "%s: out of memory", b->f->path);
        return NULL;
    }
    n->type = type;
    n->line = m->line + 1;
    n->col = m->column + 1;
    n->file = b->f;
    return n;
}

static bool plain_is_null(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '~') || str_ieqn(s, len, "null");
}

static int add_anchor(struct ybuild *b, const char *name, struct cnode *n, size_t weight,
                      const yaml_mark_t *m)
{
    if (!name)
        return 0;
    if (b->nanchors >= CONF_MAX_ANCHORS)
        return ybuild_fail(b, m, "too many anchors");
    if (!(b->nanchors & (b->nanchors + 1)) || !b->anchors) {
        struct anchor *a = realloc(b->anchors, (b->nanchors * 2 + 2) * sizeof(*a));

        if (!a)
            return ybuild_fail(b, m, "out of memory");
        b->anchors = a;
    }
    b->anchors[b->nanchors].name = arena_strndup(&b->f->arena, name, strlen(name));
    b->anchors[b->nanchors].node = n;
    b->anchors[b->nanchors].weight = weight;
    b->nanchors++;
    return 0;
}

static struct cnode *parse_node(struct ybuild *b, yaml_event_t *ev);

/* Parse children until the matching end event. For maps, keys are normalized and
 * duplicate keys are rejected. */
static int parse_children(struct ybuild *b, struct cnode *parent, bool is_map)
{
    struct pvec pv = {0};
    yaml_event_t ev;
    int rc = -1;

    for (;;) {
        if (!yaml_parser_parse(&b->p, &ev)) {
            ybuild_syntax(b);
            goto out;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        struct cnode *c = parse_node(b, &ev);
        yaml_event_delete(&ev);
        if (!c || pvec_push(&pv, c) < 0) {
            if (c)
                err_set(b->err, "%s: out of memory", b->f->path);
            goto out;
        }
        if (is_map && (pv.n & 1)) {
            /* a key: must be a scalar; normalize it */
            if (c->type != CN_SCALAR && c->type != CN_NULL) {
                err_set(b->err, "%s:%u:%u: YAML: map keys must be scalars", b->f->path, c->line,
                        c->col);
                goto out;
            }
            char *norm = arena_alloc(&b->f->arena, c->len + 1);
            if (!norm)
                goto out;
            conf_normalize(c->str ? c->str : "", norm, c->len + 1);
            c->norm = norm;
            for (size_t i = 0; i + 1 < pv.n; i += 2) {
                if (strcmp(pv.v[i]->norm, norm) == 0) {
                    err_set(b->err, "%s:%u:%u: YAML: duplicate key '%s' (first at line %u)",
                            b->f->path, c->line, c->col, c->str, pv.v[i]->line);
                    goto out;
                }
            }
        }
    }
    parent->n = is_map ? pv.n / 2 : pv.n;
    if (pv.n) {
        parent->items = arena_alloc(&b->f->arena, pv.n * sizeof(*pv.v));
        if (!parent->items)
            goto out;
        memcpy(parent->items, pv.v, pv.n * sizeof(*pv.v));
    }
    rc = 0;
out:
    free(pv.v);
    return rc;
}

static struct cnode *parse_node(struct ybuild *b, yaml_event_t *ev)
{
    struct cnode *n;

    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        /* aliases of aliases can describe exponentially large trees: cap them */
        if (++b->naliases > CONF_MAX_ALIASES) {
            ybuild_fail(b, &ev->start_mark, "too many aliases");
            return NULL;
        }
        for (size_t i = b->nanchors; i-- > 0;) {
            if (strcmp(b->anchors[i].name, (char *)ev->data.alias.anchor) == 0) {
                if (expand(b, b->anchors[i].weight, &ev->start_mark) < 0)
                    return NULL;
                return b->anchors[i].node;
            }
        }
        ybuild_fail(b, &ev->start_mark, "unknown alias");
        return NULL;

    case YAML_SCALAR_EVENT: {
        const char *s = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

        if (memchr(s, 0, len)) {
            ybuild_fail(b, &ev->start_mark, "NUL byte in scalar");
            return NULL;
        }
        n = node_new(b, &ev->start_mark, plain && plain_is_null(s, len) ? CN_NULL : CN_SCALAR);
        if (!n)
            return NULL;
        n->quoted = !plain;
        n->str = arena_strndup(&b->f->arena, s, len);
        n->len = len;
        if (!n->str)
            return NULL;
        if (add_anchor(b, (char *)ev->data.scalar.anchor, n, 1, &ev->start_mark) < 0)
            return NULL;
        return n;
    }

    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool is_map = ev->type == YAML_MAPPING_START_EVENT;
        const char *anchor = (const char *)(is_map ? ev->data.mapping_start.anchor
                                                   : ev->data.sequence_start.anchor);
        size_t before = b->expanded;

        if (++b->depth > CONF_MAX_DEPTH) {
            ybuild_fail(b, &ev->start_mark, "nesting too deep");
            return NULL;
        }
        n = node_new(b, &ev->start_mark, is_map ? CN_MAP : CN_SEQ);
        if (!n)
            return NULL;
        /* an anchored collection may not contain an alias to itself: register after */
        if (parse_children(b, n, is_map) < 0)
            return NULL;
        if (add_anchor(b, anchor, n, b->expanded - before, &ev->start_mark) < 0)
            return NULL;
        b->depth--;
        return n;
    }

    default:
        ybuild_fail(b, &ev->start_mark, "unexpected YAML event");
        return NULL;
    }
}

static int parse_stream(struct ybuild *b)
{
    struct pvec docs = {0};
    yaml_event_t ev;
    int rc = -1;

    for (;;) {
        if (!yaml_parser_parse(&b->p, &ev)) {
            ybuild_syntax(b);
            goto out;
        }
        yaml_event_type_t t = ev.type;
        yaml_mark_t m = ev.start_mark;
        yaml_event_delete(&ev);

        if (t == YAML_STREAM_END_EVENT)
            break;
        if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_END_EVENT)
            continue;
        if (t != YAML_DOCUMENT_START_EVENT) {
            ybuild_fail(b, &m, "unexpected YAML event");
            goto out;
        }
        if (!yaml_parser_parse(&b->p, &ev)) {
            ybuild_syntax(b);
            goto out;
        }
        struct cnode *root = parse_node(b, &ev);
        yaml_event_delete(&ev);
        if (!root || pvec_push(&docs, root) < 0)
            goto out;
    }
    b->f->ndocs = docs.n;
    if (docs.n) {
        b->f->docs = arena_alloc(&b->f->arena, docs.n * sizeof(*docs.v));
        if (!b->f->docs)
            goto out;
        memcpy(b->f->docs, docs.v, docs.n * sizeof(*docs.v));
    }
    rc = 0;
out:
    free(docs.v);
    return rc;
}

struct cfile *cfile_parse(const char *name, const char *text, size_t len, char **err)
{
    struct ybuild b = {.err = err};
    struct cfile *f = calloc(1, sizeof(*f));
    char *tmp;

    if (!f || !(f->path = strdup(name)) || !(tmp = strdup(name))) {
        if (f)
            free(f->path);
        free(f);
        err_set(err, "%s: out of memory", name);
        return NULL;
    }
    f->dir = strdup(dirname(tmp));
    free(tmp);
    f->refs = 1;
    arena_init(&f->arena, 16384);
    b.f = f;
    if (!f->dir) {
        cfile_unref(f);
        err_set(err, "%s: out of memory", name);
        return NULL;
    }
    if (len > CONF_MAX_FILE) {
        err_set(err, "%s: file larger than %u bytes", name, CONF_MAX_FILE);
        cfile_unref(f);
        return NULL;
    }
    yaml_parser_initialize(&b.p);
    yaml_parser_set_input_string(&b.p, (const unsigned char *)text, len);
    int rc = parse_stream(&b);
    yaml_parser_delete(&b.p);
    free(b.anchors);
    if (rc < 0) {
        cfile_unref(f);
        return NULL;
    }
    return f;
}

struct cfile *cfile_load(const char *path, char **err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;
    size_t got = 0;

    if (fd < 0) {
        err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        err_set(err, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > CONF_MAX_FILE) {
        err_set(err, "%s: file larger than %u bytes", path, CONF_MAX_FILE);
        close(fd);
        return NULL;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        err_set(err, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    struct cfile *f = cfile_parse(path, buf, got, err);
    free(buf);
    return f;
}

void cfile_ref(struct cfile *f)
{
    f->refs++;
}

void cfile_unref(struct cfile *f)
{
    if (!f || --f->refs > 0)
        return;
    arena_free(&f->arena);
    free(f->path);
    free(f->dir);
    free(f);
}
