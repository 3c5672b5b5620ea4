/* Scalar (confval.c) and address (confval_net.c) grammars. */
#include <arpa/inet.h>
#include <stdlib.h>

#include "tap.h"
#include "testconf.h"

/* Big enough for any slot these grammars fill. */
static union {
    char b[4096];
    max_align_t align;
} scratch;

#define ERR(yaml, fn, k, prefix, why)                                                           \
    (memset(&scratch, 0, sizeof(scratch)),                                                         \
     tc_check_err(__FILE__, __LINE__, yaml, fn, &scratch, k, prefix, why))

/* Parse yaml into slot expecting success; returns 0 when it parsed. */
#define RUN(yaml, fn, slot, k) run_ok(__LINE__, yaml, fn, slot, k)
static int run_ok(int line, const char *yaml, conf_parse_fn fn, void *slot,
                  const struct conf_key *k)
{
    struct tconf t;
    int rc = tc_parse_ok(__FILE__, line, &t, yaml, fn, slot, k);

    tconf_done(&t);
    return rc;
}


static void test_duration(void)
{
    uint64_t ns = 0;
    static const struct conf_key bounded = {"k", NULL, cp_duration, 0, NULL, 100, 2000};

    RUN("1h 30m 71s", cp_duration, &ns, NULL);
    is_u64(ns, 5471 * NS_PER_SEC, "1h 30m 71s = 5471s");
    RUN("1d12h", cp_duration, &ns, NULL);
    is_u64(ns, 129600 * NS_PER_SEC, "1d12h = 129600s");
    RUN("1.5", cp_duration, &ns, NULL);
    is_u64(ns, 1500 * NS_PER_MS, "1.5 = 1.5s");
    RUN("500ms", cp_duration, &ns, NULL);
    is_u64(ns, 500 * NS_PER_MS, "500ms");
    RUN("30", cp_duration, &ns, NULL);
    is_u64(ns, 30 * NS_PER_SEC, "bare number is seconds");
    RUN("'90'", cp_duration, &ns, NULL);
    is_u64(ns, 90 * NS_PER_SEC, "quoted numeric string is seconds");
    RUN("10us 7ns", cp_duration, &ns, NULL);
    is_u64(ns, 10007, "us and ns");
    RUN("2M", cp_duration, &ns, NULL);
    is_u64(ns, 120 * NS_PER_SEC, "units are case-insensitive (M = minutes)");
    RUN("1m30s", cp_duration, &ns, NULL);
    is_u64(ns, 90 * NS_PER_SEC, "parts without spaces");
    RUN("0", cp_duration, &ns, NULL);
    is_u64(ns, 0, "zero");

    ERR("5x", cp_duration, NULL, P, "invalid duration '5x'");
    ERR("1.5h", cp_duration, NULL, P, "invalid duration");
    ERR("-1", cp_duration, NULL, P, "invalid duration");
    ERR("h", cp_duration, NULL, P, "invalid duration");
    ERR("1h30", cp_duration, NULL, P, "invalid duration");
    ERR("''", cp_duration, NULL, P, "invalid duration");
    ERR("[1]", cp_duration, NULL, P, "expected a scalar, got a sequence");
    ERR("\n  - 1s\n  - {a: 1}", cp_duration, NULL,
        "t.yaml:2:3: server 's1': key 'k': ", "expected a scalar");
    RUN("250ms", cp_duration, &ns, &bounded);
    is_u64(ns, 250 * NS_PER_MS, "within key bounds");
    ERR("50ms", cp_duration, &bounded, P, "out of range [100ms, 2000ms]");
    ERR("3s", cp_duration, &bounded, P, "out of range");
}

