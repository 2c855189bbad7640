/* json_schema: JSON Schema to GBNF (see json_schema.h). Each schema node becomes one rule
 * rN; fixed rules (value, string, number, date...) are written once at the top. Keywords are
 * checked against a list: an unknown or unsupported one stops the conversion with its path. */
#include "json_schema.h"

#include "grammar.h"
#include "json_regex.h"
#include "strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INT_LIMIT 9999999999999999LL /* 16 digits: what `integer` below admits */
#define MAX_ITEMS 1000

#define FIXED_RULES \
    "ws ::= \" \"?\n" \
    "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n" \
    "object ::= \"{\" ws ( string ws \":\" ws value ( ws \",\" ws string ws \":\" ws value )* " \
    ")? ws \"}\"\n" \
    "array ::= \"[\" ws ( value ( ws \",\" ws value )* )? ws \"]\"\n" \
    "string ::= \"\\\"\" char* \"\\\"\"\n" \
    "char ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n" \
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n" \
    "number ::= integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?\n" \
    "frac ::= \".\" [0-9]{1,16}\n" \
    "nzfrac ::= \".\" \"0\"{0,15} [1-9] [0-9]{0,15}\n" \
    "zfrac ::= \".\" \"0\"{1,16}\n" \
    "boolean ::= \"true\" | \"false\"\n" \
    "null ::= \"null\"\n" \
    "date ::= [1-9] [0-9]{3} \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" [1-9] | [12] " \
    "[0-9] | \"3\" [01] ) | ( \"0\" [469] | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) " \
    "| \"02-\" ( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] ) )\n" \
    "time ::= ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} " \
    ")? ( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )\n" \
    "hex ::= [0-9a-f]\n" \
    "uuid ::= hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}\n"

static const char fixed_rules[] = FIXED_RULES;

const char *json_object_gbnf(void) { return "root ::= object\n" FIXED_RULES; }

/* --------------------------------------------------------------- string builder */


/* A GBNF string literal matching exactly the bytes of text. */
static void sb_literal(strbuf *b, const char *text) {
    strbuf_add(b, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') strbuf_add(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) strbuf_add(b, "\\x%02x", *p);
        else strbuf_add(b, "%c", *p);
    }
    strbuf_add(b, "\"");
}

/* The literal of a JSON value as cJSON prints it compactly. */
static bool sb_json_literal(strbuf *b, const cJSON *v) {
    char *t = cJSON_PrintUnformatted(v);
    if (!t) return false;
    sb_literal(b, t);
    free(t);
    return true;
}

/* ------------------------------------------------------------------- converter */

typedef struct {
    strbuf rules;
    int n_rules;
    const cJSON *root;
    struct {
        const cJSON *node;
        int rule;
    } memo[256];
    int n_memo;
    bool strict, failed;
    char *err, *path;
    size_t errlen, pathlen;
} conv;

static int fail(conv *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(conv *c, const char *path, const char *fmt, ...) {
    if (c->failed) return -1;
    c->failed = true;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->err && c->errlen) snprintf(c->err, c->errlen, "%s at %s", msg, path);
    if (c->path && c->pathlen) snprintf(c->path, c->pathlen, "%s", path);
    return -1;
}

static const char *const annotations[] = {"title", "description", "$schema", "$id", "$comment",
                                          "default", "examples", "deprecated", "readOnly",
                                          "writeOnly", "$defs", "definitions", NULL};
static const char *const handled[] = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
                                      "properties", "required", "additionalProperties", "items",
                                      "prefixItems", "minItems", "maxItems", "minLength",
                                      "maxLength", "format", "pattern", "minimum", "maximum",
                                      "exclusiveMinimum", "exclusiveMaximum", NULL};

static bool in_list(const char *const *list, const char *k) {
    for (; *list; list++)
        if (strcmp(*list, k) == 0) return true;
    return false;
}

