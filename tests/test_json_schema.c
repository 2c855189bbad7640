/* test_json_schema: server/json_schema.c. Integer ranges are exact (every value in a window
 * around each bound accepted or rejected as the bounds say); objects take their required keys
 * and any subset of optional ones, commas right; arrays honour minItems/maxItems/prefixItems;
 * formats; unsupported keywords fail naming their path; recursive $ref. */
#include "check.h"
#include "grammar.h"
#include "json_schema.h"

#include <stdio.h>
#include <string.h>

static gram_rules *conv(const char *schema_json, char *err, size_t errlen) {
    cJSON *s = cJSON_Parse(schema_json);
    CHECK(s != NULL, "schema JSON: %s", schema_json);
    char *text = json_schema_to_gbnf(s, true, err, errlen, NULL, 0);
    cJSON_Delete(s);
    if (!text) return NULL;
    char gerr[256];
    gram_rules *g = gram_parse(text, strlen(text), gerr, sizeof gerr);
    CHECK(g != NULL, "generated grammar does not parse: %s\n%s", gerr, text);
    free(text);
    return g;
}

static bool accepts(const gram_rules *g, const char *text) {
    gram_state *st = gram_state_create(g, NULL);
    bool ok = gram_state_accept_bytes(st, text, strlen(text)) == 0 && gram_state_can_end(st);
    gram_state_free(st);
    return ok;
}

static void range(long long lo, long long hi, const char *schema) {
    char err[256];
    gram_rules *g = conv(schema, err, sizeof err);
    CHECK(g != NULL, "%s: %s", schema, err);
    if (!g) return;
    long long probes[] = {lo, hi, 0, 1, -1, 9, 10, 99, 100, 999, 1000};
    for (size_t p = 0; p < sizeof probes / sizeof *probes; p++)
        for (long long v = probes[p] - 130; v <= probes[p] + 130; v++) {
            char num[32];
            snprintf(num, sizeof num, "%lld", v);
            bool want = v >= lo && v <= hi;
            CHECK(accepts(g, num) == want, "%s: %lld %s", schema, v, want ? "rejected" : "taken");
        }
    CHECK(!accepts(g, "01") && !accepts(g, "-0") && !accepts(g, "+1"), "%s: forms", schema);
    gram_rules_free(g);
}

static void test_integers(void) {
    range(0, 120, "{\"type\":\"integer\",\"minimum\":0,\"maximum\":120}");
    range(-50, 50, "{\"type\":\"integer\",\"minimum\":-50,\"maximum\":50}");
    range(1000, 99999, "{\"type\":\"integer\",\"minimum\":1000,\"maximum\":99999}");
    range(-1234, -17, "{\"type\":\"integer\",\"minimum\":-1234,\"maximum\":-17}");
    range(1, 9, "{\"type\":\"integer\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":10}");
    range(3, 9999999999999999LL, "{\"type\":\"integer\",\"minimum\":2.5}");
    range(-9999999999999999LL, 7, "{\"type\":\"integer\",\"maximum\":7}");
    range(137, 1099, "{\"type\":\"integer\",\"minimum\":137,\"maximum\":1099}");
}

static void expect_error(const char *schema, const char *path);

/* A number in [lo, hi] (ends exclusive where said; no bound: +-1e9): every hundredth from -30
 * to 30, written as "x.xx", "x.x" and, when whole, "x", accepted exactly when in range. */
static void number_range(const char *schema, double lo, bool elo, double hi, bool ehi) {
    char err[256];
    gram_rules *g = conv(schema, err, sizeof err);
    CHECK(g != NULL, "%s: %s", schema, err);
    if (!g) return;
    int bad = 0;
    for (int k = -3000; k <= 3000; k++) {
        double x = k / 100.0;
        bool want = (elo ? x > lo : x >= lo) && (ehi ? x < hi : x <= hi);
        char forms[3][32];
        int nf = 0;
        snprintf(forms[nf++], sizeof forms[0], "%.2f", x);
        if (k % 10 == 0) snprintf(forms[nf++], sizeof forms[0], "%.1f", x);
        if (k % 100 == 0) snprintf(forms[nf++], sizeof forms[0], "%d", k / 100);
        for (int f = 0; f < nf; f++)
            if (accepts(g, forms[f]) != want && bad++ < 5)
                CHECK(0, "%s: %s %s", schema, forms[f], want ? "rejected" : "taken");
    }
    CHECK(bad == 0, "%s: %d wrong", schema, bad);
    CHECK(!accepts(g, "1e1") && !accepts(g, "01") && !accepts(g, "1."), "%s: forms", schema);
    gram_rules_free(g);
}

