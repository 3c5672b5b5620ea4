/* Pick policies: weights honoured within a tolerance, the same key always giving the
 * same node, and minimal disruption of the consistent hashes when a node goes away. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "pick.h"
#include "tap.h"

#define KEYS 200000

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static int key_of(uint32_t i, char *buf)
{
    return sprintf(buf, "10.%u.%u.%u192.0.2.1", (i >> 16) & 255, (i >> 8) & 255, i & 255);
}

static int build(struct picker *p, struct arena *a, enum pick_policy pol, const char *const *ids,
                 const double *w, size_t n)
{
    struct pick_node nodes[16];

    for (size_t i = 0; i < n; i++)
        nodes[i] = (struct pick_node){ids[i], w[i]};
    return picker_init(p, a, pol, nodes, n);
}

/* Pick KEYS times (keyed or not) and compare the shares with the weights. */
static void check_distribution(const char *name, enum pick_policy pol, const double *w, size_t n,
                               bool keyed, double tol)
{
    static const char *const ids[] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80",
                                      "10.0.0.4:80", "10.0.0.5:80", "10.0.0.6:80"};
    struct arena a;
    struct picker p;
    unsigned cnt[16] = {0};
    double total = 0, worst = 0;
    char key[64];

    arena_init(&a, 4096);
    ok(build(&p, &a, pol, ids, w, n) == 0, "%s: built", name);
    for (size_t i = 0; i < n; i++)
        total += w[i];
    for (uint32_t i = 0; i < KEYS; i++) {
        int len = key_of(i, key);
        cnt[picker_pick(&p, rnd(), i, keyed ? key : NULL, keyed ? (size_t)len : 0)]++;
    }
    for (size_t i = 0; i < n; i++) {
        double share = (double)cnt[i] / KEYS, want = w[i] / total;
        worst = MAX(worst, fabs(share - want));
        if (w[i] == 0 && cnt[i])
            worst = 1;
    }
    ok(worst <= tol, "%s: shares follow the weights (worst error %.4f, tolerance %.3f)", name,
       worst, tol);
    if (worst > tol)
        for (size_t i = 0; i < n; i++)
            printf("#   node %zu weight %.2f share %.4f\n", i, w[i], (double)cnt[i] / KEYS);
    arena_free(&a);
}

/* Same key, same node; a rebuilt picker agrees; for ketama and rendezvous so does one
 * built from the list in another order. */
static void check_stability(const char *name, enum pick_policy pol)
{
    static const char *const ids[] = {"a:1", "b:1", "c:1", "d:1"};
    static const char *const rev[] = {"d:1", "c:1", "b:1", "a:1"};
    static const double w[] = {1, 2, 1, 3};
    static const double wrev[] = {3, 1, 2, 1};
    struct arena a;
    struct picker p, q, r;
    char key[64];
    int bad = 0, bad_order = 0;
    bool order_free = pol == PICK_KETAMA || pol == PICK_RENDEZVOUS;

    arena_init(&a, 4096);
    build(&p, &a, pol, ids, w, 4);
    build(&q, &a, pol, ids, w, 4);
    build(&r, &a, pol, rev, wrev, 4);
    for (uint32_t i = 0; i < 20000; i++) {
        int len = key_of(i * 7919, key);
        uint32_t x = picker_pick(&p, rnd(), 0, key, (size_t)len);
        uint32_t y = picker_pick(&p, rnd(), 5, key, (size_t)len);
        uint32_t z = picker_pick(&q, rnd(), 9, key, (size_t)len);
        bad += x != y || x != z;
        if (order_free)
            bad_order += strcmp(ids[x], rev[picker_pick(&r, rnd(), 0, key, (size_t)len)]) != 0;
    }
    is_int(bad, 0, "%s: the same key always picks the same node", name);
    if (order_free)
        is_int(bad_order, 0, "%s: the order of the list does not matter", name);
    arena_free(&a);
}

/* Remove node `gone` (of 5): keys that were elsewhere stay where they were, and about
 * its share moves. */
