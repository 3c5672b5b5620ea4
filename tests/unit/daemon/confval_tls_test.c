/* TLS grammars (confval_tls.c): contexts built at load time from throwaway certificates
 * made with the openssl command in a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tap.h"
#include "testconf.h"

static char dir[] = "/tmp/proxyd-tls-test-XXXXXX";
static const char *rel; /* dir relative to /tmp, the tests' cx->dir */

/* yaml with every "@" replaced by the relative certificate directory */
static const char *y(const char *tmpl)
{
    static char buf[8192];
    size_t o = 0;

    for (; *tmpl && o + 64 < sizeof(buf); tmpl++) {
        if (*tmpl == '@')
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", rel);
        else
            buf[o++] = *tmpl;
    }
    buf[o] = 0;
    return buf;
}

#define ERR(yaml, fn, prefix, why) check_err(__LINE__, yaml, fn, prefix, why)
static void check_err(int line, const char *yaml, conf_parse_fn fn, const char *prefix,
                      const char *why)
{
    union {
        struct tls_client_conf c;
        struct tls_server_conf s;
        int v;
    } slot;

    tc_check_err(__FILE__, line, yaml, fn, &slot, NULL, prefix, why);
    ok(ERR_peek_error() == 0, "OpenSSL error queue left empty");
    ERR_clear_error();
}

#define PARSE(t, yaml, fn, slot) tc_parse_ok(__FILE__, __LINE__, t, yaml, fn, slot, NULL)


static int make_certs(void)
{
    char cmd[4096];

    if (!mkdtemp(dir))
        return -1;
    rel = dir + strlen("/tmp/");
    snprintf(cmd, sizeof(cmd),
             "cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj /CN=proxyd-test-ca "
             "-addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null && "
             "for n in a b client; do "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key "
             "-out $n.csr -subj /CN=$n.test 2>/dev/null && "
             "printf 'subjectAltName=DNS:%%s.test\\nbasicConstraints=CA:FALSE\\n"
             "extendedKeyUsage=serverAuth,clientAuth\\n' $n > $n.ext && "
             "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out $n.pem -days 2 -extfile $n.ext 2>/dev/null || exit 1; done && "
             "cat a.pem ca.pem > chain.pem && echo garbage > garbage.key && "
             "openssl pkey -in a.key -aes128 -passout pass:x -out enc.key && "
             "printf -- '-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydA==\\n"
             "-----END CERTIFICATE-----\\n' > bad.pem && mkdir sub",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void remove_certs(void)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

/* Handshake a client and a server context over a memory BIO pair. Returns 1 on success;
 * *cn receives the CN of the certificate the server presented. */
static int handshake(SSL_CTX *cctx, SSL_CTX *sctx, const char *sni, char *cn, size_t cnlen)
{
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    BIO *bc = NULL, *bs = NULL;
    int done_c = 0, done_s = 0, ok_ = 0;

    if (cn)
        *cn = 0;
    if (!c || !s || !BIO_new_bio_pair(&bc, 0, &bs, 0))
        goto out;
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (sni) {
        SSL_set_tlsext_host_name(c, sni);
        SSL_set1_host(c, sni);
    }
    for (int i = 0; i < 50 && !(done_c && done_s); i++) {
        int rc;

        if (!done_c) {
            rc = SSL_do_handshake(c);
            if (rc == 1)
                done_c = 1;
            else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
                goto out;
        }
        if (!done_s) {
            rc = SSL_do_handshake(s);
            if (rc == 1)
                done_s = 1;
            else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
                goto out;
        }
    }
    if (done_c && done_s) {
        X509 *peer = SSL_get1_peer_certificate(c);

        if (peer && cn)
            X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)cnlen);
        X509_free(peer);
        ok_ = 1;
    }
out:
    SSL_free(c);
    SSL_free(s);
    ERR_clear_error();
    return ok_;
}

static void test_version(void)
{
    struct tconf t;
    int v = 0;
    static const struct {
        const char *s;
        int v;
    } good[] = {
        {"tls1.0", TLS1_VERSION}, {"TLSv1.1", TLS1_1_VERSION}, {"tls1_2", TLS1_2_VERSION},
        {"1.3", TLS1_3_VERSION},  {"tls13", TLS1_3_VERSION},   {"'1.0'", TLS1_VERSION},
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        PARSE(&t, good[i].s, cp_tls_version, &v);
        is_int(v, good[i].v, "version %s", good[i].s);
        tconf_done(&t);
    }
    ERR("1.4", cp_tls_version, P, "invalid TLS version '1.4'");
    ERR("ssl3", cp_tls_version, P, "invalid TLS version");
    ERR("tls1.", cp_tls_version, P, "invalid TLS version");
}

