/* test_grammar: engine/grammar.c. Parse errors name their position; strings are accepted or
 * rejected as the grammar says (repetition bounds, classes, negation, UTF-8 split across
 * tokens); masks from the trie walk equal a naive walk over every token of a vocabulary, step
 * by step along sampled paths; EOS only where the grammar may end. */
#include "check.h"
#include "grammar.h"
#include "model.h"
#include "sampler.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static gram_rules *parse(const char *text) {
    char err[256];
    gram_rules *g = gram_parse(text, strlen(text), err, sizeof err);
    CHECK(g != NULL, "parse failed: %s\n%s", err, text);
    return g;
}

/* Whether text (n bytes) is a complete sentence: 1 yes, 0 a valid prefix only, -1 rejected. */
static int match_n(const gram_rules *g, const char *text, size_t n) {
    gram_state *st = gram_state_create(g, NULL);
    int r = gram_state_accept_bytes(st, text, n) < 0 ? -1 : gram_state_can_end(st) ? 1 : 0;
    gram_state_free(st);
    return r;
}
static int match(const gram_rules *g, const char *text) { return match_n(g, text, strlen(text)); }

static void expect_error(const char *text, const char *needle) {
    char err[256] = "";
    gram_rules *g = gram_parse(text, strlen(text), err, sizeof err);
    CHECK(g == NULL, "should not parse: %s", text);
    CHECK(strstr(err, needle) != NULL, "message '%s' lacks '%s'", err, needle);
    gram_rules_free(g);
}

static void test_errors(void) {
    expect_error("root ::= foo", "'foo' is used but never defined at line 1, column 10");
    expect_error("a ::= \"x\"", "no 'root' rule");
    expect_error("root ::= \"abc", "unterminated string literal at line 1, column 10");
    expect_error("root ::= [a-", "unterminated character class");
    expect_error("root ::= root \"a\" | \"b\"", "left-recursive");
    expect_error("root ::= (\"a\"?)*", "may be empty");
    expect_error("root ::= \"a\"{3,1}", "max below min");
    expect_error("root ::= \"a\"{2", "malformed repetition");
    expect_error("root ::= ( \"a\"", "expected ')'");
    expect_error("root ::= \"a\" )", "unmatched ')'");
    expect_error("root ::= \"a\"\nroot ::= \"b\"", "defined twice at line 2, column 1");
    expect_error("root ::= \"\\q\"", "unknown escape");
    expect_error("root ::= [z-a]", "out of order");
    expect_error("root ::= \"a\"{1,99999}", "repetition bound");
    expect_error("root ::= @", "unexpected character '@'");
    expect_error("", "no 'root' rule");
}

/* A client's grammar is untrusted: 100 KB of parentheses overflowed the parser's stack and
 * took the server down (a 120 KB request). Groups nest at most 512 deep; a chain of 90,000
 * rules (not a recursion in the parser, but in the left-recursion search before) is walked
 * without recursing, and a left recursion at its far end is still found. */
static void test_nesting(void) {
    enum { DEEP = 50000, CHAIN = 90000 };
    char *text = malloc((size_t)CHAIN * 24 + 64);
    CHECK(text != NULL, "malloc");
    if (!text) return;
    for (int depth = 512; depth <= 513; depth++) {
        char *q = text + sprintf(text, "root ::= ");
        memset(q, '(', (size_t)depth);
        q += depth;
        q += sprintf(q, "\"a\"");
        memset(q, ')', (size_t)depth);
        q[depth] = '\0';
        if (depth == 512) {
            gram_rules *g = parse(text);
            CHECK(g && match(g, "a") == 1 && match(g, "b") == -1, "512 groups deep");
            gram_rules_free(g);
        } else {
            expect_error(text, "groups nested deeper than 512 at line 1, column 522");
        }
    }
    memset(text, '(', DEEP);
    text[DEEP] = '\0';
    char *src = malloc(DEEP + 16);
    CHECK(src != NULL, "malloc");
    if (src) {
        snprintf(src, DEEP + 16, "root ::= %s", text);
        expect_error(src, "groups nested deeper than 512");
    }
    free(src);
    for (int cycle = 0; cycle < 2; cycle++) {
        size_t len = (size_t)sprintf(text, "root ::= r0\n");
        for (int i = 0; i < CHAIN; i++)
            len += (size_t)sprintf(text + len, "r%d ::= r%d\n", i, i + 1);
        sprintf(text + len, cycle ? "r%d ::= root \"a\"\n" : "r%d ::= \"a\"\n", CHAIN);
        if (cycle) {
            expect_error(text, "left-recursive");
        } else {
            gram_rules *g = parse(text);
            CHECK(g && match(g, "a") == 1, "a chain of %d rules", CHAIN);
            gram_rules_free(g);
        }
    }
    free(text);
}

