/* Event logs: the `log:` grammar (accepted forms, rejections with their exact
 * positions), record building (durations, times, overflow), every output format byte
 * for byte, and the logger thread end to end: files written from two threads, reopen
 * after rename, drops on a full queue, syslog over local AF_UNIX and UDP sockets,
 * reconnect, and a stalled output that evlog_close() must give up on. */
#include <sys/stat.h>

#include "daemon/evlog.c"
#include "tap.h"
#include "testconf.h"

#define T0 1795341600123456ull /* 2026-11-22T10:00:00.123456Z */

static char dir[64];
static int mypid;

/* ------------------------------------------------------------- helpers */

static int parse_log(struct conf_ctx *cx, const struct cnode *n, void *slot,
                     const struct conf_key *k)
{
    /* as conf_main.c calls it */
    cx->kind = "log";
    cx->name = NULL;
    cx->key = NULL;
    return evlog_conf_parse(cx, n, slot);
}

static void rejects(const char *yaml, const char *want, const char *what)
{
    struct tconf t;
    struct evlog_conf c;
    int rc = tconf_run(&t, yaml, parse_log, &c, NULL);

    if (rc != -1)
        printf("# rc = %d\n", rc);
    is_str(rc == -1 ? t.cx.err : "(accepted)", want, "rejects %s", what);
    tconf_done(&t);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* "2026-11-22T10:00:00.123456Z" shape */
static bool is_ts(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";

    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return false;
    }
    return true;
}

/* "Nov 22 10:00:00" shape (day space-padded) */
static bool is_3164_ts(const char *s)
{
    static const char *const mon = "JanFebMarAprMayJunJulAugSepOctNovDec";
    bool month = false;

    for (int i = 0; i < 12; i++)
        month |= memcmp(s, mon + 3 * i, 3) == 0;
    return month && s[3] == ' ' && (s[4] == ' ' || isdigit((unsigned char)s[4])) &&
           isdigit((unsigned char)s[5]) && s[6] == ' ' && isdigit((unsigned char)s[7]) &&
           isdigit((unsigned char)s[8]) && s[9] == ':' && s[12] == ':' && s[15] == ' ';
}

static char *fmt(const struct evlog *l, const struct evsink *sk, const struct evrec *r, size_t *len)
{
    struct jbuf jb;

    jb_init(&jb);
    format_record(&jb, l, sk, r, T0);
    if (len)
        *len = jb.len;
    return jb.s ? jb.s : strdup("");
}

static int open_conf(const char *yaml, const char *group, struct evlog **l, char **err)
{
    struct tconf t;
    struct evlog_conf c;
    int rc = tconf_run(&t, yaml, parse_log, &c, NULL);

    if (rc < 0) {
        printf("# config: %s\n", t.cx.err);
        tconf_done(&t);
        return -1;
    }
    rc = evlog_open(l, &c, group, err); /* copies what it keeps */
    tconf_done(&t);
    return rc;
}

/* ---------------------------------------------------------------- config */

