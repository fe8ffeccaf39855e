/* The llama.cpp side of the real-model references (`cargo xtask fixtures --real-models`): tokenizes
 * a prompt with llama.cpp's tokenizer, runs it, and decodes greedily, printing one JSON object:
 *   {"ids": [...], "greedy": [...], "margins": [...], "top5": [[[id, logit], ...], ...]}
 * `margins[i]` is the top-1 minus top-2 logit at greedy step i and `top5[i]` the five best
 * (id, logit) there; step 0 is the last prompt position.
 *
 * Usage: llama_ref MODEL.gguf PROMPT_FILE N_STEPS ADD_SPECIAL(0|1) PARSE_SPECIAL(0|1)
 * Built against the llama.cpp of the pinned llama-cpp-python source package; dev-time only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static char *read_file(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)*len + 1);
    if (!buf || fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
        fclose(f);
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* Indices of the five largest logits, best first (lowest id on ties). */
static void top5(const float *logits, int n_vocab, int *best) {
    for (int k = 0; k < 5; k++) best[k] = -1;
    for (int i = 0; i < n_vocab; i++) {
        for (int k = 0; k < 5; k++) {
            if (best[k] < 0 || logits[i] > logits[best[k]]) {
                for (int m = 4; m > k; m--) best[m] = best[m - 1];
                best[k] = i;
                break;
            }
        }
    }
}

static void no_log(enum ggml_log_level level, const char *text, void *user_data) {
    (void)level;
    (void)text;
    (void)user_data;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL PROMPT_FILE N_STEPS ADD_SPECIAL PARSE_SPECIAL\n", argv[0]);
        return 2;
    }
    int steps = atoi(argv[3]);
    bool add_special = atoi(argv[4]) != 0, parse_special = atoi(argv[5]) != 0;
    long text_len = 0;
    char *text = read_file(argv[2], &text_len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    llama_log_set(no_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    /* No extra buffer types (weight repacking, AMX): on the Sapphire Rapids host these
     * references were made on, ggml's AMX matmul crashed on this Q4_1 file; the plain CPU
     * kernels are the reference. */
    mp.use_extra_bufts = false;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    int cap = (int)text_len + 16;
    llama_token *ids = malloc(sizeof(llama_token) * (size_t)(cap + steps + 1));
    int n = llama_tokenize(vocab, text, (int32_t)text_len, ids, cap, add_special, parse_special);
    if (n < 0) {
        fprintf(stderr, "tokenize failed (%d)\n", n);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n + steps + 8);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    printf("{\"ids\": [");
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
    printf("], ");
    if (llama_decode(ctx, llama_batch_get_one(ids, n)) != 0) {
        fprintf(stderr, "decode of the prompt failed\n");
        return 1;
    }
    int *greedy = malloc(sizeof(int) * (size_t)steps);
    float *margins = malloc(sizeof(float) * (size_t)steps);
    int(*best)[5] = malloc(sizeof(int[5]) * (size_t)steps);
    float(*best_logit)[5] = malloc(sizeof(float[5]) * (size_t)steps);
    for (int s = 0; s < steps; s++) {
        const float *logits = llama_get_logits_ith(ctx, -1);
        top5(logits, n_vocab, best[s]);
        for (int k = 0; k < 5; k++) best_logit[s][k] = logits[best[s][k]];
        greedy[s] = best[s][0];
        margins[s] = logits[best[s][0]] - logits[best[s][1]];
        llama_token t = greedy[s];
        if (s + 1 < steps && llama_decode(ctx, llama_batch_get_one(&t, 1)) != 0) {
            fprintf(stderr, "decode failed at step %d\n", s);
            return 1;
        }
    }
    printf("\"greedy\": [");
    for (int s = 0; s < steps; s++) printf("%s%d", s ? ", " : "", greedy[s]);
    printf("], \"margins\": [");
    for (int s = 0; s < steps; s++) printf("%s%.6f", s ? ", " : "", margins[s]);
    printf("], \"top5\": [");
    for (int s = 0; s < steps; s++) {
        printf("%s[", s ? ", " : "");
        for (int k = 0; k < 5; k++) printf("%s[%d, %.6f]", k ? ", " : "", best[s][k], best_logit[s][k]);
        printf("]");
    }
    printf("]}\n");
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(text);
    free(ids);
    free(greedy);
    free(margins);
    free(best);
    free(best_logit);
    return 0;
}