/* Sets of more stacks than set_add searches one by one (32): 40 optional letters start 81 stacks
 * (each position's "a" and "b", and the final "c"), and every letter read leaves the stacks of
 * the positions after it, each once, however many paths reached it. */
static void test_many_stacks(void) {
    char text[1024], *q = text + sprintf(text, "root ::= ");
    for (int i = 0; i < 40; i++) q += sprintf(q, "x? ");
    sprintf(q, "\"c\"\nx ::= \"a\" | \"b\"");
    gram_rules *g = parse(text);
    if (!g) return;
    gram_state *st = gram_state_create(g, NULL);
    CHECK(st && gram_state_n_stacks(st) == 81, "%d stacks at the start",
          st ? gram_state_n_stacks(st) : -1);
    for (int k = 1; st && k <= 40; k++) {
        CHECK(gram_state_accept_bytes(st, k % 3 ? "a" : "b", 1) == 0, "letter %d", k);
        CHECK(gram_state_n_stacks(st) == 2 * (40 - k) + 1, "%d stacks after %d letters",
              gram_state_n_stacks(st), k);
    }
    gram_state_free(st);
    char s[64];
    memset(s, 'a', 41);
    strcpy(s + 41, "c");
    CHECK(match(g, s) == -1 && match(g, s + 1) == 1 && match(g, "c") == 1 &&
              match(g, "abbac") == 1 && match(g, "abcc") == -1,
          "40 optional letters, then c");
    gram_rules_free(g);
}

/* The matcher follows text nested at most 512 stack elements deep: what would go deeper is not
 * allowed (it was an error, answered as "out of memory for the grammar"), and a grammar whose
 * start alone nests deeper is refused when it is parsed (a 503 "out of memory" before). */
static void test_depth_limit(void) {
    char *text = malloc(600 * 32 + 64);
    CHECK(text != NULL, "malloc");
    if (!text) return;
    char *q = text + sprintf(text, "root ::= a0 \"z\"\n");
    for (int i = 0; i < 600; i++) q += sprintf(q, "a%d ::= a%d \"z\"\n", i, i + 1);
    sprintf(q, "a600 ::= \"x\"\n");
    expect_error(text, "nests deeper than 512 elements before its first character at line 1");
    free(text);

    gram_rules *g = parse("root ::= \"[\" root \"]\" | \"a\"");
    const char *bytes[] = {"[", "]", "a"};
    const size_t lens[] = {1, 1, 1};
    gram_vocab *v = gram_vocab_create(3, bytes, lens, -1);
    gram_state *st = g && v ? gram_state_create(g, v) : NULL;
    CHECK(st != NULL, "state");
    if (st) {
        uint32_t mask = 0;
        int depth = 0, k;
        while ((k = gram_state_mask(st, &mask)) > 0 && (mask & 1) && depth < 1000) {
            CHECK(gram_state_accept_token(st, 0) == 0, "'[' at depth %d", depth);
            depth++;
        }
        CHECK(k == 1 && mask == 4u, "at depth %d: %d allowed, mask %x (want 'a' alone)", depth,
              k, (unsigned)mask);
        CHECK(depth > 400 && depth < 512, "'[' nested %d deep", depth);
        CHECK(gram_state_accept_token(st, 2) == 0, "'a'");
        for (int i = 0; i < depth; i++) CHECK(gram_state_accept_token(st, 1) == 0, "']' %d", i);
        CHECK(gram_state_can_end(st), "balanced");
    }
    gram_state_free(st);
    gram_vocab_free(v);
    gram_rules_free(g);
}

