// The header must compile as C++17 with -Wall -Wextra -Werror (`cargo xtask test`, step capi):
// apps written in C++ include it directly. This uses every type and the defaults functions.
#include "tandem.h"

#include <cstdio>

static int32_t on_token(int32_t id, const char *text, size_t len, void *user_data) {
    (void)id;
    (void)user_data;
    std::fwrite(text, 1, len, stdout);
    return 0;
}

int main() {
    tandem_engine_params ep = tandem_engine_default_params();
    tandem_generate_params gp = tandem_generate_default_params();
    tandem_stats stats{};
    stats.size = sizeof stats;
    tandem_token_callback cb = on_token;
    tandem_engine *engine = nullptr;
    tandem_session *session = nullptr;
    tandem_status st = TANDEM_OK;
    tandem_placement where = TANDEM_PLACEMENT_CPU;
    tandem_device device = TANDEM_DEVICE_NPU_THEN_CPU;
    tandem_stop_reason reason = TANDEM_STOP_CALLBACK;
    static_assert(TANDEM_ABI_VERSION >= 1, "ABI version");
    (void)ep;
    (void)gp;
    (void)cb;
    (void)engine;
    (void)session;
    (void)where;
    (void)device;
    (void)reason;
    return st;
}
