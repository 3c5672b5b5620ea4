/* SOCKS wire format: SOCKS4, SOCKS4a, SOCKS5 (RFC 1928) and its username/password
 * subnegotiation (RFC 1929). Pure functions: no I/O, no allocation, no global state.
 *
 * Parsers take the bytes received so far, (buf, len), and return
 *   > 0  a complete message is present: that many bytes belong to it (the rest of buf,
 *        if any, is the next message or payload); the out struct is filled;
 *     0  the message is incomplete so far: call again with more bytes;
 *   < 0  a SOCKS_E_* code: the message is invalid. The out struct is unspecified.
 * Results are prefix-stable: once a prefix of a stream gives a non-zero result, every
 * longer prefix gives the same result (and the same out), so a server may re-parse its
 * whole input buffer after each read. Fields are checked in wire order, each as soon as
 * it is complete (a bad version byte fails on the first byte; a bad domain fails when its
 * last byte arrives, before the port). Every message is bounded (at most 520 bytes for
 * SOCKS4a, 262 for a SOCKS5 request, 513 for RFC 1929), so a caller whose buffer holds
 * that much never waits forever. Pointers in out structs are borrowed: they point into
 * buf.
 *
 * Builders write into (buf, cap) and return the number of bytes written, or -1 when
 * cap is too small or an argument cannot be encoded; nothing else can fail.
 *
 * Target addresses come out as struct upstream_addr: kind HOST_IP (ip set, host is its
 * canonical text) or HOST_DOMAIN (host is the lower-cased name, one trailing dot
 * removed); port is the wire port, and 0 is reported as is (CONNECT to port 0 is for the
 * caller to refuse; UDP ASSOCIATE legitimately sends 0.0.0.0:0).
 * A name from a domain field (SOCKS5 ATYP 3, SOCKS4a) loses one trailing dot, then
 * becomes HOST_IP if it is an IPv4 or IPv6 literal (so "1.2.3.4." is an IP too), else
 * must pass domain_check(): ASCII letters, digits, '-', '_', labels 1..63 bytes, at most
 * 253 bytes in all. Anything else (empty, NUL byte, two trailing dots, "[::1]", ...) is
 * SOCKS_E_DOMAIN. */
#ifndef PROXYD_SOCKS_PROTO_H
#define PROXYD_SOCKS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "confval_types.h"

/* ---- constants ---- */
#define SOCKS4_VERSION      4
#define SOCKS5_VERSION      5
#define SOCKS5_AUTH_VERSION 1 /* RFC 1929 subnegotiation version */

/* Commands (SOCKS4 CD and SOCKS5 CMD share the values; SOCKS4 has no UDP). */
#define SOCKS_CMD_CONNECT       1
#define SOCKS_CMD_BIND          2
#define SOCKS_CMD_UDP_ASSOCIATE 3

/* SOCKS5 address types */
#define SOCKS5_ATYP_IPV4   1
#define SOCKS5_ATYP_DOMAIN 3
#define SOCKS5_ATYP_IPV6   4

/* SOCKS5 methods on the wire, and the flags socks5_parse_greeting reports them as */
#define SOCKS5_METHOD_NONE          0x00
#define SOCKS5_METHOD_GSSAPI        0x01
#define SOCKS5_METHOD_USERPASS      0x02
#define SOCKS5_METHOD_NO_ACCEPTABLE 0xFF
#define SOCKS5_METHOD_F_NONE        0x01
#define SOCKS5_METHOD_F_GSSAPI      0x02
#define SOCKS5_METHOD_F_USERPASS    0x04

/* RFC 1929 status: 0 success, anything else failure (the client must close). */
#define SOCKS5_AUTH_SUCCESS 0x00
#define SOCKS5_AUTH_FAILURE 0x01

/* SOCKS5 REP codes (RFC 1928 §6) */
#define SOCKS5_REP_SUCCEEDED          0x00
#define SOCKS5_REP_GENERAL_FAILURE    0x01
#define SOCKS5_REP_NOT_ALLOWED        0x02 /* connection not allowed by ruleset */
#define SOCKS5_REP_NET_UNREACHABLE    0x03
#define SOCKS5_REP_HOST_UNREACHABLE   0x04
#define SOCKS5_REP_CONN_REFUSED       0x05
#define SOCKS5_REP_TTL_EXPIRED        0x06
#define SOCKS5_REP_CMD_NOT_SUPPORTED  0x07
#define SOCKS5_REP_ATYP_NOT_SUPPORTED 0x08
/* Non-standard: "unassigned" in RFC 1928; g3proxy sends it for a connect timeout. */
#define SOCKS5_REP_CONN_TIMEOUT 0x09

/* SOCKS4 CD codes in replies */
#define SOCKS4_REP_GRANTED         0x5A
#define SOCKS4_REP_REJECTED        0x5B
#define SOCKS4_REP_IDENTD_UNREACH  0x5C
#define SOCKS4_REP_IDENTD_MISMATCH 0x5D

