/* TLS grammars: the SSL_CTX is built while the config is read, so a missing file, a bad
 * certificate or a key that does not match is a config error at its node. The contexts
 * are freed with the owning object's arena. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "confval.h"

static void ctx_free(void *p)
{
    SSL_CTX_free(p);
}

/* Never prompt for a passphrase: encrypted keys are a config error. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* The reason of the last OpenSSL error (queue cleared). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r ? r : "unknown error";
}

static bool is_inline_pem(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return s[0] == '-' && s[1] == '-';
}

/* How to name a PEM source in messages. */
static const char *pem_name(const struct cnode *n)
{
    return is_inline_pem(n->str) ? "inline PEM" : n->str;
}

/* Open the PEM data a value names: inline PEM text (starting with "--") or a regular
 * file, relative to cx->dir. NULL + error on failure. */
static BIO *pem_open(struct conf_ctx *cx, const struct cnode *n, const char *what)
{
    const char *s = NULL;
    struct stat st;
    char *path;
    BIO *b;
    FILE *f;
    int fd;

    if (conf_scalar(cx, n, &s) < 0)
        return NULL;
    if (is_inline_pem(s)) {
        if (!(b = BIO_new_mem_buf(s, (int)n->len)))
            conf_fail(cx, n, "out of memory");
        return b;
    }
    if (!(path = conf_path(cx, n)))
        return NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        conf_fail(cx, n, "cannot open %s file '%s': %s", what, path, strerror(errno));
        free(path);
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        conf_fail(cx, n, "%s file '%s' is not a regular file", what, path);
        close(fd);
        free(path);
        return NULL;
    }
    free(path);
    if (!(f = fdopen(fd, "r"))) {
        close(fd);
        conf_fail(cx, n, "out of memory");
        return NULL;
    }
    if (!(b = BIO_new_fp(f, BIO_CLOSE))) {
        fclose(f);
        conf_fail(cx, n, "out of memory");
    }
    return b;
}

/* Append every certificate of one source to sk; at least one is required. */
static int certs_load_one(struct conf_ctx *cx, const struct cnode *n, STACK_OF(X509) * sk,
                          const char *what)
{
    BIO *b = pem_open(cx, n, what);
    int before = sk_X509_num(sk);
    unsigned long e;
    X509 *x;

    if (!b)
        return -1;
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(b, NULL, no_password, NULL))) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            BIO_free(b);
            return conf_fail(cx, n, "out of memory");
        }
    }
    BIO_free(b);
    e = ERR_peek_last_error();
    /* reading stops with "no start line" at the end of the data: that is not an error */
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        return conf_fail(cx, n, "invalid %s in '%s': %s", what, pem_name(n), ssl_reason());
    ERR_clear_error();
    if (sk_X509_num(sk) == before)
        return conf_fail(cx, n, "no %s found in '%s'", what, pem_name(n));
    return 0;
}

/* Certificates: one source (path or inline PEM) or a list of them. */
static int certs_load(struct conf_ctx *cx, const struct cnode *n, STACK_OF(X509) * sk,
                      const char *what)
{
    if (n && n->type == CN_SEQ) {
        if (!n->n)
            return conf_fail(cx, n, "empty %s list", what);
        for (size_t i = 0; i < n->n; i++)
            if (certs_load_one(cx, n->items[i], sk, what) < 0)
                return -1;
        return 0;
    }
    return certs_load_one(cx, n, sk, what);
}

static EVP_PKEY *key_load(struct conf_ctx *cx, const struct cnode *n)
{
    BIO *b = pem_open(cx, n, "private key");
    EVP_PKEY *k;

    if (!b)
        return NULL;
    ERR_clear_error();
    k = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
    BIO_free(b);
    if (!k)
        conf_fail(cx, n, "invalid private key in '%s': %s (encrypted keys are not supported)",
                  pem_name(n), ssl_reason());
    return k;
}