static const cJSON *get(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int gen(conv *c, const cJSON *node, const char *path);

/* A non-negative integer keyword (absent: dflt); -2 after failing. */
static long long get_count(conv *c, const cJSON *node, const char *k, long long dflt,
                           const char *path) {
    const cJSON *v = get(node, k);
    if (!v) return dflt;
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%s", path, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble))
        return fail(c, sub, "'%s' must be a non-negative integer", k), -2;
    if (v->valuedouble > MAX_ITEMS)
        return fail(c, sub, "'%s' over %d is not supported", k, MAX_ITEMS), -2;
    return (long long)v->valuedouble;
}

static int new_rule(conv *c) { return c->n_rules++; }

static void emit(conv *c, int rule, const strbuf *body) {
    if (body->oom) c->rules.oom = true;
    strbuf_add(&c->rules, "r%d ::= %s\n", rule, body->s ? body->s : "\"\"");
}

/* Whether JSON value v has JSON Schema type t. */
static bool has_type(const cJSON *v, const char *t) {
    if (strcmp(t, "object") == 0) return cJSON_IsObject(v);
    if (strcmp(t, "array") == 0) return cJSON_IsArray(v);
    if (strcmp(t, "string") == 0) return cJSON_IsString(v);
    if (strcmp(t, "boolean") == 0) return cJSON_IsBool(v);
    if (strcmp(t, "null") == 0) return cJSON_IsNull(v);
    if (strcmp(t, "number") == 0) return cJSON_IsNumber(v);
    if (strcmp(t, "integer") == 0)
        return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
               fabs(v->valuedouble) <= (double)INT_LIMIT;
    return false;
}

/* --- integers in a range, digit by digit --- */

/* x, y: decimal strings of the same length n, x <= y. */
static void fixed_range(strbuf *b, const char *x, const char *y, int n) {
    if (n == 1) {
        strbuf_add(b, "[%c-%c]", x[0], y[0]);
        return;
    }
    if (x[0] == y[0]) {
        strbuf_add(b, "\"%c\" ", x[0]);
        fixed_range(b, x + 1, y + 1, n - 1);
        return;
    }
    bool xz = true, y9 = true;
    for (int i = 1; i < n; i++) xz = xz && x[i] == '0', y9 = y9 && y[i] == '9';
    char lo = x[0], hi = y[0];
    char nines[24], zeros[24];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    bool first = true;
    strbuf_add(b, "( ");
    if (!xz) {
        strbuf_add(b, "\"%c\" ", x[0]);
        fixed_range(b, x + 1, nines, n - 1);
        lo++;
        first = false;
    }
    if (!y9) hi--;
    if (lo <= hi) {
        strbuf_add(b, "%s[%c-%c] [0-9]{%d}", first ? "" : " | ", lo, hi, n - 1);
        first = false;
    }
    if (!y9) {
        strbuf_add(b, "%s\"%c\" ", first ? "" : " | ", y[0]);
        fixed_range(b, zeros, y + 1, n - 1);
    }
    strbuf_add(b, " )");
}

/* 0 <= a <= b <= INT_LIMIT */
static void uint_range(strbuf *b, long long a, long long bb) {
    char x[24], y[24];
    int da = snprintf(x, sizeof x, "%lld", a), db = snprintf(y, sizeof y, "%lld", bb);
    if (da == db) {
        fixed_range(b, x, y, da);
        return;
    }
    strbuf_add(b, "( ");
    char top[24], bottom[24];
    memset(top, '9', sizeof top);
    fixed_range(b, x, top, da);
    for (int d = da + 1; d < db; d++) strbuf_add(b, " | [1-9] [0-9]{%d}", d - 1);
    bottom[0] = '1';
    memset(bottom + 1, '0', sizeof bottom - 1);
    strbuf_add(b, " | ");
    fixed_range(b, bottom, y, db);
    strbuf_add(b, " )");
}

static int gen_integer(conv *c, const cJSON *node, const char *path, strbuf *b) {
    long long lo = -INT_LIMIT, hi = INT_LIMIT;
    const char *keys[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    bool any = false;
    for (int i = 0; i < 4; i++) {
        const cJSON *v = get(node, keys[i]);
        if (!v) continue;
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", path, keys[i]);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return fail(c, sub, "'%s' must be a number", keys[i]);
        double d = v->valuedouble;
        if (fabs(d) > (double)INT_LIMIT)
            return fail(c, sub, "'%s' beyond 16 digits is not supported", keys[i]);
        any = true;
        if (i == 0) lo = lo > (long long)ceil(d) ? lo : (long long)ceil(d);
        if (i == 1) lo = lo > (long long)floor(d) + 1 ? lo : (long long)floor(d) + 1;
        if (i == 2) hi = hi < (long long)floor(d) ? hi : (long long)floor(d);
        if (i == 3) hi = hi < (long long)ceil(d) - 1 ? hi : (long long)ceil(d) - 1;
    }
    if (!any) {
        strbuf_add(b, "integer");
        return 0;
    }
    if (lo > hi) return fail(c, path, "no integer satisfies minimum and maximum");
    strbuf_add(b, "( ");
    bool first = true;
    if (lo < 0) {
        long long top = hi < -1 ? hi : -1; /* negatives in [lo, top] */
        strbuf_add(b, "\"-\" ");
        uint_range(b, -top, -lo);
        first = false;
    }
    if (hi >= 0) {
        if (!first) strbuf_add(b, " | ");
        uint_range(b, lo > 0 ? lo : 0, hi);
    }
    strbuf_add(b, " )");
    return 0;
}

/* Alternatives for a magnitude m = I[.F] in [lo, hi] (hi < 0: no upper bound; exclusive ends
 * where elo/ehi), integers 0 <= lo, hi <= INT_LIMIT; "I" alone, "I" frac (any), "I" nzfrac
 * (above I) or "I" zfrac (equal to I). No exponents: tighter than JSON, always valid. */
static void magnitude_range(strbuf *b, long long lo, bool elo, long long hi, bool ehi, int *n) {
    long long top = hi < 0 ? INT_LIMIT : hi - 1; /* integer parts with any fraction */
    long long from = lo;
    if (hi >= 0 && lo > hi) return;
    if (hi >= 0 && hi == lo) {
        if (!elo && !ehi) strbuf_add(b, "%s\"%lld\" zfrac?", (*n)++ ? " | " : "", lo);
        return;
    }
    if (elo) { /* m > lo: lo only with a fraction that is not zero */
        strbuf_add(b, "%s\"%lld\" nzfrac", (*n)++ ? " | " : "", lo);
        from = lo + 1;
    }
    if (from <= top) {
        strbuf_add(b, "%s", (*n)++ ? " | " : "");
        uint_range(b, from, top);
        strbuf_add(b, " frac?");
    }
    if (hi >= 0 && !ehi) strbuf_add(b, "%s\"%lld\" zfrac?", (*n)++ ? " | " : "", hi);
}

/* type number with minimum/maximum/exclusive bounds, when the bounds are whole numbers. */
static int gen_number(conv *c, const cJSON *node, const char *path, strbuf *b) {
    const char *keys[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    bool has_lo = false, has_hi = false, elo = false, ehi = false;
    long long lo = 0, hi = 0;
    for (int i = 0; i < 4; i++) {
        const cJSON *v = get(node, keys[i]);
        if (!v) continue;
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", path, keys[i]);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return fail(c, sub, "'%s' must be a number", keys[i]);
        double d = v->valuedouble;
        if (d != floor(d))
            return fail(c, sub, "'%s' with a fraction on a number is not supported (whole "
                        "numbers are)", keys[i]);
        if (fabs(d) >= (double)INT_LIMIT)
            return fail(c, sub, "'%s' beyond 16 digits is not supported", keys[i]);
        long long x = (long long)d;
        bool ex = i == 1 || i == 3;
        if (i < 2 && (!has_lo || x > lo || (x == lo && ex))) lo = x, elo = ex, has_lo = true;
        if (i >= 2 && (!has_hi || x < hi || (x == hi && ex))) hi = x, ehi = ex, has_hi = true;
    }
    if (!has_lo && !has_hi) {
        strbuf_add(b, "number");
        return 0;
    }
    int n = 0;
    strbuf pos = {0}, neg = {0};
    if (!has_hi || hi >= 0) /* x >= 0 */
        magnitude_range(&pos, has_lo && lo > 0 ? lo : 0, has_lo && lo >= 0 && elo,
                        has_hi ? hi : -1, ehi, &n);
    int n_pos = n;
    n = 0;
    if (!has_lo || lo < 0) /* x < 0: its magnitude above 0, at least -hi, at most -lo */
        magnitude_range(&neg, has_hi && hi < 0 ? -hi : 0, has_hi && hi < 0 ? ehi : true,
                        has_lo ? -lo : -1, elo, &n);
    if (pos.oom || neg.oom) b->oom = true;
    if (n_pos + n == 0) {
        free(pos.s);
        free(neg.s);
        return fail(c, path, "no number satisfies the bounds");
    }
    strbuf_add(b, "( %s%s%s%s%s )", n_pos ? pos.s : "", n_pos && n ? " | " : "", n ? "\"-\" ( " : "",
           n ? neg.s : "", n ? " )" : "");
    free(pos.s);
    free(neg.s);
    return 0;
}

/* A string that matches `pattern` (json_regex.h), alone: with a length or format it is
 * refused, as the two cannot be combined in one grammar here. */
static int gen_pattern(conv *c, const cJSON *node, const cJSON *pat, const char *path,
                       strbuf *b) {
    char sub[512], err[256];
    snprintf(sub, sizeof sub, "%s/pattern", path);
    if (!cJSON_IsString(pat)) return fail(c, sub, "'pattern' must be a string");
    if (get(node, "format") || get(node, "minLength") || get(node, "maxLength"))
        return fail(c, sub, "'pattern' together with format, minLength or maxLength is not "
                            "supported");
    char *expr = json_regex_gbnf(pat->valuestring, err, sizeof err);
    if (!expr) return fail(c, sub, "%s%s", strcmp(err, "out of memory") ? "pattern: " : "", err);
    strbuf_add(b, "\"\\\"\" %s \"\\\"\"", expr);
    free(expr);
    return 0;
}

static int gen_string(conv *c, const cJSON *node, const char *path, strbuf *b) {
    const cJSON *f = get(node, "format"), *pat = get(node, "pattern");
    if (pat) return gen_pattern(c, node, pat, path, b);
    long long mn = get_count(c, node, "minLength", 0, path);
    long long mx = get_count(c, node, "maxLength", -1, path);
    if (mn == -2 || mx == -2) return -1;
    if (f) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/format", path);
        const char *fs = cJSON_IsString(f) ? f->valuestring : "";
        const char *rule = strcmp(fs, "date") == 0       ? "date"
                           : strcmp(fs, "time") == 0     ? "time"
                           : strcmp(fs, "date-time") == 0 ? "date \"T\" time"
                           : strcmp(fs, "uuid") == 0     ? "uuid"
                                                         : NULL;
        if (!rule) return fail(c, sub, "string format '%s' is not supported", fs);
        if (get(node, "minLength") || get(node, "maxLength"))
            return fail(c, path, "minLength/maxLength together with format are not supported");
        strbuf_add(b, "\"\\\"\" %s \"\\\"\"", rule);
        return 0;
    }
    if (mx >= 0 && mx < mn) return fail(c, path, "maxLength is below minLength");
    if (mx >= 0) strbuf_add(b, "\"\\\"\" char{%lld,%lld} \"\\\"\"", mn, mx);
    else if (mn > 0) strbuf_add(b, "\"\\\"\" char{%lld,} \"\\\"\"", mn);
    else strbuf_add(b, "string");
    return 0;
}

/* A rule for the schema at key k of node (a schema), or for any value when absent. */
static int sub_rule(conv *c, const cJSON *v, const char *path, const char *suffix) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%s", path, suffix);
    return gen(c, v, sub);
}

static int gen_object(conv *c, const cJSON *node, const char *path, strbuf *b) {
    const cJSON *props = get(node, "properties"), *req = get(node, "required"),
                *ap = get(node, "additionalProperties");
    char sub[512];
    if (props && !cJSON_IsObject(props))
        return fail(c, path, "'properties' must be an object");
    if (req && !cJSON_IsArray(req)) return fail(c, path, "'required' must be an array");
    int n = props ? cJSON_GetArraySize(props) : 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, req) {
        if (!cJSON_IsString(it)) return fail(c, path, "'required' entries must be strings");
        if (!props || !get(props, it->valuestring)) {
            snprintf(sub, sizeof sub, "%s/required", path);
            return fail(c, sub, "required property '%s' is not among 'properties'",
                        it->valuestring);
        }
    }
    bool extras = ap && !cJSON_IsFalse(ap);
    if (extras && n > 0) {
        snprintf(sub, sizeof sub, "%s/additionalProperties", path);
        return fail(c, sub, "additionalProperties beside 'properties' is not supported");
    }
    if (extras) { /* a map: any keys, values of one schema */
        int vr = cJSON_IsTrue(ap) ? -1 : sub_rule(c, ap, path, "additionalProperties");
        if (c->failed) return -1;
        char val[32];
        snprintf(val, sizeof val, vr < 0 ? "value" : "r%d", vr);
        strbuf_add(b, "\"{\" ws ( string ws \":\" ws %s ( ws \",\" ws string ws \":\" ws %s )* )? ws "
                  "\"}\"", val, val);
        return 0;
    }
    /* kv[i]: "key" ws ":" ws value_i; first[i]: the members from i on when none came before;
     * rest: from i on after one did (each optional one behind its comma). */
    int *kv = calloc((size_t)(n ? n : 1), sizeof *kv);
    bool *must = calloc((size_t)(n ? n : 1), sizeof *must);
    if (!kv || !must) {
        free(kv);
        free(must);
        return fail(c, path, "out of memory");
    }
    int i = 0;
    cJSON_ArrayForEach(it, props) {
        must[i] = false;
        const cJSON *r;
        cJSON_ArrayForEach(r, req) must[i] = must[i] || strcmp(r->valuestring, it->string) == 0;
        snprintf(sub, sizeof sub, "%s/properties/%s", path, it->string);
        int vr = gen(c, it, sub);
        if (vr < 0) break;
        kv[i] = new_rule(c);
        strbuf kb = {0};
        cJSON *key = cJSON_CreateString(it->string);
        if (!key || !sb_json_literal(&kb, key)) kb.oom = true;
        cJSON_Delete(key);
        strbuf_add(&kb, " ws \":\" ws r%d", vr);
        emit(c, kv[i], &kb);
        free(kb.s);
        i++;
    }
    if (c->failed) {
        free(kv);
        free(must);
        return -1;
    }
    int next_first = -1; /* first[i+1] */
    for (i = n - 1; i >= 0; i--) {
        strbuf fb = {0};
        strbuf_add(&fb, "r%d", kv[i]);
        for (int j = i + 1; j < n; j++)
            strbuf_add(&fb, must[j] ? " ws \",\" ws r%d" : " ( ws \",\" ws r%d )?", kv[j]);
        if (!must[i]) strbuf_add(&fb, next_first >= 0 ? " | r%d" : " | \"\"", next_first);
        int fr = new_rule(c);
        emit(c, fr, &fb);
        free(fb.s);
        next_first = fr;
    }
    if (next_first >= 0) strbuf_add(b, "\"{\" ws r%d ws \"}\"", next_first);
    else strbuf_add(b, "\"{\" ws \"}\"");
    free(kv);
    free(must);
    return 0;
}

