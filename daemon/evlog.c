/* Event logs; see evlog.h.
 *
 * Config: evlog_conf_parse() reads g3proxy's `log:` value (reference §3) through key
 * tables, so unknown keys and bad values fail with file:line:col.
 *
 * Records: a struct evrec lives on the caller's stack. String values are borrowed;
 * values we format (durations, times, addresses) are copied into its scratch buffer.
 * A record that does not fit (EVREC_MAX_FIELDS, EVREC_SCRATCH) loses the extra fields.
 *
 * Threads: evlog_emit() formats the record for its sink on the caller's thread into
 * one malloc'd queue item and appends it to a mutex-guarded list (the critical section
 * is a few stores). One logger thread takes the whole list at once and writes it in
 * batches: writev() for files and stdout, sendmmsg() for syslog, one datagram per record
 * for the journal. A sink whose queue holds async_channel_size records drops new ones
 * (counted by evlog_dropped()); callers never wait and never do I/O.
 *
 * Formats. Every record carries the common fields daemon_name (the daemon group;
 * omitted when empty), pid and log_type (Task, Escape, Resolve), then its own fields
 * in insertion order, then report_ts (unix seconds) when append_report_ts is set.
 * <ts> is RFC 3339 UTC with microseconds ("2026-11-22T10:00:00.123456Z"), <level> one
 * of error, warning, notice, info, debug.
 *   text     <ts> <level> <message|-> key=value key=value ...\n   (quoting: text_value())
 *   json     {"ts":"<ts>","level":"<level>","message":"..." (when set),"key":value,...}\n
 *            numbers are JSON numbers, booleans JSON booleans, everything else strings
 *   journal  native protocol: PRIORITY=<level number>, SYSLOG_IDENTIFIER=proxyd,
 *            MESSAGE=<message, or the key=value text when the record has none>, then
 *            one field per key (upper-cased, non-alphanumerics -> '_'); a value holding
 *            '\n' uses the binary form (KEY\n, 64-bit little-endian length, value\n)
 *   syslog   facility daemon. RFC 3164: "<PRI>Mmm dd hh:mm:ss [host ]proxyd[pid]: BODY"
 *            (local time, as syslog(3)) where BODY is the text format without <ts> and
 *            <level>. RFC 5424: "<PRI>1 <ts> <host|-> proxyd <pid> <msgid|-> SD[ MSG]"
 *            where SD is [proxyd@<enterprise_id> key="value" ...] ('"', '\' and ']'
 *            escaped with '\') and MSG the message. With use_cee_log_syntax the BODY
 *            (3164) or MSG (5424, SD "-") is cee_event_flag followed by the JSON object.
 *            Control characters are never written raw in syslog or text output. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "confval.h"
#include "evlog.h"
#include "json.h"

#define QUEUE_DEFAULT   4096
#define QUEUE_MAX       (1 << 20)
#define SYSLOG_DAEMON   3    /* facility */
#define CLOSE_FLUSH_SEC 2    /* evlog_close() waits this long for the queue to drain */
#define BATCH_MAX       256  /* records per writev()/sendmmsg() */
#define IO_ERR_SAMPLE   1024 /* report the first write error of a sink, then 1 in N */
#define STALL_WAIT_MS   100  /* a full syslog socket or stdout pipe: wait once */

static const char *const type_names[EVLOG_NTYPES] = {"Task", "Escape", "Resolve"};

/* ================================================================= config */

/* A log config ("default", "task", ... or a shorthand) being parsed: the sink plus the
 * node that named its driver, because a log config names one driver only. */
struct lc_slot {
    struct evlog_sink_conf s;      /* strings: borrowed from the config arena */
    const struct cnode *driver_by; /* borrowed: NULL until a driver key is seen */
};

/* One top-level slot: `by` is the node that set it (NULL: not set). */
struct top_slot {
    struct evlog_sink_conf s; /* strings: borrowed from the config arena */
    const struct cnode *by;   /* borrowed */
};

struct log_top {
    struct top_slot def;
    struct top_slot type[EVLOG_NTYPES];
};

#define SOFF(f) offsetof(struct evlog_sink_conf, f)

/* Every default of a sink, whatever its driver: discard, queue of 4096, CEE flag
 * "@cee:". The driver keys set their own format default (take_driver()) and a syslog
 * sink without target gets /dev/log (sink_finish()). */
static void sink_defaults(struct evlog_sink_conf *s)
{
    memset(s, 0, sizeof(*s));
    s->driver = EVD_DISCARD;
    s->format = EVF_TEXT;
    s->queue_size = QUEUE_DEFAULT;
    s->cee_flag = (char *)"@cee:";
}

static void sink_finish(struct evlog_sink_conf *s)
{
    if (s->driver == EVD_SYSLOG && !s->syslog_unix && !s->syslog_udp.sa.sa_family)
        s->syslog_unix = (char *)"/dev/log";
}

static int take_driver(struct conf_ctx *cx, const struct cnode *n, struct lc_slot *ls,
                       enum evlog_driver drv)
{
    if (ls->driver_by)
        return conf_fail(cx, n, "a log config names one driver only (another one is at line %u)",
                         ls->driver_by->line);
    ls->driver_by = n;
    ls->s.driver = drv;
    ls->s.format = drv == EVD_FILE ? EVF_JSON : EVF_TEXT;
    return 0;
}

/* A driver without options: null or an empty map. */
static int no_options(struct conf_ctx *cx, const struct cnode *n, void *obj)
{
    static const struct conf_key none[] = {{0}};
    static const struct conf_key *const tables[] = {none, NULL};

    if (n->type == CN_NULL)
        return 0;
    return conf_apply(cx, n, tables, NULL, obj);
}

static int cp_format(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (str_ieq(s, "text"))
        *(enum evlog_format *)slot = EVF_TEXT;
    else if (str_ieq(s, "json"))
        *(enum evlog_format *)slot = EVF_JSON;
    else
        return conf_fail(cx, n, "unknown format '%s' (expected text or json)", s);
    return 0;
}

