/* Before a port server (plain_tcp_port, intelli_proxy) hands a new connection to the
 * server behind it: read a PROXY protocol header, exactly and nothing past it, and/or
 * wait for the first byte of the stream, which is peeked and never read. Nothing the
 * next server must see is consumed, so no byte is copied twice.
 *
 * The wait is a short-lived object on the worker: it pins the generation (so the
 * server objects stay valid), is listed with the worker's connections (offline and
 * quit close it) and has a timer for each stage. */
#ifndef PROXYD_PP_ACCEPT_H
#define PROXYD_PP_ACCEPT_H

#include <stdbool.h>
#include <stdint.h>

#include "server.h"

/* A connection went through this many hand-overs: it is dropped (servers that hand
 * over to each other in a loop). */
#define SERVER_MAX_HOPS 8

struct pre_accept_conf {
    uint8_t proxy_protocol;     /* 0 = none; 1 or 2: a header of that version comes first
                                 * and a connection without a valid one is dropped */
    uint64_t pp_timeout_ns;     /* proxy_protocol_read_timeout */
    bool peek;                  /* then wait for the first byte of the stream */
    uint64_t peek_timeout_ns;   /* silent close when none came in time */
};

/* Called once the wait is over: a->peer and a->local hold the header's addresses (a
 * PROXY command; LOCAL, UNKNOWN and UNSPEC keep the socket's), a->sock_peer the real
 * peer. first_byte is the peeked byte (0..255), or -1 when c->peek was false. Takes
 * ownership of a->fd (typically: pre_accept_hand_over()). s's connection is ended
 * (server_conn_done) by pre_accept() after done returns. */
typedef void (*pre_accept_done_fn)(struct server *s, struct worker *w, struct accepted *a,
                                   int first_byte);

/* For an accept op: wait as c says, then call done (at once when c asks for nothing),
 * or close the connection (bad header, end of stream, timeout, offline). In every case
 * the connection s was given ends with exactly one server_conn_done(s). c is copied. */
void pre_accept(struct server *s, struct worker *w, struct accepted *a,
                const struct pre_accept_conf *c, pre_accept_done_fn done);

/* Hand a to server `to` of the same generation (server_accept), counting the hop;
 * past SERVER_MAX_HOPS the connection is closed and a warning logged. Takes a->fd. */
void pre_accept_hand_over(struct server *from, struct server *to, struct worker *w,
                          struct accepted *a);

#endif