static void test_size(void)
{
    uint64_t v = 0;
    uint32_t v32 = 0;
    static const struct conf_key bounded = {"k", NULL, cp_size, 0, NULL, 4096, 65536};

    RUN("10M", cp_size, &v, NULL);
    is_u64(v, 10000000, "10M = 10^7");
    RUN("64KiB", cp_size, &v, NULL);
    is_u64(v, 65536, "64KiB");
    RUN("1 KiB", cp_size, &v, NULL);
    is_u64(v, 1024, "space before unit");
    RUN("1kb", cp_size, &v, NULL);
    is_u64(v, 1000, "kb = 1000");
    RUN("1ki", cp_size, &v, NULL);
    is_u64(v, 1024, "ki = 1024");
    RUN("2GiB", cp_size, &v, NULL);
    is_u64(v, 2ull << 30, "GiB");
    RUN("3T", cp_size, &v, NULL);
    is_u64(v, 3000000000000ull, "T");
    RUN("5B", cp_size, &v, NULL);
    is_u64(v, 5, "B = bytes");
    RUN("4096", cp_size, &v, NULL);
    is_u64(v, 4096, "plain int");

    ERR("1.5K", cp_size, NULL, P, "invalid size '1.5K'");
    ERR("-1", cp_size, NULL, P, "invalid size");
    ERR("10X", cp_size, NULL, P, "invalid size");
    ERR("10 M B", cp_size, NULL, P, "invalid size");
    ERR("99999999999999999999", cp_size, NULL, P, "invalid size");
    ERR("16EiB", cp_size, NULL, P, "invalid size");
    ERR("~", cp_size, NULL, P, "expected a scalar, got a null");
    ERR("1K", cp_size, &bounded, P, "out of range [4096, 65536]");
    RUN("4G", cp_size32, &v32, NULL);
    is_u64(v32, 4000000000u, "size32 fits");
    ERR("5G", cp_size32, NULL, P, "too large");
}

static void test_bool_int(void)
{
    bool b = false;
    int i = 0;
    uint32_t u = 0;
    uint64_t u64 = 0;
    double d = 0;
    static const struct conf_key bounded = {"k", NULL, cp_int, 0, NULL, 1, 10};

    RUN("yes", cp_bool, &b, NULL);
    ok(b, "yes is true");
    RUN("Off", cp_bool, &b, NULL);
    ok(!b, "Off is false");
    RUN("TRUE", cp_bool, &b, NULL);
    ok(b, "TRUE is true");
    ERR("'true'", cp_bool, NULL, P, "expected a boolean");
    ERR("maybe", cp_bool, NULL, P, "expected a boolean");

    RUN("-7", cp_int, &i, NULL);
    is_int(i, -7, "negative int");
    RUN("0x10", cp_int, &i, NULL);
    is_int(i, 16, "hex int");
    ERR("010", cp_int, NULL, P, "expected an integer, got '010'");
    ERR("1.5", cp_int, NULL, P, "expected an integer");
    ERR("' 5'", cp_int, NULL, P, "expected an integer");
    ERR("2147483648", cp_int, NULL, P, "out of range");
    RUN("10", cp_int, &i, &bounded);
    is_int(i, 10, "upper bound inclusive");
    ERR("11", cp_int, &bounded, P, "11 is out of range [1, 10]");
    ERR("0", cp_int, &bounded, P, "0 is out of range [1, 10]");
    RUN("4294967295", cp_u32, &u, NULL);
    is_u64(u, 4294967295u, "u32 max");
    ERR("4294967296", cp_u32, NULL, P, "out of range");
    ERR("-1", cp_u32, NULL, P, "out of range");
    RUN("9223372036854775807", cp_u64, &u64, NULL);
    is_u64(u64, 9223372036854775807ull, "u64 (i64 max)");
    RUN("2.5e3", cp_double, &d, NULL);
    ok(d == 2500.0, "double");
    ERR("nan", cp_double, NULL, P, "expected a number");
}

