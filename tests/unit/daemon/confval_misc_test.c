/* Limits, socket options, connect, resolve, pick, HTTP and misc grammars (confval_misc.c). */
#include "tap.h"
#include "testconf.h"

static union {
    char b[4096];
    max_align_t align;
} scratch;

#define ERR(yaml, fn, prefix, why)                                                              \
    (memset(&scratch, 0, sizeof(scratch)),                                                         \
     tc_check_err(__FILE__, __LINE__, yaml, fn, &scratch, NULL, prefix, why))
/* Parse (the tconf stays alive: values may point into its arena). */
#define PARSE(t, yaml, fn, slot) tc_parse_ok(__FILE__, __LINE__, t, yaml, fn, slot, NULL)

/* Parse a value holding no pointers. */
#define RUN(yaml, fn, slot)                                                                        \
    do {                                                                                           \
        struct tconf t_;                                                                           \
        PARSE(&t_, yaml, fn, slot);                                                                \
        tconf_done(&t_);                                                                           \
    } while (0)


static void test_speed(void)
{
    struct tcp_speed_limit tl;
    struct udp_speed_limit ul;
    struct global_speed_limit gl;

    RUN("10M", cp_tcp_speed_limit, &tl);
    ok(tl.set && tl.shift == 10 && tl.upload == 10000000 && tl.download == 10000000,
       "tcp size: both ways per 2^10 ms");
    RUN("{shift: 8, north: 1KiB, south_bytes: 2K}", cp_tcp_speed_limit, &tl);
    ok(tl.shift == 8 && tl.upload == 1024 && tl.download == 2000, "tcp map with aliases");
    RUN("{download: 0}", cp_tcp_speed_limit, &tl);
    ok(tl.shift == 10 && tl.download == 0 && tl.upload == UINT64_MAX,
       "tcp: 0 blocks, omitted direction unlimited, shift defaults to 10");
    RUN("{shift_millis: 0, upload_bytes: 1}", cp_tcp_speed_limit, &tl);
    ok(tl.shift == 0 && tl.upload == 1, "shift 0 allowed");
    ERR("{shift: 13}", cp_tcp_speed_limit,
        "t.yaml:1:9: server 's1': key 'shift': ", "13 is out of range [0, 12]");
    ERR("{up: 1}", cp_tcp_speed_limit, "t.yaml:1:2: server 's1': unknown key 'up'", "");
    ERR("[1]", cp_tcp_speed_limit, P, "expected a size or a map, got a sequence");
    ERR("fast", cp_tcp_speed_limit, P, "invalid size 'fast'");

    RUN("1M", cp_udp_speed_limit, &ul);
    ok(ul.set && ul.shift == 10 && ul.upload_bytes == 1000000 && ul.download_bytes == 1000000 &&
           !ul.upload_packets && !ul.download_packets,
       "udp size: bytes only");
    RUN("{shift: 4, upload_packets: 10, south_packets: 20, north_bytes: 5}", cp_udp_speed_limit,
        &ul);
    ok(ul.shift == 4 && ul.upload_packets == 10 && ul.download_packets == 20 &&
           ul.upload_bytes == 5 && ul.download_bytes == 0,
       "udp map: packets, 0 = unlimited");
    ERR("{north_packets: -1}", cp_udp_speed_limit,
        "t.yaml:1:17: server 's1': key 'north_packets': ", "out of range");

    RUN("2M", cp_global_stream_limit, &gl);
    ok(gl.set && gl.replenish_bytes == 2000000 && gl.max_burst_bytes == 2000000 &&
           gl.replenish_interval_ns == NS_PER_SEC,
       "global stream size");
    RUN("{replenish_interval: 100ms, replenish_bytes: 1K}", cp_global_stream_limit, &gl);
    ok(gl.replenish_interval_ns == 100 * NS_PER_MS && gl.replenish_bytes == 1000 &&
           gl.max_burst_bytes == 1000,
       "global stream map: burst defaults to replenish");
    RUN("{replenish_bytes: 1K, max_burst_bytes: 10K}", cp_global_stream_limit, &gl);
    ok(gl.replenish_interval_ns == NS_PER_SEC && gl.max_burst_bytes == 10000, "explicit burst");
    ERR("{max_burst_bytes: 1K}", cp_global_stream_limit,
        "t.yaml:1:1: server 's1': key 'replenish_bytes': ", "missing required key");
    ERR("{replenish_packets: 1}", cp_global_stream_limit,
        "t.yaml:1:2: server 's1': unknown key 'replenish_packets'", "");
    ERR("0", cp_global_stream_limit, P, "must be greater than 0");
    ERR("{replenish_bytes: 1, replenish_interval: 0}", cp_global_stream_limit,
        "t.yaml:1:42: server 's1': key 'k': ", "replenish_interval must be greater than 0");

    RUN("{replenish_packets: 100}", cp_global_dgram_limit, &gl);
    ok(gl.replenish_packets == 100 && gl.max_burst_packets == 100 && gl.replenish_bytes == 0,
       "global datagram: packets only");
    RUN("{replenish_bytes: 1M, replenish_packets: 10, max_burst_packets: 50}",
        cp_global_dgram_limit, &gl);
    ok(gl.max_burst_bytes == 1000000 && gl.max_burst_packets == 50, "global datagram bursts");
    RUN("1K", cp_global_dgram_limit, &gl);
    ok(gl.replenish_bytes == 1000 && gl.replenish_packets == 0, "global datagram size");
    ERR("{replenish_interval: 1s}", cp_global_dgram_limit, P,
        "set replenish_bytes or replenish_packets");
}