static int gen_array(conv *c, const cJSON *node, const char *path, strbuf *b) {
    const cJSON *items = get(node, "items"), *prefix = get(node, "prefixItems");
    char sub[512];
    if (prefix && !cJSON_IsArray(prefix)) return fail(c, path, "'prefixItems' must be an array");
    if (cJSON_IsArray(items)) {
        snprintf(sub, sizeof sub, "%s/items", path);
        return fail(c, sub, "'items' as an array (draft 4 tuples) is not supported; use "
                            "'prefixItems'");
    }
    long long mn = get_count(c, node, "minItems", 0, path);
    long long mx = get_count(c, node, "maxItems", -1, path);
    if (mn == -2 || mx == -2) return -1;
    int k = prefix ? cJSON_GetArraySize(prefix) : 0;
    if (k > MAX_ITEMS) return fail(c, path, "over %d prefixItems", MAX_ITEMS);
    bool no_more = items && cJSON_IsFalse(items);
    if (no_more && (mx < 0 || mx > k)) mx = k;
    if (mx >= 0 && mx < mn) return fail(c, path, "maxItems is below minItems (or prefixItems)");
    int item_rule = -1; /* the schema of elements after the prefix; -1: any value */
    if (items && !cJSON_IsTrue(items) && !no_more) {
        item_rule = sub_rule(c, items, path, "items");
        if (item_rule < 0) return -1;
    }
    int *pr = calloc((size_t)(k ? k : 1), sizeof *pr);
    if (!pr) return fail(c, path, "out of memory");
    for (int i = 0; i < k; i++) {
        snprintf(sub, sizeof sub, "%s/prefixItems/%d", path, i);
        pr[i] = gen(c, cJSON_GetArrayItem(prefix, i), sub);
        if (pr[i] < 0) {
            free(pr);
            return -1;
        }
    }
    char item_name[32];
    snprintf(item_name, sizeof item_name, item_rule < 0 ? "value" : "r%d", item_rule);
#define ELEM(i) ((i) < k ? pr[i] : -1)
    /* required elements 0 .. mn-1, then the optional tail (nested, since each needs the ones
     * before it) */
    strbuf_add(b, "\"[\" ws");
    for (long long i = 0; i < mn; i++) {
        if (i > 0) strbuf_add(b, " ws \",\" ws");
        if (ELEM(i) >= 0) strbuf_add(b, " r%d", ELEM(i));
        else strbuf_add(b, " %s", item_name);
    }
    int opened = 0;
    long long i = mn;
    for (; i < k && (mx < 0 || i < mx); i++, opened++)
        strbuf_add(b, " ( %sr%d", i > 0 ? "ws \",\" ws " : "", pr[i]);
    if (mx < 0 || i < mx) { /* elements past the prefix */
        long long left = mx < 0 ? -1 : mx - i;
        if (i == 0) {
            strbuf_add(b, " ( %s ( ws \",\" ws %s )", item_name, item_name);
            if (left < 0) strbuf_add(b, "* )?");
            else strbuf_add(b, "{0,%lld} )?", left - 1);
        } else {
            strbuf_add(b, " ( ws \",\" ws %s )", item_name);
            if (left < 0) strbuf_add(b, "*");
            else strbuf_add(b, "{0,%lld}", left);
        }
    }
    for (int j = 0; j < opened; j++) strbuf_add(b, " )?");
    strbuf_add(b, " ws \"]\"");
#undef ELEM
    free(pr);
    return 0;
}