/* An absolute path that fits a sockaddr_un (g3proxy requires absolute paths here). */
static int cp_unix_path(struct conf_ctx *cx, const struct cnode *n, void *slot,
                        const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (s[0] != '/')
        return conf_fail(cx, n, "expected an absolute path, got '%s'", s);
    if (n->len >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return conf_fail(cx, n, "socket path longer than %zu bytes",
                         sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    return cp_str(cx, n, slot, k);
}

/* ---- driver: discard, journal, stdout, file, fluentd (slot: struct lc_slot) */

static int drv_discard(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    struct lc_slot *ls = slot;

    if (take_driver(cx, n, ls, EVD_DISCARD) < 0)
        return -1;
    return no_options(cx, n, &ls->s);
}

static int drv_journal(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    struct lc_slot *ls = slot;

    if (take_driver(cx, n, ls, EVD_JOURNAL) < 0)
        return -1;
    return no_options(cx, n, &ls->s);
}

static const struct conf_key stdout_keys[] = {
    {"format", NULL, cp_format, SOFF(format)},
    {0},
};

static int drv_stdout(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {stdout_keys, NULL};
    struct lc_slot *ls = slot;

    if (take_driver(cx, n, ls, EVD_STDOUT) < 0)
        return -1;
    if (n->type == CN_NULL)
        return 0;
    return conf_apply(cx, n, tables, NULL, &ls->s);
}

static const struct conf_key file_keys[] = {
    {"path", NULL, cp_path, SOFF(path), NULL, 0, 0, CK_F_REQUIRED},
    {"format", NULL, cp_format, SOFF(format)},
    {0},
};

/* file: {path, format} or just the path */
static int drv_file(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {file_keys, NULL};
    struct lc_slot *ls = slot;

    if (take_driver(cx, n, ls, EVD_FILE) < 0)
        return -1;
    if (n->type == CN_SCALAR)
        return cp_path(cx, n, &ls->s.path, NULL);
    if (n->type != CN_MAP)
        return conf_fail(cx, n, "the file driver needs a path: {path: FILE, format: text|json}");
    return conf_apply(cx, n, tables, NULL, &ls->s);
}

static int drv_fluentd(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    return conf_fail(cx, n, "unsupported: fluentd driver is not implemented");
}

/* ---- driver: syslog (slot: struct evlog_sink_conf) */

static int target_free(struct conf_ctx *cx, const struct cnode *n, struct evlog_sink_conf *s)
{
    if (s->syslog_unix || s->syslog_udp.sa.sa_family)
        return conf_fail(cx, n, "the syslog target is set twice");
    return 0;
}

static int sl_target_unix(struct conf_ctx *cx, const struct cnode *n, void *slot,
                          const struct conf_key *k)
{
    static const struct conf_key keys[] = {
        {"path", NULL, cp_unix_path, SOFF(syslog_unix), NULL, 0, 0, CK_F_REQUIRED},
        {0},
    };
    static const struct conf_key *const tables[] = {keys, NULL};
    struct evlog_sink_conf *s = slot;

    if (target_free(cx, n, s) < 0)
        return -1;
    if (n->type == CN_MAP)
        return conf_apply(cx, n, tables, NULL, s);
    return cp_unix_path(cx, n, &s->syslog_unix, NULL);
}

static const struct conf_key udp_keys[] = {
    {"address", CK_ALIASES("addr"), cp_env_sockaddr, SOFF(syslog_udp), NULL, 0, 0, CK_F_REQUIRED},
    {"bind_ip", CK_ALIASES("bind"), cp_ip, SOFF(syslog_bind)},
    {0},
};

static int sl_target_udp(struct conf_ctx *cx, const struct cnode *n, void *slot,
                         const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {udp_keys, NULL};
    struct evlog_sink_conf *s = slot;
    uint16_t port = 0;
    struct ip_addr ip;

    if (target_free(cx, n, s) < 0)
        return -1;
    if (n->type == CN_MAP) {
        if (conf_apply(cx, n, tables, NULL, s) < 0)
            return -1;
    } else if (cp_env_sockaddr(cx, n, &s->syslog_udp, NULL) < 0) {
        return -1;
    }
    sockaddr_to_ip(&s->syslog_udp, &ip, &port);
    if (!port)
        return conf_fail(cx, n, "the syslog UDP address needs a port (\"ip:514\")");
    if (s->syslog_bind.family && s->syslog_bind.family != ip.family)
        return conf_fail(cx, n, "bind_ip and address are not of the same IP family");
    return 0;
}

static int sl_target(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    static const struct conf_key keys[] = {
        {"udp", NULL, sl_target_udp, 0},
        {"unix", NULL, sl_target_unix, 0},
        {0},
    };
    static const struct conf_key *const tables[] = {keys, NULL};

    if (n->type != CN_MAP || n->n == 0)
        return conf_fail(cx, n, "expected a map with 'udp' or 'unix'");
    return conf_apply(cx, n, tables, NULL, slot);
}

/* RFC 5424 MSGID: 1..32 printable US-ASCII characters, no space. */
static int cp_msgid(struct conf_ctx *cx, const struct cnode *n, void *slot,
                    const struct conf_key *k)
{
    const char *s = NULL;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    bool okay = n->len >= 1 && n->len <= 32;
    for (const char *p = s; okay && *p; p++)
        okay = *p > 32 && *p < 127;
    if (!okay)
        return conf_fail(cx, n,
                         "message_id must be 1 to 32 printable ASCII characters "
                         "without spaces");
    return cp_str(cx, n, slot, k);
}

/* format_rfc5424: true|false, an enterprise id (integer), a message id (string) or
 * {enterprise_id, message_id}. */
static int sl_rfc5424(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct conf_key keys[] = {
        {"enterprise_id", NULL, cp_u32, SOFF(enterprise_id), NULL, 0, INT32_MAX},
        {"message_id", NULL, cp_msgid, SOFF(message_id)},
        {0},
    };
    static const struct conf_key *const tables[] = {keys, NULL};
    struct evlog_sink_conf *s = slot;
    int64_t v;

    s->rfc5424 = true;
    if (n->type == CN_NULL)
        return 0;
    if (n->type == CN_MAP)
        return conf_apply(cx, n, tables, NULL, s);
    if (n->type != CN_SCALAR)
        return conf_fail(cx, n, "expected a boolean, an enterprise id, a message id or a map");
    if (!n->quoted && conf_parse_i64(n->str, &v) == 0) {
        if (v < 0 || v > INT32_MAX)
            return conf_fail(cx, n, "enterprise id %lld is out of range [0, %d]", (long long)v,
                             INT32_MAX);
        s->enterprise_id = (uint32_t)v;
        return 0;
    }
    if (conf_parse_bool(n, &s->rfc5424) == 0)
        return 0;
    return cp_msgid(cx, n, &s->message_id, NULL);
}

static int cp_cee_flag(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    if (cp_ascii(cx, n, slot, k) < 0)
        return -1;
    if (!**(char **)slot)
        return conf_fail(cx, n, "empty CEE event flag");
    return 0;
}

static const struct conf_key syslog_keys[] = {
    {"target_unix", CK_ALIASES("backend_unix"), sl_target_unix, 0},
    {"target_udp", CK_ALIASES("backend_udp"), sl_target_udp, 0},
    {"target", CK_ALIASES("backend"), sl_target, 0},
    {"format_rfc5424", NULL, sl_rfc5424, 0},
    {"use_cee_log_syntax", CK_ALIASES("use_cls"), cp_bool, SOFF(cee)},
    {"cee_event_flag", CK_ALIASES("cee_cookie"), cp_cee_flag, SOFF(cee_flag)},
    {"emit_hostname", NULL, cp_bool, SOFF(emit_hostname)},
    {"append_report_ts", NULL, cp_bool, SOFF(append_report_ts)},
    {0},
};

static int drv_syslog(struct conf_ctx *cx, const struct cnode *n, void *slot,
                      const struct conf_key *k)
{
    static const struct conf_key *const tables[] = {syslog_keys, NULL};
    struct lc_slot *ls = slot;

    if (take_driver(cx, n, ls, EVD_SYSLOG) < 0)
        return -1;
    if (n->type == CN_NULL)
        return 0;
    return conf_apply(cx, n, tables, NULL, &ls->s);
}

/* ---- log config: a driver name or {<driver>: options, async_*} (slot: lc_slot) */

static int cp_thread_number(struct conf_ctx *cx, const struct cnode *n, void *slot,
                            const struct conf_key *k)
{
    const char *s = NULL;
    int64_t v;

    if (conf_scalar(cx, n, &s) < 0)
        return -1;
    if (conf_parse_i64(s, &v) < 0 || v != 1)
        return conf_fail(cx, n, "only 1 is supported (one logger thread writes every event log)");
    return 0;
}

/* io_error_sampling_offset: validated as g3proxy does (0..16) and otherwise ignored:
 * write errors are reported for the first one and then one in IO_ERR_SAMPLE. */
static int cp_sampling_offset(struct conf_ctx *cx, const struct cnode *n, void *slot,
                              const struct conf_key *k)
{
    uint32_t v;

    return cp_u32(cx, n, &v, k);
}

#define LOFF(f) offsetof(struct lc_slot, f)
static const struct conf_key logconf_keys[] = {
    {"discard", NULL, drv_discard, 0},
    {"stdout", NULL, drv_stdout, 0},
    {"journal", NULL, drv_journal, 0},
    {"syslog", NULL, drv_syslog, 0},
    {"file", NULL, drv_file, 0},
    {"fluentd", NULL, drv_fluentd, 0},
    {"async_channel_size", CK_ALIASES("channel_size"), cp_u32, LOFF(s.queue_size), NULL, 1,
     QUEUE_MAX},
    {"async_thread_number", CK_ALIASES("thread_number"), cp_thread_number, 0},
    {"io_error_sampling_offset", NULL, cp_sampling_offset, 0, NULL, 0, 16},
    {0},
};

static int driver_by_name(struct conf_ctx *cx, const struct cnode *n, struct lc_slot *ls)
{
    static const struct {
        const char *name;
        enum evlog_driver drv;
    } names[] = {
        {"discard", EVD_DISCARD},
        {"stdout", EVD_STDOUT},
        {"journal", EVD_JOURNAL},
        {"syslog", EVD_SYSLOG},
    };
    char norm[32];

    conf_normalize(n->str, norm, sizeof(norm));
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (n->len < sizeof(norm) && strcmp(norm, names[i].name) == 0)
            return take_driver(cx, n, ls, names[i].drv);
    if (strcmp(norm, "file") == 0)
        return conf_fail(cx, n, "the file driver needs a path: write {file: {path: FILE}}");
    if (strcmp(norm, "fluentd") == 0)
        return conf_fail(cx, n, "unsupported: fluentd driver is not implemented");
    return conf_fail(cx, n,
                     "unknown log driver '%s' (expected discard, stdout, journal, "
                     "syslog or a map for file)",
                     n->str);
}

static int logconf_parse(struct conf_ctx *cx, const struct cnode *n, struct lc_slot *ls)
{
    static const struct conf_key *const tables[] = {logconf_keys, NULL};

    memset(ls, 0, sizeof(*ls));
    sink_defaults(&ls->s);
    if (n->type == CN_SCALAR) {
        if (driver_by_name(cx, n, ls) < 0)
            return -1;
    } else if (n->type == CN_MAP) {
        if (conf_apply(cx, n, tables, NULL, ls) < 0)
            return -1;
    } else {
        return conf_fail(cx, n, "expected a driver name or a map, got a %s", cnode_type_name(n));
    }
    sink_finish(&ls->s);
    return 0;
}

/* ---- top level (slot: struct top_slot) */

static int top_taken(struct conf_ctx *cx, const struct cnode *n, struct top_slot *ts)
{
    if (ts->by)
        return conf_fail(cx, n, "the default log config is set twice (also at line %u)",
                         ts->by->line);
    ts->by = n;
    return 0;
}

static int top_logconf(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    struct top_slot *ts = slot;
    struct lc_slot ls;

    if (top_taken(cx, n, ts) < 0 || logconf_parse(cx, n, &ls) < 0)
        return -1;
    ts->s = ls.s;
    return 0;
}

/* `syslog: {...}` etc. at the top: the default log config with that driver. */
static int top_shorthand(struct conf_ctx *cx, const struct cnode *n, struct top_slot *ts,
                         conf_parse_fn drv)
{
    struct lc_slot ls;

    if (top_taken(cx, n, ts) < 0)
        return -1;
    memset(&ls, 0, sizeof(ls));
    sink_defaults(&ls.s);
    if (drv(cx, n, &ls, NULL) < 0)
        return -1;
    sink_finish(&ls.s);
    ts->s = ls.s;
    return 0;
}

#define SHORTHAND(name)                                                                            \
    static int top_##name(struct conf_ctx *cx, const struct cnode *n, void *slot,                  \
                          const struct conf_key *k)                                                \
    {                                                                                              \
        return top_shorthand(cx, n, slot, drv_##name);                                             \
    }
SHORTHAND(discard)
SHORTHAND(stdout)
SHORTHAND(journal)
SHORTHAND(syslog)
SHORTHAND(file)
SHORTHAND(fluentd)

static int top_auditor(struct conf_ctx *cx, const struct cnode *n, void *slot,
                       const struct conf_key *k)
{
    if (n->type == CN_NULL || (n->type == CN_SCALAR && strcmp(n->str, "discard") == 0))
        return 0;
    return conf_fail(cx, n, "unsupported: auditor logs (only 'discard' is accepted)");
}

#define TOFF(f) offsetof(struct log_top, f)
static const struct conf_key top_keys[] = {
    {"default", NULL, top_logconf, TOFF(def)},
    {"task", NULL, top_logconf, TOFF(type[EVLOG_TASK])},
    {"escape", NULL, top_logconf, TOFF(type[EVLOG_ESCAPE])},
    {"resolve", NULL, top_logconf, TOFF(type[EVLOG_RESOLVE])},
    {"discard", NULL, top_discard, TOFF(def)},
    {"stdout", NULL, top_stdout, TOFF(def)},
    {"journal", NULL, top_journal, TOFF(def)},
    {"syslog", NULL, top_syslog, TOFF(def)},
    {"file", NULL, top_file, TOFF(def)},
    {"fluentd", NULL, top_fluentd, TOFF(def)},
    {"audit", NULL, top_auditor, 0},
    {"inspect", NULL, top_auditor, 0},
    {"intercept", NULL, top_auditor, 0},
    {0},
};

int evlog_conf_parse(struct conf_ctx *cx, const struct cnode *n, struct evlog_conf *out)
{
    static const struct conf_key *const tables[] = {top_keys, NULL};
    struct log_top top;
    struct lc_slot ls;

    memset(&top, 0, sizeof(top));
    sink_defaults(&top.def.s);
    for (int t = 0; t < EVLOG_NTYPES; t++)
        out->sink[t] = top.def.s;
    if (!n || n->type == CN_NULL)
        return 0;
    if (n->type == CN_SCALAR) {
        if (logconf_parse(cx, n, &ls) < 0)
            return -1;
        top.def.s = ls.s;
    } else if (n->type == CN_MAP) {
        if (conf_apply(cx, n, tables, NULL, &top) < 0)
            return -1;
    } else {
        return conf_fail(cx, n, "expected a driver name or a map, got a %s", cnode_type_name(n));
    }
    for (int t = 0; t < EVLOG_NTYPES; t++)
        out->sink[t] = top.type[t].by ? top.type[t].s : top.def.s;
    return 0;
}

/* ================================================================ records */

void evrec_init(struct evrec *r, enum evlog_type type, enum log_level level, const char *msg)
{
    r->type = type;
    r->level = level;
    r->message = msg;
    r->n = 0;
    r->used = 0;
}

static struct evfield *rec_add(struct evrec *r, const char *key, uint8_t kind)
{
    struct evfield *f;

    if (r->n >= EVREC_MAX_FIELDS)
        return NULL;
    f = &r->f[r->n++];
    f->key = key;
    f->kind = kind;
    return f;
}

/* A value we formatted: copied into the record's scratch buffer. */
static void rec_add_copy(struct evrec *r, const char *key, const char *s, size_t len)
{
    struct evfield *f;

    if (r->used > EVREC_SCRATCH || len > EVREC_SCRATCH - r->used || r->n >= EVREC_MAX_FIELDS)
        return;
    memcpy(r->scratch + r->used, s, len);
    f = rec_add(r, key, EVF_STR);
    f->s = r->scratch + r->used;
    f->len = (uint32_t)len;
    r->used += len;
}

void evrec_strn(struct evrec *r, const char *key, const char *val, size_t len)
{
    struct evfield *f;

    if (!val || !(f = rec_add(r, key, EVF_STR)))
        return;
    f->s = val;
    f->len = (uint32_t)MIN(len, (size_t)UINT32_MAX);
}

void evrec_str(struct evrec *r, const char *key, const char *val)
{
    if (val)
        evrec_strn(r, key, val, strlen(val));
}

void evrec_strcpy(struct evrec *r, const char *key, const char *val)
{
    if (val)
        rec_add_copy(r, key, val, strlen(val));
}

void evrec_u64(struct evrec *r, const char *key, uint64_t v)
{
    struct evfield *f = rec_add(r, key, EVF_U64);

    if (f)
        f->u = v;
}

void evrec_i64(struct evrec *r, const char *key, int64_t v)
{
    struct evfield *f = rec_add(r, key, EVF_I64);

    if (f)
        f->i = v;
}

void evrec_bool(struct evrec *r, const char *key, bool v)
{
    struct evfield *f = rec_add(r, key, EVF_BOOL);

    if (f)
        f->b = v;
}

/* An unset address (family 0) leaves the field out, as g3proxy omits absent values. */
void evrec_addr(struct evrec *r, const char *key, const union sockaddr_any *sa)
{
    char buf[INET6_ADDRSTRLEN + 16];

    if (!sa || (sa->sa.sa_family != AF_INET && sa->sa.sa_family != AF_INET6))
        return;
    sockaddr_str(sa, buf, sizeof(buf));
    rec_add_copy(r, key, buf, strlen(buf));
}

void evrec_ip(struct evrec *r, const char *key, const struct ip_addr *ip)
{
    char buf[INET6_ADDRSTRLEN];

    if (!ip || (ip->family != AF_INET && ip->family != AF_INET6))
        return;
    ip_str(ip, buf, sizeof(buf));
    rec_add_copy(r, key, buf, strlen(buf));
}

/* Durations: the largest unit among s, ms, us, ns that the value reaches, with up to
 * three decimals, truncated, trailing zeros dropped: "16.918ms", "1.2s", "850us",
 * "12ns", "75s". */
static size_t fmt_dur(char *buf, size_t len, uint64_t ns)
{
    static const struct {
        uint64_t div;
        const char *unit;
    } units[] = {{1000000000, "s"}, {1000000, "ms"}, {1000, "us"}};
    int n;

    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
        if (ns < units[i].div)
            continue;
        unsigned long long whole = ns / units[i].div;
        unsigned long long frac = (ns % units[i].div) * 1000 / units[i].div;
        int digits = 3;
        while (digits && frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        if (digits)
            n = snprintf(buf, len, "%llu.%0*llu%s", whole, digits, frac, units[i].unit);
        else
            n = snprintf(buf, len, "%llu%s", whole, units[i].unit);
        return n < 0 ? 0 : MIN((size_t)n, len - 1);
    }
    n = snprintf(buf, len, "%lluns", (unsigned long long)ns);
    return n < 0 ? 0 : MIN((size_t)n, len - 1);
}

/* RFC 3339, UTC, microseconds: "2026-11-22T10:00:00.123456Z" (27 bytes). */
static size_t fmt_time(char *buf, size_t len, uint64_t wall_us)
{
    time_t t = (time_t)(wall_us / 1000000);
    struct tm tm;
    int n;

    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_us % 1000000));
    return n < 0 ? 0 : MIN((size_t)n, len - 1);
}