static void test_client(void)
{
    struct tconf t;
    struct tls_client_conf c;

    PARSE(&t, "{}", cp_tls_client, &c);
    ok(c.set && c.ctx && !c.insecure && !c.disable_sni, "{} = defaults");
    is_u64(c.handshake_timeout_ns, 10 * NS_PER_SEC, "handshake timeout default 10s");
    if (c.ctx) {
        is_int(SSL_CTX_get_verify_mode(c.ctx), SSL_VERIFY_PEER, "client verifies the server");
        is_int(SSL_CTX_get_session_cache_mode(c.ctx), SSL_SESS_CACHE_CLIENT,
               "client session cache");
    }
    tconf_done(&t);

    PARSE(&t, "true", cp_tls_client, &c);
    ok(c.set && c.ctx, "true = defaults");
    tconf_done(&t);
    PARSE(&t, "false", cp_tls_client, &c);
    ok(!c.set && !c.ctx, "false = unset");
    tconf_done(&t);

    PARSE(&t, "{insecure: true, disable_sni: true, handshake_timeout: 3s, no_session_cache: true}",
          cp_tls_client, &c);
    ok(c.insecure && c.disable_sni && c.handshake_timeout_ns == 3 * NS_PER_SEC, "flags");
    if (c.ctx) {
        is_int(SSL_CTX_get_verify_mode(c.ctx), SSL_VERIFY_NONE, "insecure: no verification");
        is_int(SSL_CTX_get_session_cache_mode(c.ctx), SSL_SESS_CACHE_OFF, "no session cache");
    }
    tconf_done(&t);

    PARSE(&t, "{protocol: tls1.2}", cp_tls_client, &c);
    if (c.ctx)
        ok(SSL_CTX_get_min_proto_version(c.ctx) == TLS1_2_VERSION &&
               SSL_CTX_get_max_proto_version(c.ctx) == TLS1_2_VERSION,
           "protocol pins the version");
    tconf_done(&t);
    PARSE(&t, "{min_tls_version: tls1.2, max_tls_version: '1.3'}", cp_tls_client, &c);
    if (c.ctx)
        ok(SSL_CTX_get_min_proto_version(c.ctx) == TLS1_2_VERSION &&
               SSL_CTX_get_max_proto_version(c.ctx) == TLS1_3_VERSION,
           "version range");
    tconf_done(&t);
    ERR("{min_tls_version: tls1.3,\n max_tls_version: tls1.2}", cp_tls_client, P,
        "min_tls_version is above max_tls_version");
    ERR("{protocol: tlcp}", cp_tls_client, "t.yaml:1:12: server 's1': key 'protocol': ",
        "unsupported: proxyd does not implement TLCP");

    PARSE(&t,
          "{ciphers: [ECDHE-ECDSA-AES128-GCM-SHA256, TLS_AES_128_GCM_SHA256],"
          " supported_groups: 'X25519:P-256'}",
          cp_tls_client, &c);
    tconf_done(&t);
    PARSE(&t, "{ciphers: 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256'}", cp_tls_client,
          &c);
    tconf_done(&t);
    ERR("{ciphers: NOPE}", cp_tls_client,
        "t.yaml:1:11: server 's1': key 'k': ", "invalid ciphers 'NOPE'");
    ERR("{ciphers: TLS_NOPE}", cp_tls_client,
        "t.yaml:1:11: server 's1': key 'k': ", "invalid TLS 1.3 cipher suites 'TLS_NOPE'");
    ERR("{supported_groups: [X25519, bogus]}", cp_tls_client,
        "t.yaml:1:20: server 's1': key 'k': ", "invalid supported groups 'X25519:bogus'");

    PARSE(&t,
          "{enable_grease: false, use_ocsp_stapling: false, enable_sct: no,"
          " permute_extensions: false}",
          cp_tls_client, &c);
    tconf_done(&t);
    ERR("{use_ocsp_stapling: false,\n enable_grease: true}", cp_tls_client,
        "t.yaml:2:17: server 's1': key 'enable_grease': ",
        "unsupported: proxyd does not implement this key yet");
    ERR("{enable_sct: true}", cp_tls_client,
        "t.yaml:1:14: server 's1': key 'enable_sct': ", "unsupported");
    ERR("{sni: x}", cp_tls_client, "t.yaml:1:2: server 's1': unknown key 'sni'", "");
    ERR("[]", cp_tls_client, P, "expected a map or a boolean, got a sequence");

    PARSE(&t,
          y("{ca_certificate: @/ca.pem, no_default_ca_certificate: true,\n"
            " cert_pair: {certificate: @/client.pem, private_key: @/client.key}}"),
          cp_tls_client, &c);
    tconf_done(&t);
    PARSE(&t,
          y("{server_auth_certificate: [@/ca.pem, @/a.pem], certificate: @/chain.pem,"
            " private_key: @/a.key}"),
          cp_tls_client, &c);
    tconf_done(&t);

    /* files: every failure points at the value that named the file */
    {
        char want[512];

        snprintf(want, sizeof(want),
                 "cannot open CA certificate file '%s/missing.pem': No such file or directory",
                 dir);
        ERR(y("handshake_timeout: 1s\nca_certificate: @/missing.pem"), cp_tls_client,
            "t.yaml:2:17: server 's1': key 'k': ", want);
    }
    ERR(y("ca_certificate:\n  - @/ca.pem\n  - @/garbage.key"), cp_tls_client,
        "t.yaml:3:5: server 's1': key 'k': ", "no CA certificate found in '");
    ERR(y("ca_certificate: @/bad.pem"), cp_tls_client,
        "t.yaml:1:17: server 's1': key 'k': ", "invalid CA certificate in '");
    ERR(y("ca_certificate: @/sub"), cp_tls_client,
        "t.yaml:1:17: server 's1': key 'k': ", "is not a regular file");
    ERR(y("certificate: @/a.pem\nprivate_key: @/b.key"), cp_tls_client,
        "t.yaml:2:14: server 's1': key 'k': ", "does not match certificate");
    ERR(y("certificate: @/a.pem\nprivate_key: @/garbage.key"), cp_tls_client,
        "t.yaml:2:14: server 's1': key 'k': ", "invalid private key in '");
    ERR(y("certificate: @/a.pem\nprivate_key: @/enc.key"), cp_tls_client,
        "t.yaml:2:14: server 's1': key 'k': ", "encrypted keys are not supported");
    ERR(y("certificate: @/a.pem"), cp_tls_client,
        "t.yaml:1:14: server 's1': key 'k': ", "certificate and private_key go together");
    ERR(y("cert_pair: {certificate: @/a.pem}"), cp_tls_client,
        "t.yaml:1:12: server 's1': key 'private_key': ", "missing required key");
    ERR(y("cert_pair: {certificate: @/a.pem, private_key: @/a.key}\nprivate_key: @/a.key"),
        cp_tls_client, "t.yaml:1:12: server 's1': key 'k': ",
        "use cert_pair or certificate + private_key, not both");
}