static void test_conf_accept(void)
{
    struct conf_ctx cx = {.kind = "log"};
    struct evlog_conf c;
    struct tconf t;

    memset(&c, 0xff, sizeof(c));
    ok(evlog_conf_parse(&cx, NULL, &c) == 0 && c.sink[0].driver == EVD_DISCARD &&
           c.sink[1].driver == EVD_DISCARD && c.sink[2].driver == EVD_DISCARD,
       "absent log: everything discarded");

    ok(tconf_run(&t, "~", parse_log, &c, NULL) == 0 && c.sink[EVLOG_TASK].driver == EVD_DISCARD,
       "null: discard");
    tconf_done(&t);
    ok(tconf_run(&t, "discard", parse_log, &c, NULL) == 0 &&
           c.sink[EVLOG_RESOLVE].driver == EVD_DISCARD,
       "discard");
    tconf_done(&t);

    ok(tconf_run(&t, "stdout", parse_log, &c, NULL) == 0, "stdout accepted");
    for (int i = 0; i < EVLOG_NTYPES; i++)
        ok(c.sink[i].driver == EVD_STDOUT && c.sink[i].format == EVF_TEXT &&
               c.sink[i].queue_size == 4096,
           "stdout applies to type %d, text, queue 4096", i);
    tconf_done(&t);

    ok(tconf_run(&t, "journal", parse_log, &c, NULL) == 0 &&
           c.sink[EVLOG_ESCAPE].driver == EVD_JOURNAL,
       "journal");
    tconf_done(&t);

    ok(tconf_run(&t, "syslog", parse_log, &c, NULL) == 0, "syslog accepted");
    ok(c.sink[EVLOG_TASK].driver == EVD_SYSLOG && !c.sink[EVLOG_TASK].rfc5424 &&
           !c.sink[EVLOG_TASK].cee && !c.sink[EVLOG_TASK].syslog_udp.sa.sa_family,
       "syslog defaults: RFC 3164, no CEE, no UDP");
    is_str(c.sink[EVLOG_TASK].syslog_unix, "/dev/log", "syslog default target /dev/log");
    is_str(c.sink[EVLOG_TASK].cee_flag, "@cee:", "default CEE flag");
    tconf_done(&t);

    ok(tconf_run(&t,
                 "default: stdout\n"
                 "task:\n"
                 "  file:\n"
                 "    path: task.log\n"
                 "    format: text\n"
                 "  Async-Channel-Size: 16\n"
                 "  async_thread_number: 1\n"
                 "  io_error_sampling_offset: 16\n"
                 "escape:\n"
                 "  stdout: {format: JSON}\n"
                 "audit: discard\n"
                 "inspect:\n",
                 parse_log, &c, NULL) == 0,
       "map with default, task, escape, audit: %s", t.cx.err ? t.cx.err : "");
    ok(c.sink[EVLOG_TASK].driver == EVD_FILE && c.sink[EVLOG_TASK].format == EVF_TEXT &&
           c.sink[EVLOG_TASK].queue_size == 16,
       "task: file, text, queue 16");
    is_str(c.sink[EVLOG_TASK].path, "/tmp/task.log", "relative file path resolved");
    ok(c.sink[EVLOG_ESCAPE].driver == EVD_STDOUT && c.sink[EVLOG_ESCAPE].format == EVF_JSON,
       "escape: stdout json");
    ok(c.sink[EVLOG_RESOLVE].driver == EVD_STDOUT && c.sink[EVLOG_RESOLVE].format == EVF_TEXT,
       "resolve falls back to default");
    tconf_done(&t);

    ok(tconf_run(&t, "default: {file: /var/log/proxyd/ev.log}\n", parse_log, &c, NULL) == 0 &&
           c.sink[EVLOG_TASK].driver == EVD_FILE && c.sink[EVLOG_TASK].format == EVF_JSON,
       "file: path shorthand, json by default");
    is_str(c.sink[EVLOG_ESCAPE].path, "/var/log/proxyd/ev.log", "absolute path kept");
    tconf_done(&t);

    ok(tconf_run(&t,
                 "syslog:\n"
                 "  target_udp:\n"
                 "    address: 127.0.0.1:5140\n"
                 "    bind_ip: 127.0.0.1\n"
                 "  format_rfc5424:\n"
                 "    enterprise_id: 32473\n"
                 "    message_id: APP01\n"
                 "  use_cls: true\n"
                 "  cee_cookie: \"@x:\"\n"
                 "  emit_hostname: true\n"
                 "  append_report_ts: yes\n",
                 parse_log, &c, NULL) == 0,
       "syslog shorthand with every option: %s", t.cx.err ? t.cx.err : "");
    {
        const struct evlog_sink_conf *s = &c.sink[EVLOG_RESOLVE];
        ok(s->driver == EVD_SYSLOG && s->syslog_udp.sa.sa_family == AF_INET &&
               ntohs(s->syslog_udp.in.sin_port) == 5140 && s->syslog_bind.family == AF_INET &&
               !s->syslog_unix,
           "UDP target and bind address");
        ok(s->rfc5424 && s->enterprise_id == 32473 && s->cee && s->emit_hostname &&
               s->append_report_ts,
           "rfc5424, cee, hostname, report_ts");
        is_str(s->message_id, "APP01", "message_id");
        is_str(s->cee_flag, "@x:", "cee_event_flag alias");
    }
    tconf_done(&t);

    ok(tconf_run(&t,
                 "default:\n"
                 "  syslog:\n"
                 "    target: {unix: {path: /run/x.sock}}\n"
                 "    format_rfc5424: 12345\n",
                 parse_log, &c, NULL) == 0 &&
           c.sink[EVLOG_TASK].rfc5424 && c.sink[EVLOG_TASK].enterprise_id == 12345,
       "target: {unix: {path}}, format_rfc5424: <enterprise id>");
    is_str(c.sink[EVLOG_TASK].syslog_unix, "/run/x.sock", "unix target path");
    tconf_done(&t);

    ok(tconf_run(&t, "syslog: {backend: {udp: \"[::1]:514\"}, format_rfc5424: MYAPP}\n", parse_log,
                 &c, NULL) == 0 &&
           c.sink[0].syslog_udp.sa.sa_family == AF_INET6 && c.sink[0].rfc5424 &&
           c.sink[0].enterprise_id == 0,
       "backend alias, IPv6 UDP, format_rfc5424: <message id>");
    is_str(c.sink[0].message_id, "MYAPP", "message id from a string");
    tconf_done(&t);

    ok(tconf_run(&t, "syslog: {format_rfc5424: true}\n", parse_log, &c, NULL) == 0 &&
           c.sink[1].rfc5424,
       "format_rfc5424: true");
    tconf_done(&t);
    ok(tconf_run(&t, "syslog: {format_rfc5424: false}\n", parse_log, &c, NULL) == 0 &&
           !c.sink[1].rfc5424,
       "format_rfc5424: false");
    tconf_done(&t);

    ok(tconf_run(&t, "default:\n  channel_size: 8\n", parse_log, &c, NULL) == 0 &&
           c.sink[0].driver == EVD_DISCARD && c.sink[0].queue_size == 8,
       "a log config without a driver is discard (as g3proxy)");
    tconf_done(&t);
    ok(tconf_run(&t, "resolve: {discard: }\ntask: {journal: {}}\n", parse_log, &c, NULL) == 0 &&
           c.sink[EVLOG_RESOLVE].driver == EVD_DISCARD && c.sink[EVLOG_TASK].driver == EVD_JOURNAL,
       "{discard: ~}, {journal: {}}");
    tconf_done(&t);
}

