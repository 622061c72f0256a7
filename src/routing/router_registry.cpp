// The routers' factories, by name. A router's name, summary, paper, keys, rules and devices are
// its row in config/components.cpp; here it has one line: its name and its make function. Adding
// a router touches its file, its row, this table and its tests.
#include "routing/router_registry.h"

#include <vector>

#include "config/components.h"
#include "config/config_error.h"
#include "config/config_load.h"
#include "routing/router.h"

namespace moe {

std::unique_ptr<Router> make_topk(const RouterConfig& cfg);
std::unique_ptr<Router> make_expert_choice(const RouterConfig& cfg);
std::unique_ptr<Router> make_hash(const RouterConfig& cfg);
std::unique_ptr<Router> make_random(const RouterConfig& cfg);
std::unique_ptr<Router> make_sinkhorn(const RouterConfig& cfg);
std::unique_ptr<Router> make_base(const RouterConfig& cfg);
std::unique_ptr<Router> make_hierarchical(const RouterConfig& cfg);
std::unique_ptr<Router> make_soft(const RouterConfig& cfg);
std::unique_ptr<Router> make_soft_slots(const RouterConfig& cfg);

namespace {

struct RouterFactory {
    std::string_view name;  // = the row's name = router.type = the file stem
    std::unique_ptr<Router> (*make)(const RouterConfig&);
};

// One line per router (clang-format would pack them).
// clang-format off
constexpr RouterFactory kRouterFactories[] = {
    {"topk", &make_topk},
    {"expert_choice", &make_expert_choice},
    {"hash", &make_hash},
    {"random", &make_random},
    {"sinkhorn", &make_sinkhorn},
    {"base", &make_base},
    {"hierarchical", &make_hierarchical},
    {"soft", &make_soft},
    {"soft_slots", &make_soft_slots},
};
// clang-format on

const RouterFactory* find_factory(std::string_view name) {
    for (const RouterFactory& f : kRouterFactories)
        if (f.name == name) return &f;
    return nullptr;
}

}  // namespace

std::vector<std::string_view> router_factory_names() {
    std::vector<std::string_view> out;
    for (const RouterFactory& f : kRouterFactories) out.push_back(f.name);
    return out;
}

std::unique_ptr<Router> router_create(const RouterConfig& cfg) {
    // The row whose enum value is cfg.type (an explicit comparison), then its factory by name.
    const ComponentRow* row = find_component("router.type", int(cfg.type));
    const RouterFactory* f = row ? find_factory(row->name) : nullptr;
    if (!f)
        throw UserError(std::string("router.type: '") + std::string(to_string(cfg.type)) +
                        "' has no router in this build");
    return f->make(cfg);
}

}  // namespace moe