static void test_strings(void)
{
    struct tconf t;
    char *s = NULL;

    is_int(tconf_run(&t, "\"caf\\u00e9\"", cp_str, &s, NULL), 0, "str");
    is_str(s, "caf\xc3\xa9", "UTF-8 kept");
    tconf_done(&t);
    ERR("\"caf\\u00e9\"", cp_ascii, NULL, P, "only printable ASCII");
    is_int(tconf_run(&t, "a-b_c.d/e", cp_node_name, &s, NULL), 0, "node name");
    is_str(s, "a-b_c.d/e", "node name value");
    tconf_done(&t);
    ERR("a b", cp_node_name, NULL, P, "invalid character ' '");
    ERR("''", cp_node_name, NULL, P, "empty name");
    is_int(tconf_run(&t, "certs/a.pem", cp_path, &s, NULL), 0, "relative path");
    is_str(s, "/tmp/certs/a.pem", "relative to cx->dir");
    tconf_done(&t);
    is_int(tconf_run(&t, "/etc/x", cp_path, &s, NULL), 0, "absolute path");
    is_str(s, "/etc/x", "absolute path kept");
    tconf_done(&t);
}

static void test_upstream(void)
{
    struct upstream_addr ua;
    char buf[64];

    RUN("1.2.3.4:80", cp_upstream, &ua, NULL);
    ok(ua.kind == HOST_IP && ua.ip.family == AF_INET && ua.port == 80, "ipv4:port");
    is_str(ua.host, "1.2.3.4", "ipv4 text");
    RUN("'[::1]:80'", cp_upstream, &ua, NULL);
    ok(ua.kind == HOST_IP && ua.ip.family == AF_INET6 && ua.port == 80, "[v6]:port");
    is_str(ua.host, "::1", "v6 text without brackets");
    RUN("'2001:db8:0:0::1'", cp_upstream, &ua, NULL);
    ok(ua.kind == HOST_IP && ua.port == 0, "bare ipv6, no port");
    is_str(ua.host, "2001:db8::1", "canonical ipv6 text");
    RUN("'[::1]'", cp_upstream, &ua, NULL);
    is_int(ua.port, 0, "[v6] without port");
    RUN("Example.COM:443", cp_upstream, &ua, NULL);
    ok(ua.kind == HOST_DOMAIN && ua.port == 443, "domain:port");
    is_str(ua.host, "example.com", "domain lower-cased");
    RUN("www.example.org.", cp_upstream, &ua, NULL);
    is_str(ua.host, "www.example.org", "trailing dot dropped");
    is_int(ua.port, 0, "no port = 0");
    is_str(ip_str(&(struct ip_addr){.family = AF_INET, .b = {10, 0, 0, 1}}, buf, sizeof(buf)),
           "10.0.0.1", "ip_str");

    ERR("a.com:70000", cp_upstream, NULL, P, "invalid port: 'a.com:70000'");
    ERR("'a.com:'", cp_upstream, NULL, P, "invalid port");
    ERR("a.com:x", cp_upstream, NULL, P, "invalid port");
    ERR("'[::1]:99999'", cp_upstream, NULL, P, "invalid port");
    ERR("'[1.2.3.4]:80'", cp_upstream, NULL, P, "invalid");
    ERR("'[::1:80'", cp_upstream, NULL, P, "missing ']'");
    ERR("bad!host", cp_upstream, NULL, P, "invalid domain name");
    ERR("a..b", cp_upstream, NULL, P, "invalid domain name");
    ERR("''", cp_upstream, NULL, P, "empty address");
    ERR("{a: 1}", cp_upstream, NULL, P, "expected a scalar, got a map");
}

