// The CPU backend: Eigen for the matrix products, OpenMP across independent pieces of work.
// This file: construction, activations, norms, gathers and combines, cross-entropy; the matrix
// products are in cpu_gemm.cpp and the whole-buffer passes (optimizers, reductions) in
// cpu_vector.cpp.
#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <unsupported/Eigen/SpecialFunctions>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_tiles.h"
#include "backend/cuda_module.h"
#include "backend/device.h"
#include "backend/threads.h"
#include "backend/vec_math.h"
#include "config/config_error.h"

namespace moe {

// Both devices are made here; the CUDA backend comes from the CUDA module, loaded on first use
// (backend/cuda_module.h), so a CPU run never loads the CUDA libraries.
std::unique_ptr<Backend> backend_create(Device device, int threads) {
    if (device == Device::cuda) {
        if (const std::string why = device_unavailable(device); !why.empty()) throw UserError(why);
        char error[512] = {0};
        Backend* be = cuda_module().create(threads > 0 ? threads : default_threads(), error,
                                           int(sizeof error));
        if (!be)
            throw UserError(std::string("device 'cuda': the CUDA backend could not start: ") +
                            error);
        return std::unique_ptr<Backend>(be);
    }
    return std::make_unique<cpu::CpuBackend>(threads);
}

namespace cpu {

CpuBackend::CpuBackend(int threads) : threads_(threads > 0 ? threads : default_threads()) {
    omp_set_num_threads(threads_);
    Eigen::setNbThreads(1);  // we parallelise across tiles ourselves
    tiles_.reserve(4096);
    partials_.reserve(1024);
}

namespace {
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
inline float sigmoidf(float x) {
    return 1.0f / (1.0f + std::exp(-x));
}

// GELU with Eigen's vectorised erf/exp (libm's erff per element is ~50x slower), through
// blockwise() (cpu_internal.h).
void gelu_forward_n(float* y, const float* x, size_t n) {
    blockwise(y, x, nullptr, n,
              [](auto& X, auto&) { X = 0.5f * X * (1.0f + (X * kInvSqrt2).erf()); });
}

// dx = dy * gelu'(x), gelu'(x) = Phi(x) + x phi(x).
void gelu_backward_n(float* dx, const float* dy, const float* x, size_t n) {
    blockwise(dx, x, dy, n, [](auto& X, auto& DY) {
        X = DY * (0.5f * (1.0f + (X * kInvSqrt2).erf()) + X * kInvSqrt2Pi * (-0.5f * X * X).exp());
    });
}
}  // namespace

// The elementwise rules of act_forward / act_backward over rows (cpu_tiles.h): gelu through
// blockwise (one value's result does not depend on where a piece starts), swiglu and relu by row.
void act_forward_rows(float* h, const float* pre, int rows, int H, Activation act) {
    if (act == Activation::gelu) {
        gelu_forward_n(h, pre, size_t(rows) * H);
        return;
    }
    for (int r = 0; r < rows; ++r) {
        float* y = h + size_t(r) * H;
        if (act == Activation::swiglu) {
            const float* a = pre + size_t(r) * 2 * H;
            const float* b = a + H;
            for (int j = 0; j < H; ++j) y[j] = a[j] * sigmoidf(a[j]) * b[j];
        } else {
            const float* x = pre + size_t(r) * H;
            if (act == Activation::relu)
                for (int j = 0; j < H; ++j) y[j] = x[j] > 0.0f ? x[j] : 0.0f;
        }
    }
}

void act_backward_rows(float* dpre, const float* dh, const float* pre, int rows, int H,
                       Activation act) {
    if (act == Activation::gelu) {
        gelu_backward_n(dpre, dh, pre, size_t(rows) * H);
        return;
    }
    for (int r = 0; r < rows; ++r) {
        const float* dy = dh + size_t(r) * H;
        if (act == Activation::swiglu) {
            const float* a = pre + size_t(r) * 2 * H;
            const float* b = a + H;
            float* da = dpre + size_t(r) * 2 * H;
            float* dbp = da + H;
            for (int j = 0; j < H; ++j) {
                const float s = sigmoidf(a[j]);
                const float silu = a[j] * s;
                da[j] = dy[j] * b[j] * (s + silu * (1.0f - s));
                dbp[j] = dy[j] * silu;
            }
        } else {
            const float* x = pre + size_t(r) * H;
            float* dx = dpre + size_t(r) * H;
            if (act == Activation::relu)
                for (int j = 0; j < H; ++j) dx[j] = x[j] > 0.0f ? dy[j] : 0.0f;
        }
    }
}

namespace {
// f(r0, r1) over pieces of about kChunk values in whole rows, across the threads.
template <class F>
void for_row_pieces(int threads, int rows, int H, F&& f) {
    const int per = std::max(1, int(kChunk / size_t(std::max(H, 1))));
    const int pieces = (rows + per - 1) / per;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && pieces > 1)
    for (int p = 0; p < pieces; ++p) f(p * per, std::min(rows, (p + 1) * per));
}
}  // namespace

void CpuBackend::act_forward(float* h, const float* pre, int rows, int H, Activation act) {
    const int in_width = act == Activation::swiglu ? 2 * H : H;
    for_row_pieces(threads_, rows, H, [&](int r0, int r1) {
        act_forward_rows(h + size_t(r0) * H, pre + size_t(r0) * in_width, r1 - r0, H, act);
    });
}

void CpuBackend::act_backward(float* dpre, const float* dh, const float* pre, int rows, int H,
                              Activation act) {
    const int in_width = act == Activation::swiglu ? 2 * H : H;
    for_row_pieces(threads_, rows, H, [&](int r0, int r1) {
        act_backward_rows(dpre + size_t(r0) * in_width, dh + size_t(r0) * H,
                          pre + size_t(r0) * in_width, r1 - r0, H, act);
    });
}

constexpr float kNormEps = 1e-5f;

void CpuBackend::rmsnorm_forward(float* y, float* rrms, const float* x, const float* g, int T,
                                 int D) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * D > 32768)
    for (int t = 0; t < T; ++t) {
        const float* xr = x + size_t(t) * D;
        float* yr = y + size_t(t) * D;
        float ss = 0.0f;
        for (int j = 0; j < D; ++j) ss += xr[j] * xr[j];
        const float r = 1.0f / std::sqrt(ss / float(D) + kNormEps);
        rrms[t] = r;
        for (int j = 0; j < D; ++j) yr[j] = xr[j] * r * g[j];
    }
}

