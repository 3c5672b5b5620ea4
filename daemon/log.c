/* Process log; see log.h. The target is chosen once at start (before threads), so the
 * few statics here are written once and only read afterwards. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum plog_target plog_target;
static int plog_max = LOG_LV_NOTICE;
static bool plog_prefix; /* stderr goes to the journal: "<N>" priority prefixes */

void plog_setup(enum plog_target target, int verbosity)
{
    plog_target = target;
    plog_max = verbosity >= 2 ? LOG_LV_DEBUG : verbosity == 1 ? LOG_LV_INFO : LOG_LV_NOTICE;
    plog_prefix = getenv("JOURNAL_STREAM") != NULL;
    if (target == PLOG_SYSLOG)
        openlog("proxyd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

bool plog_enabled(enum log_level lv)
{
    return (int)lv <= plog_max;
}

int journal_send(const char *fields, size_t len)
{
    static const struct sockaddr_un sa = {AF_UNIX, "/run/systemd/journal/socket"};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ssize_t r;

    if (fd < 0)
        return -1;
    r = sendto(fd, fields, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&sa,
               sizeof(sa));
    close(fd);
    return r == (ssize_t)len ? 0 : -1;
}

void plog(enum log_level lv, const char *fmt, ...)
{
    static const char *const names[] = {"", "", "", "error", "warning", "notice", "info", "debug"};
    char msg[2048], line[2200];
    va_list ap;
    int n;

    if (!plog_enabled(lv))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    switch (plog_target) {
    case PLOG_SYSLOG:
        syslog((int)lv, "%s", msg);
        return;
    case PLOG_JOURNAL:
        n = snprintf(line, sizeof(line), "PRIORITY=%d\nSYSLOG_IDENTIFIER=proxyd\nMESSAGE=%s\n",
                     (int)lv, msg);
        /* a message with a newline needs the binary field form; keep it simple */
        for (char *p = strstr(line, "MESSAGE=") + 8; *p && p < line + n - 1; p++)
            if (*p == '\n')
                *p = ' ';
        if (journal_send(line, (size_t)MIN(n, (int)sizeof(line) - 1)) == 0)
            return;
        break; /* no journal: fall back to stderr */
    case PLOG_STDERR:
        break;
    }
    if (plog_prefix) {
        n = snprintf(line, sizeof(line), "<%d>%s\n", (int)lv, msg);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03ld proxyd[%d]: %s: %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid(), names[lv], msg);
    }
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    /* one write per line: lines from several threads do not interleave */
    while (write(STDERR_FILENO, line, (size_t)n) < 0 && errno == EINTR)
        ;
}
