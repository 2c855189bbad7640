/* test_tools: server/tools.c. Reading calls back in the three syntaxes (text before them, a
 * call still being written, a truncated or undeclared one left as text, arguments given as a
 * string); the grammar of tool_choice required / named accepting exactly calls of declared
 * tools with schema-valid arguments (one call without parallel_tool_calls); the request errors
 * naming their field; call ids; the messages of the generic format. */
#include "check.h"
#include "grammar.h"
#include "tools.h"

#include <stdio.h>
#include <string.h>

#define TOOLS_JSON                                                                            \
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{"          \
    "\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":8},"      \
    "\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\",\"unit\"]}}},"                  \
    "{\"type\":\"function\",\"function\":{\"name\":\"noargs\"}}]"

/* A request body with the given extra fields (JSON members without braces). */
static cJSON *body(const char *extra) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":" TOOLS_JSON
             "%s%s}",
             extra[0] ? "," : "", extra);
    cJSON *o = cJSON_Parse(buf);
    CHECK(o != NULL, "body: %s", buf);
    return o;
}

static chat_template *jinja(const char *src) {
    char err[256];
    chat_template *ct = chat_template_load(NULL, CHAT_AUTO, src, strlen(src), "t.jinja", err,
                                           sizeof err);
    CHECK(ct != NULL, "template: %s", err);
    return ct;
}

/* tools_setup on ct with extra fields: 0 and *t, *g. */
static int setup(const chat_template *ct, const char *extra, tools_req **t, gram_rules **g,
                 chat_error *e) {
    cJSON *o = body(extra), *msgs, *tools;
    int rc = tools_setup(ct, o, true, t, &msgs, &tools, g, e);
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
    cJSON_Delete(o);
    return rc;
}

static void expect_scan(const tools_req *t, const char *text, bool final, size_t content_len,
                        int n_calls, const char *args0) {
    tools_parsed p;
    CHECK(tools_scan(t, text, strlen(text), final, &p) == 0, "scan");
    CHECK(p.content_len == content_len, "%s: content_len %zu, want %zu", text, p.content_len,
          content_len);
    CHECK(p.n_calls == n_calls, "%s: %d calls, want %d", text, p.n_calls, n_calls);
    if (args0 && p.n_calls)
        CHECK(strcmp(p.calls[0].arguments, args0) == 0, "%s: arguments %s, want %s", text,
              p.calls[0].arguments, args0);
    tools_parsed_free(&p);
}

#define CALL "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Ur\", \"unit\": \"c\"}}"
#define ARGS "{\"city\":\"Ur\",\"unit\":\"c\"}"

static void test_scan_hermes(void) {
    tools_req *t;
    gram_rules *g;
    chat_error e;
    CHECK(setup(chat_template_builtin(CHAT_LLAMA2), "", &t, &g, &e) == 0, "%s", e.message);
    CHECK(t && t->syntax == TOOLS_HERMES && !t->native && t->choice == TOOL_CHOICE_AUTO && !g,
          "generic hermes, auto, no grammar");
    expect_scan(t, "Sure. <tool_call>\n" CALL "\n</tool_call>", true, 6, 1, ARGS);
    expect_scan(t, "<tool_call>" CALL "</tool_call>\n<tool_call>{\"name\":\"noargs\"}</tool_call>",
                true, 0, 2, ARGS);
    /* still being written: the text before the marker only; a partial marker is held back */
    expect_scan(t, "Hello <tool", false, 6, 0, NULL);
    expect_scan(t, "Hello <tool_call>{\"name\": \"get_w", false, 6, 0, NULL);
    expect_scan(t, "<tool_call>" CALL "\n</tool", false, 0, 0, NULL);
    expect_scan(t, "<tool_call>" CALL "\n</tool_call>", false, 0, 1, ARGS);
    /* at the end: a truncated or undeclared call is text; a missing close is forgiven */
    const char *trunc = "Hi <tool_call>{\"name\": \"get_w";
    expect_scan(t, trunc, true, strlen(trunc), 0, NULL);
    const char *undeclared = "<tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>";
    expect_scan(t, undeclared, true, strlen(undeclared), 0, NULL);
    expect_scan(t, "<tool_call>" CALL, true, 0, 1, ARGS);
    /* arguments as a JSON string, as some models write them */
    expect_scan(t, "<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": "
                   "\\\"Ur\\\", \\\"unit\\\": \\\"c\\\"}\"}</tool_call>",
                true, 0, 1, ARGS);
    /* two calls, then a truncated third: the third is text after the calls */
    const char *two = "<tool_call>" CALL "</tool_call><tool_call>" CALL "</tool_call>";
    char buf[512];
    snprintf(buf, sizeof buf, "%s<tool_call>{\"na", two);
    tools_parsed p;
    CHECK(tools_scan(t, buf, strlen(buf), true, &p) == 0 && p.n_calls == 2 &&
              p.tail_off == strlen(two),
          "truncated third call: %d calls, tail at %zu", p.n_calls, p.tail_off);
    tools_parsed_free(&p);
    tools_req_free(t);
}

