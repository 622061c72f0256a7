// One router, sized once, run on hand-built logits (and the model input for the routers that
// read it), with the plan's by-token index built: what the router tests of hash, random,
// sinkhorn, base and hierarchical share.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config_error.h"
#include "config/config_load.h"
#include "routing/capacity.h"
#include "routing/router.h"

namespace moe::test {

struct RouteHarness {
    std::unique_ptr<Router> r;
    int T, N;
    double factor;  // capacity factor of the pass (0 = no limit)
    RouterState st;
    RoutingPlan plan;
    std::vector<int> scratch;

    RouteHarness(const RouterConfig& cfg, int T_, int N_, double factor_ = 0.0)
        : r(router_create(cfg)), T(T_), N(N_), factor(factor_) {
        r->reserve(st, T, N, factor);
        plan.reserve(T, N, r->max_assignments(T, N, factor));
    }
    // logits (T, logit_width(N)); input (T, dim) or token ids; capacity with k after the router
    // when cap_k > 0.
    void run(const float* logits, bool training = true, const float* input = nullptr, int dim = 0,
             const int* ids = nullptr, uint64_t seed = 1, int cap_k = 0,
             DropPolicy policy = DropPolicy::position) {
        Pass pass;
        pass.training = training;
        pass.capacity_factor = factor;
        pass.input = input;
        pass.input_dim = dim;
        pass.token_ids = ids;
        r->route(logits, T, nullptr, pass, seed, st, plan);
        if (cap_k > 0) capacity_apply(plan, factor, cap_k, policy, scratch);
        plan_index_by_token(plan, scratch);
    }
    // The experts of token t's processed assignments, in slot order.
    std::vector<int> experts_of(int t) const {
        std::vector<int> out;
        for (int j = plan.tok_offsets[size_t(t)]; j < plan.tok_offsets[size_t(t) + 1]; ++j)
            out.push_back(expert_of(plan.tok_assign[size_t(j)]));
        return out;
    }
    std::vector<float> gates_of(int t) const {
        std::vector<float> out;
        for (int j = plan.tok_offsets[size_t(t)]; j < plan.tok_offsets[size_t(t) + 1]; ++j)
            out.push_back(plan.gate[size_t(plan.tok_assign[size_t(j)])]);
        return out;
    }
    int expert_of(int a) const {
        for (int i = 0; i < N; ++i)
            if (a < plan.offsets[size_t(i) + 1]) return i;
        return -1;
    }
    std::vector<int> routed() const { return {plan.routed.begin(), plan.routed.begin() + N}; }
};

inline std::string config_error(const std::string& yaml) {
    try {
        config_load_string(yaml, "t.yaml");
    } catch (const UserError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace moe::test
