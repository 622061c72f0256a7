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
    // sequences: the examples in the sequence form of model.kind: transformer ("a OP b =", four
    // tokens per example; train.batch_size and data.eval_size then count tokens).
    ModularTask(const ModularConfig& mc, int64_t eval_size, uint64_t seed, bool sequences = false);
    explicit ModularTask(const Config& cfg)
        : ModularTask(cfg.data.modular, cfg.data.eval_size, cfg.seed,
                      cfg.model.kind == ModelKind::transformer) {}

    // Window form: the one-hots of a, op, b. Sequence form: the one-hot of the row's token.
    int input_dim() const override { return seq_ ? vocab() : 2 * mc_.p + int(ops_.size()); }
    // Window form: the p answers. Sequence form: the whole vocabulary (the LM head scores every
    // token; the answer is one of the number tokens 0 .. p-1).
    int num_classes() const override { return seq_ ? vocab() : mc_.p; }
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
    // The sequence form's vocabulary: the numbers 0 .. p-1, then one token per operation
    // (p + op), then "=" (p + ops).
    int vocab() const { return mc_.p + int(ops_.size()) + 1; }
    int equals_token() const { return mc_.p + int(ops_.size()); }
    const std::vector<Triple>& train_triples() const { return train_; }
    const std::vector<Triple>& held_out_triples() const { return held_out_; }

private:
    void fill(const Triple& t, Batch& out, int i) const;
    // Sequence form: example j (rows 4j .. 4j+3) of out.
    void fill_sequence(const Triple& t, Batch& out, int j) const;

    ModularConfig mc_;
    uint64_t seed_;
    bool seq_ = false;
    std::vector<ModularOp> ops_;
    std::vector<int> inverse_;  // inverse_[b] = b^-1 mod p (div only)
    std::vector<Triple> train_, held_out_;
    Batch eval_;
};

}  // namespace moe
