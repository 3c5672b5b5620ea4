/* HAProxy PROXY protocol, versions 1 (text) and 2 (binary), both directions: a parser
 * for headers received on a listener and builders for headers sent to a next hop.
 * Pure functions: no I/O, no allocation, no global state.
 *
 * The parser follows the SOCKS parsers' convention (socks_proto.h): it returns the
 * header length (> 0) when a complete header is present, 0 when more bytes are needed,
 * or a negative PP_E_* code. Results are prefix-stable (a longer input never changes a
 * non-zero result), a stream that cannot start a header fails on its first mismatching
 * byte, and a header never exceeds PROXY_PROTO_MAX_LEN bytes, so a caller that holds
 * that many bytes always gets a non-zero answer. */
#ifndef PROXYD_PROXY_PROTO_H
#define PROXYD_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "confval_types.h"

#define PROXY_PROTO_V1_MAX_LEN 107 /* whole v1 line including CRLF (spec §2.1) */
#define PROXY_PROTO_V2_SIG_LEN 12
#define PROXY_PROTO_V2_HDR_LEN 16 /* signature, ver/cmd, fam, len */
/* Largest v2 payload (address block + TLVs) accepted or built. The wire allows 65535;
 * senders put a few TLVs there at most, and a bound keeps buffers small. */
#ifndef PROXY_PROTO_V2_MAX_PAYLOAD
#define PROXY_PROTO_V2_MAX_PAYLOAD 4096
#endif
#define PROXY_PROTO_MAX_LEN (PROXY_PROTO_V2_HDR_LEN + PROXY_PROTO_V2_MAX_PAYLOAD)

/* v2 signature: "\r\n\r\n\0\r\nQUIT\n" */
#define PROXY_PROTO_V2_SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"

/* Commands */
#define PROXY_PROTO_CMD_LOCAL 0 /* v2 LOCAL: health check etc., no addresses */
#define PROXY_PROTO_CMD_PROXY 1 /* v1 always; v2 PROXY */

/* Transport of the original connection */
#define PROXY_PROTO_TRANSPORT_UNSPEC 0
#define PROXY_PROTO_TRANSPORT_STREAM 1 /* TCP */
#define PROXY_PROTO_TRANSPORT_DGRAM  2 /* UDP */

/* v2 TLV types (spec §2.2.7 ff.), for proxy_proto_tlv_next users */
#define PP2_TYPE_ALPN           0x01
#define PP2_TYPE_AUTHORITY      0x02
#define PP2_TYPE_CRC32C         0x03
#define PP2_TYPE_NOOP           0x04
#define PP2_TYPE_UNIQUE_ID      0x05
#define PP2_TYPE_SSL            0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN      0x22
#define PP2_SUBTYPE_SSL_CIPHER  0x23
#define PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define PP2_TYPE_NETNS          0x30

/* Errors (negative; each names one cause) */
enum proxy_proto_err {
    PP_E_SIGNATURE = -1,    /* starts like neither "PROXY " nor the v2 signature */
    PP_E_V1_TOO_LONG = -2,  /* v1: no CRLF within PROXY_PROTO_V1_MAX_LEN bytes */
    PP_E_V1_EOL = -3,       /* v1: LF without CR, or CR not followed by LF */
    PP_E_V1_PROTO = -4,     /* v1: protocol is not TCP4, TCP6 or UNKNOWN */
    PP_E_V1_SYNTAX = -5,    /* v1: missing/extra field, not exactly one space between */
    PP_E_V1_ADDR = -6,      /* v1: address not valid for the declared protocol */
    PP_E_V1_PORT = -7,      /* v1: port not decimal 0..65535 without leading zeros */
    PP_E_V2_VERSION = -8,   /* v2: version nibble is not 2 */
    PP_E_V2_COMMAND = -9,   /* v2: command nibble is not LOCAL (0) or PROXY (1) */
    PP_E_V2_FAMILY = -10,   /* v2: family/transport byte not one the spec defines */
    PP_E_V2_TOO_LONG = -11, /* v2: length field > PROXY_PROTO_V2_MAX_PAYLOAD */
    PP_E_V2_ADDR_LEN = -12, /* v2: length shorter than the family's address block */
    PP_E_V2_TLV = -13,      /* v2: the TLVs do not exactly fill the rest of the payload */
};

