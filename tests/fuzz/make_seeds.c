/* make_seeds: writes the synthetic seed files of corpus/gguf and corpus/llama2c (small, valid
 * files that reach every stage of the loaders; the fuzzer mutates them from there). Not part of
 * the build; run from the repository root when the formats change:
 *   cc -Itests -o /tmp/make_seeds tests/fuzz/make_seeds.c && /tmp/make_seeds tests/fuzz/corpus */
#include "gguf_builder.h"

static void save(const char *dir, const char *name, const gbuf *b) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (write_bytes(path, b->p, b->n) != 0) abort();
}

/* A vocabulary of n pieces (specials, byte pieces, words) with scores and types. */
static void vocab(gspec *s, int n) {
    kv_str(s, "tokenizer.ggml.model", "llama");
    tm_tokens(s, n);
    gbuf *b = kv_set(s, "tokenizer.ggml.scores", 9);
    gb_u32(b, 6);
    gb_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++)
        gb_f32(b, (float)-i);
    b = kv_set(s, "tokenizer.ggml.token_type", 9);
    gb_u32(b, 5);
    gb_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++)
        gb_u32(b, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
    kv_u32(s, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(s, "tokenizer.ggml.eos_token_id", 2);
    kv_bool(s, "tokenizer.ggml.add_bos_token", true);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    char dir[400];
    gbuf out = {0};
    gspec s;

    snprintf(dir, sizeof dir, "%s/gguf", argv[1]);
    gspec_init(&s); /* vocabulary only */
    vocab(&s, 8);
    gspec_write(&s, &out);
    save(dir, "vocab-only.gguf", &out);
    gspec_free(&s);

    gspec_init(&s); /* a whole model: dim 4, 2 heads of 2, 1 KV head, FFN 8, vocab 8 */
    kv_str(&s, "general.architecture", "llama");
    kv_u32(&s, "llama.context_length", 16);
    kv_u32(&s, "llama.embedding_length", 4);
    kv_u32(&s, "llama.block_count", 1);
    kv_u32(&s, "llama.feed_forward_length", 8);
    kv_u32(&s, "llama.attention.head_count", 2);
    kv_u32(&s, "llama.attention.head_count_kv", 1);
    kv_f32(&s, "llama.rope.freq_base", 10000.0f);
    kv_f32(&s, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_u32(&s, "general.alignment", 16);
    s.align = 16;
    vocab(&s, 8);
    t_add(&s, "token_embd.weight", 0, 4, 8);
    t_add(&s, "output_norm.weight", 0, 4, 1);
    t_add(&s, "output.weight", 1, 4, 8); /* F16 */
    t_add(&s, "blk.0.attn_norm.weight", 0, 4, 1);
    t_add(&s, "blk.0.attn_q.weight", 0, 4, 4);
    t_add(&s, "blk.0.attn_k.weight", 0, 4, 2);
    t_add(&s, "blk.0.attn_v.weight", 0, 4, 2);
    t_add(&s, "blk.0.attn_output.weight", 0, 4, 4);
    t_add(&s, "blk.0.ffn_norm.weight", 0, 4, 1);
    t_add(&s, "blk.0.ffn_gate.weight", 0, 4, 8);
    t_add(&s, "blk.0.ffn_down.weight", 0, 8, 4);
    t_add(&s, "blk.0.ffn_up.weight", 0, 4, 8);
    gspec_write(&s, &out);
    save(dir, "tiny-model.gguf", &out);
    gspec_free(&s);

    gspec_init(&s); /* nested arrays and every scalar type */
    gbuf *b = kv_set(&s, "a.nested", 9);
    gb_u32(b, 9);
    gb_u64(b, 2);
    for (int i = 0; i < 2; i++) {
        gb_u32(b, 8);
        gb_u64(b, 1);
        gb_str(b, "x");
    }
    for (uint32_t t = 0; t <= 12; t++) {
        if (t == 8 || t == 9) continue;
        char key[32];
        snprintf(key, sizeof key, "scalar.%u", t);
        b = kv_set(&s, key, t);
        uint64_t one = 1;
        gb_put(b, &one, t == 0 || t == 1 || t == 7 ? 1 : t == 2 || t == 3 ? 2 : t <= 6 ? 4 : 8);
    }
    s.version = 2;
    gspec_write(&s, &out);
    save(dir, "all-types-v2.gguf", &out);
    gspec_free(&s);

    /* a llama2.c checkpoint: dim 2, hidden 2, 1 layer, 1 head, 1 KV head, vocab 3 (shared
     * classifier), seq_len 2: 28 header bytes then every array in F32 */
    snprintf(dir, sizeof dir, "%s/llama2c", argv[1]);
    out.n = 0;
    int32_t h[7] = {2, 2, 1, 1, 1, 3, 2};
    gb_put(&out, h, sizeof h);
    size_t floats = 3 * 2 + 2 + 4 + 2 + 2 + 4 + 2 + 4 + 4 + 4 + 2 + 2 + 2;
    for (size_t i = 0; i < floats; i++)
        gb_f32(&out, 0.5f);
    save(dir, "tiny-checkpoint.bin", &out);
    /* a tokenizer.bin of 8 pieces (llama2.c's exporter spells the specials so) */
    out.n = 0;
    gb_u32(&out, 8);
    const char *pieces[] = {"<unk>", "\n<s>\n", "\n</s>\n", "<0x0A>", " a", "b", " ab", "\xc3\xa9"};
    for (int i = 0; i < 8; i++) {
        gb_f32(&out, (float)-i);
        gb_u32(&out, (uint32_t)strlen(pieces[i]));
        gb_put(&out, pieces[i], strlen(pieces[i]));
    }
    save(dir, "tokenizer-8.bin", &out);
    gb_free(&out);
    return 0;
}
