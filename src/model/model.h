// The model (DESIGN.md "One step, as data flows"):
//
//   h_0     = x We + be                                  (T, D) input projection
//   h_{l+1} = h_l + FFN_l(RMSNorm_l(h_l))                 l = 0..L-1, residual blocks
//             FFN_l is an MoE layer when (l+1) % moe_every == 0, else a dense FFN of width d_ff
//   logits  = RMSNorm_f(h_L) Wh + bh                      (T, C) classifier head
//   loss    = cross_entropy(logits, y) + sum over MoE layers (alpha * aux + z_coef * z)
//
// model.kind: moe_only (Chen et al. 2022): logits = MoE(x), one MoE layer on the raw input
// (width Din) whose experts (experts.kind: patch) output the C = 2 class scores; no embedding,
// norm, head or residual. loss = cross_entropy(logits, y) + that layer's auxiliary terms.
//
// Shapes: T tokens (examples), Din input dim, D = model.d_model, C classes.
//
// model.kind: transformer (token tasks; docs/model.md "The transformer"): the input is the token
// ids (Pass::token_ids), T = nseq whole sequences of S positions (SequenceShape, config.h), and
//
//   h_0     = E[token] + P[position]                      token (V, D) and position (S, D) tables
//   m_l     = h_l + Attn_l(RMSNorm_a,l(h_l))              causal multi-head self-attention
//   h_{l+1} = m_l + FFN_l(RMSNorm_l(m_l))                 FFN_l as above (MoE or dense)
//   logits  = RMSNorm_f(h_L) Wh                           Wh (D, V), or E^T when tied; no bias
//
// The loss and the accuracy count the rows of the positions SequenceShape trains: all of them
// (markov), or only each sequence's last one (modular: the answer), whose rows alone reach the
// head (the other rows' logits are not computed and get no gradient from the loss).
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.h"
#include "config/config.h"
#include "model/layers/attention.h"
#include "model/layers/ffn.h"
#include "model/moe_layer.h"
#include "model/params.h"

namespace moe {

struct LossParts {
    double loss = 0.0;    // total = task + aux + z (with coefficients)
    double task = 0.0;    // cross-entropy
    double aux = 0.0;     // sum over MoE layers of alpha * aux
    double z = 0.0;       // sum over MoE layers of z_coef * z
    int64_t correct = 0;  // examples whose argmax is the label
    int64_t targets = 0;  // the labels the loss averages over and `correct` counts (trained rows)
};

class Model {
public:
    // be: the backend whose memory holds the parameters and activations (null: host memory, for
    // the CPU backend); forward and backward must then be given that backend.
    Model(const Config& cfg, int input_dim, int num_classes, int T_max, Backend* be = nullptr);

    // Forward pass and loss on x (T, Din), labels y (T), both host memory (uploaded to the
    // backend's memory when that is not host memory). In training the gradients of the auxiliary
    // losses are prepared for backward.
    LossParts forward(Backend& be, const float* x, const int* y, int T, const Pass& pass);
    // Backward of the last forward (training): accumulates into the parameter gradients. With
    // router_grad_parts, each MoE layer also keeps its router gradient's task and auxiliary parts
    // (MoeLayer::backward).
    void backward(Backend& be, int T, bool router_grad_parts = false);
    // After each optimizer step: every MoE layer's balancing update (MoeLayer).
    void after_optimizer_step();
    // The model's training state: parameters (and gradients) and each MoE layer's own state.
    void save(BinaryWriter& w) const;
    void load(BinaryReader& r);

    ParamStore& params() { return ps_; }
    const ParamStore& params() const { return ps_; }
    std::vector<MoeLayer*> moe_layers();       // in block order
    std::vector<int> moe_block_index() const;  // block index of each MoE layer
    int T_max() const { return T_max_; }
    // The classifier logits of the last forward (trained_rows(T), C), in the backend's memory.
    const float* logits() const { return logits_.data(); }
    // The rows of a T-row batch whose label the loss counts: T, or with the transformer's loss
    // mask (SequenceShape::first_trained > 0; modular: the answer) T / S * trained, row r of the
    // logits being batch row loss_row(r).
    int trained_rows(int T) const;
    int loss_row(int r) const;

private:
    // The task loss of `rows` rows of logits_ against labels y, its gradient into dlogits_ when
    // training; with model.output_softmax, through the softmax of the logits.
    double task_loss(Backend& be, int rows, const int* y, bool training, int64_t* correct);

    Config cfg_;
    int T_max_, Din_, D_, C_, L_;
    bool moe_only_ = false;  // model.kind: moe_only: moe_[0] alone, on the raw input
    ParamStore ps_;
    Linear embed_, head_;
    std::vector<int> norm_g_;  // (L) norm gains, + final
    int final_g_ = -1;
    std::vector<std::unique_ptr<MoeLayer>> moe_;  // per block, null when dense
    std::vector<std::unique_ptr<Ffn>> dense_;     // per block, null when MoE
    // activations
    // activations, in the backend's memory
    const float* x_ = nullptr;              // the input of the last forward (backend memory)
    Buf<float> x_dev_;                      // (T_max, Din) the input's copy on a device
    Buf<int> y_dev_;                        // (T_max) the labels' copy on a device
    std::vector<Buf<float>> h_, n_, rrms_;  // (L+1) residual stream, (L+1) normed, rrms
    Buf<float> f_, logits_, dlogits_, dh_, dn_;
    Buf<float> out_probs_;  // model.output_softmax: softmax(logits), the cross-entropy's input
    // model.kind: transformer
    bool tf_ = false;
    bool tied_ = false;
    int S_ = 0;
    int first_trained_ = 0;  // SequenceShape: positions below it are not trained (loss mask)
    int tok_emb_ = -1, pos_emb_ = -1;               // (V, D) and (S, D) tables
    std::vector<int> attn_g_;                       // (L) attention norm gains
    std::vector<std::unique_ptr<Attention>> attn_;  // per block
    std::vector<Buf<float>> mid_, na_, rrms_a_;     // (L) after attention, normed input, rrms
    Buf<int> pos_ids_;                              // (T_max) position of each row: t % S
    Buf<int> tok_dev_;                              // (T_max) the token ids' copy on a device
    const int* tok_ = nullptr;                      // the token ids of the last forward
    Buf<int> loss_rows_;                            // (R_max) loss mask: loss_row(r)
    Buf<float> nsel_, dnsel_;                       // (R_max, D) the trained rows' normed h_L
    std::vector<int> ysel_;                         // (R_max) their labels, on the host
    void head_forward(Backend& be, int T);
    void head_backward(Backend& be, int T);
    Buf<float> dx_;  // moe_only: (T_max, Din) the input gradient the layer writes (not used)
};

}  // namespace moe
