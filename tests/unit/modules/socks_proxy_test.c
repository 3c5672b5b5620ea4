/* Pure parts of the socks_proxy server (reply code mapping, UDP client matching, echo
 * address transmutation, port range walk, one-peer comparison, its config grammars)
 * and of direct_fixed's UDP path (families to ask, address choice). */
#include <arpa/inet.h>
#include <errno.h>

#include "modules/server/socks_proxy.c"

#include "tap.h"
#include "testconf.h"

static struct ip_addr ip(const char *s)
{
    struct ip_addr a;
    memset(&a, 0, sizeof(a));
    if (ip_parse(s, &a) < 0)
        abort();
    return a;
}

static union sockaddr_any sa(const char *s, uint16_t port)
{
    struct ip_addr a = ip(s);
    union sockaddr_any out;
    socklen_t len;
    ip_to_sockaddr(&a, port, &out, &len);
    return out;
}

static const char *sa_text(const union sockaddr_any *a)
{
    static char buf[80];
    return sockaddr_str(a, buf, sizeof(buf));
}

static void test_rep_codes(void)
{
    is_int(rep_for_connect(TR_FORBIDDEN_BY_RULE, 403, 0), 0x02, "forbidden: not allowed");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_RESOLVED, 530, 0), 0x04, "not resolved: host unreachable");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 521, ECONNREFUSED), 0x05, "refused");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 521, ECONNRESET), 0x05, "reset: refused");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 522, ETIMEDOUT), 0x09, "timeout: g3's 0x09");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 523, ENETUNREACH), 0x03, "network unreachable");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 523, EHOSTUNREACH), 0x04, "host unreachable");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 523, 0), 0x03, "family disabled: network");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 521, 0), 0x05, "status only: refused");
    is_int(rep_for_connect(TR_UPSTREAM_NOT_CONNECTED, 502, EPROTO), 0x01, "other errno: general");
    is_int(rep_for_connect(TR_ESCAPER_NOT_USABLE, 503, 0), 0x01, "escaper: general failure");
    is_int(rep_for_connect(TR_INTERNAL_RESOLVER_ERROR, 503, 0), 0x01, "resolver: general failure");
}

static void test_udp_from_client(void)
{
    struct ip_addr c4 = ip("127.0.0.1"), c6 = ip("::1");
    union sockaddr_any f = sa("127.0.0.1", 5000), g = sa("127.0.0.2", 5000);
    union sockaddr_any mapped = sa("::ffff:127.0.0.1", 5000), f6 = sa("::1", 5000);

    ok(udp_from_client(&c4, 0, &f), "any port when none declared");
    ok(udp_from_client(&c4, 5000, &f), "the declared port");
    ok(!udp_from_client(&c4, 5001, &f), "another port");
    ok(!udp_from_client(&c4, 0, &g), "another IP");
    ok(udp_from_client(&c4, 5000, &mapped), "IPv4-mapped source matches the IPv4 client");
    ok(udp_from_client(&c6, 0, &f6), "IPv6 client");
    ok(!udp_from_client(&c6, 0, &f), "family mismatch");
}

static void test_echo_addr(void)
{
    struct sp_echo_map m[] = {{ip("10.0.0.1"), ip("192.0.2.7")}, {ip("::1"), ip("2001:db8::1")}};
    struct sp_transmute off = {0}, on = {true, 0, NULL}, map = {true, 2, m};
    union sockaddr_any b4 = sa("10.0.0.1", 4000), b9 = sa("10.0.0.9", 4001),
                       b6 = sa("::1", 4002), out;

    udp_echo_addr(&off, &b4, &out);
    is_str(sa_text(&out), "10.0.0.1:4000", "off: the bound address");
    udp_echo_addr(&on, &b4, &out);
    is_str(sa_text(&out), "0.0.0.0:4000", "true: unspecified IPv4, same port");
    udp_echo_addr(&on, &b6, &out);
    is_str(sa_text(&out), "[::]:4002", "true: unspecified IPv6");
    udp_echo_addr(&map, &b4, &out);
    is_str(sa_text(&out), "192.0.2.7:4000", "map: mapped IP");
    udp_echo_addr(&map, &b9, &out);
    is_str(sa_text(&out), "0.0.0.0:4001", "map: an unmapped IP is unspecified");
    udp_echo_addr(&map, &b6, &out);
    is_str(sa_text(&out), "[2001:db8::1]:4002", "map: IPv6");
}

