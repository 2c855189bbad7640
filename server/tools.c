/* tools: OpenAI function calling (see tools.h): the request fields, the messages a template
 * sees, the grammar that forces a call, and reading calls back out of generated text. Owns
 * nothing between calls; never touches a job or the model. */
#include "tools.h"

#include "common.h"
#include "json_schema.h"
#include "strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(chat_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(chat_error *e, const char *param, const char *fmt, ...) {
    e->status = 400;
    snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(chat_error *e) {
    e->status = 503;
    e->param[0] = '\0';
    snprintf(e->message, sizeof e->message, "out of memory");
    return -1;
}

static const cJSON *get(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static bool absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* The text (caller frees; "" when nothing was added), or NULL after an allocation failed. */
static char *sb_take(strbuf *b) {
    if (!b->oom && !b->s) strbuf_add(b, "%s", "");
    if (b->oom) {
        free(b->s);
        b->s = NULL;
    }
    return b->s;
}

/* OpenAI's rule for function names: 1 to 64 of [a-zA-Z0-9_-]. It also keeps names out of
 * the need for escaping in the grammar and the prompt. */
static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

/* tools[i].function.name, for a request's validated tools. */
static const char *tool_name(const cJSON *tool) {
    return get(get(tool, "function"), "name")->valuestring;
}

static const cJSON *find_tool(const tools_req *t, const char *name) {
    const cJSON *it;
    cJSON_ArrayForEach(it, t->tools) if (strcmp(tool_name(it), name) == 0) return it;
    return NULL;
}

void tools_req_free(tools_req *t) {
    if (!t) return;
    cJSON_Delete(t->tools);
    free(t);
}

bool tools_active(const tools_req *t) { return t && t->n > 0 && t->choice != TOOL_CHOICE_NONE; }

/* ------------------------------------------------------------------ request fields */

static int check_tool(const cJSON *it, int i, const cJSON *list, chat_error *e) {
    char p[96];
    snprintf(p, sizeof p, "tools[%d]", i);
    if (!cJSON_IsObject(it)) return bad(e, "tools", "%s must be an object", p);
    const cJSON *type = get(it, "type"), *fn = get(it, "function");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0)
        return bad(e, "tools", "%s.type must be \"function\"", p);
    if (!cJSON_IsObject(fn)) return bad(e, "tools", "%s.function must be an object", p);
    const cJSON *name = get(fn, "name"), *desc = get(fn, "description"),
                *params = get(fn, "parameters"), *strict = get(fn, "strict");
    if (!cJSON_IsString(name) || !valid_name(name->valuestring))
        return bad(e, "tools", "%s.function.name must be 1 to 64 letters, digits, '_' or '-'", p);
    if (!absent(desc) && !cJSON_IsString(desc))
        return bad(e, "tools", "%s.function.description must be a string", p);
    if (!absent(params) && !cJSON_IsObject(params))
        return bad(e, "tools", "%s.function.parameters must be a JSON Schema object", p);
    if (!absent(strict) && !cJSON_IsBool(strict))
        return bad(e, "tools", "%s.function.strict must be a boolean", p);
    const cJSON *before;
    int j = 0;
    cJSON_ArrayForEach(before, list) {
        if (j++ == i) break;
        if (strcmp(tool_name(before), name->valuestring) == 0)
            return bad(e, "tools", "%s.function.name '%s' is declared twice", p,
                       name->valuestring);
    }
    return 0;
}

