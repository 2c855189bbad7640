/* test_jinja: server/jinja*.c. The byte-for-byte suite: every case of
 * tests/reference/templates_golden.json (real templates x conversations, rendered by jinja2 as
 * Hugging Face configures it) rendered by our interpreter; raise_exception messages; message
 * content kept apart from template text in the output segments; unsupported constructs named at
 * parse time; and the limits that stop hostile templates. */
#include "check.h"
#include "jinja.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jinja_template *load(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "templates/%s.jinja", name);
    size_t n;
    char *src = check_slurp(check_test_path(rel), &n);
    CHECK(src, "cannot read %s", rel);
    if (!src) return NULL;
    char err[256] = "";
    jinja_template *t = jinja_parse(src, n, err, sizeof err);
    CHECK(t, "%s: %s", name, err);
    free(src);
    return t;
}

/* Where two strings first differ, for a readable failure. */
static void show_diff(const char *what, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "  %s: differs at byte %zu\n  got:  \"%.80s\"\n  want: \"%.80s\"\n", what, i,
            got + from, want + from);
}

static void test_golden(void) {
    char *golden = check_slurp(check_test_path("reference/templates_golden.json"), NULL);
    CHECK(golden, "cannot read the golden file");
    if (!golden) return;
    cJSON *root = cJSON_Parse(golden);
    free(golden);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    CHECK(cJSON_GetArraySize(cases) >= 200, "too few cases: %d", cJSON_GetArraySize(cases));
    jinja_template *t = NULL;
    char loaded[64] = "";
    int n_ok = 0, n_raise = 0, n_other = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *tname = cJSON_GetObjectItem(c, "template")->valuestring;
        const char *cname = cJSON_GetObjectItem(c, "conversation")->valuestring;
        if (strcmp(tname, loaded) != 0) {
            jinja_free(t);
            t = load(tname);
            snprintf(loaded, sizeof loaded, "%s", tname);
        }
        if (!t) continue;
        const cJSON *data = cJSON_GetObjectItem(c, "data");
        const cJSON *trusted = cJSON_GetObjectItem(c, "trusted");
        bool agp = cJSON_IsTrue(cJSON_GetObjectItem(trusted, "add_generation_prompt"));
        char what[160];
        snprintf(what, sizeof what, "%s/%s/%s", tname, cname, agp ? "gen" : "nogen");
        jinja_output out;
        char err[512] = "";
        int rc = jinja_render(t, data, trusted, NULL, &out, err, sizeof err);
        const cJSON *want = cJSON_GetObjectItem(c, "expected");
        const cJSON *raise = cJSON_GetObjectItem(c, "error_raise");
        if (want) {
            n_ok++;
            CHECK(rc == 0, "%s: rc %d: %s", what, rc, err);
            if (rc == 0) {
                bool same = out.len == strlen(want->valuestring) &&
                            memcmp(out.text, want->valuestring, out.len) == 0;
                CHECK(same, "%s: output differs from jinja2", what);
                if (!same) show_diff(what, out.text, want->valuestring);
                size_t covered = 0;
                for (int i = 0; i < out.n_segs; i++) {
                    CHECK(out.segs[i].start == covered, "%s: segments not contiguous", what);
                    covered += out.segs[i].len;
                }
                CHECK(covered == out.len, "%s: segments cover %zu of %zu", what, covered, out.len);
            }
        } else if (raise) {
            n_raise++;
            CHECK(rc == JINJA_ERAISE && strcmp(err, raise->valuestring) == 0,
                  "%s: want raise_exception \"%s\", got rc %d \"%s\"", what, raise->valuestring, rc,
                  err);
        } else {
            n_other++; /* jinja2 failed on the template's own logic: so must we */
            CHECK(rc == JINJA_EFAIL, "%s: want a runtime error (%s), got rc %d", what,
                  cJSON_GetObjectItem(c, "error_other")->valuestring, rc);
        }
        if (rc == 0) jinja_output_free(&out);
    }
    jinja_free(t);
    cJSON_Delete(root);
    CHECK(n_ok > 150 && n_raise > 5 && n_other > 5, "ok %d, raise %d, other %d", n_ok, n_raise,
          n_other);
}

