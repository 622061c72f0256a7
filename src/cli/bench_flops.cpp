#include "cli/bench_flops.h"

namespace moe {

namespace {
int n_moe_layers(const Config& cfg) {
    return cfg.model.layers / cfg.model.moe_every;
}
int hidden_in(const Config& cfg, int H) {
    return cfg.experts.activation == Activation::swiglu ? 2 * H : H;
}
}  // namespace

BenchFlops bench_flops(const Config& cfg, int input_dim, int num_classes, int T,
                       double assignments) {
    const double t = T, din = input_dim, d = cfg.model.d_model, c = num_classes;
    const double n = cfg.experts.count, h = cfg.experts.d_ff, h1 = hidden_in(cfg, cfg.experts.d_ff);
    const int moe = n_moe_layers(cfg), dense = cfg.model.layers - moe;
    BenchFlops f;
    f.embed = 2.0 * (2.0 * t * din * d);
    // the router head's products: x Wr (D, L), or the cosine head's x Wp (D, d) and the
    // cosines against the L expert embeddings (d each); L = 2N with learned gating noise
    const double L =
        cfg.router.type == RouterType::topk && cfg.router.topk.noise == TopkNoise::learned ? 2.0 * n
                                                                                           : n;
    if (cfg.router.head == RouterHeadKind::cosine) {
        const double dl = cfg.router.cosine.dim;
        f.router = 3.0 * (2.0 * t * d * dl + 2.0 * t * dl * L) * moe;
    } else {
        f.router = 3.0 * (2.0 * t * d * L) * moe;
    }
    f.experts = 3.0 * (2.0 * assignments * d * h1 + 2.0 * assignments * h * d);
    if (cfg.experts.shared > 0) {
        const double sh = double(cfg.experts.shared) * h;
        const double sh1 = double(cfg.experts.shared) * h1;
        f.shared = 3.0 * (2.0 * t * d * sh1 + 2.0 * t * sh * d) * moe;
    }
    f.dense = 3.0 * (2.0 * t * d * h1 + 2.0 * t * h * d) * dense;
    f.head = 3.0 * (2.0 * t * d * c);
    return f;
}

BenchMemory bench_memory(const Config& cfg, int input_dim, int num_classes, int T,
                         double assignments, size_t n_params, size_t optimizer_floats) {
    constexpr double kF = 4.0;  // bytes per float32 / int32
    const double t = T, d = cfg.model.d_model, c = num_classes, k = cfg.router.k;
    const double n = cfg.experts.count, h = cfg.experts.d_ff, h1 = hidden_in(cfg, cfg.experts.d_ff);
    const int layers = cfg.model.layers, moe = n_moe_layers(cfg), dense = layers - moe;
    BenchMemory m;
    m.params = kF * double(n_params);
    m.grads = kF * double(n_params);
    m.optimizer = kF * double(optimizer_floats);
    double act = t * input_dim + t;               // batch x and labels
    act += layers * (2.0 * t * d + t);            // h_l, RMSNorm(h_l), 1/rms
    act += moe * (2.0 * t * n + 4.0 * t * k);     // logits, probs; plan sel/gate/kept/pos
    act += assignments * (d + h1 + h + d + 1.0);  // dispatched x, pre, act, y, token
    if (cfg.experts.shared > 0) act += moe * t * cfg.experts.shared * (h1 + h);
    act += dense * t * (h1 + h);
    act += 2.0 * t * d + t + t * c;  // h_L, RMSNorm(h_L), 1/rms, logits
    m.activations = kF * act;
    return m;
}

}  // namespace moe