static int parse_choice(const cJSON *o, tools_req *t, chat_error *e) {
    const cJSON *tc = get(o, "tool_choice");
    t->choice = t->n ? TOOL_CHOICE_AUTO : TOOL_CHOICE_NONE;
    if (absent(tc)) return 0;
    const char *want = "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                       "{\"type\": \"function\", \"function\": {\"name\": ...}}";
    if (cJSON_IsString(tc)) {
        const char *s = tc->valuestring;
        if (strcmp(s, "none") == 0) t->choice = TOOL_CHOICE_NONE;
        else if (strcmp(s, "auto") == 0) t->choice = TOOL_CHOICE_AUTO;
        else if (strcmp(s, "required") == 0) t->choice = TOOL_CHOICE_REQUIRED;
        else return bad(e, "tool_choice", "%s", want);
    } else if (cJSON_IsObject(tc)) {
        const cJSON *type = get(tc, "type"), *name = get(get(tc, "function"), "name");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 ||
            !cJSON_IsString(name))
            return bad(e, "tool_choice", "%s", want);
        if (!t->n || !find_tool(t, name->valuestring))
            return bad(e, "tool_choice", "'tool_choice' names the function '%.64s', which "
                       "'tools' does not declare", name->valuestring);
        t->choice = TOOL_CHOICE_NAMED;
        snprintf(t->forced, sizeof t->forced, "%s", name->valuestring);
    } else {
        return bad(e, "tool_choice", "%s", want);
    }
    if (t->choice != TOOL_CHOICE_NONE && !t->n)
        return bad(e, "tool_choice", "'tool_choice' other than \"none\" needs 'tools'");
    return 0;
}

