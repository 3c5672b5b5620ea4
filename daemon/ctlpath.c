/* Control socket locations; see ctlpath.h. Linked into proxyd and proxyctl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlpath.h"

size_t ctl_dir_candidates(char out[][256], size_t max)
{
    const char *rt = getenv("RUNTIME_DIRECTORY"), *xdg = getenv("XDG_RUNTIME_DIR");
    size_t n = 0;

    /* systemd joins several RuntimeDirectory= paths with ':': ours is the first */
    if (rt && *rt && n < max)
        snprintf(out[n++], 256, "%.*s", (int)strcspn(rt, ":"), rt);
    if (n < max)
        snprintf(out[n++], 256, "/run/proxyd");
    if (xdg && *xdg && n < max)
        snprintf(out[n++], 256, "%s/proxyd", xdg);
    if (n < max)
        snprintf(out[n++], 256, "/tmp/proxyd-%u", (unsigned)getuid());
    return n;
}

int ctl_socket_path(char *buf, size_t len, const char *dir, const char *group, pid_t pid)
{
    int n;

    if (!group)
        group = "";
    if (pid > 0)
        n = snprintf(buf, len, "%s/%s_%d.sock", dir, group, (int)pid);
    else
        n = snprintf(buf, len, "%s/%s.sock", dir, *group ? group : "_");
    return n < 0 || (size_t)n >= len ? -1 : 0;
}