static void test_numbers(void) {
    number_range("{\"type\":\"number\",\"minimum\":0,\"maximum\":10}", 0, false, 10, false);
    number_range("{\"type\":\"number\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":10}", 0,
                 true, 10, true);
    number_range("{\"type\":\"number\",\"minimum\":-12,\"exclusiveMaximum\":-3}", -12, false,
                 -3, true);
    number_range("{\"type\":\"number\",\"exclusiveMinimum\":-7,\"maximum\":0}", -7, true, 0,
                 false);
    number_range("{\"type\":\"number\",\"minimum\":2}", 2, false, 1e9, false);
    number_range("{\"type\":\"number\",\"exclusiveMaximum\":-1}", -1e9, false, -1, true);
    number_range("{\"type\":\"number\",\"minimum\":-1,\"exclusiveMinimum\":-1,\"maximum\":5,"
                 "\"exclusiveMaximum\":9}", -1, true, 5, false);
    number_range("{\"type\":\"number\",\"minimum\":4,\"maximum\":4}", 4, false, 4, false);
    expect_error("{\"type\":\"number\",\"minimum\":0.5}", "at #/minimum");
    expect_error("{\"type\":\"number\",\"minimum\":3,\"exclusiveMaximum\":3}", "at #");
}

/* pattern: the strings a schema's regular expression matches, as JSON text. */
static void pattern(const char *re_json, const char *const *yes, const char *const *no) {
    char schema[512], err[256];
    snprintf(schema, sizeof schema, "{\"type\":\"string\",\"pattern\":%s}", re_json);
    gram_rules *g = conv(schema, err, sizeof err);
    CHECK(g != NULL, "%s: %s", schema, err);
    if (!g) return;
    for (; *yes; yes++) CHECK(accepts(g, *yes), "%s: %s rejected", schema, *yes);
    for (; *no; no++) CHECK(!accepts(g, *no), "%s: %s taken", schema, *no);
    gram_rules_free(g);
}

