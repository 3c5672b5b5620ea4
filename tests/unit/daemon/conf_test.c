/* The config tree (conf_yaml.c) and key tables (conf.c). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tap.h"
#include "testconf.h"

struct obj {
    int alpha;
    char *name;
    uint64_t delay;
    bool flag;
    uint64_t size;
};

#define OOFF(f) offsetof(struct obj, f)
static const struct conf_key obj_keys[] = {
    {"alpha", CK_ALIASES("al", "first_letter"), cp_int, OOFF(alpha), "5", 0, 100},
    {"name", NULL, cp_str, OOFF(name), NULL, 0, 0, CK_F_REQUIRED},
    {"delay", NULL, cp_duration, OOFF(delay), "1m 30s"},
    {"legacy", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"cosmetic", NULL, cp_ignore, 0, NULL, 0, 0, CK_F_IGNORED},
    {0},
};
static const struct conf_key obj_more_keys[] = {
    {"flag", NULL, cp_bool, OOFF(flag), "true"},
    {"size", NULL, cp_size, OOFF(size), "4KiB"},
    {0},
};
static const struct conf_key *const obj_tables[] = {obj_keys, obj_more_keys, NULL};

/* A grammar applying the object tables, for tconf_run(). */
static int cp_obj(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const char *const skip[] = {"type", NULL};

    return conf_apply(cx, n, obj_tables, skip, slot);
}

static void test_apply(void)
{
    struct tconf t;
    struct obj o;

    memset(&o, 0, sizeof(o));
    is_int(tconf_run(&t, "name: x", cp_obj, &o, NULL), 0, "minimal object");
    is_int(o.alpha, 5, "int default from YAML text");
    is_u64(o.delay, 90 * NS_PER_SEC, "duration default from YAML text");
    ok(o.flag, "bool default from the second table");
    is_u64(o.size, 4096, "size default");
    is_str(o.name, "x", "required key");
    is_str(t.cx.key, "k", "cx->key restored");
    tconf_done(&t);

    memset(&o, 0, sizeof(o));
    is_int(tconf_run(&t, "Name: y\nFirst-Letter: 7\nDELAY: 2s\ntype: whatever\ncosmetic: [1]",
                     cp_obj, &o, NULL),
           0, "keys are normalized, skip list, ignored key");
    is_int(o.alpha, 7, "alias with '-' and capitals");
    is_u64(o.delay, 2 * NS_PER_SEC, "upper-case key");
    tconf_done(&t);

    memset(&o, 0, sizeof(o));
    is_int(tconf_run(&t, "name: x\nx: 1", cp_obj, &o, NULL), -1, "unknown key");
    is_str(t.cx.err, "t.yaml:2:1: server 's1': unknown key 'x'", "unknown key message");
    tconf_done(&t);

    is_int(tconf_run(&t, "alpha: 1\nname: x\nal: 2", cp_obj, &o, NULL), -1, "alias set twice");
    is_str(t.cx.err, "t.yaml:3:1: server 's1': key 'al': set twice (also as 'alpha' at line 1)",
           "alias set twice message");
    tconf_done(&t);

    is_int(tconf_run(&t, "alpha: 1", cp_obj, &o, NULL), -1, "required key missing");
    is_str(t.cx.err, "t.yaml:1:1: server 's1': key 'name': missing required key",
           "required key message points at the map");
    tconf_done(&t);

    is_int(tconf_run(&t, "name: x\n  \nlegacy: 1", cp_obj, &o, NULL), -1, "unsupported key");
    is_str(t.cx.err,
           "t.yaml:3:1: server 's1': key 'legacy': unsupported: proxyd does not implement this "
           "key yet",
           "CK_F_UNSUPPORTED message");
    tconf_done(&t);

    is_int(tconf_run(&t, "name: x\nalpha:   abc", cp_obj, &o, NULL), -1, "bad value");
    is_str(t.cx.err, "t.yaml:2:10: server 's1': key 'alpha': expected an integer, got 'abc'",
           "value error points at the value");
    tconf_done(&t);

    is_int(tconf_run(&t, "name: x\nalpha: 101", cp_obj, &o, NULL), -1, "key bounds");
    like(t.cx.err, "t.yaml:2:8: server 's1': key 'alpha': 101 is out of range [0, 100]",
         "key bounds message");
    tconf_done(&t);

    is_int(tconf_run(&t, "- name: x", cp_obj, &o, NULL), -1, "not a map");
    is_str(t.cx.err, "t.yaml:1:1: server 's1': key 'k': expected a map, got a sequence",
           "not a map message");
    tconf_done(&t);

    is_int(tconf_run(&t, "name: x\nalpha: []", cp_obj, &o, NULL), -1, "collection for a scalar");
    is_str(t.cx.err, "t.yaml:2:8: server 's1': key 'alpha': expected a scalar, got a sequence",
           "type mismatch message");
    tconf_done(&t);

    /* messages without object name / kind */
    {
        char *err = NULL;
        struct cfile *f = cfile_parse("m.yaml", "a: 1\nb: 2\n", 10, &err);
        struct conf_ctx cx = {.kind = "escaper"};

        ok(f != NULL, "parsed");
        conf_fail(&cx, cmap_get(f->docs[0], "b"), "first %d", 1);
        conf_fail(&cx, cmap_get(f->docs[0], "a"), "second");
        is_str(cx.err, "m.yaml:2:4: escaper: first 1", "kind only, first error kept");
        free(cx.err);
        cx = (struct conf_ctx){.node = f->docs[0]};
        conf_fail(&cx, NULL, "top");
        is_str(cx.err, "m.yaml:1:1: top", "no kind; NULL node = the object's map");
        free(cx.err);
        cfile_unref(f);
    }
}

