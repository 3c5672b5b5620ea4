/* Values the config grammars produce (reference §1.4) and the data path consumes.
 * Everything here lives in the owning object's arena unless marked otherwise. */
#ifndef PROXYD_CONFVAL_TYPES_H
#define PROXYD_CONFVAL_TYPES_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define NS_PER_SEC 1000000000ull
#define NS_PER_MS  1000000ull

union sockaddr_any {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
};

/* An IP address without port (family AF_INET or AF_INET6; 0 = unset). */
struct ip_addr {
    uint8_t family;
    union {
        struct in_addr v4;
        struct in6_addr v6;
        uint8_t b[16];
    };
};

/* A network: address + prefix length. */
struct ip_net {
    struct ip_addr addr;
    uint8_t prefix;
};

#define HOST_MAX 255
enum host_kind { HOST_NONE = 0, HOST_DOMAIN, HOST_IP };

/* Upstream address: "<ip>[:port]", "<domain>[:port]", "[v6]:port". Fixed size so a
 * task can hold its target without allocating. */
struct upstream_addr {
    uint8_t kind;               /* enum host_kind */
    uint16_t port;              /* 0 = not given (context default applies) */
    struct ip_addr ip;          /* when kind == HOST_IP */
    char host[HOST_MAX + 1];    /* domain (lower-cased) or IP text, NUL-terminated */
};

struct port_range {
    uint16_t lo, hi;            /* inclusive */
};

struct port_set {
    size_t n;
    struct port_range *r;       /* arena */
};

/* ---- tcp keepalive, socket options ---- */
struct tcp_keepalive {
    bool enable;
    uint64_t idle_ns;           /* TCP_KEEPIDLE */
    uint64_t interval_ns;       /* TCP_KEEPINTVL, 0 = system */
    uint32_t count;             /* TCP_KEEPCNT, 0 = system */
};

#define SO_SET_NODELAY   0x01
#define SO_SET_MSS       0x02
#define SO_SET_TTL       0x04
#define SO_SET_HOPLIMIT  0x08
#define SO_SET_TOS       0x10
#define SO_SET_TCLASS    0x20
#define SO_SET_CONGEST   0x40
#define SO_SET_MARK      0x80
struct sock_misc_opts {
    uint32_t set;               /* SO_SET_* bits: which fields were given */
    bool no_delay;
    uint32_t mss;
    uint8_t ttl, hop_limit, tos, traffic_class;
    uint32_t mark;
    char congestion[16];
};

struct sock_buffer {
    uint32_t recv, send;        /* 0 = system default */
};

/* ---- listen ---- */
struct listen_conf {
    bool set;                   /* a listen key was given */
    union sockaddr_any addr;
    socklen_t addrlen;
    char interface[16];         /* SO_BINDTODEVICE, "" = none */
    struct tcp_keepalive keepalive;
    uint32_t mss;
    uint32_t backlog;           /* default 4096 */
    uint32_t mark;
    bool ipv6_only;
    uint32_t instance;          /* listeners per worker (default 1) */
    double scale;               /* 0 = unset */
    bool follow_cpu_affinity;
};

/* ---- ACLs (reference §1.4 "ACLs") ----
 * Strictness order, strictest first. A rule set holds entries for each action; a
 * lookup checks the actions in this order and the first set containing the item
 * wins; otherwise the default applies. */
enum acl_action {
    ACL_FORBID_LOG = 0,
    ACL_FORBID,
    ACL_PERMIT_LOG,
    ACL_PERMIT,
    ACL_NACTIONS,
};

struct acl_net {
    bool set;                   /* configured at all (unset = everything permitted) */
    enum acl_action def;        /* action when nothing matches */
    size_t n[ACL_NACTIONS];
    struct ip_net *nets[ACL_NACTIONS];
    uint8_t implicit;           /* ACL_IMPLICIT_* */
};
#define ACL_IMPLICIT_EGRESS  1  /* forbid unspecified/loopback/link-local/discard unless listed */
#define ACL_IMPLICIT_INGRESS 2  /* permit 127.0.0.1 and ::1 unless listed */

struct acl_ports {
    bool set;
    enum acl_action def;
    struct port_set ports[ACL_NACTIONS];
};

/* proxy request types (bit per type) */
#define PRQ_HTTP_FORWARD        0x01
#define PRQ_HTTPS_FORWARD       0x02
#define PRQ_FTP_OVER_HTTP       0x04
#define PRQ_HTTP_CONNECT        0x08
#define PRQ_SOCKS_TCP_CONNECT   0x10
#define PRQ_SOCKS_UDP_ASSOCIATE 0x20
struct acl_proxy_request {
    bool set;
    enum acl_action def;
    uint32_t mask[ACL_NACTIONS];
};