static void test_sockaddr(void)
{
    union sockaddr_any sa;
    char buf[64];

    RUN("127.0.0.1:8080", cp_sockaddr, &sa, NULL);
    is_str(sockaddr_str(&sa, buf, sizeof(buf)), "127.0.0.1:8080", "ipv4 sockaddr");
    RUN("'[::1]:53'", cp_sockaddr, &sa, NULL);
    is_str(sockaddr_str(&sa, buf, sizeof(buf)), "[::1]:53", "ipv6 sockaddr");
    ERR("localhost:80", cp_sockaddr, NULL, P, "expected an IP address (not a domain)");

    setenv("PROXYD_TEST_ADDR", "10.0.0.1:1234", 1);
    RUN("$PROXYD_TEST_ADDR", cp_env_sockaddr, &sa, NULL);
    is_str(sockaddr_str(&sa, buf, sizeof(buf)), "10.0.0.1:1234", "$VAR sockaddr");
    setenv("PROXYD_TEST_ADDR", "nope:1", 1);
    ERR("$PROXYD_TEST_ADDR", cp_env_sockaddr, NULL, P, "(from $PROXYD_TEST_ADDR): 'nope:1'");
    unsetenv("PROXYD_TEST_ADDR");
    ERR("$PROXYD_TEST_ADDR", cp_env_sockaddr, NULL, P,
        "environment variable PROXYD_TEST_ADDR is not set");
    RUN("'@127.0.0.1:99'", cp_env_sockaddr, &sa, NULL);
    is_str(sockaddr_str(&sa, buf, sizeof(buf)), "127.0.0.1:99", "@host:port resolved");
    RUN("'[::1]:9'", cp_env_sockaddr, &sa, NULL);
    is_str(sockaddr_str(&sa, buf, sizeof(buf)), "[::1]:9", "plain sockaddr");
}

static void test_ip(void)
{
    struct ip_net net;
    struct ip_addr ip;
    char buf[64];

    RUN("10.1.2.3/8", cp_ip_net, &net, NULL);
    is_str(ip_str(&net.addr, buf, sizeof(buf)), "10.0.0.0", "host bits cleared");
    is_int(net.prefix, 8, "prefix");
    RUN("'fe80::1/10'", cp_ip_net, &net, NULL);
    is_str(ip_str(&net.addr, buf, sizeof(buf)), "fe80::", "v6 host bits cleared");
    RUN("192.168.1.1", cp_ip_net, &net, NULL);
    is_int(net.prefix, 32, "bare IP is a /32");
    ERR("10.0.0.0/33", cp_ip_net, NULL, P, "invalid network '10.0.0.0/33'");
    ERR("10.0.0.0/", cp_ip_net, NULL, P, "invalid network");
    ERR("example.com", cp_ip, NULL, P, "invalid IP address");

    ip_parse("10.200.3.4", &ip);
    ip_net_parse("10.128.0.0/9", &net);
    ok(ip_in_net(&ip, &net), "in /9");
    ip_parse("10.127.3.4", &ip);
    ok(!ip_in_net(&ip, &net), "not in /9");
    ip_parse("::ffff:10.200.3.4", &ip);
    ok(ip_in_net(&ip, &net), "IPv4-mapped IPv6 matches an IPv4 network");
}

static void test_ports(void)
{
    struct tconf t;
    struct port_set ps;
    struct port_range pr;

    memset(&ps, 0, sizeof(ps));
    is_int(tconf_run(&t, "80,443,8000-8100", cp_ports, &ps, NULL), 0, "port list");
    is_int(ps.n, 3, "three ranges");
    ok(port_set_has(&ps, 80) && port_set_has(&ps, 443) && port_set_has(&ps, 8050) &&
           port_set_has(&ps, 8100),
       "members");
    ok(!port_set_has(&ps, 81) && !port_set_has(&ps, 8101) && !port_set_has(&ps, 7999),
       "non-members");
    tconf_done(&t);

    memset(&ps, 0, sizeof(ps));
    is_int(tconf_run(&t, "[22, '100-200', ' 300 , 400 - 410 ']", cp_ports, &ps, NULL), 0,
           "list of port items with spaces");
    is_int(ps.n, 4, "four ranges");
    ok(port_set_has(&ps, 22) && port_set_has(&ps, 150) && port_set_has(&ps, 300) &&
           port_set_has(&ps, 405) && !port_set_has(&ps, 23),
       "list members");
    tconf_done(&t);

    memset(&ps, 0, sizeof(ps));
    is_int(tconf_run(&t, "'80 '", cp_ports, &ps, NULL), 0, "trailing space");
    ok(ps.n == 1 && port_set_has(&ps, 80), "trailing space parsed");
    tconf_done(&t);

    ERR("80-70", cp_ports, NULL, P, "invalid port range in '80-70'");
    ERR("70000", cp_ports, NULL, P, "invalid port in '70000'");
    ERR("'80,'", cp_ports, NULL, P, "trailing ','");
    ERR("http", cp_ports, NULL, P, "invalid port");
    ERR("''", cp_ports, NULL, P, "empty port list");
    ERR("[80, 'x']", cp_ports, NULL, "t.yaml:1:6: server 's1': key 'k': ", "invalid port in 'x'");

    RUN("'1000-2000'", cp_port_range, &pr, NULL);
    ok(pr.lo == 1000 && pr.hi == 2000, "port range string");
    RUN("{start: 10, end: 20}", cp_port_range, &pr, NULL);
    ok(pr.lo == 10 && pr.hi == 20, "port range map");
    ERR("80", cp_port_range, NULL, P, "expected a port range");
    ERR("{start: 20, end: 10}", cp_port_range, NULL, P, "start must be below its end");
    /* a nested key names itself, not the outer key */
    ERR("{start: 20}", cp_port_range, NULL,
        "t.yaml:1:1: server 's1': key 'end': ", "missing required key");
}