static void test_patterns(void) {
    pattern("\"^[A-Z]{3}-\\\\d{2,4}$\"", (const char *[]){"\"ABC-12\"", "\"XYZ-9999\"", NULL},
            (const char *[]){"\"AB-12\"", "\"ABC-1\"", "\"ABC-12345\"", "\"abc-12\"", NULL});
    pattern("\"^(yea|nay)( verily)?$\"", (const char *[]){"\"yea\"", "\"nay verily\"", NULL},
            (const char *[]){"\"yea verily verily\"", "\"nay \"", "\"\"", NULL});
    /* unanchored: anywhere in the string */
    pattern("\"LORD\"", (const char *[]){"\"LORD\"", "\"the LORD God\"", "\"LORDS\"", NULL},
            (const char *[]){"\"Lord\"", "\"\"", NULL});
    pattern("\"^a\"", (const char *[]){"\"a\"", "\"abc\"", NULL}, (const char *[]){"\"ba\"", NULL});
    pattern("\"b$\"", (const char *[]){"\"b\"", "\"ab\"", NULL}, (const char *[]){"\"ba\"", NULL});
    /* a quote and a backslash in the pattern are escaped in the JSON text */
    pattern("\"^\\\"[a-z]*\\\"$\"", (const char *[]){"\"\\\"ab\\\"\"", NULL},
            (const char *[]){"\"\\\"ab\"", "\"ab\"", NULL});
    pattern("\"^\\\\\\\\[.]$\"", (const char *[]){"\"\\\\.\"", NULL},
            (const char *[]){"\"\\\\a\"", NULL});
    /* classes: negation never yields '"', '\\' or a control character; \\s its escapes */
    pattern("\"^[^a]{2}$\"", (const char *[]){"\"bc\"", "\"\u00e9\u00e8\"", NULL},
            (const char *[]){"\"ab\"", "\"b\\\"\"", "\"b\\\\\\\\\"", NULL});
    pattern("\"^x\\\\sy$\"", (const char *[]){"\"x y\"", "\"x\\ty\"", NULL},
            (const char *[]){"\"xy\"", NULL});
    pattern("\"^[\u00e0-\u00ff]+\\\\.?$\"", (const char *[]){"\"\u00e9\u00e8.\"", NULL},
            (const char *[]){"\"e\"", NULL});
    pattern("\"^(?:ab|c)+?$\"", (const char *[]){"\"abcab\"", NULL}, (const char *[]){"\"abb\"", NULL});
    expect_error("{\"type\":\"string\",\"pattern\":\"(?=x)\"}", "at #/pattern");
    expect_error("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "at #/pattern");
    expect_error("{\"type\":\"string\",\"pattern\":\"^a|b$\"}", "at #/pattern");
    expect_error("{\"type\":\"string\",\"pattern\":\"a{2,1}\"}", "at #/pattern");
    expect_error("{\"type\":\"string\",\"pattern\":\"[a\"}", "at #/pattern");
    expect_error("{\"type\":\"string\",\"pattern\":\"a\",\"maxLength\":3}", "at #/pattern");
}

static void test_objects(void) {
    char err[256];
    gram_rules *g = conv("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                         "\"b\":{\"type\":\"boolean\"},\"c\":{\"type\":\"null\"}},"
                         "\"required\":[\"b\"]}", err, sizeof err);
    CHECK(g != NULL, "%s", err);
    const char *ok[] = {"{\"b\":true}", "{\"a\":1,\"b\":false}", "{\"b\":true,\"c\":null}",
                        "{ \"a\": -3, \"b\": true, \"c\": null }"};
    const char *bad[] = {"{}", "{\"a\":1}", "{\"b\":true,}", "{,\"b\":true}",
                         "{\"b\":true,\"d\":1}", "{\"c\":null,\"b\":true}", "{\"b\":1}"};
    for (size_t i = 0; g && i < sizeof ok / sizeof *ok; i++) CHECK(accepts(g, ok[i]), "%s", ok[i]);
    for (size_t i = 0; g && i < sizeof bad / sizeof *bad; i++)
        CHECK(!accepts(g, bad[i]), "%s", bad[i]);
    gram_rules_free(g);
    /* all optional */
    g = conv("{\"properties\":{\"x\":{\"const\":1},\"y\":{\"const\":2}}}", err, sizeof err);
    CHECK(g && accepts(g, "{}") && accepts(g, "{\"y\":2}") && accepts(g, "{\"x\":1,\"y\":2}") &&
              !accepts(g, "{\"x\":2}"), "optional");
    gram_rules_free(g);
    /* a map */
    g = conv("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}", err,
             sizeof err);
    CHECK(g && accepts(g, "{\"k\":1,\"\\u00e9\":2}") && !accepts(g, "{\"k\":true}"), "map");
    gram_rules_free(g);
}

static void test_arrays_strings(void) {
    char err[256];
    gram_rules *g = conv("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,"
                         "\"maxItems\":3}", err, sizeof err);
    CHECK(g && !accepts(g, "[]") && accepts(g, "[1]") && accepts(g, "[1, 2,3]") &&
              !accepts(g, "[1,2,3,4]") && !accepts(g, "[1,]"), "items 1..3");
    gram_rules_free(g);
    g = conv("{\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],\"items\":false}",
             err, sizeof err);
    CHECK(g && accepts(g, "[]") && accepts(g, "[\"a\"]") && accepts(g, "[\"a\",1]") &&
              !accepts(g, "[1]") && !accepts(g, "[\"a\",1,2]"), "prefixItems");
    gram_rules_free(g);
    g = conv("{\"prefixItems\":[{\"type\":\"string\"}],\"items\":{\"type\":\"null\"},"
             "\"minItems\":2}", err, sizeof err);
    CHECK(g && !accepts(g, "[\"a\"]") && accepts(g, "[\"a\",null]") &&
              accepts(g, "[\"a\",null,null]") && !accepts(g, "[\"a\",1]"), "prefix + items");
    gram_rules_free(g);
    g = conv("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", err, sizeof err);
    CHECK(g && !accepts(g, "\"a\"") && accepts(g, "\"\\u00e9\\n\"") && accepts(g, "\"\xc3\xa9t\xc3\xa9\"") &&
              !accepts(g, "\"abcd\""), "lengths count characters");
    gram_rules_free(g);
    const char *fmts[][3] = {
        {"date", "\"2024-02-28\"", "\"2024-02-30\""},
        {"time", "\"23:59:59Z\"", "\"24:00:00Z\""},
        {"date-time", "\"1999-12-31T23:59:59.123+01:00\"", "\"1999-12-31 23:59:59Z\""},
        {"uuid", "\"123e4567-e89b-12d3-a456-426614174000\"", "\"123e4567e89b12d3a456426614174000\""},
    };
    for (int i = 0; i < 4; i++) {
        char schema[128];
        snprintf(schema, sizeof schema, "{\"type\":\"string\",\"format\":\"%s\"}", fmts[i][0]);
        g = conv(schema, err, sizeof err);
        CHECK(g && accepts(g, fmts[i][1]) && !accepts(g, fmts[i][2]), "format %s", fmts[i][0]);
        gram_rules_free(g);
    }
}

static void expect_error(const char *schema, const char *path) {
    char err[256] = "";
    gram_rules *g = conv(schema, err, sizeof err);
    CHECK(g == NULL && strstr(err, path), "%s: '%s' lacks %s", schema, err, path);
    gram_rules_free(g);
}

static void test_errors_and_refs(void) {
    expect_error("{\"properties\":{\"a\":{\"pattern\":\"\\\\bx\"}}}",
                 "at #/properties/a/pattern");
    expect_error("{\"type\":\"string\",\"format\":\"email\"}", "at #/format");
    expect_error("{\"type\":\"thing\"}", "at #/type");
    expect_error("{\"$ref\":\"http://x/y\"}", "at #/$ref");
    expect_error("{\"items\":{\"type\":\"integer\",\"multipleOf\":2}}", "at #/items/multipleOf");
    expect_error("{\"required\":[\"a\"],\"properties\":{}}", "at #/required");
    expect_error("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "at #");
    expect_error("false", "at #");
    expect_error("{\"anyOf\":[{\"type\":\"null\"}],\"type\":\"null\"}", "at #/type");
    expect_error("{\"allOf\":[{},{}]}", "at #/allOf");
    expect_error("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "at #/oneOf");
    expect_error("{\"oneOf\":[{\"enum\":[1,2]},{\"const\":2}]}", "at #/oneOf");
    expect_error("{\"oneOf\":[{\"type\":\"string\"},{}]}", "at #/oneOf");
    gram_rules *one = conv("{\"oneOf\":[{\"enum\":[1,\"a\"]},{\"const\":2},{\"type\":\"null\"},"
                           "{\"properties\":{}}]}", NULL, 0);
    CHECK(one && accepts(one, "2") && accepts(one, "{}") && !accepts(one, "3"), "disjoint oneOf");
    gram_rules_free(one);
    char err[256];
    gram_rules *g = conv("{\"$ref\":\"#/$defs/list\",\"$defs\":{\"list\":{\"type\":\"array\","
                         "\"items\":{\"$ref\":\"#/$defs/list\"}}}}", err, sizeof err);
    CHECK(g && accepts(g, "[[],[[]]]") && !accepts(g, "[1]"), "recursive $ref: %s", err);
    gram_rules_free(g);
    g = conv("{\"anyOf\":[{\"type\":\"integer\",\"minimum\":5},{\"enum\":[\"x\",null]}]}", err,
             sizeof err);
    CHECK(g && accepts(g, "7") && accepts(g, "null") && accepts(g, "\"x\"") && !accepts(g, "4"),
          "anyOf");
    gram_rules_free(g);
    /* json_object */
    const char *jo = json_object_gbnf();
    char gerr[256];
    g = gram_parse(jo, strlen(jo), gerr, sizeof gerr);
    CHECK(g && accepts(g, "{\"a\": [1, 2.5e3, \"x\", {}, null, true]}") && !accepts(g, "[1]"),
          "json_object: %s", gerr);
    gram_rules_free(g);
}

int main(void) {
    test_integers();
    test_numbers();
    test_patterns();
    test_objects();
    test_arrays_strings();
    test_errors_and_refs();
    return check_summary();
}
