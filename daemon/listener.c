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

bool listen_conf_equal(const struct listen_conf *a, const struct listen_conf *b)
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

struct listen_set *listen_get(const struct generation *cur, const struct listen_conf *conf,
                              unsigned nworkers, char **err)
{
    struct listen_set *ls;
    union sockaddr_any addr = conf->addr;

    for (size_t i = 0; cur && i < cur->n[OBJ_SERVER]; i++) {
        struct server *s = (struct server *)cur->objs[OBJ_SERVER][i];
        if (s->lset && listen_conf_equal(&s->lset->conf, conf)) {
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
