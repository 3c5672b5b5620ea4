/* Socket options; see sockopt.h. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "sockopt.h"

/* whole seconds, at least 1 */
#define MAX_SECS(ns) ((ns) / 1000000000ull ? (ns) / 1000000000ull : 1)

static int setint(int fd, int level, int opt, int v)
{
    return setsockopt(fd, level, opt, &v, sizeof(v));
}

int sock_set_keepalive(int fd, const struct tcp_keepalive *ka)
{
    if (setint(fd, SOL_SOCKET, SO_KEEPALIVE, ka->enable) < 0)
        return -1;
    if (!ka->enable)
        return 0;
    if (ka->idle_ns && setint(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)MAX_SECS(ka->idle_ns)) < 0)
        return -1;
    if (ka->interval_ns &&
        setint(fd, IPPROTO_TCP, TCP_KEEPINTVL, (int)MAX_SECS(ka->interval_ns)) < 0)
        return -1;
    if (ka->count && setint(fd, IPPROTO_TCP, TCP_KEEPCNT, (int)ka->count) < 0)
        return -1;
    return 0;
}

static int set_ip_common(int fd, int family, const struct sock_misc_opts *o)
{
    if (family == AF_INET) {
        if ((o->set & SO_SET_TTL) && setint(fd, IPPROTO_IP, IP_TTL, o->ttl) < 0)
            return -1;
        if ((o->set & SO_SET_TOS) && setint(fd, IPPROTO_IP, IP_TOS, o->tos) < 0)
            return -1;
    } else {
        if ((o->set & SO_SET_HOPLIMIT) && setint(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, o->hop_limit) < 0)
            return -1;
        if ((o->set & SO_SET_TCLASS) && setint(fd, IPPROTO_IPV6, IPV6_TCLASS, o->traffic_class) < 0)
            return -1;
    }
    if ((o->set & SO_SET_MARK) && setsockopt(fd, SOL_SOCKET, SO_MARK, &o->mark, sizeof(o->mark)) < 0)
        return -1;
    return 0;
}

int sock_set_tcp_misc(int fd, int family, const struct sock_misc_opts *o)
{
    /* nodelay is on unless explicitly turned off */
    if (setint(fd, IPPROTO_TCP, TCP_NODELAY, (o->set & SO_SET_NODELAY) ? o->no_delay : 1) < 0)
        return -1;
    if ((o->set & SO_SET_MSS) && setint(fd, IPPROTO_TCP, TCP_MAXSEG, (int)o->mss) < 0)
        return -1;
    if ((o->set & SO_SET_CONGEST) &&
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, o->congestion, (socklen_t)strlen(o->congestion)) < 0)
        return -1;
    return set_ip_common(fd, family, o);
}

int sock_set_udp_misc(int fd, int family, const struct sock_misc_opts *o)
{
    return set_ip_common(fd, family, o);
}

int sock_set_buffers(int fd, const struct sock_buffer *b)
{
    if (b->recv && setint(fd, SOL_SOCKET, SO_RCVBUF, (int)b->recv) < 0)
        return -1;
    if (b->send && setint(fd, SOL_SOCKET, SO_SNDBUF, (int)b->send) < 0)
        return -1;
    return 0;
}