static int gen_typed(conv *c, const cJSON *node, const char *t, const char *path, strbuf *b) {
    if (strcmp(t, "object") == 0) return gen_object(c, node, path, b);
    if (strcmp(t, "array") == 0) return gen_array(c, node, path, b);
    if (strcmp(t, "string") == 0) return gen_string(c, node, path, b);
    if (strcmp(t, "integer") == 0) return gen_integer(c, node, path, b);
    if (strcmp(t, "number") == 0) return gen_number(c, node, path, b);
    if (strcmp(t, "boolean") == 0) {
        strbuf_add(b, "boolean");
        return 0;
    }
    if (strcmp(t, "null") == 0) {
        strbuf_add(b, "null");
        return 0;
    }
    char sub[512];
    snprintf(sub, sizeof sub, "%s/type", path);
    return fail(c, sub, "unknown type '%s'", t);
}

static const cJSON *resolve_ref(conv *c, const char *ref, const char *path) {
    const char *name = NULL;
    const cJSON *defs = NULL;
    if (strcmp(ref, "#") == 0) return c->root;
    if (strncmp(ref, "#/$defs/", 8) == 0) defs = get(c->root, "$defs"), name = ref + 8;
    else if (strncmp(ref, "#/definitions/", 14) == 0)
        defs = get(c->root, "definitions"), name = ref + 14;
    const cJSON *t = defs && name ? get(defs, name) : NULL;
    if (!t) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/$ref", path);
        fail(c, sub, "$ref '%s' is not supported (only #, #/$defs/NAME, #/definitions/NAME "
                     "that exist)", ref);
    }
    return t;
}