static void test_conf_reject(void)
{
    rejects("file", "t.yaml:1:1: log: the file driver needs a path: write {file: {path: FILE}}",
            "bare file");
    rejects("fluentd", "t.yaml:1:1: log: unsupported: fluentd driver is not implemented",
            "fluentd");
    rejects("nope",
            "t.yaml:1:1: log: unknown log driver 'nope' (expected discard, stdout, journal, "
            "syslog or a map for file)",
            "unknown driver");
    rejects("[1]", "t.yaml:1:1: log: expected a driver name or a map, got a sequence", "sequence");
    rejects("default: stdout\nbogus: 1\n", "t.yaml:2:1: log: unknown key 'bogus'",
            "unknown top key");
    rejects("task:\n  file:\n    format: text\n",
            "t.yaml:3:5: log: key 'path': missing required key", "file without path");
    rejects("default:\n  stdout: {}\n  async_thread_number: 2\n",
            "t.yaml:3:24: log: key 'async_thread_number': only 1 is supported (one logger "
            "thread writes every event log)",
            "two logger threads");
    rejects("default:\n  journal:\n  io_error_sampling_offset: 17\n",
            "t.yaml:3:29: log: key 'io_error_sampling_offset': 17 is out of range [0, 16]",
            "sampling offset 17");
    rejects("default:\n  async_channel_size: 0\n  stdout:\n",
            "t.yaml:2:23: log: key 'async_channel_size': 0 is out of range [1, 1048576]",
            "empty queue");
    rejects("syslog:\n  target_udp: nope\n",
            "t.yaml:2:15: log: key 'target_udp': expected an IP address (not a domain): 'nope'",
            "UDP target not an address");
    rejects("syslog:\n  target_udp: 127.0.0.1\n",
            "t.yaml:2:15: log: key 'target_udp': the syslog UDP address needs a port "
            "(\"ip:514\")",
            "UDP target without port");
    rejects("syslog:\n  target_unix: dev/log\n",
            "t.yaml:2:16: log: key 'target_unix': expected an absolute path, got 'dev/log'",
            "relative unix target");
    rejects("syslog:\n  target_udp: 127.0.0.1:514\n  target_unix: /dev/log\n",
            "t.yaml:3:16: log: key 'target_unix': the syslog target is set twice",
            "two syslog targets");
    rejects("syslog:\n  target: {tcp: 1}\n", "t.yaml:2:12: log: unknown key 'tcp'", "target: tcp");
    rejects("syslog:\n  bogus: 1\n", "t.yaml:2:3: log: unknown key 'bogus'", "unknown syslog key");
    rejects("syslog:\n  format_rfc5424:\n    message_id: has space\n",
            "t.yaml:3:17: log: key 'message_id': message_id must be 1 to 32 printable ASCII "
            "characters without spaces",
            "bad message id");
    rejects("syslog:\n  cee_event_flag: \"\xc3\xa9\"\n",
            "t.yaml:2:19: log: key 'cee_event_flag': only printable ASCII characters are allowed",
            "non-ASCII CEE flag");
    rejects("default:\n  stdout: {}\n  journal: {}\n",
            "t.yaml:3:12: log: key 'journal': a log config names one driver only (another one "
            "is at line 2)",
            "two drivers");
    rejects("default:\n  fluentd: {}\n",
            "t.yaml:2:12: log: key 'fluentd': unsupported: fluentd driver is not implemented",
            "fluentd map");
    rejects("audit: syslog\n",
            "t.yaml:1:8: log: key 'audit': unsupported: auditor logs (only 'discard' is accepted)",
            "auditor logs");
    rejects("default: stdout\nsyslog: {}\n",
            "t.yaml:2:9: log: key 'syslog': the default log config is set twice (also at line 1)",
            "default twice");
    rejects("stdout:\n  format: xml\n",
            "t.yaml:2:11: log: key 'format': unknown format 'xml' (expected text or json)",
            "unknown format");
    rejects("journal:\n  x: 1\n", "t.yaml:2:3: log: unknown key 'x'", "journal with options");
    rejects("task: [stdout]\n",
            "t.yaml:1:7: log: key 'task': expected a driver name or a map, got a sequence",
            "task as a sequence");
}

/* --------------------------------------------------------------- records */

static void dur_is(uint64_t ns, const char *want)
{
    struct evrec r;

    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    evrec_dur(&r, "d", ns);
    char got[64] = "";
    if (r.n == 1)
        snprintf(got, sizeof(got), "%.*s", (int)r.f[0].len, r.f[0].s);
    is_str(got, want, "duration %llu ns", (unsigned long long)ns);
}

static void time_is(uint64_t us, const char *want)
{
    struct evrec r;

    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    evrec_time(&r, "t", us);
    char got[64] = "";
    if (r.n == 1)
        snprintf(got, sizeof(got), "%.*s", (int)r.f[0].len, r.f[0].s);
    is_str(got, want, "time %llu us", (unsigned long long)us);
}

