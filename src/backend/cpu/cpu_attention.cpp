// The CPU backend's token-model ops: embedding lookups and causal self-attention (backend.h).
// Attention is cut into one piece per (sequence, head), whatever the thread count; each piece is
// computed serially, every sum in ascending index order, so results are bit-identical at any
// number of threads.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/check.h"
#include "backend/cpu/cpu_backend.h"

namespace moe::cpu {

namespace {

float dot(const float* a, const float* b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

}  // namespace

void CpuBackend::embedding_forward(float* out, const float* table, const int* ids, int T, int D,
                                   bool accumulate) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && T > 256)
    for (int t = 0; t < T; ++t) {
        float* y = out + size_t(t) * D;
        const float* e = table + size_t(ids[t]) * D;
        if (accumulate)
            for (int d = 0; d < D; ++d) y[d] += e[d];
        else
            std::copy_n(e, D, y);
    }
}

void CpuBackend::embedding_backward(float* dtable, const float* dout, const int* ids, int T, int V,
                                    int D) {
    // A stable counting sort of the tokens by row (serial), then each row's tokens in ascending t.
    emb_off_.assign(size_t(V) + 1, 0);
    emb_tok_.resize(size_t(T));
    for (int t = 0; t < T; ++t) {
        MOESIM_CHECK(ids[t] >= 0 && ids[t] < V, "embedding id within the table");
        ++emb_off_[size_t(ids[t]) + 1];
    }
    for (int v = 0; v < V; ++v) emb_off_[size_t(v) + 1] += emb_off_[size_t(v)];
    emb_next_.assign(emb_off_.begin(), emb_off_.end() - 1);
    for (int t = 0; t < T; ++t) emb_tok_[size_t(emb_next_[size_t(ids[t])]++)] = t;
    const int* off = emb_off_.data();
    const int* tok = emb_tok_.data();
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && T > 256)
    for (int v = 0; v < V; ++v) {
        float* g = dtable + size_t(v) * D;
        for (int k = off[v]; k < off[v + 1]; ++k) {
            const float* dy = dout + size_t(tok[k]) * D;
            for (int d = 0; d < D; ++d) g[d] += dy[d];
        }
    }
}

void CpuBackend::attention_forward(float* out, float* probs, const float* qkv, int nseq, int S,
                                   int H, int hd, float scale) {
    const int D = H * hd;
    const size_t row = 3 * size_t(D);
    const int pieces = nseq * H;
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && pieces > 1)
    for (int p = 0; p < pieces; ++p) {
        const int s = p / H, h = p % H;
        const float* base = qkv + size_t(s) * S * row;
        for (int i = 0; i < S; ++i) {
            float* P = probs + (size_t(p) * S + i) * S;
            const float* q = base + i * row + size_t(h) * hd;
            float mx = -std::numeric_limits<float>::infinity();
            for (int j = 0; j <= i; ++j) {
                P[j] = scale * dot(q, base + j * row + D + size_t(h) * hd, hd);
                mx = std::max(mx, P[j]);
            }
            float sum = 0.0f;
            for (int j = 0; j <= i; ++j) sum += P[j] = std::exp(P[j] - mx);
            const float inv = 1.0f / sum;
            for (int j = 0; j <= i; ++j) P[j] *= inv;
            std::fill(P + i + 1, P + S, 0.0f);
            float* o = out + (size_t(s) * S + i) * D + size_t(h) * hd;
            std::fill(o, o + hd, 0.0f);
            for (int j = 0; j <= i; ++j) {
                const float* v = base + j * row + 2 * size_t(D) + size_t(h) * hd;
                for (int c = 0; c < hd; ++c) o[c] += P[j] * v[c];
            }
        }
    }
}

void CpuBackend::attention_backward(float* dqkv, float* dscores, const float* dout,
                                    const float* qkv, const float* probs, int nseq, int S, int H,
                                    int hd, float scale) {
    const int D = H * hd;
    const size_t row = 3 * size_t(D);
    const int pieces = nseq * H;
#pragma omp parallel for num_threads(threads_) schedule(static) if (threads_ > 1 && pieces > 1)
    for (int p = 0; p < pieces; ++p) {
        const int s = p / H, h = p % H;
        const float* base = qkv + size_t(s) * S * row;
        float* dbase = dqkv + size_t(s) * S * row;
        const size_t qo = size_t(h) * hd, ko = D + qo, vo = 2 * size_t(D) + qo;
        // dS, and dq row by row
        for (int i = 0; i < S; ++i) {
            const float* P = probs + (size_t(p) * S + i) * S;
            float* dS = dscores + (size_t(p) * S + i) * S;
            const float* dy = dout + (size_t(s) * S + i) * D + qo;
            float rowdot = 0.0f;
            for (int j = 0; j <= i; ++j) {
                dS[j] = dot(dy, base + j * row + vo, hd);
                rowdot += P[j] * dS[j];
            }
            for (int j = 0; j <= i; ++j) dS[j] = P[j] * (dS[j] - rowdot);
            std::fill(dS + i + 1, dS + S, 0.0f);
            float* dq = dbase + i * row + qo;
            std::fill(dq, dq + hd, 0.0f);
            for (int j = 0; j <= i; ++j) {
                const float* k = base + j * row + ko;
                for (int c = 0; c < hd; ++c) dq[c] += dS[j] * k[c];
            }
            for (int c = 0; c < hd; ++c) dq[c] *= scale;
        }
        // dk and dv column by column, over the queries that see them
        for (int j = 0; j < S; ++j) {
            float* dk = dbase + j * row + ko;
            float* dv = dbase + j * row + vo;
            std::fill(dk, dk + hd, 0.0f);
            std::fill(dv, dv + hd, 0.0f);
            for (int i = j; i < S; ++i) {
                const float dSij = dscores[(size_t(p) * S + i) * S + j];
                const float Pij = probs[(size_t(p) * S + i) * S + j];
                const float* q = base + i * row + qo;
                const float* dy = dout + (size_t(s) * S + i) * D + qo;
                for (int c = 0; c < hd; ++c) {
                    dk[c] += dSij * q[c];
                    dv[c] += Pij * dy[c];
                }
            }
            for (int c = 0; c < hd; ++c) dk[c] *= scale;
        }
    }
}

}  // namespace moe::cpu
