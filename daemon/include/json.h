/* A growable JSON text builder for replies and JSON-lines logs. Errors (OOM) are
 * sticky: check jb->failed once at the end. */
#ifndef PROXYD_JSON_H
#define PROXYD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jbuf {
    char *s;                    /* owned, NUL-terminated */
    size_t len, cap;
    bool failed;
    bool need_comma;
};

void jb_init(struct jbuf *jb);
/* The finished text (caller frees), or NULL after a failure (everything freed). */
char *jb_take(struct jbuf *jb);
void jb_free(struct jbuf *jb);
void jb_raw(struct jbuf *jb, const char *s, size_t n);
void jb_obj_open(struct jbuf *jb);          /* { */
void jb_obj_close(struct jbuf *jb);         /* } */
void jb_arr_open(struct jbuf *jb);          /* [ */
void jb_arr_close(struct jbuf *jb);         /* ] */
void jb_key(struct jbuf *jb, const char *key);
void jb_str(struct jbuf *jb, const char *s);            /* NULL -> null */
void jb_strn(struct jbuf *jb, const char *s, size_t n);
void jb_u64(struct jbuf *jb, uint64_t v);
void jb_i64(struct jbuf *jb, int64_t v);
void jb_bool(struct jbuf *jb, bool v);
void jb_double(struct jbuf *jb, double v);
/* key + value shorthands */
void jb_kstr(struct jbuf *jb, const char *key, const char *s);
void jb_ku64(struct jbuf *jb, const char *key, uint64_t v);
void jb_kbool(struct jbuf *jb, const char *key, bool v);
/* Append s escaped for a JSON string (no quotes) to out. */
void json_escape(struct jbuf *jb, const char *s, size_t n);

#endif