static void test_records(void)
{
    dur_is(0, "0ns");
    dur_is(12, "12ns");
    dur_is(999, "999ns");
    dur_is(1000, "1us");
    dur_is(1500, "1.5us");
    dur_is(850000, "850us");
    dur_is(1000000, "1ms");
    dur_is(16918123, "16.918ms");
    dur_is(1200000000, "1.2s");
    dur_is(1999999999, "1.999s");
    dur_is(75000000000ull, "75s");
    dur_is(UINT64_MAX, "18446744073.709s");

    time_is(T0, "2026-11-22T10:00:00.123456Z");
    time_is(951868799000001ull, "2000-02-29T23:59:59.000001Z");
    time_is(0, "1970-01-01T00:00:00.000000Z");

    struct evrec r;
    union sockaddr_any sa;
    struct ip_addr ip;
    socklen_t sl;
    char v[64];

    evrec_init(&r, EVLOG_ESCAPE, LOG_LV_WARN, "m");
    ip_parse("2001:db8::1", &ip);
    ip_to_sockaddr(&ip, 8080, &sa, &sl);
    evrec_addr(&r, "a6", &sa);
    ip_parse("10.1.2.3", &ip);
    ip_to_sockaddr(&ip, 80, &sa, &sl);
    evrec_addr(&r, "a4", &sa);
    evrec_ip(&r, "ip", &ip);
    memset(&sa, 0, sizeof(sa));
    evrec_addr(&r, "unset", &sa);
    evrec_addr(&r, "null", NULL);
    memset(&ip, 0, sizeof(ip));
    evrec_ip(&r, "unset_ip", &ip);
    evrec_str(&r, "nullstr", NULL);
    evrec_strn(&r, "part", "abcdef", 3);
    {
        char tmp[8] = "tmp";
        evrec_strcpy(&r, "copy", tmp);
        evrec_strcpy(&r, "nullcopy", NULL);
        tmp[0] = 'X';
    }
    is_int(r.n, 5, "unset addresses and NULL strings are left out");
    snprintf(v, sizeof(v), "%.*s|%.*s|%.*s|%.*s|%.*s", (int)r.f[0].len, r.f[0].s, (int)r.f[1].len,
             r.f[1].s, (int)r.f[2].len, r.f[2].s, (int)r.f[3].len, r.f[3].s, (int)r.f[4].len,
             r.f[4].s);
    is_str(v, "[2001:db8::1]:8080|10.1.2.3:80|10.1.2.3|abc|tmp", "addresses, ip, strn, strcpy");
    ok(r.f[4].s >= r.scratch && r.f[4].s < r.scratch + EVREC_SCRATCH,
       "evrec_strcpy copies into the record");

    /* overflow: a guard after the record must survive, extra fields are dropped */
    struct {
        struct evrec r;
        unsigned char guard[256];
    } g;
    memset(g.guard, 0xa5, sizeof(g.guard));
    evrec_init(&g.r, EVLOG_TASK, LOG_LV_INFO, NULL);
    for (int i = 0; i < 300; i++) {
        switch (i % 5) {
        case 0:
            evrec_time(&g.r, "t", T0);
            break;
        case 1:
            evrec_dur(&g.r, "d", 16918123);
            break;
        case 2:
            evrec_u64(&g.r, "u", (uint64_t)i);
            break;
        case 3:
            evrec_str(&g.r, "s", "x");
            break;
        default:
            evrec_bool(&g.r, "b", true);
            break;
        }
    }
    bool intact = true;
    for (size_t i = 0; i < sizeof(g.guard); i++)
        intact &= g.guard[i] == 0xa5;
    ok(g.r.n == EVREC_MAX_FIELDS && intact, "300 fields: %u kept, guard intact", g.r.n);
    ok(g.r.f[62].kind == EVF_U64 && g.r.f[62].u == 62 && g.r.f[63].kind == EVF_STR,
       "the first fields are the ones kept");

    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    r.used = EVREC_SCRATCH - 3;
    evrec_time(&r, "t", T0);
    evrec_dur(&r, "d", 12); /* "12ns": 4 bytes */
    ok(r.n == 0 && r.used == EVREC_SCRATCH - 3, "a full scratch buffer drops formatted values");
    evrec_dur(&r, "d", 1000000000); /* "1s" fits */
    ok(r.n == 1 && r.used == EVREC_SCRATCH - 1, "what still fits is kept");
    r.used = EVREC_SCRATCH + 100; /* corrupt: must not write anywhere */
    evrec_dur(&r, "d", 1);
    ok(r.n == 1, "an inconsistent scratch offset is refused");
}

/* --------------------------------------------------------------- formats */

static void build_big(struct evrec *r)
{
    evrec_init(r, EVLOG_ESCAPE, LOG_LV_WARN, "connect failed");
    evrec_str(r, "escaper_name", "e1");
    evrec_str(r, "upstream", "a b");
    evrec_str(r, "q", "say \"hi\"\n");
    evrec_i64(r, "n", -5);
    evrec_bool(r, "ok", true);
    evrec_u64(r, "big", UINT64_MAX);
    evrec_str(r, "empty", "");
    evrec_strn(r, "ctl", "\x01\x7f\\", 3);
    evrec_dur(r, "dur", 16918123);
    evrec_str(r, "utf8", "h\xc3\xa9");
}