static void test_rate(void)
{
    struct rate_quota q;

    RUN("500", cp_rate_quota, &q);
    ok(q.set && q.interval_ns == 2 * NS_PER_MS && q.burst == 500, "int: per second");
    RUN("100/s", cp_rate_quota, &q);
    ok(q.interval_ns == 10 * NS_PER_MS && q.burst == 100, "100/s");
    RUN("60/m", cp_rate_quota, &q);
    ok(q.interval_ns == NS_PER_SEC && q.burst == 60, "60/m");
    RUN("'1000 / h'", cp_rate_quota, &q);
    ok(q.interval_ns == 3600 * NS_PER_MS && q.burst == 1000, "1000/h with spaces");
    RUN("{rate: 10, max_burst: 30}", cp_rate_quota, &q);
    ok(q.interval_ns == 100 * NS_PER_MS && q.burst == 30, "map rate + burst");
    RUN("{replenish_interval: 100ms}", cp_rate_quota, &q);
    ok(q.interval_ns == 100 * NS_PER_MS && q.burst == 1, "replenish_interval alone: burst 1");
    RUN("{replenish_interval: 100ms, max_burst: 30}", cp_rate_quota, &q);
    ok(q.interval_ns == 100 * NS_PER_MS && q.burst == 30, "replenish_interval + burst");
    RUN("{rate: 1/s, replenish_interval: 5s}", cp_rate_quota, &q);
    ok(q.interval_ns == 5 * NS_PER_SEC && q.burst == 1, "later replenish_interval wins");
    RUN("{replenish_interval: 5s, rate: 4/s}", cp_rate_quota, &q);
    ok(q.interval_ns == 250 * NS_PER_MS && q.burst == 4, "later rate wins");
    ERR("0", cp_rate_quota, P, "invalid rate '0'");
    ERR("10/d", cp_rate_quota, P, "invalid rate");
    ERR("4294967296", cp_rate_quota, P, "invalid rate");
    ERR("{max_burst: 3}", cp_rate_quota, P, "set rate or replenish_interval");
    ERR("{rate: 1, max_burst: 0}", cp_rate_quota,
        "t.yaml:1:22: server 's1': key 'max_burst': ", "out of range");
}