void evrec_dur(struct evrec *r, const char *key, uint64_t ns)
{
    char buf[48];

    rec_add_copy(r, key, buf, fmt_dur(buf, sizeof(buf), ns));
}

void evrec_time(struct evrec *r, const char *key, uint64_t wall_us)
{
    char buf[96];

    rec_add_copy(r, key, buf, fmt_time(buf, sizeof(buf), wall_us));
}

/* ================================================================ formats */

struct evsink {
    struct evlog_sink_conf c; /* path, syslog_unix, message_id, cee_flag: owned copies */
    char name[128];           /* for error messages: path, "stdout", address... */
    int fd;                   /* file, stdout, syslog socket; -1 = none */
    bool own_fd;              /* fd is ours to close (not the process's stdout) */
    bool sock;                /* stdout is a stream socket: sendmsg(MSG_DONTWAIT) */
    uint32_t queued;          /* records in the queue (written under l->mu, atomic) */
    uint64_t errors;          /* logger thread only */
};

struct qitem {
    struct qitem *next;  /* owned by the list holding this item */
    struct evsink *sink; /* borrowed */
    size_t len;
    char data[]; /* the finished line or datagram */
};
#define QHDR offsetof(struct qitem, data)

struct evlog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct qitem *head, **tail; /* owned list (tail: borrowed, last next pointer); l->mu */
    bool stop, reopen;          /* l->mu */
    bool started;               /* the logger thread runs (main thread) */
    pthread_t thread;
    uint64_t deadline_us; /* atomic: monotonic time when closing gives up, 0 = none */
    uint64_t dropped;     /* atomic */
    char *group;          /* owned, "" = none */
    char host[256];
    unsigned nsinks;
    struct evsink sink[EVLOG_NTYPES];
    struct evsink *by_type[EVLOG_NTYPES]; /* borrowed from sink[]; NULL = discard */
};

