/* Server plain_tcp_port: a bare TCP listener in front of another server, optionally
 * taking a PROXY protocol header (v1 or v2) first. The header is read exactly (see
 * pp_accept.c), so the next server gets a clean stream whose client address is the one
 * the header named; the ingress filter here applies to the real socket peer, the next
 * server's to the header's address. */
#include <unistd.h>

#include "gen.h"
#include "pp_accept.h"
#include "registry.h"
#include "server.h"

struct plain_tcp_port {
    struct server base;
    char *next_name;                /* server */
    struct server *next;            /* borrowed: same generation */
    int proxy_protocol;             /* 0, 1, 2 */
    uint64_t pp_timeout_ns;
};

static struct plain_tcp_port *ptp_of(struct server *s)
{
    return container_of(s, struct plain_tcp_port, base);
}

static void ptp_done(struct server *s, struct worker *w, struct accepted *a, int first_byte)
{
    pre_accept_hand_over(s, ptp_of(s)->next, w, a);
}

static void ptp_accept(struct server *s, struct worker *w, struct accepted *a)
{
    struct plain_tcp_port *p = ptp_of(s);
    struct pre_accept_conf c = {
        .proxy_protocol = (uint8_t)p->proxy_protocol,
        .pp_timeout_ns = p->pp_timeout_ns,
    };

    pre_accept(s, w, a, &c, ptp_done);
}

static int ptp_init(struct server *s, struct conf_ctx *cx)
{
    if (!s->listen.set) {
        cx->key = "listen";
        return conf_fail(cx, NULL, "missing required key");
    }
    return 0;
}

static int ptp_link(struct server *s, struct generation *g, struct conf_ctx *cx)
{
    struct plain_tcp_port *p = ptp_of(s);

    cx->key = "server";
    p->next = (struct server *)gen_link(g, cx, OBJ_SERVER, p->next_name);
    if (!p->next)
        return -1;
    if (p->next == s || !p->next->ops->accept)
        return conf_fail(cx, cmap_get(s->obj.conf, "server"),
                         p->next == s ? "a server cannot hand connections to itself"
                                      : "server '%s' (type %s) takes no TCP connections",
                         p->next->obj.name, p->next->obj.type);
    cx->key = NULL;
    return 0;
}

#define POFF(f) offsetof(struct plain_tcp_port, f)
static const struct conf_key plain_tcp_port_keys[] = {
    {"server", NULL, cp_node_name, POFF(next_name), NULL, 0, 0, CK_F_REQUIRED},
    {"proxy_protocol", NULL, cp_proxy_protocol, POFF(proxy_protocol)},
    {"proxy_protocol_read_timeout", NULL, cp_duration, POFF(pp_timeout_ns), "5s", 1, 3600000},
    {0},
};

static const struct conf_key *const ptp_keys[] = {server_base_keys, server_listen_keys,
                                                  plain_tcp_port_keys, NULL};

const struct server_ops server_plain_tcp_port_ops = {
    .type = "plain_tcp_port",
    .aliases = (const char *const[]){"plaintcpport", "plain_tcp", "plaintcp", NULL},
    .keys = ptp_keys,
    .size = sizeof(struct plain_tcp_port),
    .init = ptp_init,
    .link = ptp_link,
    .caps = SRV_CAP_TCP_LISTEN,
    .accept = ptp_accept,
};
