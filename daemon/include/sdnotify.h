/* The systemd notify protocol, written directly (no libsystemd): one datagram of
 * KEY=VALUE lines to $NOTIFY_SOCKET. */
#ifndef PROXYD_SDNOTIFY_H
#define PROXYD_SDNOTIFY_H

#include "common.h"

struct daemon;
/* Send when running with -s and NOTIFY_SOCKET is set; otherwise do nothing.
 * MAINPID is added. Returns 0 / -1. */
int sd_notifyf(struct daemon *d, const char *fmt, ...) PRINTF(2, 3);

#endif