/* --- oneOf: enforced only where no value can match two branches --- */

enum { T_NULL = 1, T_BOOL = 2, T_OBJECT = 4, T_ARRAY = 8, T_STRING = 16, T_INT = 32,
       T_FRAC = 64, T_ANY = 127 };

static unsigned value_type(const cJSON *v) {
    if (cJSON_IsNull(v)) return T_NULL;
    if (cJSON_IsBool(v)) return T_BOOL;
    if (cJSON_IsObject(v)) return T_OBJECT;
    if (cJSON_IsArray(v)) return T_ARRAY;
    if (cJSON_IsString(v)) return T_STRING;
    return v->valuedouble == floor(v->valuedouble) ? T_INT : T_FRAC;
}

static unsigned type_name_mask(const char *t) {
    return strcmp(t, "null") == 0      ? T_NULL
           : strcmp(t, "boolean") == 0 ? T_BOOL
           : strcmp(t, "object") == 0  ? T_OBJECT
           : strcmp(t, "array") == 0   ? T_ARRAY
           : strcmp(t, "string") == 0  ? T_STRING
           : strcmp(t, "integer") == 0 ? T_INT
           : strcmp(t, "number") == 0  ? T_INT | T_FRAC
                                       : T_ANY;
}

/* The JSON types schema node may accept (T_ANY when unsure); *values gets its const/enum list
 * (a const alone: the const itself), else NULL. */