/* Renders src with messages JSON; returns the output (caller frees) or NULL with err. */
static char *render(const char *src, const char *data_json, int *rc, char *err, size_t errlen,
                    jinja_output *keep) {
    jinja_template *t = jinja_parse(src, strlen(src), err, errlen);
    if (!t) {
        *rc = 1;
        return NULL;
    }
    cJSON *data = data_json ? cJSON_Parse(data_json) : NULL;
    cJSON *trusted = cJSON_Parse("{\"bos_token\": \"<s>\", \"add_generation_prompt\": true}");
    jinja_limits lim = jinja_default_limits();
    lim.max_output = 4096;
    lim.max_iterations = 1000;
    lim.max_memory = 1 << 20;
    jinja_output out;
    *rc = jinja_render(t, data, trusted, &lim, &out, err, errlen);
    cJSON_Delete(data);
    cJSON_Delete(trusted);
    jinja_free(t);
    if (*rc) return NULL;
    if (keep) {
        *keep = out;
        return out.text;
    }
    free(out.segs);
    return out.text;
}

static void expect_parse_error(const char *src, const char *needle) {
    char err[256] = "";
    int rc;
    char *s = render(src, NULL, &rc, err, sizeof err, NULL);
    CHECK(!s && rc == 1 && strstr(err, needle),
          "\"%s\": want a parse error with \"%s\", got \"%s\"", src, needle, err);
    free(s);
}

static void expect_render(const char *src, const char *data, int want_rc, const char *needle) {
    char err[256] = "";
    int rc;
    char *s = render(src, data, &rc, err, sizeof err, NULL);
    if (want_rc == 0)
        CHECK(s && !strcmp(s, needle), "\"%s\": got \"%s\" (%s), want \"%s\"", src, s ? s : "", err,
              needle);
    else
        CHECK(rc == want_rc && strstr(err, needle), "\"%s\": want rc %d with \"%s\", got %d \"%s\"",
              src, want_rc, needle, rc, err);
    free(s);
}

static void test_unsupported(void) {
    expect_parse_error("{% call foo() %}x{% endcall %}",
                       "unsupported Jinja construct '{% call %}'");
    expect_parse_error("{% include 'x' %}", "'{% include %}'");
    expect_parse_error("{% extends 'x' %}", "'{% extends %}'");
    expect_parse_error("{{ x | wordwrap }}", "unsupported Jinja filter 'wordwrap'");
    expect_parse_error("{% if x is prime %}{% endif %}", "unsupported Jinja test 'prime'");
    expect_parse_error("{{ x.append(1) }}", "unsupported method 'append()'");
    expect_parse_error("a\nb\n{% foo %}", "(line 3)");
    expect_parse_error("{% if x %}", "missing {% endif %}");
    expect_parse_error("{% endfor %}", "unexpected {% endfor %}");
    expect_parse_error("{{ 'abc }}", "unterminated string");
    expect_parse_error("{% break %}", "outside a for loop");
}

static void test_runtime(void) {
    expect_render("{{ raise_exception('roles must alternate') }}", NULL, JINJA_ERAISE,
                  "roles must alternate");
    expect_render("{{ x.y }}", NULL, JINJA_EFAIL, "'x' is undefined");
    expect_render("{{ 1 + 'a' }}", NULL, JINJA_EFAIL, "unsupported operand");
    expect_render("{{ bos_token }}{{ messages[0].content }}",
                  "{\"messages\":[{\"content\":\"hi\"}]}", 0, "<s>hi");
    expect_render("{% set ns = namespace(a=1) %}{% set ns.a = ns.a + 1 %}{{ ns.a }}", NULL, 0, "2");
    expect_render("{% for x in 'héllo' %}{{ x }}.{% endfor %}", NULL, 0, "h.é.l.l.o.");
    expect_render("{{ 'héllo'[1] }}{{ 'héllo'|length }}{{ 'héllo'[-2:] }}", NULL, 0, "é5lo");
    expect_render("{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e-5 }} {{ 0.0001 }} {{ 3.0 }}", NULL, 0,
                  "0.30000000000000004 1e+16 1e-05 0.0001 3.0");
    expect_render("{{ {'a': 'é\"\\n'} | tojson }}", NULL, 0, "{\"a\": \"é\\\"\\n\"}");
    expect_render("  {% if true %}\n  x\n  {% endif %}\n", NULL, 0, "  x\n");
    expect_render("{%- if true -%}  x  {%- endif -%}", NULL, 0, "x");
    expect_render("{% raw %}{{ a }}{% endraw %}", NULL, 0, "{{ a }}");
    expect_render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1 in [1] }}", NULL, 0,
                  "True False True");
    expect_render("{% macro m(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}",
                  NULL, 0, "[1B][23]");
}