static void test_formats(void)
{
    struct evlog l;
    struct evsink sk;
    struct evrec r;
    char want[2048], *got;
    size_t len;

    memset(&l, 0, sizeof(l));
    l.group = (char *)"g1";
    strcpy(l.host, "h1");
    memset(&sk, 0, sizeof(sk));
    sk.c.driver = EVD_FILE;
    sk.c.format = EVF_TEXT;
    sk.c.cee_flag = (char *)"@cee:";

    build_big(&r);
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "2026-11-22T10:00:00.123456Z warning \"connect failed\" daemon_name=g1 pid=%d "
             "log_type=Escape escaper_name=e1 upstream=\"a b\" q=\"say \\\"hi\\\"\\n\" n=-5 "
             "ok=true big=18446744073709551615 empty=\"\" ctl=\"\\x01\\x7f\\\\\" dur=16.918ms "
             "utf8=h\xc3\xa9\n",
             mypid);
    is_str(got, want, "text line");
    free(got);

    sk.c.format = EVF_JSON;
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "{\"ts\":\"2026-11-22T10:00:00.123456Z\",\"level\":\"warning\",\"message\":\"connect "
             "failed\",\"daemon_name\":\"g1\",\"pid\":%d,\"log_type\":\"Escape\",\"escaper_name\":"
             "\"e1\",\"upstream\":\"a b\",\"q\":\"say \\\"hi\\\"\\n\",\"n\":-5,\"ok\":true,\"big\":"
             "18446744073709551615,\"empty\":\"\",\"ctl\":\"\\u0001\\u007f\\\\\",\"dur\":"
             "\"16.918ms\",\"utf8\":\"h\xc3\xa9\"}\n",
             mypid);
    is_str(got, want, "JSON line");
    free(got);

    /* no message, no group; "-" as a message is quoted */
    l.group = (char *)"";
    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    sk.c.format = EVF_TEXT;
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want), "2026-11-22T10:00:00.123456Z info - pid=%d log_type=Task\n",
             mypid);
    is_str(got, want, "text: no message, daemon_name omitted");
    free(got);
    sk.c.format = EVF_JSON;
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "{\"ts\":\"2026-11-22T10:00:00.123456Z\",\"level\":\"info\",\"pid\":%d,"
             "\"log_type\":\"Task\"}\n",
             mypid);
    is_str(got, want, "JSON: no message key, daemon_name omitted");
    free(got);
    evrec_init(&r, EVLOG_RESOLVE, LOG_LV_ERR, "-");
    sk.c.format = EVF_TEXT;
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "2026-11-22T10:00:00.123456Z error \"-\" pid=%d log_type=Resolve\n", mypid);
    is_str(got, want, "text: a message \"-\" is quoted");
    free(got);

    /* journal */
    l.group = (char *)"g1";
    sk.c.driver = EVD_JOURNAL;
    build_big(&r);
    got = fmt(&l, &sk, &r, &len);
    {
        char head[512];
        int hn = snprintf(head, sizeof(head),
                          "PRIORITY=4\nSYSLOG_IDENTIFIER=proxyd\nMESSAGE=connect failed\n"
                          "DAEMON_NAME=g1\nPID=%d\nLOG_TYPE=Escape\nESCAPER_NAME=e1\n"
                          "UPSTREAM=a b\nQ\n",
                          mypid);
        static const char tail[] = "N=-5\nOK=true\nBIG=18446744073709551615\nEMPTY=\n"
                                   "CTL=\x01\x7f\\\nDUR=16.918ms\nUTF8=h\xc3\xa9\n";
        memcpy(want, head, (size_t)hn);
        size_t wl = (size_t)hn;
        memcpy(want + wl, "\x09\0\0\0\0\0\0\0", 8); /* little-endian 9 */
        wl += 8;
        memcpy(want + wl, "say \"hi\"\n\n", 10);
        wl += 10;
        memcpy(want + wl, tail, sizeof(tail) - 1);
        wl += sizeof(tail) - 1;
        ok(len == wl && memcmp(got, want, wl) == 0,
           "journal datagram (binary form for a value with a newline)");
        if (len != wl || memcmp(got, want, wl) != 0)
            printf("# got %zu bytes: '%.*s'\n", len, (int)len, got);
    }
    free(got);

    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    evrec_u64(&r, "2x-y", 1);
    evrec_str(&r, "m", "a b");
    got = fmt(&l, &sk, &r, &len);
    snprintf(want, sizeof(want),
             "PRIORITY=6\nSYSLOG_IDENTIFIER=proxyd\nMESSAGE=daemon_name=g1 pid=%d log_type=Task "
             "2x-y=1 m=\"a b\"\nDAEMON_NAME=g1\nPID=%d\nLOG_TYPE=Task\nX2X_Y=1\nM=a b\n",
             mypid, mypid);
    is_str(got, want, "journal: key=value MESSAGE without a message, field names sanitized");
    free(got);

    /* syslog */
    char hdr[32];
    time_t secs = (time_t)(T0 / 1000000);
    struct tm tm;
    localtime_r(&secs, &tm);
    strftime(hdr, sizeof(hdr), "%b %e %H:%M:%S", &tm);

    sk.c.driver = EVD_SYSLOG;
    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    evrec_str(&r, "k", "v]\"");
    evrec_u64(&r, "n", 1);
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "<30>%s proxyd[%d]: - daemon_name=g1 pid=%d log_type=Task k=\"v]\\\"\" n=1", hdr,
             mypid, mypid);
    is_str(got, want, "syslog RFC 3164");
    free(got);

    sk.c.emit_hostname = true;
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "<30>%s h1 proxyd[%d]: - daemon_name=g1 pid=%d log_type=Task k=\"v]\\\"\" n=1", hdr,
             mypid, mypid);
    is_str(got, want, "syslog RFC 3164 with hostname");
    free(got);

    sk.c.rfc5424 = true;
    sk.c.enterprise_id = 32473;
    sk.c.message_id = (char *)"APP01";
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "<30>1 2026-11-22T10:00:00.123456Z h1 proxyd %d APP01 [proxyd@32473 "
             "daemon_name=\"g1\" pid=\"%d\" log_type=\"Task\" k=\"v\\]\\\"\" n=\"1\"]",
             mypid, mypid);
    is_str(got, want, "syslog RFC 5424, structured data, no message");
    free(got);

    sk.c.emit_hostname = false;
    sk.c.message_id = NULL;
    sk.c.append_report_ts = true;
    r.level = LOG_LV_WARN;
    r.message = "a\nb";
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "<28>1 2026-11-22T10:00:00.123456Z - proxyd %d - [proxyd@32473 daemon_name=\"g1\" "
             "pid=\"%d\" log_type=\"Task\" k=\"v\\]\\\"\" n=\"1\" report_ts=\"1795341600\"] a\\nb",
             mypid, mypid);
    is_str(got, want, "syslog RFC 5424 with message and report_ts");
    free(got);

    sk.c.cee = true;
    sk.c.append_report_ts = false;
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "<28>1 2026-11-22T10:00:00.123456Z - proxyd %d - - @cee:{\"ts\":\"2026-11-22T10:"
             "00:00.123456Z\",\"level\":\"warning\",\"message\":\"a\\nb\",\"daemon_name\":\"g1\","
             "\"pid\":%d,\"log_type\":\"Task\",\"k\":\"v]\\\"\",\"n\":1}",
             mypid, mypid);
    is_str(got, want, "syslog RFC 5424 CEE");
    free(got);

    sk.c.rfc5424 = false;
    sk.c.cee_flag = (char *)"@x:";
    got = fmt(&l, &sk, &r, NULL);
    snprintf(want, sizeof(want),
             "<28>%s proxyd[%d]: @x:{\"ts\":\"2026-11-22T10:00:00.123456Z\",\"level\":"
             "\"warning\",\"message\":\"a\\nb\",\"daemon_name\":\"g1\",\"pid\":%d,\"log_type\":"
             "\"Task\",\"k\":\"v]\\\"\",\"n\":1}",
             hdr, mypid, mypid);
    is_str(got, want, "syslog RFC 3164 CEE with a custom flag");
    free(got);
}