static unsigned schema_types(conv *c, const cJSON *node, const cJSON **values, int depth) {
    *values = NULL;
    if (!cJSON_IsObject(node) || depth > 32) return T_ANY;
    const cJSON *ref = get(node, "$ref");
    if (cJSON_IsString(ref)) {
        const cJSON *t = NULL;
        if (strncmp(ref->valuestring, "#/$defs/", 8) == 0)
            t = get(get(c->root, "$defs"), ref->valuestring + 8);
        else if (strncmp(ref->valuestring, "#/definitions/", 14) == 0)
            t = get(get(c->root, "definitions"), ref->valuestring + 14);
        return t ? schema_types(c, t, values, depth + 1) : T_ANY;
    }
    const cJSON *cst = get(node, "const"), *en = get(node, "enum");
    if (cst) {
        *values = cst;
        return value_type(cst);
    }
    if (cJSON_IsArray(en)) {
        unsigned m = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, en) m |= value_type(v);
        *values = en;
        return m;
    }
    const cJSON *list = get(node, "anyOf") ? get(node, "anyOf") : get(node, "oneOf");
    if (cJSON_IsArray(list)) {
        unsigned m = 0;
        const cJSON *v, *ignored;
        cJSON_ArrayForEach(v, list) m |= schema_types(c, v, &ignored, depth + 1);
        return m;
    }
    const cJSON *type = get(node, "type");
    if (cJSON_IsString(type)) return type_name_mask(type->valuestring);
    if (cJSON_IsArray(type)) {
        unsigned m = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, type) m |= cJSON_IsString(v) ? type_name_mask(v->valuestring) : T_ANY;
        return m;
    }
    if (get(node, "properties") || get(node, "required") || get(node, "additionalProperties"))
        return T_OBJECT;
    if (get(node, "items") || get(node, "prefixItems")) return T_ARRAY;
    return T_ANY;
}

/* A list of values: const (one value) or enum (an array). */
static bool values_meet(const cJSON *a, const cJSON *b) {
    const cJSON *x = cJSON_IsArray(a) ? a->child : a;
    for (; x; x = cJSON_IsArray(a) ? x->next : NULL) {
        const cJSON *y = cJSON_IsArray(b) ? b->child : b;
        for (; y; y = cJSON_IsArray(b) ? y->next : NULL)
            if (cJSON_Compare(x, y, true)) return true;
    }
    return false;
}

/* Whether no value can match two branches of list, as far as types and value lists tell. */
static bool branches_disjoint(conv *c, const cJSON *list) {
    int n = cJSON_GetArraySize(list);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const cJSON *va, *vb;
            unsigned a = schema_types(c, cJSON_GetArrayItem(list, i), &va, 0);
            unsigned b = schema_types(c, cJSON_GetArrayItem(list, j), &vb, 0);
            if (!(a & b)) continue;
            if (va && vb && !values_meet(va, vb)) continue;
            return false;
        }
    return true;
}

/* const or enum: the values as JSON literals, only those of the schema's type when it names
 * one. */
static int gen_values(conv *c, const cJSON *node, const char *path, strbuf *b) {
    const cJSON *cst = get(node, "const"), *en = get(node, "enum"), *type = get(node, "type");
    if (en && (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0))
        return fail(c, path, "'enum' must be a non-empty array");
    int n = 0;
    for (const cJSON *v = cst ? cst : en->child; v; v = cst ? NULL : v->next) {
        if (cJSON_IsString(type) && !has_type(v, type->valuestring)) continue;
        if (n++) strbuf_add(b, " | ");
        if (!sb_json_literal(b, v)) b->oom = true;
    }
    if (n == 0) return fail(c, path, "no 'enum'/'const' value has the schema's type");
    return 0;
}

/* anyOf, oneOf (branches that cannot overlap) or allOf (of one schema): an alternation of the
 * branches' rules. */
static int gen_combinator(conv *c, const cJSON *node, const char *path, strbuf *b) {
    const cJSON *any = get(node, "anyOf"), *one = get(node, "oneOf"), *all = get(node, "allOf");
    const cJSON *list = any ? any : one ? one : all, *k;
    const char *kw = any ? "anyOf" : one ? "oneOf" : "allOf";
    char sub[512];
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return fail(c, path, "'%s' must be a non-empty array", kw);
    if (all && cJSON_GetArraySize(list) > 1) {
        snprintf(sub, sizeof sub, "%s/allOf", path);
        return fail(c, sub, "'allOf' with more than one schema is not supported");
    }
    cJSON_ArrayForEach(k, node) {
        if (in_list(annotations, k->string) || strcmp(k->string, kw) == 0) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, k->string);
        return fail(c, sub, "'%s' beside '%s' is not supported", k->string, kw);
    }
    if (one && !branches_disjoint(c, one)) {
        snprintf(sub, sizeof sub, "%s/oneOf", path);
        return fail(c, sub, "'oneOf' whose branches may overlap cannot be enforced (a value that "
                            "matches two is invalid); branches of different types or values are "
                            "supported, or use anyOf");
    }
    int i = 0;
    cJSON_ArrayForEach(k, list) {
        snprintf(sub, sizeof sub, "%s/%s/%d", path, kw, i);
        int r = gen(c, k, sub);
        if (r < 0) return -1;
        strbuf_add(b, "%sr%d", i++ ? " | " : "", r);
    }
    return 0;
}

