/* Server intelli_proxy: one port for HTTP and SOCKS clients. It waits (optionally
 * after a PROXY protocol header) for the first byte of the stream, peeks at it
 * without reading it and hands the connection to its socks_server (0x04 SOCKS4,
 * 0x05 SOCKS5) or its http_server (the first letter of an HTTP method); anything
 * else, or nothing within protocol_detection_timeout, is closed silently.
 *
 * g3proxy runs detection as jobs fed through a channel; here it is a watcher on the
 * accepting worker, so protocol_detection_channel_size and protocol_detection_max_jobs
 * are accepted (validated) and have no effect. */
#include <unistd.h>

#include "gen.h"
#include "pp_accept.h"
#include "registry.h"
#include "server.h"

struct intelli_proxy {
    struct server base;
    char *http_name, *socks_name;
    struct server *http, *socks;    /* borrowed: same generation */
    uint64_t detect_timeout_ns;
    uint32_t channel_size;          /* ignored */
    uint32_t max_jobs;              /* ignored */
    int proxy_protocol;             /* 0, 1, 2 */
    uint64_t pp_timeout_ns;
};

static struct intelli_proxy *ip_of(struct server *s)
{
    return container_of(s, struct intelli_proxy, base);
}

/* First letters of the methods http_proxy serves: GET HEAD POST PUT PATCH DELETE
 * CONNECT OPTIONS TRACE. */
static bool http_first_byte(int b)
{
    switch (b) {
    case 'G': case 'H': case 'P': case 'D': case 'C': case 'O': case 'T':
        return true;
    }
    return false;
}

static void ip_done(struct server *s, struct worker *w, struct accepted *a, int first_byte)
{
    struct intelli_proxy *ip = ip_of(s);

    if (first_byte == 0x04 || first_byte == 0x05)
        pre_accept_hand_over(s, ip->socks, w, a);
    else if (http_first_byte(first_byte))
        pre_accept_hand_over(s, ip->http, w, a);
    else
        close(a->fd);
}

static void ip_accept(struct server *s, struct worker *w, struct accepted *a)
{
    struct intelli_proxy *ip = ip_of(s);
    struct pre_accept_conf c = {
        .proxy_protocol = (uint8_t)ip->proxy_protocol,
        .pp_timeout_ns = ip->pp_timeout_ns,
        .peek = true,
        .peek_timeout_ns = ip->detect_timeout_ns,
    };

    pre_accept(s, w, a, &c, ip_done);
}

static int ip_init(struct server *s, struct conf_ctx *cx)
{
    if (!s->listen.set) {
        cx->key = "listen";
        return conf_fail(cx, NULL, "missing required key");
    }
    return 0;
}

static struct server *link_one(struct server *s, struct generation *g, struct conf_ctx *cx,
                               const char *key, const char *name)
{
    struct server *t;

    cx->key = key;
    t = (struct server *)gen_link(g, cx, OBJ_SERVER, name);
    if (t && (t == s || !t->ops->accept)) {
        conf_fail(cx, cmap_get(s->obj.conf, key),
                  t == s ? "a server cannot hand connections to itself"
                         : "server '%s' (type %s) takes no TCP connections", t->obj.name,
                  t->obj.type);
        return NULL;
    }
    return t;
}

static int ip_link(struct server *s, struct generation *g, struct conf_ctx *cx)
{
    struct intelli_proxy *ip = ip_of(s);

    ip->http = link_one(s, g, cx, "http_server", ip->http_name);
    if (!ip->http)
        return -1;
    ip->socks = link_one(s, g, cx, "socks_server", ip->socks_name);
    if (!ip->socks)
        return -1;
    cx->key = NULL;
    return 0;
}

#define IOFF(f) offsetof(struct intelli_proxy, f)
static const struct conf_key intelli_proxy_keys[] = {
    {"http_server", NULL, cp_node_name, IOFF(http_name), NULL, 0, 0, CK_F_REQUIRED},
    {"socks_server", NULL, cp_node_name, IOFF(socks_name), NULL, 0, 0, CK_F_REQUIRED},
    {"protocol_detection_timeout", NULL, cp_duration, IOFF(detect_timeout_ns), "4s", 1,
     3600000},
    {"protocol_detection_channel_size", NULL, cp_u32, IOFF(channel_size), "4096", 1, 1 << 24,
     CK_F_IGNORED},
    {"protocol_detection_max_jobs", NULL, cp_u32, IOFF(max_jobs), "4096", 1, 1 << 24,
     CK_F_IGNORED},
    {"proxy_protocol", NULL, cp_proxy_protocol, IOFF(proxy_protocol)},
    {"proxy_protocol_read_timeout", NULL, cp_duration, IOFF(pp_timeout_ns), "5s", 1, 3600000},
    {0},
};

static const struct conf_key *const ip_keys[] = {server_base_keys, server_listen_keys,
                                                 intelli_proxy_keys, NULL};

const struct server_ops server_intelli_proxy_ops = {
    .type = "intelli_proxy",
    .aliases = (const char *const[]){"intelliproxy", "ppdp_tcp_port", "ppdptcpport", "ppdp_tcp",
                                     "ppdptcp", NULL},
    .keys = ip_keys,
    .size = sizeof(struct intelli_proxy),
    .init = ip_init,
    .link = ip_link,
    .caps = SRV_CAP_TCP_LISTEN,
    .accept = ip_accept,
};