/* ------------------------------------------------------- logger thread */

struct emitter {
    struct evlog *l;
    unsigned id, count;
};

static void *emit_main(void *arg)
{
    struct emitter *e = arg;
    struct evrec r;

    for (unsigned i = 0; i < e->count; i++) {
        evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
        evrec_u64(&r, "thread", e->id);
        evrec_u64(&r, "seq", i);
        evrec_str(&r, "s", "a\"b");
        evlog_emit(e->l, &r);
    }
    return NULL;
}

static void test_files(void)
{
    char yaml[512], task[128], esc[128], *err = NULL;
    struct evlog *l = NULL;
    enum { PER_THREAD = 500 };

    snprintf(task, sizeof(task), "%s/task.json", dir);
    snprintf(esc, sizeof(esc), "%s/esc.log", dir);
    snprintf(yaml, sizeof(yaml),
             "task:\n  file: {path: %s}\nescape:\n  file: {path: %s, format: text}\n", task, esc);
    if (open_conf(yaml, "grp", &l, &err) < 0) {
        ok(0, "open file sinks: %s", err ? err : "config");
        free(err);
        return;
    }
    ok(evlog_enabled(l, EVLOG_TASK) && evlog_enabled(l, EVLOG_ESCAPE) &&
           !evlog_enabled(l, EVLOG_RESOLVE) && !evlog_enabled(NULL, EVLOG_TASK),
       "enabled: task and escape, not resolve");
    ok(evlog_start(l) == 0, "logger thread started");

    struct emitter e[2] = {{l, 0, PER_THREAD}, {l, 1, PER_THREAD}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, emit_main, &e[i]);
    struct evrec r;
    evrec_init(&r, EVLOG_ESCAPE, LOG_LV_WARN, "no route");
    evrec_str(&r, "escaper_name", "e 1");
    evlog_emit(l, &r);
    evrec_init(&r, EVLOG_RESOLVE, LOG_LV_WARN, "discarded");
    evlog_emit(l, &r);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    evlog_close(l);

    char *s = slurp(task);
    ok(s && count_lines(s) == 2 * PER_THREAD, "task file: %zu lines", count_lines(s));
    unsigned next[2] = {0, 0}, bad = 0;
    char *save = NULL;
    for (char *line = s ? strtok_r(s, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned t = 9, q = 0;
        char want[256];
        const char *p = strstr(line, "\"thread\":");
        if (strncmp(line, "{\"ts\":\"", 7) != 0 || !is_ts(line + 7) || !p ||
            sscanf(p, "\"thread\":%u,\"seq\":%u", &t, &q) != 2 || t > 1 || q != next[t]) {
            if (!bad++)
                printf("# bad line: %s\n", line);
            continue;
        }
        next[t]++;
        snprintf(want, sizeof(want),
                 "\",\"level\":\"info\",\"daemon_name\":\"grp\",\"pid\":%d,\"log_type\":\"Task\","
                 "\"thread\":%u,\"seq\":%u,\"s\":\"a\\\"b\"}",
                 mypid, t, q);
        if (strcmp(line + 7 + 27, want) != 0 && !bad++)
            printf("# bad line: %s\n#   want tail: %s\n", line, want);
    }
    ok(!bad && next[0] == PER_THREAD && next[1] == PER_THREAD,
       "JSON lines exact, each thread's records in order (%u bad)", bad);
    free(s);

    s = slurp(esc);
    char want[256];
    snprintf(want, sizeof(want),
             " warning \"no route\" daemon_name=grp pid=%d log_type=Escape escaper_name=\"e 1\"\n",
             mypid);
    ok(s && count_lines(s) == 1 && is_ts(s) && strcmp(s + 27, want) == 0, "escape text line");
    if (s && strcmp(s + 27, want) != 0)
        printf("# got: %s", s);
    free(s);

    struct stat st;
    mode_t um = umask(0);
    umask(um);
    ok(stat(task, &st) == 0 && (st.st_mode & 0777) == (0640 & ~um), "file mode 0640 (umask %03o)",
       (unsigned)um);

    /* a path that cannot be opened is named in the error */
    char bad_path[160];
    snprintf(bad_path, sizeof(bad_path), "%s/no/such/dir.log", dir);
    snprintf(yaml, sizeof(yaml), "task: {file: %s}\n", bad_path);
    l = NULL;
    ok(open_conf(yaml, "", &l, &err) == -1 && !l, "open fails on a bad path");
    char wanterr[256];
    snprintf(wanterr, sizeof(wanterr), "cannot open event log file %s: No such file or directory",
             bad_path);
    is_str(err, wanterr, "the error names the path");
    free(err);
}

static bool wait_for_content(const char *path)
{
    for (int i = 0; i < 400; i++) {
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size > 0)
            return true;
        usleep(5000);
    }
    return false;
}