static void test_sock(void)
{
    struct tcp_keepalive ka;
    struct sock_misc_opts mo;
    struct sock_buffer sb;

    RUN("true", cp_tcp_keepalive, &ka);
    ok(ka.enable && ka.idle_ns == 60 * NS_PER_SEC, "keepalive true: idle 60s");
    RUN("false", cp_tcp_keepalive, &ka);
    ok(!ka.enable, "keepalive false");
    RUN("30", cp_tcp_keepalive, &ka);
    ok(ka.enable && ka.idle_ns == 30 * NS_PER_SEC, "keepalive duration: enabled, idle");
    RUN("1", cp_tcp_keepalive, &ka);
    ok(ka.enable && ka.idle_ns == NS_PER_SEC, "keepalive 1 is a second, not a boolean");
    RUN("0", cp_tcp_keepalive, &ka);
    ok(!ka.enable, "keepalive 0: disabled");
    RUN("{idle_time: 2m}", cp_tcp_keepalive, &ka);
    ok(!ka.enable && ka.idle_ns == 120 * NS_PER_SEC, "keepalive map: enable defaults to false");
    RUN("{enable: true, probe_interval: 5s, probe_count: 3}", cp_tcp_keepalive, &ka);
    ok(ka.enable && ka.idle_ns == 60 * NS_PER_SEC && ka.interval_ns == 5 * NS_PER_SEC &&
           ka.count == 3,
       "keepalive map");
    ERR("{probe_count: 0}", cp_tcp_keepalive,
        "t.yaml:1:15: server 's1': key 'probe_count': ", "out of range");
    ERR("soon", cp_tcp_keepalive, P, "invalid duration 'soon'");

    RUN("{}", cp_tcp_misc_opts, &mo);
    ok(mo.set == 0 && mo.no_delay, "tcp misc: nothing set, no_delay reads true");
    RUN("{no_delay: false, mss: 1400, ttl: 64, tos: 0x10, congestion_control: bbr, mark: 7}",
        cp_tcp_misc_opts, &mo);
    is_int(mo.set,
           SO_SET_NODELAY | SO_SET_MSS | SO_SET_TTL | SO_SET_TOS | SO_SET_CONGEST | SO_SET_MARK,
           "tcp misc set bits");
    ok(!mo.no_delay && mo.mss == 1400 && mo.ttl == 64 && mo.tos == 16 && mo.mark == 7,
       "tcp misc values");
    is_str(mo.congestion, "bbr", "congestion control");
    RUN("{time_to_live: 1, hop_limit: 255, type_of_service: 0, traffic_class: 3, "
        "netfilter_mark: 1}",
        cp_udp_misc_opts, &mo);
    is_int(mo.set, SO_SET_TTL | SO_SET_HOPLIMIT | SO_SET_TOS | SO_SET_TCLASS | SO_SET_MARK,
           "udp misc set bits");
    ok(mo.ttl == 1 && mo.hop_limit == 255 && mo.traffic_class == 3 && !mo.no_delay,
       "udp misc values");
    ERR("{no_delay: true}", cp_udp_misc_opts, "t.yaml:1:2: server 's1': unknown key 'no_delay'",
        "");
    ERR("{ttl: 256}", cp_tcp_misc_opts,
        "t.yaml:1:7: server 's1': key 'ttl': ", "out of range [1, 255]");
    ERR("{mss: 10}", cp_tcp_misc_opts,
        "t.yaml:1:7: server 's1': key 'mss': ", "out of range [88, 65535]");
    ERR("{congestion_control: averyveryverylongname}", cp_tcp_misc_opts,
        "t.yaml:1:22: server 's1': key 'k': ", "congestion control name must be 1 to 15");
    ERR("1", cp_tcp_misc_opts, P, "expected a map, got a scalar");

    RUN("64K", cp_sock_buffer, &sb);
    ok(sb.recv == 64000 && sb.send == 64000, "sock buffer size: both");
    RUN("{recv: 1MiB}", cp_sock_buffer, &sb);
    ok(sb.recv == 1 << 20 && sb.send == 0, "sock buffer map, 0 = system default");
    ERR("{send: 8G}", cp_sock_buffer, "t.yaml:1:8: server 's1': key 'send': ", "too large");
}

