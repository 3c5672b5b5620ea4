/* Plain TCP and TLS transports; see xprt.h. */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "confval.h"
#include "xprt.h"

/* ------------------------------------------------------------------- TCP */

static ssize_t tcp_recv(struct conn *c, void *buf, size_t len)
{
    ssize_t r;

    do
        r = recv(c->fd, buf, len, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EAGAIN)
        c->want = CO_WANT_READ;
    else if (r == 0)
        c->flags |= CO_F_EOF;
    else if (r < 0)
        c->flags |= CO_F_ERROR;
    return r;
}

static ssize_t tcp_send(struct conn *c, const void *buf, size_t len)
{
    ssize_t r;

    do
        r = send(c->fd, buf, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EAGAIN)
        c->want = CO_WANT_WRITE;
    else if (r < 0)
        c->flags |= CO_F_ERROR;
    return r;
}

static int tcp_shutw(struct conn *c)
{
    c->flags |= CO_F_SHUTW;
    return shutdown(c->fd, SHUT_WR) < 0 && errno != ENOTCONN ? -1 : 0;
}

static void tcp_release(struct conn *c)
{
}

const struct xprt_ops xprt_tcp = {
    .name = "tcp",
    .can_splice = true,
    .recv = tcp_recv,
    .send = tcp_send,
    .shutw = tcp_shutw,
    .release = tcp_release,
};

/* ------------------------------------------------------------------- TLS */

/* Map an SSL_* result to our convention. */
static ssize_t tls_result(struct conn *c, SSL *ssl, int r)
{
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
        c->want = CO_WANT_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->want = CO_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        c->flags |= CO_F_EOF;
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0 || errno == EAGAIN)
            errno = ECONNRESET; /* EOF without close_notify */
        c->flags |= CO_F_ERROR;
        return -1;
    default:
        ERR_clear_error();
        errno = EPROTO;
        c->flags |= CO_F_ERROR;
        return -1;
    }
}

static ssize_t tls_recv(struct conn *c, void *buf, size_t len)
{
    size_t got = 0;
    int r;

    errno = 0;
    r = SSL_read_ex(c->ssl, buf, len, &got);
    return r == 1 ? (ssize_t)got : tls_result(c, c->ssl, r);
}

static ssize_t tls_send(struct conn *c, const void *buf, size_t len)
{
    size_t put = 0;
    int r;

    errno = 0;
    r = SSL_write_ex(c->ssl, buf, len, &put);
    return r == 1 ? (ssize_t)put : tls_result(c, c->ssl, r);
}

static int tls_shutw(struct conn *c)
{
    int r;

    errno = 0;
    r = SSL_shutdown(c->ssl);
    if (r < 0) {
        if (tls_result(c, c->ssl, r) < 0 && errno == EAGAIN)
            return -1;
    }
    c->flags |= CO_F_SHUTW;
    shutdown(c->fd, SHUT_WR);
    return 0;
}

static void tls_release(struct conn *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
}

const struct xprt_ops xprt_tls = {
    .name = "tls",
    .can_splice = false,
    .recv = tls_recv,
    .send = tls_send,
    .shutw = tls_shutw,
    .release = tls_release,
};

void conn_close(struct conn *c)
{
    if (c->xprt)
        c->xprt->release(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static SSL *tls_new(struct conn *c, void *ssl_ctx)
{
    SSL *ssl = SSL_new(ssl_ctx);

    if (!ssl)
        return NULL;
    if (!SSL_set_fd(ssl, c->fd)) {
        SSL_free(ssl);
        return NULL;
    }
    c->ssl = ssl;
    c->xprt = &xprt_tls;
    return ssl;
}

int conn_tls_client(struct conn *c, void *ssl_ctx, const char *sni, const char *verify_name)
{
    SSL *ssl = tls_new(c, ssl_ctx);
    struct ip_addr ip;

    if (!ssl)
        return -1;
    if (sni && ip_parse(sni, &ip) < 0 && !SSL_set_tlsext_host_name(ssl, sni))
        return -1;
    if (verify_name) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        if (ip_parse(verify_name, &ip) == 0) {
            if (!X509_VERIFY_PARAM_set1_ip_asc(vp, verify_name))
                return -1;
        } else {
            X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (!X509_VERIFY_PARAM_set1_host(vp, verify_name, 0))
                return -1;
        }
    }
    SSL_set_connect_state(ssl);
    return 0;
}

int conn_tls_server(struct conn *c, void *ssl_ctx)
{
    SSL *ssl = tls_new(c, ssl_ctx);

    if (!ssl)
        return -1;
    SSL_set_accept_state(ssl);
    return 0;
}

int conn_tls_handshake(struct conn *c, const char **why)
{
    int r;

    errno = 0;
    r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return STEP_DONE;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        c->want = CO_WANT_READ;
        return STEP_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->want = CO_WANT_WRITE;
        return STEP_AGAIN;
    default: {
        long vr = SSL_get_verify_result(c->ssl);
        unsigned long e = ERR_peek_last_error();
        if (vr != X509_V_OK)
            *why = X509_verify_cert_error_string(vr);
        else if (e)
            *why = ERR_reason_error_string(e);
        else
            *why = errno ? strerror(errno) : "connection closed during the handshake";
        if (!*why)
            *why = "handshake failed";
        ERR_clear_error();
        c->flags |= CO_F_ERROR;
        return STEP_ERROR;
    }
    }
}
