// The drivers of the twin cases (tests/support/twin.h; the cases are in test_twin_cases.cpp):
//   - the CPU at 1 thread against the CPU at 2 threads: equal bits for every case (backend.h:
//     results do not depend on the thread count);
//   - CUDA against the CPU, within each case's bound, and CUDA against itself: equal bits run to
//     run. Where no CUDA backend can be created they print "SKIPPED: ..." and pass, unless
//     MOESIM_REQUIRE_GPU=1, where that is a failure (the GPU machine's runs set it).
// And the harness's own checks: it reports a perturbed value, a NaN, a missing array, and a
// backend with a wrong index or an unwritten output.
//
//   moesim_tests -tc='twin*'                       # all of them
//   MOESIM_TWIN_VERBOSE=1 moesim_tests -tc='twin cuda*'   # each case's error / bound on stderr
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "config/config_error.h"
#include "support/gpu.h"
#include "support/twin.h"

using namespace moe;
using namespace moe::test;

namespace {

bool env_is_1(const char* name) {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, "1") == 0;
}

// Runs every case on `got` and on `ref` (the same backend: run to run) and reports each
// problem as a failure; returns the number of cases with a problem.
int drive(Backend& got, Backend& ref, TwinCompare mode, const std::string& label) {
    const bool verbose = env_is_1("MOESIM_TWIN_VERBOSE");
    int bad = 0;
    double worst = 0.0;
    std::string worst_case = "-";
    for (const TwinCase& c : twin_registry()) {
        std::vector<std::string> problems;
        double w = 0.0;
        const auto t0 = std::chrono::steady_clock::now();
        try {
            const TwinOutputs r = run_twin(c, ref);
            const TwinOutputs g = run_twin(c, got);
            problems = compare_twins(g, r, c.bound, mode, &w);
        } catch (const std::exception& e) {
            problems.push_back(std::string("threw: ") + e.what());
        }
        if (verbose)
            std::cerr
                << label << ": " << c.name << ": error / bound " << w << ", "
                << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                << " s\n";
        if (w > worst) {
            worst = w;
            worst_case = c.name;
        }
        for (const std::string& p : problems) FAIL_CHECK(label << ": " << c.name << ": " << p);
        bad += !problems.empty();
    }
    MESSAGE(label << ": " << twin_registry().size() << " cases, " << bad
                  << " with a problem; largest error / bound " << worst << " (" << worst_case
                  << ")");
    return bad;
}

// Every op of backend.h but the memory ops that every case uses (release, to_host).
const char* const kOps[] = {"gemm",
                            "gemm_grouped_rows",
                            "gemm_grouped_wgrad",
                            "gemm_grouped_rows_bias",
                            "bias_grad_grouped",
                            "act_forward",
                            "act_backward",
                            "expert_ffn_forward",
                            "expert_ffn_backward",
                            "rmsnorm_forward",
                            "rmsnorm_backward",
                            "gather_rows",
                            "embedding_forward",
                            "embedding_backward",
                            "attention_forward",
                            "attention_backward",
                            "combine_by_token",
                            "combine_by_token_backward",
                            "gate_rows_forward",
                            "gate_rows_backward",
                            "add",
                            "scale",
                            "sum_squares",
                            "cross_entropy",
                            "adam_step",
                            "sgd_step",
                            "softmax_rows",
                            "softmax_rows_backward",
                            "topk_rows",
                            "topk_rows_backward",
                            "plan_build",
                            "capacity_position",
                            "capacity_score",
                            "plan_index_by_token",
                            "logsumexp_rows",
                            "gate_grad_to_slots",
                            "switch_loss_grad",
                            "z_loss_grad",
                            "column_sums",
                            "window_observe",
                            "alloc",
                            "copy",
                            "fill_zero",
                            "to_device"};

const TwinCase& find_case(const std::string& name) {
    for (const TwinCase& c : twin_registry())
        if (c.name == name) return c;
    FAIL("no twin case " << name);
    return twin_registry().front();
}

