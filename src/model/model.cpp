#include "model/model.h"

#include <algorithm>
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
        dx_.allocate(be, size_t(T_max) * Din_);
        if (be && !be->host_memory()) {
            x_dev_.allocate(be, size_t(T_max) * Din_);
            y_dev_.allocate(be, size_t(T_max));
        }
        return;
    }
    embed_.declare(ps_, "embed", input_dim, D_);
    moe_.resize(L_);
    dense_.resize(L_);
    for (int l = 0; l < L_; ++l) {
        const std::string name = "block" + std::to_string(l);
        norm_g_.push_back(ps_.add(name + ".norm.g", D_, Init::ones));
        if ((l + 1) % cfg.model.moe_every == 0) {
            moe_[l] = std::make_unique<MoeLayer>(cfg, ps_, name + ".moe", l, L_);
        } else {
            dense_[l] = std::make_unique<Ffn>();
            dense_[l]->declare(ps_, name + ".ffn", D_, cfg.experts.d_ff, cfg.experts.activation);
        }
    }
    final_g_ = ps_.add("final.norm.g", D_, Init::ones);
    head_.declare(ps_, "head", D_, C_);
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
    if (be && !be->host_memory()) {
        x_dev_.allocate(be, size_t(T_max) * Din_);
        y_dev_.allocate(be, size_t(T_max));
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
    // the input and labels in the backend's memory (the same pointers on the CPU)
    x = upload(be, x_dev_, x, size_t(T) * Din_);
    y = upload(be, y_dev_, y, size_t(T));
    x_ = x;
    if (moe_only_) {
        moe_[0]->forward(be, ps_, logits_.data(), x, T, layer_pass);
        lp.aux = moe_[0]->weighted_aux();
        lp.z = moe_[0]->weighted_z();
        lp.task = be.cross_entropy(pass.training ? dlogits_.data() : nullptr, logits_.data(), y, T,
                                   C_, 1.0f, &lp.correct);
        lp.loss = lp.task + lp.aux + lp.z;
        return lp;
    }
    embed_.forward(be, ps_, h_[0].data(), x, T);
    const size_t TD = size_t(T) * D_;
    for (int l = 0; l < L_; ++l) {
        be.rmsnorm_forward(n_[l].data(), rrms_[l].data(), h_[l].data(), ps_.p(norm_g_[l]), T, D_);
        if (moe_[l]) {
            moe_[l]->forward(be, ps_, f_.data(), n_[l].data(), T, layer_pass);
            lp.aux += moe_[l]->weighted_aux();
            lp.z += moe_[l]->weighted_z();
        } else {
            dense_[l]->forward(be, ps_, f_.data(), n_[l].data(), T);
        }
        be.copy(h_[l + 1].data(), h_[l].data(), TD * sizeof(float));
        be.add(h_[l + 1].data(), f_.data(), TD);
    }
    be.rmsnorm_forward(n_[L_].data(), rrms_[L_].data(), h_[L_].data(), ps_.p(final_g_), T, D_);
    head_.forward(be, ps_, logits_.data(), n_[L_].data(), T);
    lp.task = be.cross_entropy(pass.training ? dlogits_.data() : nullptr, logits_.data(), y, T, C_,
                               1.0f, &lp.correct);
    lp.loss = lp.task + lp.aux + lp.z;
    return lp;
}

void Model::backward(Backend& be, int T, bool router_grad_parts) {
    if (moe_only_) {
        moe_[0]->backward(be, ps_, dx_.data(), dlogits_.data(), x_, T, router_grad_parts);
        return;
    }
    const size_t TD = size_t(T) * D_;
    // head and final norm
    head_.backward(be, ps_, dn_.data(), dlogits_.data(), n_[L_].data(), T);
    be.rmsnorm_backward(dh_.data(), ps_.g(final_g_), dn_.data(), h_[L_].data(), ps_.p(final_g_),
                        rrms_[L_].data(), T, D_);
    // blocks in reverse: dh stays the gradient of the residual stream h_{l+1}
    for (int l = L_ - 1; l >= 0; --l) {
        // dF = dh; dn = dFFN/dn; dh_l = dh + dnorm(dn)
        if (moe_[l])
            moe_[l]->backward(be, ps_, dn_.data(), dh_.data(), n_[l].data(), T, router_grad_parts);
        else
            dense_[l]->backward(be, ps_, dn_.data(), dh_.data(), n_[l].data(), T, false);
        be.rmsnorm_backward(f_.data(), ps_.g(norm_g_[l]), dn_.data(), h_[l].data(),
                            ps_.p(norm_g_[l]), rrms_[l].data(), T, D_);
        be.add(dh_.data(), f_.data(), TD);
    }
    embed_.backward(be, ps_, nullptr, dh_.data(), x_, T);
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
