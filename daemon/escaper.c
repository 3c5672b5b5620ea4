/* Common escaper keys. */
#include "escaper.h"

#define EOFF(f) offsetof(struct escaper, f)

const struct conf_key escaper_base_keys[] = {
    {"shared_logger", NULL, cp_ascii, EOFF(shared_logger)},
    {"extra_metrics_tags", NULL, cp_metrics_tags, EOFF(extra_tags)},
    {0},
};
