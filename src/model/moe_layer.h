// A Mixture-of-Experts FFN layer (Shazeer et al. 2017; Fedus et al. 2021; DeepSeekMoE 2024):
//
//   logits = x Wr                          (T, N)    router, no bias
//   plan   = route(logits) + capacity      RoutingPlan: K slots per token, CSR by expert
//   Xd     = x[token of each assignment]   (A, D)    tokens grouped by expert (counting sort)
//   Y_e    = act(Xd_e W1_e + b1_e) W2_e + b2_e       one matrix product per expert segment
//   y[t]   = sum_{kept slots s of t} g[s] * Y[pos[s]]  + shared(x)
//
// Compute is O(T K) expert rows, never O(T N). A dropped slot contributes nothing; a token with
// every slot dropped gets y[t] = shared(x) only (the residual carries it).
//
// Losses (METRICS.md): the balancing loss (switch | shazeer) and the z-loss are computed in
// forward from the plan; in training their gradients are kept for backward.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "config/config.h"
#include "model/layers/ffn.h"
#include "model/params.h"
#include "routing/router.h"

namespace moe {

struct MoeForwardInfo {
    bool training = false;
    uint64_t seed = 0;
    uint64_t noise_step = 0;
    double capacity_factor = 0.0;
};

class MoeLayer {
public:
    MoeLayer(const Config& cfg, ParamStore& ps, const std::string& name);
    void reserve(int T_max);

    // y (T, D) from x (T, D). Returns the layer's loss contribution with coefficients
    // (alpha * aux + z_coef * z); the unweighted values are in aux_loss() and z_loss().
    double forward(Backend& be, ParamStore& ps, float* y, const float* x, int T,
                   const MoeForwardInfo& info);
    // dx (T, D) overwritten from dy (T, D) and the x of forward. With router_grad_parts, the
    // router-weight gradients of the task loss and of the auxiliary losses are also computed
    // apart, for the statistics (router_grad_task / _aux); the parameter gradient is the same
    // single product of the summed logit gradients either way, so statistics never change the
    // arithmetic of training. Backward writes its activation gradients over the forward
    // workspaces (see backward), so it runs once per training forward; the plan, logits and
    // losses stay readable.
    void backward(Backend& be, ParamStore& ps, float* dx, const float* dy, const float* x, int T,
                  bool router_grad_parts = false);

    const RoutingPlan& plan() const { return plan_; }
    const float* logits() const { return logits_.data(); }
    double aux_loss() const { return aux_; }
    double z_loss_value() const { return z_; }
    float* bias() { return bias_.data(); }
    const float* bias() const { return bias_.data(); }
    int experts() const { return N_; }
    // Router-weight gradients of the last backward with router_grad_parts: (D, N) each.
    const std::vector<float>& router_grad_task() const { return gw_task_; }
    const std::vector<float>& router_grad_aux() const { return gw_aux_; }

    int router_w = -1, w1 = -1, b1 = -1, w2 = -1, b2 = -1;   // parameter tensors

private:
    int D_, N_, K_, H_, H1_;
    Activation act_;
    BalanceConfig balance_;
    DropPolicy drop_policy_;
    float noise_;
    std::unique_ptr<Router> router_;
    std::unique_ptr<Ffn> shared_;
    RoutingPlan plan_;
    std::vector<float> bias_;                                   // (N) balancing bias
    std::vector<int> tok_, scratch_;                            // (A) token of each assignment
    std::vector<double> dscratch_;
    // Forward workspaces, (A_max, width) with A_max = T_max K. Backward reuses them once dead:
    // yd_ then holds dY, h_ dh, pre_ dpre and xd_ dXd.
    std::vector<float> logits_, xd_, pre_, h_, yd_, shared_y_;  // forward
    std::vector<float> dgate_, dgate_aux_, dprobs_, dlog_, dlog_aux_, dlog_direct_,
        gw_task_, gw_aux_;                                      // backward
    double aux_ = 0.0, z_ = 0.0;
    bool training_ = false;
};

}  // namespace moe
