/* The registry: every compiled-in module, listed in registry.c. */
#ifndef PROXYD_REGISTRY_H
#define PROXYD_REGISTRY_H

#include "obj_types.h"

/* Generic view of the ops head shared by the four kinds. */
struct obj_ops {
    OBJ_OPS_HEAD(struct obj);
};

/* The ops table of any object: every kind's base struct has its ops pointer right
 * after struct obj. */
static inline const struct obj_ops *obj_ops(const struct obj *o)
{
    return *(const struct obj_ops *const *)(o + 1);
}
static inline void obj_set_ops(struct obj *o, const struct obj_ops *ops)
{
    *(const struct obj_ops **)(o + 1) = ops;
}

/* Find the module for a (normalized) type name of that kind; CamelCase and
 * underscore-less spellings match too. NULL if unknown; *unsupported is set when it
 * is a g3proxy type proxyd does not implement yet. */
const void *registry_find(enum obj_kind kind, const char *type, bool *unsupported);
/* NULL-terminated list of the modules of a kind (for -V and docs). */
const struct obj_ops *const *registry_list(enum obj_kind kind);

extern const struct resolver_ops resolver_c_ares_ops;
extern const struct resolver_ops resolver_fail_over_ops;
extern const struct resolver_ops resolver_deny_all_ops;
extern const struct escaper_ops escaper_direct_fixed_ops;
extern const struct escaper_ops escaper_dummy_deny_ops;
extern const struct server_ops server_http_proxy_ops;
extern const struct server_ops server_socks_proxy_ops;
extern const struct server_ops server_dummy_close_ops;
extern const struct server_ops server_intelli_proxy_ops;
extern const struct server_ops server_plain_tcp_port_ops;
extern const struct server_ops server_tcp_stream_ops;
extern const struct server_ops server_udp_stream_ops;

#endif
