/* sd_notify without libsystemd; see sdnotify.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "sdnotify.h"

int sd_notifyf(struct daemon *d, const char *fmt, ...)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char msg[512];
    va_list ap;
    int fd, n;
    size_t plen;
    socklen_t salen;

    if (!d->opts.systemd || !path || (path[0] != '/' && path[0] != '@'))
        return 0;
    plen = strlen(path);
    if (plen >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, plen);
    if (path[0] == '@')
        sa.sun_path[0] = 0; /* abstract namespace */
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);

    n = snprintf(msg, sizeof(msg), "MAINPID=%d\n", (int)getpid());
    va_start(ap, fmt);
    n += vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(msg))
        n = (int)sizeof(msg) - 1;

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t r = sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    close(fd);
    return r == n ? 0 : -1;
}