/* tools, tool_choice, parallel_tool_calls -> t (t->tools stays NULL without tools). */
static int parse_fields(const cJSON *o, tools_req *t, chat_error *e) {
    const cJSON *fc = get(o, "function_call"); /* "none" asks for nothing: accepted */
    bool fc_none = cJSON_IsString(fc) && strcmp(fc->valuestring, "none") == 0;
    if (!absent(get(o, "functions")) || (!absent(fc) && !fc_none))
        return bad(e, !absent(get(o, "functions")) ? "functions" : "function_call",
                   "the deprecated 'functions' and 'function_call' are not supported; send "
                   "'tools' and 'tool_choice'");
    const cJSON *tl = get(o, "tools"), *par = get(o, "parallel_tool_calls");
    t->parallel = true;
    if (!absent(par)) {
        if (!cJSON_IsBool(par))
            return bad(e, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
        t->parallel = cJSON_IsTrue(par);
    }
    if (!absent(tl)) {
        if (!cJSON_IsArray(tl)) return bad(e, "tools", "'tools' must be an array of tools");
        int n = cJSON_GetArraySize(tl), i = 0;
        if (n > TOOLS_MAX) return bad(e, "tools", "'tools' holds at most %d tools", TOOLS_MAX);
        const cJSON *it;
        cJSON_ArrayForEach(it, tl) if (check_tool(it, i++, tl, e)) return -1;
        if (n && !(t->tools = cJSON_Duplicate(tl, true))) return oom(e);
        t->n = n;
    }
    return parse_choice(o, t, e);
}

/* The call syntax from the template's text (see tools.h). */
static void detect_syntax(const chat_template *ct, tools_syntax *syntax, bool *native) {
    const char *s = chat_template_text(ct);
    *syntax = TOOLS_HERMES;
    *native = false;
    if (!s || !strstr(s, "tool")) return; /* no word of tools: the generic format */
    *native = true; /* the template renders tools and tool turns its own way */
    if (strstr(s, "<tool_call>")) *syntax = TOOLS_HERMES;
    else if (strstr(s, "[TOOL_CALLS]")) *syntax = TOOLS_MISTRAL;
    else if (strstr(s, "<|start_header_id|>")) *syntax = TOOLS_LLAMA3;
}

/* ------------------------------------------------------------------ JSON syntax */

/* Whether s[*p..n) starts with one JSON value (RFC 8259), advancing *p past it; allocates
 * nothing, so that a cJSON parse that failed on valid JSON is known to have run out of memory.
 * Lone UTF-16 surrogates fail, as they do in cJSON; depth is bounded like cJSON's. */
static bool json_value(const char *s, size_t n, size_t *p, int depth);

static size_t ws_at(const char *s, size_t n, size_t p) {
    while (p < n && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) p++;
    return p;
}

static long hex4(const char *s, size_t n, size_t p) {
    if (p + 4 > n) return -1;
    long v = 0;
    for (size_t i = p; i < p + 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static bool json_string(const char *s, size_t n, size_t *p) {
    size_t i = *p + 1;
    while (i < n && s[i] != '"') {
        if ((unsigned char)s[i] < 0x20) return false;
        if (s[i++] != '\\') continue;
        if (i >= n) return false;
        if (strchr("\"\\/bfnrt", s[i]) && s[i]) {
            i++;
            continue;
        }
        long u = s[i] == 'u' ? hex4(s, n, i + 1) : -1;
        if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;
        i += 5;
        if (u >= 0xD800 && u <= 0xDBFF) { /* a high surrogate wants its low one */
            long lo = i + 1 < n && s[i] == '\\' && s[i + 1] == 'u' ? hex4(s, n, i + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return false;
            i += 6;
        }
    }
    if (i >= n) return false;
    *p = i + 1;
    return true;
}

static bool json_number(const char *s, size_t n, size_t *p) {
    size_t i = *p;
    if (i < n && s[i] == '-') i++;
    if (i < n && s[i] == '0') i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9') while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    else return false;
    if (i < n && s[i] == '.') {
        if (++i >= n || s[i] < '0' || s[i] > '9') return false;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        if (++i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return false;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    *p = i;
    return true;
}

/* The members of an object or the items of an array, from just past its opening bracket. */
static bool json_container(const char *s, size_t n, size_t *p, int depth) {
    char close = s[*p] == '{' ? '}' : ']';
    size_t i = ws_at(s, n, *p + 1);
    if (i < n && s[i] == close) {
        *p = i + 1;
        return true;
    }
    for (;;) {
        if (close == '}') {
            if (i >= n || s[i] != '"' || !json_string(s, n, &i)) return false;
            i = ws_at(s, n, i);
            if (i >= n || s[i] != ':') return false;
            i = ws_at(s, n, i + 1);
        }
        if (!json_value(s, n, &i, depth + 1)) return false;
        i = ws_at(s, n, i);
        if (i < n && s[i] == ',') {
            i = ws_at(s, n, i + 1);
            continue;
        }
        if (i < n && s[i] == close) break;
        return false;
    }
    *p = i + 1;
    return true;
}

static bool json_value(const char *s, size_t n, size_t *p, int depth) {
    size_t i = *p;
    if (i >= n || depth > 1000) return false;
    if (s[i] == '{' || s[i] == '[') return json_container(s, n, p, depth);
    if (s[i] == '"') return json_string(s, n, p);
    const char *lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (n - i >= l && memcmp(s + i, lits[k], l) == 0) {
            *p = i + l;
            return true;
        }
    }
    return json_number(s, n, p);
}

/* Whether text is one JSON value, whitespace around it allowed. */
static bool json_valid(const char *text) {
    size_t n = strlen(text), p = ws_at(text, n, 0);
    return json_value(text, n, &p, 0) && ws_at(text, n, p) == n;
}

/* ------------------------------------------------------------------ the prompt */

/* Native templates read tool_calls[].function.arguments as an object (Llama 3.1's tojson
 * would quote a string twice): each string that holds a JSON object becomes that object. And
 * an assistant's null content becomes "" (Qwen3's template tests `'</think>' in content`). */
static int args_to_objects(cJSON *msgs, chat_error *e) {
    cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content"), *call;
        if (cJSON_IsNull(content)) {
            cJSON *empty = cJSON_CreateString("");
            if (!empty) return oom(e);
            cJSON_Delete(cJSON_DetachItemViaPointer(m, content));
            if (!cJSON_AddItemToObjectCS(m, "content", empty)) {
                cJSON_Delete(empty);
                return oom(e);
            }
        }
        cJSON_ArrayForEach(call, get(m, "tool_calls")) {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            cJSON *a = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
            if (!cJSON_IsString(a)) continue;
            cJSON *obj = cJSON_Parse(a->valuestring);
            if (!obj && json_valid(a->valuestring)) return oom(e); /* valid: memory failed */
            if (!cJSON_IsObject(obj)) {
                cJSON_Delete(obj);
                continue;
            }
            cJSON_Delete(cJSON_DetachItemViaPointer(fn, a));
            /* the key is a constant: nothing to allocate, so nothing to lose */
            if (!cJSON_AddItemToObjectCS(fn, "arguments", obj)) {
                cJSON_Delete(obj);
                return oom(e);
            }
        }
    }
    return 0;
}

/* One earlier call as a <tool_call> block. Arguments sent as JSON text (the wire form) go in
 * as written; anything else is printed as JSON. */
static void put_call(strbuf *f, const char *name, const cJSON *args) {
    const char *raw = cJSON_IsString(args) ? args->valuestring : NULL;
    while (raw && (*raw == ' ' || *raw == '\n' || *raw == '\t' || *raw == '\r')) raw++;
    char *a = NULL;
    if (!raw || *raw != '{') {
        if (args && !(a = cJSON_PrintUnformatted(args))) f->oom = true;
    }
    strbuf_add(f, "<tool_call>\n{\"name\": \"%s\", \"arguments\": %s}\n</tool_call>", name,
           raw && *raw == '{' ? cJSON_GetStringValue(args) : a ? a : "{}");
    free(a);
}

/* The system text that offers t's tools in the generic format: short, as a small model's
 * context is (the demo model has 256 positions). */
static void put_offer(strbuf *f, const tools_req *t) {
    strbuf_add(f, "%s", "You may call these functions:\n<tools>\n");
    const cJSON *it;
    cJSON_ArrayForEach(it, t->tools) {
        char *s = cJSON_PrintUnformatted(get(it, "function"));
        if (!s) f->oom = true;
        strbuf_add(f, "%s\n", s ? s : "");
        free(s);
    }
    strbuf_add(f, "%s", "</tools>\nTo call one, answer <tool_call>\n{\"name\": ..., \"arguments\": "
                    "{...}}\n</tool_call>");
}

/* One message of the generic format: {role, content} with content as text. NULL when memory
 * is short or the history is malformed (e names which). */
static char *generic_text(const cJSON *m, int i, chat_error *e) {
    strbuf b = {0}, *f = &b;
    const cJSON *content = get(m, "content"), *calls = get(m, "tool_calls"), *call;
    const char *role = get(m, "role")->valuestring;
    bool tool = strcmp(role, "tool") == 0;
    if (tool) strbuf_add(f, "%s", "<tool_response>\n");
    if (cJSON_IsString(content)) strbuf_add(f, "%s", content->valuestring);
    if (tool) strbuf_add(f, "%s", "\n</tool_response>");
    int k = 0;
    cJSON_ArrayForEach(call, calls) {
        const cJSON *fn = get(call, "function"), *name = get(fn, "name");
        if (!cJSON_IsString(name) || !valid_name(name->valuestring)) {
            free(b.s);
            char p[96];
            snprintf(p, sizeof p, "messages[%d].tool_calls[%d]", i, k);
            return bad(e, p, "%s.function.name must be a function's name", p), NULL;
        }
        if (f->n > 0) strbuf_add(f, "%c", '\n');
        put_call(f, name->valuestring, get(fn, "arguments"));
        k++;
    }
    char *text = sb_take(f);
    if (!text) return oom(e), NULL;
    return text;
}

static cJSON *text_message(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", role) ||
        !cJSON_AddStringToObject(m, "content", content)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* The generic format: msgs (normalized) as plain system/user/assistant text, the tools offered
 * in the system message when offer is non-NULL. Consecutive tool results make one user turn,
 * so that formats that want user and assistant to alternate (Llama 2) accept the history. */
static cJSON *generic_messages(const cJSON *msgs, const tools_req *offer, chat_error *e) {
    cJSON *out = cJSON_CreateArray();
    char *sys = NULL, *text = NULL;
    if (!out) goto oom;
    const cJSON *m = msgs->child;
    if (offer) {
        strbuf b = {0}, *f = &b;
        const cJSON *first = get(m, "content");
        if (strcmp(get(m, "role")->valuestring, "system") == 0) {
            if (cJSON_IsString(first)) strbuf_add(f, "%s\n\n", first->valuestring);
            m = m->next;
        }
        put_offer(f, offer);
        if (!(sys = sb_take(f))) goto oom;
        cJSON *sm = text_message("system", sys);
        if (!sm || !cJSON_AddItemToArray(out, sm)) goto oom;
    }
    bool last_tool = false;
    for (int i = offer && m != msgs->child ? 1 : 0; m; m = m->next, i++) {
        const char *role = get(m, "role")->valuestring;
        bool tool = strcmp(role, "tool") == 0;
        if (!(text = generic_text(m, i, e))) goto fail;
        cJSON *prev = cJSON_GetArrayItem(out, cJSON_GetArraySize(out) - 1);
        if (tool && last_tool && prev) { /* joins the previous tool results' user turn */
            const char *pc = get(prev, "content")->valuestring;
            size_t n = strlen(pc) + strlen(text) + 2;
            char *both = malloc(n);
            if (!both) goto oom;
            snprintf(both, n, "%s\n%s", pc, text);
            cJSON *nm = text_message("user", both);
            free(both);
            if (!nm || !cJSON_ReplaceItemViaPointer(out, prev, nm)) {
                cJSON_Delete(nm);
                goto oom;
            }
        } else {
            cJSON *nm = text_message(tool ? "user" : role, text);
            if (!nm || !cJSON_AddItemToArray(out, nm)) {
                cJSON_Delete(nm);
                goto oom;
            }
        }
        free(text);
        text = NULL;
        last_tool = tool;
    }
    free(sys);
    return out;
oom:
    oom(e);
fail:
    free(sys);
    free(text);
    cJSON_Delete(out);
    return NULL;
}

/* ------------------------------------------------------------------ the forcing grammar */

/* text as a GBNF string literal. */
static void put_lit(strbuf *f, const char *text) {
    strbuf_add(f, "%c", '"');
    for (const char *s = text; *s; s++) {
        if (*s == '"' || *s == '\\') strbuf_add(f, "\\%c", *s);
        else if (*s == '\n') strbuf_add(f, "%s", "\\n");
        else strbuf_add(f, "%c", *s);
    }
    strbuf_add(f, "%c", '"');
}

/* The rule "callK ::= ..." for tool k: its name and arguments that follow its parameters'
 * schema (none: an empty object), in t's syntax. *next: json_schema's rule counter. */
static int put_call_rule(strbuf *f, const tools_req *t, const cJSON *tool, int k, int *next,
                         chat_error *e) {
    const cJSON *params = get(get(tool, "function"), "parameters");
    char args[32] = "\"{\" ws \"}\"", head[160];
    if (!absent(params)) {
        char err[384], path[256];
        int top;
        char *rules = json_schema_gbnf_rules(params, true, next, &top, err, sizeof err, path,
                                             sizeof path);
        if (!rules && strncmp(err, "out of memory", 13) == 0) return oom(e);
        if (!rules)
            return bad(e, "tools", "tools[%d].function.parameters: invalid or unsupported JSON "
                       "Schema: %s", k, err);
        strbuf_add(f, "%s", rules);
        free(rules);
        snprintf(args, sizeof args, "r%d", top);
    }
    const char *name = tool_name(tool);
    switch (t->syntax) {
    case TOOLS_LLAMA3:
        snprintf(head, sizeof head, "{\"name\": \"%s\", \"parameters\": ", name);
        break;
    case TOOLS_MISTRAL:
        snprintf(head, sizeof head, "{\"name\": \"%s\", \"arguments\": ", name);
        break;
    default:
        snprintf(head, sizeof head, "<tool_call>\n{\"name\": \"%s\", \"arguments\": ", name);
    }
    strbuf_add(f, "call%d ::= ", k);
    put_lit(f, head);
    strbuf_add(f, " %s ", args);
    put_lit(f, t->syntax == TOOLS_HERMES ? "}\n</tool_call>" : "}");
    strbuf_add(f, "%c", '\n');
    return 0;
}

/* The GBNF text of tool_choice required / named (see tools.h). Caller frees. */
static char *call_gbnf(const tools_req *t, chat_error *e) {
    strbuf b = {0}, *f = &b;
    int next = 0, k = 0, n_alt = 0;
    const cJSON *it;
    strbuf_add(f, "%s", "call ::=");
    cJSON_ArrayForEach(it, t->tools) {
        if (t->choice != TOOL_CHOICE_NAMED || strcmp(tool_name(it), t->forced) == 0)
            strbuf_add(f, "%s call%d", n_alt++ ? " |" : "", k);
        k++;
    }
    strbuf_add(f, "%c", '\n');
    k = 0;
    cJSON_ArrayForEach(it, t->tools) {
        if ((t->choice != TOOL_CHOICE_NAMED || strcmp(tool_name(it), t->forced) == 0) &&
            put_call_rule(f, t, it, k, &next, e)) {
            free(b.s);
            return NULL;
        }
        k++;
    }
    int more = t->parallel ? TOOLS_MAX_CALLS - 1 : 0;
    if (t->syntax == TOOLS_MISTRAL)
        strbuf_add(f, "root ::= \"[\" call ( \", \" call ){0,%d} \"]\"\n", more); /* the
            [TOOL_CALLS] marker is a control token: the model may not spell it in text */
    else
        strbuf_add(f, "root ::= call ( \"\\n\" call ){0,%d}\n", more);
    strbuf_add(f, "%s", json_schema_fixed_gbnf());
    char *text = sb_take(f);
    if (!text) return oom(e), NULL;
    return text;
}

static int call_grammar(const tools_req *t, gram_rules **g, chat_error *e) {
    *g = NULL;
    if (t->choice != TOOL_CHOICE_REQUIRED && t->choice != TOOL_CHOICE_NAMED) return 0;
    char *text = call_gbnf(t, e);
    if (!text) return -1;
    char err[256];
    *g = gram_parse(text, strlen(text), err, sizeof err);
    free(text);
    if (!*g && strncmp(err, "grammar: out of memory", 22) == 0) return oom(e);
    if (!*g) return bad(e, "tools", "the tools gave an invalid grammar (a bug): %s", err);
    return 0;
}

/* ------------------------------------------------------------------ setup */

static bool has_tool_turns(const cJSON *msgs) {
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        if (strcmp(get(m, "role")->valuestring, "tool") == 0 ||
            cJSON_GetArraySize(get(m, "tool_calls")) > 0)
            return true;
    }
    return false;
}

int tools_setup(const chat_template *ct, const cJSON *o, bool for_generation, tools_req **tp,
                cJSON **msgs, cJSON **tools, gram_rules **g, chat_error *e) {
    *tp = NULL;
    *msgs = *tools = NULL;
    if (g) *g = NULL;
    tools_req *t = calloc(1, sizeof *t);
    cJSON *norm = NULL;
    if (!t) return oom(e);
    if (parse_fields(o, t, e)) goto fail;
    detect_syntax(ct, &t->syntax, &t->native);
    if (chat_messages_normalize(get(o, "messages"), &norm, e)) goto fail;
    if (t->native) {
        if (args_to_objects(norm, e)) goto fail;
        if (tools_active(t) && !(*tools = cJSON_Duplicate(t->tools, true))) goto oom;
        *msgs = norm;
        norm = NULL;
    } else if (!tools_active(t) && !has_tool_turns(norm)) {
        *msgs = norm; /* nothing to rewrite: every other field of the messages stays */
        norm = NULL;
    } else if (!(*msgs = generic_messages(norm, tools_active(t) ? t : NULL, e))) {
        goto fail;
    }
    if (for_generation && g && tools_active(t) && call_grammar(t, g, e)) goto fail;
    cJSON_Delete(norm);
    if (tools_active(t)) *tp = t;
    else tools_req_free(t);
    return 0;
oom:
    oom(e);
fail:
    cJSON_Delete(norm);
    cJSON_Delete(*msgs);
    cJSON_Delete(*tools);
    *msgs = *tools = NULL;
    tools_req_free(t);
    return -1;
}

/* ------------------------------------------------------------------ reading calls */

/* The length of the JSON object or array at s[0] (string-aware bracket matching), 0 when it
 * is not complete within n bytes, -1 when s[0] opens neither. cJSON checks the rest. */
static long json_extent(const char *s, size_t n) {
    if (n == 0 || (s[0] != '{' && s[0] != '[')) return -1;
    int depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return (long)i + 1;
        }
    }
    return 0;
}

/* The longest proper prefix of marker that text[0, len) ends with: text that may yet become
 * the marker. */
static size_t partial_marker(const char *text, size_t len, const char *marker) {
    size_t m = strlen(marker);
    for (size_t k = m - 1 < len ? m - 1 : len; k > 0; k--)
        if (memcmp(text + len - k, marker, k) == 0) return k;
    return 0;
}

static size_t skip_ws(const char *s, size_t p, size_t len) {
    while (p < len && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) p++;
    return p;
}

static bool starts(const char *s, size_t p, size_t len, const char *lit) {
    size_t n = strlen(lit);
    return len - p >= n && memcmp(s + p, lit, n) == 0;
}

/* Whether text[p, len) is a proper prefix of lit (more bytes may complete it). */
static bool may_start(const char *s, size_t p, size_t len, const char *lit) {
    size_t n = strlen(lit);
    return len - p < n && memcmp(s + p, lit, len - p) == 0;
}

/* One call object -> out->calls: 1, 0 when it is no call of a declared tool, -1 for memory. */
static int add_call(const tools_req *t, const cJSON *obj, tools_parsed *out) {
    const cJSON *name = get(obj, "name"), *args = get(obj, "arguments");
    if (!args) args = get(obj, "parameters");
    if (!cJSON_IsObject(obj) || !cJSON_IsString(name) || !find_tool(t, name->valuestring))
        return 0;
    cJSON *parsed = NULL;
    if (cJSON_IsString(args)) args = parsed = cJSON_Parse(args->valuestring);
    char *a = !args ? strdup("{}") : cJSON_IsObject(args) ? cJSON_PrintUnformatted(args) : NULL;
    bool ok_args = !args || cJSON_IsObject(args);
    cJSON_Delete(parsed);
    if (!ok_args) return 0;
    char *nm = strdup(name->valuestring);
    tool_call *calls = realloc(out->calls, (size_t)(out->n_calls + 1) * sizeof *calls);
    if (!a || !nm || !calls) {
        free(a);
        free(nm);
        if (calls) out->calls = calls;
        return -1;
    }
    out->calls = calls;
    calls[out->n_calls].name = nm;
    calls[out->n_calls].arguments = a;
    out->n_calls++;
    return 1;
}

/* The call(s) in the JSON text s[0, n): an object, or for mistral an array of them. 1 when
 * every one is a call, 0 otherwise (none added), -1 for memory. */
static int add_calls(const tools_req *t, const char *s, size_t n, tools_parsed *out) {
    cJSON *v = cJSON_ParseWithLength(s, n);
    if (!v) return 0;
    int before = out->n_calls, rc = 1;
    if (cJSON_IsArray(v) && t->syntax == TOOLS_MISTRAL) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) if ((rc = add_call(t, it, out)) != 1) break;
        if (!v->child) rc = 0;
    } else {
        rc = add_call(t, v, out);
    }
    cJSON_Delete(v);
    if (rc != 1) { /* all or nothing */
        for (int i = before; i < out->n_calls; i++) {
            free(out->calls[i].name);
            free(out->calls[i].arguments);
        }
        out->n_calls = before;
    }
    return rc;
}

