/* Where control sockets live; shared by proxyd and proxyctl. */
#ifndef PROXYD_CTLPATH_H
#define PROXYD_CTLPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Candidate control directories in order: $RUNTIME_DIRECTORY (systemd), /run/proxyd,
 * $XDG_RUNTIME_DIR/proxyd, /tmp/proxyd-$UID. Returns how many were written. */
size_t ctl_dir_candidates(char out[][256], size_t max);
/* "<dir>/<group>.sock", or "<dir>/<group>_<pid>.sock" when pid > 0; an empty group
 * is spelled "_" for the daemon socket (as g3proxy does). -1 if it does not fit. */
int ctl_socket_path(char *buf, size_t len, const char *dir, const char *group, pid_t pid);

#endif
