// CPU backend ops (backend/cpu/cpu_backend.cpp, cpu_gemm.cpp): products against a naive loop on
// odd sizes that cross the row (512; 1024 for the rows of a segment) and column (256) tiles, grouped products with empty segments, combine with dropped slots,
// gradient checks of the differentiable ops (activations, RMSNorm, cross-entropy), and
// bit-identical results at 1 and 2 threads.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_small_gemm.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "support/grad_check.h"

using namespace moe;
using namespace moe::test;

namespace {

// C (M,N) = op(A) op(B) + beta C in double, the reference.
std::vector<float> naive_gemm(const std::vector<float>& C0, const float* A, const float* B, int M,
                              int N, int K, bool ta, bool tb, float beta) {
    std::vector<float> C(size_t(M) * N);
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            double s = 0.0;
            for (int k = 0; k < K; ++k) {
                const double a = ta ? A[size_t(k) * M + i] : A[size_t(i) * K + k];
                const double b = tb ? B[size_t(j) * K + k] : B[size_t(k) * N + j];
                s += a * b;
            }
            const double c0 = beta == 0.0f ? 0.0 : double(beta) * C0[size_t(i) * N + j];
            C[size_t(i) * N + j] = float(s + c0);
        }
    return C;
}

// max |a - b| / (1 + |b|)
double max_err(const std::vector<float>& a, const std::vector<float>& b) {
    double e = 0.0;
    for (size_t i = 0; i < a.size(); ++i)
        e = std::max(e, std::fabs(double(a[i]) - b[i]) / (1.0 + std::fabs(double(b[i]))));
    return e;
}

}  // namespace

