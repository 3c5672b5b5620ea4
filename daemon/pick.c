/* Selective pick policies; contracts and the description of each policy in pick.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "pick.h"

/* Finalizer of MurmurHash3 (fmix64): spreads every input bit over the output. */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

uint64_t pick_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return mix64(h ^ len);
}

/* Lamport & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014): the
 * key's bucket jumps forward with decreasing probability as buckets are added. */
uint32_t pick_jump_hash(uint64_t key, uint32_t nbuckets)
{
    int64_t b = -1, j = 0;

    while (j < (int64_t)nbuckets) {
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
    }
    return (uint32_t)b;
}

/* (0, 1), never 0: from the top 53 bits. */
static double unit_interval(uint64_t h)
{
    return ((double)(h >> 11) + 0.5) / 9007199254740992.0;
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Integer weights: about PICK_INT_WEIGHT_TOTAL in all, each positive weight at least
 * 1, then divided by their common divisor (1:1 becomes 1:1, not 2048:2048). */
static uint64_t int_weights(const double *w, size_t n, double total, uint32_t *k)
{
    uint64_t g = 0, sum = 0;

    for (size_t i = 0; i < n; i++) {
        double x = w[i] > 0 ? floor(w[i] / total * PICK_INT_WEIGHT_TOTAL + 0.5) : 0;
        k[i] = w[i] > 0 ? (uint32_t)MAX(1.0, x) : 0;
        g = gcd64(g, k[i]);
    }
    for (size_t i = 0; i < n; i++) {
        k[i] = (uint32_t)(k[i] / (g ? g : 1));
        sum += k[i];
    }
    return sum;
}

static int cmp_point(const void *a, const void *b)
{
    const struct pick_point *x = a, *y = b;

    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

static int build_ketama(struct picker *p, struct arena *a, const struct pick_node *nodes,
                        const double *w)
{
    double scale = PICK_KETAMA_POINTS, want = 0;
    uint64_t total = 0;
    char id[320];

    for (uint32_t i = 0; i < p->n; i++)
        want += w[i] * PICK_KETAMA_POINTS;
    if (want > PICK_KETAMA_MAX_POINTS)
        scale = PICK_KETAMA_POINTS * (PICK_KETAMA_MAX_POINTS / want);
    uint32_t *pts = calloc(p->n, sizeof(*pts));
    if (!pts)
        return -1;
    for (uint32_t i = 0; i < p->n; i++) {
        pts[i] = w[i] > 0 ? (uint32_t)MAX(1.0, floor(w[i] * scale + 0.5)) : 0;
        total += pts[i];
    }
    p->ring = arena_alloc(a, (size_t)total * sizeof(*p->ring));
    if (!p->ring) {
        free(pts);
        return -1;
    }
    for (uint32_t i = 0; i < p->n; i++) {
        /* point j of a node depends on its id and j only: other nodes never move it */
        for (uint32_t j = 0; j < pts[i]; j++) {
            int len = snprintf(id, sizeof(id), "%s#%u", nodes[i].id, j);
            uint64_t h = pick_hash(id, (size_t)MIN(len, (int)sizeof(id) - 1));
            p->ring[p->nring++] = (struct pick_point){(uint32_t)(h >> 32), i};
        }
    }
    free(pts);
    qsort(p->ring, p->nring, sizeof(*p->ring), cmp_point);
    return 0;
}

/* Smooth weighted round robin over integer weights k (sum L): each step adds every
 * weight to its node's credit and takes the node with the most, which then pays L. */
static void build_smooth_rr(uint32_t *seq, const uint32_t *k, uint32_t n, uint64_t L)
{
    int64_t *cur = calloc(n, sizeof(*cur));

    if (!cur || (uint64_t)n * L > (1ull << 26)) {
        /* too big to interleave at load time: blocks in list order */
        uint64_t s = 0;
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < k[i]; j++)
                seq[s++] = i;
        free(cur);
        return;
    }
    for (uint64_t s = 0; s < L; s++) {
        uint32_t best = 0;
        for (uint32_t i = 0; i < n; i++) {
            cur[i] += k[i];
            if (cur[i] > cur[best])
                best = i;
        }
        cur[best] -= (int64_t)L;
        seq[s] = best;
    }
    free(cur);
}

int picker_init(struct picker *p, struct arena *a, enum pick_policy policy,
                const struct pick_node *nodes, size_t n)
{
    double *w;
    bool any = false;

    memset(p, 0, sizeof(*p));
    if (n == 0 || n > UINT32_MAX / 2)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!(nodes[i].weight >= 0) || !isfinite(nodes[i].weight))
            return -1;
        any |= nodes[i].weight > 0;
    }
    p->policy = (uint8_t)policy;
    p->n = (uint32_t)n;
    w = p->weight = arena_alloc(a, n * sizeof(*w));
    if (!w)
        return -1;
    for (size_t i = 0; i < n; i++) {
        w[i] = any ? nodes[i].weight : 1.0;
        p->total += w[i];
    }
    while (w[p->first] <= 0)
        p->first++;

    switch (policy) {
    case PICK_RANDOM:
        if (!(p->cum = arena_alloc(a, n * sizeof(*p->cum))))
            return -1;
        for (size_t i = 0; i < n; i++)
            p->cum[i] = (i ? p->cum[i - 1] : 0) + w[i];
        break;
    case PICK_SERIAL:
        break;
    case PICK_ROUND_ROBIN:
    case PICK_JUMP_HASH: {
        uint32_t *k = calloc(n, sizeof(*k));
        if (!k)
            return -1;
        uint64_t L = int_weights(w, n, p->total, k);
        if (L > UINT32_MAX || !(p->seq = arena_alloc(a, (size_t)L * sizeof(*p->seq)))) {
            free(k);
            return -1;
        }
        p->nseq = (uint32_t)L;
        if (policy == PICK_ROUND_ROBIN) {
            build_smooth_rr(p->seq, k, p->n, L);
        } else {
            uint64_t s = 0;
            for (uint32_t i = 0; i < p->n; i++)
                for (uint32_t j = 0; j < k[i]; j++)
                    p->seq[s++] = i;
        }
        free(k);
        break;
    }
    case PICK_KETAMA:
        if (build_ketama(p, a, nodes, w) < 0)
            return -1;
        break;
    case PICK_RENDEZVOUS:
        if (!(p->id_hash = arena_alloc(a, n * sizeof(*p->id_hash))))
            return -1;
        for (size_t i = 0; i < n; i++)
            p->id_hash[i] = pick_hash(nodes[i].id, strlen(nodes[i].id));
        break;
    default:
        return -1;
    }
    return 0;
}

