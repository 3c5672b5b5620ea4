/* Buffer and pipe pools; see buf.h. Each pool belongs to one worker. */
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"

#define BUF_POOL_MAX_CACHED 256
#define PIPE_POOL_MAX_CACHED 64
#define PIPE_SIZE (1 << 16)

struct buf_pool {
    struct buf *free;
    size_t nfree;
    size_t out;
};

struct buf_pool *buf_pool_new(void)
{
    return calloc(1, sizeof(struct buf_pool));
}

void buf_pool_free(struct buf_pool *p)
{
    if (!p)
        return;
    while (p->free) {
        struct buf *b = p->free;
        p->free = b->next;
        free(b);
    }
    free(p);
}

struct buf *buf_get(struct buf_pool *p, size_t size)
{
    struct buf *b;

    if (!size)
        size = BUF_DEFAULT_SIZE;
    if (size == BUF_DEFAULT_SIZE && p->free) {
        b = p->free;
        p->free = b->next;
        p->nfree--;
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
    if (!b)
        return;
    p->out--;
    if (b->size == BUF_DEFAULT_SIZE && p->nfree < BUF_POOL_MAX_CACHED) {
        b->next = p->free;
        p->free = b;
        p->nfree++;
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
    return p->nfree;
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
    fcntl(pp->wfd, F_SETPIPE_SZ, PIPE_SIZE);
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