static void test_match(void) {
    gram_rules *g = parse("# comment\nroot ::= \"ab\" c | d+  # trailing\nc ::= [x-z]?\n"
                          "d ::= [0-9]");
    CHECK(match(g, "ab") == 1, "ab");
    CHECK(match(g, "abx") == 1, "abx");
    CHECK(match(g, "abxx") == -1, "abxx");
    CHECK(match(g, "a") == 0, "a is a prefix");
    CHECK(match(g, "123") == 1, "123");
    CHECK(match(g, "") == 0, "empty is a prefix only");
    CHECK(match(g, "1a") == -1, "1a");
    gram_rules_free(g);

    /* bounded repetition */
    g = parse("root ::= \"a\"{2,4} \"b\"{3} \"c\"{1,} \"d\"{0,1}");
    CHECK(match(g, "aabbbc") == 1, "min");
    CHECK(match(g, "aaaabbbccccd") == 1, "max");
    CHECK(match(g, "abbbc") == -1, "below min");
    CHECK(match(g, "aaaaabbbc") == -1, "above max");
    CHECK(match(g, "aabbc") == -1, "exact count");
    CHECK(match(g, "aabbbcdd") == -1, "optional once");
    gram_rules_free(g);
    g = parse("root ::= (\"ab\" | \"c\"){0,3}");
    CHECK(match(g, "") == 1 && match(g, "abcab") == 1 && match(g, "cccc") == -1, "group count");
    gram_rules_free(g);

    /* classes: ranges, negation, escapes, '.', multi-line rules */
    g = parse("root ::= [^a-c\\n] [\\x41-\\x43] . \"\\u00e9\"\n  [\\]\\-]");
    CHECK(match(g, "dA\xc3\xa9\xc3\xa9]") == 1, "é via escape and raw");
    CHECK(match(g, "aA\xc3\xa9\xc3\xa9-") == -1, "negated a");
    CHECK(match(g, "\nA\xc3\xa9\xc3\xa9-") == -1, "negated newline");
    CHECK(match(g, "dD") == -1, "range end");
    gram_rules_free(g);

    /* right recursion stays shallow; nested groups */
    g = parse("root ::= item*\nitem ::= (\"(\" item* \")\") | \"x\"");
    CHECK(match(g, "x(x(x)())x") == 1, "balanced");
    CHECK(match(g, "(()") == 0, "open");
    CHECK(match(g, "())") == -1, "closed twice");
    char many[5001];
    memset(many, 'x', 5000);
    many[5000] = 0;
    CHECK(match(g, many) == 1, "a long x*");
    gram_rules_free(g);

    /* done: nothing else can follow */
    g = parse("root ::= \"a\" \"b\"?");
    gram_state *st = gram_state_create(g, NULL);
    CHECK(!gram_state_can_end(st) && !gram_state_done(st), "start");
    gram_state_accept_bytes(st, "a", 1);
    CHECK(gram_state_can_end(st) && !gram_state_done(st), "after a");
    gram_state_accept_bytes(st, "b", 1);
    CHECK(gram_state_done(st), "after ab");
    CHECK(gram_state_accept_bytes(st, "b", 1) < 0, "nothing after done");
    CHECK(gram_state_done(st), "a rejected byte leaves the state");
    gram_state_free(st);
    gram_rules_free(g);
}