/* Install a certificate chain (leaf first) and its key into ctx. */
static int pair_use(struct conf_ctx *cx, SSL_CTX *ctx, const struct cnode *cert_n,
                    const struct cnode *key_n)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    EVP_PKEY *pk = NULL;
    X509 *leaf = NULL;
    int rc = -1;

    if (!chain)
        return conf_fail(cx, cert_n, "out of memory");
    if (certs_load(cx, cert_n, chain, "certificate") < 0 || !(pk = key_load(cx, key_n)))
        goto out;
    leaf = sk_X509_shift(chain);
    if (!X509_check_private_key(leaf, pk)) {
        ERR_clear_error();
        conf_fail(cx, key_n, "private key '%s' does not match certificate '%s'", pem_name(key_n),
                  pem_name(cert_n));
        goto out;
    }
    if (SSL_CTX_use_cert_and_key(ctx, leaf, pk, chain, 1) != 1) {
        conf_fail(cx, cert_n, "cannot use certificate '%s': %s", pem_name(cert_n), ssl_reason());
        goto out;
    }
    rc = 0;
out:
    X509_free(leaf);
    EVP_PKEY_free(pk);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* Trust these CAs for peer verification (and, for servers, name them in the request). */
static int ca_use(struct conf_ctx *cx, const struct cnode *at, SSL_CTX *ctx, STACK_OF(X509) * cas,
                  bool server)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);

    for (int i = 0; i < sk_X509_num(cas); i++) {
        X509 *x = sk_X509_value(cas, i);
        if (!X509_STORE_add_cert(store, x) || (server && !SSL_CTX_add_client_CA(ctx, x))) {
            ERR_clear_error();
            return conf_fail(cx, at, "cannot add a CA certificate: %s", ssl_reason());
        }
    }
    return 0;
}

static int keep_node(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    *(const struct cnode **)slot = n;
    return 0;
}

/* A g3proxy key proxyd does not implement: accepted when false. */
static int unsupported_if_true(struct conf_ctx *cx, const struct cnode *n, void *slot,
                               const struct conf_key *k)
{
    bool b;

    if (cp_bool(cx, n, &b, NULL) < 0)
        return -1;
    if (b)
        return conf_fail(cx, n, "unsupported: proxyd does not implement this key yet");
    return 0;
}

/* "tls1.2", "TLSv1.2", "tls1_2", "1.2" ... -> TLS1_2_VERSION; 0 / -1. */
static int tls_version_text(const char *s, int *out)
{
    static const int versions[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION};

    if (strncasecmp(s, "tls", 3) == 0) {
        s += 3;
        if (*s == 'v' || *s == 'V')
            s++;
    }
    if (s[0] != '1' || !s[1])
        return -1;
    s += (s[1] == '.' || s[1] == '_') ? 2 : 1;
    if (*s < '0' || *s > '3' || s[1])
        return -1;
    *out = versions[*s - '0'];
    return 0;
}

int cp_tls_version(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (tls_version_text(s, slot) < 0)
        return conf_fail(cx, n, "invalid TLS version '%s' (tls1.0, tls1.1, tls1.2 or tls1.3)", s);
    return 0;
}

/* protocol: a TLS version (pins min and max) or tlcp (not supported). */
static int tls_protocol(struct conf_ctx *cx, const struct cnode *n, void *slot,
                        const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (strncasecmp(s, "tlcp", 4) == 0)
        return conf_fail(cx, n, "unsupported: proxyd does not implement TLCP");
    return cp_tls_version(cx, n, slot, k);
}

