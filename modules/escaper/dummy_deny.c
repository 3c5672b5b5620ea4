/* Escaper dummy_deny: refuses every task. */
#include "escaper.h"
#include "registry.h"

static const struct conf_key *const dummy_deny_keys[] = {escaper_base_keys, NULL};

const struct escaper_ops escaper_dummy_deny_ops = {
    .type = "dummy_deny",
    .keys = dummy_deny_keys,
    .size = sizeof(struct escaper),
    .caps = 0, /* no capability: every task through it is refused as EscaperNotUsable */
};