/* Inline PEM: a block scalar holding the file's text. */
static char *inline_pem(const char *file, const char *indent)
{
    char path[256], line[256];
    static char buf[4][4096];
    static int which;
    char *out = buf[which++ % 4];
    size_t o = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (!(f = fopen(path, "r")))
        return NULL;
    o += (size_t)snprintf(out, 4096, "|\n");
    while (fgets(line, sizeof(line), f) && o + 300 < 4096)
        o += (size_t)snprintf(out + o, 4096 - o, "%s%s", indent, line);
    fclose(f);
    return out;
}

static void test_server(void)
{
    struct tconf t, tc, tc2;
    struct tls_server_conf s;
    struct tls_client_conf c, c2;
    char cn[64];

    /* clients for the handshakes: trusts our CA only; and one with a client cert */
    PARSE(&tc, y("{ca_certificate: @/ca.pem, no_default_ca_certificate: true}"), cp_tls_client, &c);
    PARSE(&tc2,
          y("ca_certificate: @/ca.pem\nno_default_ca_certificate: true\n"
            "cert_pair: {certificate: @/client.pem, private_key: @/client.key}"),
          cp_tls_client, &c2);

    PARSE(&t, y("{certificate: @/a.pem, private_key: @/a.key}"), cp_tls_server, &s);
    ok(s.set && s.ctx && !s.enable_client_auth, "server with one pair");
    is_u64(s.handshake_timeout_ns, 10 * NS_PER_SEC, "server handshake timeout default");
    if (s.ctx && c.ctx) {
        is_int(SSL_CTX_get_verify_mode(s.ctx), SSL_VERIFY_NONE, "no client auth by default");
        is_int(SSL_CTX_get_min_proto_version(s.ctx), TLS1_2_VERSION, "server: TLS 1.2+");
        ok(handshake(c.ctx, s.ctx, "a.test", cn, sizeof(cn)), "handshake, verified");
        is_str(cn, "a.test", "server certificate");
        ok(!handshake(c.ctx, s.ctx, "b.test", cn, sizeof(cn)),
           "wrong host name fails verification");
    }
    tconf_done(&t);

    PARSE(&t,
          y("cert_pairs:\n  - {certificate: @/a.pem, private_key: @/a.key}\n"
            "  - certificate: @/b.pem\n    private_key: @/b.key\n"
            "no_session_ticket: true\nhandshake_timeout: 2s"),
          cp_tls_server, &s);
    if (s.ctx && c.ctx) {
        ok(SSL_CTX_get_options(s.ctx) & SSL_OP_NO_TICKET, "no session tickets");
        is_u64(s.handshake_timeout_ns, 2 * NS_PER_SEC, "handshake timeout");
        ok(handshake(c.ctx, s.ctx, "b.test", cn, sizeof(cn)), "SNI b.test");
        is_str(cn, "b.test", "second pair chosen by SNI");
        ok(handshake(c.ctx, s.ctx, "a.test", cn, sizeof(cn)), "SNI a.test");
        is_str(cn, "a.test", "first pair chosen by SNI");
        ok(!handshake(c.ctx, s.ctx, "c.test", cn, sizeof(cn)), "unknown SNI: first pair, fails");
    }
    tconf_done(&t);

    PARSE(&t,
          y("{cert_pairs: {certificate: @/chain.pem, private_key: @/a.key}, "
            "no_session_cache: true}"),
          cp_tls_server, &s);
    if (s.ctx && c.ctx) {
        is_int(SSL_CTX_get_session_cache_mode(s.ctx), SSL_SESS_CACHE_OFF, "no session cache");
        ok(handshake(c.ctx, s.ctx, "a.test", cn, sizeof(cn)), "single pair map with a chain");
    }
    tconf_done(&t);

    PARSE(&t,
          y("{certificate: @/a.pem, private_key: @/a.key, enable_client_auth: true,"
            " client_auth_certificate: @/ca.pem}"),
          cp_tls_server, &s);
    if (s.ctx && c.ctx && c2.ctx) {
        ok(s.enable_client_auth, "client auth flag");
        is_int(SSL_CTX_get_verify_mode(s.ctx), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
               "server requests and verifies client certificates");
        ok(!handshake(c.ctx, s.ctx, "a.test", cn, sizeof(cn)), "no client certificate: refused");
        ok(handshake(c2.ctx, s.ctx, "a.test", cn, sizeof(cn)), "client certificate accepted");
    }
    tconf_done(&t);

    {
        char yaml[8192];

        snprintf(yaml, sizeof(yaml), "certificate: %s\nprivate_key: %s\n",
                 inline_pem("a.pem", "  "), inline_pem("a.key", "  "));
        PARSE(&t, yaml, cp_tls_server, &s);
        if (s.ctx && c.ctx)
            ok(handshake(c.ctx, s.ctx, "a.test", cn, sizeof(cn)), "inline PEM pair");
        tconf_done(&t);
    }

    PARSE(&t, "false", cp_tls_server, &s);
    ok(!s.set && !s.ctx, "false = unset");
    tconf_done(&t);
    ERR("true", cp_tls_server, P, "a TLS server needs certificates");
    ERR("{handshake_timeout: 1s}", cp_tls_server, P, "no certificate: set cert_pairs");
    ERR("{cert_pairs: []}", cp_tls_server,
        "t.yaml:1:14: server 's1': key 'k': ", "empty cert_pairs list");
    ERR(y("cert_pairs:\n  - {certificate: @/a.pem, private_key: @/a.key}\n"
          "  - {certificate: @/b.pem, private_key: @/a.key}"),
        cp_tls_server, "t.yaml:3:62: server 's1': key 'k': ", "does not match certificate");
    ERR(y("{certificate: @/a.pem, private_key: @/a.key, ca_certificate: @/nope.pem}"),
        cp_tls_server, "t.yaml:1:", "cannot open CA certificate file");
    ERR(y("{certificate: @/a.pem, private_key: @/a.key, tls: {}}"), cp_tls_server,
        "t.yaml:1:", "unknown key 'tls'");

    tconf_done(&tc);
    tconf_done(&tc2);
}

int main(void)
{
    if (make_certs() < 0) {
        ok(0, "cannot create test certificates with the openssl command in %s", dir);
        return done_testing();
    }
    test_version();
    test_client();
    test_server();
    remove_certs();
    return done_testing();
}