static void test_scan_llama3_mistral(void) {
    chat_template *l3 = jinja("{% for m in messages %}<|start_header_id|>{{ m.role }}"
                              "<|end_header_id|>{{ m.content }}{% endfor %}{{ tools }}");
    tools_req *t;
    gram_rules *g;
    chat_error e;
    CHECK(setup(l3, "", &t, &g, &e) == 0 && t && t->syntax == TOOLS_LLAMA3 && t->native,
          "llama3 syntax from the template: %s", e.message);
    const char *l3call = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Ur\", "
                         "\"unit\": \"c\"}}";
    expect_scan(t, l3call, true, 0, 1, ARGS);
    char buf[512];
    snprintf(buf, sizeof buf, " <|python_tag|>%s; %s", l3call, l3call);
    expect_scan(t, buf, true, 1, 2, ARGS);
    expect_scan(t, "<|python", false, 0, 0, NULL);
    expect_scan(t, "{\"name\": \"get", false, 0, 0, NULL);
    expect_scan(t, "{\"answer\": 1}", true, 13, 0, NULL); /* JSON, but no call: text */
    expect_scan(t, "The weather {", true, 13, 0, NULL);  /* a call only begins the answer */
    expect_scan(t, "The weather", false, 11, 0, NULL);
    tools_req_free(t);
    chat_template_free(l3);

    chat_template *mi = jinja("{{ tools }}[TOOL_CALLS]{% for m in messages %}{{ m.content }}"
                              "{% endfor %}");
    CHECK(setup(mi, "", &t, &g, &e) == 0 && t && t->syntax == TOOLS_MISTRAL && t->native,
          "mistral syntax from the template: %s", e.message);
    expect_scan(t, "[TOOL_CALLS][" CALL ", {\"name\": \"noargs\", \"arguments\": {}}]", true, 0,
                2, ARGS);
    const char *undeclared = "ok [TOOL_CALLS][" CALL ", {\"name\": \"x\", \"arguments\": {}}]";
    expect_scan(t, undeclared, true, strlen(undeclared), 0, NULL); /* all or nothing */
    expect_scan(t, "ok [TOOL_C", false, 3, 0, NULL);
    /* the marker is a control token, decoded to nothing: an array that begins the answer */
    expect_scan(t, " [" CALL "]", true, 1, 1, ARGS);
    expect_scan(t, " [" CALL ", {\"na", false, 1, 0, NULL);
    expect_scan(t, "  ", false, 0, 0, NULL);
    expect_scan(t, "[1, 2]", true, 6, 0, NULL);
    char id[32];
    tools_call_id(t, "chatcmpl-1", 0, 0, id);
    CHECK(strlen(id) == 9, "a mistral call id has 9 characters: %s", id);
    tools_req_free(t);
    chat_template_free(mi);
}

static bool accepts(const gram_rules *g, const char *text) {
    gram_state *st = gram_state_create(g, NULL);
    bool ok = gram_state_accept_bytes(st, text, strlen(text)) == 0 && gram_state_can_end(st);
    gram_state_free(st);
    return ok;
}