/* Sizes */
#define SOCKS4_REPLY_LEN        8
#define SOCKS4_FIELD_MAX        255 /* USERID and SOCKS4a domain, without the NUL */
#define SOCKS5_METHOD_REPLY_LEN 2
#define SOCKS5_AUTH_REPLY_LEN   2
#define SOCKS5_REPLY_MAX        262 /* 4 + 1 + 255 + 2: a reply with a domain address */
#define SOCKS5_UDP_HDR_MAX      262 /* same layout as a reply */

/* ---- errors (negative; each names one cause) ---- */
enum socks_err {
    SOCKS_E_VERSION = -1,      /* version byte is not the one this message needs */
    SOCKS_E_NMETHODS = -2,     /* SOCKS5 greeting with NMETHODS 0 */
    SOCKS_E_CMD = -3,          /* unknown command (SOCKS5 REP 0x07) */
    SOCKS_E_RSV = -4,          /* reserved byte(s) not zero: request RSV, UDP RSV */
    SOCKS_E_ATYP = -5,         /* unknown address type (SOCKS5 REP 0x08) */
    SOCKS_E_DOMAIN = -6,       /* domain empty, has a NUL byte, or is not a valid name
                                  (domain_check) nor an IP literal */
    SOCKS_E_USERID_LONG = -7,  /* SOCKS4 USERID: no NUL within 256 bytes */
    SOCKS_E_DOMAIN_LONG = -8,  /* SOCKS4a domain: no NUL within 256 bytes */
    SOCKS_E_AUTH_VERSION = -9, /* RFC 1929 VER is not 1 */
    SOCKS_E_ULEN = -10,        /* RFC 1929 ULEN 0 */
    SOCKS_E_AUTH_NUL = -11,    /* RFC 1929 UNAME or PASSWD contains a NUL byte */
    SOCKS_E_FRAG = -12,        /* UDP header FRAG != 0 (we never reassemble: drop) */
};

/* Static text for a SOCKS_E_* code (for logs); "unknown error" for anything else. */
const char *socks_strerror(int err);

/* The SOCKS5 REP code to answer a request that socks5_parse_request rejected with err:
 * SOCKS_E_CMD -> 0x07, SOCKS_E_ATYP -> 0x08, anything else -> 0x01 (general failure).
 * Errors that make the byte stream unusable (SOCKS_E_VERSION) are also mapped, but a
 * server will usually just close. */
uint8_t socks5_error_reply_code(int err);

/* ---- detection ---- */

/* Which SOCKS version starts this stream: SOCKS4_VERSION or SOCKS5_VERSION when the
 * first byte is 4 or 5, 0 when len is 0, SOCKS_E_VERSION otherwise. Consumes nothing. */
int socks_detect(const uint8_t *buf, size_t len);

/* ---- SOCKS4 / SOCKS4a ---- */

struct socks4_request {
    uint8_t cmd;                 /* SOCKS_CMD_CONNECT or SOCKS_CMD_BIND */
    bool is_4a;                  /* DSTIP was 0.0.0.x (x != 0): target came from the domain */
    struct upstream_addr target; /* HOST_IP (SOCKS4, or 4a with an IP literal) or HOST_DOMAIN */
    const uint8_t *userid;       /* borrowed: into buf, not NUL-terminated; never NULL */
    size_t userid_len;           /* 0..255 */
};

/* VN=4 CD DSTPORT(2) DSTIP(4) USERID NUL [DOMAIN NUL when DSTIP is 0.0.0.x, x != 0].
 * CD must be 1 or 2 (SOCKS_E_CMD). USERID is 0..255 bytes (SOCKS_E_USERID_LONG).
 * The SOCKS4a domain is 1..255 bytes (SOCKS_E_DOMAIN_LONG) and must be a valid domain
 * or an IP literal (SOCKS_E_DOMAIN); an IP literal gives HOST_IP. DSTIP 0.0.0.0 is
 * plain SOCKS4 with IP 0.0.0.0 (left for the egress filter to refuse). */
int socks4_parse_request(const uint8_t *buf, size_t len, struct socks4_request *out);

/* 8-byte reply: 0, rep (SOCKS4_REP_*), DSTPORT, DSTIP from bound when it is IPv4 (or
 * IPv4-mapped IPv6), zeros otherwise (bound may be NULL). Returns 8, or -1 if cap < 8. */
int socks4_build_reply(uint8_t rep, const union sockaddr_any *bound, uint8_t *buf, size_t cap);

/* ---- SOCKS5 method negotiation ---- */

struct socks5_greeting {
    uint8_t nmethods; /* 1..255 as sent */
    uint8_t methods;  /* SOCKS5_METHOD_F_* offered; other methods are ignored */
};