/* "type": one name, or an alternation over a list of names. */
static int gen_type(conv *c, const cJSON *node, const cJSON *type, const char *path, strbuf *b) {
    char sub[512];
    if (cJSON_IsString(type)) return gen_typed(c, node, type->valuestring, path, b);
    snprintf(sub, sizeof sub, "%s/type", path);
    if (!cJSON_IsArray(type) || cJSON_GetArraySize(type) == 0)
        return fail(c, sub, "'type' must be a string or a non-empty array of strings");
    int i = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, type) {
        if (!cJSON_IsString(k)) return fail(c, sub, "'type' entries must be strings");
        if (i++) strbuf_add(b, " | ");
        strbuf_add(b, "( ");
        if (gen_typed(c, node, k->valuestring, path, b) < 0) return -1;
        strbuf_add(b, " )");
    }
    return 0;
}

/* A schema without combinators, const or enum: by its type, else by the keywords it has. */
static int gen_plain(conv *c, const cJSON *node, const char *path, strbuf *b) {
    const cJSON *type = get(node, "type");
    if (type) return gen_type(c, node, type, path, b);
    if (get(node, "properties") || get(node, "required") || get(node, "additionalProperties"))
        return gen_object(c, node, path, b);
    if (get(node, "items") || get(node, "prefixItems") || get(node, "minItems") ||
        get(node, "maxItems"))
        return gen_array(c, node, path, b);
    if (get(node, "minLength") || get(node, "maxLength") || get(node, "format") ||
        get(node, "pattern"))
        return gen_string(c, node, path, b);
    if (get(node, "minimum") || get(node, "maximum") || get(node, "exclusiveMinimum") ||
        get(node, "exclusiveMaximum"))
        return fail(c, path, "numeric bounds without a 'type' are not supported");
    strbuf_add(b, "value");
    return 0;
}

/* The rule for one schema node (memoised, so recursive $refs end), or -1 with c->failed. */
static int gen(conv *c, const cJSON *node, const char *path) {
    if (c->failed) return -1;
    if (cJSON_IsTrue(node)) {
        int r = new_rule(c);
        strbuf_add(&c->rules, "r%d ::= value\n", r);
        return r;
    }
    if (cJSON_IsFalse(node)) return fail(c, path, "the schema 'false' matches nothing");
    if (!cJSON_IsObject(node)) return fail(c, path, "a schema must be an object or a boolean");
    for (int i = 0; i < c->n_memo; i++)
        if (c->memo[i].node == node) return c->memo[i].rule;
    const cJSON *k;
    char sub[512];
    cJSON_ArrayForEach(k, node) {
        if (in_list(annotations, k->string) || in_list(handled, k->string)) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, k->string);
        return fail(c, sub, "JSON Schema keyword '%s' is not supported", k->string);
    }
    int rule = new_rule(c);
    if (c->n_memo == (int)(sizeof c->memo / sizeof *c->memo))
        return fail(c, path, "schema too large (over %d nodes)", c->n_memo);
    c->memo[c->n_memo].node = node;
    c->memo[c->n_memo].rule = rule;
    c->n_memo++;
    strbuf b = {0};
    const cJSON *ref = get(node, "$ref"), *cst = get(node, "const"), *en = get(node, "enum"),
                *any = get(node, "anyOf"), *one = get(node, "oneOf"), *all = get(node, "allOf");
    int n_comb = !!ref + !!cst + !!en + !!any + !!one + !!all;
    if (n_comb > 1) {
        fail(c, path, "combining $ref, const, enum, anyOf, oneOf and allOf is not supported");
    } else if (ref && !cJSON_IsString(ref)) {
        fail(c, path, "'$ref' must be a string");
    } else if (ref) {
        const cJSON *t = resolve_ref(c, ref->valuestring, path);
        if (t) strbuf_add(&b, "r%d", gen(c, t, ref->valuestring));
    } else if (cst || en) {
        gen_values(c, node, path, &b);
    } else if (any || one || all) {
        gen_combinator(c, node, path, &b);
    } else {
        gen_plain(c, node, path, &b);
    }
    if (!c->failed) emit(c, rule, &b);
    free(b.s);
    return c->failed ? -1 : rule;
}

char *json_schema_gbnf_rules(const cJSON *schema, bool strict, int *next_rule, int *top,
                            char *err, size_t errlen, char *path, size_t pathlen) {
    conv c = {.root = schema, .strict = strict, .err = err, .errlen = errlen, .path = path,
              .pathlen = pathlen, .n_rules = *next_rule};
    if (err && errlen) err[0] = 0;
    if (path && pathlen) path[0] = 0;
    int r = gen(&c, schema, "#");
    if (r < 0 || c.rules.oom) {
        if (!c.failed) fail(&c, "#", "out of memory");
        free(c.rules.s);
        return NULL;
    }
    *next_rule = c.n_rules;
    *top = r;
    return c.rules.s;
}

