// The `modular` task: a OP b = c (mod p) for the operations of data.modular.ops (add, sub, mul,
// div), the setting of the grokking experiments (Power et al. 2022).
//
// The triples: every (op, a, b) with a, b in 0 .. p-1, in the order op, a, b, except b = 0 for div
// (p prime, a config rule, so every other b is invertible). A seeded permutation (Fisher-Yates,
// draw i = Rng{seed, kStreamShuffle, 0}.uniform_int(i, M - i)) puts the first
// round(train_fraction * M) of the M triples (at least 1 and at most M - 1) in the training set and
// the rest in the held-out set.
// An example is "a OP b =" -> c: its input the one-hots of a (p slots), of the operation
// (number of ops slots) and of b (p slots), in that order (input_dim = 2p + ops); its label
// c = a OP b mod p (num_classes = p); its group the operation's index in data.modular.ops; its
// token (for token-id routers) b, the last operand; its position 4, that of c in "a OP b = c".
// Only the answer is predicted: there are no other positions. The ideal loss is 0 (c is a
// function of the input).
// Sequence form (model.kind: transformer): an example is the sequence "a OP b =" of four tokens
// over a vocabulary of p + ops + 1: the numbers 0 .. p-1, the operation o as token p + o, "=" as
// token p + ops. It is four rows, positions i = 0 .. 3: row i's input (and token) is token i of
// "a OP b = c", its label token i + 1 (so row 3, the "=", has the answer c), its position i + 1,
// its group the operation, its sequence the example; its input x the one-hot of its token
// (input_dim = num_classes = the vocabulary). The transformer trains and scores only row 3's
// label (SequenceShape in config.h): the answer. train.batch_size and data.eval_size count
// tokens (multiples of 4, config rules): a step is batch_size / 4 examples, drawn as below with
// q = s * (B / 4) + j; the eval set is the first min(eval_size / 4, held-out) held-out triples.
// Training batches: example i of step s is train triple uniform_int(q, train triples) of
// Rng{seed, kStreamData, 0}, q = s * B + i (drawn with replacement; data.train_size is not used).
// The eval set is the first min(eval_size, held-out) held-out triples (in the permuted order).
#include "tasks/modular.h"

#include <algorithm>
#include <cmath>

#include "backend/check.h"
#include "backend/rng.h"

namespace moe {

namespace {
constexpr int kAnswerPosition = 4;  // c in "a OP b = c"
constexpr int kSequenceRows = 4;    // sequence form: the rows of "a OP b ="
}  // namespace

ModularTask::ModularTask(const ModularConfig& mc, int64_t eval_size, uint64_t seed, bool sequences)
    : mc_(mc), seed_(seed), seq_(sequences) {
    auto ops = modular_ops_parse(mc.ops);
    MOESIM_CHECK(ops.has_value() && mc.p >= 2, "data.modular.ops and p (schema)");
    ops_ = *ops;
    const int p = mc_.p;
    const bool div = std::find(ops_.begin(), ops_.end(), ModularOp::div) != ops_.end();
    if (div) {
        inverse_.assign(size_t(p), 0);
        for (int b = 1; b < p; ++b)
            for (int x = 1; x < p; ++x)
                if (int64_t{b} * x % p == 1) inverse_[size_t(b)] = x;
    }
    std::vector<Triple> all;
    for (int o = 0; o < int(ops_.size()); ++o)
        for (int a = 0; a < p; ++a)
            for (int b = 0; b < p; ++b)
                if (!(ops_[size_t(o)] == ModularOp::div && b == 0)) all.push_back({o, a, b});
    const Rng r{seed_, kStreamShuffle, 0};
    const size_t M = all.size();
    for (size_t i = 0; i + 1 < M; ++i) std::swap(all[i], all[i + size_t(r.uniform_int(i, M - i))]);
    const size_t n_train =
        std::clamp<size_t>(size_t(std::llround(mc_.train_fraction * double(M))), 1, M - 1);
    train_.assign(all.begin(), all.begin() + std::ptrdiff_t(n_train));
    held_out_.assign(all.begin() + std::ptrdiff_t(n_train), all.end());

    if (seq_) {
        const int E = int(std::min<int64_t>(eval_size / kSequenceRows, int64_t(held_out_.size())));
        eval_.resize_tokens(E * kSequenceRows, input_dim());
        for (int j = 0; j < E; ++j) fill_sequence(held_out_[size_t(j)], eval_, j);
        return;
    }
    const int E = int(std::min<int64_t>(eval_size, int64_t(held_out_.size())));
    eval_.resize_tokens(E, input_dim());
    for (int i = 0; i < E; ++i) fill(held_out_[size_t(i)], eval_, i);
}

int ModularTask::answer(const Triple& t) const {
    const int64_t p = mc_.p, a = t.a, b = t.b;
    switch (ops_[size_t(t.op)]) {
        case ModularOp::add:
            return int((a + b) % p);
        case ModularOp::sub:
            return int(((a - b) % p + p) % p);
        case ModularOp::mul:
            return int(a * b % p);
        case ModularOp::div:
            return int(a * inverse_[size_t(b)] % p);
    }
    return 0;
}

void ModularTask::fill(const Triple& t, Batch& out, int i) const {
    const int p = mc_.p, dim = input_dim();
    float* x = out.x.data() + size_t(i) * size_t(dim);
    std::fill(x, x + dim, 0.0f);
    x[t.a] = 1.0f;
    x[p + t.op] = 1.0f;
    x[p + int(ops_.size()) + t.b] = 1.0f;
    out.y[size_t(i)] = answer(t);
    out.group[size_t(i)] = t.op;
    out.token[size_t(i)] = t.b;
    out.sequence[size_t(i)] = i;  // each example is a sequence of its own (one answer token)
    out.position[size_t(i)] = kAnswerPosition;
}

void ModularTask::fill_sequence(const Triple& t, Batch& out, int j) const {
    const int V = vocab();
    const int seq[kSequenceRows + 1] = {t.a, mc_.p + t.op, t.b, equals_token(), answer(t)};
    for (int i = 0; i < kSequenceRows; ++i) {
        const int row = j * kSequenceRows + i;
        float* x = out.x.data() + size_t(row) * size_t(V);
        std::fill(x, x + V, 0.0f);
        x[seq[i]] = 1.0f;
        out.y[size_t(row)] = seq[i + 1];
        out.group[size_t(row)] = t.op;
        out.token[size_t(row)] = seq[i];
        out.sequence[size_t(row)] = j;
        out.position[size_t(row)] = i + 1;
    }
}

void ModularTask::train_batch(int64_t step, int batch_size, Batch& out) const {
    MOESIM_CHECK(step >= 0 && batch_size >= 0, "step and batch size are not negative");
    out.resize_tokens(batch_size, input_dim());
    const Rng r{seed_, kStreamData, 0};
    if (seq_) {
        MOESIM_CHECK(batch_size % kSequenceRows == 0, "whole sequences (a config rule)");
        const int n = batch_size / kSequenceRows;
        const uint64_t first = uint64_t(step) * uint64_t(n);
        for (int j = 0; j < n; ++j)
            fill_sequence(train_[size_t(r.uniform_int(first + uint64_t(j), train_.size()))], out,
                          j);
        return;
    }
    const uint64_t first = uint64_t(step) * uint64_t(batch_size);
    for (int i = 0; i < batch_size; ++i)
        fill(train_[size_t(r.uniform_int(first + uint64_t(i), train_.size()))], out, i);
}

}  // namespace moe
