/* Generations: escaper loop detection, lookups, spec lists. Includes gen.c to reach
 * its statics. */
#include "../../../daemon/gen.c"

#include "tap.h"

static struct escaper *mk(struct generation *g, struct cfile *f, const char *name)
{
    struct escaper *e = calloc(1, sizeof(*e));
    e->obj.kind = OBJ_ESCAPER;
    e->obj.name = name;
    e->obj.conf = f->docs[0];
    e->obj.gen = g;
    obj_append(g, &e->obj);
    return e;
}

static void link_to(struct escaper *e, struct escaper *a, struct escaper *b)
{
    e->next = calloc(2, sizeof(*e->next));
    e->next[e->nnext++] = a;
    if (b)
        e->next[e->nnext++] = b;
}

int main(void)
{
    char *err = NULL;
    struct cfile *f = cfile_parse("loop.yaml", "name: x\n", 8, &err);
    struct generation g = {0};

    struct escaper *a = mk(&g, f, "a"), *b = mk(&g, f, "b"), *c = mk(&g, f, "c"),
                   *d = mk(&g, f, "d");
    /* a -> b -> c, a -> c, d alone: a DAG with a diamond, no loop */
    link_to(a, b, c);
    link_to(b, c, NULL);
    ok(check_escaper_loops(&g, &err) == 0, "diamond is not a loop");
    is_int(err == NULL, 1, "no error message");

    /* c -> a closes a loop */
    link_to(c, a, NULL);
    ok(check_escaper_loops(&g, &err) < 0, "a -> b -> c -> a is rejected");
    like(err, "loop.yaml:1:1: escaper 'a': escapers form a loop", "error names the file and escaper");
    free(err);
    err = NULL;

    /* a self loop */
    free(c->next);
    c->next = NULL;
    c->nnext = 0;
    link_to(d, d, NULL);
    ok(check_escaper_loops(&g, &err) < 0, "d -> d is rejected");
    like(err, "escaper 'd'", "self loop names d");
    free(err);

    ok(gen_find(&g, OBJ_ESCAPER, "c") == &c->obj, "gen_find finds c");
    ok(gen_find(&g, OBJ_ESCAPER, "zz") == NULL, "gen_find misses zz");
    ok(gen_find(&g, OBJ_SERVER, "a") == NULL, "kinds are separate");
    is_str(obj_kind_name(OBJ_USER_GROUP), "user-group", "kind names");

    struct spec_list l = {0};
    ok(spec_list_add(&l, OBJ_SERVER, f->docs[0], f, 0) == 0, "spec added");
    is_int(f->refs, 2, "spec holds a file reference");
    spec_list_free(&l);
    is_int(f->refs, 1, "freeing the list drops it");

    for (size_t i = 0; i < g.n[OBJ_ESCAPER]; i++) {
        struct escaper *e = (struct escaper *)g.objs[OBJ_ESCAPER][i];
        free(e->next);
        free(e);
    }
    free(g.objs[OBJ_ESCAPER]);
    cfile_unref(f);
    return done_testing();
}