static void test_connect(void)
{
    struct tcp_connect_conf tc;
    struct happy_eyeballs_conf he;

    RUN("{}", cp_tcp_connect, &tc);
    ok(tc.max_retry == 2 && tc.each_timeout_ns == 30 * NS_PER_SEC, "tcp connect defaults");
    RUN("{max_retry: 0, each_timeout: 5s}", cp_tcp_connect, &tc);
    ok(tc.max_retry == 0 && tc.each_timeout_ns == 5 * NS_PER_SEC, "tcp connect values");
    ERR("{each_timeout: 0}", cp_tcp_connect,
        "t.yaml:1:16: server 's1': key 'k': ", "each_timeout must be greater than 0");
    ERR("{retry: 1}", cp_tcp_connect, "t.yaml:1:2: server 's1': unknown key 'retry'", "");

    RUN("{}", cp_happy_eyeballs, &he);
    ok(he.resolution_delay_ns == 50 * NS_PER_MS &&
           he.second_resolution_timeout_ns == 2 * NS_PER_SEC &&
           he.first_address_family_count == 1 && he.connection_attempt_delay_ns == 250 * NS_PER_MS,
       "happy eyeballs defaults");
    RUN("{connection_attempt_delay: 2s, first_address_family_count: 2}", cp_happy_eyeballs, &he);
    ok(he.connection_attempt_delay_ns == 2 * NS_PER_SEC && he.first_address_family_count == 2,
       "happy eyeballs values");
    ERR("{connection_attempt_delay: 50ms}", cp_happy_eyeballs,
        "t.yaml:1:28: server 's1': key 'connection_attempt_delay': ",
        "out of range [100ms, 2000ms]");
    ERR("{connection_attempt_delay: 3s}", cp_happy_eyeballs,
        "t.yaml:1:28: server 's1': key 'connection_attempt_delay': ", "out of range");
}

static void test_resolve(void)
{
    struct tconf t;
    struct resolve_strategy rs;
    struct resolve_redirection rr;
    char buf[64];

    RUN("Ipv6First", cp_resolve_strategy, &rs);
    ok(rs.query == RQ_IPV6_FIRST && rs.pick == RP_RANDOM, "query string");
    RUN("IPv4Only", cp_resolve_strategy, &rs);
    is_int(rs.query, RQ_IPV4_ONLY, "IPv4Only");
    RUN("ipv6_only", cp_resolve_strategy, &rs);
    is_int(rs.query, RQ_IPV6_ONLY, "ipv6_only");
    RUN("{pick: First}", cp_resolve_strategy, &rs);
    ok(rs.query == RQ_IPV4_FIRST && rs.pick == RP_FIRST, "map: query default Ipv4First");
    RUN("{query: ipv6-first, pick: random}", cp_resolve_strategy, &rs);
    ok(rs.query == RQ_IPV6_FIRST && rs.pick == RP_RANDOM, "map");
    ERR("Ipv5First", cp_resolve_strategy, P, "invalid query strategy 'Ipv5First'");
    ERR("{pick: last}", cp_resolve_strategy,
        "t.yaml:1:8: server 's1': key 'pick': ", "invalid pick strategy 'last'");

    PARSE(&t,
          "- {exact: Foo.Example.com, to: bar.example.com}\n"
          "- {exact: a.example.com, to: [192.0.2.1, '2001:db8::1']}\n"
          "- {parent: example.net, to: example.org.}\n"
          "- {exact: b.example.com, to: 192.0.2.7}\n",
          cp_resolve_redirection, &rr);
    is_int(rr.n, 4, "four rules");
    if (rr.n == 4) {
        ok(!rr.rules[0].parent, "exact rule");
        is_str(rr.rules[0].domain, "foo.example.com", "domain lower-cased");
        is_str(rr.rules[0].to_host, "bar.example.com", "to a domain");
        ok(rr.rules[1].nips == 2 && !rr.rules[1].to_host, "to IPs");
        is_str(ip_str(&rr.rules[1].ips[1], buf, sizeof(buf)), "2001:db8::1", "second IP");
        ok(rr.rules[2].parent, "parent rule");
        is_str(rr.rules[2].to_host, "example.org", "parent target without trailing dot");
        ok(rr.rules[3].nips == 1, "to one IP");
        is_str(ip_str(&rr.rules[3].ips[0], buf, sizeof(buf)), "192.0.2.7", "single IP");
    }
    tconf_done(&t);
    PARSE(&t, "Foo-Bar.example.com: [10.0.0.1]\nx.test: y.test", cp_resolve_redirection, &rr);
    is_int(rr.n, 2, "map form");
    if (rr.n == 2) {
        is_str(rr.rules[0].domain, "foo-bar.example.com", "map key not normalized ('-' kept)");
        ok(rr.rules[0].nips == 1, "map value IPs");
        is_str(rr.rules[1].to_host, "y.test", "map value domain");
    }
    tconf_done(&t);
    ERR("- {exact: a.com}", cp_resolve_redirection,
        "t.yaml:1:3: server 's1': key 'to': ", "missing required key");
    ERR("- {to: b.com}", cp_resolve_redirection,
        "t.yaml:1:3: server 's1': key 'k': ", "set exactly one of 'exact' and 'parent'");
    ERR("- {parent: a.com, to: 1.2.3.4}", cp_resolve_redirection,
        "t.yaml:1:23: server 's1': key 'k': ", "goes to a domain, not to an IP");
    ERR("- {exact: a.com, to: [1.2.3.4, b.com]}", cp_resolve_redirection,
        "t.yaml:1:32: server 's1': key 'k': ", "invalid IP address 'b.com'");
    ERR("a..com: 1.2.3.4", cp_resolve_redirection, P, "expected a domain name, got 'a..com'");
    ERR("- a.com", cp_resolve_redirection, "t.yaml:1:3: server 's1': key 'k': ", "expected a map");
}

