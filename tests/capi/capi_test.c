/* The C ABI test (`cargo xtask test`, step capi): built with -std=c11 -Wall -Wextra -Werror
 * against include/tandem.h, linked once against libtandem.so and once against libtandem.a, and
 * run under valgrind. Arguments: MODEL.gguf PROMPT N EXPECTED where EXPECTED is the
 * comma-separated greedy continuation the Rust API gives (`tandem run --json`).
 *
 * Every check prints what differed and exits 1 at the first failure. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tandem.h"

static int checks = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        checks++;                                                                 \
        if (!(cond)) {                                                            \
            fprintf(stderr, "capi_test: FAILED at line %d: %s\n  ", __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n  last error: %s\n", tandem_last_error());         \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

#define CHECK_STATUS(call, want)                                                        \
    do {                                                                                \
        tandem_status got_ = (call);                                                    \
        CHECK(got_ == (want), "%s returned %d (%s), wanted %d (%s)", #call, got_,       \
              tandem_status_str(got_), (want), tandem_status_str(want));                \
    } while (0)

/* The last error message contains `needle`. */
#define CHECK_ERROR_MENTIONS(needle) \
    CHECK(strstr(tandem_last_error(), (needle)) != NULL, "message does not mention \"%s\"", (needle))

/* ---- token collection ---------------------------------------------------------------- */

#define MAX_IDS 1024

typedef struct {
    int32_t ids[MAX_IDS];
    size_t n;
    size_t calls;
    int stop_after;  /* > 0: return 1 once this many tokens were seen */
    int bad_utf8;    /* a callback's text was not whole UTF-8 characters */
    int bad_nul;     /* text[len] was not NUL */
    char text[16384];
    size_t text_len;
} collected;

/* Whether s[0..len) is well-formed UTF-8 made of whole characters. */
static int whole_utf8(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > len) return 0;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += n;
    }
    return 1;
}

static int32_t collect(int32_t id, const char *text, size_t len, void *user_data) {
    collected *c = user_data;
    c->calls++;
    if (!whole_utf8((const unsigned char *)text, len)) c->bad_utf8 = 1;
    if (text[len] != '\0') c->bad_nul = 1;
    if (c->text_len + len < sizeof c->text) {
        memcpy(c->text + c->text_len, text, len);
        c->text_len += len;
        c->text[c->text_len] = '\0';
    }
    if (id >= 0 && c->n < MAX_IDS) c->ids[c->n++] = id;
    return (c->stop_after > 0 && (int)c->n >= c->stop_after) ? 1 : 0;
}

static tandem_generate_params greedy(uint32_t n) {
    tandem_generate_params p = tandem_generate_default_params();
    p.temperature = 0.0f;
    p.max_tokens = n;
    p.ignore_eos = true;
    return p;
}

static size_t session_len(const tandem_session *s) {
    size_t needed = 0;
    tandem_status st = tandem_session_tokens(s, NULL, 0, &needed);
    CHECK(st == TANDEM_OK || st == TANDEM_ERR_BUFFER_TOO_SMALL, "tandem_session_tokens: %d", st);
    return needed;
}

static tandem_engine *open_cpu(const char *model) {
    tandem_engine_params ep = tandem_engine_default_params();
    ep.prefill = TANDEM_PLACEMENT_CPU;
    ep.threads = 2;
    tandem_engine *e = NULL;
    CHECK_STATUS(tandem_engine_create(model, &ep, &e), TANDEM_OK);
    CHECK(e != NULL, "engine is NULL after success");
    return e;
}

/* ---- cancel from a second thread -------------------------------------------------------- */

typedef struct {
    tandem_session *session;
    atomic_int cancelled; /* set once tandem_cancel returned */
    tandem_status status;
} canceller;

static void *cancel_thread(void *arg) {
    canceller *c = arg;
    c->status = tandem_cancel(c->session);
    atomic_store(&c->cancelled, 1);
    return NULL;
}

typedef struct {
    canceller *canceller;
    pthread_t thread;
    int started;
    size_t tokens;
} cancel_ctx;

