/* The README's C example: load a model, stream a greedy reply, print the stats.
 * Build: cc -std=c11 -Iinclude example.c -Ltarget/release -ltandem -o example */
#include <stdio.h>
#include "tandem.h"

static int32_t print_token(int32_t id, const char *text, size_t len, void *user_data) {
    (void)id;
    (void)user_data;
    fwrite(text, 1, len, stdout);
    return 0; /* non-zero would stop here */
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT]\n", argv[0]);
        return 2;
    }
    tandem_engine_params ep = tandem_engine_default_params();
    ep.prefill = TANDEM_PLACEMENT_AUTO; /* NPU when present and faster, else CPU */
    tandem_engine *engine = NULL;
    if (tandem_engine_create(argv[1], &ep, &engine) != TANDEM_OK) {
        fprintf(stderr, "load failed: %s\n", tandem_last_error());
        return 1;
    }
    tandem_session *session = NULL;
    tandem_status st = tandem_session_create(engine, &session);
    if (st == TANDEM_OK) {
        tandem_generate_params gp = tandem_generate_default_params();
        gp.temperature = 0.0f; /* greedy */
        gp.max_tokens = 32;
        st = tandem_generate(session, argc > 2 ? argv[2] : "Once upon a time", &gp, print_token, NULL);
    }
    if (st == TANDEM_OK) {
        tandem_stats stats = {.size = sizeof stats};
        tandem_session_stats(session, &stats);
        printf("\n%llu tokens, prefill %.1f tok/s on %s, decode %.1f tok/s\n",
               (unsigned long long)stats.generated_tokens, stats.prefill_tok_s,
               stats.prefill_device == TANDEM_DEVICE_CPU ? "the CPU" : "the NPU", stats.decode_tok_s);
    } else {
        fprintf(stderr, "generate failed (%s): %s\n", tandem_status_str(st), tandem_last_error());
    }
    tandem_session_free(session);
    tandem_engine_free(engine);
    return st == TANDEM_OK ? 0 : 1;
}
