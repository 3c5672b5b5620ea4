/* The relay: moves bytes between two connections, in both directions, for every
 * server (tunnels, HTTP bodies, port mapping).
 *
 * Each direction has a mode: STREAM (until the source's end of stream), LENGTH (a
 * byte count, e.g. Content-Length) or SCAN (a framing scanner validates the bytes
 * before they may pass, e.g. chunked encoding). Flow control: a direction stops
 * reading when its buffer is full and resumes when the destination drained it.
 * Buffers come from the worker's pool when bytes are in flight and go back when
 * empty. When both ends are plain TCP and no feature needs to see the bytes
 * (STREAM/LENGTH without a scanner), bytes move with splice() through a pooled pipe.
 *
 * Callbacks may stop or free the relay: they return RELAY_GONE then, RELAY_GO on. */
#ifndef PROXYD_RELAY_H
#define PROXYD_RELAY_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "confval_types.h"
#include "task.h"
#include "xprt.h"

struct worker;
struct relay;

enum relay_mode {
    RM_OFF = 0,   /* not moving bytes */
    RM_STREAM,    /* until end of stream */
    RM_LENGTH,    /* exactly `remaining` bytes */
    RM_SCAN,      /* until the scanner says the message ended */
    RM_HOLD,      /* read into the buffer without forwarding; on_hold() looks at it */
};

/* Framing scanner: validate up to n new bytes at p (they follow what was already
 * validated). Return how many bytes may pass (0..n) and set *done when the message
 * ends after them, or return -1 on a framing error. */
typedef ssize_t (*relay_scan_fn)(void *state, const char *p, size_t n, bool *done);

#define RELAY_GO 0
#define RELAY_GONE -1

struct relay_dir {
    uint8_t mode;               /* enum relay_mode */
    bool src_eof;               /* the source ended */
    bool complete;              /* the message (LENGTH/SCAN) ended and was written */
    bool shut_on_eof;           /* STREAM: shut the destination's writing side at the end */
    bool shut_done;
    bool paused;                /* speed limit reached for this window */
    uint64_t remaining;         /* RM_LENGTH */
    relay_scan_fn scan;         /* RM_SCAN */
    void *scan_state;           /* borrowed */
    struct buf *buf;            /* bytes read from the source; owned (pool) */
    size_t ready;               /* bytes at the buffer's head that may be written */
    struct pipe_pair *pipe;     /* splice path; owned (pool) */
    uint64_t bytes;             /* bytes written to the destination */
    uint64_t read_bytes;        /* bytes read from the source */
    bool bulk;                  /* a read filled the buffer: splice pays off from now on */
    /* tcp_sock_speed_limit */
    uint64_t limit;             /* bytes per window; UINT64_MAX = unlimited */
    uint64_t win;               /* current window number */
    uint64_t win_used;
};

struct relay_side {
    struct conn *c;             /* borrowed: owned by the relay's owner */
    ev_io io;
    unsigned armed;             /* EV_READ/EV_WRITE currently set */
    bool rd_ready;              /* may have bytes to read: the poller said so and no read
                                 * came back short since (saves EAGAIN reads) */
    bool watch_quiet;           /* stop watching an idle side for a close: it sent data */
    bool shut_pending;          /* a shutw hit EAGAIN (TLS) */
};

struct relay_conf {
    size_t buf_size;            /* tcp_copy_buffer_size */
    size_t yield_size;          /* tcp_copy_yield_size: bytes per event before yielding */
    uint64_t idle_interval_ns;  /* task_idle_check_interval; 0 = no idle check */
    uint32_t idle_max;          /* task_idle_max_count */
    struct tcp_speed_limit limit; /* upload = dir 0, download = dir 1 */
    bool no_splice;
};

struct relay {
    struct worker *w;           /* borrowed */
    struct relay_side side[2];  /* 0 = client, 1 = upstream */
    struct relay_dir dir[2];    /* dir[0]: client -> upstream; dir[1]: upstream -> client */
    struct relay_conf conf;
    ev_timer idle;
    ev_timer limit_timer;
    uint32_t idle_count;
    uint64_t idle_mark;         /* bytes moved at the last idle check */
    int first_eof;              /* side whose stream ended first, -1 = none yet */
    bool splice_ok;             /* both ends plain TCP */
    bool running;               /* inside relay_run: do not recurse */
    bool again;                 /* relay_kick() while running */
    bool stopped;
    void *owner;                /* borrowed: for callbacks */
    /* A LENGTH or SCAN direction completed (its bytes are all written). */
    int (*on_dir_done)(struct relay *r, int dir);
    /* A HOLD direction read more bytes (or its source ended: dir->src_eof). The owner
     * inspects r->dir[dir].buf, may consume from it and change the mode. */
    int (*on_hold)(struct relay *r, int dir);
    /* The relay ended: both STREAM directions finished (reason TR_FINISHED /
     * TR_CLOSED_BY_*), an error, or idle. The owner cleans up. */
    void (*on_end)(struct relay *r, enum task_reason reason);
};

/* Set up a relay on worker w between two connected conns (nothing moves until a
 * direction gets a mode and relay_kick() runs). */
void relay_init(struct relay *r, struct worker *w, struct conn *client, struct conn *upstream,
                const struct relay_conf *conf, void *owner);
/* Configure a direction. Bytes for its destination can be handed over in `pre`
 * (taken; may be NULL): its first pre_ready bytes are sent as they are (e.g. a
 * rewritten head), the rest counts as read from the source (e.g. body bytes that came
 * with the head). A direction that already holds bytes keeps them and pre must be
 * NULL. */
void relay_dir_set(struct relay *r, int dir, enum relay_mode mode, uint64_t length,
                   relay_scan_fn scan, void *scan_state, struct buf *pre, size_t pre_ready);
/* Start moving / re-evaluate after the owner changed something. May call the
 * callbacks before it returns; returns RELAY_GONE if one of them freed the relay. */
int relay_kick(struct relay *r);
/* Stop every watcher and timer and give buffers back. The conns stay open. */
void relay_stop(struct relay *r);
/* Take the bytes a completed direction read past its message (pipelined data). */
struct buf *relay_dir_take_rest(struct relay *r, int dir);

#endif