struct acl_strings {            /* user agent product tokens, exact host lists */
    bool set;
    enum acl_action def;
    size_t n[ACL_NACTIONS];
    char **s[ACL_NACTIONS];     /* lower-cased */
};

struct acl_regex {
    char *parent;               /* NULL or domain the regex applies under */
    void *code;                 /* pcre2_code *, freed with the arena */
};

struct acl_regexes {
    bool set;
    enum acl_action def;
    size_t n[ACL_NACTIONS];
    struct acl_regex *r[ACL_NACTIONS];
};

/* dst host rule set: exact -> child -> regex -> subnet; if none hits, the strictest
 * default among the configured sub-rules wins. */
struct acl_dst_host {
    bool set;
    struct acl_strings exact;
    struct acl_strings child;
    struct acl_regexes regex;
    struct acl_net subnet;      /* implicit egress forbids */
};

/* ---- rate and speed limits ---- */
struct tcp_speed_limit {
    bool set;
    uint8_t shift;              /* window = 2^shift ms (0..12, default 10) */
    uint64_t upload, download;  /* bytes per window; 0 = blocked */
};

struct udp_speed_limit {
    bool set;
    uint8_t shift;
    uint64_t upload_bytes, download_bytes;     /* per window; 0 = unlimited */
    uint64_t upload_packets, download_packets; /* per window; 0 = unlimited */
};

struct global_speed_limit {
    bool set;
    uint64_t replenish_interval_ns;             /* default 1s */
    uint64_t replenish_bytes, max_burst_bytes;
    uint64_t replenish_packets, max_burst_packets;
};

/* A token bucket quota: one token every interval, at most `burst` saved. */
struct rate_quota {
    bool set;
    uint64_t interval_ns;
    uint32_t burst;
};

/* ---- connecting ---- */
struct tcp_connect_conf {
    uint32_t max_retry;         /* default 2 */
    uint64_t each_timeout_ns;   /* default 30s */
};

struct happy_eyeballs_conf {
    uint64_t resolution_delay_ns;          /* 50ms */
    uint64_t second_resolution_timeout_ns; /* 2s */
    uint32_t first_address_family_count;   /* 1 */
    uint64_t connection_attempt_delay_ns;  /* 250ms, 100ms..2s */
};

enum resolve_order { RQ_IPV4_FIRST = 0, RQ_IPV6_FIRST, RQ_IPV4_ONLY, RQ_IPV6_ONLY };
enum resolve_pick { RP_RANDOM = 0, RP_FIRST };
struct resolve_strategy {
    uint8_t query;              /* enum resolve_order */
    uint8_t pick;               /* enum resolve_pick */
};

struct resolve_redirect_rule {
    bool parent;                /* false: exact domain; true: any subdomain of domain */
    char *domain;               /* lower-cased */
    char *to_host;              /* a domain to resolve instead, or NULL */
    size_t nips;
    struct ip_addr *ips;        /* fixed answers when to_host is NULL */
};
struct resolve_redirection {
    size_t n;
    struct resolve_redirect_rule *rules;
};

enum pick_policy {
    PICK_RANDOM = 0,
    PICK_SERIAL,
    PICK_ROUND_ROBIN,
    PICK_KETAMA,
    PICK_RENDEZVOUS,
    PICK_JUMP_HASH,
};

struct weighted_addr {
    struct upstream_addr addr;
    double weight;              /* default 1.0 */
};
struct weighted_addrs {
    size_t n;
    struct weighted_addr *v;
};

struct weighted_name {
    char *name;
    double weight;
};
struct weighted_names {
    size_t n;
    struct weighted_name *v;
};

/* ---- HTTP ---- */
struct http_keepalive {
    bool enable;
    uint64_t idle_expire_ns;    /* default 60s */
};

enum forwarded_type { FWD_NONE = 0, FWD_CLASSIC, FWD_STANDARD };

struct http_forward_capability {
    bool forward_https, forward_ftp, forward_ftp_get, forward_ftp_put, forward_ftp_del;
};

struct conn_pool_conf {
    uint64_t check_interval_ns; /* 10s */
    uint32_t max_idle_count;    /* 1024 */
    uint32_t min_idle_count;    /* 32 */
    uint64_t idle_timeout_ns;   /* 5min */
};

/* ---- TLS: validated at load time, the SSL_CTX is built then too ---- */
struct tls_client_conf {
    bool set;
    void *ctx;                  /* SSL_CTX *, freed with the arena */
    bool disable_sni;
    bool insecure;
    uint64_t handshake_timeout_ns; /* 10s */
};

struct tls_server_conf {
    bool set;
    void *ctx;                  /* SSL_CTX *, freed with the arena */
    bool enable_client_auth;
    uint64_t handshake_timeout_ns; /* 10s */
};

struct metrics_tag {
    char *name, *value;
};
struct metrics_tags {
    size_t n;
    struct metrics_tag *v;
};

#endif
