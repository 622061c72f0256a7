#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/check.h"

namespace moe {

Model::Model(const Config& cfg, int input_dim, int num_classes, int T_max, Backend* be)
    : cfg_(cfg),
      T_max_(T_max),
      Din_(input_dim),
      D_(cfg.model.d_model),
      C_(num_classes),
      L_(cfg.model.layers),
      moe_only_(cfg.model.kind == ModelKind::moe_only) {
    if (moe_only_) {
        L_ = 1;
        moe_.resize(1);
        dense_.resize(1);
        moe_[0] = std::make_unique<MoeLayer>(cfg, ps_, "block0.moe", 0, 1, input_dim);
        MOESIM_CHECK(moe_[0]->out_dim() == C_, "moe_only: the experts' output is not the classes");
        ps_.finalize(cfg.seed, be);
        moe_[0]->reserve(T_max, be);
        logits_.allocate(be, size_t(T_max) * C_);
        dlogits_.allocate(be, size_t(T_max) * C_);
        if (cfg.model.output_softmax) out_probs_.allocate(be, size_t(T_max) * C_);
        dx_.allocate(be, size_t(T_max) * Din_);
        if (be && !be->host_memory()) {
            x_dev_.allocate(be, size_t(T_max) * Din_);
            y_dev_.allocate(be, size_t(T_max));
        }
        return;
    }
    tf_ = cfg.model.kind == ModelKind::transformer;
    if (tf_) {
        // embeddings N(0, 1/D): a tied head's logits start with unit variance
        tied_ = cfg.model.tie_embeddings;
        const SequenceShape shape = sequence_shape(cfg.data);
        S_ = shape.positions;
        first_trained_ = shape.first_trained;
        MOESIM_CHECK(S_ > 0 && T_max % S_ == 0, "whole sequences (config rules)");
        const float std = 1.0f / std::sqrt(float(D_));
        tok_emb_ = ps_.add("embed.token", size_t(C_) * D_, Init::normal, std);
        pos_emb_ = ps_.add("embed.position", size_t(S_) * D_, Init::normal, std);
        attn_.resize(L_);
    } else {
        embed_.declare(ps_, "embed", input_dim, D_);
    }
    moe_.resize(L_);
    dense_.resize(L_);
    for (int l = 0; l < L_; ++l) {
        const std::string name = "block" + std::to_string(l);
        if (tf_) {
            attn_g_.push_back(ps_.add(name + ".attn.norm.g", D_, Init::ones));
            attn_[l] = std::make_unique<Attention>();
            attn_[l]->declare(ps_, name + ".attn", D_, cfg.model.heads, S_);
        }
        norm_g_.push_back(ps_.add(name + ".norm.g", D_, Init::ones));
        if ((l + 1) % cfg.model.moe_every == 0) {
            moe_[l] = std::make_unique<MoeLayer>(cfg, ps_, name + ".moe", l, L_);
        } else {
            dense_[l] = std::make_unique<Ffn>();
            dense_[l]->declare(ps_, name + ".ffn", D_, cfg.experts.d_ff, cfg.experts.activation);
        }
    }
    final_g_ = ps_.add("final.norm.g", D_, Init::ones);
    if (!tf_)
        head_.declare(ps_, "head", D_, C_);
    else if (!tied_)
        head_.declare(ps_, "head", D_, C_, false);
    ps_.finalize(cfg.seed, be);

    for (int l = 0; l < L_; ++l) {
        if (moe_[l])
            moe_[l]->reserve(T_max, be);
        else
            dense_[l]->reserve(T_max, be);
    }
    const size_t TD = size_t(T_max) * D_;
    h_.resize(L_ + 1);
    n_.resize(L_ + 1);
    rrms_.resize(L_ + 1);
    for (int l = 0; l <= L_; ++l) {
        h_[l].allocate(be, TD);
        n_[l].allocate(be, TD);
        rrms_[l].allocate(be, T_max);
    }
    f_.allocate(be, TD);
    dh_.allocate(be, TD);
    dn_.allocate(be, TD);
    logits_.allocate(be, size_t(T_max) * C_);
    dlogits_.allocate(be, size_t(T_max) * C_);
    if (cfg.model.output_softmax) out_probs_.allocate(be, size_t(T_max) * C_);
    if (be && !be->host_memory()) {
        if (!tf_) x_dev_.allocate(be, size_t(T_max) * Din_);
        y_dev_.allocate(be, size_t(T_max));
    }
    if (tf_) {
        mid_.resize(L_);
        na_.resize(L_);
        rrms_a_.resize(L_);
        for (int l = 0; l < L_; ++l) {
            attn_[l]->reserve(T_max, be);
            mid_[l].allocate(be, TD);
            na_[l].allocate(be, TD);
            rrms_a_[l].allocate(be, T_max);
        }
        std::vector<int> pos(static_cast<size_t>(T_max));
        for (int t = 0; t < T_max; ++t) pos[size_t(t)] = t % S_;
        pos_ids_.allocate(be, size_t(T_max));
        pos_ids_.assign_from(pos.data());
        if (be && !be->host_memory()) tok_dev_.allocate(be, size_t(T_max));
        if (first_trained_ > 0) {  // the rows whose target is trained, and their copies
            const int trained = S_ - first_trained_, R = T_max / S_ * trained;
            std::vector<int> rows(static_cast<size_t>(R));
            for (int r = 0; r < R; ++r) rows[size_t(r)] = loss_row(r);
            loss_rows_.allocate(be, size_t(R));
            loss_rows_.assign_from(rows.data());
            nsel_.allocate(be, size_t(R) * D_);
            dnsel_.allocate(be, size_t(R) * D_);
            ysel_.resize(size_t(R));
        }
    }
}

int Model::loss_row(int r) const {
    const int trained = S_ - first_trained_;
    return r / trained * S_ + first_trained_ + r % trained;
}

int Model::trained_rows(int T) const {
    return first_trained_ > 0 ? T / S_ * (S_ - first_trained_) : T;
}

// The head on the R = trained_rows(T) rows whose target is trained: all T rows, or (a loss mask,
// first_trained_ > 0) the rows loss_row(r) gathered into nsel (R, D) first.
void Model::head_forward(Backend& be, int T) {
    const int R = trained_rows(T);
    const float* n = n_[L_].data();
    if (first_trained_ > 0) {  // nsel[r] = n[loss_row(r)]
        be.embedding_forward(nsel_.data(), n, loss_rows_.data(), R, D_, false);
        n = nsel_.data();
    }
    if (tied_)  // logits (R, V) = n (R, D) E^T
        be.gemm(logits_.data(), n, ps_.p(tok_emb_), R, C_, D_, false, true, 0.0f);
    else
        head_.forward(be, ps_, logits_.data(), n, R);
}

void Model::head_backward(Backend& be, int T) {
    const int R = trained_rows(T);
    const bool masked = first_trained_ > 0;
    const float* n = masked ? nsel_.data() : n_[L_].data();
    float* dn = masked ? dnsel_.data() : dn_.data();
    if (tied_) {
        // dE (V, D) += dlogits^T n; dn (R, D) = dlogits E
        be.gemm(ps_.g(tok_emb_), dlogits_.data(), n, C_, D_, R, true, false, 1.0f);
        be.gemm(dn, dlogits_.data(), ps_.p(tok_emb_), R, D_, C_, false, false, 0.0f);
    } else {
        head_.backward(be, ps_, dn, dlogits_.data(), n, R);
    }
    if (masked) {  // dn (T, D): dnsel[r] at row loss_row(r), 0 at the rows not trained
        be.fill_zero(dn_.data(), size_t(T) * D_ * sizeof(float));
        be.embedding_backward(dn_.data(), dnsel_.data(), loss_rows_.data(), R, T, D_);
    }
}

std::vector<MoeLayer*> Model::moe_layers() {
    std::vector<MoeLayer*> out;
    for (auto& m : moe_)
        if (m) out.push_back(m.get());
    return out;
}

std::vector<int> Model::moe_block_index() const {
    std::vector<int> out;
    for (int l = 0; l < L_; ++l)
        if (moe_[l]) out.push_back(l);
    return out;
}

LossParts Model::forward(Backend& be, const float* x, const int* y, int T, const Pass& pass) {
    LossParts lp;
    MOESIM_CHECK(T <= T_max_, "more tokens than the model was reserved for");
    MOESIM_CHECK(be.host_memory() || !ps_.data().on_host(),
                 "a device backend for a model in host memory");
    Pass layer_pass = pass;  // the MoE layers see the raw input (routers that hash it), on the host
    layer_pass.input = x;
    layer_pass.input_dim = Din_;
    // the input and the trained rows' labels in the backend's memory (the same pointers on the CPU)
    const int R = trained_rows(T);
    if (R != T) {
        for (int r = 0; r < R; ++r) ysel_[size_t(r)] = y[loss_row(r)];
        y = ysel_.data();
    }
    lp.targets = R;
    y = upload(be, y_dev_, y, size_t(R));
    if (moe_only_) {
        x = upload(be, x_dev_, x, size_t(T) * Din_);
        x_ = x;
        moe_[0]->forward(be, ps_, logits_.data(), x, T, layer_pass);
        lp.aux = moe_[0]->weighted_aux();
        lp.z = moe_[0]->weighted_z();
        lp.task = task_loss(be, T, y, pass.training, &lp.correct);
        lp.loss = lp.task + lp.aux + lp.z;
        return lp;
    }
    const size_t TD = size_t(T) * D_;
    if (tf_) {
        MOESIM_CHECK(pass.token_ids && T % S_ == 0, "the transformer takes whole token sequences");
        tok_ = upload(be, tok_dev_, pass.token_ids, size_t(T));
        be.embedding_forward(h_[0].data(), ps_.p(tok_emb_), tok_, T, D_, false);
        be.embedding_forward(h_[0].data(), ps_.p(pos_emb_), pos_ids_.data(), T, D_, true);
    } else {
        x = upload(be, x_dev_, x, size_t(T) * Din_);
        x_ = x;
        embed_.forward(be, ps_, h_[0].data(), x, T);
    }
    for (int l = 0; l < L_; ++l) {
        const float* in = h_[l].data();  // the FFN sublayer's input stream
        if (tf_) {
            be.rmsnorm_forward(na_[l].data(), rrms_a_[l].data(), h_[l].data(), ps_.p(attn_g_[l]), T,
                               D_);
            attn_[l]->forward(be, ps_, f_.data(), na_[l].data(), T);
            be.copy(mid_[l].data(), h_[l].data(), TD * sizeof(float));
            be.add(mid_[l].data(), f_.data(), TD);
            in = mid_[l].data();
        }
        be.rmsnorm_forward(n_[l].data(), rrms_[l].data(), in, ps_.p(norm_g_[l]), T, D_);
        if (moe_[l]) {
            moe_[l]->forward(be, ps_, f_.data(), n_[l].data(), T, layer_pass);
            lp.aux += moe_[l]->weighted_aux();
            lp.z += moe_[l]->weighted_z();
        } else {
            dense_[l]->forward(be, ps_, f_.data(), n_[l].data(), T);
        }
        be.copy(h_[l + 1].data(), in, TD * sizeof(float));
        be.add(h_[l + 1].data(), f_.data(), TD);
    }
    be.rmsnorm_forward(n_[L_].data(), rrms_[L_].data(), h_[L_].data(), ps_.p(final_g_), T, D_);
    head_forward(be, T);
    lp.task = task_loss(be, R, y, pass.training, &lp.correct);
    lp.loss = lp.task + lp.aux + lp.z;
    return lp;
}

double Model::task_loss(Backend& be, int rows, const int* y, bool training, int64_t* correct) {
    float* dz = training ? dlogits_.data() : nullptr;
    if (!cfg_.model.output_softmax)
        return be.cross_entropy(dz, logits_.data(), y, rows, C_, 1.0f, correct);
    // loss = CE(softmax(logits)): the cross-entropy's gradient in the probabilities, then the
    // softmax's backward to the logits (the argmax, and so the accuracy, is the logits')
    be.softmax_rows(out_probs_.data(), logits_.data(), rows, C_, C_);
    const double loss = be.cross_entropy(dz, out_probs_.data(), y, rows, C_, 1.0f, correct);
    if (dz) be.softmax_rows_backward(dz, out_probs_.data(), rows, C_, C_);
    return loss;
}

void Model::backward(Backend& be, int T, bool router_grad_parts) {
    if (moe_only_) {
        moe_[0]->backward(be, ps_, dx_.data(), dlogits_.data(), x_, T, router_grad_parts);
        return;
    }
    const size_t TD = size_t(T) * D_;
    // head and final norm
    head_backward(be, T);
    be.rmsnorm_backward(dh_.data(), ps_.g(final_g_), dn_.data(), h_[L_].data(), ps_.p(final_g_),
                        rrms_[L_].data(), T, D_);
    // blocks in reverse: dh stays the gradient of the residual stream h_{l+1}
    for (int l = L_ - 1; l >= 0; --l) {
        const float* in = tf_ ? mid_[l].data() : h_[l].data();
        // dF = dh; dn = dFFN/dn; d in = dh + dnorm(dn)
        if (moe_[l])
            moe_[l]->backward(be, ps_, dn_.data(), dh_.data(), n_[l].data(), T, router_grad_parts);
        else
            dense_[l]->backward(be, ps_, dn_.data(), dh_.data(), n_[l].data(), T, false);
        be.rmsnorm_backward(f_.data(), ps_.g(norm_g_[l]), dn_.data(), in, ps_.p(norm_g_[l]),
                            rrms_[l].data(), T, D_);
        be.add(dh_.data(), f_.data(), TD);
        if (tf_) {  // dA = dm; dna = dAttn/dna; dh_l = dm + dnorm_a(dna)
            attn_[l]->backward(be, ps_, dn_.data(), dh_.data(), na_[l].data(), T);
            be.rmsnorm_backward(f_.data(), ps_.g(attn_g_[l]), dn_.data(), h_[l].data(),
                                ps_.p(attn_g_[l]), rrms_a_[l].data(), T, D_);
            be.add(dh_.data(), f_.data(), TD);
        }
    }
    if (tf_) {
        be.embedding_backward(ps_.g(tok_emb_), dh_.data(), tok_, T, C_, D_);
        be.embedding_backward(ps_.g(pos_emb_), dh_.data(), pos_ids_.data(), T, S_, D_);
    } else {
        embed_.backward(be, ps_, nullptr, dh_.data(), x_, T);
    }
}

void Model::after_optimizer_step() {
    for (auto& m : moe_)
        if (m) m->after_optimizer_step();
}

void Model::save(BinaryWriter& w) const {
    ps_.save(w);
    for (const auto& m : moe_)
        if (m) m->save(w);
}

void Model::load(BinaryReader& r) {
    ps_.load(r);
    for (auto& m : moe_)
        if (m) m->load(r);
}

}  // namespace moe
