/* Server dummy_close: closes every connection at once. Useful as a placeholder
 * target of an intelli_proxy and to park a port. */
#include <unistd.h>

#include "registry.h"
#include "server.h"

static const struct conf_key *const dummy_close_keys[] = {server_base_keys, server_listen_keys,
                                                          NULL};

static void dummy_close_accept(struct server *s, struct worker *w, struct accepted *a)
{
    close(a->fd);
    server_conn_done(s);
}

const struct server_ops server_dummy_close_ops = {
    .type = "dummy_close",
    .keys = dummy_close_keys,
    .size = sizeof(struct server),
    .caps = SRV_CAP_TCP_LISTEN,
    .accept = dummy_close_accept,
};
