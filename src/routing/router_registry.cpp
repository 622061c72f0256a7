// The one table of routers: adding a router touches its file, one row here, and its tests.
#include <array>

#include "config/config_error.h"
#include "routing/router.h"

namespace moe {

std::unique_ptr<Router> make_topk(const RouterConfig& cfg);

namespace {
const std::array<RouterEntry, 1> kRouters = {{
    {"topk", "token choice: each token picks its k best experts (p + bias), gates renormalised "
             "or not, optional noisy gating; Switch (k=1), GShard/Mixtral (k=2), DeepSeek "
             "(sigmoid + bias) are presets of it",
     "Shazeer et al. 2017; Fedus et al. 2021; Wang et al. 2024", &make_topk},
}};
}  // namespace

const RouterEntry* router_entries(int* count) {
    *count = int(kRouters.size());
    return kRouters.data();
}

std::unique_ptr<Router> router_create(const RouterConfig& cfg) {
    // RouterType has one value per row of kRouters, in the same order.
    const size_t i = size_t(cfg.type);
    if (i >= kRouters.size()) throw UserError("router.type: unknown router");
    return kRouters[i].make(cfg);
}

}  // namespace moe