static void check_removal(const char *name, enum pick_policy pol, size_t gone)
{
    static const char *const ids[] = {"n0", "n1", "n2", "n3", "n4"};
    static const double w[] = {1, 1, 1, 1, 1};
    const char *ids2[5];
    double w2[5];
    struct arena a;
    struct picker p, q;
    char key[64];
    int kept_bad = 0, moved = 0;

    for (size_t i = 0, j = 0; i < 5; i++)
        if (i != gone) {
            ids2[j] = ids[i];
            w2[j++] = w[i];
        }
    arena_init(&a, 4096);
    build(&p, &a, pol, ids, w, 5);
    build(&q, &a, pol, ids2, w2, 4);
    for (uint32_t i = 0; i < KEYS / 4; i++) {
        int len = key_of(i, key);
        uint32_t before = picker_pick(&p, 0, 0, key, (size_t)len);
        uint32_t after = picker_pick(&q, 0, 0, key, (size_t)len);
        if (before == gone)
            moved++;
        else
            kept_bad += strcmp(ids[before], ids2[after]) != 0;
    }
    is_int(kept_bad, 0, "%s: removing node %zu moves no key of another node", name, gone);
    ok(fabs((double)moved / (KEYS / 4) - 0.2) < 0.04, "%s: node %zu had about a fifth (%.3f)",
       name, gone, (double)moved / (KEYS / 4));
    arena_free(&a);
}

static void test_round_robin(void)
{
    static const char *const ids[] = {"a", "b", "c"};
    static const char *const ids5[] = {"a", "b", "c", "d", "e"};
    static const double eq[] = {1, 1}, w13[] = {1, 3}, w41111[] = {4, 1, 1, 1, 1};
    struct arena a;
    struct picker p;
    int bad = 0;
    unsigned cnt[3] = {0};

    arena_init(&a, 4096);
    build(&p, &a, PICK_ROUND_ROBIN, ids, eq, 2);
    for (uint64_t s = 0; s < 100; s++)
        bad += picker_pick(&p, rnd(), s, NULL, 0) != s % 2;
    is_int(bad, 0, "round_robin: equal weights alternate");
    is_int(p.nseq, 2, "round_robin: 1:1 schedule has 2 slots");

    build(&p, &a, PICK_ROUND_ROBIN, ids, w13, 2);
    is_int(p.nseq, 4, "round_robin: 1:3 schedule has 4 slots");
    for (uint64_t s = 0; s < 4000; s++)
        cnt[picker_pick(&p, rnd(), s, NULL, 0)]++;
    ok(cnt[0] == 1000 && cnt[1] == 3000, "round_robin: 1:3 exactly honoured (%u, %u)", cnt[0],
       cnt[1]);

    /* smooth: a 4:1:1:1:1 schedule spreads the heavy node out (blocks would give a
     * run of 4) */
    build(&p, &a, PICK_ROUND_ROBIN, ids5, w41111, 5);
    int run = 0, longest = 0;
    for (uint64_t s = 0; s < 40; s++) {
        run = picker_pick(&p, 0, s, NULL, 0) == 0 ? run + 1 : 0;
        longest = MAX(longest, run);
    }
    is_int(longest, 2, "round_robin: 4:1:1:1:1 is interleaved (longest run of the heavy node)");
    arena_free(&a);
}

