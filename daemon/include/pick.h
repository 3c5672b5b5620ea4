/* Selective pick policies (reference §1.4 "selective pick policy"): choose one of n
 * weighted nodes with random, serial, round_robin, ketama, rendezvous or jump_hash.
 *
 * A picker is built once at config time (its tables live in the owning object's
 * arena) and is read-only afterwards, so any worker may use it without locks. The
 * state a policy needs per call comes from the caller: a random number (random), a
 * sequence number (round_robin: the caller keeps one counter per worker) and a key
 * (the hashing policies; without a key they hash the random number).
 *
 * Weights: a node with weight 0 is never picked, unless every weight is 0 (then all
 * count as 1). Hashing policies identify a node by its id string, not its position,
 * so reordering the list changes nothing for ketama and rendezvous.
 *
 *  random      weighted random choice.
 *  serial      the first node with a positive weight.
 *  round_robin smooth weighted round robin (nginx's interleaving): over every
 *              window of W consecutive sequence numbers each node is chosen in
 *              proportion to its weight, spread out rather than in runs (W is the
 *              sum of the weights scaled to integers, at most ~4096 + n).
 *  ketama      consistent hash ring: PICK_KETAMA_POINTS points per unit of weight
 *              (at least one per node; the ring is scaled down past
 *              PICK_KETAMA_MAX_POINTS). Removing a node only moves the keys it had.
 *  rendezvous  highest random weight: score = weight / -ln(hash(key, node)) in (0,1);
 *              the best score wins. Removing a node only moves the keys it had.
 *  jump_hash   Lamport & Veach's jump consistent hash over a bucket list in which
 *              each node holds consecutive buckets in proportion to its weight (the
 *              same integer weights as round_robin). Minimal disruption holds when
 *              nodes are added or removed at the end of the list, as with the
 *              unweighted algorithm; removing a node in the middle renumbers the
 *              buckets after it. */
#ifndef PROXYD_PICK_H
#define PROXYD_PICK_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "confval_types.h"

#define PICK_KETAMA_POINTS 160
#define PICK_KETAMA_MAX_POINTS (1u << 16)
#define PICK_INT_WEIGHT_TOTAL 4096

struct pick_node {
    const char *id;             /* borrowed: stable identity (e.g. "host:port") */
    double weight;              /* >= 0 */
};

struct pick_point {
    uint32_t hash;
    uint32_t node;
};

struct picker {
    uint8_t policy;             /* enum pick_policy */
    uint32_t n;
    uint32_t first;             /* serial: first node with a positive weight */
    double total;               /* sum of the effective weights */
    double *cum;                /* arena: [n] running sums of the weights (random) */
    double *weight;             /* arena: [n] effective weights (rendezvous) */
    uint64_t *id_hash;          /* arena: [n] hash of each id (rendezvous) */
    uint32_t *seq;              /* arena: [nseq] node per slot (round_robin schedule,
                                 * jump_hash buckets) */
    uint32_t nseq;
    struct pick_point *ring;    /* arena: [nring] sorted by hash (ketama) */
    uint32_t nring;
};

/* Build a picker for n >= 1 nodes (ids and weights are copied into a). 0, or -1 on
 * OOM or bad input (n == 0, a negative or non-finite weight). */
int picker_init(struct picker *p, struct arena *a, enum pick_policy policy,
                const struct pick_node *nodes, size_t n);
/* Index of the chosen node (< p->n). rnd: a random number (random, and the hashing
 * policies without a key); seq: the caller's round-robin counter value; key (may be
 * NULL): what the hashing policies hash. */
uint32_t picker_pick(const struct picker *p, uint64_t rnd, uint64_t seq, const void *key,
                     size_t keylen);

/* The 64-bit hash the hashing policies use (FNV-1a with a 64-bit finalizer). */
uint64_t pick_hash(const void *key, size_t len);
/* Jump consistent hash: a bucket in [0, nbuckets) for key. nbuckets >= 1. */
uint32_t pick_jump_hash(uint64_t key, uint32_t nbuckets);

#endif