/* All fields of a record in output order, the common ones included. */
struct fieldset {
    struct evfield common[4];                      /* daemon_name, pid, log_type, report_ts */
    const struct evfield *v[4 + EVREC_MAX_FIELDS]; /* borrowed: common[] or the record's */
    unsigned n;
};

static void fieldset_init(struct fieldset *fs, const struct evlog *l, const struct evrec *r,
                          bool report_ts, uint64_t wall_us)
{
    struct evfield *c = fs->common;

    fs->n = 0;
    if (l->group[0]) {
        c[0] = (struct evfield){
            .key = "daemon_name", .kind = EVF_STR, .len = (uint32_t)strlen(l->group)};
        c[0].s = l->group;
        fs->v[fs->n++] = &c[0];
    }
    c[1] = (struct evfield){.key = "pid", .kind = EVF_U64};
    c[1].u = (uint64_t)getpid();
    fs->v[fs->n++] = &c[1];
    c[2] = (struct evfield){.key = "log_type", .kind = EVF_STR};
    c[2].s = r->type < EVLOG_NTYPES ? type_names[r->type] : "Unknown";
    c[2].len = (uint32_t)strlen(c[2].s);
    fs->v[fs->n++] = &c[2];
    for (unsigned i = 0; i < r->n && i < EVREC_MAX_FIELDS; i++)
        fs->v[fs->n++] = &r->f[i];
    if (report_ts) {
        c[3] = (struct evfield){.key = "report_ts", .kind = EVF_U64};
        c[3].u = wall_us / 1000000;
        fs->v[fs->n++] = &c[3];
    }
}

