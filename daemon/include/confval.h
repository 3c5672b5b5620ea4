/* Value grammars (reference §1.4). Each cp_* is a conf_parse_fn: it parses node n into
 * the slot (type named in the comment), allocating from cx->arena, and on bad input
 * calls conf_fail() at the offending node and returns -1. Bounds come from the key's
 * min/max when min < max. */
#ifndef PROXYD_CONFVAL_H
#define PROXYD_CONFVAL_H

#include "conf.h"
#include "confval_types.h"

/* ---- scalars (confval.c) ---- */
int cp_ignore(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);   /* - */
int cp_str(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);      /* char * */
int cp_ascii(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);    /* char * */
int cp_node_name(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);/* char * */
int cp_bool(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);     /* bool */
int cp_int(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);      /* int */
int cp_u32(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);      /* uint32_t */
int cp_u64(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);      /* uint64_t */
int cp_double(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);   /* double */
int cp_duration(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* uint64_t ns */
int cp_size(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);     /* uint64_t */
int cp_size32(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);   /* uint32_t */
int cp_ratio(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);    /* double 0..1 */
int cp_path(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);     /* char * abs */

/* Plain helpers for grammars built from others (no slot/key). */
int conf_scalar(struct conf_ctx *cx, const struct cnode *n, const char **out);
int conf_parse_duration(const char *s, uint64_t *ns);  /* 0 / -1 */
int conf_parse_size(const char *s, uint64_t *bytes);   /* 0 / -1 */
int conf_parse_bool(const struct cnode *n, bool *b);   /* 0 / -1 */
int conf_parse_i64(const char *s, int64_t *v);         /* 0 / -1; decimal or 0x hex */

/* ---- addresses (confval_net.c) ---- */
int cp_upstream(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct upstream_addr */
int cp_sockaddr(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* union sockaddr_any */
int cp_env_sockaddr(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* union sockaddr_any */
int cp_ip(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);       /* struct ip_addr */
int cp_ip_net(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);   /* struct ip_net */
int cp_ports(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);    /* struct port_set */
int cp_port_range(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);/* struct port_range */
int cp_listen(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);   /* struct listen_conf */
int cp_interface(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);/* char[16] */
int cp_host(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);     /* char * (domain or IP) */

/* Parse "host[:port]" text (no YAML node): 0 / -1 with *why set to a static reason. */
int upstream_parse(const char *s, struct upstream_addr *out, const char **why);
int ip_parse(const char *s, struct ip_addr *out);                  /* 0 / -1 */
int ip_net_parse(const char *s, struct ip_net *out);               /* 0 / -1 */
int domain_check(const char *s, size_t len);                       /* 0 / -1 */
void ip_to_sockaddr(const struct ip_addr *ip, uint16_t port, union sockaddr_any *sa,
                    socklen_t *len);
void sockaddr_to_ip(const union sockaddr_any *sa, struct ip_addr *ip, uint16_t *port);
bool ip_in_net(const struct ip_addr *ip, const struct ip_net *net);
/* "1.2.3.4:80" / "[::1]:80" into buf; returns buf */
const char *sockaddr_str(const union sockaddr_any *sa, char *buf, size_t len);
const char *ip_str(const struct ip_addr *ip, char *buf, size_t len);
bool port_set_has(const struct port_set *ps, uint16_t port);

/* ---- ACLs (confval_acl.c) ---- */
int cp_acl_net(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);     /* struct acl_net */
int cp_acl_egress(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct acl_net */
int cp_acl_ingress(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct acl_net */
int cp_acl_ports(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);   /* struct acl_ports */
int cp_acl_proxy_request(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct acl_proxy_request */
int cp_acl_user_agent(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct acl_strings */
int cp_acl_dst_host(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct acl_dst_host */

/* Lookups. An unset ACL permits. */
enum acl_action acl_net_check(const struct acl_net *acl, const struct ip_addr *ip);
enum acl_action acl_ports_check(const struct acl_ports *acl, uint16_t port);
enum acl_action acl_proxy_request_check(const struct acl_proxy_request *acl, uint32_t prq);
enum acl_action acl_user_agent_check(const struct acl_strings *acl, const char *ua, size_t len);
/* host is a domain (lower-case) or an IP literal */
enum acl_action acl_dst_host_check(const struct acl_dst_host *acl, const struct upstream_addr *host);
static inline bool acl_forbids(enum acl_action a)
{
    return a == ACL_FORBID || a == ACL_FORBID_LOG;
}

/* ---- limits, connect, resolve, pick, HTTP, misc (confval_misc.c) ---- */
int cp_tcp_speed_limit(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct tcp_speed_limit */
int cp_udp_speed_limit(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct udp_speed_limit */
int cp_global_stream_limit(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct global_speed_limit */
int cp_global_dgram_limit(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct global_speed_limit */
int cp_rate_quota(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);     /* struct rate_quota */
int cp_tcp_keepalive(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct tcp_keepalive */
int cp_tcp_misc_opts(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct sock_misc_opts */
int cp_udp_misc_opts(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct sock_misc_opts */
int cp_sock_buffer(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);    /* struct sock_buffer */
int cp_tcp_connect(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);    /* struct tcp_connect_conf */
int cp_happy_eyeballs(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct happy_eyeballs_conf */
int cp_resolve_strategy(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct resolve_strategy */
int cp_resolve_redirection(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct resolve_redirection */
int cp_pick_policy(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);    /* enum pick_policy (int) */
int cp_weighted_addrs(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct weighted_addrs */
int cp_weighted_names(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct weighted_names */
int cp_http_keepalive(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct http_keepalive */
int cp_forwarded_type(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* enum forwarded_type (int) */
int cp_http_forward_capability(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* struct http_forward_capability */
int cp_http_server_id(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* char * */
int cp_proxy_protocol(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* int 0/1/2 */
int cp_conn_pool(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);      /* struct conn_pool_conf */
int cp_metrics_tags(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct metrics_tags */
int cp_rfc3339(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);       /* int64_t unix seconds */

/* ---- TLS (confval_tls.c) ---- */
int cp_tls_client(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct tls_client_conf */
int cp_tls_server(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *);  /* struct tls_server_conf */
int cp_tls_version(struct conf_ctx *, const struct cnode *, void *, const struct conf_key *); /* int (TLS1_x_VERSION) */

#endif