// A backend that forwards every op to another one; the faulty backends below override one op.
class Forwarding : public Backend {
public:
    explicit Forwarding(Backend& inner) : in_(inner) {}
    Device device() const override { return in_.device(); }
    int threads() const override { return in_.threads(); }
    bool host_memory() const override { return in_.host_memory(); }
    void* alloc(size_t b) override { return in_.alloc(b); }
    void release(void* p) override { in_.release(p); }
    void to_device(void* d, const void* s, size_t b) override { in_.to_device(d, s, b); }
    void to_host(void* d, const void* s, size_t b) override { in_.to_host(d, s, b); }
    void copy(void* d, const void* s, size_t b) override { in_.copy(d, s, b); }
    void fill_zero(void* p, size_t b) override { in_.fill_zero(p, b); }
    void gemm(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
              float beta) override {
        in_.gemm(C, A, B, M, N, K, ta, tb, beta);
    }
    void gemm_grouped_rows(float* C, const float* A, const float* B, size_t bs, const int* off,
                           int G, int N, int K, bool tb, float beta) override {
        in_.gemm_grouped_rows(C, A, B, bs, off, G, N, K, tb, beta);
    }
    void gemm_grouped_wgrad(float* C, size_t cs, const float* A, const float* B, const int* off,
                            int G, int M, int N) override {
        in_.gemm_grouped_wgrad(C, cs, A, B, off, G, M, N);
    }
    void gemm_grouped_rows_bias(float* C, const float* A, const float* B, size_t bs,
                                const float* bias, size_t bias_s, const int* off, int G, int N,
                                int K) override {
        in_.gemm_grouped_rows_bias(C, A, B, bs, bias, bias_s, off, G, N, K);
    }
    void bias_grad_grouped(float* db, size_t bs, const float* dC, const int* off, int G,
                           int N) override {
        in_.bias_grad_grouped(db, bs, dC, off, G, N);
    }
    void act_forward(float* h, const float* pre, int rows, int H, Activation a) override {
        in_.act_forward(h, pre, rows, H, a);
    }
    void act_backward(float* dpre, const float* dh, const float* pre, int rows, int H,
                      Activation a) override {
        in_.act_backward(dpre, dh, pre, rows, H, a);
    }
    void rmsnorm_forward(float* y, float* rrms, const float* x, const float* g, int T,
                         int D) override {
        in_.rmsnorm_forward(y, rrms, x, g, T, D);
    }
    void rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x, const float* g,
                          const float* rrms, int T, int D) override {
        in_.rmsnorm_backward(dx, dg, dy, x, g, rrms, T, D);
    }
    void gather_rows(float* dst, const float* src, const int* idx, int n, int D) override {
        in_.gather_rows(dst, src, idx, n, D);
    }
    void embedding_forward(float* out, const float* table, const int* ids, int T, int D,
                           bool acc) override {
        in_.embedding_forward(out, table, ids, T, D, acc);
    }
    void embedding_backward(float* dt, const float* dout, const int* ids, int T, int V,
                            int D) override {
        in_.embedding_backward(dt, dout, ids, T, V, D);
    }
    void attention_forward(float* out, float* probs, const float* qkv, int nseq, int S, int H,
                           int hd, float scale) override {
        in_.attention_forward(out, probs, qkv, nseq, S, H, hd, scale);
    }
    void attention_backward(float* dqkv, float* ds, const float* dout, const float* qkv,
                            const float* probs, int nseq, int S, int H, int hd,
                            float scale) override {
        in_.attention_backward(dqkv, ds, dout, qkv, probs, nseq, S, H, hd, scale);
    }
    void combine_by_token(float* out, const float* Y, const int* to, const int* ta, const float* w,
                          int T, int D, bool acc) override {
        in_.combine_by_token(out, Y, to, ta, w, T, D, acc);
    }
    void combine_by_token_backward(float* dY, float* dw, const float* dout, const float* Y,
                                   const int* to, const int* ta, const float* w, int T,
                                   int D) override {
        in_.combine_by_token_backward(dY, dw, dout, Y, to, ta, w, T, D);
    }
    void gate_rows_forward(float* y, float* a, const float* S, int T, int D) override {
        in_.gate_rows_forward(y, a, S, T, D);
    }
    void gate_rows_backward(float* dS, float* da, const float* dy, const float* S, const float* g,
                            int T, int D) override {
        in_.gate_rows_backward(dS, da, dy, S, g, T, D);
    }
    void add(float* y, const float* x, size_t n) override { in_.add(y, x, n); }
    void scale(float* x, size_t n, float s) override { in_.scale(x, n, s); }
    double sum_squares(const float* x, size_t n) override { return in_.sum_squares(x, n); }
    double cross_entropy(float* dz, const float* z, const int* y, int T, int C, float s,
                         int64_t* correct) override {
        return in_.cross_entropy(dz, z, y, T, C, s, correct);
    }
    void adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamHyper& h, float gs,
                   double* ss) override {
        in_.adam_step(p, g, m, v, n, h, gs, ss);
    }
    void sgd_step(float* p, float* g, float* v, size_t n, float lr, float mu, float gs,
                  double* ss) override {
        in_.sgd_step(p, g, v, n, lr, mu, gs, ss);
    }
    void softmax_rows(float* p, const float* z, int T, int N, int ldz) override {
        in_.softmax_rows(p, z, T, N, ldz);
    }
    void softmax_rows_backward(float* d, const float* p, int T, int N, int ldd) override {
        in_.softmax_rows_backward(d, p, T, N, ldd);
    }
    void topk_rows(int* sel, float* gate, const float* s, const float* bias, int T, int N, int K,
                   bool nz, float sc) override {
        in_.topk_rows(sel, gate, s, bias, T, N, K, nz, sc);
    }
    void topk_rows_backward(float* ds, const float* s, const int* sel, const float* dg, int T,
                            int N, int K, bool nz, float sc, int ld) override {
        in_.topk_rows_backward(ds, s, sel, dg, T, N, K, nz, sc, ld);
    }
    void plan_build(int* off, int* tok, float* gate, int* slot, int* routed, const int* ex,
                    const float* sg, const int* st, int R, int pt, int N) override {
        in_.plan_build(off, tok, gate, slot, routed, ex, sg, st, R, pt, N);
    }
    void capacity_position(int* off, int* tok, float* gate, int* slot, int* dropped, int N,
                           int64_t C, int A_max) override {
        in_.capacity_position(off, tok, gate, slot, dropped, N, C, A_max);
    }
    void capacity_score(int* off, int* tok, float* gate, int* slot, int* dropped, int N, int64_t C,
                        int A_max) override {
        in_.capacity_score(off, tok, gate, slot, dropped, N, C, A_max);
    }
    void plan_index_by_token(int* to, int* ta, const int* tok, const int* slot, const int* off,
                             int N, int T, int A_max) override {
        in_.plan_index_by_token(to, ta, tok, slot, off, N, T, A_max);
    }
    void logsumexp_rows(double* lse, const float* x, int T, int N, int ld) override {
        in_.logsumexp_rows(lse, x, T, N, ld);
    }
    void gate_grad_to_slots(float* ds, const float* dg, const int* slot, const int* off, int N,
                            int R) override {
        in_.gate_grad_to_slots(ds, dg, slot, off, N, R);
    }
    void switch_loss_grad(float* dp, const int* routed, int T, int N, int K, float c) override {
        in_.switch_loss_grad(dp, routed, T, N, K, c);
    }
    void z_loss_grad(float* d, const float* x, const double* lse, int T, int N, int ldx, int ldd,
                     float c) override {
        in_.z_loss_grad(d, x, lse, T, N, ldx, ldd, c);
    }
    void column_sums(double* sums, const float* x, int T, int N) override {
        in_.column_sums(sums, x, T, N);
    }
    void window_observe(int64_t* counts, double* sums, int64_t* interval, const int* routed,
                        const int* dropped, const int* tok_offsets, const float* probs,
                        const float* logits, const int* groups, int num_groups,
                        const double* losses, int T, int N, int G) override {
        in_.window_observe(counts, sums, interval, routed, dropped, tok_offsets, probs, logits,
                           groups, num_groups, losses, T, N, G);
    }