static void test_pick(void)
{
    struct tconf t;
    int p = -1;
    struct weighted_addrs wa;
    struct weighted_names wn;

    RUN("random", cp_pick_policy, &p);
    is_int(p, PICK_RANDOM, "random");
    RUN("Sequence", cp_pick_policy, &p);
    is_int(p, PICK_SERIAL, "sequence = serial");
    RUN("serial", cp_pick_policy, &p);
    is_int(p, PICK_SERIAL, "serial");
    RUN("rr", cp_pick_policy, &p);
    is_int(p, PICK_ROUND_ROBIN, "rr");
    RUN("round_robin", cp_pick_policy, &p);
    is_int(p, PICK_ROUND_ROBIN, "round_robin");
    RUN("ketama", cp_pick_policy, &p);
    is_int(p, PICK_KETAMA, "ketama");
    RUN("rendezvous", cp_pick_policy, &p);
    is_int(p, PICK_RENDEZVOUS, "rendezvous");
    RUN("jump_hash", cp_pick_policy, &p);
    is_int(p, PICK_JUMP_HASH, "jump_hash");
    ERR("fastest", cp_pick_policy, P, "invalid pick policy 'fastest'");

    PARSE(&t, "1.2.3.4:80", cp_weighted_addrs, &wa);
    ok(wa.n == 1 && wa.v[0].weight == 1.0 && wa.v[0].addr.port == 80, "single string");
    tconf_done(&t);
    PARSE(&t, "[a.example:1080, {addr: '[::1]:3128', weight: 2.5}, {addr: b.example}]",
          cp_weighted_addrs, &wa);
    ok(wa.n == 3, "list");
    if (wa.n == 3) {
        is_str(wa.v[0].addr.host, "a.example", "first addr");
        ok(wa.v[1].weight == 2.5 && wa.v[1].addr.port == 3128, "weighted map");
        ok(wa.v[2].weight == 1.0, "map weight default");
    }
    tconf_done(&t);
    PARSE(&t, "{addr: c.example:1, weight: 0}", cp_weighted_addrs, &wa);
    ok(wa.n == 1 && wa.v[0].weight == 0.0, "single map, weight 0");
    tconf_done(&t);
    ERR("[]", cp_weighted_addrs, P, "empty address list");
    ERR("[{weight: 1}]", cp_weighted_addrs,
        "t.yaml:1:2: server 's1': key 'addr': ", "missing required key");
    ERR("[a.com, {addr: b.com, weight: -1}]", cp_weighted_addrs,
        "t.yaml:1:31: server 's1': key 'k': ", "weight must not be negative");
    ERR("[a.com:99999]", cp_weighted_addrs, "t.yaml:1:2: server 's1': key 'k': ", "invalid port");

    PARSE(&t, "[esc1, {name: esc2, weight: 3}]", cp_weighted_names, &wn);
    ok(wn.n == 2 && wn.v[1].weight == 3.0 && wn.v[0].weight == 1.0, "weighted names");
    if (wn.n == 2) {
        is_str(wn.v[0].name, "esc1", "first name");
        is_str(wn.v[1].name, "esc2", "second name");
    }
    tconf_done(&t);
    ERR("'bad name'", cp_weighted_names, P, "invalid character ' '");
}