void tools_parsed_free(tools_parsed *p) {
    for (int i = 0; i < p->n_calls; i++) {
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    memset(p, 0, sizeof *p);
}

#define PYTHON_TAG "<|python_tag|>"

/* Where the first call may start: for hermes and mistral their marker anywhere; for llama3 a
 * JSON object (after <|python_tag|>) that the whole answer begins with. Sets content_len and
 * returns false when there is no call (yet). */
static bool find_first(const tools_req *t, const char *text, size_t len, bool final,
                       tools_parsed *out, size_t *at) {
    if (t->syntax != TOOLS_LLAMA3) {
        const char *open = t->syntax == TOOLS_HERMES ? "<tool_call>" : "[TOOL_CALLS]";
        const char *m = memmem(text, len, open, strlen(open));
        size_t p = skip_ws(text, 0, len);
        /* Mistral's marker is a control token, which decodes to no text: an answer that
         * begins with an array is read as calls too */
        if (!m && t->syntax == TOOLS_MISTRAL && (p == len ? !final : text[p] == '[')) {
            out->content_len = 0;
            *at = p;
            return p < len;
        }
        if (!m && !final) out->content_len = len - partial_marker(text, len, open);
        *at = m ? (size_t)(m - text) : len;
        return m != NULL;
    }
    size_t p = skip_ws(text, 0, len), q = p;
    if (starts(text, q, len, PYTHON_TAG)) q = skip_ws(text, q + strlen(PYTHON_TAG), len);
    else if (!final && may_start(text, q, len, PYTHON_TAG)) out->content_len = 0;
    if (q < len && text[q] == '{') {
        *at = p;
        return true;
    }
    if (!final && q >= len) out->content_len = 0;
    return false;
}

int tools_scan(const tools_req *t, const char *text, size_t len, bool final, tools_parsed *out) {
    memset(out, 0, sizeof *out);
    out->content_len = out->tail_off = len;
    size_t p;
    if (!find_first(t, text, len, final, out, &p)) return 0;
    const char *open = t->syntax == TOOLS_HERMES ? "<tool_call>"
                       : t->syntax == TOOLS_MISTRAL ? "[TOOL_CALLS]" : NULL;
    const char *close = t->syntax == TOOLS_HERMES ? "</tool_call>" : NULL;
    const char *lead = open ? open : "{";
    out->content_len = p;
    size_t tail = p;
    for (;;) {
        size_t q = p + (open && starts(text, p, len, open) ? strlen(open) : 0);
        if (!open && starts(text, q, len, PYTHON_TAG)) q += strlen(PYTHON_TAG);
        q = skip_ws(text, q, len);
        long ext = json_extent(text + q, len - q);
        if (ext == 0 && !final) break;
        if (ext <= 0) break;
        size_t r = q + (size_t)ext;
        if (close) { /* a missing close is forgiven at the very end */
            size_t c = skip_ws(text, r, len);
            if (starts(text, c, len, close)) r = c + strlen(close);
            else if (!final || c < len) break;
        }
        int rc = add_calls(t, text + q, (size_t)ext, out);
        if (rc < 0) {
            tools_parsed_free(out);
            return -1;
        }
        if (rc == 0) break;
        tail = r;
        size_t nx = skip_ws(text, r, len);
        while (!open && nx < len && text[nx] == ';') nx = skip_ws(text, nx + 1, len);
        if (!starts(text, nx, len, lead) && !(!open && starts(text, nx, len, PYTHON_TAG)))
            break;
        p = nx;
    }
    out->tail_off = tail;
    if (final && out->n_calls == 0) out->content_len = out->tail_off = len;
    return 0;
}

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void tools_call_id(const tools_req *t, const char *resp_id, int i, int k, char out[32]) {
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the response id, then the indices */
    for (const char *s = resp_id; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = mix64(h ^ ((uint64_t)i << 32 | (uint32_t)k));
    bool mistral = t->syntax == TOOLS_MISTRAL;
    int o = 0, n = mistral ? 9 : 24;
    if (!mistral) {
        memcpy(out, "call_", 5);
        o = 5;
    }
    for (int j = 0; j < n; j++) {
        h = mix64(h);
        out[o++] = alnum[h % 62];
    }
    out[o] = '\0';
}
