/* Upstream keep-alive pool; see upool.h. A small hash table of idle connections. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "upool.h"
#include "worker.h"

#define UPOOL_BUCKETS 256
#define UPOOL_MAX_IDLE 1024
#define UPOOL_MAX_PER_KEY 256

struct upool_entry {
    struct list link;           /* in its bucket */
    struct list lru;            /* in the pool's LRU, oldest first */
    struct upool *p;
    struct conn c;
    union sockaddr_any peer;
    ev_io io;
    ev_timer timer;
    uint32_t hash;
    char escaper[64];
    char host[HOST_MAX + 1];
    uint16_t port;
    bool tls;
};

struct upool {
    struct worker *w;
    struct list bucket[UPOOL_BUCKETS];
    struct list lru;
    size_t n;
};

static uint32_t key_hash(const struct upool_key *k)
{
    uint32_t h = 2166136261u;
    for (const char *s = k->host; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    for (const char *s = k->escaper; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ k->port) * 16777619u;
    return h ^ k->tls;
}

static bool key_match(const struct upool_entry *e, const struct upool_key *k, uint32_t h)
{
    return e->hash == h && e->port == k->port && e->tls == k->tls && !strcmp(e->host, k->host) &&
           !strcmp(e->escaper, k->escaper);
}

struct upool *upool_new(struct worker *w)
{
    struct upool *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->w = w;
    for (int i = 0; i < UPOOL_BUCKETS; i++)
        LIST_INIT(&p->bucket[i]);
    LIST_INIT(&p->lru);
    return p;
}

static void entry_drop(struct upool_entry *e, bool close_conn)
{
    struct upool *p = e->p;

    ev_io_stop(p->w->loop, &e->io);
    ev_timer_stop(p->w->loop, &e->timer);
    list_del(&e->link);
    list_del(&e->lru);
    p->n--;
    if (close_conn)
        conn_close(&e->c);
    free(e);
}

void upool_free(struct upool *p)
{
    if (!p)
        return;
    while (!list_empty(&p->lru))
        entry_drop(container_of(p->lru.next, struct upool_entry, lru), true);
    free(p);
}

/* Readable while idle: the peer closed or misbehaves. Either way it is unusable. */
static void on_idle_io(struct ev_loop *loop, ev_io *io, int revents)
{
    entry_drop(container_of(io, struct upool_entry, io), true);
}

static void on_idle_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    entry_drop(container_of(t, struct upool_entry, timer), true);
}

void upool_put(struct upool *p, const struct upool_key *k, struct conn *c, double idle_expire,
               const union sockaddr_any *peer)
{
    uint32_t h = key_hash(k);
    struct list *b = &p->bucket[h % UPOOL_BUCKETS], *pos;
    size_t same = 0;
    struct upool_entry *e;

    if (strlen(k->escaper) >= sizeof(e->escaper) || idle_expire <= 0)
        goto drop;
    for (pos = b->next; pos != b; pos = pos->next)
        same += key_match(container_of(pos, struct upool_entry, link), k, h);
    if (same >= UPOOL_MAX_PER_KEY)
        goto drop;
    if (p->n >= UPOOL_MAX_IDLE)
        entry_drop(container_of(p->lru.next, struct upool_entry, lru), true);
    e = calloc(1, sizeof(*e));
    if (!e)
        goto drop;
    e->p = p;
    e->c = *c;
    e->peer = *peer;
    e->hash = h;
    strcpy(e->escaper, k->escaper);
    snprintf(e->host, sizeof(e->host), "%s", k->host);
    e->port = k->port;
    e->tls = k->tls;
    list_add_tail(b, &e->link);
    list_add_tail(&p->lru, &e->lru);
    p->n++;
    IO_INIT_KNOWN(&e->io, on_idle_io, c->fd); /* the relay watched it until now */
    IO_REARM(p->w->loop, &e->io, EV_READ);
    ev_timer_init(&e->timer, on_idle_timer, idle_expire, 0.);
    ev_timer_start(p->w->loop, &e->timer);
    c->fd = -1;
    c->ssl = NULL;
    return;
drop:
    conn_close(c);
}

bool upool_get(struct upool *p, const struct upool_key *k, struct conn *c, union sockaddr_any *peer)
{
    uint32_t h = key_hash(k);
    struct list *b = &p->bucket[h % UPOOL_BUCKETS], *pos;

    /* newest first: the most recently used connection is the least likely to be stale */
    for (pos = b->prev; pos != b; pos = pos->prev) {
        struct upool_entry *e = container_of(pos, struct upool_entry, link);
        if (!key_match(e, k, h))
            continue;
        *c = e->c;
        *peer = e->peer;
        entry_drop(e, false);
        return true;
    }
    return false;
}

size_t upool_idle(const struct upool *p)
{
    return p->n;
}