static void test_http(void)
{
    struct tconf t;
    struct http_keepalive hk;
    struct http_forward_capability fc;
    int v = -1;
    char *id = NULL;

    RUN("true", cp_http_keepalive, &hk);
    ok(hk.enable && hk.idle_expire_ns == 60 * NS_PER_SEC, "http keepalive true");
    RUN("no", cp_http_keepalive, &hk);
    ok(!hk.enable, "http keepalive no");
    RUN("90s", cp_http_keepalive, &hk);
    ok(hk.enable && hk.idle_expire_ns == 90 * NS_PER_SEC, "http keepalive duration");
    RUN("{idle_expire: 10s}", cp_http_keepalive, &hk);
    ok(hk.enable && hk.idle_expire_ns == 10 * NS_PER_SEC,
       "http keepalive map: enable default true");
    RUN("{enable: false}", cp_http_keepalive, &hk);
    ok(!hk.enable && hk.idle_expire_ns == 60 * NS_PER_SEC, "http keepalive map disabled");
    ERR("[1]", cp_http_keepalive, P, "expected a boolean, a duration or a map");

    RUN("standard", cp_forwarded_type, &v);
    is_int(v, FWD_STANDARD, "standard");
    RUN("Classic", cp_forwarded_type, &v);
    is_int(v, FWD_CLASSIC, "classic");
    RUN("none", cp_forwarded_type, &v);
    is_int(v, FWD_NONE, "none");
    RUN("true", cp_forwarded_type, &v);
    is_int(v, FWD_CLASSIC, "true = classic");
    RUN("false", cp_forwarded_type, &v);
    is_int(v, FWD_NONE, "false = none");
    ERR("rfc", cp_forwarded_type, P, "invalid forwarded header type 'rfc'");

    RUN("{forward_https: true}", cp_http_forward_capability, &fc);
    ok(fc.forward_https && !fc.forward_ftp && !fc.forward_ftp_get, "forward https only");
    RUN("{forward_ftp: true, forward_ftp_del: false}", cp_http_forward_capability, &fc);
    ok(fc.forward_ftp && fc.forward_ftp_get && fc.forward_ftp_put && !fc.forward_ftp_del &&
           !fc.forward_https,
       "forward_ftp sets get/put/del unless given");
    ERR("{forward_smtp: true}", cp_http_forward_capability,
        "t.yaml:1:2: server 's1': unknown key 'forward_smtp'", "");

    PARSE(&t, "'proxy-1 (test)'", cp_http_server_id, &id);
    is_str(id, "proxy-1 (test)", "server id");
    tconf_done(&t);
    ERR("'a;b'", cp_http_server_id, P, "invalid character at offset 1 in server id");
    ERR("'a,b'", cp_http_server_id, P, "invalid character");
    ERR("\"a\\tb\"", cp_http_server_id, P, "invalid character");
    ERR("''", cp_http_server_id, P, "empty server id");

    RUN("1", cp_proxy_protocol, &v);
    is_int(v, 1, "proxy protocol 1");
    RUN("V2", cp_proxy_protocol, &v);
    is_int(v, 2, "proxy protocol v2");
    ERR("3", cp_proxy_protocol, P, "invalid PROXY protocol version '3'");
}

