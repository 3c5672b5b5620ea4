/* Helpers and common key tables for escaper modules. */
#ifndef PROXYD_ESCAPER_H
#define PROXYD_ESCAPER_H

#include "confval.h"
#include "obj_types.h"

/* shared_logger, extra_metrics_tags: keys every escaper has. */
extern const struct conf_key escaper_base_keys[];

#endif