static void test_limits(void) {
    expect_render("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}",
                  NULL, JINJA_ELIMIT, "loop iterations");
    expect_render("{% for i in range(900) %}{{ 'xxxxxxxxxx' }}{% endfor %}", NULL, JINJA_ELIMIT,
                  "longer than");
    expect_render("{{ 'x' * 100000000 }}", NULL, JINJA_ELIMIT, "memory");
    expect_render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, JINJA_ELIMIT,
                  "nested deeper");
    expect_render("{{ range(1000000000) | length }}", NULL, JINJA_ELIMIT, "iteration limit");
    /* counts past int64 (fuzz_jinja: signed overflow in b - a), and the steps at the edges */
    expect_render("{{ range(333333333333333333333333333) | length }}", NULL, JINJA_ELIMIT,
                  "iteration limit");
    expect_render("{{ range(-9223372036854775807, 9223372036854775807) | length }}", NULL,
                  JINJA_ELIMIT, "18446744073709551614 items");
    expect_render("{{ range(9223372036854775807, -9223372036854775807 - 1, -1) | length }}", NULL,
                  JINJA_ELIMIT, "18446744073709551615 items");
    expect_render("{{ range(0, 9223372036854775807, 9223372036854775807) | list }} "
                  "{{ range(5, -9223372036854775807 - 1, -9223372036854775807 - 1) | list }} "
                  "{{ range(5, 0, -2) | list }} {{ range(0, 10, 3) | list }} "
                  "{{ range(3, 3) | list }}",
                  NULL, 0, "[0] [5, -9223372036854775803] [5, 3, 1] [0, 3, 6, 9] []");
    /* doubling a string 40 times stays within the memory limit or stops */
    expect_render("{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + "
                  "ns.s %}{% endfor %}{{ ns.s | length }}",
                  NULL, JINJA_ELIMIT, "memory");
}

/* Copies t to p with its terminator; returns the end of the copy. */
static char *append(char *p, const char *t) {
    size_t n = strlen(t);
    memcpy(p, t, n + 1);
    return p + n;
}

/* src with `open` and `close` each repeated n times around `mid` (caller frees). */
static char *nested(const char *pre, const char *open, const char *mid, const char *close, int n,
                    const char *post) {
    size_t len = strlen(pre) + strlen(mid) + strlen(post);
    len += (size_t)n * (strlen(open) + strlen(close));
    char *s = malloc(len + 1);
    if (!s) return NULL;
    char *p = append(s, pre);
    for (int i = 0; i < n; i++)
        p = append(p, open);
    p = append(p, mid);
    for (int i = 0; i < n; i++)
        p = append(p, close);
    append(p, post);
    return s;
}

static void expect_nested(const char *pre, const char *open, const char *mid, const char *close,
                          int n, const char *post, int want_rc, const char *needle) {
    char *src = nested(pre, open, mid, close, n, post);
    CHECK(src, "out of memory");
    if (!src) return;
    if (want_rc == 1)
        expect_parse_error(src, needle);
    else
        expect_render(src, NULL, want_rc, needle);
    free(src);
}

/* Deep templates and deep or self-containing values: a clear error, never a stack overflow
 * (before JINJA_MAX_NESTING and JINJA_MAX_RECURSION, each of these crashed the process). Run on
 * a 4 MiB thread stack, half what Linux gives a thread; the worst case here used 0.55 MiB built
 * with -O3, 1.8 MiB with ASan and 1.3 MiB with TSan. */
