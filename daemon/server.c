/* Common server keys and the accept path shared by every server module. */
#include <stdlib.h>
#include <unistd.h>

#include "gen.h"
#include "log.h"
#include "relay.h"
#include "server.h"
#include "sockopt.h"
#include "stats.h"
#include "worker.h"

#define SOFF(f) offsetof(struct server, f)

const struct conf_key server_base_keys[] = {
    /* one event logger serves every object in proxyd: sharing is implicit */
    {"shared_logger", NULL, cp_ascii, SOFF(shared_logger)},
    {"extra_metrics_tags", NULL, cp_metrics_tags, SOFF(extra_tags)},
    {0},
};

const struct conf_key server_listen_keys[] = {
    {"listen", NULL, cp_listen, SOFF(listen)},
    {"listen_in_worker", NULL, cp_bool, SOFF(listen_in_worker), "false"},
    {"ingress_network_filter", CK_ALIASES("ingress_net_filter"), cp_acl_ingress, SOFF(ingress)},
    {0},
};

const struct conf_key server_proxy_keys[] = {
    {"escaper", NULL, cp_node_name, SOFF(escaper_name), NULL, 0, 0, CK_F_REQUIRED},
    {"user_group", NULL, cp_node_name, SOFF(user_group_name)},
    {"auditor", NULL, NULL, 0, NULL, 0, 0, CK_F_UNSUPPORTED},
    {"dst_host_filter_set", NULL, cp_acl_dst_host, SOFF(dst_host_filter)},
    {"dst_port_filter", NULL, cp_acl_ports, SOFF(dst_port_filter)},
    {"tcp_sock_speed_limit", CK_ALIASES("tcp_conn_speed_limit", "tcp_conn_limit", "conn_limit"),
     cp_tcp_speed_limit, SOFF(tcp_speed)},
    {"udp_sock_speed_limit", CK_ALIASES("udp_relay_speed_limit", "udp_relay_limit", "relay_limit"),
     cp_udp_speed_limit, SOFF(udp_speed)},
    {"tcp_copy_buffer_size", NULL, cp_size, SOFF(tcp_copy_buffer_size), "16K", 4096, 16 << 20},
    {"tcp_copy_yield_size", NULL, cp_size, SOFF(tcp_copy_yield_size), "1M", 256 * 1024, 1 << 30},
    {"udp_relay_packet_size", NULL, cp_size, SOFF(udp_relay_packet_size), "4K", 512, 65535},
    {"udp_relay_yield_size", NULL, cp_size, SOFF(udp_relay_yield_size), "1M"},
    {"udp_relay_batch_size", NULL, cp_u32, SOFF(udp_relay_batch_size), "8", 1, 1024},
    {"tcp_misc_opts", NULL, cp_tcp_misc_opts, SOFF(tcp_misc_opts)},
    {"udp_misc_opts", NULL, cp_udp_misc_opts, SOFF(udp_misc_opts)},
    {"task_idle_check_interval", CK_ALIASES("task_idle_check_duration"), cp_duration,
     SOFF(task_idle_check_interval_ns), "60s", 2000, 1800000},
    {"task_idle_max_count", NULL, cp_u32, SOFF(task_idle_max_count), "5", 1, 1000000},
    {"flush_task_log_on_created", NULL, cp_bool, SOFF(flush_task_log_on_created), "false"},
    {"flush_task_log_on_connected", NULL, cp_bool, SOFF(flush_task_log_on_connected), "false"},
    {"task_log_flush_interval", NULL, cp_duration, SOFF(task_log_flush_interval_ns)},
    {"max_connections", CK_ALIASES("max_conns"), cp_u64, SOFF(max_connections), "0"},
    {0},
};

int server_link_common(struct server *s, struct generation *g, struct conf_ctx *cx)
{
    cx->key = "escaper";
    s->escaper = (struct escaper *)gen_link(g, cx, OBJ_ESCAPER, s->escaper_name);
    if (!s->escaper)
        return -1;
    if (s->user_group_name) {
        cx->key = "user_group";
        s->user_group = (struct user_group *)gen_link(g, cx, OBJ_USER_GROUP, s->user_group_name);
        if (!s->user_group)
            return -1;
    }
    cx->key = NULL;
    return 0;
}

void server_accept(struct server *s, struct worker *w, struct accepted *a)
{
    struct server_stats_slot *st = &s->stats->slot[w->id];
    struct ip_addr ip;

    STAT_ADD(st->conn_total, 1);
    sockaddr_to_ip(&a->peer, &ip, NULL);
    if (acl_forbids(acl_net_check(&s->ingress, &ip))) {
        STAT_ADD(st->forbidden_ingress, 1);
        close(a->fd);
        return;
    }
    /* one shared counter per server, kept across reloads: connections of the old
     * generation still count against the limit */
    int64_t alive = __atomic_add_fetch(&s->stats->conn_alive, 1, __ATOMIC_RELAXED);
    a->full = s->max_connections && (uint64_t)alive > s->max_connections;
    if (a->full)
        STAT_ADD(st->refused_full, 1);
    s->ops->accept(s, w, a);
}

void server_conn_done(struct server *s)
{
    __atomic_sub_fetch(&s->stats->conn_alive, 1, __ATOMIC_RELAXED);
}

void server_client_sockopts(struct server *s, const struct accepted *a)
{
    if (s->tcp_misc_opts.set)
        sock_set_tcp_misc(a->fd, a->local.sa.sa_family, &s->tcp_misc_opts);
}

void server_relay_conf(const struct server *s, struct relay_conf *rc)
{
    *rc = (struct relay_conf){
        .buf_size = s->tcp_copy_buffer_size,
        .yield_size = s->tcp_copy_yield_size,
        .idle_interval_ns = s->task_idle_check_interval_ns,
        .idle_max = s->task_idle_max_count,
        .limit = s->tcp_speed,
    };
}
