/* Common resolver keys. */
#include "resolver.h"

const struct conf_key resolver_base_keys[] = {
    {0},
};