static void test_utf8(void) {
    gram_rules *g = parse("root ::= \"\xc3\xa9\" [\xe4\xb8\x80-\xe9\xbf\xbf]+ [^\\x00-\\x7f]");
    /* é, then CJK ideographs, then any non-ASCII character */
    const char *ok = "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87\xf0\x9f\x98\x80";
    CHECK(match(g, ok) == 1, "whole");
    for (size_t cut = 1; cut < strlen(ok); cut++) { /* every split point, bytes fed in two parts */
        gram_state *st = gram_state_create(g, NULL);
        CHECK(gram_state_accept_bytes(st, ok, cut) == 0, "prefix %zu", cut);
        CHECK(gram_state_accept_bytes(st, ok + cut, strlen(ok) - cut) == 0, "rest %zu", cut);
        CHECK(gram_state_can_end(st), "complete after split %zu", cut);
        gram_state_free(st);
    }
    CHECK(match_n(g, "\xc3", 1) == 0, "lead byte of é is a prefix");
    CHECK(match_n(g, "\xc4", 1) == -1, "lead byte of U+0100.. is not");
    CHECK(match_n(g, "\xc3\xa9\xe4", 3) == 0, "lead of the CJK range");
    CHECK(match_n(g, "\xc3\xa9\xe3", 3) == -1, "U+3000.. below the range");
    CHECK(match_n(g, "\xc3\xa9\xe4\xb8\xad\xc3\xa9\xc3", 8) == -1, "é is ASCII-free but ends");
    CHECK(match_n(g, "\xc3\xa9\xe4\xb8\xad\x80", 6) == -1, "a stray continuation byte");
    CHECK(match_n(g, "\xc3\xa9\xe4\xb8\xad\xff", 6) == -1, "0xff");
    gram_rules_free(g);
    /* overlong forms can never spell an ASCII character */
    g = parse("root ::= [\\x00-\\x7f]+");
    CHECK(match_n(g, "\xf0", 1) == -1, "4-byte lead: at least U+10000");
    CHECK(match_n(g, "\xe0\x80", 2) == -1, "3-byte overlong");
    CHECK(match_n(g, "\xc1\x81", 2) == -1, "2-byte overlong");
    CHECK(match_n(g, "\xc2", 1) == -1, "U+0080.. is not ASCII");
    CHECK(match_n(g, "\x7f", 1) == 1, "DEL is");
    gram_rules_free(g);
    g = parse("root ::= [\\U00010000-\\U00010fff]");
    CHECK(match_n(g, "\xf0", 1) == 0 && match_n(g, "\xf0\x90", 2) == 0, "4-byte prefix");
    CHECK(match_n(g, "\xf0\x91", 2) == -1 && match_n(g, "\xe0", 1) == -1, "out of range");
    gram_rules_free(g);
}

/* ------------------------------------------------------ masks vs the naive reference */

static bool bit(const uint32_t *m, int i) { return (m[i >> 5] >> (i & 31)) & 1u; }

/* The reference: token i is allowed when replaying hist then its bytes succeeds. */
static void naive_mask(const gram_rules *g, const gram_vocab *v, const char *const *bytes,
                       const size_t *lens, int n, int eos, const char *hist, size_t nh,
                       uint32_t *mask) {
    memset(mask, 0, (size_t)(n + 31) / 32 * 4);
    gram_state *base = gram_state_create(g, NULL);
    gram_state_accept_bytes(base, hist, nh);
    bool end = gram_state_can_end(base);
    gram_state_free(base);
    for (int i = 0; i < n; i++) {
        bool ok;
        if (i == eos) {
            ok = end;
        } else if (lens[i] == 0) {
            ok = false;
        } else {
            gram_state *st = gram_state_create(g, v);
            ok = gram_state_accept_bytes(st, hist, nh) == 0 &&
                 gram_state_accept_bytes(st, bytes[i], lens[i]) == 0;
            gram_state_free(st);
        }
        if (ok) mask[i >> 5] |= 1u << (i & 31);
    }
}

