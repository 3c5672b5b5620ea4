/* proxyd: parse the command line and start the runtime. */
#include <ares.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "confval.h"
#include "control.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "registry.h"
#include "sdnotify.h"

/* sysexits.h: systemd shows them by name, and RestartPreventExitStatus=78 keeps a
 * broken config from restarting in a loop */
#define EXIT_USAGE 64  /* EX_USAGE */
#define EXIT_OSERR 71  /* EX_OSERR: cannot bind, cannot detach */
#define EXIT_CONFIG 78 /* EX_CONFIG */
#ifndef PROXYD_SYSCONFDIR
#define PROXYD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG PROXYD_SYSCONFDIR "/proxyd/main.yaml"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: proxyd [OPTION]...\n"
            "Enterprise forward proxy daemon.\n"
            "\n"
            "  -c, --config-file=PATH   main config file, or a directory holding main.yaml\n"
            "                           (default " DEFAULT_CONFIG ")\n"
            "  -t, --test-config        check the configuration and exit\n"
            "  -G, --group-name=NAME    daemon group: names the control sockets and logs\n"
            "  -C, --control-dir=DIR    directory for control sockets\n"
            "  -s, --systemd            run under systemd (notify protocol, journal)\n"
            "  -d, --daemon             detach into the background (needs --pid-file)\n"
            "  -p, --pid-file=FILE      write the process id to FILE\n"
            "  -v, --verbose            more process log output (repeat for debug)\n"
            "  -V, --version            print version information and exit\n"
            "  -h, --help               display this help and exit\n"
            "\n"
            "Signals: HUP reloads, TERM goes offline gracefully, INT/QUIT quit now,\n"
            "USR1 reopens log files.\n"
            "Exit status: 0 ok, 64 bad command line, 71 cannot bind or detach,\n"
            "78 invalid configuration, 1 other errors.\n"
            "See proxyd(8), proxyd.yaml(5) and proxyctl(8).\n");
}

static void version(void)
{
    printf("proxyd %s\n", PROXYD_VERSION);
    char pcre[64] = "";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    printf("libev %d.%d, %s, c-ares %s, libyaml %s, PCRE2 %s\n", ev_version_major(),
           ev_version_minor(), OpenSSL_version(OPENSSL_VERSION), ares_version(NULL),
           yaml_get_version_string(), pcre);
    static const char *const kinds[] = {"resolvers", "escapers", "user groups", "servers"};
    for (int k = 0; k < OBJ_NKINDS; k++) {
        printf("%s:", kinds[k]);
        for (const struct obj_ops *const *o = registry_list((enum obj_kind)k); *o; o++)
            printf(" %s", (*o)->type);
        printf("\n");
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("cannot raise the open file limit: %s", strerror(errno));
    }
}

