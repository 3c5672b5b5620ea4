/* The registry: every module compiled into proxyd, one visible list per kind. */
#include <stdio.h>
#include <string.h>

#include "registry.h"

#define OPS(x) ((const struct obj_ops *)&(x))


static const struct obj_ops *const resolvers[] = {
    OPS(resolver_c_ares_ops),
    OPS(resolver_fail_over_ops),
    OPS(resolver_deny_all_ops),
    NULL,
};

static const struct obj_ops *const escapers[] = {
    OPS(escaper_direct_fixed_ops),
    OPS(escaper_dummy_deny_ops),
    NULL,
};

static const struct obj_ops *const user_groups[] = {
    NULL,
};

static const struct obj_ops *const servers[] = {
    OPS(server_http_proxy_ops),
    OPS(server_socks_proxy_ops),
    OPS(server_dummy_close_ops),
    OPS(server_intelli_proxy_ops),
    OPS(server_plain_tcp_port_ops),
    OPS(server_tcp_stream_ops),
    OPS(server_udp_stream_ops),
    NULL,
};

static const struct obj_ops *const *const lists[OBJ_NKINDS] = {
    [OBJ_RESOLVER] = resolvers,
    [OBJ_ESCAPER] = escapers,
    [OBJ_USER_GROUP] = user_groups,
    [OBJ_SERVER] = servers,
};

/* g3proxy types proxyd does not implement (yet): a config using one fails with
 * "unsupported" instead of "unknown". Spelled without underscores. */
static const char *const unsupported[OBJ_NKINDS] = {
    [OBJ_RESOLVER] = " hickory hickorydns trustdns ",
    [OBJ_ESCAPER] = " directfloat directdynamic proxyhttp proxyhttps proxysocks5 "
                    "proxysocks5s proxyfloat proxydynamic routeupstream routeclient routeresolved "
                    "routedstip routeselect routefailover routemapping routequery routegeoip "
                    "trickfloat diverttcp complyaudit ",
    [OBJ_USER_GROUP] = " basic facts ldap ",
    [OBJ_SERVER] = " tlsstream "
                   "sniproxy httprproxy httpreverseproxy httpgateway "
                   "plaintlsport plaintls nativetlsport nativetls plainquicport tcptproxy ",
};

/* "tcp_stream", "tcpstream" and "TcpStream" (normalized "tcpstream") all match. */
static bool type_match(const char *want, const char *have)
{
    for (;;) {
        while (*want == '_')
            want++;
        while (*have == '_')
            have++;
        if (*want != *have)
            return false;
        if (!*want)
            return true;
        want++;
        have++;
    }
}

const void *registry_find(enum obj_kind kind, const char *type, bool *unsup)
{
    char squeezed[64], probe[68];
    size_t j = 0;

    *unsup = false;
    for (const struct obj_ops *const *o = lists[kind]; *o; o++) {
        if (type_match(type, (*o)->type))
            return *o;
        for (const char *const *a = (*o)->aliases; a && *a; a++)
            if (type_match(type, *a))
                return *o;
    }
    for (const char *p = type; *p && j + 1 < sizeof(squeezed); p++)
        if (*p != '_')
            squeezed[j++] = *p;
    squeezed[j] = 0;
    snprintf(probe, sizeof(probe), " %s ", squeezed);
    *unsup = j && strstr(unsupported[kind], probe) != NULL;
    return NULL;
}

const struct obj_ops *const *registry_list(enum obj_kind kind)
{
    return lists[kind];
}