/* A grammar recording the node it was given. */
static int cp_keep(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    *(const struct cnode **)slot = n;
    return 0;
}

static struct cfile *parse(const char *text, char **err)
{
    *err = NULL;
    return cfile_parse("t.yaml", text, strlen(text), err);
}

static void test_yaml(void)
{
    struct tconf t;
    const struct cnode *root = NULL, *v;
    struct cfile *f;
    char *err;

    is_int(tconf_run(&t,
                     "Foo-Bar: 1\nlist:\n  - a\n  - 'b'\nnone: ~\nempty:\nnul: null\n"
                     "q: 'null'",
                     cp_keep, &root, NULL),
           0, "tree");
    v = cmap_get(root, "foo_bar");
    ok(v && v->type == CN_SCALAR && strcmp(v->str, "1") == 0, "Foo-Bar normalized to foo_bar");
    is_str(cmap_key(root, 0)->str, "Foo-Bar", "original key text kept");
    is_str(cmap_key(root, 0)->norm, "foo_bar", "normalized key");
    v = cmap_get(root, "list");
    ok(v && v->type == CN_SEQ && v->n == 2, "sequence");
    is_int(v->items[1]->line, 4, "item line");
    is_int(v->items[1]->col, 5, "item column");
    ok(v->items[1]->quoted && !v->items[0]->quoted, "quoted flag");
    ok(cmap_get(root, "none")->type == CN_NULL && cmap_get(root, "empty")->type == CN_NULL &&
           cmap_get(root, "nul")->type == CN_NULL,
       "~, empty and null are null");
    ok(cmap_get(root, "q")->type == CN_SCALAR, "'null' quoted is a string");
    ok(!cmap_get(root, "missing") && !cmap_get(v, "a"), "cmap_get misses");
    tconf_done(&t);

    is_int(tconf_run(&t, "a: 1\nb:\n  c: 2\n  C: 3", cp_keep, &root, NULL), -2, "duplicate key");
    is_str(t.cx.err, "t.yaml:4:3: YAML: duplicate key 'C' (first at line 3)",
           "duplicate key message with line");
    tconf_done(&t);
    is_int(tconf_run(&t, "foo-bar: 1\nfoo_bar: 2", cp_keep, &root, NULL), -2,
           "duplicate after normalization");
    like(t.cx.err, "t.yaml:2:1: YAML: duplicate key 'foo_bar'", "normalized duplicate");
    tconf_done(&t);

    is_int(tconf_run(&t, "a: [1, 2", cp_keep, &root, NULL), -2, "syntax error");
    like(t.cx.err, "t.yaml:", "syntax error has a position");
    like(t.cx.err, ": YAML: ", "syntax error tagged YAML");
    tconf_done(&t);

    /* anchors and aliases share the subtree */
    is_int(tconf_run(&t, "base: &b {alpha: 7, name: n}\nuse: *b\nlist: [&s x, *s]", cp_keep, &root,
                     NULL),
           0, "anchors");
    ok(cmap_get(root, "use") == cmap_get(root, "base"), "alias is the anchored node");
    v = cmap_get(root, "list");
    ok(v->items[0] == v->items[1], "scalar alias");
    {
        struct obj o = {0};
        is_int(cp_obj(&t.cx, cmap_get(root, "use"), &o, NULL), 0, "apply through an alias");
        is_int(o.alpha, 7, "value through alias");
    }
    ok(cnode_equal(cmap_get(root, "use"), cmap_get(root, "base")), "cnode_equal same");
    tconf_done(&t);
    is_int(tconf_run(&t, "a: *nope", cp_keep, &root, NULL), -2, "unknown alias");
    is_str(t.cx.err, "t.yaml:1:4: YAML: unknown alias", "unknown alias message");
    tconf_done(&t);
    is_int(tconf_run(&t, "a: &x [1, *x]", cp_keep, &root, NULL), -2, "self-referencing alias");
    like(t.cx.err, "YAML: unknown alias", "an anchor is not visible inside itself");
    tconf_done(&t);

    /* cnode_equal ignores positions and map order */
    {
        struct cfile *f1 = parse("a: [1, {x: y}]\nb: 2", &err);
        struct cfile *f2 = parse("\n\nb: 2\na:   [1, {x: y}]", &err);
        struct cfile *f3 = parse("a: [1, {x: z}]\nb: 2", &err);

        ok(cnode_equal(f1->docs[0], f2->docs[0]), "equal trees, other positions and order");
        ok(!cnode_equal(f1->docs[0], f3->docs[0]), "different trees");
        cfile_unref(f1);
        cfile_unref(f2);
        cfile_unref(f3);
    }

    /* caps: depth, aliases, alias expansion */
    {
        char deep[200];
        int i;

        for (i = 0; i < 64; i++)
            deep[i] = '[';
        for (; i < 128; i++)
            deep[i] = ']';
        deep[i] = 0;
        f = parse(deep, &err);
        ok(f != NULL, "depth 64 accepted");
        cfile_unref(f);
        free(err);
        memmove(deep + 1, deep, strlen(deep) + 1);
        deep[0] = '[';
        strcat(deep, "]");
        f = parse(deep, &err);
        ok(!f, "depth 65 rejected");
        is_str(err, "t.yaml:1:65: YAML: nesting too deep", "depth message");
        free(err);
    }
    {
        char *text = malloc(8192);
        size_t o = (size_t)sprintf(text, "a: &a x\nb: [");
        for (int i = 0; i < 257; i++)
            o += (size_t)sprintf(text + o, "*a, ");
        strcpy(text + o, "x]\n");
        f = parse(text, &err);
        ok(!f, "alias cap");
        like(err, "t.yaml:2:", "alias cap position");
        like(err, "YAML: too many aliases", "alias cap message");
        free(err);
        /* a "billion laughs" within the alias cap: each level doubles the last */
        o = (size_t)sprintf(text, "l0: &l0 [x, x]\n");
        for (int i = 1; i < 40; i++)
            o += (size_t)sprintf(text + o, "l%d: &l%d [*l%d, *l%d]\n", i, i, i - 1, i - 1);
        f = parse(text, &err);
        ok(!f, "exponential alias expansion rejected");
        like(err, "YAML: too many nodes once aliases are expanded", "expansion cap message");
        free(err);
        free(text);
    }

    is_int(tconf_run(&t, "a: \"x\\0y\"", cp_keep, &root, NULL), -2, "NUL in scalar");
    is_str(t.cx.err, "t.yaml:1:4: YAML: NUL byte in scalar", "NUL message");
    tconf_done(&t);

    f = parse("a: 1\n---\nb: 2\n...\n---\n- 3\n", &err);
    ok(f && f->ndocs == 3, "three documents");
    if (f && f->ndocs == 3) {
        v = cmap_get(f->docs[1], "b");
        ok(v && v->line == 3 && v->col == 4, "second document positions are file positions");
        ok(f->docs[2]->type == CN_SEQ, "third document is a sequence");
    }
    cfile_unref(f);
    f = parse("", &err);
    ok(f && f->ndocs == 0, "empty file: no documents");
    cfile_unref(f);
}