/* What a header said. src and dst have sa_family 0 whenever no usable address was sent
 * (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC or UNIX families): the caller then keeps the
 * connection's own endpoints. Otherwise both are AF_INET or both AF_INET6, ports set. */
struct proxy_proto_info {
    uint8_t version;   /* 1 or 2 */
    uint8_t command;   /* PROXY_PROTO_CMD_*; v1 is always PROXY */
    uint8_t transport; /* PROXY_PROTO_TRANSPORT_*; v1 TCP4/TCP6: STREAM */
    uint8_t v2_family; /* v2: the raw family/transport byte (0x11 TCP4, ...); v1: 0 */
    union sockaddr_any src, dst;
    const uint8_t *tlvs; /* v2: borrowed, into buf: the TLV area (validated); NULL if none */
    size_t tlvs_len;
};

/* One TLV; value is borrowed (into the parsed buffer, or the caller's for builders). */
struct proxy_proto_tlv {
    uint8_t type;
    uint16_t len;
    const uint8_t *value;
};

/* Static text for a PP_E_* code (for logs); "unknown error" for anything else. */
const char *proxy_proto_strerror(int err);

/* Parse a v1 or v2 header at the start of buf.
 * v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (or TCP6), fields separated by
 *   exactly one space, addresses that inet_pton accepts for the declared family (so no
 *   IPv4 text under TCP6 except in its ::ffff: form, no leading zeros in IPv4), ports
 *   decimal without leading zeros; or "PROXY UNKNOWN" followed by CRLF or by a space and
 *   anything up to CRLF (ignored, as the spec says). CR and LF appear only as the final
 *   CRLF. At most 107 bytes including CRLF.
 * v2: signature, version 2, command LOCAL or PROXY, one of the spec's family/transport
 *   bytes (0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32; refused otherwise, even with LOCAL),
 *   a length <= PROXY_PROTO_V2_MAX_PAYLOAD that covers the family's address block (12,
 *   36 or 216 bytes). With LOCAL the address block is skipped, not reported; with UNIX
 *   it is not reported either. The rest of the payload must be whole TLVs (type, 16-bit
 *   length, value) exactly filling it; their contents are not interpreted (CRC32C is
 *   not verified). Errors on the 16-byte fixed part are reported before the payload has
 *   arrived.
 * Returns the header length (the caller's data starts there), 0, or PP_E_*. out is
 * zeroed first and filled on success. */
int proxy_proto_parse(const uint8_t *buf, size_t len, struct proxy_proto_info *out);

/* Iterate TLVs in (tlvs, len) (e.g. info->tlvs, or the sub-TLVs inside a PP2_TYPE_SSL
 * value after its 5-byte client/verify prefix). *off starts at 0. Returns 1 with *tlv
 * filled and *off advanced, 0 at the end, -1 if a TLV overruns the area (never for an
 * area proxy_proto_parse accepted). */
int proxy_proto_tlv_next(const uint8_t *tlvs, size_t len, size_t *off, struct proxy_proto_tlv *tlv);

/* Build a v1 line from the client's address src and the address it connected to, dst.
 * Both AF_INET: TCP4; both AF_INET6: TCP6 (written as given, mapped or not); mixed: the
 * IPv6 one is unmapped when it is IPv4-mapped (TCP4), else the IPv4 one is mapped
 * (TCP6). Either NULL or of another family: "PROXY UNKNOWN\r\n". Returns the length
 * (<= PROXY_PROTO_V1_MAX_LEN; no NUL is written), or -1 if cap is too small. */
int proxy_proto_build_v1(const union sockaddr_any *src, const union sockaddr_any *dst, uint8_t *buf,
                         size_t cap);

/* Build a v2 header: command PROXY, transport STREAM, families as for v1 (TCP4/TCP6);
 * when src or dst is NULL or of another family: command LOCAL, family UNSPEC (what a
 * health check sends). Then the ntlvs TLVs in order (tlvs may be NULL when ntlvs is 0;
 * a TLV's value may be NULL when its len is 0). Returns the total length, or -1 if cap
 * is too small or the payload would exceed PROXY_PROTO_V2_MAX_PAYLOAD. */
int proxy_proto_build_v2(const union sockaddr_any *src, const union sockaddr_any *dst, uint8_t *buf,
                         size_t cap, const struct proxy_proto_tlv *tlvs, size_t ntlvs);

#endif
