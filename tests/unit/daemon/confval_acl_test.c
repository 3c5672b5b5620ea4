/* ACL grammars and lookups (confval_acl.c). */
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


static enum acl_action net(const struct acl_net *acl, const char *s)
{
    struct ip_addr ip;

    if (ip_parse(s, &ip) < 0)
        return ACL_NACTIONS;
    return acl_net_check(acl, &ip);
}

static const char *an(enum acl_action a)
{
    static const char *const names[] = {"forbid_log", "forbid", "permit_log", "permit", "?"};
    return names[a < ACL_NACTIONS ? a : ACL_NACTIONS];
}

#define IS_ACT(got, want, ...) is_str(an(got), an(want), __VA_ARGS__)

static void test_net(void)
{
    struct tconf t;
    struct acl_net acl;

    memset(&acl, 0, sizeof(acl));
    IS_ACT(net(&acl, "127.0.0.1"), ACL_PERMIT, "unset acl permits");

    PARSE(&t, "{default: allow, allow: 127.0.0.1}", cp_acl_egress, &acl);
    ok(acl.set && acl.def == ACL_PERMIT && acl.implicit == ACL_IMPLICIT_EGRESS, "egress parsed");
    IS_ACT(net(&acl, "127.0.0.1"), ACL_PERMIT, "egress: listed loopback permitted");
    IS_ACT(net(&acl, "127.0.0.2"), ACL_FORBID, "egress: other loopback implicitly forbidden");
    IS_ACT(net(&acl, "8.8.8.8"), ACL_PERMIT, "egress: default permit");
    IS_ACT(net(&acl, "0.0.0.0"), ACL_FORBID, "egress: unspecified");
    IS_ACT(net(&acl, "0.1.2.3"), ACL_FORBID, "egress: 0.0.0.0/8");
    IS_ACT(net(&acl, "169.254.169.254"), ACL_FORBID, "egress: link-local");
    IS_ACT(net(&acl, "::"), ACL_FORBID, "egress: ::");
    IS_ACT(net(&acl, "::1"), ACL_FORBID, "egress: ::1");
    IS_ACT(net(&acl, "fe80::1"), ACL_FORBID, "egress: fe80::/10");
    IS_ACT(net(&acl, "febf::1"), ACL_FORBID, "egress: fe80::/10 upper end");
    IS_ACT(net(&acl, "fec0::1"), ACL_PERMIT, "egress: outside fe80::/10");
    IS_ACT(net(&acl, "100::1"), ACL_FORBID, "egress: discard-only 100::/64");
    IS_ACT(net(&acl, "100:0:0:1::1"), ACL_PERMIT, "egress: outside 100::/64");
    IS_ACT(net(&acl, "::ffff:127.0.0.1"), ACL_PERMIT, "egress: IPv4-mapped listed loopback");
    IS_ACT(net(&acl, "::ffff:127.0.0.2"), ACL_FORBID, "egress: IPv4-mapped loopback");
    IS_ACT(net(&acl, "2001:db8::1"), ACL_PERMIT, "egress: global v6");
    tconf_done(&t);

    PARSE(&t, "[10.0.0.0/8, '2001:db8::/32']", cp_acl_net, &acl);
    ok(acl.def == ACL_FORBID && acl.n[ACL_PERMIT] == 2,
       "bare list: permit records, default forbid");
    IS_ACT(net(&acl, "10.9.8.7"), ACL_PERMIT, "bare list member");
    IS_ACT(net(&acl, "::ffff:10.9.8.7"), ACL_PERMIT, "IPv4-mapped matches IPv4 rule");
    IS_ACT(net(&acl, "2001:db8:1::1"), ACL_PERMIT, "v6 member");
    IS_ACT(net(&acl, "11.0.0.1"), ACL_FORBID, "bare list: others forbidden");
    IS_ACT(net(&acl, "127.0.0.1"), ACL_FORBID, "plain network acl has no implicit rules");
    tconf_done(&t);

    PARSE(&t, "192.168.0.0/16", cp_acl_net, &acl);
    IS_ACT(net(&acl, "192.168.3.4"), ACL_PERMIT, "bare record");
    tconf_done(&t);

    PARSE(&t, "{forbid: 10.0.0.0/8}", cp_acl_net, &acl);
    IS_ACT(net(&acl, "8.8.8.8"), ACL_FORBID, "map without default: forbid");
    IS_ACT(net(&acl, "10.0.0.1"), ACL_FORBID, "listed forbid");
    tconf_done(&t);

    PARSE(&t,
          "default: permit\npermit: 10.0.0.0/8\nforbid_log: 10.1.0.0/16\n"
          "permit_log: [10.1.2.0/24, 10.2.0.0/16]",
          cp_acl_net, &acl);
    IS_ACT(net(&acl, "10.1.2.3"), ACL_FORBID_LOG, "strictest action wins, not longest prefix");
    IS_ACT(net(&acl, "10.2.0.1"), ACL_PERMIT_LOG, "permit_log before permit");
    IS_ACT(net(&acl, "10.3.0.1"), ACL_PERMIT, "permit");
    tconf_done(&t);

    PARSE(&t,
          "{deny_log: 1.1.1.1, reject: 2.2.2.2, allow_log: 3.3.3.3, accept: 4.4.4.4, "
          "Default: Reject-Log}",
          cp_acl_net, &acl);
    IS_ACT(net(&acl, "1.1.1.1"), ACL_FORBID_LOG, "deny_log alias");
    IS_ACT(net(&acl, "2.2.2.2"), ACL_FORBID, "reject alias");
    IS_ACT(net(&acl, "3.3.3.3"), ACL_PERMIT_LOG, "allow_log alias");
    IS_ACT(net(&acl, "4.4.4.4"), ACL_PERMIT, "accept alias");
    IS_ACT(net(&acl, "5.5.5.5"), ACL_FORBID_LOG, "default normalized (Reject-Log)");
    tconf_done(&t);

    PARSE(&t, "{default: forbid, permit: 10.0.0.0/8}", cp_acl_ingress, &acl);
    IS_ACT(net(&acl, "127.0.0.1"), ACL_PERMIT, "ingress: 127.0.0.1 implicitly permitted");
    IS_ACT(net(&acl, "::1"), ACL_PERMIT, "ingress: ::1 implicitly permitted");
    IS_ACT(net(&acl, "::ffff:127.0.0.1"), ACL_PERMIT, "ingress: mapped 127.0.0.1");
    IS_ACT(net(&acl, "127.0.0.2"), ACL_FORBID, "ingress: only 127.0.0.1");
    IS_ACT(net(&acl, "10.0.0.1"), ACL_PERMIT, "ingress: listed");
    IS_ACT(net(&acl, "192.0.2.1"), ACL_FORBID, "ingress: default");
    tconf_done(&t);
    PARSE(&t, "{default: permit, forbid: [127.0.0.1, '::1']}", cp_acl_ingress, &acl);
    IS_ACT(net(&acl, "127.0.0.1"), ACL_FORBID, "ingress: explicit rule beats implicit permit");
    IS_ACT(net(&acl, "::1"), ACL_FORBID, "ingress: explicit v6 rule");
    tconf_done(&t);

    ERR("{default: maybe}", cp_acl_net,
        "t.yaml:1:11: server 's1': key 'default': ", "invalid acl action 'maybe'");
    ERR("{foo: 1.2.3.4}", cp_acl_net,
        "t.yaml:1:2: server 's1': key 'k': ", "'foo' is not an acl action");
    ERR("permit:\n  - 1.2.3.4\n  - bad", cp_acl_net,
        "t.yaml:3:5: server 's1': key 'permit': ", "invalid network 'bad'");
    ERR("{deny: 1.1.1.1, forbid: 2.2.2.2}", cp_acl_net,
        "t.yaml:1:17: server 's1': key 'forbid': ", "set twice (also as 'deny' at line 1)");
    ERR("~", cp_acl_net, P, "expected an acl rule");
    ERR("[[1.2.3.4]]", cp_acl_net, "t.yaml:1:2: server 's1': key 'k': ", "expected a scalar");
}