static void *nesting_cases(void *arg) {
    (void)arg;
    /* brackets, unary operators, blocks and elifs: the parser counts one level for each */
    expect_nested("{{ ", "(", "7", ")", 99, " }}", 0, "7");
    expect_nested("{{ ", "(", "7", ")", 100, " }}", 1, "nested deeper than 100 levels");
    expect_nested("{{ ", "[", "", "]", 5000, " }}", 1, "nested deeper than 100 levels");
    expect_nested("{{ ", "-", "1", "", 5000, " }}", 1, "nested deeper than 100 levels");
    expect_nested("{{ ", "not ", "1", "", 5000, " }}", 1, "nested deeper than 100 levels");
    expect_nested("", "{% if 1 %}", "x", "{% endif %}", 99, "", 0, "x"); /* + the condition */
    expect_nested("", "{% if 1 %}", "x", "{% endif %}", 100, "", 1, "nested deeper than 100");
    expect_nested("{% if 0 %}", "{% elif 0 %}", "{% else %}e", "", 98, "{% endif %}", 0, "e");
    expect_nested("{% if 0 %}", "{% elif 0 %}", "{% else %}e", "", 99, "{% endif %}", 1,
                  "nested deeper than 100");
    /* the renderer: left-nested chains the parser builds in a loop, and macros that recurse
     * from deep inside an expression (the shape fuzz_jinja found) */
    expect_nested("{{ 0", " + 1", "", "", 400, " }}", 0, "400");
    expect_nested("{{ 0", " + 1", "", "", 600, " }}", JINJA_ELIMIT, "nests deeper than 500");
    expect_nested("{{ 'a'", " | string", "", "", 600, " }}", JINJA_ELIMIT, "nests deeper");
    expect_nested("{% macro m(n) %}{% if n > 0 %}{{ ", "[", "m(n - 1)", "]", 95,
                  " }}{% endif %}{% endmacro %}{{ m(30) }}", JINJA_ELIMIT, "nests deeper");
    /* values: a list or a dict wrapped 600 times, a namespace that holds itself */
    static const char *const wraps[] = {"[ns.x]", "{'a': ns.x}"};
    static const char *const uses[] = {"{{ ns.x }}",           "{{ ns.x | tojson }}",
                                       "{{ ns.x == ns.x }}",   "{{ ns.x < ns.x }}",
                                       "{{ ns.x in [ns.x] }}", "{{ [ns.x, ns.x] | unique | list }}",
                                       "{{ ns.x | tojson(sort_keys=true) }}"};
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++) {
            if (w == 1 && strstr(uses[i], "<")) continue; /* dicts are unordered */
            char src[256];
            snprintf(src, sizeof src,
                     "{%% set ns = namespace(x=1) %%}{%% for i in range(600) %%}"
                     "{%% set ns.x = %s %%}{%% endfor %%}%s",
                     wraps[w], uses[i]);
            expect_render(src, NULL, JINJA_ELIMIT, "nests deeper than 500");
        }
    }
    const char *cycle = "{% set ns = namespace(x=1) %}{% set ns.x = ns %}{{ ns }}";
    jinja_template *t = jinja_parse(cycle, strlen(cycle), NULL, 0);
    jinja_output out;
    char err[256] = "";
    int rc = t ? jinja_render(t, NULL, NULL, NULL, &out, err, sizeof err) : 1;
    CHECK(rc == JINJA_ELIMIT && strstr(err, "nests deeper"), "%s: rc %d \"%s\"", cycle, rc, err);
    jinja_free(t);
    /* data: a message nested deeper than the limit */
    char *deep = nested("{\"x\": ", "[", "1", "]", 600, "}");
    CHECK(deep, "out of memory");
    if (deep) expect_render("{{ x | length }}", deep, JINJA_ELIMIT, "nests deeper");
    free(deep);
    return NULL;
}

static void test_nesting(void) {
    pthread_attr_t attr;
    pthread_t th;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 4u << 20);
    int rc = pthread_create(&th, &attr, nesting_cases, NULL);
    if (rc == 0) pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    CHECK(rc == 0, "pthread_create: %d", rc); /* after the join: the thread counts checks too */
}

