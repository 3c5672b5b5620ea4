/* Socket options from config structs. */
#ifndef PROXYD_SOCKOPT_H
#define PROXYD_SOCKOPT_H

#include "confval_types.h"

/* 0 / -1 (errno set). */
int sock_set_keepalive(int fd, const struct tcp_keepalive *ka);
/* TCP options; family selects TTL vs hop limit and TOS vs traffic class. */
int sock_set_tcp_misc(int fd, int family, const struct sock_misc_opts *o);
int sock_set_udp_misc(int fd, int family, const struct sock_misc_opts *o);
int sock_set_buffers(int fd, const struct sock_buffer *b);

#endif
