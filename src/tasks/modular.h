// The `modular` task (SPEC.md section 4): a OP b = c (mod p), group = the operation. How the data
// is made, exactly, is written at the top of modular.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "tasks/task.h"

namespace moe {

class ModularTask final : public Task {
public:
    ModularTask(const ModularConfig& mc, int64_t eval_size, uint64_t seed);
    explicit ModularTask(const Config& cfg)
        : ModularTask(cfg.data.modular, cfg.data.eval_size, cfg.seed) {}

    int input_dim() const override { return 2 * mc_.p + int(ops_.size()); }
    int num_classes() const override { return mc_.p; }
    int num_groups() const override { return int(ops_.size()); }
    void train_batch(int64_t step, int batch_size, Batch& out) const override;
    const Batch& eval_set() const override { return eval_; }
    std::string_view name() const override { return "modular"; }
    double ideal_loss() const override { return 0.0; }

    // --- introspection, for tests ---
    struct Triple {
        int op, a, b;  // op = index into data.modular.ops
    };
    // c = a OP b (mod p); div: a * b^-1 (b != 0, p prime).
    int answer(const Triple& t) const;
    const std::vector<Triple>& train_triples() const { return train_; }
    const std::vector<Triple>& held_out_triples() const { return held_out_; }

private:
    void fill(const Triple& t, Batch& out, int i) const;

    ModularConfig mc_;
    uint64_t seed_;
    std::vector<ModularOp> ops_;
    std::vector<int> inverse_;  // inverse_[b] = b^-1 mod p (div only)
    std::vector<Triple> train_, held_out_;
    Batch eval_;
};

}  // namespace moe