static void test_ports(void)
{
    struct tconf t;
    struct acl_ports acl;

    PARSE(&t, "{default: allow, forbid: [22, \"100-200\"]}", cp_acl_ports, &acl);
    IS_ACT(acl_ports_check(&acl, 22), ACL_FORBID, "port 22 forbidden");
    IS_ACT(acl_ports_check(&acl, 150), ACL_FORBID, "port in range forbidden");
    IS_ACT(acl_ports_check(&acl, 201), ACL_PERMIT, "port after range");
    IS_ACT(acl_ports_check(&acl, 80), ACL_PERMIT, "default permit");
    tconf_done(&t);
    PARSE(&t, "'80,443'", cp_acl_ports, &acl);
    IS_ACT(acl_ports_check(&acl, 443), ACL_PERMIT, "bare ports permitted");
    IS_ACT(acl_ports_check(&acl, 22), ACL_FORBID, "others forbidden");
    tconf_done(&t);
    memset(&acl, 0, sizeof(acl));
    IS_ACT(acl_ports_check(&acl, 22), ACL_PERMIT, "unset port acl permits");
    ERR("{forbid: 70000}", cp_acl_ports,
        "t.yaml:1:10: server 's1': key 'forbid': ", "invalid port in '70000'");
}

static void test_proxy_request(void)
{
    struct tconf t;
    struct acl_proxy_request acl;

    PARSE(&t, "[HttpForward, https_forward, SOCKS-UDP-Associate]", cp_acl_proxy_request, &acl);
    is_int(acl.mask[ACL_PERMIT], PRQ_HTTP_FORWARD | PRQ_HTTPS_FORWARD | PRQ_SOCKS_UDP_ASSOCIATE,
           "bits for the listed types");
    IS_ACT(acl_proxy_request_check(&acl, PRQ_HTTPS_FORWARD), ACL_PERMIT, "listed type");
    IS_ACT(acl_proxy_request_check(&acl, PRQ_HTTP_CONNECT), ACL_FORBID, "unlisted type");
    tconf_done(&t);
    PARSE(&t, "{default: permit, forbid_log: [HttpConnect, ftpoverhttp], forbid: sockstcpconnect}",
          cp_acl_proxy_request, &acl);
    IS_ACT(acl_proxy_request_check(&acl, PRQ_HTTP_CONNECT), ACL_FORBID_LOG, "forbid_log");
    IS_ACT(acl_proxy_request_check(&acl, PRQ_FTP_OVER_HTTP), ACL_FORBID_LOG, "lower-case name");
    IS_ACT(acl_proxy_request_check(&acl, PRQ_SOCKS_TCP_CONNECT), ACL_FORBID, "forbid");
    IS_ACT(acl_proxy_request_check(&acl, PRQ_HTTP_FORWARD), ACL_PERMIT, "default");
    tconf_done(&t);
    ERR("[HttpForward,\n  Teleport]", cp_acl_proxy_request,
        "t.yaml:2:3: server 's1': key 'k': ", "unknown proxy request type 'Teleport'");
}

