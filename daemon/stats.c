/* Per-worker counter blocks; see stats.h. */
#include <stdlib.h>
#include <string.h>

#include "stats.h"

#define STATS_NEW(type, slot_type)                                                                 \
    do {                                                                                           \
        struct type *s = aligned_alloc(64, (sizeof(*s) + STATS_MAX_WORKERS * sizeof(slot_type) +  \
                                            63) / 64 * 64);                                          \
        if (s) {                                                                                   \
            memset(s, 0, sizeof(*s) + STATS_MAX_WORKERS * sizeof(slot_type));                     \
            s->refs = 1;                                                                           \
            s->nslots = STATS_MAX_WORKERS;                                                         \
        }                                                                                          \
        return s;                                                                                  \
    } while (0)

/* Sum every uint64_t field of the slots (slots are plain arrays of counters). */
static void sum_slots(const void *slots, size_t slot_size, unsigned n, uint64_t *out, size_t nf)
{
    memset(out, 0, nf * sizeof(*out));
    for (unsigned i = 0; i < n; i++) {
        const uint64_t *c = (const uint64_t *)((const char *)slots + i * slot_size);
        for (size_t f = 0; f < nf; f++)
            out[f] += STAT_GET(c[f]);
    }
}

struct server_stats *server_stats_new(void)
{
    STATS_NEW(server_stats, struct server_stats_slot);
}

struct server_stats *server_stats_ref(struct server_stats *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void server_stats_unref(struct server_stats *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(s);
}

void server_stats_sum(const struct server_stats *s, struct server_stats_slot *out)
{
    sum_slots(s->slot, sizeof(s->slot[0]), s->nslots, (uint64_t *)out,
              offsetof(struct server_stats_slot, out_bytes) / sizeof(uint64_t) + 1);
}

struct escaper_stats *escaper_stats_new(void)
{
    STATS_NEW(escaper_stats, struct escaper_stats_slot);
}

struct escaper_stats *escaper_stats_ref(struct escaper_stats *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void escaper_stats_unref(struct escaper_stats *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(s);
}

void escaper_stats_sum(const struct escaper_stats *s, struct escaper_stats_slot *out)
{
    sum_slots(s->slot, sizeof(s->slot[0]), s->nslots, (uint64_t *)out,
              offsetof(struct escaper_stats_slot, out_bytes) / sizeof(uint64_t) + 1);
}
