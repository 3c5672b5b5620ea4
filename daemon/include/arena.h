/* Arena: bump allocation from chunks, freed all at once. Used for config trees and
 * for per-task scratch memory. Not thread-safe; an arena has one owner. */
#ifndef PROXYD_ARENA_H
#define PROXYD_ARENA_H

#include <stddef.h>

struct arena_chunk;
struct arena_cleanup;
struct arena {
    struct arena_chunk *head;       /* owned: newest chunk first */
    struct arena_cleanup *cleanups; /* owned: run in reverse order by arena_free() */
    size_t chunk_size;              /* default size of a new chunk */
};

void arena_init(struct arena *a, size_t chunk_size);
/* Zeroed memory aligned for any type, NULL on OOM. Lives until arena_free(). */
void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Run fn(p) when the arena is freed (for objects that own non-arena resources such as
 * an SSL_CTX or a compiled regex). Returns -1 on OOM, after calling fn(p) at once. */
int arena_on_free(struct arena *a, void (*fn)(void *), void *p);
void arena_free(struct arena *a);

#endif
