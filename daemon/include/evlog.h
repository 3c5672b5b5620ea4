/* Event logs: Task, Escape and Resolve records with g3proxy's field names
 * (reference §3), written by one logger thread so that no worker ever blocks on log
 * I/O. A worker builds a record on its stack, evlog_emit() formats it and queues the
 * bytes; when the queue is full the record is dropped and counted.
 *
 * Config (`log:` top-level key, g3proxy-compatible): a driver name for every log
 * type (`discard`, `stdout`, `syslog`, `journal`, and ours: `file`), or a map with
 * `default`, `task`, `escape`, `resolve` (each a driver name or a map {<driver>:
 * {options}, async_channel_size: N}). Our additions: driver `file: {path, format:
 * text|json}` and `stdout: {format: text|json}`. */
#ifndef PROXYD_EVLOG_H
#define PROXYD_EVLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "conf_types.h"
#include "confval_types.h"
#include "log.h"

enum evlog_type { EVLOG_TASK = 0, EVLOG_ESCAPE, EVLOG_RESOLVE, EVLOG_NTYPES };
enum evlog_driver { EVD_DISCARD = 0, EVD_STDOUT, EVD_SYSLOG, EVD_JOURNAL, EVD_FILE };
enum evlog_format { EVF_TEXT = 0, EVF_JSON };

struct evlog_sink_conf {
    enum evlog_driver driver;
    enum evlog_format format;
    char *path;                     /* file: absolute */
    uint32_t queue_size;            /* async_channel_size: records waiting (4096) */
    /* syslog */
    char *syslog_unix;              /* target_unix, default /dev/log */
    union sockaddr_any syslog_udp;  /* target_udp, family 0 = unset */
    struct ip_addr syslog_bind;     /* target_udp bind_ip, family 0 = unset */
    bool rfc5424;
    uint32_t enterprise_id;
    char *message_id;
    bool cee;                       /* use_cee_log_syntax: JSON after cee_event_flag */
    char *cee_flag;                 /* "@cee:" */
    bool emit_hostname;
    bool append_report_ts;
};

struct evlog_conf {
    struct evlog_sink_conf sink[EVLOG_NTYPES];
};

/* Parse the `log:` node (NULL = absent: everything discarded). Values allocated from
 * cx->arena. 0 / -1 with conf_fail(). */
int evlog_conf_parse(struct conf_ctx *cx, const struct cnode *n, struct evlog_conf *out);

/* --------------------------------------------------------------- records */
#define EVREC_MAX_FIELDS 64
#define EVREC_SCRATCH 4096

enum evfield_kind { EVF_STR = 0, EVF_U64, EVF_I64, EVF_BOOL };
struct evfield {
    const char *key;            /* static string */
    uint8_t kind;
    uint32_t len;               /* EVF_STR */
    union {
        const char *s;          /* borrowed until evlog_emit() returns */
        uint64_t u;
        int64_t i;
        bool b;
    };
};

struct evrec {
    enum evlog_type type;
    enum log_level level;       /* LOG_LV_INFO for records, LOG_LV_WARN for errors */
    const char *message;        /* free text (the error description), may be NULL */
    unsigned n;
    struct evfield f[EVREC_MAX_FIELDS];
    size_t used;
    char scratch[EVREC_SCRATCH]; /* copies of formatted values */
};

void evrec_init(struct evrec *r, enum evlog_type type, enum log_level level, const char *msg);
/* Add fields. Values that do not fit (too many fields, scratch full) are dropped. */
void evrec_str(struct evrec *r, const char *key, const char *val);    /* NULL val: skipped */
void evrec_strn(struct evrec *r, const char *key, const char *val, size_t len);
/* Like evrec_str() but val is copied into the record's scratch buffer: for values that
 * do not outlive the caller's frame (a local buffer filled by a helper). */
void evrec_strcpy(struct evrec *r, const char *key, const char *val);
void evrec_u64(struct evrec *r, const char *key, uint64_t v);
void evrec_i64(struct evrec *r, const char *key, int64_t v);
void evrec_bool(struct evrec *r, const char *key, bool v);
void evrec_addr(struct evrec *r, const char *key, const union sockaddr_any *sa); /* "ip:port" */
void evrec_ip(struct evrec *r, const char *key, const struct ip_addr *ip);
void evrec_dur(struct evrec *r, const char *key, uint64_t ns);        /* "16.918ms" */
void evrec_time(struct evrec *r, const char *key, uint64_t wall_us);  /* RFC 3339, µs, UTC */

/* ----------------------------------------------------------------- sinks */
struct evlog;
/* Open sinks (files are opened here: errors name the path). group is the daemon
 * group (the daemon_name field). */
int evlog_open(struct evlog **out, const struct evlog_conf *conf, const char *group, char **err);
/* Start the logger thread (after daemonizing: a stdout sink looks at stdout here).
 * Records emitted before are queued. 0 / -1 (logged). */
int evlog_start(struct evlog *l);
/* Does anyone want this type? When false, do not build records. Any thread. */
bool evlog_enabled(const struct evlog *l, enum evlog_type type);
/* Format and queue a record. Any thread; never blocks. */
void evlog_emit(struct evlog *l, const struct evrec *r);
/* Reopen log files (SIGUSR1, after logrotate). Any thread. */
void evlog_reopen(struct evlog *l);
/* Records dropped because the queue was full, since start. */
uint64_t evlog_dropped(const struct evlog *l);
/* Write what is queued (giving up after 2 s on a stalled output), stop the thread,
 * close sinks. No evlog_emit() may run during or after it. NULL ok. */
void evlog_close(struct evlog *l);

#endif