protected:
    Backend& in_;
};

// gather_rows reading the next row of src where idx says the last one (an index off by one).
class WrongIndex : public Forwarding {
public:
    using Forwarding::Forwarding;
    void gather_rows(float* dst, const float* src, const int* idx, int n, int D) override {
        std::vector<int> shifted(idx, idx + n);
        if (n > 0) shifted[size_t(n) - 1] = (shifted[size_t(n) - 1] + 1) % 50;
        in_.gather_rows(dst, src, shifted.data(), n, D);
    }
};
// gemm with beta 0 that leaves the last row of C unwritten.
class Unwritten : public Forwarding {
public:
    using Forwarding::Forwarding;
    void gemm(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
              float beta) override {
        if (M > 1 && !ta)
            in_.gemm(C, A, B, M - 1, N, K, ta, tb, beta);
        else
            in_.gemm(C, A, B, M, N, K, ta, tb, beta);
    }
};
// sgd_step that leaves the gradient as it was; add through double (a correctly rounded sum all
// the same: equal bits, and nothing to report).
class KeepsGradient : public Forwarding {
public:
    using Forwarding::Forwarding;
    void sgd_step(float* p, float* g, float* v, size_t n, float lr, float mu, float gs,
                  double* ss) override {
        std::vector<float> keep(g, g + n);
        in_.sgd_step(p, g, v, n, lr, mu, gs, ss);
        std::copy(keep.begin(), keep.end(), g);
    }
    void add(float* y, const float* x, size_t n) override {
        for (size_t i = 0; i < n; ++i) y[i] = float(double(y[i]) + double(x[i]));
    }
};

// plan_build with each expert's segment reversed (a scatter that is not stable in slot order).
class UnstablePlan : public Forwarding {
public:
    using Forwarding::Forwarding;
    void plan_build(int* off, int* tok, float* gate, int* slot, int* routed, const int* ex,
                    const float* sg, const int* st, int R, int pt, int N) override {
        in_.plan_build(off, tok, gate, slot, routed, ex, sg, st, R, pt, N);
        for (int e = 0; e < N; ++e) {
            std::reverse(tok + off[e], tok + off[e + 1]);
            std::reverse(gate + off[e], gate + off[e + 1]);
            std::reverse(slot + off[e], slot + off[e + 1]);
        }
    }
};

// The same ops written another way, as a GPU kernel might be: products and column sums as
// serial float loops over k in reverse order, a*b+c as one FMA, gelu and sigmoid through libm,
// reductions in double or in float with another tree, Adam's bias corrections through powf.
// Every case must pass within its bound against the CPU (the bounds are not tighter than float32
// allows), and fail for the faulty backends above.
class OtherOrder : public Forwarding {
public:
    using Forwarding::Forwarding;