static const char *level_name(enum log_level lv)
{
    switch (lv) {
    case LOG_LV_ERR:
        return "error";
    case LOG_LV_WARN:
        return "warning";
    case LOG_LV_NOTICE:
        return "notice";
    case LOG_LV_DEBUG:
        return "debug";
    default:
        return "info";
    }
}

/* Numbers and booleans as text; returns the length. */
static size_t scalar_text(const struct evfield *f, char *buf, size_t len)
{
    int n;

    switch (f->kind) {
    case EVF_U64:
        n = snprintf(buf, len, "%llu", (unsigned long long)f->u);
        break;
    case EVF_I64:
        n = snprintf(buf, len, "%lld", (long long)f->i);
        break;
    case EVF_BOOL:
        n = snprintf(buf, len, "%s", f->b ? "true" : "false");
        break;
    default:
        n = 0;
        break;
    }
    return n < 0 ? 0 : MIN((size_t)n, len - 1);
}

static void field_text(const struct evfield *f, char *buf, size_t len, const char **s, size_t *n)
{
    if (f->kind == EVF_STR) {
        *s = f->s;
        *n = f->len;
    } else {
        *n = scalar_text(f, buf, len);
        *s = buf;
    }
}

static void put(struct jbuf *jb, const char *s)
{
    jb_raw(jb, s, strlen(s));
}

/* Copy s escaping control characters (\n \r \t, others \xHH) and, with a backslash,
 * each byte listed in `special`. Bytes >= 0x80 are copied. */
static void put_escaped(struct jbuf *jb, const char *s, size_t n, const char *special)
{
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5];

        if (c >= 0x20 && c != 0x7f && !(c && strchr(special, c)))
            continue;
        jb_raw(jb, s + start, i - start);
        start = i + 1;
        if (c == '\n')
            jb_raw(jb, "\\n", 2);
        else if (c == '\r')
            jb_raw(jb, "\\r", 2);
        else if (c == '\t')
            jb_raw(jb, "\\t", 2);
        else if (c < 0x20 || c == 0x7f)
            jb_raw(jb, esc, (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c));
        else {
            esc[0] = '\\';
            esc[1] = (char)c;
            jb_raw(jb, esc, 2);
        }
    }
    jb_raw(jb, s + start, n - start);
}

/* Text format values are written as they are, unless they are empty or contain a
 * space, a control character (< 0x20, 0x7f), '"' or '\'; a message is also quoted
 * when it is exactly "-" (which stands for "no message"). A quoted value is wrapped in
 * '"' with '"' and '\' preceded by '\', newline, CR and tab written \n \r \t and other
 * control characters \xHH. So a line never splits and `key=value` pairs split on
 * spaces outside quotes. Bytes >= 0x80 (UTF-8) are copied. */
static void text_value(struct jbuf *jb, const char *s, size_t n, bool is_msg)
{
    bool quote = n == 0 || (is_msg && n == 1 && s[0] == '-');

    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char c = (unsigned char)s[i];
        quote = c <= 0x20 || c == 0x7f || c == '"' || c == '\\';
    }
    if (!quote) {
        jb_raw(jb, s, n);
        return;
    }
    jb_raw(jb, "\"", 1);
    put_escaped(jb, s, n, "\"\\");
    jb_raw(jb, "\"", 1);
}

/* key=value pairs separated by spaces (no leading space). */
static void text_kv(struct jbuf *jb, const struct fieldset *fs)
{
    char num[32];
    const char *s;
    size_t n;

    for (unsigned i = 0; i < fs->n; i++) {
        if (i)
            jb_raw(jb, " ", 1);
        put(jb, fs->v[i]->key);
        jb_raw(jb, "=", 1);
        field_text(fs->v[i], num, sizeof(num), &s, &n);
        if (fs->v[i]->kind == EVF_STR)
            text_value(jb, s, n, false);
        else
            jb_raw(jb, s, n);
    }
}

/* "<message|-> key=value ..." */
static void text_body(struct jbuf *jb, const struct evrec *r, const struct fieldset *fs)
{
    if (r->message)
        text_value(jb, r->message, strlen(r->message), true);
    else
        jb_raw(jb, "-", 1);
    if (fs->n)
        jb_raw(jb, " ", 1);
    text_kv(jb, fs);
}

static void fmt_text_line(struct jbuf *jb, const struct evrec *r, const struct fieldset *fs,
                          uint64_t wall_us)
{
    char ts[96];

    jb_raw(jb, ts, fmt_time(ts, sizeof(ts), wall_us));
    jb_raw(jb, " ", 1);
    put(jb, level_name(r->level));
    jb_raw(jb, " ", 1);
    text_body(jb, r, fs);
    jb_raw(jb, "\n", 1);
}

static void fmt_json(struct jbuf *jb, const struct evrec *r, const struct fieldset *fs,
                     uint64_t wall_us)
{
    char ts[96];

    jb_obj_open(jb);
    jb_key(jb, "ts");
    jb_strn(jb, ts, fmt_time(ts, sizeof(ts), wall_us));
    jb_kstr(jb, "level", level_name(r->level));
    if (r->message)
        jb_kstr(jb, "message", r->message);
    for (unsigned i = 0; i < fs->n; i++) {
        const struct evfield *f = fs->v[i];
        jb_key(jb, f->key);
        switch (f->kind) {
        case EVF_STR:
            jb_strn(jb, f->s, f->len);
            break;
        case EVF_U64:
            jb_u64(jb, f->u);
            break;
        case EVF_I64:
            jb_i64(jb, f->i);
            break;
        case EVF_BOOL:
            jb_bool(jb, f->b);
            break;
        default:
            jb_str(jb, NULL);
            break;
        }
    }
    jb_obj_close(jb);
}