void CpuBackend::rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x,
                                  const float* g, const float* rrms, int T, int D) {
    // y_j = x_j r g_j, r = (mean(x^2) + eps)^-1/2:  dx_j = r (g_j dy_j - x_j r^2 mean_i(g_i dy_i x_i))
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * D > 32768)
    for (int t = 0; t < T; ++t) {
        const float* xr = x + size_t(t) * D;
        const float* dyr = dy + size_t(t) * D;
        float* dxr = dx + size_t(t) * D;
        const float r = rrms[t];
        float dot = 0.0f;
        for (int j = 0; j < D; ++j) dot += g[j] * dyr[j] * xr[j];
        const float c = r * r * dot / float(D);
        for (int j = 0; j < D; ++j) dxr[j] = r * (g[j] * dyr[j] - xr[j] * c);
    }
    // dg: a column sum over tokens, serial over t for a fixed order.
    for (int t = 0; t < T; ++t) {
        const float* xr = x + size_t(t) * D;
        const float* dyr = dy + size_t(t) * D;
        const float r = rrms[t];
        for (int j = 0; j < D; ++j) dg[j] += dyr[j] * xr[j] * r;
    }
}

void CpuBackend::gate_rows_forward(float* y, float* a, const float* S, int T, int D) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * D > 32768)
    for (int t = 0; t < T; ++t) {
        const float g = sigmoidf(a[t]);
        a[t] = g;
        const float* s = S + size_t(t) * D;
        float* yt = y + size_t(t) * D;
        for (int d = 0; d < D; ++d) yt[d] += g * s[d];
    }
}