/* Walks n_paths random paths of up to steps tokens, checking the mask at each step. */
static void compare_masks(const char *grammar, const char *const *bytes, const size_t *lens,
                          int n, int eos, int n_paths, int steps) {
    gram_rules *g = parse(grammar);
    gram_vocab *v = gram_vocab_create(n, bytes, lens, eos);
    uint32_t *m1 = malloc((size_t)(n + 31) / 32 * 4), *m2 = malloc((size_t)(n + 31) / 32 * 4);
    char hist[4096];
    rng r;
    rng_seed(&r, 7);
    int bad = 0;
    for (int path = 0; path < n_paths && g && v; path++) {
        gram_state *st = gram_state_create(g, v);
        size_t nh = 0;
        for (int step = 0; step < steps; step++) {
            int k = gram_state_mask(st, m1);
            naive_mask(g, v, bytes, lens, n, eos, hist, nh, m2);
            int k2 = 0;
            for (int i = 0; i < n; i++) {
                k2 += bit(m2, i);
                if (bit(m1, i) != bit(m2, i) && bad++ < 5)
                    CHECK(0, "path %d step %d token %d '%.*s': trie %d naive %d", path, step, i,
                          (int)lens[i], bytes[i], bit(m1, i), bit(m2, i));
            }
            CHECK(k == k2, "count %d vs %d", k, k2);
            if (k == 0) break;
            /* pick an allowed token at random; EOS ends the path */
            int pick = (int)(rng_uniform(&r) * (float)k), id = -1;
            for (int i = 0; i < n && id < 0; i++)
                if (bit(m1, i) && pick-- == 0) id = i;
            if (id == eos || nh + lens[id] >= sizeof hist) break;
            CHECK(gram_state_accept_token(st, id) == 0, "accept %d", id);
            memcpy(hist + nh, bytes[id], lens[id]);
            nh += lens[id];
            if (gram_state_done(st)) break;
        }
        gram_state_free(st);
    }
    free(m1);
    free(m2);
    gram_vocab_free(v);
    gram_rules_free(g);
}

static void test_masks_synthetic(void) {
    /* every single byte, some JSON-shaped pieces, and UTF-8 fragments */
    static const char *extra[] = {
        "{\"", "\":", "\": ", "\",", "\"}", "true", "false", "null", "nul", " {", "}}", "]]",
        "[1", "12", "3.", ".5", "e+", "-0", "\\u", "\\n", "00", "ab", "\xc3\xa9", "\xc3",
        "\xa9\x22", "\xe4\xb8", "\xad", "\xe4\xb8\xad", "\xf0\x9f", "\x98\x80", "\"\xc3\xa9\"",
        " ", "  ", "\n", ",\"", "a\"", "xyz", "0123", "\"a\":1}", "{}", "[]"};
    int n_extra = (int)(sizeof extra / sizeof *extra);
    int n = 256 + n_extra + 2;
    const char **bytes = malloc((size_t)n * sizeof *bytes);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    static char single[256];
    for (int i = 0; i < 256; i++) {
        single[i] = (char)i;
        bytes[i] = single + i;
        lens[i] = 1;
    }
    for (int i = 0; i < n_extra; i++) {
        bytes[256 + i] = extra[i];
        lens[256 + i] = strlen(extra[i]);
    }
    bytes[n - 2] = "";
    lens[n - 2] = 0; /* a control token: never allowed */
    bytes[n - 1] = "";
    lens[n - 1] = 0; /* EOS */
    char json[2048];
    FILE *f = fopen(check_test_path("grammars/json.gbnf"), "rb");
    CHECK(f != NULL, "json.gbnf");
    size_t jn = f ? fread(json, 1, sizeof json - 1, f) : 0;
    if (f) fclose(f);
    json[jn] = 0;
    compare_masks(json, bytes, lens, n, n - 1, 12, 40);
    compare_masks("root ::= \"\xc3\xa9\" [\xe4\xb8\x80-\xe9\xbf\xbf]{1,3} [^\\x00-\\x7f]", bytes,
                  lens, n, n - 1, 6, 8);
    compare_masks("root ::= (\"ab\" | [0-9]{2,3} | \" \"){1,4}", bytes, lens, n, n - 1, 8, 8);
    free(bytes);
    free(lens);
}

