/* The control socket (see control.c for the protocol). */
#ifndef PROXYD_CONTROL_H
#define PROXYD_CONTROL_H

struct daemon;
struct control;

/* Bind <dir>/<group>.sock and <dir>/<group>_<pid>.sock (mode 0660, group proxyd
 * when it exists). Sets d->control. 0 / -1 with *err. */
int control_open(struct daemon *d, char **err);
/* Close and unlink the sockets. NULL ok. */
void control_close(struct control *c);

#endif