void CpuBackend::gate_rows_backward(float* dS, float* da, const float* dy, const float* S,
                                    const float* g, int T, int D) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * D > 32768)
    for (int t = 0; t < T; ++t) {
        const float gt = g[t];
        const float* s = S + size_t(t) * D;
        const float* dyt = dy + size_t(t) * D;
        float* ds = dS + size_t(t) * D;
        double dot = 0.0;
        for (int d = 0; d < D; ++d) {
            dot += double(dyt[d]) * s[d];
            ds[d] = gt * dyt[d];
        }
        da[t] = float(dot * gt * (1.0f - gt));
    }
}

void CpuBackend::gather_rows(float* dst, const float* src, const int* idx, int n, int D) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(n) * D > 65536)
    for (int a = 0; a < n; ++a) std::copy_n(src + size_t(idx[a]) * D, D, dst + size_t(a) * D);
}

void CpuBackend::combine_by_token(float* out, const float* Y, const int* tok_off,
                                  const int* tok_assign, const float* w, int T, int D,
                                  bool accumulate) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * D > 32768)
    for (int t = 0; t < T; ++t) {
        float* o = out + size_t(t) * D;
        if (!accumulate) std::fill_n(o, D, 0.0f);
        for (int i = tok_off[t]; i < tok_off[t + 1]; ++i) {
            const int a = tok_assign[i];
            const float wa = w ? w[a] : 1.0f;
            const float* y = Y + size_t(a) * D;
            for (int d = 0; d < D; ++d) o[d] += wa * y[d];
        }
    }
}

void CpuBackend::combine_by_token_backward(float* dY, float* dw, const float* dout, const float* Y,
                                           const int* tok_off, const int* tok_assign,
                                           const float* w, int T, int D) {
#pragma omp parallel for num_threads(threads_) \
    schedule(static) if (threads_ > 1 && size_t(T) * D > 32768)
    for (int t = 0; t < T; ++t) {
        const float* go = dout + size_t(t) * D;
        for (int i = tok_off[t]; i < tok_off[t + 1]; ++i) {
            const int a = tok_assign[i];
            const float* y = Y + size_t(a) * D;
            float* dy = dY + size_t(a) * D;
            const float wa = w ? w[a] : 1.0f;
            float dot = 0.0f;
            for (int d = 0; d < D; ++d) {  // y[d] is read first: dY may equal Y
                dot += go[d] * y[d];
                dy[d] = wa * go[d];
            }
            if (dw) dw[a] = dot;
        }
    }
}

double CpuBackend::cross_entropy(float* dlogits, const float* logits, const int* labels, int T,
                                 int C, float scale, int64_t* correct) {
    // Rows in chunks: their log-sum-exps at once (vec_math), then each row's loss, argmax and
    // softmax gradient exp(z - lse) * scale / T.
    constexpr int kRows = 64;
    double lse[kRows];
    double total = 0.0;
    int64_t hits = 0;
    const float inv_t = scale / float(T);
    for (int t0 = 0; t0 < T; t0 += kRows) {
        const int m = std::min(kRows, T - t0);
        vec_logsumexp_rows(lse, logits + size_t(t0) * C, size_t(m), size_t(C));
        for (int r = 0; r < m; ++r) {
            const int t = t0 + r;
            const float* z = logits + size_t(t) * C;
            int arg = 0;
            for (int c = 1; c < C; ++c)
                if (z[c] > z[arg]) arg = c;
            total += lse[r] - z[labels[t]];
            hits += (arg == labels[t]);
            if (dlogits) {
                float* dz = dlogits + size_t(t) * C;
                vec_exp_shifted(dz, z, float(lse[r]), size_t(C));
                for (int c = 0; c < C; ++c) dz[c] *= inv_t;
                dz[labels[t]] -= inv_t;
            }
        }
    }
    if (correct) *correct = hits;
    return total / T;
}

}  // namespace cpu
}  // namespace moe