    void gemm(float* C, const float* A, const float* B, int M, int N, int K, bool ta, bool tb,
              float beta) override {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
                float s = 0.0f;
                for (int k = K - 1; k >= 0; --k)
                    s = std::fma(ta ? A[size_t(k) * M + i] : A[size_t(i) * K + k],
                                 tb ? B[size_t(j) * K + k] : B[size_t(k) * N + j], s);
                float& c = C[size_t(i) * N + j];
                c = beta == 0.0f ? s : std::fma(beta, c, s);
            }
    }
    void gemm_grouped_rows(float* C, const float* A, const float* B, size_t bs, const int* off,
                           int G, int N, int K, bool tb, float beta) override {
        for (int g = 0; g < G; ++g) {
            const int m = off[g + 1] - off[g];
            if (m > 0)
                gemm(C + size_t(off[g]) * N, A + size_t(off[g]) * K, B + g * bs, m, N, K, false, tb,
                     beta);
        }
    }
    void gemm_grouped_wgrad(float* C, size_t cs, const float* A, const float* B, const int* off,
                            int G, int M, int N) override {
        for (int g = 0; g < G; ++g)
            for (int i = 0; i < M; ++i)
                for (int j = 0; j < N; ++j) {
                    float s = 0.0f;
                    for (int r = off[g + 1] - 1; r >= off[g]; --r)
                        s = std::fma(A[size_t(r) * M + i], B[size_t(r) * N + j], s);
                    C[g * cs + size_t(i) * N + j] += s;
                }
    }
    void gemm_grouped_rows_bias(float* C, const float* A, const float* B, size_t bs,
                                const float* bias, size_t bias_s, const int* off, int G, int N,
                                int K) override {
        for (int g = 0; g < G; ++g)
            for (int r = off[g]; r < off[g + 1]; ++r)
                for (int j = 0; j < N; ++j) C[size_t(r) * N + j] = bias[g * bias_s + j];
        gemm_grouped_rows(C, A, B, bs, off, G, N, K, false, 1.0f);
    }
    void bias_grad_grouped(float* db, size_t bs, const float* dC, const int* off, int G,
                           int N) override {
        for (int g = 0; g < G; ++g)
            for (int j = 0; j < N; ++j) {
                float s = 0.0f;
                for (int r = off[g + 1] - 1; r >= off[g]; --r) s += dC[size_t(r) * N + j];
                db[g * bs + j] += s;
            }
    }
    void act_forward(float* h, const float* pre, int rows, int H, Activation a) override {
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < H; ++j) {
                float& y = h[size_t(r) * H + j];
                if (a == Activation::swiglu) {
                    const float x = pre[size_t(r) * 2 * H + j], u = pre[size_t(r) * 2 * H + H + j];
                    y = x / (1.0f + std::exp(-x)) * u;
                } else {
                    const float x = pre[size_t(r) * H + j];
                    y = a == Activation::relu ? std::max(x, 0.0f)
                                              : 0.5f * x * std::erfc(-x * 0.70710678f);
                }
            }
    }
    void act_backward(float* dpre, const float* dh, const float* pre, int rows, int H,
                      Activation a) override {
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < H; ++j) {
                const float dy = dh[size_t(r) * H + j];
                if (a == Activation::swiglu) {
                    const size_t i = size_t(r) * 2 * H + j;
                    const float x = pre[i], u = pre[i + H];
                    const float s = 1.0f / (1.0f + std::exp(-x));
                    dpre[i] = dy * u * std::fma(x * s, 1.0f - s, s);
                    dpre[i + H] = dy * x * s;
                } else {
                    const size_t i = size_t(r) * H + j;
                    const float x = pre[i];
                    dpre[i] = a == Activation::relu
                                  ? (x > 0.0f ? dy : 0.0f)
                                  : dy * (0.5f * std::erfc(-x * 0.70710678f) +
                                          x * 0.39894228f * std::exp(-0.5f * x * x));
                }
            }
    }
    void rmsnorm_forward(float* y, float* rrms, const float* x, const float* g, int T,
                         int D) override {
        for (int t = 0; t < T; ++t) {
            double ss = 0.0;
            for (int j = 0; j < D; ++j) ss += double(x[size_t(t) * D + j]) * x[size_t(t) * D + j];
            rrms[t] = float(1.0 / std::sqrt(ss / D + 1e-5));
            for (int j = 0; j < D; ++j)
                y[size_t(t) * D + j] = x[size_t(t) * D + j] * rrms[t] * g[j];
        }
    }
    void rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x, const float* g,
                          const float* rrms, int T, int D) override {
        for (int t = 0; t < T; ++t) {
            const float* xr = x + size_t(t) * D;
            const float* d = dy + size_t(t) * D;
            double dot = 0.0;
            for (int j = 0; j < D; ++j) dot += double(g[j]) * d[j] * xr[j];
            const float r = rrms[t], c = float(double(r) * r * dot / D);
            for (int j = 0; j < D; ++j)
                dx[size_t(t) * D + j] = r * std::fma(g[j], d[j], -xr[j] * c);
        }
        for (int j = 0; j < D; ++j) {
            double s = 0.0;
            for (int t = T - 1; t >= 0; --t)
                s += double(dy[size_t(t) * D + j]) * x[size_t(t) * D + j] * rrms[t];
            dg[j] += float(s);
        }
    }
    void combine_by_token(float* out, const float* Y, const int* to, const int* ta, const float* w,
                          int T, int D, bool acc) override {
        for (int t = 0; t < T; ++t)
            for (int d = 0; d < D; ++d) {
                float s = acc ? out[size_t(t) * D + d] : 0.0f;
                for (int i = to[t]; i < to[t + 1]; ++i)
                    s = std::fma(w ? w[ta[i]] : 1.0f, Y[size_t(ta[i]) * D + d], s);
                out[size_t(t) * D + d] = s;
            }
    }
    void combine_by_token_backward(float* dY, float* dw, const float* dout, const float* Y,
                                   const int* to, const int* ta, const float* w, int T,
                                   int D) override {
        for (int t = 0; t < T; ++t)
            for (int i = to[t]; i < to[t + 1]; ++i) {
                const int a = ta[i];
                double dot = 0.0;
                for (int d = 0; d < D; ++d) {
                    dot += double(dout[size_t(t) * D + d]) * Y[size_t(a) * D + d];
                    dY[size_t(a) * D + d] = (w ? w[a] : 1.0f) * dout[size_t(t) * D + d];
                }
                dw[a] = float(dot);
            }
    }
    void gate_rows_forward(float* y, float* a, const float* S, int T, int D) override {
        for (int t = 0; t < T; ++t) {
            a[t] = 1.0f / (1.0f + std::exp(-a[t]));
            for (int d = 0; d < D; ++d)
                y[size_t(t) * D + d] = std::fma(a[t], S[size_t(t) * D + d], y[size_t(t) * D + d]);
        }
    }
    void gate_rows_backward(float* dS, float* da, const float* dy, const float* S, const float* g,
                            int T, int D) override {
        for (int t = 0; t < T; ++t) {
            double dot = 0.0;
            for (int d = D - 1; d >= 0; --d) {
                dot += double(dy[size_t(t) * D + d]) * S[size_t(t) * D + d];
                dS[size_t(t) * D + d] = g[t] * dy[size_t(t) * D + d];
            }
            da[t] = float(dot) * g[t] * (1.0f - g[t]);
        }
    }
    double sum_squares(const float* x, size_t n) override {
        double s = 0.0;
        for (size_t i = n; i-- > 0;) s += double(x[i]) * x[i];
        return s;
    }
    double cross_entropy(float* dz, const float* z, const int* y, int T, int C, float scale,
                         int64_t* correct) override {
        double total = 0.0;
        int64_t hits = 0;
        for (int t = 0; t < T; ++t) {
            const float* zr = z + size_t(t) * C;
            int arg = 0;
            for (int c = 1; c < C; ++c)
                if (zr[c] > zr[arg]) arg = c;
            float s = 0.0f;
            for (int c = 0; c < C; ++c) s += std::exp(zr[c] - zr[arg]);
            const float lse = zr[arg] + std::log(s);
            total += double(lse) - zr[y[t]];
            hits += arg == y[t];
            if (dz) {
                for (int c = 0; c < C; ++c)
                    dz[size_t(t) * C + c] = std::exp(zr[c] - lse) * (scale / float(T));
                dz[size_t(t) * C + y[t]] -= scale / float(T);
            }
        }
        if (correct) *correct = hits;
        return total / T;
    }
    void adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamHyper& h, float gs,
                   double* ss) override {
        if (ss) *ss = sum_squares(g, n);
        const float c1 = 1.0f - std::pow(h.beta1, float(h.t)),
                    c2 = 1.0f - std::pow(h.beta2, float(h.t));
        for (size_t i = 0; i < n; ++i) {
            const float gi = g[i] * gs;
            m[i] = std::fma(h.beta1, m[i], (1.0f - h.beta1) * gi);
            v[i] = std::fma(h.beta2, v[i], (1.0f - h.beta2) * gi * gi);
            const float upd = (m[i] / c1) / (std::sqrt(v[i] / c2) + h.eps);
            p[i] -= h.lr * std::fma(h.weight_decay, p[i], upd);
            g[i] = 0.0f;
        }
    }
    void sgd_step(float* p, float* g, float* v, size_t n, float lr, float mu, float gs,
                  double* ss) override {
        if (ss) *ss = sum_squares(g, n);
        for (size_t i = 0; i < n; ++i) {
            v[i] = std::fma(mu, v[i], g[i] * gs);
            p[i] = std::fma(-lr, v[i], p[i]);
            g[i] = 0.0f;
        }
    }

    // The routing ops as the CUDA kernels compute them (backend/cuda/cuda_routing.cu), serially:
    // the warp's 32 lanes and the block's 256 threads with their reduction patterns, libm's expf,
    // FMAs; the plan built chunk by chunk, the by-token index scattered in reverse order (as
    // atomics may) and sorted per token, capacity by binary search and by rank. So the kernels'
    // algorithms are checked, case by case, on machines without a GPU.
    static constexpr int kLanes = 32;
    // a lane-wise butterfly (lane l combines with lane l ^ w, w = 16, 8, ..., 1)
    template <class T, class Op>
    static T butterfly(std::vector<T> v, Op op) {
        for (int w = kLanes / 2; w > 0; w /= 2) {
            std::vector<T> n(v);
            for (int l = 0; l < kLanes; ++l) n[size_t(l)] = op(v[size_t(l)], v[size_t(l ^ w)]);
            v = n;
        }
        return v[0];
    }
    static float flushed_exp(float x) {
        const float e = std::exp(x);
        return e >= std::numeric_limits<float>::min() ? e : 0.0f;
    }
    void softmax_rows(float* p, const float* z, int T, int N, int ldz) override {
        for (int t = 0; t < T; ++t) {
            const float* zr = z + size_t(t) * ldz;
            float* pr = p + size_t(t) * N;
            std::vector<float> mx(kLanes, -INFINITY), sum(kLanes, 0.0f);
            for (int i = 0; i < N; ++i)
                mx[size_t(i % kLanes)] = std::fmax(mx[size_t(i % kLanes)], zr[i]);
            const float m = butterfly(mx, [](float a, float b) { return std::fmax(a, b); });
            for (int i = 0; i < N; ++i) {
                pr[i] = flushed_exp(zr[i] - m);
                sum[size_t(i % kLanes)] += pr[i];
            }
            const float s = butterfly(sum, [](float a, float b) { return a + b; });
            for (int i = 0; i < N; ++i) pr[i] /= s;
        }
    }
    void softmax_rows_backward(float* d, const float* p, int T, int N, int ldd) override {
        for (int t = 0; t < T; ++t) {
            float* dr = d + size_t(t) * ldd;
            const float* pr = p + size_t(t) * N;
            std::vector<float> dot(kLanes, 0.0f);
            for (int i = 0; i < N; ++i)
                dot[size_t(i % kLanes)] = std::fma(dr[i], pr[i], dot[size_t(i % kLanes)]);
            const float dt = butterfly(dot, [](float a, float b) { return a + b; });
            for (int i = 0; i < N; ++i) dr[i] = pr[i] * (dr[i] - dt);
        }
    }
    void topk_rows_backward(float* ds, const float* s, const int* sel, const float* dg, int T,
                            int N, int K, bool normalize, float scale, int ldds) override {
        for (int t = 0; t < T; ++t) {
            float* d = ds + size_t(t) * ldds;
            const float* sr = s + size_t(t) * N;
            const int* st = sel + size_t(t) * K;
            const float* g = dg + size_t(t) * K;
            if (!normalize) {
                for (int j = 0; j < K; ++j) d[st[j]] = std::fma(scale, g[j], d[st[j]]);
                continue;
            }
            float zs = 0.0f, dot = 0.0f;
            for (int j = 0; j < K; ++j) {
                zs += sr[st[j]];
                dot = std::fma(scale * g[j], sr[st[j]], dot);
            }
            for (int j = 0; j < K; ++j) d[st[j]] += std::fma(scale, g[j] / zs, -dot / (zs * zs));
        }
    }
    void plan_build(int* off, int* token, float* gate, int* slot, int* routed, const int* expert,
                    const float* sg, const int* stok, int R, int pt, int N) override {
        constexpr int kChunk = 256;
        const int chunks = (R + kChunk - 1) / kChunk;
        std::vector<int> counts(size_t(chunks) * N, 0);
        for (int c = 0; c < chunks; ++c)
            for (int s = c * kChunk; s < std::min(R, (c + 1) * kChunk); ++s)
                if (expert[s] >= 0) counts[size_t(c) * N + expert[s]]++;
        for (int e = 0; e < N; ++e) {
            int acc = 0;
            for (int c = 0; c < chunks; ++c) {
                const int v = counts[size_t(c) * N + e];
                counts[size_t(c) * N + e] = acc;
                acc += v;
            }
            routed[e] = acc;
        }
        off[0] = 0;
        for (int e = 0; e < N; ++e) off[e + 1] = off[e] + routed[e];
        for (int c = chunks - 1; c >= 0; --c) {  // chunks in any order
            int* cur = counts.data() + size_t(c) * N;
            for (int s = c * kChunk; s < std::min(R, (c + 1) * kChunk); ++s) {
                const int e = expert[s];
                if (e < 0) continue;
                const int a = off[e] + cur[e]++;
                token[a] = stok ? stok[s] : s / pt;
                gate[a] = sg[s];
                slot[a] = s;
            }
        }
    }
    // the expert of assignment a: the last e with old[e] <= a
    static int segment_of(const std::vector<int>& old, int N, int a) {
        return int(std::upper_bound(old.begin(), old.begin() + N, a) - old.begin()) - 1;
    }
    template <class Keep>
    static void compact(int* off, int* token, float* gate, int* slot, int* dropped, int N,
                        int64_t C, int A_max, Keep keep) {
        const std::vector<int> old(off, off + N + 1), ot(token, token + A_max),
            os(slot, slot + A_max);
        const std::vector<float> og(gate, gate + A_max);
        int w = 0;
        for (int e = 0; e < N; ++e) {
            const int n = old[size_t(e) + 1] - old[size_t(e)], kept = int(std::min<int64_t>(n, C));
            off[e] = w;
            dropped[e] = n - kept;
            w += kept;
        }
        off[N] = w;
        std::vector<int> flags(size_t(std::max(A_max, 1)), 0);
        for (int a = std::min(A_max, old[size_t(N)]) - 1; a >= 0; --a)
            flags[size_t(a)] = keep(old, og, os, segment_of(old, N, a), a);
        for (int a = std::min(A_max, old[size_t(N)]) - 1; a >= 0; --a) {
            if (!flags[size_t(a)]) continue;
            const int e = segment_of(old, N, a);
            int before = 0;
            for (int b = old[size_t(e)]; b < a; ++b) before += flags[size_t(b)];
            const int dst = off[e] + before;
            token[dst] = ot[size_t(a)];
            gate[dst] = og[size_t(a)];
            slot[dst] = os[size_t(a)];
        }
    }
    void capacity_position(int* off, int* tok, float* gate, int* slot, int* dropped, int N,
                           int64_t C, int A_max) override {
        compact(off, tok, gate, slot, dropped, N, C, A_max,
                [C](const std::vector<int>& old, const std::vector<float>&, const std::vector<int>&,
                    int e, int a) { return a - old[size_t(e)] < C; });
    }
    void capacity_score(int* off, int* tok, float* gate, int* slot, int* dropped, int N, int64_t C,
                        int A_max) override {
        compact(off, tok, gate, slot, dropped, N, C, A_max,
                [C](const std::vector<int>& old, const std::vector<float>& g,
                    const std::vector<int>& sl, int e, int a) {
                    int64_t better = 0;
                    for (int b = old[size_t(e)]; b < old[size_t(e) + 1]; ++b)
                        better += g[size_t(b)] > g[size_t(a)] ||
                                  (g[size_t(b)] == g[size_t(a)] && sl[size_t(b)] < sl[size_t(a)]);
                    return better < C;
                });
    }
    void plan_index_by_token(int* to, int* ta, const int* token, const int* slot, const int* off,
                             int N, int T, int A_max) override {
        const int A = std::min(A_max, off[N]);
        std::fill(to, to + T + 1, 0);
        for (int a = 0; a < A; ++a) to[token[a] + 1]++;
        for (int t = 0; t < T; ++t) to[t + 1] += to[t];
        std::vector<int> cursor(to, to + T);
        for (int a = A - 1; a >= 0; --a) ta[cursor[size_t(token[a])]++] = a;  // any order
        for (int t = 0; t < T; ++t)
            std::sort(ta + to[t], ta + to[t + 1],
                      [slot](int x, int y) { return slot[x] < slot[y]; });
    }
    void z_loss_grad(float* d, const float* x, const double* lse, int T, int N, int ldx, int ldd,
                     float coef) override {
        for (int t = 0; t < T; ++t) {
            const double c = coef * 2.0 * lse[t] / T;
            for (int i = 0; i < N; ++i)
                d[size_t(t) * ldd + i] +=
                    float(c * flushed_exp(x[size_t(t) * ldx + i] - float(lse[t])));
        }
    }
    void logsumexp_rows(double* lse, const float* x, int T, int N, int ldx) override {
        constexpr int kBlock = 256;
        for (int t = 0; t < T; ++t) {
            const float* xr = x + size_t(t) * ldx;
            std::vector<float> mx(kBlock, -INFINITY);
            std::vector<double> sum(kBlock, 0.0);
            for (int i = 0; i < N; ++i)
                mx[size_t(i % kBlock)] = std::fmax(mx[size_t(i % kBlock)], xr[i]);
            for (int w = kBlock / 2; w > 0; w /= 2)
                for (int k = 0; k < w; ++k)
                    mx[size_t(k)] = std::fmax(mx[size_t(k)], mx[size_t(k + w)]);
            for (int i = 0; i < N; ++i)
                sum[size_t(i % kBlock)] += double(flushed_exp(xr[i] - mx[0]));
            for (int w = kBlock / 2; w > 0; w /= 2)
                for (int k = 0; k < w; ++k) sum[size_t(k)] += sum[size_t(k + w)];
            lse[t] = double(mx[0]) + std::log(sum[0]);
        }
    }
};

}  // namespace