/* The real kjv-demo vocabulary, through gram_vocab_from_tokenizer. */
static void test_masks_kjv(void) {
    char err[256];
    tokenizer *t = model_load_tokenizer(check_model_path("kjv-demo.gguf"), err, sizeof err);
    CHECK(t != NULL, "tokenizer: %s", err);
    if (!t) return;
    int n = tok_n_vocab(t);
    const char **bytes = malloc((size_t)n * sizeof *bytes);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    char (*bufs)[8] = malloc((size_t)n * 8);
    for (int i = 0; i < n; i++) {
        bytes[i] = tok_piece_bytes(t, i, bufs[i], &lens[i]);
        int type = tok_type(t, i);
        if (type == TOK_CONTROL || type == TOK_UNKNOWN || type == TOK_UNUSED) lens[i] = 0;
    }
    compare_masks("root ::= \"{\\\"name\\\": \\\"\" [a-zA-Z ]{1,12} \"\\\", \\\"age\\\": \" "
                  "[1-9] [0-9]? \"}\"",
                  bytes, lens, n, tok_eos(t), 4, 30);
    /* gram_vocab_from_tokenizer gives the same vocabulary */
    gram_vocab *v = gram_vocab_from_tokenizer(t);
    CHECK(v && gram_vocab_n(v) == n, "vocab from tokenizer");
    gram_vocab_free(v);
    free(bufs);
    free(bytes);
    free(lens);
    tok_free(t);
}

/* Llama 3: a grammar ends on any end-of-generation token (<|eot_id|>, which a chat ends with),
 * not only on EOS (<|end_of_text|>), and on neither before it may end. */
static void test_eog_llama3(void) {
    char err[256];
    tokenizer *t = model_load_tokenizer(check_model_path("llama3-vocab.gguf"), err, sizeof err);
    CHECK(t != NULL, "llama3 tokenizer: %s", err);
    if (!t) return;
    const int eot = tok_piece_id(t, "<|eot_id|>", 10), eos = tok_eos(t), n = tok_n_vocab(t);
    CHECK(eot >= 0 && eot != eos && tok_is_eog(t, eot), "<|eot_id|> is %d", eot);
    gram_vocab *v = gram_vocab_from_tokenizer(t);
    const char *text = "root ::= \"yes\" | \"no\"";
    gram_rules *g = gram_parse(text, strlen(text), err, sizeof err);
    gram_state *st = v && g ? gram_state_create(g, v) : NULL;
    uint32_t *mask = calloc(((size_t)n + 31) / 32, sizeof *mask);
    CHECK(st && mask, "grammar over the llama3 vocabulary: %s", err);
    if (st && mask) {
#define ALLOWED(id) ((mask[(id) >> 5] >> ((id) & 31)) & 1)
        CHECK(gram_state_mask(st, mask) > 0 && !ALLOWED(eot) && !ALLOWED(eos), "no end at start");
        CHECK(gram_state_accept_token(st, eot) != 0, "<|eot_id|> refused before the end");
        CHECK(gram_state_accept_bytes(st, "no", 2) == 0, "\"no\"");
        CHECK(gram_state_mask(st, mask) >= 2 && ALLOWED(eot) && ALLOWED(eos), "both end tokens");
        CHECK(gram_state_accept_token(st, eot) == 0, "<|eot_id|> accepted at the end");
#undef ALLOWED
    }
    free(mask);
    gram_state_free(st);
    gram_rules_free(g);
    gram_vocab_free(v);
    tok_free(t);
}

/* sampler_sample_masked only ever picks allowed tokens, greedy or not, and is deterministic. */
static void test_sampler_mask(void) {
    float logits[64];
    for (int i = 0; i < 64; i++) logits[i] = (float)(i % 7);
    uint32_t allow[2] = {0x00010100u, 0x80000000u}; /* 8, 16, 63 */
    sampler_params p;
    sampler_params_default(&p);
    for (int greedy = 0; greedy < 2; greedy++) {
        p.temperature = greedy ? 0.0f : 1.0f;
        p.seed = 3;
        sampler *s = sampler_create(&p, 64);
        for (int k = 0; k < 50; k++) {
            int id = sampler_sample_masked(s, logits, allow, NULL, 0, 0, NULL);
            CHECK(id == 8 || id == 16 || id == 63, "masked pick %d", id);
        }
        sampler_free(s);
    }
}

int main(void) {
    test_errors();
    test_nesting();
    test_depth_limit();
    test_many_stacks();
    test_match();
    test_utf8();
    test_masks_synthetic();
    test_masks_kjv();
    test_eog_llama3();
    test_sampler_mask();
    return check_summary();
}