static void test_grammar(void) {
    const chat_template *ct = chat_template_builtin(CHAT_CHATML);
    tools_req *t;
    gram_rules *g;
    chat_error e;
    CHECK(setup(ct, "\"tool_choice\":\"required\"", &t, &g, &e) == 0 && g, "%s", e.message);
    const char *one = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                      "\"Ur\", \"unit\": \"f\"}}\n</tool_call>";
    const char *noargs = "<tool_call>\n{\"name\": \"noargs\", \"arguments\": {}}\n</tool_call>";
    char two[512];
    snprintf(two, sizeof two, "%s\n%s", one, noargs);
    CHECK(accepts(g, one) && accepts(g, noargs) && accepts(g, two), "calls accepted");
    CHECK(!accepts(g, "hello"), "text refused");
    CHECK(!accepts(g, "<tool_call>\n{\"name\": \"rm\", \"arguments\": {}}\n</tool_call>"),
          "an undeclared tool refused");
    CHECK(!accepts(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                      "\"Ur\", \"unit\": \"k\"}}\n</tool_call>"),
          "arguments outside the schema refused");
    CHECK(!accepts(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                      "\"Ur\"}}\n</tool_call>"),
          "a missing required argument refused");
    /* every call the grammar gives is read back */
    expect_scan(t, two, true, 0, 2, "{\"city\":\"Ur\",\"unit\":\"f\"}");
    gram_rules_free(g);
    tools_req_free(t);

    CHECK(setup(ct, "\"tool_choice\":\"required\",\"parallel_tool_calls\":false", &t, &g, &e) ==
              0 && g,
          "%s", e.message);
    CHECK(accepts(g, one) && !accepts(g, two), "parallel_tool_calls false: one call");
    gram_rules_free(g);
    tools_req_free(t);

    CHECK(setup(ct, "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"noargs\"}}",
                &t, &g, &e) == 0 && g && t->choice == TOOL_CHOICE_NAMED,
          "%s", e.message);
    CHECK(accepts(g, noargs) && !accepts(g, one), "a named function: only it");
    gram_rules_free(g);
    tools_req_free(t);

    /* tool_choice none: nothing is read, nothing forced */
    CHECK(setup(ct, "\"tool_choice\":\"none\"", &t, &g, &e) == 0 && !t && !g, "none");
}

static void expect_error(const char *extra, const char *param, const char *needle) {
    tools_req *t = NULL;
    gram_rules *g = NULL;
    chat_error e;
    int rc = setup(chat_template_builtin(CHAT_LLAMA2), extra, &t, &g, &e);
    CHECK(rc == -1 && e.status == 400 && strcmp(e.param, param) == 0 &&
              strstr(e.message, needle),
          "%s: rc %d, param '%s', message '%s'", extra, rc, rc ? e.param : "",
          rc ? e.message : "");
    if (!rc) {
        tools_req_free(t);
        gram_rules_free(g);
    }
}