/* At the first token, starts a thread that cancels, and waits until it has. */
static int32_t cancel_on_first(int32_t id, const char *text, size_t len, void *user_data) {
    (void)text;
    (void)len;
    cancel_ctx *c = user_data;
    if (id >= 0) c->tokens++;
    if (!c->started) {
        c->started = 1;
        if (pthread_create(&c->thread, NULL, cancel_thread, c->canceller) != 0) {
            fprintf(stderr, "capi_test: pthread_create failed\n");
            exit(1);
        }
        while (!atomic_load(&c->canceller->cancelled)) sched_yield();
    }
    return 0;
}

/* ---- calls made from inside a callback -------------------------------------------------- */

typedef struct {
    tandem_session *session;
    tandem_status fork_status, tokens_status, generate_status, stats_status;
    int done;
} reentrant_ctx;

static int32_t reenter(int32_t id, const char *text, size_t len, void *user_data) {
    (void)id;
    (void)text;
    (void)len;
    reentrant_ctx *c = user_data;
    if (!c->done) {
        c->done = 1;
        tandem_session *f = NULL;
        c->fork_status = tandem_session_fork(c->session, &f);
        size_t needed;
        c->tokens_status = tandem_session_tokens(c->session, NULL, 0, &needed);
        tandem_generate_params p = greedy(1);
        c->generate_status = tandem_generate(c->session, "x", &p, NULL, NULL);
        tandem_stats stats = {.size = sizeof stats};
        c->stats_status = tandem_session_stats(c->session, &stats);
    }
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static size_t parse_ids(const char *csv, int32_t *out, size_t cap) {
    size_t n = 0;
    const char *p = csv;
    while (*p && n < cap) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        out[n++] = (int32_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void check_same_ids(const int32_t *got, size_t n_got, const int32_t *want, size_t n_want,
                           const char *what) {
    int same = n_got == n_want && memcmp(got, want, n_want * sizeof *want) == 0;
    if (!same) {
        fprintf(stderr, "%s:\n  got ", what);
        for (size_t i = 0; i < n_got; i++) fprintf(stderr, "%d,", got[i]);
        fprintf(stderr, "\n  want ");
        for (size_t i = 0; i < n_want; i++) fprintf(stderr, "%d,", want[i]);
        fprintf(stderr, "\n");
    }
    CHECK(same, "%s: token ids differ", what);
}

static char *write_temp(const char *name, const void *prefix, size_t prefix_len, const char *copy_of) {
    static char path[4][512];
    static int next = 0;
    char *p = path[next++ % 4];
    snprintf(p, 512, "%s/tandem-capi-%d-%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL, "cannot write %s", p);
    if (prefix_len) fwrite(prefix, 1, prefix_len, f);
    if (copy_of) {
        FILE *src = fopen(copy_of, "rb");
        CHECK(src != NULL, "cannot read %s", copy_of);
        char buf[65536];
        size_t r;
        while ((r = fread(buf, 1, sizeof buf, src)) > 0) fwrite(buf, 1, r, f);
        fclose(src);
    }
    fclose(f);
    return p;
}

/* ---- NPU prefill through the C ABI (not under valgrind: the QNN simulator is too slow) ---- */

static int npu_main(const char *model, const char *prompt, uint32_t n, const int32_t *expected,
                    size_t n_expected, const char *qnn_lib_dir) {
    tandem_engine_params ep = tandem_engine_default_params();
    ep.prefill = TANDEM_PLACEMENT_NPU;
    ep.require_npu = true; /* an NPU that cannot be prepared fails the test */
    ep.qnn_lib_dir = qnn_lib_dir;
    uint32_t chunks[1] = {8};
    ep.chunk_sizes = chunks;
    ep.n_chunk_sizes = 1;
    ep.context_length = 128;
    tandem_engine *e = NULL;
    CHECK_STATUS(tandem_engine_create(model, &ep, &e), TANDEM_OK);
    tandem_session *s = NULL;
    CHECK_STATUS(tandem_session_create(e, &s), TANDEM_OK);
    static collected c;
    tandem_generate_params gp = greedy(n);
    CHECK_STATUS(tandem_generate(s, prompt, &gp, collect, &c), TANDEM_OK);
    check_same_ids(c.ids, c.n, expected, n_expected, "NPU-prefilled greedy tokens vs the Rust API's");
    tandem_stats st = {.size = sizeof st};
    CHECK_STATUS(tandem_session_stats(s, &st), TANDEM_OK);
    CHECK(st.prefill_device == TANDEM_DEVICE_NPU, "prefill ran on device %d", st.prefill_device);
    CHECK(st.handoff_bytes > 0 && st.prefill_chunks >= 1, "handoff %llu bytes in %u chunks",
          (unsigned long long)st.handoff_bytes, st.prefill_chunks);
    CHECK(!st.fell_back, "fell back: %s", st.fallback_reason);
    /* A second turn is prefilled on the NPU on top of the cached conversation. */
    static collected c2;
    tandem_generate_params gp2 = greedy(4);
    CHECK_STATUS(tandem_generate(s, " Then", &gp2, collect, &c2), TANDEM_OK);
    CHECK_STATUS(tandem_session_stats(s, &st), TANDEM_OK);
    CHECK(st.prefill_device == TANDEM_DEVICE_NPU && st.cached_tokens > 0,
          "turn 2: device %d, %llu cached", st.prefill_device, (unsigned long long)st.cached_tokens);
    tandem_session_free(s);
    tandem_engine_free(e);
    printf("capi_test --npu: %d checks passed\n", checks);
    return 0;
}

/* ---- the test --------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc != 5 && !(argc == 7 && strcmp(argv[5], "--npu") == 0)) {
        fprintf(stderr, "usage: %s MODEL PROMPT N EXPECTED_IDS [--npu QNN_LIB_DIR]\n", argv[0]);
        return 2;
    }
    const char *model = argv[1];
    const char *prompt = argv[2];
    uint32_t n = (uint32_t)atoi(argv[3]);
    static int32_t expected[MAX_IDS];
    size_t n_expected = parse_ids(argv[4], expected, MAX_IDS);
    CHECK(n_expected == n, "expected %u ids, parsed %zu", n, n_expected);
    if (argc == 7) return npu_main(model, prompt, n, expected, n_expected, argv[6]);

    /* Version. */
    CHECK(tandem_abi_version() == TANDEM_ABI_VERSION, "ABI %u vs header %d", tandem_abi_version(),
          TANDEM_ABI_VERSION);
    CHECK(strlen(tandem_version()) > 0, "empty version");
    CHECK(strcmp(tandem_status_str(TANDEM_OK), "ok") == 0, "status_str(OK)");
    CHECK(strcmp(tandem_status_str(12345), "unknown status") == 0, "status_str(12345)");

    tandem_engine *engine = open_cpu(model);
    CHECK(tandem_engine_context_length(engine) == 512, "context %u",
          tandem_engine_context_length(engine));

    /* 1. Greedy generation: the same tokens as the Rust API, streamed as whole characters. */
    tandem_session *s = NULL;
    CHECK_STATUS(tandem_session_create(engine, &s), TANDEM_OK);
    static collected c1;
    tandem_generate_params gp = greedy(n);
    CHECK_STATUS(tandem_generate(s, prompt, &gp, collect, &c1), TANDEM_OK);
    check_same_ids(c1.ids, c1.n, expected, n_expected, "greedy tokens vs the Rust API");
    CHECK(!c1.bad_utf8, "a callback got a partial UTF-8 character");
    CHECK(!c1.bad_nul, "a callback's text was not NUL-terminated");
    tandem_stats st1 = {.size = sizeof st1};
    CHECK_STATUS(tandem_session_stats(s, &st1), TANDEM_OK);
    CHECK(st1.generated_tokens == n, "stats say %llu generated", (unsigned long long)st1.generated_tokens);
    CHECK(st1.prefill_device == TANDEM_DEVICE_CPU, "prefill device %d", st1.prefill_device);
    CHECK(st1.stop_reason == TANDEM_STOP_MAX_TOKENS, "stop reason %d", st1.stop_reason);
    CHECK(st1.cached_tokens == 0 && st1.prompt_tokens > 0, "prompt %llu cached %llu",
          (unsigned long long)st1.prompt_tokens, (unsigned long long)st1.cached_tokens);
    CHECK(!st1.fell_back && st1.fallback_reason[0] == '\0', "fell back: %s", st1.fallback_reason);
    CHECK(st1.ttft_ms > 0 && st1.decode_tok_s > 0, "ttft %f decode %f", st1.ttft_ms, st1.decode_tok_s);
    size_t len1 = session_len(s);
    CHECK(len1 == st1.prompt_tokens + n, "session holds %zu tokens", len1);

    /* The prompt's tokens, through tandem_tokenize, are what the session starts with. */
    int32_t prompt_ids[256];
    size_t n_prompt = 0;
    CHECK_STATUS(tandem_tokenize(engine, prompt, true, NULL, 0, &n_prompt), TANDEM_ERR_BUFFER_TOO_SMALL);
    CHECK(n_prompt == st1.prompt_tokens, "tokenize says %zu", n_prompt);
    CHECK_STATUS(tandem_tokenize(engine, prompt, true, prompt_ids, 256, &n_prompt), TANDEM_OK);
    int32_t all[MAX_IDS];
    size_t n_all = 0;
    CHECK_STATUS(tandem_session_tokens(s, all, MAX_IDS, &n_all), TANDEM_OK);
    check_same_ids(all, n_prompt, prompt_ids, n_prompt, "session tokens start with the prompt");
    check_same_ids(all + n_prompt, n_all - n_prompt, expected, n_expected, "then the generated ones");

    /* 2. Fork after turn 1; then a second turn on both gives the same tokens. */
    tandem_session *f = NULL;
    CHECK_STATUS(tandem_session_fork(s, &f), TANDEM_OK);
    CHECK(session_len(f) == len1, "fork holds %zu tokens", session_len(f));
    tandem_stats stf = {.size = sizeof stf};
    CHECK_STATUS(tandem_session_stats(f, &stf), TANDEM_OK);

    static collected c2, c2f;
    tandem_generate_params gp2 = greedy(8);
    CHECK_STATUS(tandem_generate(s, " Then", &gp2, collect, &c2), TANDEM_OK);
    tandem_stats st2 = {.size = sizeof st2};
    CHECK_STATUS(tandem_session_stats(s, &st2), TANDEM_OK);
    CHECK(st2.cached_tokens == len1 - 1, "turn 2 reused %llu cached positions, wanted %zu",
          (unsigned long long)st2.cached_tokens, len1 - 1);
    size_t len2 = session_len(s);
    CHECK(len2 == len1 + st2.prompt_tokens + 8, "after turn 2 the session holds %zu", len2);
    CHECK(session_len(f) == len1, "the fork changed when its source went on");
    CHECK_STATUS(tandem_generate(f, " Then", &gp2, collect, &c2f), TANDEM_OK);
    check_same_ids(c2f.ids, c2f.n, c2.ids, c2.n, "the fork's second turn vs the source's");

    /* 3. The callback stops generation after 3 tokens; they are kept. */
    static collected c3;
    c3.stop_after = 3;
    tandem_generate_params gp3 = greedy(50);
    CHECK_STATUS(tandem_generate(f, " And", &gp3, collect, &c3), TANDEM_OK);
    tandem_stats st3 = {.size = sizeof st3};
    CHECK_STATUS(tandem_session_stats(f, &st3), TANDEM_OK);
    CHECK(c3.n == 3 && st3.generated_tokens == 3, "callback saw %zu, stats %llu", c3.n,
          (unsigned long long)st3.generated_tokens);
    CHECK(st3.stop_reason == TANDEM_STOP_CALLBACK, "stop reason %d", st3.stop_reason);
    size_t lenf = session_len(f);
    CHECK(lenf == len2 + st3.prompt_tokens + 3, "after the stopped turn the fork holds %zu", lenf);
    /* A stopped turn ends like any other: its last token is run by the next generation. */
    CHECK_STATUS(tandem_generate_tokens(f, NULL, 0, &gp2, NULL, NULL), TANDEM_OK);
    CHECK(session_len(f) == lenf + 8, "continuing the stopped turn: %zu", session_len(f));
    tandem_session_free(f);

    /* 4. Cancel from a second thread: CANCELLED, and the session is as before. */
    tandem_session *sc = NULL;
    CHECK_STATUS(tandem_session_fork(s, &sc), TANDEM_OK);
    canceller cn = {.session = sc};
    atomic_init(&cn.cancelled, 0);
    cancel_ctx cc = {.canceller = &cn};
    tandem_generate_params gp4 = greedy(400);
    size_t before = session_len(sc);
    CHECK_STATUS(tandem_generate_tokens(sc, NULL, 0, &gp4, cancel_on_first, &cc), TANDEM_ERR_CANCELLED);
    CHECK(cc.started, "no token before the cancel");
    pthread_join(cc.thread, NULL);
    CHECK(cn.status == TANDEM_OK, "tandem_cancel returned %d", cn.status);
    CHECK(cc.tokens < 400, "all 400 tokens were generated despite the cancel");
    CHECK(session_len(sc) == before, "cancelled session holds %zu, had %zu", session_len(sc), before);
    CHECK_STATUS(tandem_cancel(sc), TANDEM_OK); /* nothing running: a no-op */
    static collected c4;
    CHECK_STATUS(tandem_generate(sc, " Again", &gp2, collect, &c4), TANDEM_OK); /* still usable */
    tandem_session_free(sc);

    /* 5. Calls on a generating session from inside its callback. */
    tandem_session *sr = NULL;
    CHECK_STATUS(tandem_session_create(engine, &sr), TANDEM_OK);
    reentrant_ctx rc = {.session = sr};
    tandem_generate_params gp5 = greedy(3);
    CHECK_STATUS(tandem_generate(sr, prompt, &gp5, reenter, &rc), TANDEM_OK);
    CHECK(rc.fork_status == TANDEM_ERR_BUSY, "fork while generating: %d", rc.fork_status);
    CHECK(rc.tokens_status == TANDEM_ERR_BUSY, "tokens while generating: %d", rc.tokens_status);
    CHECK(rc.generate_status == TANDEM_ERR_BUSY, "generate while generating: %d", rc.generate_status);
    CHECK(rc.stats_status == TANDEM_ERR_INVALID_ARGUMENT, "stats before any finished: %d",
          rc.stats_status);

    /* 6. A chat turn through the model's template. */
    CHECK_STATUS(tandem_session_reset(sr), TANDEM_OK);
    CHECK(session_len(sr) == 0, "reset left %zu tokens", session_len(sr));
    static collected c6;
    tandem_generate_params gp6 = greedy(16);
    gp6.apply_chat_template = true;
    gp6.ignore_eos = false;
    CHECK_STATUS(tandem_generate(sr, "Tell me a story.", &gp6, collect, &c6), TANDEM_OK);
    tandem_stats st6 = {.size = sizeof st6};
    CHECK_STATUS(tandem_session_stats(sr, &st6), TANDEM_OK);
    CHECK(st6.prompt_tokens > n_prompt, "the chat prompt has %llu tokens",
          (unsigned long long)st6.prompt_tokens);
    CHECK_STATUS(tandem_generate(sr, "And then?", &gp6, collect, &c6), TANDEM_OK);
    tandem_session_free(sr);

    /* 7. Stop strings: the text never shows one. */
    tandem_session *ss = NULL;
    CHECK_STATUS(tandem_session_create(engine, &ss), TANDEM_OK);
    static collected c7;
    char stop_text[8] = {0};
    /* The greedy text's second word (or its first character) as the stop string. */
    size_t k = 0;
    const char *t = c1.text;
    while (t[k] == ' ') k++;
    stop_text[0] = t[k];
    const char *stops[1] = {stop_text};
    tandem_generate_params gp7 = greedy(n);
    gp7.stop = stops;
    gp7.n_stop = 1;
    CHECK_STATUS(tandem_generate(ss, prompt, &gp7, collect, &c7), TANDEM_OK);
    tandem_stats st7 = {.size = sizeof st7};
    CHECK_STATUS(tandem_session_stats(ss, &st7), TANDEM_OK);
    CHECK(st7.stop_reason == TANDEM_STOP_STRING, "stop reason %d", st7.stop_reason);
    CHECK(strstr(c7.text, stop_text) == NULL, "the stop string \"%s\" was shown: \"%s\"", stop_text,
          c7.text);
    tandem_session_free(ss);

    /* 8. Loading from a file descriptor, also at an offset inside a bigger file (an APK). */
    int fd = open(model, O_RDONLY);
    CHECK(fd >= 0, "cannot open %s", model);
    tandem_engine_params ep = tandem_engine_default_params();
    ep.prefill = TANDEM_PLACEMENT_CPU;
    tandem_engine *efd = NULL;
    CHECK_STATUS(tandem_engine_create_from_fd(fd, 0, 0, &ep, &efd), TANDEM_OK);
    close(fd); /* the library keeps its own */
    tandem_session *sfd = NULL;
    CHECK_STATUS(tandem_session_create(efd, &sfd), TANDEM_OK);
    static collected c8;
    CHECK_STATUS(tandem_generate(sfd, prompt, &gp, collect, &c8), TANDEM_OK);
    check_same_ids(c8.ids, c8.n, expected, n_expected, "greedy tokens of the model from an fd");
    tandem_session_free(sfd);
    tandem_engine_free(efd);

    static char junk[4096];
    memset(junk, 0x5A, sizeof junk);
    char *apk = write_temp("apk", junk, sizeof junk, model);
    fd = open(apk, O_RDONLY);
    CHECK(fd >= 0, "cannot open %s", apk);
    off_t total = lseek(fd, 0, SEEK_END);
    efd = NULL;
    CHECK_STATUS(tandem_engine_create_from_fd(fd, sizeof junk, (uint64_t)total - sizeof junk, &ep, &efd),
                 TANDEM_OK);
    CHECK_STATUS(tandem_session_create(efd, &sfd), TANDEM_OK);
    static collected c9;
    CHECK_STATUS(tandem_generate(sfd, prompt, &gp, collect, &c9), TANDEM_OK);
    check_same_ids(c9.ids, c9.n, expected, n_expected, "greedy tokens of the model at an offset");
    tandem_session_free(sfd);
    tandem_engine_free(efd);
    efd = (tandem_engine *)&ep; /* must be reset to NULL on failure */
    CHECK_STATUS(tandem_engine_create_from_fd(fd, 0, 0, &ep, &efd), TANDEM_ERR_MODEL_LOAD);
    CHECK(efd == NULL, "out not cleared on failure");
    CHECK_STATUS(tandem_engine_create_from_fd(fd, (uint64_t)total + 1, 0, &ep, &efd),
                 TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("outside the file");
    close(fd);
    unlink(apk);
    CHECK_STATUS(tandem_engine_create_from_fd(-1, 0, 0, &ep, &efd), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_engine_create_from_fd(987654, 0, 0, &ep, &efd), TANDEM_ERR_MODEL_LOAD);

    /* 9. Error paths of engine creation: each a status and a message, nothing leaked. */
    tandem_engine *e2 = NULL;
    CHECK_STATUS(tandem_engine_create(NULL, NULL, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("model_path is NULL");
    CHECK_STATUS(tandem_engine_create(model, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_engine_create("/nonexistent/model.gguf", NULL, &e2), TANDEM_ERR_MODEL_LOAD);
    CHECK_ERROR_MENTIONS("/nonexistent/model.gguf");
    char *corrupt = write_temp("corrupt.gguf", "GGUF\x03\0\0\0garbage", 15, NULL);
    CHECK_STATUS(tandem_engine_create(corrupt, NULL, &e2), TANDEM_ERR_MODEL_LOAD);
    CHECK_ERROR_MENTIONS("corrupt");
    unlink(corrupt);
    char *truncated = write_temp("truncated.gguf", NULL, 0, NULL);
    CHECK_STATUS(tandem_engine_create(truncated, NULL, &e2), TANDEM_ERR_MODEL_LOAD);
    unlink(truncated);
    CHECK_STATUS(tandem_engine_create("\xff\xfe.gguf", NULL, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("UTF-8");

    tandem_engine_params bad = tandem_engine_default_params();
    bad.size = sizeof bad - 8;
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("size");
    bad = tandem_engine_default_params();
    bad.prefill = 7;
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    bad = tandem_engine_default_params();
    bad.n_chunk_sizes = 2; /* with chunk_sizes NULL */
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    uint32_t chunks[2] = {64, 0};
    bad.chunk_sizes = chunks;
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    bad.n_chunk_sizes = 1000;
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    bad = tandem_engine_default_params();
    bad.cpu_weights = "q9_9";
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    bad = tandem_engine_default_params();
    bad.qnn_lib_dir = "\xc3\x28";
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    bad = tandem_engine_default_params();
    bad.threads = 100000;
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    bad = tandem_engine_default_params();
    bad.context_length = 100000; /* the model was trained for 512 */
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("512");
    bad = tandem_engine_default_params();
    bad.prefill = TANDEM_PLACEMENT_CPU;
    bad.require_npu = true;
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_INVALID_ARGUMENT);
    bad = tandem_engine_default_params();
    bad.prefill = TANDEM_PLACEMENT_NPU;
    bad.require_npu = true;
    bad.qnn_lib_dir = "/nonexistent/qnn";
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_ERR_NPU_UNAVAILABLE);
    CHECK_ERROR_MENTIONS("/nonexistent/qnn");
    /* Without require_npu the same engine falls back to the CPU and says so. */
    bad.require_npu = false;
    CHECK_STATUS(tandem_engine_create(model, &bad, &e2), TANDEM_OK);
    tandem_session *sn = NULL;
    CHECK_STATUS(tandem_session_create(e2, &sn), TANDEM_OK);
    tandem_generate_params gpn = greedy(2);
    CHECK_STATUS(tandem_generate(sn, prompt, &gpn, NULL, NULL), TANDEM_OK);
    tandem_stats stn = {.size = sizeof stn};
    CHECK_STATUS(tandem_session_stats(sn, &stn), TANDEM_OK);
    CHECK(stn.fell_back && stn.prefill_device == TANDEM_DEVICE_CPU && strlen(stn.fallback_reason) > 0,
          "fell_back %d device %d reason \"%s\"", stn.fell_back, stn.prefill_device, stn.fallback_reason);
    /* A session outliving its engine fails cleanly. */
    tandem_engine_free(e2);
    CHECK_STATUS(tandem_generate(sn, prompt, &gpn, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("shut down");
    tandem_session_free(sn);

    /* 10. Error paths of generation: the session is unchanged after each. */
    tandem_session *se = NULL;
    CHECK_STATUS(tandem_session_create(NULL, &se), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_session_create(engine, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_session_create(engine, &se), TANDEM_OK);
    tandem_stats none = {.size = sizeof none};
    CHECK_STATUS(tandem_session_stats(se, &none), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("no generation");
    CHECK_STATUS(tandem_session_stats(s, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    tandem_stats small = {.size = 8};
    CHECK_STATUS(tandem_session_stats(s, &small), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_generate(NULL, prompt, &gp, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_generate(se, NULL, &gp, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_generate(se, "caf\xe9", &gp, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("UTF-8");
    tandem_generate_params bg = greedy(4);
    bg.size = 4;
    CHECK_STATUS(tandem_generate(se, prompt, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    bg = greedy(4);
    bg.temperature = -1.0f;
    CHECK_STATUS(tandem_generate(se, prompt, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    bg = greedy(4);
    bg.top_p = 0.0f;
    CHECK_STATUS(tandem_generate(se, prompt, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    bg = greedy(4);
    bg.n_stop = 1; /* stop NULL */
    CHECK_STATUS(tandem_generate(se, prompt, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    const char *bad_stops[2] = {"ok", "\xff"};
    bg.stop = bad_stops;
    bg.n_stop = 2;
    CHECK_STATUS(tandem_generate(se, prompt, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("stop[1]");
    const char *null_stops[1] = {NULL};
    bg.stop = null_stops;
    bg.n_stop = 1;
    CHECK_STATUS(tandem_generate(se, prompt, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    bg = greedy(100000);
    CHECK_STATUS(tandem_generate(se, prompt, &bg, NULL, NULL), TANDEM_ERR_CONTEXT_OVERFLOW);
    static char long_prompt[8192];
    for (size_t i = 0; i + 6 < sizeof long_prompt; i += 6) memcpy(long_prompt + i, "story ", 6);
    bg = greedy(4);
    CHECK_STATUS(tandem_generate(se, long_prompt, &bg, NULL, NULL), TANDEM_ERR_CONTEXT_OVERFLOW);
    CHECK_ERROR_MENTIONS("context");
    int32_t neg[2] = {5, -3};
    CHECK_STATUS(tandem_generate_tokens(se, neg, 2, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    int32_t huge[1] = {1 << 30};
    CHECK_STATUS(tandem_generate_tokens(se, huge, 1, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_generate_tokens(se, NULL, 3, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_generate_tokens(se, NULL, (size_t)1 << 40, &bg, NULL, NULL),
                 TANDEM_ERR_CONTEXT_OVERFLOW);
    CHECK_STATUS(tandem_generate_tokens(se, NULL, 0, &bg, NULL, NULL), TANDEM_ERR_INVALID_ARGUMENT);
    tandem_generate_params gpc = greedy(4);
    gpc.apply_chat_template = true;
    CHECK(session_len(se) == 0, "failed generations left %zu tokens", session_len(se));
    /* ... and it still works. */
    static collected c10;
    CHECK_STATUS(tandem_generate_tokens(se, expected, 3, &gpc, collect, &c10), TANDEM_OK);
    CHECK(c10.n == 4, "generate_tokens gave %zu tokens", c10.n);
    tandem_session_free(se);

    /* 11. Buffers: devices JSON and tokens. */
    size_t needed = 0;
    char tiny[4];
    CHECK_STATUS(tandem_devices(tiny, sizeof tiny, &needed), TANDEM_ERR_BUFFER_TOO_SMALL);
    CHECK(needed > 10, "devices needs %zu bytes", needed);
    char *json = malloc(needed);
    CHECK(json != NULL, "malloc");
    size_t needed2 = 0;
    CHECK_STATUS(tandem_devices(json, needed, &needed2), TANDEM_OK);
    CHECK(needed2 == needed && strlen(json) + 1 == needed, "devices wrote %zu of %zu", strlen(json), needed);
    CHECK(json[0] == '{' && strstr(json, "\"cpu\"") && strstr(json, "\"qnn\"") && strstr(json, "\"coreml\""),
          "devices JSON: %s", json);
    free(json);
    int32_t two[2];
    CHECK_STATUS(tandem_session_tokens(s, two, 2, &needed), TANDEM_ERR_BUFFER_TOO_SMALL);
    CHECK(needed == len2, "tokens needs %zu", needed);
    CHECK_STATUS(tandem_session_tokens(NULL, two, 2, &needed), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_tokenize(NULL, "x", true, two, 2, &needed), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_cancel(NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_session_fork(NULL, &f), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tandem_session_reset(NULL), TANDEM_ERR_INVALID_ARGUMENT);
    CHECK(tandem_engine_context_length(NULL) == 0, "context of NULL");

    /* NULL frees are no-ops. */
    tandem_session_free(NULL);
    tandem_engine_free(NULL);

    tandem_session_free(s);
    tandem_engine_free(engine);
    printf("capi_test: %d checks passed\n", checks);
    return 0;
}