/* Locked pid file; the descriptor stays open (and locked) while we run. */
static int write_pid_file(const char *path)
{
    char buf[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        log_err("pid file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        log_err("pid file %s is locked: another proxyd is running", path);
        close(fd);
        return -1;
    }
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
        log_err("pid file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Detach (double fork, setsid). The first parent stays until the daemon says it is
 * ready, and exits with the status the daemon reports through the pipe, so the shell
 * or init script that started it sees a failure that happens after detaching. */
static int daemonize(int *ready_fd)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        unsigned char status = 1;
        close(p[1]);
        while (read(p[0], &status, 1) < 0 && errno == EINTR)
            ;
        /* EOF without a byte: the daemon died before it was ready */
        _exit(status);
    }
    close(p[0]);
    if (setsid() < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0); /* the pipe's writer lives on in the grandchild */
    if (chdir("/") < 0)
        return -1;
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    *ready_fd = p[1];
    return 0;
}

static void daemonize_report(int *ready_fd, int status)
{
    unsigned char b = (unsigned char)status;

    if (*ready_fd < 0)
        return;
    while (write(*ready_fd, &b, 1) < 0 && errno == EINTR)
        ;
    close(*ready_fd);
    *ready_fd = -1;
}

static void announce(struct daemon *d)
{
    for (size_t i = 0; i < d->gen->n[OBJ_SERVER]; i++) {
        struct server *s = (struct server *)d->gen->objs[OBJ_SERVER][i];
        char addr[80];
        if (!s->lset)
            continue;
        log_notice("server '%s' (%s) listening on %s", s->obj.name, s->obj.type,
                   sockaddr_str(&s->lset->bound, addr, sizeof(addr)));
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config-file", required_argument, NULL, 'c'},
        {"test-config", no_argument, NULL, 't'},
        {"group-name", required_argument, NULL, 'G'},
        {"control-dir", required_argument, NULL, 'C'},
        {"systemd", no_argument, NULL, 's'},
        {"daemon", no_argument, NULL, 'd'},
        {"pid-file", required_argument, NULL, 'p'},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct daemon d = {0};
    struct spec_list specs = {0};
    struct generation *g = NULL;
    bool show_version = false;
    char *err = NULL;
    int c, pid_fd = -1, ready_fd = -1, rc = 0;

    d.opts.config = DEFAULT_CONFIG;
    d.opts.group = "";
    while ((c = getopt_long(argc, argv, "c:tG:C:sdp:vVh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': d.opts.config = optarg; break;
        case 't': d.opts.test = true; break;
        case 'G': d.opts.group = optarg; break;
        case 'C': d.opts.control_dir = optarg; break;
        case 's': d.opts.systemd = true; break;
        case 'd': d.opts.daemonize = true; break;
        case 'p': d.opts.pid_file = optarg; break;
        case 'v': d.opts.verbose++; break;
        case 'V': show_version = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "proxyd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (show_version) {
        version();
        return 0;
    }
    if (d.opts.daemonize && !d.opts.pid_file) {
        fprintf(stderr, "proxyd: --daemon needs --pid-file\n");
        return EXIT_USAGE;
    }
    for (const char *p = d.opts.group; *p; p++) {
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              ((*p | 32) >= 'a' && (*p | 32) <= 'z'))) {
            fprintf(stderr, "proxyd: invalid group name '%s'\n", d.opts.group);
            return EXIT_USAGE;
        }
    }

    /* with -d, what goes wrong before detaching reaches the terminal; syslog after */
    plog_setup(d.opts.test ? PLOG_STDERR : d.opts.systemd ? PLOG_JOURNAL : PLOG_STDERR,
               d.opts.verbose);
    if (daemon_init(&d) < 0) {
        log_err("cannot initialize the event loop");
        return 1;
    }

    /* the whole configuration is checked before anything is opened: a broken one is
     * EX_CONFIG at start exactly as under -t */
    d.nworkers = 1;
    if (daemon_load_config(&d, &specs, true, &err) < 0 ||
        !(g = gen_build(&d, &specs, NULL, false, &err)) ||
        evlog_open(&d.evlog, &d.log_conf, d.opts.group, &err) < 0) {
        if (d.opts.test)
            fprintf(stderr, "proxyd: %s\n", err);
        else
            log_err("%s", err);
        if (g)
            gen_unref(g);
        rc = EXIT_CONFIG;
        goto out;
    }
    gen_unref(g);
    g = NULL;
    if (d.opts.test) {
        printf("proxyd: the configuration in %s is valid\n", d.main_path);
        goto out;
    }

    raise_nofile();
    if (daemon_bind(&d, &specs, &err) < 0) {
        log_err("%s", err);
        rc = EXIT_OSERR;
        goto out;
    }
    spec_list_free(&specs);
    if (d.opts.daemonize) {
        if (daemonize(&ready_fd) < 0) {
            log_err("cannot detach: %s", strerror(errno));
            rc = EXIT_OSERR;
            goto out;
        }
        if (!d.opts.systemd)
            plog_setup(PLOG_SYSLOG, d.opts.verbose); /* no thread runs yet */
    }
    if (d.opts.pid_file && (pid_fd = write_pid_file(d.opts.pid_file)) < 0) {
        rc = EXIT_OSERR;
        goto out;
    }
    if (daemon_start(&d, &err) < 0 || control_open(&d, &err) < 0 || evlog_start(d.evlog) < 0) {
        log_err("%s", err ? err : "cannot start");
        rc = EXIT_OSERR;
        goto out;
    }
    announce(&d);
    log_notice("proxyd %s running with %u workers (generation %llu)", PROXYD_VERSION, d.nworkers,
               (unsigned long long)d.gen->id);
    sd_notifyf(&d, "READY=1\nSTATUS=running generation %llu", (unsigned long long)d.gen->id);
    daemonize_report(&ready_fd, 0);
    daemon_run(&d);

out:
    daemonize_report(&ready_fd, rc ? rc : 1);
    spec_list_free(&specs);
    daemon_shutdown(&d);
    if (pid_fd >= 0) {
        unlink(d.opts.pid_file);
        close(pid_fd);
    }
    free(err);
    return rc;
}