static void test_misc(void)
{
    struct tconf t;
    struct conn_pool_conf cp;
    struct metrics_tags mt;
    int64_t ts = 0;

    RUN("{}", cp_conn_pool, &cp);
    ok(cp.check_interval_ns == 10 * NS_PER_SEC && cp.max_idle_count == 1024 &&
           cp.min_idle_count == 32 && cp.idle_timeout_ns == 300 * NS_PER_SEC,
       "conn pool defaults");
    RUN("{max_idle_count: 8, min_idle_count: 0, idle_timeout: 1m}", cp_conn_pool, &cp);
    ok(cp.max_idle_count == 8 && cp.min_idle_count == 0 && cp.idle_timeout_ns == 60 * NS_PER_SEC,
       "conn pool values");
    ERR("{max_idle_count: 8}", cp_conn_pool, P, "min_idle_count (32) is above max_idle_count (8)");

    PARSE(&t, "{Region: eu-west/1, idc: a.b_c}", cp_metrics_tags, &mt);
    ok(mt.n == 2, "two tags");
    if (mt.n == 2) {
        is_str(mt.v[0].name, "Region", "tag name as written");
        is_str(mt.v[0].value, "eu-west/1", "tag value");
        is_str(mt.v[1].name, "idc", "second tag");
    }
    tconf_done(&t);
    ERR("{a: 'b c'}", cp_metrics_tags,
        "t.yaml:1:5: server 's1': key 'k': ", "invalid character ' '");
    ERR("{'a b': c}", cp_metrics_tags,
        "t.yaml:1:2: server 's1': key 'k': ", "invalid character ' '");
    ERR("{a: }", cp_metrics_tags, "t.yaml:1:5: server 's1': key 'k': ", "expected a scalar");
    ERR("[a]", cp_metrics_tags, P, "expected a map of tag: value");

    RUN("2026-01-01T00:00:00Z", cp_rfc3339, &ts);
    is_int(ts, 1767225600, "2026-01-01T00:00:00Z");
    RUN("1970-01-01T00:00:00Z", cp_rfc3339, &ts);
    is_int(ts, 0, "epoch");
    RUN("2026-01-01T08:00:00+08:00", cp_rfc3339, &ts);
    is_int(ts, 1767225600, "+08:00 offset");
    RUN("2025-12-31T19:30:00.123-04:30", cp_rfc3339, &ts);
    is_int(ts, 1767225600, "fraction and -04:30 offset");
    RUN("2024-02-29t12:00:00z", cp_rfc3339, &ts);
    is_int(ts, 1709208000, "leap day, lower-case t and z");
    RUN("1969-12-31T23:59:59Z", cp_rfc3339, &ts);
    is_int(ts, -1, "before the epoch");
    RUN("2000-03-01 00:00:00Z", cp_rfc3339, &ts);
    is_int(ts, 951868800, "space separator");
    ERR("2026-02-29T00:00:00Z", cp_rfc3339, P, "invalid RFC 3339 date-time");
    ERR("2026-01-01T00:00:00", cp_rfc3339, P, "invalid RFC 3339");
    ERR("2026-01-01", cp_rfc3339, P, "invalid RFC 3339");
    ERR("2026-13-01T00:00:00Z", cp_rfc3339, P, "invalid RFC 3339");
    ERR("2026-01-01T24:00:00Z", cp_rfc3339, P, "invalid RFC 3339");
    ERR("2026-01-01T00:00:00+8:00", cp_rfc3339, P, "invalid RFC 3339");
    ERR("2026-01-01T00:00:00Zjunk", cp_rfc3339, P, "invalid RFC 3339");
}

int main(void)
{
    test_speed();
    test_rate();
    test_sock();
    test_connect();
    test_resolve();
    test_pick();
    test_http();
    test_misc();
    return done_testing();
}