static void test_errors(void) {
    expect_error("\"tool_choice\":\"always\"", "tool_choice", "must be");
    expect_error("\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"rm\"}}",
                 "tool_choice", "'rm'");
    expect_error("\"parallel_tool_calls\":1", "parallel_tool_calls", "boolean");
    expect_error("\"functions\":[]", "functions", "tools");
    /* a body whose tools are wrong: built by hand, TOOLS_JSON is fine */
    const char *bodies[][3] = {
        {"{\"messages\":[],\"tools\":{}}", "tools", "array"},
        {"{\"messages\":[],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}",
         "tools", "tools[0].function.name"},
        {"{\"messages\":[],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
         "{\"type\":\"function\",\"function\":{\"name\":\"a\"}}]}",
         "tools", "declared twice"},
        {"{\"messages\":[],\"tools\":[{\"type\":\"retrieval\"}]}", "tools", "tools[0].type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}",
         "tool_choice", "needs 'tools'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\","
         "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":{"
         "\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"pattern\":\"(\"}}}}}]}",
         "tools", "tools[0].function.parameters"},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        cJSON *o = cJSON_Parse(bodies[i][0]), *msgs, *tools;
        tools_req *t;
        gram_rules *g;
        chat_error e;
        int rc = tools_setup(chat_template_builtin(CHAT_LLAMA2), o, true, &t, &msgs, &tools, &g,
                             &e);
        CHECK(rc == -1 && e.status == 400 && strcmp(e.param, bodies[i][1]) == 0 &&
                  strstr(e.message, bodies[i][2]),
              "%s: rc %d '%s' '%s'", bodies[i][0], rc, rc ? e.param : "", rc ? e.message : "");
        cJSON_Delete(o);
    }
}

/* The generic format: the tools offered in the system turn, a call and its results as text. */
static void test_generic_messages(void) {
    const char *src =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\","
        "\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{"
        "\"name\":\"noargs\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\","
        "\"content\":\"r1\"},{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"r2\"}],"
        "\"tools\":" TOOLS_JSON "}";
    cJSON *o = cJSON_Parse(src), *msgs, *tools;
    tools_req *t;
    chat_error e;
    CHECK(tools_setup(chat_template_builtin(CHAT_LLAMA2), o, false, &t, &msgs, &tools, NULL,
                      &e) == 0,
          "%s", e.message);
    CHECK(cJSON_GetArraySize(msgs) == 4 && !tools, "system + 3 turns, tools in the text");
    const char *want[4][2] = {{"system", "<tools>"}, {"user", "w?"},
                              {"assistant", "<tool_call>\n{\"name\": \"noargs\", \"arguments\": "
                                            "{}}\n</tool_call>"},
                              {"user", "<tool_response>\nr1\n</tool_response>\n"
                                       "<tool_response>\nr2\n</tool_response>"}};
    for (int i = 0; i < 4; i++) {
        const cJSON *m = cJSON_GetArrayItem(msgs, i);
        const char *role = cJSON_GetObjectItem(m, "role")->valuestring;
        const char *content = cJSON_GetObjectItem(m, "content")->valuestring;
        CHECK(strcmp(role, want[i][0]) == 0 && strstr(content, want[i][1]),
              "message %d: %s: %s", i, role, content);
    }
    cJSON_Delete(msgs);
    tools_req_free(t);
    cJSON_Delete(o);
}

/* Native templates get arguments as objects when the string holds one; other strings (not
 * JSON, or JSON of another kind) stay strings, and are no error. */
static void test_native_arguments(void) {
    chat_template *ct = jinja("{% for m in messages %}{{ m.tool_calls | tojson }}{% endfor %}");
    const char *args[][2] = {{"{\\\"c\\\": [1, 2.5e3, \\\"\\\\u00e9\\\"]}", "object"},
                             {"{c: 1}", "string"},
                             {"[1]", "string"},
                             {"{\\\"c\\\": \\\"\\\\ud800\\\"}", "string"}};
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        char buf[512];
        snprintf(buf, sizeof buf,
                 "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
                 "\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":\"w\","
                 "\"arguments\":\"%s\"}}]}]}",
                 args[i][0]);
        cJSON *o = cJSON_Parse(buf), *msgs, *tools;
        CHECK(o != NULL, "%s", buf);
        tools_req *t;
        chat_error e;
        int rc = tools_setup(ct, o, false, &t, &msgs, &tools, NULL, &e);
        CHECK(rc == 0, "%s: %s", args[i][0], rc ? e.message : "");
        if (rc == 0) {
            const cJSON *a = cJSON_GetObjectItem(
                cJSON_GetObjectItem(
                    cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0),
                                                           "tool_calls"),
                                       0),
                    "function"),
                "arguments");
            bool obj = cJSON_IsObject(a);
            CHECK(obj == (strcmp(args[i][1], "object") == 0), "%s: %s", args[i][0],
                  obj ? "object" : "not an object");
            cJSON_Delete(msgs);
            cJSON_Delete(tools);
        }
        cJSON_Delete(o);
    }
    chat_template_free(ct);
}

int main(void) {
    test_scan_hermes();
    test_scan_llama3_mistral();
    test_grammar();
    test_errors();
    test_generic_messages();
    test_native_arguments();
    return check_summary();
}