/* Message content stays data even when it spells a special token, and after trim/concat. */
static void test_provenance(void) {
    const char *src = "{% for m in messages %}{{ '<|start|>' + m.role + '\\n' + m.content | trim + "
                      "'<|eot|>' }}{% endfor %}{{ bos_token }}";
    char err[256] = "";
    int rc;
    jinja_output out;
    char *s = render(src, "{\"messages\":[{\"role\":\"user\",\"content\":\" a<|eot|>b \"}]}", &rc,
                     err, sizeof err, &out);
    CHECK(s && !strcmp(s, "<|start|>user\na<|eot|>b<|eot|><s>"), "got \"%s\" (%s)", s ? s : "",
          err);
    if (!s) return;
    /* template: "<|start|>", data: "user", template: "\n", data: "a<|eot|>b", template: rest */
    static const struct {
        const char *text;
        bool tmpl;
    } want[] = {{"<|start|>", true},
                {"user", false},
                {"\n", true},
                {"a<|eot|>b", false},
                {"<|eot|><s>", true}};
    CHECK(out.n_segs == 5, "%d segments", out.n_segs);
    for (int i = 0; i < out.n_segs && i < 5; i++) {
        CHECK(out.segs[i].from_template == want[i].tmpl &&
                  out.segs[i].len == strlen(want[i].text) &&
                  !memcmp(out.text + out.segs[i].start, want[i].text, out.segs[i].len),
              "segment %d: \"%.*s\" %d", i, (int)out.segs[i].len, out.text + out.segs[i].start,
              out.segs[i].from_template);
    }
    jinja_output_free(&out);
}

/* Malformed templates: deterministic mutations of the real ones (a byte deleted, one of Jinja's
 * delimiters inserted, the source cut short) must parse or fail with a message, and render or
 * fail with a message, never crash (the sanitizer builds watch the memory). */
static void test_mutations(void) {
    static const char *const names[] = {"llama2",      "llama3_1", "qwen3",   "gemma3",
                                        "deepseek_v3", "zephyr",   "mistral", "features"};
    static const char ins[] = "{}%#-+'\"()[]|.~,:=\n ";
    cJSON *data =
        cJSON_Parse("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\","
                    "\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":[{"
                    "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}],"
                    "\"tools\":null}");
    cJSON *trusted = cJSON_Parse("{\"bos_token\":\"<s>\",\"add_generation_prompt\":true}");
    jinja_limits lim = jinja_default_limits();
    lim.max_memory = 4 << 20;
    uint32_t seed = 12345;
    int parsed = 0, rendered = 0, total = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "templates/%s.jinja", names[k]);
        size_t n;
        char *src = check_slurp(check_test_path(rel), &n);
        if (!src) continue;
        char *buf = malloc(n + 2);
        for (int i = 0; buf && i < 150; i++, total++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (n + 1), m = n;
            memcpy(buf, src, n);
            switch (i % 3) {
            case 0: /* delete a byte */
                if (at < n) memmove(buf + at, buf + at + 1, n - at - 1), m = n - 1;
                break;
            case 1: /* insert a delimiter character */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = ins[(seed >> 20) % (sizeof ins - 1)];
                m = n + 1;
                break;
            default: /* cut short */
                m = at;
            }
            char err[256] = "";
            /* exactly m bytes, no NUL after them (as a GGUF string): ASan sees any overread */
            char *exact = malloc(m ? m : 1);
            if (!exact) break;
            memcpy(exact, buf, m);
            jinja_template *t = jinja_parse(exact, m, err, sizeof err);
            free(exact);
            CHECK(t || err[0], "%s mutation %d: parse failed without a message", names[k], i);
            if (!t) continue;
            parsed++;
            jinja_output out;
            int rc = jinja_render(t, data, trusted, &lim, &out, err, sizeof err);
            CHECK(rc == 0 || err[0], "%s mutation %d: render failed without a message", names[k],
                  i);
            if (rc == 0) {
                rendered++;
                jinja_output_free(&out);
            }
            jinja_free(t);
        }
        free(buf);
        free(src);
    }
    printf("mutations: %d, %d parsed, %d rendered\n", total, parsed, rendered);
    cJSON_Delete(data);
    cJSON_Delete(trusted);
}

int main(void) {
    test_golden();
    test_unsupported();
    test_runtime();
    test_limits();
    test_nesting();
    test_provenance();
    test_mutations();
    return check_summary();
}