TEST_SUITE("backend") {
    TEST_CASE("cpu gemm: all transposes and betas against a naive loop, sizes crossing tiles") {
        cpu::CpuBackend be(1);
        struct Shape {
            int M, N, K;
        };
        for (Shape s : {Shape{7, 300, 5}, Shape{300, 7, 5}, Shape{259, 513, 3}, Shape{600, 9, 5},
                        Shape{5, 3, 300}, Shape{1, 1, 1}}) {
            for (bool ta : {false, true})
                for (bool tb : {false, true})
                    for (float beta : {0.0f, 1.0f, 0.5f}) {
                        CAPTURE(s.M);
                        CAPTURE(s.N);
                        CAPTURE(s.K);
                        CAPTURE(ta);
                        CAPTURE(tb);
                        CAPTURE(beta);
                        const std::vector<float> A = normal_vector(size_t(s.M) * s.K, 1);
                        const std::vector<float> B = normal_vector(size_t(s.K) * s.N, 2);
                        std::vector<float> C0 = normal_vector(size_t(s.M) * s.N, 3);
                        // beta = 0 must overwrite whatever C holds, NaN included
                        if (beta == 0.0f)
                            std::fill(C0.begin(), C0.end(),
                                      std::numeric_limits<float>::quiet_NaN());
                        std::vector<float> C = C0;
                        be.gemm(C.data(), A.data(), B.data(), s.M, s.N, s.K, ta, tb, beta);
                        const std::vector<float> ref =
                            naive_gemm(C0, A.data(), B.data(), s.M, s.N, s.K, ta, tb, beta);
                        CHECK(max_err(C, ref) < 1e-4);
                    }
        }
    }

    TEST_CASE("cpu gemm_grouped_rows / wgrad / bias ops with empty segments") {
        cpu::CpuBackend be(2);
        // G = 5 segments of rows {0, 3, 0, 300, 1}: empty first, middle; N crossing the column tile
        const std::vector<int> off = {0, 0, 3, 3, 303, 304};
        const int G = 5, rows = 304, K = 6, N = 270;
        const std::vector<float> A = normal_vector(size_t(rows) * K, 4);
        const std::vector<float> B = normal_vector(size_t(G) * K * N, 5);  // G of (K,N) or (N,K)
        const std::vector<float> C0 = normal_vector(size_t(rows) * N, 6);
        for (bool tb : {false, true})
            for (float beta : {0.0f, 1.0f}) {
                CAPTURE(tb);
                CAPTURE(beta);
                std::vector<float> C = C0;
                be.gemm_grouped_rows(C.data(), A.data(), B.data(), size_t(K) * N, off.data(), G, N,
                                     K, tb, beta);
                for (int g = 0; g < G; ++g) {
                    const int m = off[size_t(g) + 1] - off[size_t(g)];
                    if (m == 0) continue;
                    const float* a = A.data() + size_t(off[size_t(g)]) * K;
                    const std::vector<float> c0(C0.begin() + ptrdiff_t(off[size_t(g)]) * N,
                                                C0.begin() + ptrdiff_t(off[size_t(g) + 1]) * N);
                    const std::vector<float> ref =
                        naive_gemm(c0, a, B.data() + size_t(g) * K * N, m, N, K, false, tb, beta);
                    const std::vector<float> got(C.begin() + ptrdiff_t(off[size_t(g)]) * N,
                                                 C.begin() + ptrdiff_t(off[size_t(g) + 1]) * N);
                    CHECK(max_err(got, ref) < 1e-4);
                }
            }
        // with a bias per segment: C = A B_g + bias_g, whatever C held (NaN)
        const std::vector<float> gbias = normal_vector(size_t(G) * N, 8);
        std::vector<float> Cbias(size_t(rows) * N, std::numeric_limits<float>::quiet_NaN());
        be.gemm_grouped_rows_bias(Cbias.data(), A.data(), B.data(), size_t(K) * N, gbias.data(), N,
                                  off.data(), G, N, K);
        for (int g = 0; g < G; ++g) {
            const int m = off[size_t(g) + 1] - off[size_t(g)];
            std::vector<float> c0;
            for (int r = 0; r < m; ++r)
                c0.insert(c0.end(), gbias.begin() + ptrdiff_t(g) * N,
                          gbias.begin() + ptrdiff_t(g + 1) * N);
            const std::vector<float> ref =
                naive_gemm(c0, A.data() + size_t(off[size_t(g)]) * K, B.data() + size_t(g) * K * N,
                           m, N, K, false, false, 1.0f);
            const std::vector<float> got(Cbias.begin() + ptrdiff_t(off[size_t(g)]) * N,
                                         Cbias.begin() + ptrdiff_t(off[size_t(g) + 1]) * N);
            CAPTURE(g);
            CHECK(max_err(got, ref) < 1e-4);
        }
        // wgrad: C_g (K, N) += A[rows]^T (K, m_g) B2[rows] (m_g, N); empty segments leave C_g alone
        const std::vector<float> B2 = normal_vector(size_t(rows) * N, 7);
        std::vector<float> W(size_t(G) * K * N, 0.5f);
        be.gemm_grouped_wgrad(W.data(), size_t(K) * N, A.data(), B2.data(), off.data(), G, K, N);
        for (int g = 0; g < G; ++g) {
            const int m = off[size_t(g) + 1] - off[size_t(g)];
            const std::vector<float> c0(size_t(K) * N, 0.5f);
            const std::vector<float> ref =
                m == 0 ? c0
                       : naive_gemm(c0, A.data() + size_t(off[size_t(g)]) * K,
                                    B2.data() + size_t(off[size_t(g)]) * N, K, N, m, true, false,
                                    1.0f);
            const std::vector<float> got(W.begin() + ptrdiff_t(g) * K * N,
                                         W.begin() + ptrdiff_t(g + 1) * K * N);
            CAPTURE(g);
            CHECK(max_err(got, ref) < 1e-4);
        }
        // a product with a bias, and the bias grad per segment: with A = 0 the rows of segment g
        // are bias_g; dbias_g = column sums
        const int Nb = 3;
        const std::vector<float> bias = {1, 2, 3, 10, 20, 30, 100, 200, 300, 4, 5, 6, 7, 8, 9};
        const std::vector<float> zero_a(size_t(rows) * 2, 0.0f), some_b(size_t(G) * 2 * Nb, 7.0f);
        std::vector<float> Cb(size_t(rows) * Nb, std::nanf(""));
        be.gemm_grouped_rows_bias(Cb.data(), zero_a.data(), some_b.data(), size_t(2) * Nb,
                                  bias.data(), Nb, off.data(), G, Nb, 2);
        CHECK(Cb[0] == 10.0f);                    // row 0 is segment 1
        CHECK(Cb[size_t(3) * Nb + 2] == 6.0f);    // row 3 is segment 3
        CHECK(Cb[size_t(303) * Nb + 1] == 8.0f);  // row 303 is segment 4
        std::vector<float> db(size_t(G) * Nb, 1.0f);
        be.bias_grad_grouped(db.data(), Nb, Cb.data(), off.data(), G, Nb);
        CHECK(db == std::vector<float>{1, 1, 1, 31, 61, 91, 1, 1, 1, 1201, 1501, 1801, 8, 9, 10});
    }

    TEST_CASE("cpu combine_by_token and its backward, with a token that has no assignment") {
        cpu::CpuBackend be(1);
        // T = 3, D = 2. Y rows: a0 {1,2}, a1 {3,4}, a2 {5,6}; weights w = {2, .5, -1} per assignment.
        // By token: token 0 has a1; token 1 none (all dropped); token 2 has a0 then a2.
        // out[0] = .5 * {3,4} = {1.5, 2}; out[1] = 0; out[2] = 2{1,2} - {5,6} = {-3, -2}
        const std::vector<float> Y = {1, 2, 3, 4, 5, 6};
        const std::vector<int> tok_off = {0, 1, 1, 3}, tok_assign = {1, 0, 2};
        const std::vector<float> w = {2, 0.5f, -1};
        std::vector<float> out(6, 7.0f);
        be.combine_by_token(out.data(), Y.data(), tok_off.data(), tok_assign.data(), w.data(), 3, 2,
                            false);
        CHECK(out == std::vector<float>{1.5f, 2, 0, 0, -3, -2});
        be.combine_by_token(out.data(), Y.data(), tok_off.data(), tok_assign.data(), w.data(), 3, 2,
                            true);
        CHECK(out == std::vector<float>{3, 4, 0, 0, -6, -4});
        std::vector<float> unw(6);
        be.combine_by_token(unw.data(), Y.data(), tok_off.data(), tok_assign.data(), nullptr, 3, 2,
                            false);
        CHECK(unw == std::vector<float>{3, 4, 0, 0, 6, 8});
        // backward with dout = {1,0 | 5,5 | 0,1}:
        //   dY[a1] = .5 {1,0}; dY[a0] = 2 {0,1}; dY[a2] = -{0,1}
        //   dw = {<{0,1},{1,2}> = 2, <{1,0},{3,4}> = 3, <{0,1},{5,6}> = 6}
        const std::vector<float> dout = {1, 0, 5, 5, 0, 1};
        std::vector<float> dY(6, 42.0f), dw(3, 42.0f);
        be.combine_by_token_backward(dY.data(), dw.data(), dout.data(), Y.data(), tok_off.data(),
                                     tok_assign.data(), w.data(), 3, 2);
        CHECK(dY == std::vector<float>{0, 2, 0.5f, 0, 0, -1});
        CHECK(dw == std::vector<float>{2, 3, 6});
    }

    TEST_CASE("cpu gather_rows, add, scale, sum_squares") {
        cpu::CpuBackend be(1);
        const std::vector<float> src = {1, 2, 3, 4, 5, 6};
        const std::vector<int> idx = {2, 0, 2};
        std::vector<float> dst(6);
        be.gather_rows(dst.data(), src.data(), idx.data(), 3, 2);
        CHECK(dst == std::vector<float>{5, 6, 1, 2, 5, 6});
        be.add(dst.data(), src.data(), 6);
        CHECK(dst == std::vector<float>{6, 8, 4, 6, 10, 12});
        be.scale(dst.data(), 6, 0.5f);
        CHECK(dst == std::vector<float>{3, 4, 2, 3, 5, 6});
        CHECK(be.sum_squares(src.data(), 6) == 91.0);
        std::vector<float> big(100000, 0.5f);  // several reduction chunks
        CHECK(be.sum_squares(big.data(), big.size()) == 25000.0);
    }

    TEST_CASE("cpu activations: hand values and gradient checks") {
        cpu::CpuBackend be(1);
        // hand values: relu(-1) = 0, relu(2) = 2; gelu(0) = 0, gelu(1) = 0.5 (1 + erf(1/sqrt2));
        // swiglu [gate | up] = [0, 1 | 3, 2]: silu(0) * 3 = 0, silu(1) * 2 = 2 / (1 + e^-1)
        const float pre_r[2] = {-1, 2};
        float h[2];
        be.act_forward(h, pre_r, 1, 2, Activation::relu);
        CHECK(h[0] == 0.0f);
        CHECK(h[1] == 2.0f);
        const float pre_g[2] = {0, 1};
        be.act_forward(h, pre_g, 1, 2, Activation::gelu);
        CHECK(h[0] == 0.0f);
        CHECK(h[1] == doctest::Approx(0.5 * (1.0 + std::erf(1.0 / std::sqrt(2.0)))));
        const float pre_s[4] = {0, 1, 3, 2};
        be.act_forward(h, pre_s, 1, 2, Activation::swiglu);
        CHECK(h[0] == 0.0f);
        CHECK(h[1] == doctest::Approx(2.0 / (1.0 + std::exp(-1.0))));

        const int rows = 4, H = 5;
        for (Activation act : {Activation::relu, Activation::gelu, Activation::swiglu}) {
            CAPTURE(int(act));
            const int W = act == Activation::swiglu ? 2 * H : H;
            std::vector<float> pre = normal_vector(size_t(rows) * W, 8, 1.5f);
            if (act == Activation::relu)  // relu away from 0: no probe crosses the kink
                for (float& v : pre) v += v >= 0.0f ? 0.1f : -0.1f;
            const std::vector<float> w = normal_vector(size_t(rows) * H, 9);
            std::vector<float> hh(size_t(rows) * H), dpre(pre.size());
            be.act_backward(dpre.data(), w.data(), pre.data(), rows, H, act);
            auto f = [&] {
                be.act_forward(hh.data(), pre.data(), rows, H, act);
                return weighted_sum(w.data(), hh.data(), hh.size());
            };
            expect_gradient(check_gradient(f, pre.data(), dpre.data(), pre.size()), "act", 1e-3);
        }
    }

    TEST_CASE("cpu rmsnorm: hand values and gradient check of dx and dg") {
        cpu::CpuBackend be(1);
        // x = {3, 4}: mean x^2 = 12.5, rrms = 1/sqrt(12.5 + 1e-5); g = {1, 2}
        const float x1[2] = {3, 4}, g1[2] = {1, 2};
        float y1[2], r1;
        be.rmsnorm_forward(y1, &r1, x1, g1, 1, 2);
        const double r = 1.0 / std::sqrt(12.5 + 1e-5);
        CHECK(r1 == doctest::Approx(r));
        CHECK(y1[0] == doctest::Approx(3 * r));
        CHECK(y1[1] == doctest::Approx(8 * r));

        const int T = 4, D = 6;
        std::vector<float> x = normal_vector(size_t(T) * D, 10);
        std::vector<float> g = normal_vector(size_t(D), 11, 0.3f);
        for (float& v : g) v += 1.0f;
        const std::vector<float> w = normal_vector(size_t(T) * D, 12);
        std::vector<float> y(x.size()), rrms(T), dx(x.size(), 5.0f), dg(size_t(D), 0.25f);
        be.rmsnorm_forward(y.data(), rrms.data(), x.data(), g.data(), T, D);
        be.rmsnorm_backward(dx.data(), dg.data(), w.data(), x.data(), g.data(), rrms.data(), T, D);
        for (float& v : dg) v -= 0.25f;  // dg accumulates
        auto f = [&] {
            be.rmsnorm_forward(y.data(), rrms.data(), x.data(), g.data(), T, D);
            return weighted_sum(w.data(), y.data(), y.size());
        };
        expect_gradient(check_gradient(f, x.data(), dx.data(), x.size()), "rmsnorm dx", 1e-3);
        expect_gradient(check_gradient(f, g.data(), dg.data(), g.size()), "rmsnorm dg", 1e-3);
    }

    TEST_CASE("cpu cross_entropy: hand values and gradient check of dlogits") {
        cpu::CpuBackend be(1);
        // logits {0, 0} label 1: loss ln 2, dlogits = {.5, -.5} * scale / T; argmax 0 (ties: first)
        const float l1[4] = {0, 0, 2, 0};
        const int y1[2] = {1, 0};
        float d1[4];
        int64_t correct = -1;
        const double loss1 = be.cross_entropy(d1, l1, y1, 2, 2, 2.0f, &correct);
        const double ce2 = std::log(1.0 + std::exp(-2.0));  // row 1: label 0 with logits {2, 0}
        CHECK(loss1 == doctest::Approx((std::log(2.0) + ce2) / 2));
        CHECK(correct == 1);  // row 0 predicts 0 (label 1), row 1 predicts 0 (label 0)
        CHECK(d1[0] == doctest::Approx(0.5));
        CHECK(d1[1] == doctest::Approx(-0.5));

        const int T = 5, C = 4;
        std::vector<float> logits = normal_vector(size_t(T) * C, 13, 2.0f);
        logits[0] = 60.0f;  // large logits stay finite (max-shifted)
        const std::vector<int> labels = {0, 3, 1, 1, 2};
        std::vector<float> dl(logits.size());
        const float scale = 0.7f;
        be.cross_entropy(dl.data(), logits.data(), labels.data(), T, C, scale, nullptr);
        auto f = [&] {
            return double(scale) *
                   be.cross_entropy(nullptr, logits.data(), labels.data(), T, C, scale, nullptr);
        };
        expect_gradient(check_gradient(f, logits.data(), dl.data(), logits.size()), "ce dlogits",
                        1e-3);
    }

    TEST_CASE("cpu backend: bit-identical products at 1 and 2 threads") {
        // big enough for several tiles (the parallel loop runs over tiles)
        const int M = 600, N = 520, K = 40;
        const std::vector<float> A = normal_vector(size_t(M) * K, 20);
        const std::vector<float> B = normal_vector(size_t(K) * N, 21);
        const std::vector<float> Bt = normal_vector(size_t(N) * K, 22);
        const std::vector<float> At = normal_vector(size_t(K) * M, 23);
        const std::vector<int> off = {0, 250, 250, 600};
        const std::vector<float> Bg = normal_vector(size_t(3) * K * N, 24);
        auto run = [&](Backend& be) {
            std::vector<std::vector<float>> out;
            std::vector<float> C(size_t(M) * N, 1.0f);
            be.gemm(C.data(), A.data(), B.data(), M, N, K, false, false, 0.5f);
            out.push_back(C);
            be.gemm(C.data(), At.data(), Bt.data(), M, N, K, true, true, 1.0f);
            out.push_back(C);
            be.gemm_grouped_rows(C.data(), A.data(), Bg.data(), size_t(K) * N, off.data(), 3, N, K,
                                 false, 0.0f);
            out.push_back(C);
            std::vector<float> Cb(C.size());
            be.gemm_grouped_rows_bias(Cb.data(), A.data(), Bg.data(), size_t(K) * N, B.data(), N,
                                      off.data(), 3, N, K);
            out.push_back(Cb);
            std::vector<float> W(size_t(3) * K * N, 0.0f);
            be.gemm_grouped_wgrad(W.data(), size_t(K) * N, A.data(), C.data(), off.data(), 3, K, N);
            out.push_back(W);
            std::vector<float> ss(1, float(be.sum_squares(C.data(), C.size())));
            out.push_back(ss);
            return out;
        };
        // The thread count of the OpenMP loops is set when a backend is constructed, so each
        // backend is constructed just before it runs.
        cpu::CpuBackend be1(1);
        const auto r1 = run(be1);
        cpu::CpuBackend be2(2);
        CHECK(be2.threads() == 2);
        const auto r2 = run(be2);
        REQUIRE(r1.size() == r2.size());
        for (size_t i = 0; i < r1.size(); ++i) {
            CAPTURE(i);
            CHECK(bit_equal(r1[i], r2[i]));
        }
    }

    TEST_CASE("cpu row products: segments on both sides of the 1024-row segment tile") {
        // Segments of 1023, 1024 and 1025 rows (one tile; one tile; two equal halves), 2049 rows
        // (three equal parts), an empty one and a short one; N crosses the 256-column tile.
        const std::vector<int> len = {1023, 1024, 0, 1025, 2049, 3};
        std::vector<int> off = {0};
        for (int m : len) off.push_back(off.back() + m);
        const int G = int(len.size()), rows = off.back(), K = 7, N = 300;
        const std::vector<float> A = normal_vector(size_t(rows) * K, 31);
        const std::vector<float> B = normal_vector(size_t(G) * K * N, 32);  // G of (K,N) or (N,K)
        const std::vector<float> C1 = normal_vector(size_t(rows) * N, 33);
        auto run = [&](Backend& be, bool tb, float beta) {
            // beta = 0 must overwrite whatever C holds, NaN included
            std::vector<float> C =
                beta == 0.0f
                    ? std::vector<float>(C1.size(), std::numeric_limits<float>::quiet_NaN())
                    : C1;
            be.gemm_grouped_rows(C.data(), A.data(), B.data(), size_t(K) * N, off.data(), G, N, K,
                                 tb, beta);
            return C;
        };
        for (bool tb : {false, true})
            for (float beta : {0.0f, 0.5f}) {
                CAPTURE(tb);
                CAPTURE(beta);
                cpu::CpuBackend be1(1);
                const std::vector<float> C = run(be1, tb, beta);
                for (int g = 0; g < G; ++g) {
                    const int m = len[size_t(g)];
                    if (m == 0) continue;
                    CAPTURE(g);
                    const auto r0 = ptrdiff_t(off[size_t(g)]) * N,
                               r1 = ptrdiff_t(off[size_t(g) + 1]) * N;
                    const std::vector<float> c0(C1.begin() + r0, C1.begin() + r1);
                    const std::vector<float> ref =
                        naive_gemm(c0, A.data() + size_t(off[size_t(g)]) * K,
                                   B.data() + size_t(g) * K * N, m, N, K, false, tb, beta);
                    CHECK(max_err(std::vector<float>(C.begin() + r0, C.begin() + r1), ref) < 1e-4);
                }
                // the same tiles, and so the same bits, at another thread count
                cpu::CpuBackend be3(3);
                CHECK(bit_equal(run(be3, tb, beta), C));
            }
        // gemm without ta cuts its M rows the same way: 2049 rows, three parts
        const int M = 2049;
        const std::vector<float> Bm = normal_vector(size_t(K) * N, 34);
        std::vector<float> C(size_t(M) * N, std::numeric_limits<float>::quiet_NaN());
        cpu::CpuBackend be1(1);
        be1.gemm(C.data(), A.data(), Bm.data(), M, N, K, false, false, 0.0f);
        CHECK(max_err(C, naive_gemm(C, A.data(), Bm.data(), M, N, K, false, false, 0.0f)) < 1e-4);
        std::vector<float> C3(size_t(M) * N, 0.0f);
        cpu::CpuBackend be3(3);
        be3.gemm(C3.data(), A.data(), Bm.data(), M, N, K, false, false, 0.0f);
        CHECK(bit_equal(C3, C));
    }

    TEST_CASE("cpu row products: short segments take the packing-free kernels") {
        // Segments of every length 1..kShortRows, one just above it (Eigen's path, so the call
        // mixes both and runs its tiles dynamically) and an empty one, with shapes the short
        // kernels take (nn: N % 16 == 0; nt: N % 4 == 0, K % 8 == 0); N crosses the 256-column
        // tile, so a segment's tiles prefetch each other's weights.
        std::vector<int> len;
        for (int m = 1; m <= cpu::kShortRows; ++m) len.push_back(m);
        len.push_back(0);
        const int N = 272, K = 24;
        for (bool mixed : {false, true}) {
            std::vector<int> lens = len;
            if (mixed) lens.push_back(cpu::kShortRows + 7);
            std::vector<int> off = {0};
            for (int m : lens) off.push_back(off.back() + m);
            const int G = int(lens.size()), rows = off.back();
            const std::vector<float> A = normal_vector(size_t(rows) * K, 41);
            const std::vector<float> B = normal_vector(size_t(G) * K * N, 42);
            const std::vector<float> bias = normal_vector(size_t(G) * N, 43);
            const std::vector<float> C1 = normal_vector(size_t(rows) * N, 44);
            // mode 0..2: beta 0 (C holds NaN), 1, 0.5; mode 3: the bias seeds the product
            auto run = [&](Backend& be, bool tb, int mode) {
                const float beta = mode == 1 ? 1.0f : mode == 2 ? 0.5f : 0.0f;
                std::vector<float> C =
                    mode == 1 || mode == 2
                        ? C1
                        : std::vector<float>(C1.size(), std::numeric_limits<float>::quiet_NaN());
                if (mode == 3)
                    be.gemm_grouped_rows_bias(C.data(), A.data(), B.data(), size_t(K) * N,
                                              bias.data(), N, off.data(), G, N, K);
                else
                    be.gemm_grouped_rows(C.data(), A.data(), B.data(), size_t(K) * N, off.data(), G,
                                         N, K, tb, beta);
                return C;
            };
            for (bool tb : {false, true})
                for (int mode = 0; mode < 4; ++mode) {
                    if (tb && mode == 3) continue;  // the bias op has no transposed form
                    CAPTURE(mixed);
                    CAPTURE(tb);
                    CAPTURE(mode);
                    cpu::CpuBackend be1(1);
                    const std::vector<float> C = run(be1, tb, mode);
                    for (int g = 0; g < G; ++g) {
                        const int m = lens[size_t(g)];
                        if (m == 0) continue;
                        CAPTURE(g);
                        const auto r0 = ptrdiff_t(off[size_t(g)]) * N,
                                   r1 = ptrdiff_t(off[size_t(g) + 1]) * N;
                        std::vector<float> c0(C1.begin() + r0, C1.begin() + r1);
                        if (mode == 3)
                            for (int r = 0; r < m; ++r)
                                std::copy_n(bias.begin() + ptrdiff_t(g) * N, N,
                                            c0.begin() + ptrdiff_t(r) * N);
                        const float beta = mode == 2 ? 0.5f : mode == 0 ? 0.0f : 1.0f;
                        const std::vector<float> ref =
                            naive_gemm(c0, A.data() + size_t(off[size_t(g)]) * K,
                                       B.data() + size_t(g) * K * N, m, N, K, false, tb, beta);
                        CHECK(max_err(std::vector<float>(C.begin() + r0, C.begin() + r1), ref) <
                              1e-5);
                    }
                    // the same bits at another thread count (static or dynamic tiles)
                    cpu::CpuBackend be2(2);
                    CHECK(bit_equal(run(be2, tb, mode), C));
                    cpu::CpuBackend be3(3);
                    CHECK(bit_equal(run(be3, tb, mode), C));
                }
            // weight gradients: W_g (K, N) += A_gᵀ (K, m_g) · D_g (m_g, N), added to what W holds
            const std::vector<float> D = normal_vector(size_t(rows) * N, 45);
            const std::vector<float> W0 = normal_vector(size_t(G) * K * N, 46);
            auto wgrad = [&](Backend& be) {
                std::vector<float> W = W0;
                be.gemm_grouped_wgrad(W.data(), size_t(K) * N, A.data(), D.data(), off.data(), G, K,
                                      N);
                return W;
            };
            cpu::CpuBackend be1(1);
            const std::vector<float> W = wgrad(be1);
            for (int g = 0; g < G; ++g) {
                CAPTURE(mixed);
                CAPTURE(g);
                std::vector<float> ref(W0.begin() + ptrdiff_t(g) * K * N,
                                       W0.begin() + ptrdiff_t(g + 1) * K * N);
                for (int i = 0; i < K; ++i)
                    for (int j = 0; j < N; ++j) {
                        double acc = ref[size_t(i) * N + j];
                        for (int r = off[size_t(g)]; r < off[size_t(g) + 1]; ++r)
                            acc += double(A[size_t(r) * K + i]) * D[size_t(r) * N + j];
                        ref[size_t(i) * N + j] = float(acc);
                    }
                const std::vector<float> got(W.begin() + ptrdiff_t(g) * K * N,
                                             W.begin() + ptrdiff_t(g + 1) * K * N);
                CHECK(max_err(got, ref) < 1e-5);
            }
            cpu::CpuBackend be3(3);
            CHECK(bit_equal(wgrad(be3), W));
        }
    }

}  // TEST_SUITE

