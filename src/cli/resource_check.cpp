#include "cli/resource_check.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "backend/device.h"
#include "backend/memory.h"
#include "cli/bench_flops.h"
#include "config/config_error.h"
#include "tasks/clusters.h"

namespace moe {

double ResourceEstimate::bytes() const {
    double s = 0;
    for (const MemoryPart& p : parts) s += p.bytes;
    return s;
}

std::string format_bytes(double b) {
    const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (b >= 1024.0 && u < 6) b /= 1024.0, ++u;
    return u == 0 ? fmt::format("{:.0f} bytes", b) : fmt::format("{:.1f} {}", b, units[u]);
}

ResourceEstimate estimate_resources(const Config& cfg) {
    const ClustersConfig& cc = cfg.data.clusters;
    const double din = cc.dim, C = cc.num_classes, G = cc.num_clusters;
    const double T = cfg.train.batch_size, k = cfg.router.k;
    const double D = cfg.model.d_model, N = cfg.experts.count, H = cfg.experts.d_ff;
    const double H1 = cfg.experts.activation == Activation::swiglu ? 2 * H : H;
    const double S = cfg.experts.shared;
    const int layers = cfg.model.layers, moe = layers / cfg.model.moe_every, dense = layers - moe;

    // Parameters as the model lays them out (weights and biases; norms' gains).
    const double ffn = D * H1 + H1 + H * D + D;
    double params = din * D + D + D * C + C + D * (layers + 1);
    params += moe * (D * N + N + N * ffn + S * ffn) + dense * ffn;
    const double opt_floats = cfg.train.optimizer == OptimizerKind::sgd
                                  ? (cfg.train.momentum > 0 ? params : 0.0)
                                  : 2.0 * params;
    // Every token kept by every MoE layer: the most a step can dispatch.
    const double assignments = T * k * moe;
    const BenchMemory m =
        bench_memory(cfg, cc.dim, cc.num_classes, cfg.train.batch_size, assignments, 0, 0);

    ResourceEstimate e;
    const std::string model_keys = "experts.count, experts.d_ff, model.d_model, model.layers";
    e.parts.push_back({"parameters, gradients and optimizer state", model_keys,
                       4.0 * (2.0 * params + opt_floats)});
    e.parts.push_back({"activations of a step",
                       "train.batch_size, router.k, experts.d_ff, model.d_model, model.layers",
                       m.activations});
    const double example = 4.0 * din + 8.0;  // float inputs, label and group
    e.parts.push_back({"training set", "data.train_size, data.clusters.dim",
                       double(cfg.data.train_size) * example});
    e.parts.push_back(
        {"evaluation set", "data.eval_size, data.clusters.dim",
         double(cfg.data.eval_size) * example + 4.0 * moe * double(cfg.data.eval_size)});
    const bool mlp = cc.teacher == Teacher::mlp;
    const double H_t = ClustersTask::kTeacherHidden, in = mlp ? H_t : din;
    const double teacher = C * in + C + (mlp ? H_t * din + H_t : 0.0);
    e.parts.push_back({"cluster centres and teachers",
                       "data.clusters.num_clusters, data.clusters.dim, data.clusters.num_classes",
                       8.0 * G * (din + teacher) + 8.0 * ClustersTask::kCalibrationSamples * C});
    // Per MoE layer, train and eval windows count tokens per (group, expert).
    e.parts.push_back({"routing statistics",
                       "data.clusters.num_clusters, experts.count, model.layers",
                       2.0 * 8.0 * moe * G * N});

    // Setup: per cluster, the teacher's logits on the calibration sample and up to 40 sweeps of
    // K classes over it, each a pass over K logits; then every example of both sets.
    const double n = ClustersTask::kCalibrationSamples;
    const double logits = C * in + (mlp ? H_t * din : 0.0);
    e.setup_ops = G * (n * logits + 40.0 * C * n * C) +
                  double(cfg.data.train_size + cfg.data.eval_size) * (din + logits);
    return e;
}

void check_resources(const Config& cfg) {
    if (const std::string why = device_unavailable(cfg.device); !why.empty()) throw UserError(why);
    const ResourceEstimate e = estimate_resources(cfg);
    if (e.setup_ops > kMaxSetupOps) {
        throw UserError(fmt::format(
            "data setup too large: calibrating data.clusters.num_clusters={} teachers of "
            "data.clusters.num_classes={} classes (dim {}) takes about {:.0e} operations, hours "
            "of work; the most moe-sim accepts is {:.0e} (reduce num_clusters or num_classes)",
            cfg.data.clusters.num_clusters, cfg.data.clusters.num_classes, cfg.data.clusters.dim,
            e.setup_ops, kMaxSetupOps));
    }
    const std::optional<AvailableMemory> avail = available_memory();
    if (!avail || e.bytes() <= double(avail->bytes)) return;
    const MemoryPart& big = *std::max_element(
        e.parts.begin(), e.parts.end(),
        [](const MemoryPart& a, const MemoryPart& b) { return a.bytes < b.bytes; });
    throw UserError(fmt::format(
        "this config needs about {} of memory, more than the {} this process may take ({}): "
        "the largest part is the {} ({}, driven by {})",
        format_bytes(e.bytes()), format_bytes(double(avail->bytes)), avail->source, big.what,
        format_bytes(big.bytes), big.keys));
}

}  // namespace moe