static void test_serial_and_edges(void)
{
    static const char *const ids[] = {"a", "b", "c"};
    static const double w[] = {0, 2, 1}, zero[] = {0, 0, 0}, neg[] = {1, -1, 1};
    static const double nan_w[] = {1, NAN, 1};
    struct arena a;
    struct picker p;
    unsigned cnt[3] = {0};

    arena_init(&a, 4096);
    build(&p, &a, PICK_SERIAL, ids, w, 3);
    is_int(picker_pick(&p, rnd(), 3, "k", 1), 1, "serial: first node with a positive weight");
    build(&p, &a, PICK_RANDOM, ids, zero, 3);
    for (int i = 0; i < 3000; i++)
        cnt[picker_pick(&p, rnd(), 0, NULL, 0)]++;
    ok(cnt[0] > 800 && cnt[1] > 800 && cnt[2] > 800, "all weights 0: all count as 1");
    ok(build(&p, &a, PICK_RANDOM, ids, neg, 3) < 0, "negative weight refused");
    ok(build(&p, &a, PICK_KETAMA, ids, nan_w, 3) < 0, "NaN weight refused");
    ok(picker_init(&p, &a, PICK_RANDOM, NULL, 0) < 0, "no node refused");
    build(&p, &a, PICK_KETAMA, ids, w, 1);
    is_int(picker_pick(&p, rnd(), 0, "x", 1), 0, "one node: always it");

    /* a weight far above the others: ketama scales its ring down but keeps everyone */
    static const double huge[] = {1e9, 1, 1};
    int rc = build(&p, &a, PICK_KETAMA, ids, huge, 3);
    ok(rc == 0 && p.nring <= PICK_KETAMA_MAX_POINTS + 3 && p.nring > PICK_KETAMA_MAX_POINTS / 2,
       "ketama: ring bounded (%u points)", p.nring);
    memset(cnt, 0, sizeof(cnt));
    for (uint32_t i = 0; i < 1000; i++)
        cnt[picker_pick(&p, 0, 0, &i, sizeof(i))]++;
    ok(cnt[0] == 1000, "ketama: the heavy node takes (nearly) everything");
    static const double unit[] = {1, 1, 1};
    build(&p, &a, PICK_KETAMA, ids, unit, 3);
    is_int(p.nring, 3 * PICK_KETAMA_POINTS, "ketama: %d points per unit weight",
           PICK_KETAMA_POINTS);
    arena_free(&a);
}

static void test_jump_hash_raw(void)
{
    int bad = 0;

    is_int(pick_jump_hash(12345, 1), 0, "jump: one bucket");
    /* growing from n to n+1 buckets only moves keys to the new bucket */
    for (uint32_t n = 1; n < 40; n++)
        for (uint64_t k = 0; k < 2000; k++) {
            uint64_t key = pick_hash(&k, sizeof(k));
            uint32_t a = pick_jump_hash(key, n), b = pick_jump_hash(key, n + 1);
            bad += a >= n || (b != a && b != n);
        }
    is_int(bad, 0, "jump: keys only move to the added bucket");
}

int main(void)
{
    static const double w123[] = {1, 2, 3, 0}, eq4[] = {1, 1, 1, 1}, w13[] = {1, 3};
    static const double w_frac[] = {0.5, 1.5, 1};

    check_distribution("random 1:2:3:0", PICK_RANDOM, w123, 4, false, 0.01);
    check_distribution("random 0.5:1.5:1", PICK_RANDOM, w_frac, 3, false, 0.01);
    check_distribution("round_robin 1:2:3:0", PICK_ROUND_ROBIN, w123, 4, false, 0.001);
    check_distribution("rendezvous 1:2:3:0", PICK_RENDEZVOUS, w123, 4, true, 0.01);
    check_distribution("rendezvous unkeyed 1:3", PICK_RENDEZVOUS, w13, 2, false, 0.01);
    /* 160 points a node: shares vary by a few percent (libketama's known spread) */
    check_distribution("ketama 1:1:1:1", PICK_KETAMA, eq4, 4, true, 0.05);
    check_distribution("ketama 1:2:3:0", PICK_KETAMA, w123, 4, true, 0.05);
    check_distribution("jump_hash 1:1:1:1", PICK_JUMP_HASH, eq4, 4, true, 0.01);
    check_distribution("jump_hash 1:3", PICK_JUMP_HASH, w13, 2, true, 0.01);
    check_distribution("jump_hash 1:2:3:0", PICK_JUMP_HASH, w123, 4, true, 0.01);

    check_stability("ketama", PICK_KETAMA);
    check_stability("rendezvous", PICK_RENDEZVOUS);
    check_stability("jump_hash", PICK_JUMP_HASH);

    check_removal("ketama", PICK_KETAMA, 2);
    check_removal("ketama", PICK_KETAMA, 0);
    check_removal("rendezvous", PICK_RENDEZVOUS, 2);
    check_removal("rendezvous", PICK_RENDEZVOUS, 4);
    check_removal("jump_hash", PICK_JUMP_HASH, 4); /* the last node: see pick.h */

    test_round_robin();
    test_serial_and_edges();
    test_jump_hash_raw();
    return done_testing();
}
