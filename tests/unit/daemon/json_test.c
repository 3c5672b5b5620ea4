/* JSON builder: escaping, nesting, invalid UTF-8. */
#include <stdlib.h>

#include "json.h"
#include "tap.h"

static char *esc(const char *s, size_t n)
{
    struct jbuf jb;
    jb_init(&jb);
    jb_strn(&jb, s, n);
    return jb.s;
}

int main(void)
{
    char *r;

    r = esc("a\"b\\c\n\t\x01", 8);
    is_str(r, "\"a\\\"b\\\\c\\n\\t\\u0001\"", "quotes, backslash, controls");
    free(r);
    r = esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14);
    is_str(r, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "valid UTF-8 passes through");
    free(r);
    r = esc("a\xff" "b\xc3", 4);
    is_str(r, "\"a\\ufffdb\\ufffd\"", "invalid and truncated sequences become U+FFFD");
    free(r);
    r = esc("\xc0\xaf\xed\xa0\x80", 5);
    is_str(r, "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"", "overlong and surrogate forms rejected bytewise");
    free(r);

    struct jbuf jb;
    jb_init(&jb);
    jb_obj_open(&jb);
    jb_kbool(&jb, "ok", true);
    jb_key(&jb, "v");
    jb_arr_open(&jb);
    jb_u64(&jb, 1);
    jb_str(&jb, NULL);
    jb_obj_open(&jb);
    jb_ku64(&jb, "n", 18446744073709551615ull);
    jb_obj_close(&jb);
    jb_arr_close(&jb);
    jb_kstr(&jb, "s", "x");
    jb_obj_close(&jb);
    is_str(jb.s, "{\"ok\":true,\"v\":[1,null,{\"n\":18446744073709551615}],\"s\":\"x\"}", "nesting and commas");
    ok(!jb.failed, "no failure");
    jb_free(&jb);
    return done_testing();
}