static void emit_seq(struct evlog *l, unsigned seq)
{
    struct evrec r;

    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    evrec_u64(&r, "seq", seq);
    evlog_emit(l, &r);
}

static void test_reopen(void)
{
    char yaml[256], path[128], old[140], *err = NULL, *s;
    struct evlog *l = NULL;

    snprintf(path, sizeof(path), "%s/r.log", dir);
    snprintf(old, sizeof(old), "%s/r.log.1", dir);
    snprintf(yaml, sizeof(yaml), "default: {file: {path: %s, format: text}}\n", path);
    if (open_conf(yaml, "", &l, &err) < 0) {
        ok(0, "open: %s", err);
        free(err);
        return;
    }
    is_int(l->nsinks, 1, "three types with one config share one sink");
    evlog_start(l);
    emit_seq(l, 1);
    ok(wait_for_content(path), "first record written");
    ok(rename(path, old) == 0, "log rotated (renamed)");
    evlog_reopen(l);
    emit_seq(l, 2);
    evlog_close(l);
    s = slurp(old);
    ok(s && count_lines(s) == 1 && strstr(s, " seq=1\n"), "the old file has the first record");
    free(s);
    s = slurp(path);
    ok(s && count_lines(s) == 1 && strstr(s, " seq=2\n"), "the new file has the second record");
    free(s);

    /* reopen before the thread runs is done at once */
    unlink(old);
    ok(open_conf(yaml, "", &l, &err) == 0, "open again");
    rename(path, old);
    evlog_reopen(l);
    emit_seq(l, 3);
    evlog_start(l);
    evlog_close(l);
    s = slurp(path);
    ok(s && count_lines(s) == 1 && strstr(s, " seq=3\n"), "reopen before start");
    free(s);
}

static void test_dropped(void)
{
    char yaml[256], path[128], *err = NULL, *s;
    struct evlog *l = NULL;

    snprintf(path, sizeof(path), "%s/d.log", dir);
    snprintf(yaml, sizeof(yaml), "task:\n  file: {path: %s}\n  async_channel_size: 2\n", path);
    if (open_conf(yaml, "", &l, &err) < 0) {
        ok(0, "open: %s", err);
        free(err);
        return;
    }
    for (unsigned i = 0; i < 5; i++)
        emit_seq(l, i); /* the thread is not running: the queue fills */
    is_u64(evlog_dropped(l), 3, "a full queue drops and counts");
    evlog_start(l);
    evlog_close(l);
    s = slurp(path);
    ok(s && count_lines(s) == 2 && strstr(s, "\"seq\":0}") && strstr(s, "\"seq\":1}"),
       "the queued records are flushed at close");
    free(s);
    evlog_close(NULL);
    ok(evlog_dropped(NULL) == 0 && !evlog_enabled(NULL, EVLOG_TASK), "NULL logger is fine");
}

static int bind_unix(const char *path)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0)
        return -1;
    return fd;
}

/* One datagram (NUL-terminated) within 2 s, or "" */
static void recv_dgram(int fd, char *buf, size_t len)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n = -1;

    if (poll(&p, 1, 2000) == 1)
        n = recv(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = 0;
}