/* A colon list written as "a:b" or as a YAML list; NULL + error on failure. */
static char *colon_list(struct conf_ctx *cx, const struct cnode *n)
{
    size_t len = 0;
    char *s, *p;

    if (!n || n->type != CN_SEQ) {
        const char *v = NULL;
        if (conf_scalar(cx, n, &v) < 0)
            return NULL;
        if (!(s = arena_strndup(cx->arena, v, n->len)))
            conf_fail(cx, n, "out of memory");
        return s;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (n->items[i]->type != CN_SCALAR) {
            conf_fail(cx, n->items[i], "expected a scalar, got a %s", cnode_type_name(n->items[i]));
            return NULL;
        }
        len += n->items[i]->len + 1;
    }
    if (!(s = p = arena_alloc(cx->arena, len + 1))) {
        conf_fail(cx, n, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (i)
            *p++ = ':';
        memcpy(p, n->items[i]->str, n->items[i]->len);
        p += n->items[i]->len;
    }
    *p = 0;
    return s;
}

/* TLS 1.3 suites (TLS_*) and older cipher names are configured separately in OpenSSL. */
static int ciphers_use(struct conf_ctx *cx, SSL_CTX *ctx, const struct cnode *n)
{
    char *all = colon_list(cx, n), *tok, *save = NULL;
    char *v13, *v12;
    size_t l13 = 0, l12 = 0, len;

    if (!all)
        return -1;
    len = strlen(all);
    v13 = arena_alloc(cx->arena, len + 1);
    v12 = arena_alloc(cx->arena, len + 1);
    if (!v13 || !v12)
        return conf_fail(cx, n, "out of memory");
    for (tok = strtok_r(all, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        bool t13 = strncmp(tok, "TLS_", 4) == 0;
        char *dst = t13 ? v13 : v12;
        size_t *l = t13 ? &l13 : &l12;
        size_t tl = strlen(tok);

        if (*l)
            dst[(*l)++] = ':';
        memcpy(dst + *l, tok, tl);
        *l += tl;
        dst[*l] = 0;
    }
    if (!l13 && !l12)
        return conf_fail(cx, n, "empty cipher list");
    if (l13 && SSL_CTX_set_ciphersuites(ctx, v13) != 1)
        return conf_fail(cx, n, "invalid TLS 1.3 cipher suites '%s': %s", v13, ssl_reason());
    if (l12 && SSL_CTX_set_cipher_list(ctx, v12) != 1)
        return conf_fail(cx, n, "invalid ciphers '%s': %s", v12, ssl_reason());
    return 0;
}

static int groups_use(struct conf_ctx *cx, SSL_CTX *ctx, const struct cnode *n)
{
    char *g = colon_list(cx, n);

    if (!g)
        return -1;
    if (!*g || SSL_CTX_set1_groups_list(ctx, g) != 1)
        return conf_fail(cx, n, "invalid supported groups '%s': %s", g, ssl_reason());
    return 0;
}

/* A fresh context owned by the arena. */
static SSL_CTX *ctx_new(struct conf_ctx *cx, const struct cnode *n, bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

    if (!ctx) {
        conf_fail(cx, n, "cannot create a TLS context: %s", ssl_reason());
        return NULL;
    }
    if (arena_on_free(cx->arena, ctx_free, ctx) < 0) {
        conf_fail(cx, n, "out of memory");
        return NULL;
    }
    return ctx;
}

/* {certificate, private_key} */
struct pair_nodes {
    const struct cnode *cert, *key; /* borrowed: config nodes */
};
static const struct conf_key pair_keys[] = {
    {"certificate", NULL, keep_node, offsetof(struct pair_nodes, cert), NULL, 0, 0, CK_F_REQUIRED},
    {"private_key", NULL, keep_node, offsetof(struct pair_nodes, key), NULL, 0, 0, CK_F_REQUIRED},
    {0},
};

static int pair_nodes(struct conf_ctx *cx, const struct cnode *n, struct pair_nodes *p)
{
    static const struct conf_key *const tables[] = {pair_keys, NULL};

    memset(p, 0, sizeof(*p));
    return conf_apply(cx, n, tables, NULL, p);
}

/* certificate + private_key written next to each other in the block. */
static int inline_pair(struct conf_ctx *cx, const struct cnode *n, const struct cnode *cert,
                       const struct cnode *key, struct pair_nodes *p)
{
    if (!cert != !key)
        return conf_fail(cx, cert ? cert : key, "certificate and private_key go together");
    p->cert = cert;
    p->key = key;
    return 0;
}

/* ---- client ---- */

struct client_tmp {
    int protocol, min_v, max_v;
    const struct cnode *ciphers, *cert_pair, *cert, *key, *ca, *groups; /* borrowed: nodes */
    bool disable_sni, no_default_ca, no_session_cache, builtin_cache, insecure;
    uint64_t handshake_ns;
    uint32_t lru_sites, each_capacity;
};
#define TCOFF(f) offsetof(struct client_tmp, f)
static const struct conf_key tls_client_keys[] = {
    {"protocol", NULL, tls_protocol, TCOFF(protocol)},
    {"min_tls_version", NULL, cp_tls_version, TCOFF(min_v)},
    {"max_tls_version", NULL, cp_tls_version, TCOFF(max_v)},
    {"ciphers", NULL, keep_node, TCOFF(ciphers)},
    {"disable_sni", NULL, cp_bool, TCOFF(disable_sni), "false"},
    {"cert_pair", NULL, keep_node, TCOFF(cert_pair)},
    {"certificate", NULL, keep_node, TCOFF(cert)},
    {"private_key", NULL, keep_node, TCOFF(key)},
    {"ca_certificate", CK_ALIASES("server_auth_certificate"), keep_node, TCOFF(ca)},
    {"no_default_ca_certificate", NULL, cp_bool, TCOFF(no_default_ca), "false"},
    {"handshake_timeout", NULL, cp_duration, TCOFF(handshake_ns), "10s"},
    {"no_session_cache", NULL, cp_bool, TCOFF(no_session_cache), "false"},
    {"use_builtin_session_cache", NULL, cp_bool, TCOFF(builtin_cache), "false"},
    {"session_cache_lru_max_sites", NULL, cp_u32, TCOFF(lru_sites), "128", 1, 1 << 20},
    {"session_cache_each_capacity", NULL, cp_u32, TCOFF(each_capacity), "16", 1, 1 << 16},
    {"supported_groups", NULL, keep_node, TCOFF(groups)},
    {"insecure", NULL, cp_bool, TCOFF(insecure), "false"},
    {"use_ocsp_stapling", NULL, unsupported_if_true, 0},
    {"enable_sct", NULL, unsupported_if_true, 0},
    {"enable_grease", NULL, unsupported_if_true, 0},
    {"permute_extensions", NULL, unsupported_if_true, 0},
    {0},
};

static int client_build(struct conf_ctx *cx, const struct cnode *n, const struct client_tmp *t,
                        struct tls_client_conf *tc)
{
    int min_v = t->min_v ? t->min_v : t->protocol, max_v = t->max_v ? t->max_v : t->protocol;
    struct pair_nodes pair = {0};
    SSL_CTX *ctx;

    if (min_v && max_v && min_v > max_v)
        return conf_fail(cx, n, "min_tls_version is above max_tls_version");
    if (!(ctx = ctx_new(cx, n, false)))
        return -1;
    if ((min_v && !SSL_CTX_set_min_proto_version(ctx, min_v)) ||
        (max_v && !SSL_CTX_set_max_proto_version(ctx, max_v)))
        return conf_fail(cx, n, "cannot set the TLS version range: %s", ssl_reason());
    if (t->ciphers && ciphers_use(cx, ctx, t->ciphers) < 0)
        return -1;
    if (t->groups && groups_use(cx, ctx, t->groups) < 0)
        return -1;

    /* the peer is verified unless insecure; the host name is checked per connection */
    SSL_CTX_set_verify(ctx, t->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (t->ca) {
        STACK_OF(X509) *cas = sk_X509_new_null();
        int rc;

        if (!cas)
            return conf_fail(cx, t->ca, "out of memory");
        rc = certs_load(cx, t->ca, cas, "CA certificate");
        if (rc == 0)
            rc = ca_use(cx, t->ca, ctx, cas, false);
        sk_X509_pop_free(cas, X509_free);
        if (rc < 0)
            return -1;
    }
    if (!t->no_default_ca && SSL_CTX_set_default_verify_paths(ctx) != 1)
        return conf_fail(cx, n, "cannot load the system CA store: %s", ssl_reason());

    if (t->cert_pair && (t->cert || t->key))
        return conf_fail(cx, t->cert_pair, "use cert_pair or certificate + private_key, not both");
    if (t->cert_pair ? pair_nodes(cx, t->cert_pair, &pair) < 0
                     : inline_pair(cx, n, t->cert, t->key, &pair) < 0)
        return -1;
    if (pair.cert && pair_use(cx, ctx, pair.cert, pair.key) < 0)
        return -1;

    /* proxyd resumes from OpenSSL's client-side cache (the xprt calls SSL_set_session);
     * its size is sites x capacity whichever cache g3proxy would have used */
    if (t->no_session_cache) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
        SSL_CTX_sess_set_cache_size(ctx, (long)t->lru_sites * t->each_capacity);
    }
    ERR_clear_error(); /* nothing of this load may confuse a later SSL_get_error() */
    tc->ctx = ctx;
    tc->disable_sni = t->disable_sni;
    tc->insecure = t->insecure;
    tc->handshake_timeout_ns = t->handshake_ns;
    tc->set = true;
    return 0;
}

/* `{}` or `true`: defaults; `false`: unset; a map of the keys above. */
int cp_tls_client(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {tls_client_keys, NULL};
    static const struct cnode empty = {.type = CN_MAP};
    struct tls_client_conf *tc = slot;
    struct client_tmp t = {0};
    bool b;

    memset(tc, 0, sizeof(*tc));
    if (conf_parse_bool(n, &b) == 0) {
        if (!b)
            return 0;
        if (conf_apply(cx, &empty, tables, NULL, &t) < 0)
            return -1;
        return client_build(cx, n, &t, tc);
    }
    if (!n || n->type != CN_MAP)
        return conf_fail(cx, n, "expected a map or a boolean, got a %s", cnode_type_name(n));
    if (conf_apply(cx, n, tables, NULL, &t) < 0)
        return -1;
    return client_build(cx, n, &t, tc);
}

/* ---- server ---- */

struct server_tmp {
    const struct cnode *cert_pairs, *cert, *key, *ca; /* borrowed: config nodes */
    bool client_auth, no_ticket, no_session_cache;
    uint64_t handshake_ns;
};
#define TSOFF(f) offsetof(struct server_tmp, f)
static const struct conf_key tls_server_keys[] = {
    {"cert_pairs", NULL, keep_node, TSOFF(cert_pairs)},
    {"certificate", NULL, keep_node, TSOFF(cert)},
    {"private_key", NULL, keep_node, TSOFF(key)},
    {"enable_client_auth", NULL, cp_bool, TSOFF(client_auth), "false"},
    {"ca_certificate", CK_ALIASES("client_auth_certificate"), keep_node, TSOFF(ca)},
    {"no_session_ticket", NULL, cp_bool, TSOFF(no_ticket), "false"},
    {"no_session_cache", NULL, cp_bool, TSOFF(no_session_cache), "false"},
    {"handshake_timeout", NULL, cp_duration, TSOFF(handshake_ns), "10s"},
    {0},
};

/* Every context of one server: [0] is the default, the others are chosen by SNI. */
struct sni_set {
    size_t n;
    SSL_CTX **ctx; /* arena array; each context is owned by the arena */
};

/* Serve the first certificate whose names cover the SNI host; else the first pair. */
static int on_servername(SSL *ssl, int *al, void *arg)
{
    const struct sni_set *ss = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    if (!name)
        return SSL_TLSEXT_ERR_NOACK;
    for (size_t i = 0; i < ss->n; i++) {
        X509 *x = SSL_CTX_get0_certificate(ss->ctx[i]);
        if (x && X509_check_host(x, name, 0, 0, NULL) == 1) {
            if (i && !SSL_set_SSL_CTX(ssl, ss->ctx[i]))
                return SSL_TLSEXT_ERR_ALERT_FATAL;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Everything but the certificate: versions (TLS 1.2+, as g3proxy's rustls servers),
 * tickets, session cache, client verification. */
static int server_setup(struct conf_ctx *cx, const struct cnode *at, SSL_CTX *ctx,
                        const struct server_tmp *t, STACK_OF(X509) * cas)
{
    static const unsigned char sid[] = "proxyd";

    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        return conf_fail(cx, at, "cannot set the TLS version: %s", ssl_reason());
    if (t->no_ticket)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, t->no_session_cache ? SSL_SESS_CACHE_OFF
                                                            : SSL_SESS_CACHE_SERVER);
    /* resumption with client certificates requires a session id context */
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    if (t->client_auth)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (cas && ca_use(cx, at, ctx, cas, true) < 0)
        return -1;
    if (t->client_auth && !cas && SSL_CTX_set_default_verify_paths(ctx) != 1)
        return conf_fail(cx, at, "cannot load the system CA store: %s", ssl_reason());
    return 0;
}

static int server_build(struct conf_ctx *cx, const struct cnode *n, const struct server_tmp *t,
                        struct tls_server_conf *ts)
{
    STACK_OF(X509) *cas = NULL;
    struct pair_nodes *pairs;
    struct sni_set *ss;
    size_t np = 0;
    int rc = -1;

    if (t->cert_pairs && (t->cert || t->key))
        return conf_fail(cx, t->cert_pairs,
                         "use cert_pairs or certificate + private_key, not both");
    if (t->cert_pairs) {
        const struct cnode *cp = t->cert_pairs;
        size_t cnt = cp->type == CN_SEQ ? cp->n : 1;

        if (!cnt)
            return conf_fail(cx, cp, "empty cert_pairs list");
        if (!(pairs = arena_alloc(cx->arena, cnt * sizeof(*pairs))))
            return conf_fail(cx, cp, "out of memory");
        for (; np < cnt; np++)
            if (pair_nodes(cx, cp->type == CN_SEQ ? cp->items[np] : cp, &pairs[np]) < 0)
                return -1;
    } else {
        if (!(pairs = arena_alloc(cx->arena, sizeof(*pairs))))
            return conf_fail(cx, n, "out of memory");
        if (inline_pair(cx, n, t->cert, t->key, &pairs[0]) < 0)
            return -1;
        if (!pairs[0].cert)
            return conf_fail(cx, n, "no certificate: set cert_pairs or certificate + private_key");
        np = 1;
    }

    if (t->ca) {
        if (!(cas = sk_X509_new_null()))
            return conf_fail(cx, t->ca, "out of memory");
        if (certs_load(cx, t->ca, cas, "CA certificate") < 0)
            goto out;
    }
    if (!(ss = arena_alloc(cx->arena, sizeof(*ss))) ||
        !(ss->ctx = arena_alloc(cx->arena, np * sizeof(*ss->ctx)))) {
        conf_fail(cx, n, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        SSL_CTX *ctx = ctx_new(cx, pairs[i].cert, true);

        if (!ctx || server_setup(cx, t->ca ? t->ca : n, ctx, t, cas) < 0 ||
            pair_use(cx, ctx, pairs[i].cert, pairs[i].key) < 0)
            goto out;
        ss->ctx[ss->n++] = ctx;
    }
    if (np > 1) {
        SSL_CTX_set_tlsext_servername_callback(ss->ctx[0], on_servername);
        SSL_CTX_set_tlsext_servername_arg(ss->ctx[0], ss);
    }
    ERR_clear_error();
    ts->ctx = ss->ctx[0];
    ts->enable_client_auth = t->client_auth;
    ts->handshake_timeout_ns = t->handshake_ns;
    ts->set = true;
    rc = 0;
out:
    sk_X509_pop_free(cas, X509_free);
    return rc;
}

/* A map of the keys above; `false` = unset. Several cert pairs are chosen by SNI. */
int cp_tls_server(struct conf_ctx *cx, const struct cnode *n, void *slot, const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {tls_server_keys, NULL};
    struct tls_server_conf *ts = slot;
    struct server_tmp t = {0};
    bool b;

    memset(ts, 0, sizeof(*ts));
    if (conf_parse_bool(n, &b) == 0) {
        if (!b)
            return 0;
        return conf_fail(cx, n, "a TLS server needs certificates: set cert_pairs");
    }
    if (!n || n->type != CN_MAP)
        return conf_fail(cx, n, "expected a map, got a %s", cnode_type_name(n));
    if (conf_apply(cx, n, tables, NULL, &t) < 0)
        return -1;
    return server_build(cx, n, &t, ts);
}