static enum acl_action ua(const struct acl_strings *acl, const char *s)
{
    return acl_user_agent_check(acl, s, strlen(s));
}

static void test_user_agent(void)
{
    struct tconf t;
    struct acl_strings acl;

    PARSE(&t, "[curl, Go-http-client, AdsBot-Google-Mobile]", cp_acl_user_agent, &acl);
    ok(acl.def == ACL_PERMIT && acl.n[ACL_FORBID] == 3, "listed = forbid, default permit");
    IS_ACT(ua(&acl, "curl/7.74.0"), ACL_FORBID, "curl/7.74.0");
    IS_ACT(ua(&acl, "CURL"), ACL_FORBID, "whole value, any case");
    IS_ACT(ua(&acl, "Go-http-client/1.1"), ACL_FORBID, "Go client");
    IS_ACT(ua(&acl, "libcurl/7.1"), ACL_PERMIT, "no match inside a product name");
    IS_ACT(ua(&acl, "curly/1.0"), ACL_PERMIT, "no prefix match");
    IS_ACT(ua(&acl, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
           ACL_PERMIT, "other bots");
    IS_ACT(ua(&acl, "Mozilla/5.0 (Linux) Safari (compatible; AdsBot-Google-Mobile; +http://x)"),
           ACL_FORBID, "product inside a comment");
    IS_ACT(ua(&acl, ""), ACL_PERMIT, "empty user agent");
    tconf_done(&t);
    PARSE(&t, "{default: forbid, permit: firefox, forbid_log: evil}", cp_acl_user_agent, &acl);
    IS_ACT(ua(&acl, "Mozilla/5.0 Firefox/100.0"), ACL_PERMIT, "map: permitted product");
    IS_ACT(ua(&acl, "curl/8"), ACL_FORBID, "map: default");
    IS_ACT(ua(&acl, "Firefox/1 evil/2"), ACL_FORBID_LOG, "strictest wins");
    tconf_done(&t);
    PARSE(&t, "{forbid: curl}", cp_acl_user_agent, &acl);
    IS_ACT(ua(&acl, "wget/1"), ACL_PERMIT, "map without default: permit for user agents");
    tconf_done(&t);
    ERR("['cu rl']", cp_acl_user_agent, "t.yaml:1:2: server 's1': key 'k': ",
        "invalid character ' ' in user agent product name 'cu rl'");
}

static enum acl_action dh(const struct acl_dst_host *acl, const char *host)
{
    struct upstream_addr u;
    const char *why;

    if (upstream_parse(host, &u, &why) < 0)
        return ACL_NACTIONS;
    return acl_dst_host_check(acl, &u);
}

static void test_dst_host(void)
{
    struct tconf t;
    struct acl_dst_host acl;

    PARSE(
        &t,
        "exact_match: {default: forbid, permit: [www.example.com, 192.168.1.1, '::ffff:192.0.2.9'],"
        " forbid_log: Bad.Example.COM.}\n"
        "child_match: {permit: example.net}\n"
        "regex_match:\n"
        "  permit_log: ['^api[0-9]+\\.example\\.org$', {parent: Example.IO, regex: '^ab'}]\n"
        "  forbid: 'xa\\.mp'\n"
        "subnet_match: {default: permit, forbid: 10.0.0.0/8, permit: 127.0.0.1}\n",
        cp_acl_dst_host, &acl);
    IS_ACT(dh(&acl, "www.example.com"), ACL_PERMIT, "exact domain");
    IS_ACT(dh(&acl, "WWW.Example.com"), ACL_PERMIT, "exact domain, target case-folded");
    IS_ACT(dh(&acl, "bad.example.com"), ACL_FORBID_LOG, "exact record normalized");
    IS_ACT(dh(&acl, "a.example.net"), ACL_PERMIT, "child domain");
    IS_ACT(dh(&acl, "x.y.example.net"), ACL_PERMIT, "grandchild domain");
    IS_ACT(dh(&acl, "example.net"), ACL_PERMIT, "child_match matches the parent itself");
    IS_ACT(dh(&acl, "badexample.net"), ACL_FORBID, "label boundary: miss -> strictest default");
    IS_ACT(dh(&acl, "api12.example.org"), ACL_PERMIT_LOG, "anchored regex");
    IS_ACT(dh(&acl, "api.example.org"), ACL_FORBID, "anchored regex miss");
    IS_ACT(dh(&acl, "abc.example.io"), ACL_PERMIT_LOG, "{parent, regex} on the sub-part");
    IS_ACT(dh(&acl, "x.abc.example.io"), ACL_FORBID, "{parent, regex}: ^ anchors the sub-part");
    IS_ACT(dh(&acl, "example.io"), ACL_FORBID, "{parent, regex}: parent alone is ''");
    IS_ACT(dh(&acl, "abexample.io"), ACL_FORBID, "{parent, regex}: label boundary");
    IS_ACT(dh(&acl, "www.exa.mple"), ACL_FORBID, "unanchored regex matches anywhere");
    IS_ACT(dh(&acl, "192.168.1.1"), ACL_PERMIT, "exact IP");
    IS_ACT(dh(&acl, "::ffff:192.168.1.1"), ACL_PERMIT, "exact IP via IPv4-mapped target");
    IS_ACT(dh(&acl, "192.0.2.9"), ACL_PERMIT, "IPv4-mapped exact record");
    IS_ACT(dh(&acl, "10.1.1.1"), ACL_FORBID, "subnet forbid");
    IS_ACT(dh(&acl, "127.0.0.1"), ACL_PERMIT, "subnet explicit permit of loopback");
    IS_ACT(dh(&acl, "127.0.0.2"), ACL_FORBID, "subnet implicit loopback forbid");
    IS_ACT(dh(&acl, "8.8.8.8"), ACL_FORBID, "IP miss -> strictest default of the set");
    tconf_done(&t);

    PARSE(&t, "{subnet: {default: permit_log}, child: {default: permit, permit: a.com}}",
          cp_acl_dst_host, &acl);
    IS_ACT(dh(&acl, "8.8.8.8"), ACL_PERMIT_LOG, "strictest default (permit_log)");
    IS_ACT(dh(&acl, "b.com"), ACL_PERMIT_LOG, "domains get the same missed action");
    IS_ACT(dh(&acl, "1.2.3.4"), ACL_PERMIT_LOG, "IPs do not use child_match");
    tconf_done(&t);

    PARSE(&t, "{regex_match: {}}", cp_acl_dst_host, &acl);
    ok(acl.regex.set && acl.regex.def == ACL_FORBID, "{} is an empty action map, not a record");
    IS_ACT(dh(&acl, "example.com"), ACL_FORBID, "empty regex rule: default forbid");
    tconf_done(&t);

    PARSE(&t, "{}", cp_acl_dst_host, &acl);
    IS_ACT(dh(&acl, "example.com"), ACL_PERMIT, "empty rule set permits");
    tconf_done(&t);
    memset(&acl, 0, sizeof(acl));
    IS_ACT(dh(&acl, "example.com"), ACL_PERMIT, "unset rule set permits");

    PARSE(&t, "{regex: {parent: example.com, regex: '^[a-z]+$'}}", cp_acl_dst_host, &acl);
    IS_ACT(dh(&acl, "abc.example.com"), ACL_PERMIT, "bare {parent, regex} record");
    IS_ACT(dh(&acl, "a1.example.com"), ACL_FORBID, "bare record: default forbid");
    tconf_done(&t);

    ERR("regex_match:\n  forbid: ['ok', '(']", cp_acl_dst_host,
        "t.yaml:2:18: server 's1': key 'forbid': ", "invalid regex '(' at offset 1");
    ERR("{foo: []}", cp_acl_dst_host, "t.yaml:1:2: server 's1': unknown key 'foo'", "");
    ERR("{exact: [a.com, 'a.com:80']}", cp_acl_dst_host, "t.yaml:1:17: server 's1': key 'exact': ",
        "expected a domain or an IP address, got 'a.com:80'");
    ERR("{child: 10.0.0.1}", cp_acl_dst_host,
        "t.yaml:1:9: server 's1': key 'child': ", "expected a domain name, got '10.0.0.1'");
    ERR("{regex: {parent: a.com}}", cp_acl_dst_host,
        "t.yaml:1:9: server 's1': key 'regex': ", "missing required key");
    ERR("[a.com]", cp_acl_dst_host, P, "expected a map, got a sequence");
}

int main(void)
{
    test_net();
    test_ports();
    test_proxy_request();
    test_user_agent();
    test_dst_host();
    return done_testing();
}
