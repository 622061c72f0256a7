#include "cli/bench_flops.h"

namespace moe {

namespace {
int n_moe_layers(const Config& cfg) {
    return cfg.model.layers / cfg.model.moe_every;
}
// Router logits per token (Router::logit_width): N; N*S for Soft MoE's slots; B + N for the
// hierarchical router's branch and expert logits; 2N for top-k with learned gating noise.
double router_width(const Config& cfg) {
    const double n = cfg.experts.count;
    switch (cfg.router.type) {
        case RouterType::soft_slots:
            return n * cfg.router.soft_slots.slots;
        case RouterType::hierarchical:
            return n + cfg.router.hierarchical.branches;
        case RouterType::topk:
            return cfg.router.topk.noise == TopkNoise::learned ? 2.0 * n : n;
        default:
            return n;
    }
}
int hidden_in(const Config& cfg, int H) {
    return cfg.experts.activation == Activation::swiglu ? 2 * H : H;
}
}  // namespace

BenchFlops bench_flops(const Config& cfg, int input_dim, int num_classes, int T,
                       double assignments) {
    const double t = T, din = input_dim, d = cfg.model.d_model, c = num_classes;
    const double h = cfg.experts.d_ff, h1 = hidden_in(cfg, cfg.experts.d_ff);
    const int moe = n_moe_layers(cfg), dense = cfg.model.layers - moe;
    BenchFlops f;
    f.embed = 2.0 * (2.0 * t * din * d);
    // the router head's products: x Wr (D, L), or the cosine head's x Wp (D, d) and the
    // cosines against the L embeddings (d each); L = the router's logits per token
    const double L = router_width(cfg);
    if (cfg.router.head == RouterHeadKind::cosine) {
        const double dl = cfg.router.cosine.dim;
        f.router = 3.0 * (2.0 * t * d * dl + 2.0 * t * dl * L) * moe;
    } else {
        f.router = 3.0 * (2.0 * t * d * L) * moe;
    }
    if (cfg.router.type == RouterType::soft_slots) {
        // Soft MoE's dispatch Xs = Dᵀ x and combine y = C Ys, both (T, N*S) by (N*S or T, D)
        f.router += 2.0 * 3.0 * (2.0 * t * L * d) * moe;
    }
    f.experts = 3.0 * (2.0 * assignments * d * h1 + 2.0 * assignments * h * d);
    if (cfg.experts.shared > 0) {
        const double sh = double(cfg.experts.shared) * h;
        const double sh1 = double(cfg.experts.shared) * h1;
        f.shared = 3.0 * (2.0 * t * d * sh1 + 2.0 * t * sh * d) * moe;
    }
    f.dense = 3.0 * (2.0 * t * d * h1 + 2.0 * t * h * d) * dense;
    f.head = 3.0 * (2.0 * t * d * c);
    if (cfg.model.kind == ModelKind::transformer) {
        const SequenceShape shape = sequence_shape(cfg.data);
        const double S = shape.positions;
        f.embed = 0.0;
        f.head *= double(shape.trained()) / S;  // the head sees the trained rows only
        f.attention =
            (3.0 * (2.0 * t * d * 3.0 * d + 2.0 * t * d * d) + 3.0 * 2.0 * t * d * (S + 1)) *
            cfg.model.layers;
    }
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
    double act = t * input_dim + t;                 // batch x and labels
    act += layers * (2.0 * t * d + t);              // h_l, RMSNorm(h_l), 1/rms
    act += moe * (2.0 * t * n + 4.0 * t * k);       // logits, probs; plan sel/gate/kept/pos
    if (cfg.router.type == RouterType::soft_slots)  // wider logits, dispatch and combine
        act += moe * 3.0 * t * (router_width(cfg) - n);
    act += assignments * (d + h1 + h + d + 1.0);  // dispatched x, pre, act, y, token
    if (cfg.experts.shared > 0) act += moe * t * cfg.experts.shared * (h1 + h);
    act += dense * t * (h1 + h);
    act += 2.0 * t * d + t + t * c;                  // h_L, RMSNorm(h_L), 1/rms, logits
    if (cfg.model.kind == ModelKind::transformer) {  // per block: m_l, normed, 1/rms, qkv, P, att
        const SequenceShape shape = sequence_shape(cfg.data);
        act += layers *
                   (2.0 * t * d + t + 3.0 * t * d + t * cfg.model.heads * shape.positions + t * d) +
               t;                       // and the token ids
        if (shape.first_trained > 0) {  // the loss mask: logits of the trained rows only, which
            const double r = t * shape.trained() / shape.positions;  // are gathered (row, n, dn)
            act += r * (c + 2.0 * d + 1.0) - t * c;
        }
    }
    m.activations = kF * act;
    return m;
}

}  // namespace moe