/* Journal field names: upper case, digits and '_', at most 64 bytes, starting with a
 * letter (a name that would not gets an 'X' in front). */
static void journal_field(struct jbuf *jb, const char *key, const char *val, size_t n)
{
    char name[64];
    size_t k = 0;

    if (!isalpha((unsigned char)key[0]))
        name[k++] = 'X';
    for (const char *p = key; *p && k < sizeof(name); p++)
        name[k++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    jb_raw(jb, name, k);
    if (!memchr(val, '\n', n)) {
        jb_raw(jb, "=", 1);
        jb_raw(jb, val, n);
        jb_raw(jb, "\n", 1);
        return;
    }
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)n >> (8 * i));
    jb_raw(jb, "\n", 1);
    jb_raw(jb, (const char *)le, 8);
    jb_raw(jb, val, n);
    jb_raw(jb, "\n", 1);
}

static void fmt_journal(struct jbuf *jb, const struct evrec *r, const struct fieldset *fs)
{
    char num[32];
    const char *s;
    size_t n;

    n = (size_t)snprintf(num, sizeof(num), "%d", (int)r->level);
    journal_field(jb, "PRIORITY", num, n);
    journal_field(jb, "SYSLOG_IDENTIFIER", "proxyd", 6);
    if (r->message) {
        journal_field(jb, "MESSAGE", r->message, strlen(r->message));
    } else {
        struct jbuf m;
        jb_init(&m);
        text_kv(&m, fs);
        if (m.failed)
            jb->failed = true;
        else
            journal_field(jb, "MESSAGE", m.s ? m.s : "", m.len);
        jb_free(&m);
    }
    for (unsigned i = 0; i < fs->n; i++) {
        field_text(fs->v[i], num, sizeof(num), &s, &n);
        journal_field(jb, fs->v[i]->key, s, n);
    }
}