/* VER=5 NMETHODS(>=1) METHODS[NMETHODS]. Duplicates and unknown methods are accepted
 * (and unknown ones not reported). Errors: SOCKS_E_VERSION, SOCKS_E_NMETHODS. */
int socks5_parse_greeting(const uint8_t *buf, size_t len, struct socks5_greeting *out);

/* VER=5 METHOD: the server's choice (SOCKS5_METHOD_*). Returns 2, or -1 if cap < 2. */
int socks5_build_method_reply(uint8_t method, uint8_t *buf, size_t cap);

/* ---- RFC 1929 username/password ---- */

struct socks5_auth {
    const uint8_t *user; /* borrowed: into buf, not NUL-terminated */
    size_t user_len;     /* 1..255 */
    const uint8_t *pass; /* borrowed: into buf, not NUL-terminated */
    size_t pass_len;     /* 0..255 */
};

/* VER=1 ULEN UNAME PLEN PASSWD. ULEN 0 is SOCKS_E_ULEN. PLEN 0 is accepted although
 * RFC 1929 says 1..255: curl and others send an empty password when the URL has none,
 * and refusing it here would turn a wrong password into a protocol error; the user
 * lookup decides. A NUL byte in either field is refused (SOCKS_E_AUTH_NUL) so the
 * values may safely become C strings. Other errors: SOCKS_E_AUTH_VERSION. */
int socks5_parse_auth(const uint8_t *buf, size_t len, struct socks5_auth *out);

/* VER=1 STATUS (SOCKS5_AUTH_SUCCESS / _FAILURE). Returns 2, or -1 if cap < 2. */
int socks5_build_auth_reply(uint8_t status, uint8_t *buf, size_t cap);

/* ---- SOCKS5 requests and replies ---- */

struct socks5_request {
    uint8_t cmd;                 /* SOCKS_CMD_CONNECT, _BIND or _UDP_ASSOCIATE */
    struct upstream_addr target; /* DST.ADDR + DST.PORT */
};

/* VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT. Errors, in wire order: SOCKS_E_VERSION,
 * SOCKS_E_CMD (CMD not 1..3), SOCKS_E_RSV (RSV != 0: RFC 1928 fixes it at 0 and nothing
 * legitimate sets it), SOCKS_E_ATYP (not 1, 3, 4), SOCKS_E_DOMAIN (ATYP 3 with length 0,
 * a NUL byte, or a name that is neither a valid domain nor an IP literal; an IP literal
 * gives HOST_IP). Map errors to a REP code with socks5_error_reply_code(). */
int socks5_parse_request(const uint8_t *buf, size_t len, struct socks5_request *out);

/* VER=5 REP RSV=0 ATYP BND.ADDR BND.PORT from a socket address (NULL or a family other
 * than IPv4/IPv6: 0.0.0.0:0). An IPv4-mapped IPv6 address is written as IPv4 (a
 * dual-stack socket reports IPv4 peers that way; the client expects IPv4). Returns 10
 * or 22, or -1 if cap is too small. */
int socks5_build_reply(uint8_t rep, const union sockaddr_any *bound, uint8_t *buf, size_t cap);

/* Same from an upstream_addr: HOST_IP as ATYP 1/4 (written as given, no unmapping),
 * HOST_DOMAIN as ATYP 3 with host (1..255 bytes, else -1), HOST_NONE (or bound NULL) as
 * 0.0.0.0:0. Returns the length (at most SOCKS5_REPLY_MAX) or -1. */
int socks5_build_reply_host(uint8_t rep, const struct upstream_addr *bound, uint8_t *buf,
                            size_t cap);

/* ---- SOCKS5 UDP datagram header ---- */

/* RSV(2)=0 FRAG ATYP DST.ADDR DST.PORT DATA, parsed from one whole datagram. Returns the
 * header length h (DATA is buf[h, len), possibly empty) and fills *target. A datagram
 * gives 0 when it is shorter than its header: the caller drops it like an error.
 * Errors: SOCKS_E_RSV, SOCKS_E_FRAG (fragments are not supported: drop), SOCKS_E_ATYP,
 * SOCKS_E_DOMAIN. */
int socks5_parse_udp_header(const uint8_t *buf, size_t len, struct upstream_addr *target);

/* Header for a datagram relayed back to the client from src (the remote peer), with
 * FRAG 0; same address rules as socks5_build_reply (NULL: 0.0.0.0:0, IPv4-mapped
 * written as IPv4). Returns 10 or 22, or -1 if cap is too small. */
int socks5_build_udp_header(const union sockaddr_any *src, uint8_t *buf, size_t cap);

/* Same from an upstream_addr (e.g. a client-side header towards a SOCKS5 parent with a
 * domain target); same rules as socks5_build_reply_host. */
int socks5_build_udp_header_host(const struct upstream_addr *dst, uint8_t *buf, size_t cap);

#endif
