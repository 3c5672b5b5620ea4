/* proxyctl: steer a running proxyd over its control socket.
 *
 * Plain output and exit status follow g3proxy-ctl where it has the same command, so
 * scripts written for it keep working; --json prints the daemon's reply as is.
 * Exit status: 0 ok, 1 refused by the daemon, 2 usage, 3 daemon unreachable. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctlpath.h"
#include "jsonget.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define REPLY_MAX (16u << 20)

struct opts {
    const char *dir;
    const char *group;
    pid_t pid;
    bool json;
    int timeout_ms;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: proxyctl [OPTION]... COMMAND [ARG]...\n"
            "Control a running proxyd.\n"
            "\n"
            "Commands:\n"
            "  version                      print the daemon's version\n"
            "  offline                      start a graceful shutdown\n"
            "  reload                       reload the whole configuration (waits for the result)\n"
            "  reload-server NAME           re-read one server from its own file\n"
            "  reload-escaper NAME          ... one escaper\n"
            "  reload-resolver NAME         ... one resolver\n"
            "  reload-user-group NAME       ... one user group\n"
            "  list server|escaper|resolver|user-group\n"
            "                               print object names\n"
            "  server NAME status           online state and counters of a server\n"
            "  resolver NAME query DOMAIN [-s STRATEGY]\n"
            "                               resolve through a resolver (one address per line)\n"
            "  stats                        counters of the daemon, servers and escapers\n"
            "  check                        validate the configuration on disk\n"
            "\n"
            "Options:\n"
            "  -C, --control-dir=DIR        directory of the control sockets\n"
            "  -G, --daemon-group=NAME      daemon group (proxyd -G)\n"
            "  -p, --daemon-pid=PID         talk to this process (its own socket)\n"
            "      --json                   print the daemon's JSON reply\n"
            "  -t, --timeout=SECONDS        how long to wait for a reply (default 60)\n"
            "  -h, --help                   display this help and exit\n"
            "  -V, --version                print proxyctl's version and exit\n"
            "\n"
            "Exit status: 0 ok, 1 refused by the daemon, 2 usage error, 3 daemon unreachable.\n");
}

static int die_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "proxyctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'proxyctl --help'.\n");
    return EXIT_USAGE;
}

static int connect_to(const struct opts *o, char *path, size_t plen)
{
    char cand[4][256];
    size_t n = 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (o->dir) {
        snprintf(cand[0], sizeof(cand[0]), "%s", o->dir);
        n = 1;
    } else {
        n = ctl_dir_candidates(cand, 4);
    }
    /* the first candidate directory holding the socket wins */
    path[0] = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (ctl_socket_path(path, plen, cand[i], o->group, o->pid) < 0)
            continue;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            break;
        if (i + 1 < n)
            path[0] = 0;
    }
    if (!path[0] && ctl_socket_path(path, plen, cand[0], o->group, o->pid) < 0)
        return -1;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Send one request line, read one reply line (malloc'd, without the newline). */
static char *request(int fd, const char *line, int timeout_ms)
{
    size_t len = strlen(line), off = 0, cap = 4096, n = 0;
    long long deadline = now_ms() + timeout_ms;
    char *buf;

    while (off < len) {
        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return NULL;
        off += (size_t)w;
    }
    buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long long left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            break;
        }
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            errno = r == 0 ? ETIMEDOUT : errno;
            break;
        }
        if (n + 1 >= cap) {
            if (cap >= REPLY_MAX) {
                errno = EMSGSIZE;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            errno = got == 0 ? ECONNRESET : errno;
            break;
        }
        n += (size_t)got;
        char *nl = memchr(buf, '\n', n);
        if (nl) {
            *nl = 0;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 255)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

/* Print the error of a refused request and return EXIT_REFUSED. */
static int refused(const char *reply)
{
    char *e = json_get_str(reply, "error");
    fprintf(stderr, "Error: %s\n", e ? e : reply);
    free(e);
    return EXIT_REFUSED;
}

static void print_names(const char *reply)
{
    struct json_iter it;
    char *s;

    json_iter_array(&it, reply, "names");
    while ((s = json_iter_next_str(&it))) {
        printf("%s\n", s);
        free(s);
    }
}

static void print_stats(const char *reply)
{
    struct json_iter it;
    const char *obj;
    size_t olen;

    char *version = json_get_str(reply, "version"), *state = json_get_str(reply, "state");

    printf("proxyd %s, pid %llu, %s, up %llus, generation %llu, %llu workers, %llu tasks alive\n",
           version ? version : "?", json_get_u64(reply, "pid"), state ? state : "?",
           json_get_u64(reply, "uptime"),
           json_get_u64(reply, "generation"), json_get_u64(reply, "workers"),
           json_get_u64(reply, "tasks_alive"));
    free(version);
    free(state);
    printf("\n%-24s %-14s %-7s %12s %10s %12s %10s %14s %14s\n", "SERVER", "TYPE", "ONLINE",
           "CONN_TOTAL", "CONN_LIVE", "TASK_TOTAL", "TASK_LIVE", "IN_BYTES", "OUT_BYTES");
    json_iter_array(&it, reply, "servers");
    while ((obj = json_iter_next_obj(&it, &olen))) {
        char *o = strndup(obj, olen);
        if (!o)
            break;
        char *name = json_get_str(o, "name"), *type = json_get_str(o, "type");
        printf("%-24s %-14s %-7s %12llu %10llu %12llu %10llu %14llu %14llu\n", name ? name : "?",
               type ? type : "?", json_get_bool(o, "online") ? "yes" : "no",
               json_get_u64(o, "conn_total"), json_get_u64(o, "conn_alive"),
               json_get_u64(o, "task_total"), json_get_u64(o, "task_alive"),
               json_get_u64(o, "in_bytes"), json_get_u64(o, "out_bytes"));
        free(name);
        free(type);
        free(o);
    }
    printf("\n%-24s %-14s %12s %12s %12s %10s %14s %14s\n", "ESCAPER", "TYPE", "TASK_TOTAL",
           "CONNECTED", "CONN_ERROR", "TIMEOUT", "IN_BYTES", "OUT_BYTES");
    json_iter_array(&it, reply, "escapers");
    while ((obj = json_iter_next_obj(&it, &olen))) {
        char *o = strndup(obj, olen);
        if (!o)
            break;
        char *name = json_get_str(o, "name"), *type = json_get_str(o, "type");
        printf("%-24s %-14s %12llu %12llu %12llu %10llu %14llu %14llu\n", name ? name : "?",
               type ? type : "?", json_get_u64(o, "task_total"),
               json_get_u64(o, "conn_established"), json_get_u64(o, "conn_error"),
               json_get_u64(o, "conn_timeout"), json_get_u64(o, "in_bytes"),
               json_get_u64(o, "out_bytes"));
        free(name);
        free(type);
        free(o);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"control-dir", required_argument, NULL, 'C'},
        {"daemon-group", required_argument, NULL, 'G'},
        {"daemon-pid", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    struct opts o = {.group = "", .timeout_ms = 60000};
    char line[1100], path[512], *reply;
    const char *strategy = NULL;
    int c, fd, rc = 0;

    /* options may follow the command too (g3proxy-ctl style: "resolver r query d -s x") */
    while ((c = getopt_long(argc, argv, "C:G:p:t:s:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'C': o.dir = optarg; break;
        case 'G': o.group = optarg; break;
        case 'p': o.pid = (pid_t)atoi(optarg); if (o.pid <= 0) return die_usage("invalid pid '%s'", optarg); break;
        case 'j': o.json = true; break;
        case 't': o.timeout_ms = atoi(optarg) * 1000; if (o.timeout_ms <= 0) return die_usage("invalid timeout '%s'", optarg); break;
        case 's': strategy = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("proxyctl %s\n", PROXYD_VERSION); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1)
        return die_usage("missing command");

    const char *cmd = argv[0];
    int n;
    if (strategy && (strcmp(cmd, "resolver") || !valid_name(strategy)))
        return die_usage("-s STRATEGY goes with 'resolver NAME query DOMAIN' only");
    if (!strcmp(cmd, "version") || !strcmp(cmd, "offline") || !strcmp(cmd, "reload") ||
        !strcmp(cmd, "stats") || !strcmp(cmd, "check")) {
        if (argc != 1)
            return die_usage("'%s' takes no argument", cmd);
        n = snprintf(line, sizeof(line), "%s\n", cmd);
    } else if (!strcmp(cmd, "list")) {
        if (argc != 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "escaper") &&
                          strcmp(argv[1], "resolver") && strcmp(argv[1], "user-group")))
            return die_usage("usage: list server|escaper|resolver|user-group");
        n = snprintf(line, sizeof(line), "list %s\n", argv[1]);
    } else if (!strcmp(cmd, "reload-server") || !strcmp(cmd, "reload-escaper") ||
               !strcmp(cmd, "reload-resolver") || !strcmp(cmd, "reload-user-group")) {
        if (argc != 2 || !valid_name(argv[1]))
            return die_usage("usage: %s NAME", cmd);
        n = snprintf(line, sizeof(line), "%s %s\n", cmd, argv[1]);
    } else if (!strcmp(cmd, "server")) {
        if (argc != 3 || !valid_name(argv[1]) || strcmp(argv[2], "status"))
            return die_usage("usage: server NAME status");
        n = snprintf(line, sizeof(line), "server %s status\n", argv[1]);
    } else if (!strcmp(cmd, "resolver")) {
        if (argc != 4 || !valid_name(argv[1]) || strcmp(argv[2], "query") || !valid_name(argv[3]))
            return die_usage("usage: resolver NAME query DOMAIN [-s STRATEGY]");
        n = snprintf(line, sizeof(line), "resolver %s query %s%s%s\n", argv[1], argv[3],
                     strategy ? " " : "", strategy ? strategy : "");
    } else {
        return die_usage("unknown command '%s'", cmd);
    }
    if (n < 0 || (size_t)n >= sizeof(line))
        return die_usage("arguments too long");

    fd = connect_to(&o, path, sizeof(path));
    if (fd < 0) {
        fprintf(stderr, "proxyctl: cannot reach proxyd at %s: %s\n", path[0] ? path : "?",
                strerror(errno));
        return EXIT_UNREACHABLE;
    }
    reply = request(fd, line, o.timeout_ms);
    close(fd);
    if (!reply) {
        fprintf(stderr, "proxyctl: no reply from proxyd at %s: %s\n", path, strerror(errno));
        return EXIT_UNREACHABLE;
    }
    if (o.json) {
        printf("%s\n", reply);
        rc = json_get_bool(reply, "ok") ? 0 : EXIT_REFUSED;
        free(reply);
        return rc;
    }
    if (!json_get_bool(reply, "ok")) {
        /* g3proxy-ctl prints a failed query's error on stdout and exits 0 */
        if (!strcmp(cmd, "resolver") && json_get_bool(reply, "query_failed")) {
            char *e = json_get_str(reply, "error");
            printf("%s\n", e ? e : reply);
            free(e);
            rc = 0;
        } else {
            rc = refused(reply);
        }
    } else if (!strcmp(cmd, "version")) {
        printf("%s\n", json_get_strbuf(reply, "version"));
    } else if (!strcmp(cmd, "list")) {
        print_names(reply);
    } else if (!strcmp(cmd, "server")) {
        printf("online: %s\nalive tasks: %llu\ntotal conn: %llu\ntotal task: %llu\n",
               json_get_bool(reply, "online") ? "true" : "false",
               json_get_u64(reply, "alive_tasks"), json_get_u64(reply, "total_conn"),
               json_get_u64(reply, "total_task"));
    } else if (!strcmp(cmd, "resolver")) {
        struct json_iter it;
        char *s;
        json_iter_array(&it, reply, "ips");
        while ((s = json_iter_next_str(&it))) {
            printf("%s\n", s);
            free(s);
        }
    } else if (!strcmp(cmd, "stats")) {
        print_stats(reply);
    } else if (!strcmp(cmd, "check")) {
        char *r = json_get_str(reply, "result");
        printf("%s\n", r ? r : "ok");
        free(r);
    } else {
        char *r = json_get_str(reply, "result");
        printf("notice: %s\n", r ? r : "success");
        free(r);
    }
    free(reply);
    return rc;
}