static void fmt_syslog(struct jbuf *jb, const struct evlog *l, const struct evsink *sk,
                       const struct evrec *r, const struct fieldset *fs, uint64_t wall_us)
{
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const struct evlog_sink_conf *c = &sk->c;
    int pri = SYSLOG_DAEMON * 8 + (int)r->level;
    char hdr[512], ts[96], num[32];
    const char *s;
    size_t n;
    int h;

    if (c->rfc5424) {
        fmt_time(ts, sizeof(ts), wall_us);
        h = snprintf(hdr, sizeof(hdr), "<%d>1 %s %s proxyd %d %s ", pri, ts,
                     c->emit_hostname && l->host[0] ? l->host : "-", (int)getpid(),
                     c->message_id ? c->message_id : "-");
        jb_raw(jb, hdr, (size_t)MIN(MAX(h, 0), (int)sizeof(hdr) - 1));
        if (c->cee) {
            jb_raw(jb, "- ", 2);
            put(jb, c->cee_flag);
            fmt_json(jb, r, fs, wall_us);
            return;
        }
        h = snprintf(hdr, sizeof(hdr), "[proxyd@%u", (unsigned)c->enterprise_id);
        jb_raw(jb, hdr, (size_t)MIN(MAX(h, 0), (int)sizeof(hdr) - 1));
        for (unsigned i = 0; i < fs->n; i++) {
            jb_raw(jb, " ", 1);
            put(jb, fs->v[i]->key);
            jb_raw(jb, "=\"", 2);
            field_text(fs->v[i], num, sizeof(num), &s, &n);
            put_escaped(jb, s, n, "\"\\]");
            jb_raw(jb, "\"", 1);
        }
        jb_raw(jb, "]", 1);
        if (r->message) {
            jb_raw(jb, " ", 1);
            put_escaped(jb, r->message, strlen(r->message), "\\");
        }
        return;
    }

    time_t t = (time_t)(wall_us / 1000000);
    struct tm tm;
    if (!localtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    h = snprintf(hdr, sizeof(hdr), "<%d>%s %2d %02d:%02d:%02d %s%sproxyd[%d]: ", pri,
                 mon[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 c->emit_hostname ? l->host : "", c->emit_hostname && l->host[0] ? " " : "",
                 (int)getpid());
    jb_raw(jb, hdr, (size_t)MIN(MAX(h, 0), (int)sizeof(hdr) - 1));
    if (c->cee) {
        put(jb, c->cee_flag);
        fmt_json(jb, r, fs, wall_us);
    } else {
        text_body(jb, r, fs);
    }
}

/* Format r for sink sk at time wall_us, appending to jb. */
static void format_record(struct jbuf *jb, const struct evlog *l, const struct evsink *sk,
                          const struct evrec *r, uint64_t wall_us)
{
    struct fieldset fs;

    fieldset_init(&fs, l, r, sk->c.append_report_ts, wall_us);
    switch (sk->c.driver) {
    case EVD_JOURNAL:
        fmt_journal(jb, r, &fs);
        break;
    case EVD_SYSLOG:
        fmt_syslog(jb, l, sk, r, &fs, wall_us);
        break;
    default:
        if (sk->c.format == EVF_JSON) {
            fmt_json(jb, r, &fs, wall_us);
            jb_raw(jb, "\n", 1);
        } else {
            fmt_text_line(jb, r, &fs, wall_us);
        }
        break;
    }
}

/* ================================================================== sinks */

static int file_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

/* Connect s->fd to its syslog target (non-blocking datagram socket). 0 / -1, errno. */
static int syslog_connect(struct evsink *s)
{
    const struct evlog_sink_conf *c = &s->c;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    union sockaddr_any sa;
    socklen_t len;
    int fd, rc, e;

    if (c->syslog_udp.sa.sa_family) {
        fd = socket(c->syslog_udp.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -1;
        rc = 0;
        if (c->syslog_bind.family) {
            ip_to_sockaddr(&c->syslog_bind, 0, &sa, &len);
            rc = bind(fd, &sa.sa, len);
        }
        len = c->syslog_udp.sa.sa_family == AF_INET ? sizeof(sa.in) : sizeof(sa.in6);
        if (rc == 0)
            rc = connect(fd, &c->syslog_udp.sa, len);
    } else {
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", c->syslog_unix);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -1;
        rc = connect(fd, (struct sockaddr *)&un, sizeof(un));
    }
    if (rc < 0) {
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    s->fd = fd;
    return 0;
}

static char *dup_or_null(const char *s, bool *oom)
{
    char *p;

    if (!s)
        return NULL;
    if (!(p = strdup(s)))
        *oom = true;
    return p;
}

static int sink_open(struct evsink *s, const struct evlog_sink_conf *c, char **err)
{
    bool oom = false;
    char addr[INET6_ADDRSTRLEN + 16];

    s->c = *c;
    s->c.path = dup_or_null(c->path, &oom);
    s->c.syslog_unix = dup_or_null(c->syslog_unix, &oom);
    s->c.message_id = dup_or_null(c->message_id, &oom);
    s->c.cee_flag = dup_or_null(c->cee_flag ? c->cee_flag : "@cee:", &oom);
    s->fd = -1;
    if (oom)
        return err_set(err, "event log: out of memory");
    if (!s->c.queue_size)
        s->c.queue_size = QUEUE_DEFAULT;
    switch (c->driver) {
    case EVD_STDOUT:
        snprintf(s->name, sizeof(s->name), "stdout");
        s->fd = STDOUT_FILENO; /* see stdout_setup() */
        break;
    case EVD_FILE:
        if (!s->c.path)
            return err_set(err, "event log: the file driver has no path");
        snprintf(s->name, sizeof(s->name), "%s", s->c.path);
        if ((s->fd = file_open(s->c.path)) < 0)
            return err_set(err, "cannot open event log file %s: %s", s->c.path, strerror(errno));
        s->own_fd = true;
        break;
    case EVD_JOURNAL:
        snprintf(s->name, sizeof(s->name), "journal");
        break;
    case EVD_SYSLOG:
        if (s->c.syslog_udp.sa.sa_family) {
            snprintf(s->name, sizeof(s->name), "syslog udp %s",
                     sockaddr_str(&s->c.syslog_udp, addr, sizeof(addr)));
            /* a bad bind address is a config error: report it now */
            if (syslog_connect(s) < 0)
                return err_set(err, "event log: cannot set up %s: %s", s->name, strerror(errno));
            s->own_fd = true;
        } else {
            if (!s->c.syslog_unix && !(s->c.syslog_unix = strdup("/dev/log")))
                return err_set(err, "event log: out of memory");
            snprintf(s->name, sizeof(s->name), "syslog %s", s->c.syslog_unix);
            /* the syslog daemon may come later: connect when writing */
            syslog_connect(s);
            s->own_fd = true;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* stdout, once the daemon has detached (evlog_start()): a pipe or a terminal gets a
 * private non-blocking open file description, so that a reader who stops reading cannot
 * block the logger and O_NONBLOCK does not change stdout for anyone else; a socket (the
 * journal's stream under systemd) is written with MSG_DONTWAIT; a file or /dev/null is
 * written as it is. */
static void stdout_setup(struct evsink *s)
{
    struct stat st;
    int fd;

    if (fstat(STDOUT_FILENO, &st) < 0)
        return;
    if (S_ISSOCK(st.st_mode)) {
        s->sock = true;
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0) {
            s->fd = fd;
            s->own_fd = true;
        }
    }
}

static void sink_close(struct evsink *s)
{
    if (s->fd >= 0 && s->own_fd)
        close(s->fd);
    s->fd = -1;
    free(s->c.path);
    free(s->c.syslog_unix);
    free(s->c.message_id);
    free(s->c.cee_flag);
}

static bool str_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool sink_conf_same(const struct evlog_sink_conf *a, const struct evlog_sink_conf *b)
{
    return a->driver == b->driver && a->format == b->format && a->queue_size == b->queue_size &&
           a->rfc5424 == b->rfc5424 && a->enterprise_id == b->enterprise_id && a->cee == b->cee &&
           a->emit_hostname == b->emit_hostname && a->append_report_ts == b->append_report_ts &&
           str_same(a->path, b->path) && str_same(a->syslog_unix, b->syslog_unix) &&
           str_same(a->message_id, b->message_id) && str_same(a->cee_flag, b->cee_flag) &&
           memcmp(&a->syslog_udp, &b->syslog_udp, sizeof(a->syslog_udp)) == 0 &&
           memcmp(&a->syslog_bind, &b->syslog_bind, sizeof(a->syslog_bind)) == 0;
}

static void free_items(struct qitem *q)
{
    while (q) {
        struct qitem *next = q->next;
        free(q);
        q = next;
    }
}

/* ========================================================= logger thread */

/* err: an errno value, or 0 for "output stalled while closing" */
static void io_error(struct evsink *s, int err)
{
    if (s->errors++ % IO_ERR_SAMPLE == 0)
        log_warn("event log: cannot write to %s: %s (%llu failed writes so far)", s->name,
                 err ? strerror(err) : "output stalled, dropping records at exit",
                 (unsigned long long)s->errors);
}

/* The logger never blocks for good: sockets and the stdout pipe are non-blocking and a
 * full one is waited for in slices; while evlog_close() runs, the wait ends at its
 * deadline and the rest of the batch is dropped. Files are written blocking (a local
 * disk always completes). Returns false when the logger must give up. */
static bool wait_writable(struct evlog *l, int fd)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        uint64_t deadline = __atomic_load_n(&l->deadline_us, __ATOMIC_RELAXED);
        if (deadline && now_mono_us() >= deadline)
            return false;
        if (poll(&p, 1, STALL_WAIT_MS) > 0)
            return true;
    }
}

static ssize_t stream_write(struct evsink *s, struct iovec *iov, int n)
{
    if (s->sock) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        return sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    return writev(s->fd, iov, n);
}

static void write_stream(struct evlog *l, struct evsink *s, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = stream_write(s, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            if (wait_writable(l, s->fd))
                continue;
            io_error(s, 0);
            return;
        }
        if (w <= 0) {
            io_error(s, w < 0 ? errno : EIO);
            return;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

static void send_dgrams(struct evlog *l, struct evsink *s, struct mmsghdr *mm, unsigned n)
{
    bool reconnected = false;
    unsigned i = 0;

    while (i < n) {
        if (s->fd < 0 && syslog_connect(s) < 0) {
            io_error(s, errno);
            return;
        }
        int r = sendmmsg(s->fd, mm + i, n - i, MSG_NOSIGNAL);
        if (r > 0) {
            i += (unsigned)r;
            reconnected = false;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) {
            if (wait_writable(l, s->fd))
                continue;
            io_error(s, 0);
            return;
        }
        if (r < 0 && errno == EMSGSIZE) {
            io_error(s, errno); /* this record only */
            i++;
            continue;
        }
        if (!reconnected) {
            /* the syslog daemon restarted (new socket) or the peer refused */
            reconnected = true;
            close(s->fd);
            s->fd = -1;
            continue;
        }
        io_error(s, r < 0 ? errno : EIO);
        return;
    }
}

static void write_sink(struct evlog *l, struct evsink *s, struct qitem *batch)
{
    struct iovec iov[BATCH_MAX];
    struct mmsghdr mm[BATCH_MAX];
    unsigned n = 0;

    for (struct qitem *q = batch; q; q = q->next) {
        if (q->sink != s)
            continue;
        if (s->c.driver == EVD_JOURNAL) {
            if (journal_send(q->data, q->len) < 0)
                io_error(s, errno);
            continue;
        }
        iov[n] = (struct iovec){.iov_base = q->data, .iov_len = q->len};
        if (s->c.driver == EVD_SYSLOG)
            mm[n] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[n], .msg_iovlen = 1}};
        if (++n < BATCH_MAX)
            continue;
        if (s->c.driver == EVD_SYSLOG)
            send_dgrams(l, s, mm, n);
        else
            write_stream(l, s, iov, (int)n);
        n = 0;
    }
    if (n && s->c.driver == EVD_SYSLOG)
        send_dgrams(l, s, mm, n);
    else if (n)
        write_stream(l, s, iov, (int)n);
}

static void reopen_sinks(struct evlog *l)
{
    for (unsigned i = 0; i < l->nsinks; i++) {
        struct evsink *s = &l->sink[i];
        if (s->c.driver == EVD_FILE) {
            int fd = file_open(s->c.path);
            if (fd < 0) {
                log_err("event log: cannot reopen %s: %s (still writing to the old file)",
                        s->c.path, strerror(errno));
                continue;
            }
            close(s->fd);
            s->fd = fd;
        } else if (s->c.driver == EVD_SYSLOG && s->c.syslog_unix && s->fd >= 0) {
            close(s->fd); /* reconnect on the next write: syslogd may have restarted */
            s->fd = -1;
        }
    }
}

static void *logger_main(void *arg)
{
    struct evlog *l = arg;

    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->head && !l->stop && !l->reopen)
            pthread_cond_wait(&l->cv, &l->mu);
        struct qitem *batch = l->head;
        bool reopen = l->reopen, stop = l->stop;
        l->head = NULL;
        l->tail = &l->head;
        l->reopen = false;
        for (unsigned i = 0; i < l->nsinks; i++)
            __atomic_store_n(&l->sink[i].queued, 0, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&l->mu);

        if (reopen)
            reopen_sinks(l);
        if (batch) {
            for (unsigned i = 0; i < l->nsinks; i++)
                write_sink(l, &l->sink[i], batch);
            free_items(batch);
        }

        pthread_mutex_lock(&l->mu);
        if (stop && !l->head)
            break;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ==================================================================== API */

int evlog_open(struct evlog **out, const struct evlog_conf *conf, const char *group, char **err)
{
    struct evlog *l = calloc(1, sizeof(*l));

    *out = NULL;
    if (!l)
        return err_set(err, "event log: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->tail = &l->head;
    for (unsigned i = 0; i < EVLOG_NTYPES; i++)
        l->sink[i].fd = -1;
    if (!(l->group = strdup(group ? group : ""))) {
        evlog_close(l);
        return err_set(err, "event log: out of memory");
    }
    if (gethostname(l->host, sizeof(l->host) - 1) < 0)
        l->host[0] = 0;
    for (int t = 0; t < EVLOG_NTYPES; t++) {
        const struct evlog_sink_conf *c = &conf->sink[t];
        if (c->driver == EVD_DISCARD)
            continue;
        /* types with the same config share one sink (one file descriptor) */
        for (int u = 0; u < t && !l->by_type[t]; u++)
            if (l->by_type[u] && sink_conf_same(&conf->sink[u], c))
                l->by_type[t] = l->by_type[u];
        if (l->by_type[t])
            continue;
        struct evsink *s = &l->sink[l->nsinks++];
        if (sink_open(s, c, err) < 0) {
            evlog_close(l);
            return -1;
        }
        l->by_type[t] = s;
    }
    *out = l;
    return 0;
}

int evlog_start(struct evlog *l)
{
    sigset_t all, old;
    int rc;

    if (!l || l->started || !l->nsinks)
        return 0;
    for (unsigned i = 0; i < l->nsinks; i++)
        if (l->sink[i].c.driver == EVD_STDOUT)
            stdout_setup(&l->sink[i]);
    /* the logger never takes signals (and a closed stdout pipe gives EPIPE, not SIGPIPE) */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&l->thread, NULL, logger_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        errno = rc;
        log_err("event log: cannot start the logger thread: %s", strerror(rc));
        return -1;
    }
    pthread_setname_np(l->thread, "proxyd-evlog");
    l->started = true;
    return 0;
}

bool evlog_enabled(const struct evlog *l, enum evlog_type type)
{
    return l && (unsigned)type < EVLOG_NTYPES && l->by_type[type];
}

static void count_drop(struct evlog *l)
{
    __atomic_add_fetch(&l->dropped, 1, __ATOMIC_RELAXED);
}

void evlog_emit(struct evlog *l, const struct evrec *r)
{
    static const char zero[QHDR];
    struct evsink *s;
    struct qitem *q;
    struct jbuf jb;
    bool was_empty;

    if (!l || (unsigned)r->type >= EVLOG_NTYPES || !(s = l->by_type[r->type]))
        return;
    /* full: do not even format */
    if (__atomic_load_n(&s->queued, __ATOMIC_RELAXED) >= s->c.queue_size) {
        count_drop(l);
        return;
    }
    jb_init(&jb);
    jb_raw(&jb, zero, QHDR);
    format_record(&jb, l, s, r, now_wall_us());
    if (jb.failed) {
        jb_free(&jb);
        count_drop(l);
        return;
    }
    q = (struct qitem *)(void *)jb.s; /* the header was reserved at the start */
    q->next = NULL;
    q->sink = s;
    q->len = jb.len - QHDR;

    pthread_mutex_lock(&l->mu);
    if (s->queued >= s->c.queue_size) {
        pthread_mutex_unlock(&l->mu);
        free(q);
        count_drop(l);
        return;
    }
    was_empty = !l->head;
    *l->tail = q;
    l->tail = &q->next;
    __atomic_store_n(&s->queued, s->queued + 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->mu);
    if (was_empty)
        pthread_cond_signal(&l->cv);
}

void evlog_reopen(struct evlog *l)
{
    if (!l)
        return;
    if (!l->started) {
        reopen_sinks(l);
        return;
    }
    pthread_mutex_lock(&l->mu);
    l->reopen = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

uint64_t evlog_dropped(const struct evlog *l)
{
    return l ? __atomic_load_n(&l->dropped, __ATOMIC_RELAXED) : 0;
}

void evlog_close(struct evlog *l)
{
    if (!l)
        return;
    if (l->started) {
        struct timespec deadline;

        __atomic_store_n(&l->deadline_us, now_mono_us() + CLOSE_FLUSH_SEC * 1000000ull,
                         __ATOMIC_RELAXED);
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        /* the thread gives up by itself at the deadline; a write that hangs beyond it
         * (a dead NFS server) leaves the logger and its memory to process exit */
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += CLOSE_FLUSH_SEC + 1;
        if (pthread_timedjoin_np(l->thread, NULL, &deadline) != 0) {
            log_err("event log: the logger thread is stuck in a write; leaving it");
            return;
        }
        l->started = false;
    }
    free_items(l->head);
    for (unsigned i = 0; i < l->nsinks; i++)
        sink_close(&l->sink[i]);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l->group);
    free(l);
}