TEST_SUITE("backend") {
    TEST_CASE("twin registry: a case for every op and unique names") {
        std::set<std::string> ops, names;
        for (const TwinCase& c : twin_registry()) {
            ops.insert(c.op);
            CHECK_MESSAGE(names.insert(c.name).second, "twin case named twice: " << c.name);
            CHECK(c.bound >= 0.0);
        }
        for (const char* op : kOps) CHECK_MESSAGE(ops.count(op) == 1, "no twin case for " << op);
        CHECK(twin_registry().size() > 200);
    }

    TEST_CASE("twin compare: reports a perturbed value a NaN a missing array and a failure") {
        std::unique_ptr<Backend> be = backend_create(Device::cpu, 1);
        const TwinCase& c = find_case("gemm 37x53x29 ta=0 tb=1 beta=0");
        const TwinOutputs ref = run_twin(c, *be);
        REQUIRE(ref.arrays.size() == 1);
        CHECK(compare_twins(ref, ref, c.bound, TwinCompare::bitwise).empty());

        // the last bit of one value: bounded passes, bitwise does not
        TwinOutputs ulp = ref;
        float f = float(ulp.arrays[0].values[100]);
        f = std::nextafter(f, 1e30f);
        ulp.arrays[0].values[100] = f;
        CHECK(compare_twins(ulp, ref, c.bound, TwinCompare::bounded).empty());
        CHECK(compare_twins(ulp, ref, c.bound, TwinCompare::bitwise).size() == 1);

        // one value of 53 x 37 off by 10%: above the gemm's bound
        TwinOutputs off = ref;
        off.arrays[0].values[7] *= 1.1;
        double worst = 0.0;
        const auto p = compare_twins(off, ref, c.bound, TwinCompare::bounded, &worst);
        REQUIRE(p.size() == 1);
        CHECK(p[0].find("relative error") != std::string::npos);
        CHECK(worst > 1.0);

        TwinOutputs nan = ref;
        nan.arrays[0].values[3] = std::nan("");
        CHECK(compare_twins(nan, ref, c.bound, TwinCompare::bounded).size() == 1);
        CHECK(compare_twins(ref, nan, c.bound, TwinCompare::bounded).size() == 1);

        TwinOutputs shorter = ref;
        shorter.arrays[0].values.pop_back();
        CHECK(compare_twins(shorter, ref, c.bound, TwinCompare::bounded).size() == 1);
        TwinOutputs none = ref;
        none.arrays.clear();
        CHECK(compare_twins(none, ref, c.bound, TwinCompare::bounded).size() == 1);

        TwinOutputs failed = ref;
        failed.failures.push_back("the gradient is not zero");
        CHECK(compare_twins(failed, ref, c.bound, TwinCompare::bitwise).size() == 1);

        // a zero reference: only zero passes
        TwinOutputs zero = ref, tiny = ref;
        for (double& v : zero.arrays[0].values) v = 0.0;
        for (double& v : tiny.arrays[0].values) v = 0.0;
        tiny.arrays[0].values[0] = 1e-30;
        CHECK(compare_twins(zero, zero, c.bound, TwinCompare::bounded).empty());
        CHECK(compare_twins(tiny, zero, c.bound, TwinCompare::bounded).size() == 1);
    }

    TEST_CASE(
        "twin compare: a wrong index an unwritten row a kept gradient and an unstable plan are "
        "caught") {
        std::unique_ptr<Backend> cpu = backend_create(Device::cpu, 1);
        WrongIndex wrong(*cpu);
        Unwritten unwritten(*cpu);
        KeepsGradient keeps(*cpu);
        auto problems = [&](Backend& be, const std::string& name) {
            const TwinCase& c = find_case(name);
            return compare_twins(run_twin(c, be), run_twin(c, *cpu), c.bound, TwinCompare::bounded);
        };
        // one wrong row of 3000: its error is O(1 / sqrt(3000)), far above a bound
        CHECK(problems(wrong, "gather_rows 3000x32").size() == 1);
        CHECK(problems(wrong, "gather_rows 77x13").size() == 1);
        // the unwritten row is still NaN
        const auto nan = problems(unwritten, "gemm 37x53x29 ta=0 tb=0 beta=0");
        REQUIRE(nan.size() == 1);
        CHECK(nan[0].find("unwritten") != std::string::npos);
        const auto kept = problems(keeps, "sgd_step n=1000 sumsq grad_scale=1 momentum=0.9");
        REQUIRE(kept.size() == 1);
        CHECK(kept[0].find("gradient is not zero") != std::string::npos);
        // a correctly rounded sum, however computed, has the same bits
        CHECK(problems(keeps, "add n=70000").empty());
        // a plan whose segments are not in slot order: its tokens, slots and gates differ
        UnstablePlan unstable(*cpu);
        CHECK(problems(unstable, "plan_build uniform").size() == 3);
        CHECK(problems(unstable, "routing chain T=300 N=16 K=4 C=0").size() >= 3);
        CHECK(problems(unstable, "plan_build all dropped").empty());  // no segment to reverse
    }

    TEST_CASE("twin bounds: the ops written another way pass every case within its bound") {
        std::unique_ptr<Backend> cpu = backend_create(Device::cpu, 2);
        OtherOrder other(*cpu);
        CHECK(drive(other, *cpu, TwinCompare::bounded, "twin other order vs cpu") == 0);
    }

    TEST_CASE("twin cpu: 1 thread against 2 threads with equal bits in every case") {
        std::unique_ptr<Backend> one = backend_create(Device::cpu, 1);
        std::unique_ptr<Backend> two = backend_create(Device::cpu, 2);
        REQUIRE(two->threads() == 2);
        CHECK(drive(*two, *one, TwinCompare::bitwise, "twin cpu 2 threads vs 1") == 0);
    }

    TEST_CASE("twin cuda: every case against the cpu within its bound") {
        std::unique_ptr<Backend> cuda = cuda_backend_or_skip("CUDA twin tests");
        if (!cuda) return;
        std::unique_ptr<Backend> cpu = backend_create(Device::cpu, 2);
        CHECK(drive(*cuda, *cpu, TwinCompare::bounded, "twin cuda vs cpu") == 0);
    }

    TEST_CASE("twin cuda: two runs of every case give equal bits") {
        std::unique_ptr<Backend> cuda = cuda_backend_or_skip("CUDA twin tests");
        if (!cuda) return;
        CHECK(drive(*cuda, *cuda, TwinCompare::bitwise, "twin cuda run to run") == 0);
    }

}  // TEST_SUITE