static void test_files(void)
{
    char dir[] = "/tmp/proxyd-conf-test-XXXXXX", path[256], *err = NULL, *p;
    struct conf_ctx cx = {0};
    struct cfile *f;
    FILE *fp;

    ok(mkdtemp(dir) != NULL, "temp dir");
    snprintf(path, sizeof(path), "%s/main.yaml", dir);
    fp = fopen(path, "w");
    fputs("server:\n  - name: s1\n", fp);
    fclose(fp);
    f = cfile_load(path, &err);
    ok(f != NULL, "cfile_load");
    if (f) {
        is_str(f->dir, dir, "file dir");
        is_str(f->path, path, "file path");
        cx.dir = f->dir;
        p = conf_path(&cx, cmap_get(f->docs[0], "server")->items[0]->items[1]);
        snprintf(path, sizeof(path), "%s/s1", dir);
        is_str(p, path, "conf_path is relative to the file's dir");
        free(p);
        cfile_unref(f);
    }
    snprintf(path, sizeof(path), "%s/main.yaml", dir);
    unlink(path);
    f = cfile_load(path, &err);
    ok(!f, "missing file");
    like(err, "main.yaml: cannot open: No such file or directory", "missing file message");
    free(err);
    err = NULL;
    f = cfile_load(dir, &err);
    ok(!f, "directory rejected");
    like(err, "not a regular file", "directory message");
    free(err);
    rmdir(dir);
}

int main(void)
{
    test_apply();
    test_yaml();
    test_files();
    return done_testing();
}
