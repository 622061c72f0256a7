// A router turns router logits into a RoutingPlan and nothing else (DESIGN.md). Everything
// downstream (dispatch, combine, backward, balancers, statistics) reads only the plan.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "config/config.h"
#include "routing/routing_plan.h"

namespace moe {

struct RouteContext {
    bool training = false;       // gating noise only in training
    uint64_t seed = 0;           // noise keyed (seed, kStreamNoise, noise_step, t*N + i)
    uint64_t noise_step = 0;     // unique per (step, layer)
    double capacity_factor = 0;  // 0 = no limit
    const float* bias = nullptr; // (N) balancing bias b[i]; null = 0
};

class Router {
public:
    virtual ~Router() = default;
    // logits: (T, N) router logits of this layer. Writes the whole plan (sized by the caller with
    // plan.resize(T, N, K)), including the probabilities the backward needs.
    virtual void route(const float* logits, const RouteContext& ctx, RoutingPlan& plan) const = 0;
    // d_gate: (T*K) gradient w.r.t. each slot's gate; d_probs: (T, N) gradient w.r.t. p (may be
    // null). Writes d_logits: (T, N), overwriting.
    virtual void backward(const RoutingPlan& plan, const float* d_gate, const float* d_probs,
                          float* d_logits) const = 0;
};

struct RouterEntry {
    std::string_view name;
    std::string_view summary;
    std::string_view paper;
    std::unique_ptr<Router> (*make)(const RouterConfig&);
};

// The one table of routers (router_registry.cpp).
std::unique_ptr<Router> router_create(const RouterConfig& cfg);
const RouterEntry* router_entries(int* count);

}  // namespace moe