static void test_listen(void)
{
    struct listen_conf lc;
    char buf[64];

    RUN("8080", cp_listen, &lc, NULL);
    ok(lc.set && lc.addr.sa.sa_family == AF_INET6 && lc.addrlen == sizeof(lc.addr.in6),
       "int port listens on [::]");
    is_str(sockaddr_str(&lc.addr, buf, sizeof(buf)), "[::]:8080", "int listen address");
    ok(lc.backlog == 4096 && lc.instance == 1, "int listen defaults");
    RUN("127.0.0.1:3128", cp_listen, &lc, NULL);
    is_str(sockaddr_str(&lc.addr, buf, sizeof(buf)), "127.0.0.1:3128", "string listen");
    ok(lc.addrlen == sizeof(lc.addr.in), "ipv4 addrlen");
    RUN("{address: '[::1]:1080', backlog: 100, ipv6_only: true, mss: 1400, keepalive: 60, "
        "Follow-CPU-Affinity: yes}",
        cp_listen, &lc, NULL);
    is_str(sockaddr_str(&lc.addr, buf, sizeof(buf)), "[::1]:1080", "map address");
    ok(lc.backlog == 100 && lc.ipv6_only && lc.mss == 1400 && lc.instance == 1 &&
           lc.follow_cpu_affinity,
       "map keys and defaults");
    ok(lc.keepalive.enable && lc.keepalive.idle_ns == 60 * NS_PER_SEC, "map keepalive");
    ERR("70000", cp_listen, NULL, P, "invalid port 70000");
    ERR("{backlog: 1}", cp_listen, NULL,
        "t.yaml:1:1: server 's1': key 'address': ", "missing required key");
    ERR("{address: 80,\n  x: 1}", cp_listen, NULL, "t.yaml:2:3: server 's1': unknown key 'x'", "");
    ERR("{addr: 80, backlog: 0}", cp_listen, NULL,
        "t.yaml:1:21: server 's1': key 'backlog': ", "0 is out of range [1, 1048576]");
}

static void test_ratio(void)
{
    double r = -1;

    RUN("0.5", cp_ratio, &r, NULL);
    ok(r == 0.5, "float ratio");
    RUN("1/4", cp_ratio, &r, NULL);
    ok(r == 0.25, "fraction");
    RUN("'20%'", cp_ratio, &r, NULL);
    ok(r > 0.1999 && r < 0.2001, "percentage");
    RUN("true", cp_ratio, &r, NULL);
    ok(r == 1.0, "true = 1");
    RUN("0", cp_ratio, &r, NULL);
    ok(r == 0.0, "0");
    ERR("1.5", cp_ratio, NULL, P, "not between 0 and 1");
    ERR("1/0", cp_ratio, NULL, P, "invalid ratio");
    ERR("abc", cp_ratio, NULL, P, "invalid ratio 'abc'");
}

int main(void)
{
    test_duration();
    test_size();
    test_bool_int();
    test_strings();
    test_upstream();
    test_sockaddr();
    test_ip();
    test_ports();
    test_listen();
    test_ratio();
    return done_testing();
}
