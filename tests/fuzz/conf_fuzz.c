/* Fuzz the config path: YAML text -> node tree -> every value grammar through a key
 * table, the way modules read their config. Invariants: no crash, no leak, an error
 * always has a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "confval.h"

struct fz {
    uint64_t dur, size, u64;
    uint32_t u32;
    int i;
    bool b;
    double ratio;
    char *str, *name, *host;
    struct upstream_addr up;
    union sockaddr_any sa;
    struct ip_net net;
    struct port_set ports;
    struct port_range range;
    struct listen_conf listen;
    struct acl_net acl_net, egress, ingress;
    struct acl_ports acl_ports;
    struct acl_proxy_request prq;
    struct acl_strings ua;
    struct acl_dst_host dst;
    struct tcp_speed_limit tcp_lim;
    struct udp_speed_limit udp_lim;
    struct global_speed_limit glim;
    struct rate_quota quota;
    struct tcp_keepalive ka;
    struct sock_misc_opts opts;
    struct sock_buffer sbuf;
    struct tcp_connect_conf tc;
    struct happy_eyeballs_conf he;
    struct resolve_strategy rs;
    struct resolve_redirection rr;
    int pick;
    struct weighted_addrs waddrs;
    struct weighted_names wnames;
    struct http_keepalive hka;
    int fwd;
    struct metrics_tags tags;
    int pp;
};

#define F(f) offsetof(struct fz, f)
static const struct conf_key keys[] = {
    {"dur", NULL, cp_duration, F(dur)},
    {"size", NULL, cp_size, F(size)},
    {"u64", NULL, cp_u64, F(u64)},
    {"u32", NULL, cp_u32, F(u32), NULL, 1, 100},
    {"int", NULL, cp_int, F(i)},
    {"bool", NULL, cp_bool, F(b)},
    {"ratio", NULL, cp_ratio, F(ratio)},
    {"str", NULL, cp_str, F(str)},
    {"name", NULL, cp_node_name, F(name)},
    {"host", NULL, cp_host, F(host)},
    {"upstream", NULL, cp_upstream, F(up)},
    {"sockaddr", NULL, cp_sockaddr, F(sa)},
    {"net", NULL, cp_ip_net, F(net)},
    {"ports", NULL, cp_ports, F(ports)},
    {"range", NULL, cp_port_range, F(range)},
    {"listen", NULL, cp_listen, F(listen)},
    {"acl_net", NULL, cp_acl_net, F(acl_net)},
    {"egress", NULL, cp_acl_egress, F(egress)},
    {"ingress", NULL, cp_acl_ingress, F(ingress)},
    {"acl_ports", NULL, cp_acl_ports, F(acl_ports)},
    {"prq", NULL, cp_acl_proxy_request, F(prq)},
    {"ua", NULL, cp_acl_user_agent, F(ua)},
    {"dst", NULL, cp_acl_dst_host, F(dst)},
    {"tcp_limit", NULL, cp_tcp_speed_limit, F(tcp_lim)},
    {"udp_limit", NULL, cp_udp_speed_limit, F(udp_lim)},
    {"glimit", NULL, cp_global_stream_limit, F(glim)},
    {"quota", NULL, cp_rate_quota, F(quota)},
    {"keepalive", NULL, cp_tcp_keepalive, F(ka)},
    {"opts", NULL, cp_tcp_misc_opts, F(opts)},
    {"sbuf", NULL, cp_sock_buffer, F(sbuf)},
    {"tcp_connect", NULL, cp_tcp_connect, F(tc)},
    {"he", NULL, cp_happy_eyeballs, F(he)},
    {"strategy", NULL, cp_resolve_strategy, F(rs)},
    {"redirect", NULL, cp_resolve_redirection, F(rr)},
    {"pick", NULL, cp_pick_policy, F(pick)},
    {"waddrs", NULL, cp_weighted_addrs, F(waddrs)},
    {"wnames", NULL, cp_weighted_names, F(wnames)},
    {"hka", NULL, cp_http_keepalive, F(hka)},
    {"fwd", NULL, cp_forwarded_type, F(fwd)},
    {"tags", NULL, cp_metrics_tags, F(tags)},
    {"pp", NULL, cp_proxy_protocol, F(pp)},
    {0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct conf_key *const tables[] = {keys, NULL};
    char *err = NULL;
    struct cfile *f = cfile_parse("fuzz.yaml", (const char *)data, size, &err);

    if (!f) {
        if (!err)
            __builtin_trap();
        free(err);
        return 0;
    }
    for (size_t i = 0; i < f->ndocs; i++) {
        struct arena a;
        struct fz obj;
        struct conf_ctx cx = {.kind = "server", .name = "fz", .dir = "/nonexistent",
                              .arena = &a, .node = f->docs[i]};
        arena_init(&a, 1024);
        memset(&obj, 0, sizeof(obj));
        if (conf_apply(&cx, f->docs[i], tables, NULL, &obj) < 0 && !cx.err)
            __builtin_trap();
        (void)cnode_equal(f->docs[i], f->docs[i]);
        free(cx.err);
        arena_free(&a);
    }
    cfile_unref(f);
    return 0;
}