static void test_port_range(void)
{
    struct port_range r = {1000, 1009};
    bool seen[10] = {0};
    int distinct = 0;

    for (unsigned i = 0; i < 10; i++) {
        uint16_t p = port_in_range(&r, 123456789, i);
        if (p < 1000 || p > 1009)
            break;
        if (!seen[p - 1000])
            distinct++;
        seen[p - 1000] = true;
    }
    is_int(distinct, 10, "ten tries walk the whole range once");
    is_int(port_in_range(&r, 3, 0), 1003, "start at the random offset");
    is_int(port_in_range(&r, 9, 1), 1000, "wrap around");
    struct port_range full = {1, 65535};
    is_int(port_in_range(&full, UINT64_MAX, 0), 1 + (int)(UINT64_MAX % 65535), "full range");
}

static void test_same_target(void)
{
    struct upstream_addr a, b;
    const char *why;

    upstream_parse("127.0.0.1:53", &a, &why);
    upstream_parse("127.0.0.1:53", &b, &why);
    ok(same_target(&a, &b), "same IP and port");
    b.port = 54;
    ok(!same_target(&a, &b), "other port");
    upstream_parse("example.org:53", &b, &why);
    ok(!same_target(&a, &b), "IP vs name");
    upstream_parse("example.org:53", &a, &why);
    ok(same_target(&a, &b), "same name");
    upstream_parse("[::1]:53", &a, &why);
    upstream_parse("[0:0::1]:53", &b, &why);
    ok(same_target(&a, &b), "IPv6 spellings compare as addresses");
}

static void test_rate(void)
{
    struct udp_speed_limit l = {.set = true, .shift = 10, .upload_packets = 2, .download_bytes = 100};
    struct sp_rate r = {0};

    ok(udp_rate_ok(&l, &r, true, 10, 5000), "first packet");
    ok(udp_rate_ok(&l, &r, true, 10, 5001), "second packet");
    ok(!udp_rate_ok(&l, &r, true, 10, 5002), "third packet in the window: no");
    ok(udp_rate_ok(&l, &r, true, 10, 6200), "next window");
    memset(&r, 0, sizeof(r));
    ok(udp_rate_ok(&l, &r, false, 60, 5000), "download 60 bytes");
    ok(udp_rate_ok(&l, &r, false, 60, 5000), "download 120 bytes (the window's budget was left)");
    ok(!udp_rate_ok(&l, &r, false, 1, 5000), "over the byte budget");
    struct udp_speed_limit none = {0};
    ok(udp_rate_ok(&none, &r, true, 1 << 20, 0), "unset: unlimited");
}

static void test_config(void)
{
    struct tconf t;
    struct sp_ip_list l;
    struct sp_transmute tm;
    static const struct conf_key k4 = {"udp_bind_ipv4"}, kt = {"transmute_udp_echo_ip"};

    is_int(tconf_run(&t, "[127.0.0.1, 10.0.0.1]", cp_udp_bind4, &l, &k4), 0, "IPv4 list");
    is_int(l.n, 2, "two addresses");
    tconf_done(&t);
    is_int(tconf_run(&t, "::1", cp_udp_bind6, &l, &k4), 0, "one IPv6 address");
    is_int(l.n, 1, "one address");
    tconf_done(&t);
    is_int(tconf_run(&t, "::1", cp_udp_bind4, &l, &k4), -1, "IPv6 in udp_bind_ipv4");
    like(t.cx.err, "expected an IPv4 address", "error names the family");
    tconf_done(&t);
    is_int(tconf_run(&t, "true", cp_transmute, &tm, &kt), 0, "transmute: true");
    ok(tm.on && tm.n == 0, "on without a map");
    tconf_done(&t);
    is_int(tconf_run(&t, "false", cp_transmute, &tm, &kt), 0, "transmute: false");
    ok(!tm.on, "off");
    tconf_done(&t);
    is_int(tconf_run(&t, "{10.0.0.1: 192.0.2.7, '::1': '2001:db8::1'}", cp_transmute, &tm, &kt), 0,
           "transmute: a map");
    ok(tm.on && tm.n == 2 && tm.v[1].to.family == AF_INET6, "two entries");
    tconf_done(&t);
    is_int(tconf_run(&t, "{10.0.0.1: nope}", cp_transmute, &tm, &kt), -1, "bad IP in the map");
    tconf_done(&t);
    is_int(tconf_run(&t, "maybe", cp_transmute, &tm, &kt), -1, "neither bool nor map");
    tconf_done(&t);
}

int main(void)
{
    test_rep_codes();
    test_udp_from_client();
    test_echo_addr();
    test_port_range();
    test_same_target();
    test_rate();
    test_config();
    return done_testing();
}