uint32_t picker_pick(const struct picker *p, uint64_t rnd, uint64_t seq, const void *key,
                     size_t keylen)
{
    uint64_t h = key ? pick_hash(key, keylen) : mix64(rnd);

    if (p->n == 1)
        return 0;
    switch (p->policy) {
    case PICK_RANDOM: {
        double x = unit_interval(rnd) * p->total;
        uint32_t lo = 0, hi = p->n - 1;
        /* first node whose running sum exceeds x (zero weights never qualify) */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (p->cum[mid] > x)
                hi = mid;
            else
                lo = mid + 1;
        }
        while (lo > 0 && p->weight[lo] <= 0)
            lo--; /* rounding at the very top: x == total */
        return lo;
    }
    case PICK_SERIAL:
        return p->first;
    case PICK_ROUND_ROBIN:
        return p->seq[seq % p->nseq];
    case PICK_JUMP_HASH:
        return p->seq[pick_jump_hash(h, p->nseq)];
    case PICK_KETAMA: {
        uint32_t kh = (uint32_t)(h >> 32), lo = 0, hi = p->nring;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (p->ring[mid].hash < kh)
                lo = mid + 1;
            else
                hi = mid;
        }
        return p->ring[lo == p->nring ? 0 : lo].node;
    }
    case PICK_RENDEZVOUS: {
        uint32_t best = p->first;
        double best_score = -1;
        for (uint32_t i = 0; i < p->n; i++) {
            if (p->weight[i] <= 0)
                continue;
            double score = p->weight[i] / -log(unit_interval(mix64(h ^ p->id_hash[i])));
            if (score > best_score) {
                best_score = score;
                best = i;
            }
        }
        return best;
    }
    }
    return 0;
}