const char *json_schema_fixed_gbnf(void) { return fixed_rules; }

char *json_schema_to_gbnf(const cJSON *schema, bool strict, char *err, size_t errlen,
                          char *path, size_t pathlen) {
    int next = 0, r;
    char *rules = json_schema_gbnf_rules(schema, strict, &next, &r, err, errlen, path, pathlen);
    if (!rules) return NULL;
    strbuf out = {0};
    strbuf_add(&out, "root ::= r%d\n%s%s", r, fixed_rules, rules);
    free(rules);
    if (out.oom) {
        free(out.s);
        if (err && errlen) snprintf(err, errlen, "out of memory at #");
        if (path && pathlen) snprintf(path, pathlen, "#");
        return NULL;
    }
    return out.s;
}

/* ------------------------------------------------------------ request fields */

static int req_fail(char *param, size_t paramlen, const char *p, char *msg, size_t msglen,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int req_fail(char *param, size_t paramlen, const char *p, char *msg, size_t msglen,
                    const char *fmt, ...) {
    snprintf(param, paramlen, "%s", p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    return -1;
}

int json_request_grammar(const cJSON *body, gram_rules **out, char *param, size_t paramlen,
                         char *msg, size_t msglen) {
    *out = NULL;
    const cJSON *g = get(body, "grammar"), *js = get(body, "json_schema"),
                *rf = get(body, "response_format");
    if (cJSON_IsNull(g) || (cJSON_IsString(g) && !g->valuestring[0])) g = NULL; /* llama.cpp:
        an empty grammar is none */
    if (cJSON_IsNull(js)) js = NULL;
    if (cJSON_IsNull(rf)) rf = NULL;
    const char *field = NULL; /* which field constrains */
    char *text = NULL;
    const char *gtext = NULL;
    const cJSON *schema = NULL;
    bool strict = false;
    if (rf) {
        const cJSON *t = get(rf, "type");
        if (!cJSON_IsObject(rf))
            return req_fail(param, paramlen, "response_format", msg, msglen,
                            "'response_format' must be an object with a string 'type'");
        if (!cJSON_IsString(t))
            return req_fail(param, paramlen, "response_format.type", msg, msglen,
                            "'response_format.type' must be a string");
        if (strcmp(t->valuestring, "json_object") == 0) {
            field = "response_format";
            gtext = json_object_gbnf();
        } else if (strcmp(t->valuestring, "json_schema") == 0) {
            const cJSON *j = get(rf, "json_schema");
            const cJSON *st = cJSON_IsObject(j) ? get(j, "strict") : NULL;
            schema = cJSON_IsObject(j) ? get(j, "schema") : NULL;
            if (!schema)
                return req_fail(param, paramlen, "response_format.json_schema", msg, msglen,
                                "'response_format.json_schema.schema' is required");
            if (st && !cJSON_IsNull(st) && !cJSON_IsBool(st))
                return req_fail(param, paramlen, "response_format.json_schema.strict", msg,
                                msglen, "'response_format.json_schema.strict' must be a boolean");
            strict = cJSON_IsTrue(st);
            field = "response_format";
        } else if (strcmp(t->valuestring, "text") != 0) {
            return req_fail(param, paramlen, "response_format.type", msg, msglen,
                            "'response_format.type' must be 'text', 'json_object' or "
                            "'json_schema', got '%s'", t->valuestring);
        }
    }
    if (js) {
        if (field)
            return req_fail(param, paramlen, "json_schema", msg, msglen,
                            "give at most one of 'grammar', 'json_schema' and a JSON "
                            "'response_format'");
        field = "json_schema";
        schema = js;
    }
    if (g) {
        if (field)
            return req_fail(param, paramlen, "grammar", msg, msglen,
                            "give at most one of 'grammar', 'json_schema' and a JSON "
                            "'response_format'");
        if (!cJSON_IsString(g))
            return req_fail(param, paramlen, "grammar", msg, msglen,
                            "'grammar' must be a string (GBNF)");
        field = "grammar";
        gtext = g->valuestring;
    }
    if (!field) return 0;
    char err[448];
    if (schema) {
        char path[256];
        text = json_schema_to_gbnf(schema, strict, err, sizeof err, path, sizeof path);
        /* only json_schema_to_gbnf's own out-of-memory message starts so; other messages may
         * quote the schema, so a substring match would read a client's text as our failure */
        if (!text && strncmp(err, "out of memory", 13) == 0) return -2;
        if (!text)
            return req_fail(param, paramlen, field, msg, msglen, "invalid or unsupported JSON "
                            "Schema: %s", err);
        gtext = text;
    }
    *out = gram_parse(gtext, strlen(gtext), err, sizeof err);
    free(text);
    if (!*out && strncmp(err, "grammar: out of memory", 22) == 0) return -2;
    if (!*out)
        return req_fail(param, paramlen, field, msg, msglen, "%s%s",
                        schema ? "the JSON Schema gave an invalid grammar (a bug): " : "", err);
    return 0;
}