TEST_CASE("cpu gemm_grouped_rows: a segment longer than the row tile") {
    cpu::CpuBackend be(2);
    // segments of 700 and 5 rows: longer than the 512-row tiles of the other products, but one
    // row tile here (segments are cut only beyond 1024 rows)
    const std::vector<int> off = {0, 700, 705};
    const int G = 2, rows = 705, K = 9, N = 11;
    const std::vector<float> A = normal_vector(size_t(rows) * K, 11);
    const std::vector<float> B = normal_vector(size_t(G) * K * N, 12);
    std::vector<float> C(size_t(rows) * N, 0.0f);
    be.gemm_grouped_rows(C.data(), A.data(), B.data(), size_t(K) * N, off.data(), G, N, K, false,
                         0.0f);
    double max_err = 0.0;
    for (int g = 0; g < G; ++g)
        for (int r = off[g]; r < off[g + 1]; ++r)
            for (int j = 0; j < N; ++j) {
                double ref = 0.0;
                for (int k = 0; k < K; ++k)
                    ref += double(A[size_t(r) * K + k]) * B[size_t(g) * K * N + size_t(k) * N + j];
                max_err = std::max(max_err, std::abs(ref - C[size_t(r) * N + j]));
            }
    CHECK(max_err < 1e-4);
}
