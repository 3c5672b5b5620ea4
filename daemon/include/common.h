/* Small things every file uses: container_of, lists, BUG_ON, result codes. */
#ifndef PROXYD_COMMON_H
#define PROXYD_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <ev.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Cheap invariant checks: a failed one is a bug in proxyd, never bad input. */
#define BUG_ON(cond)                                                                               \
    do {                                                                                           \
        if (unlikely(cond))                                                                        \
            bug_at(__FILE__, __LINE__, #cond);                                                     \
    } while (0)
__attribute__((noreturn)) void bug_at(const char *file, int line, const char *what);

/* Results of state-machine steps. Synchronous calls return 0 / -1 instead. */
enum step { STEP_OK = 0, STEP_AGAIN, STEP_DONE, STEP_ERROR };

/* Intrusive doubly linked list (circular, head is a sentinel). */
struct list {
    struct list *next, *prev;
};
#define LIST_INIT(l) ((l)->next = (l)->prev = (l))
static inline bool list_empty(const struct list *l)
{
    return l->next == l;
}
static inline void list_add_tail(struct list *head, struct list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}
static inline void list_del(struct list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
#define list_for_each_safe(pos, tmp, head)                                                         \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

/* Single-writer statistics counters: one thread adds, others read. Relaxed atomics
 * keep readers race-free without a locked instruction on the writer side. */
#define STAT_ADD(c, n) __atomic_store_n(&(c), __atomic_load_n(&(c), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define STAT_SUB(c, n) __atomic_store_n(&(c), __atomic_load_n(&(c), __ATOMIC_RELAXED) - (n), __ATOMIC_RELAXED)
#define STAT_GET(c) __atomic_load_n(&(c), __ATOMIC_RELAXED)

/* (Re)arm an io watcher on a socket libev already knows, for `events` (0 = leave it
 * stopped). ev_io_set() would flag the fd as possibly new, which makes libev re-add it
 * to epoll (a failing system call) every time; ev_io_modify() does not. The first
 * watcher on a new socket is set up with ev_io_init() as usual. */
#define IO_REARM(loop, w, events_)                                                                 \
    do {                                                                                           \
        ev_io_stop((loop), (w));                                                                   \
        if (events_) {                                                                             \
            ev_io_modify((w), (events_));                                                          \
            ev_io_start((loop), (w));                                                              \
        }                                                                                          \
    } while (0)
/* A watcher for a socket some other watcher of the same loop already registered. */
#define IO_INIT_KNOWN(w, cb, fd_)                                                                  \
    do {                                                                                           \
        ev_init((w), (cb));                                                                        \
        (w)->fd = (fd_);                                                                           \
        ev_io_modify((w), 0);                                                                      \
    } while (0)

/* Formatted error message for a caller: *err = malloc'd text; returns -1.
 * err may be NULL (message dropped). */
int err_set(char **err, const char *fmt, ...) PRINTF(2, 3);

/* Bounded string helpers. */
char *xstrndup(const char *s, size_t n);              /* NULL on OOM */
bool str_ieq(const char *a, const char *b);
bool str_ieqn(const char *a, size_t alen, const char *b); /* a (not NUL-terminated) == b */

/* Monotonic clock in microseconds / nanoseconds; wall clock in microseconds. */
uint64_t now_mono_us(void);
uint64_t now_wall_us(void);

#endif
