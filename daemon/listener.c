/* Listening sockets shared across generations; see listener.h. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "confval.h"
#include "gen.h"
#include "listener.h"
#include "sockopt.h"

static bool listen_conf_equal(const struct listen_conf *a, const struct listen_conf *b)
{
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0 &&
           strcmp(a->interface, b->interface) == 0 &&
           memcmp(&a->keepalive, &b->keepalive, sizeof(a->keepalive)) == 0 && a->mss == b->mss &&
           a->backlog == b->backlog && a->mark == b->mark && a->ipv6_only == b->ipv6_only &&
           a->instance == b->instance;
}

static int listen_one(const struct listen_conf *c, const union sockaddr_any *addr, char **err)
{
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    char buf[64];

    if (fd < 0)
        return err_set(err, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (addr->sa.sa_family == AF_INET6) {
        int v6only = c->ipv6_only;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
            goto fail;
    }
    if (c->interface[0] &&
        setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, c->interface, (socklen_t)strlen(c->interface)) < 0)
        goto fail;
    if (c->mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &c->mark, sizeof(c->mark)) < 0)
        goto fail;
    if (c->mss && setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &c->mss, sizeof(c->mss)) < 0)
        goto fail;
    /* accepted sockets inherit it: no system call per connection for the default */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        goto fail;
    /* accepted sockets inherit keepalive settings */
    if (c->keepalive.enable && sock_set_keepalive(fd, &c->keepalive) < 0)
        goto fail;
    if (bind(fd, &addr->sa, addr->sa.sa_family == AF_INET ? sizeof(addr->in) : sizeof(addr->in6)) < 0)
        goto fail;
    if (listen(fd, (int)c->backlog) < 0)
        goto fail;
    return fd;
fail:
    err_set(err, "cannot listen on %s: %s", sockaddr_str(addr, buf, sizeof(buf)), strerror(errno));
    close(fd);
    return -1;
}

static bool port_zero(const struct listen_conf *c)
{
    return c->addr.sa.sa_family == AF_INET ? c->addr.in.sin_port == 0 : c->addr.in6.sin6_port == 0;
}

struct listen_set *listen_get(const struct generation *cur, const char *name,
                              const struct listen_conf *conf, unsigned nworkers, char **err)
{
    struct listen_set *ls;
    union sockaddr_any addr = conf->addr;

    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; cur && i < cur->n[OBJ_SERVER]; i++) {
            struct server *s = (struct server *)cur->objs[OBJ_SERVER][i];
            if (!s->lset || !listen_conf_equal(&s->lset->conf, conf))
                continue;
            /* first the server's own sockets; then a renamed server's, fixed ports only */
            if (pass == 0 ? strcmp(s->obj.name, name) != 0 : port_zero(conf))
                continue;
            listen_set_ref(s->lset);
            return s->lset;
        }
    }

    unsigned n = nworkers * (conf->instance ? conf->instance : 1);
    ls = calloc(1, sizeof(*ls) + n * sizeof(int));
    if (!ls) {
        err_set(err, "out of memory");
        return NULL;
    }
    ls->refs = 1;
    ls->conf = *conf;
    for (unsigned i = 0; i < n; i++)
        ls->fds[i] = -1;
    for (unsigned i = 0; i < n; i++) {
        int fd = listen_one(conf, &addr, err);
        if (fd < 0)
            goto fail;
        ls->fds[i] = fd;
        ls->nfd = i + 1;
        if (i == 0) {
            /* port 0: the others must share the port the kernel chose */
            socklen_t len = sizeof(ls->bound);
            getsockname(fd, &ls->bound.sa, &len);
            addr = ls->bound;
        }
    }
    return ls;
fail:
    for (unsigned i = 0; i < ls->nfd; i++)
        close(ls->fds[i]);
    free(ls);
    return NULL;
}

void listen_set_ref(struct listen_set *ls)
{
    __atomic_add_fetch(&ls->refs, 1, __ATOMIC_RELAXED);
}

void listen_set_unref(struct listen_set *ls)
{
    if (!ls || __atomic_sub_fetch(&ls->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (unsigned i = 0; i < ls->nfd; i++)
        close(ls->fds[i]);
    free(ls);
}

static bool same_ip(const union sockaddr_any *a, const union sockaddr_any *b)
{
    struct ip_addr x, y;

    sockaddr_to_ip(a, &x, NULL);
    sockaddr_to_ip(b, &y, NULL);
    if (x.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&x.v6)) {
        x.family = AF_INET;
        memcpy(&x.v4, &x.v6.s6_addr[12], 4);
    }
    if (y.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&y.v6)) {
        y.family = AF_INET;
        memcpy(&y.v4, &y.v6.s6_addr[12], 4);
    }
    return x.family == y.family && !memcmp(x.b, y.b, x.family == AF_INET ? 4 : 16);
}

static bool is_wildcard(const union sockaddr_any *sa)
{
    if (sa->sa.sa_family == AF_INET)
        return sa->in.sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&sa->in6.sin6_addr);
}

static bool is_loopback(const union sockaddr_any *sa)
{
    struct ip_addr ip;
    static struct ip_net lo4 = {.addr = {.family = AF_INET, .b = {127}}, .prefix = 8};
    static struct ip_net lo6 = {.addr = {.family = AF_INET6, .b = {[15] = 1}}, .prefix = 128};

    sockaddr_to_ip(sa, &ip, NULL);
    return ip_in_net(&ip, &lo4) || ip_in_net(&ip, &lo6);
}

bool listen_is_own(const struct generation *g, const union sockaddr_any *peer,
                   const union sockaddr_any *local)
{
    uint16_t pport;
    struct ip_addr pip;

    sockaddr_to_ip(peer, &pip, &pport);
    for (size_t i = 0; g && i < g->nown; i++) {
        const union sockaddr_any *own = &g->own[i];
        uint16_t lport;
        struct ip_addr lip;

        sockaddr_to_ip(own, &lip, &lport);
        if (lport != pport)
            continue;
        if (is_wildcard(own)) {
            if (is_loopback(peer) || (local && same_ip(peer, local)))
                return true;
        } else if (same_ip(peer, own)) {
            return true;
        }
    }
    return false;
}

bool listen_port_is_own(const struct generation *g, uint16_t port)
{
    for (size_t i = 0; g && i < g->nown; i++) {
        uint16_t p;
        struct ip_addr ip;
        sockaddr_to_ip(&g->own[i], &ip, &p);
        if (p == port)
            return true;
    }
    return false;
}
