/* Helpers and common key tables for resolver modules. */
#ifndef PROXYD_RESOLVER_H
#define PROXYD_RESOLVER_H

#include "confval.h"
#include "obj_types.h"

/* graceful_stop_wait, protective_query_timeout and the cache TTL keys. */
extern const struct conf_key resolver_base_keys[];

#endif