static void test_syslog(void)
{
    char yaml[512], sock[128], buf[4096], want[1024], *err = NULL;
    struct evlog *l = NULL;
    struct evrec r;
    int fd;

    snprintf(sock, sizeof(sock), "%s/log.sock", dir);
    if ((fd = bind_unix(sock)) < 0) {
        ok(0, "bind %s", sock);
        return;
    }
    snprintf(yaml, sizeof(yaml), "syslog:\n  target_unix: %s\n", sock);
    ok(open_conf(yaml, "g", &l, &err) == 0 && evlog_start(l) == 0, "syslog sink on %s", sock);
    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    evrec_str(&r, "k", "v");
    evlog_emit(l, &r);
    recv_dgram(fd, buf, sizeof(buf));
    snprintf(want, sizeof(want), " proxyd[%d]: - daemon_name=g pid=%d log_type=Task k=v", mypid,
             mypid);
    ok(strncmp(buf, "<30>", 4) == 0 && is_3164_ts(buf + 4) && strcmp(buf + 19, want) == 0,
       "RFC 3164 datagram: %s", buf);

    /* the syslog daemon restarts: a new socket at the same path */
    close(fd);
    fd = bind_unix(sock);
    evrec_init(&r, EVLOG_ESCAPE, LOG_LV_WARN, "after restart");
    evlog_emit(l, &r);
    recv_dgram(fd, buf, sizeof(buf));
    like(buf, "]: \"after restart\" daemon_name=g", "reconnected after the receiver restarted");
    ok(strncmp(buf, "<28>", 4) == 0, "warning -> PRI 28");
    evlog_close(l);

    snprintf(yaml, sizeof(yaml),
             "syslog:\n  target_unix: {path: %s}\n  format_rfc5424: {enterprise_id: 1, "
             "message_id: M}\n  append_report_ts: true\n",
             sock);
    ok(open_conf(yaml, "g", &l, &err) == 0 && evlog_start(l) == 0, "RFC 5424 sink");
    uint64_t t0 = now_wall_us() / 1000000;
    evrec_init(&r, EVLOG_RESOLVE, LOG_LV_INFO, "hi");
    evlog_emit(l, &r);
    recv_dgram(fd, buf, sizeof(buf));
    uint64_t t1 = now_wall_us() / 1000000;
    snprintf(want, sizeof(want),
             " - proxyd %d M [proxyd@1 daemon_name=\"g\" pid=\"%d\" log_type=\"Resolve\" "
             "report_ts=\"",
             mypid, mypid);
    unsigned long long rts = 0;
    bool shape = strncmp(buf, "<30>1 ", 6) == 0 && is_ts(buf + 6) &&
                 strncmp(buf + 33, want, strlen(want)) == 0;
    const char *rest = shape ? buf + 33 + strlen(want) : "";
    int used = 0;
    ok(shape && sscanf(rest, "%llu%n", &rts, &used) == 1 && rts >= t0 && rts <= t1 &&
           strcmp(rest + used, "\"] hi") == 0,
       "RFC 5424 datagram: %s", buf);
    evlog_close(l);

    snprintf(yaml, sizeof(yaml), "syslog:\n  target_unix: %s\n  use_cee_log_syntax: true\n", sock);
    ok(open_conf(yaml, "g", &l, &err) == 0 && evlog_start(l) == 0, "CEE sink");
    evrec_init(&r, EVLOG_TASK, LOG_LV_INFO, NULL);
    evrec_u64(&r, "n", 7);
    evlog_emit(l, &r);
    recv_dgram(fd, buf, sizeof(buf));
    snprintf(want, sizeof(want), " proxyd[%d]: @cee:{\"ts\":\"", mypid);
    char tail[256];
    snprintf(tail, sizeof(tail),
             "\",\"level\":\"info\",\"daemon_name\":\"g\",\"pid\":%d,\"log_type\":\"Task\","
             "\"n\":7}",
             mypid);
    size_t wl = strlen(want);
    ok(strncmp(buf, "<30>", 4) == 0 && is_3164_ts(buf + 4) && strncmp(buf + 19, want, wl) == 0 &&
           is_ts(buf + 19 + wl) && strcmp(buf + 19 + wl + 27, tail) == 0,
       "CEE datagram: %s", buf);
    evlog_close(l);
    close(fd);
    unlink(sock);

    /* UDP with a bind address */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
        ok(0, "UDP receiver");
        return;
    }
    snprintf(yaml, sizeof(yaml),
             "syslog:\n  target_udp: {address: \"127.0.0.1:%u\", bind_ip: 127.0.0.1}\n",
             ntohs(sin.sin_port));
    ok(open_conf(yaml, "", &l, &err) == 0 && evlog_start(l) == 0, "UDP syslog sink");
    evrec_init(&r, EVLOG_TASK, LOG_LV_NOTICE, "udp");
    evlog_emit(l, &r);
    recv_dgram(fd, buf, sizeof(buf));
    snprintf(want, sizeof(want), " proxyd[%d]: udp pid=%d log_type=Task", mypid, mypid);
    ok(strncmp(buf, "<29>", 4) == 0 && is_3164_ts(buf + 4) && strcmp(buf + 19, want) == 0,
       "UDP datagram: %s", buf);
    evlog_close(l);
    close(fd);

    snprintf(yaml, sizeof(yaml),
             "syslog:\n  target_udp: {address: \"127.0.0.1:9\", bind_ip: "
             "192.0.2.1}\n");
    l = NULL;
    ok(open_conf(yaml, "", &l, &err) == -1 && !l, "an unusable bind address fails at open");
    like(err, "event log: cannot set up syslog udp 127.0.0.1:9: ", "the error names the target");
    free(err);
}

/* stdout goes to a pipe nobody reads: close must give up after its bound */
static void test_stall(void)
{
    struct evlog *l = NULL;
    char *err = NULL;
    int p[2], saved;
    struct timespec a, b;

    fflush(stdout);
    if (pipe(p) < 0 || (saved = dup(STDOUT_FILENO)) < 0) {
        ok(0, "pipe");
        return;
    }
    dup2(p[1], STDOUT_FILENO);
    int rc = open_conf("stdout", "", &l, &err);
    if (rc == 0) {
        evlog_start(l);
        for (unsigned i = 0; i < 3000; i++)
            emit_seq(l, i); /* ~130 kB: more than a pipe holds */
        usleep(200000);
        clock_gettime(CLOCK_MONOTONIC, &a);
        evlog_close(l);
        clock_gettime(CLOCK_MONOTONIC, &b);
    }
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(p[0]);
    close(p[1]);
    if (rc != 0) {
        ok(0, "stdout sink: %s", err);
        free(err);
        return;
    }
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    ok(secs > 1.5 && secs < 2.9, "close gives up on a stalled output after ~%d s (%.2f s)",
       CLOSE_FLUSH_SEC, secs);
}

int main(void)
{
    mypid = (int)getpid();
    snprintf(dir, sizeof(dir), "/tmp/evlog_test.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_conf_accept();
    test_conf_reject();
    test_records();
    test_formats();
    test_files();
    test_reopen();
    test_dropped();
    test_syslog();
    test_stall();

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
