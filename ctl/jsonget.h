/* Reading proxyd's one-line JSON replies: top-level members of an object, and the
 * items of a top-level array member. Small and bounded; invalid JSON yields
 * "absent" answers, never a crash. */
#ifndef PROXYCTL_JSONGET_H
#define PROXYCTL_JSONGET_H

#include <stdbool.h>
#include <stddef.h>

/* Top-level member `key` of the object in `json`: a malloc'd, unescaped string or
 * NULL when absent or not a string. */
char *json_get_str(const char *json, const char *key);
/* Same, into a static buffer (for printing; truncated at 255 bytes, "" when absent). */
const char *json_get_strbuf(const char *json, const char *key);
unsigned long long json_get_u64(const char *json, const char *key); /* 0 when absent */
bool json_get_bool(const char *json, const char *key);             /* false when absent */

struct json_iter {
    const char *p;              /* next item, NULL when done */
};
/* Iterate the array member `key`. */
void json_iter_array(struct json_iter *it, const char *json, const char *key);
char *json_iter_next_str(struct json_iter *it);                        /* malloc'd or NULL at end */
const char *json_iter_next_obj(struct json_iter *it, size_t *len);     /* raw object text */

#endif
