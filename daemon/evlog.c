/* Event logs: interim implementation accepting only the `discard` driver; the full
 * driver set replaces this file. */
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "evlog.h"

int evlog_conf_parse(struct conf_ctx *cx, const struct cnode *n, struct evlog_conf *out)
{
    memset(out, 0, sizeof(*out));
    if (!n || n->type == CN_NULL)
        return 0;
    if (n->type == CN_SCALAR && strcmp(n->str, "discard") == 0)
        return 0;
    return conf_fail(cx, n, "unsupported: only the 'discard' event log driver is available");
}

void evrec_init(struct evrec *r, enum evlog_type type, enum log_level level, const char *msg)
{
    r->type = type;
    r->level = level;
    r->message = msg;
    r->n = 0;
    r->used = 0;
}

struct evlog {
    int unused;
};

int evlog_open(struct evlog **out, const struct evlog_conf *conf, const char *group, char **err)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : err_set(err, "out of memory");
}

int evlog_start(struct evlog *l)
{
    return 0;
}

bool evlog_enabled(const struct evlog *l, enum evlog_type type)
{
    return false;
}

void evlog_emit(struct evlog *l, const struct evrec *r)
{
}

void evlog_reopen(struct evlog *l)
{
}

uint64_t evlog_dropped(const struct evlog *l)
{
    return 0;
}

void evlog_close(struct evlog *l)
{
    free(l);
}
