/* Buffers and splice pipes, pooled per worker. A connection takes a buffer only while
 * bytes are in flight and gives it back as soon as it is empty, so an idle
 * connection holds none. */
#ifndef PROXYD_BUF_H
#define PROXYD_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BUF_DEFAULT_SIZE 16384 /* relay buffers (tcp_copy_buffer_size default) */
#define BUF_SMALL_SIZE 4096    /* heads, handshakes and replies: most fit */

/* Bytes live in data[head, tail); free room is data[tail, size). */
struct buf {
    struct buf *next;           /* free list link while pooled */
    uint32_t size;
    uint32_t head, tail;
    char data[];
};

static inline size_t buf_len(const struct buf *b)
{
    return b->tail - b->head;
}
static inline size_t buf_room(const struct buf *b)
{
    return b->size - b->tail;
}
static inline char *buf_ptr(struct buf *b)
{
    return b->data + b->head;
}
static inline char *buf_end(struct buf *b)
{
    return b->data + b->tail;
}
static inline void buf_consume(struct buf *b, size_t n)
{
    b->head += (uint32_t)n;
    if (b->head == b->tail)
        b->head = b->tail = 0;
}
/* Move the bytes to the front to make room at the end. */
static inline void buf_compact(struct buf *b)
{
    if (b->head) {
        memmove(b->data, b->data + b->head, b->tail - b->head);
        b->tail -= b->head;
        b->head = 0;
    }
}

struct buf_pool;
struct buf_pool *buf_pool_new(void);
void buf_pool_free(struct buf_pool *p);
/* A buffer of at least `size` bytes (0 = BUF_DEFAULT_SIZE), empty. Sizes up to
 * BUF_SMALL_SIZE and BUF_DEFAULT_SIZE come from two pooled classes. NULL on OOM. */
struct buf *buf_get(struct buf_pool *p, size_t size);
/* A copy of b's bytes in a buffer of at least `size` bytes; b is given back. NULL on
 * OOM (b is kept then). */
struct buf *buf_grow(struct buf_pool *p, struct buf *b, size_t size);
/* Give a buffer back (NULL ok). */
void buf_put(struct buf_pool *p, struct buf *b);
/* Buffers held out of the pool / cached in it (for stats and tests). */
size_t buf_pool_out(const struct buf_pool *p);
size_t buf_pool_cached(const struct buf_pool *p);

/* A pipe for splice(): bytes in flight are counted so it returns to the pool only
 * when empty. */
struct pipe_pair {
    struct pipe_pair *next;
    int rfd, wfd;
    size_t len;                 /* bytes inside the pipe */
    size_t cap;                 /* capacity (F_GETPIPE_SZ) */
};
struct pipe_pool;
struct pipe_pool *pipe_pool_new(void);
void pipe_pool_free(struct pipe_pool *p);
struct pipe_pair *pipe_get(struct pipe_pool *p);    /* NULL when none can be made */
void pipe_put(struct pipe_pool *p, struct pipe_pair *pp); /* closes it if not empty */

#endif
