// The twin cases (tests/support/twin.h): every op of backend.h registers here, on random inputs
// of several shapes, with empty experts, all-dropped tokens and one expert or one row among them.
// The drivers are in test_backend_twins.cpp (the CPU at 1 against 2 threads, bit for bit; the
// CPU against CUDA, within the bounds below).
//
// Bounds: ||cuda - cpu|| / ||cpu|| over a whole output, in double. float32 has unit roundoff
// u = 2^-24 = 6e-8; an output whose index is wrong is off by O(1), and one wrong element among n
// still by ~1/sqrt(n) >= 1e-3 here, far above every bound.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "support/twin.h"

using namespace moe;
using namespace moe::test;

namespace {

// A copy, a select (relu), or one IEEE operation (+, * of the same operands): correctly rounded
// on every device, so equal bits.
constexpr double kExact = 0.0;
// A few float operations per value: the GPU may contract a * b + c into one FMA, so the last bit
// of each may differ: ~u per operation.
constexpr double kArith = 1e-6;
// exp, erf, log, sqrt or a division per value: the devices' implementations differ by a few ulp
// (CUDA's expf/erff are within 2 ulp, Eigen's vectorised erf/exp within a few).
constexpr double kTranscendental = 1e-5;
// Sums of K products in another order (tiles, cuBLAS's split of K): the error of a random-sign
// sum grows like u sqrt(K); 2e-6 sqrt(K) leaves a wide margin (serial float sums in reverse
// order measure ~1/80 of it) and still fails TF32 tensor-core products (10-bit mantissa: ~4e-4
// relative) at every K used here (at most 1030).
double product_bound(int K) {
    return 2e-6 * std::sqrt(double(std::max(K, 1)));
}

// 0.37 as "0.37", not std::to_string's "0.370000"
std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

std::string dims(int a, int b) {
    return std::to_string(a) + "x" + std::to_string(b);
}
std::string dims(int a, int b, int c) {
    return dims(a, b) + "x" + std::to_string(c);
}

// ---- segment layouts of the grouped ops ----------------------------------------------------

// Expert segments: off (G+1) over the rows, plus `pad` rows after off[G] that no segment covers
// (an op must leave them alone).
struct Layout {
    std::string name;
    std::vector<int> sizes;  // rows per segment
    int N, K;                // output columns, inner dimension
    int pad = 3;
    int G() const { return int(sizes.size()); }
    std::vector<int> off() const {
        std::vector<int> o(sizes.size() + 1, 0);
        for (size_t g = 0; g < sizes.size(); ++g) o[g + 1] = o[g] + sizes[g];
        return o;
    }
    int rows() const { return off().back() + pad; }
};

std::vector<Layout> layouts() {
    std::vector<int> many(64);  // 64 small segments of 0..6 rows (a fixed pattern, some empty)
    for (int g = 0; g < 64; ++g) many[size_t(g)] = (g * 5 + g / 7) % 7;
    return {
        {"empty experts", {5, 0, 37, 0, 0, 1, 64, 3}, 45, 37},
        {"all empty", {0, 0, 0, 0, 0}, 29, 13},
        {"one expert", {50}, 31, 23},
        {"one expert one row", {1}, 17, 19},
        {"64 small experts", many, 20, 11},
        // segments across the CPU's 1024-row segment tile, columns across its 256-column tile:
        // the 2-thread run splits them
        {"large", {1030, 0, 60, 300}, 260, 24},
    };
}

// Rows [off[0], off[G]) are the segments' (NaN when the op overwrites them), the pad rows random.
std::vector<float> segment_output(Draw& d, const Layout& L, int width, bool overwrite) {
    std::vector<float> c = d.normal(size_t(L.rows()) * width, 0.5f);
    if (overwrite)
        std::fill(c.begin(), c.begin() + size_t(L.off().back()) * width,
                  std::numeric_limits<float>::quiet_NaN());
    return c;
}

void register_grouped() {
    for (const Layout& L : layouts()) {
        const int G = L.G(), N = L.N, K = L.K, rows = L.rows();
        const std::vector<int> off = L.off();
        // weights of segment g at g * stride, with unused values between them: a stride taken as
        // K * N reads them
        const size_t b_stride = size_t(K) * N + 7;
        for (bool tb : {false, true})
            for (float beta : {0.0f, 1.0f}) {
                add_twin_case("gemm_grouped_rows " + L.name + " tb=" + std::to_string(tb) +
                                  " beta=" + num(beta),
                              "gemm_grouped_rows", product_bound(K), [=](TwinRun& r) {
                                  auto A = r.up(r.draw.normal(size_t(rows) * K));
                                  auto B = r.up(r.draw.normal(b_stride * G));
                                  auto C = r.up(segment_output(r.draw, L, N, beta == 0.0f));
                                  r.be.gemm_grouped_rows(C.get(), A.get(), B.get(), b_stride,
                                                         off.data(), G, N, K, tb, beta);
                                  r.keep("C", C);
                              });
            }
        // wgrad: C_g (M, N) += A[rows]ᵀ B[rows]; C_g at g * c_stride, the gaps random. M = the
        // layout's K (up to 37), except the large layout's 520 rows across the 512-row tile.
        const int M = L.name == "large" ? 520 : K;
        const int Nw = L.name == "large" ? 24 : N;
        const size_t c_stride = size_t(M) * Nw + 5;
        const int max_rows = *std::max_element(L.sizes.begin(), L.sizes.end());
        add_twin_case("gemm_grouped_wgrad " + L.name, "gemm_grouped_wgrad", product_bound(max_rows),
                      [=](TwinRun& r) {
                          auto A = r.up(r.draw.normal(size_t(rows) * M));
                          auto B = r.up(r.draw.normal(size_t(rows) * Nw));
                          auto C = r.up(r.draw.normal(c_stride * G));
                          r.be.gemm_grouped_wgrad(C.get(), c_stride, A.get(), B.get(), off.data(),
                                                  G, M, Nw);
                          r.keep("C", C);
                      });
        const size_t bias_stride = size_t(N) + 2;
        add_twin_case("gemm_grouped_rows_bias " + L.name, "gemm_grouped_rows_bias",
                      product_bound(K), [=](TwinRun& r) {
                          auto A = r.up(r.draw.normal(size_t(rows) * K));
                          auto B = r.up(r.draw.normal(b_stride * G));
                          auto bias = r.up(r.draw.normal(bias_stride * G));
                          auto C = r.up(segment_output(r.draw, L, N, true));
                          r.be.gemm_grouped_rows_bias(C.get(), A.get(), B.get(), b_stride,
                                                      bias.get(), bias_stride, off.data(), G, N, K);
                          r.keep("C", C);
                      });
        // column sums of up to max_rows rows, in another order
        add_twin_case("bias_grad_grouped " + L.name, "bias_grad_grouped", product_bound(max_rows),
                      [=](TwinRun& r) {
                          auto dC = r.up(r.draw.normal(size_t(rows) * N));
                          auto db = r.up(r.draw.normal(bias_stride * G));
                          r.be.bias_grad_grouped(db.get(), bias_stride, dC.get(), off.data(), G, N);
                          r.keep("dbias", db);
                      });
    }
}

void register_gemm() {
    struct Shape {
        int M, N, K;
    };
    // odd sizes, single rows and columns, and two that cross the CPU's tiles (1024 rows of a
    // plain product, 512 rows of a transposed one, 256 columns)
    for (Shape s : {Shape{37, 53, 29}, Shape{1, 64, 1}, Shape{1, 1, 1}, Shape{64, 1, 45},
                    Shape{1100, 40, 16}, Shape{600, 300, 20}})
        for (bool ta : {false, true})
            for (bool tb : {false, true})
                for (float beta : {0.0f, 1.0f, 0.5f}) {
                    if (beta == 0.5f && s.M != 37) continue;
                    add_twin_case(
                        "gemm " + dims(s.M, s.N, s.K) + " ta=" + std::to_string(ta) +
                            " tb=" + std::to_string(tb) + " beta=" + num(beta),
                        "gemm", product_bound(s.K), [=](TwinRun& r) {
                            auto A = r.up(r.draw.normal(size_t(s.M) * s.K));
                            auto B = r.up(r.draw.normal(size_t(s.K) * s.N));
                            // beta 0 overwrites C, NaN included
                            auto C = beta == 0.0f ? r.poison(size_t(s.M) * s.N)
                                                  : r.up(r.draw.normal(size_t(s.M) * s.N));
                            r.be.gemm(C.get(), A.get(), B.get(), s.M, s.N, s.K, ta, tb, beta);
                            r.keep("C", C);
                        });
                }
}

const char* act_name(Activation a) {
    switch (a) {
        case Activation::relu:
            return "relu";
        case Activation::gelu:
            return "gelu";
        case Activation::swiglu:
            return "swiglu";
    }
    return "?";
}

void register_elementwise() {
    // rows x H: none, one value, odd, and more than the CPU's parallel thresholds (32768 values,
    // 16384-value pieces of GELU)
    const std::vector<std::pair<int, int>> shapes = {{0, 8}, {1, 1}, {7, 33}, {130, 300}};
    for (Activation act : {Activation::relu, Activation::gelu, Activation::swiglu}) {
        // relu selects (equal bits); gelu (erf, exp) and swiglu (sigmoid's exp, a division) are
        // transcendental
        const double bound = act == Activation::relu ? kExact : kTranscendental;
        const int mult = act == Activation::swiglu ? 2 : 1;
        for (const auto& shape : shapes) {
            const int rows = shape.first, H = shape.second;
            const std::string tag = std::string(act_name(act)) + " " + dims(rows, H);
            const size_t n_pre = size_t(rows) * H * mult, n_h = size_t(rows) * H;
            add_twin_case("act_forward " + tag, "act_forward", bound, [=](TwinRun& r) {
                auto pre = r.up(r.draw.normal(n_pre, 2.0f));
                auto h = r.poison(n_h);
                r.be.act_forward(h.get(), pre.get(), rows, H, act);
                r.keep("h", h);
            });
            add_twin_case("act_backward " + tag, "act_backward", bound, [=](TwinRun& r) {
                auto pre = r.up(r.draw.normal(n_pre, 2.0f));
                auto dh = r.up(r.draw.normal(n_h));
                auto dpre = r.poison(n_pre);
                r.be.act_backward(dpre.get(), dh.get(), pre.get(), rows, H, act);
                r.keep("dpre", dpre);
            });
            // in place: dpre == pre (backend.h allows it)
            add_twin_case("act_backward in place " + tag, "act_backward", bound, [=](TwinRun& r) {
                auto pre = r.up(r.draw.normal(n_pre, 2.0f));
                auto dh = r.up(r.draw.normal(n_h));
                r.be.act_backward(pre.get(), dh.get(), pre.get(), rows, H, act);
                r.keep("dpre", pre);
            });
        }
    }

    // y += x and x *= s: one rounding per value, equal bits. 70000 crosses the CPU's parallel
    // threshold (65536).
    for (size_t n : {size_t(0), size_t(1), size_t(1000), size_t(70000)}) {
        add_twin_case("add n=" + std::to_string(n), "add", kExact, [=](TwinRun& r) {
            auto y = r.up(r.draw.normal(n));
            auto x = r.up(r.draw.normal(n));
            r.be.add(y.get(), x.get(), n);
            r.keep("y", y);
        });
        add_twin_case("scale n=" + std::to_string(n), "scale", kExact, [=](TwinRun& r) {
            auto x = r.up(r.draw.normal(n));
            r.be.scale(x.get(), n, 0.3721f);
            r.keep("x", x);
        });
    }
    // a sum of positive squares (no cancellation): the CPU's float lanes of 16 terms added in
    // double against any other order: ~u relative; 1e-6
    for (size_t n : {size_t(0), size_t(1), size_t(1000), (size_t(1) << 20) + 7})
        add_twin_case("sum_squares n=" + std::to_string(n), "sum_squares", 1e-6, [=](TwinRun& r) {
            auto x = r.up(r.draw.signed_uniform(n, 2.0f));
            r.keep("sum", {r.be.sum_squares(x.get(), n)});
        });
}

// The fused expert feed-forward ops: two grouped products around an activation per segment.
// gelu and swiglu only: a relu kink flips on a last-bit difference of pre, an O(1) change of one
// value (test_cpu_backend.cpp checks relu on the CPU, bit for bit against the unfused ops). The
// bound adds the products' (over D, H and, for the weight gradients, a segment's rows) and the
// activation's.
void register_expert_ffn() {
    struct FfnLayout {
        std::string name;
        std::vector<int> sizes;
        int D, H;
    };
    std::vector<int> many(40);  // short segments of 0..6 rows, some empty
    for (int g = 0; g < 40; ++g) many[size_t(g)] = (g * 5 + g / 7) % 7;
    const std::vector<FfnLayout> layouts = {
        {"empty experts", {5, 0, 37, 0, 0, 1, 64, 3}, 24, 40},
        {"40 short experts", many, 32, 64},
        // a segment across the 1024-row tile, and swiglu's 2H across the 256-column tile
        {"large", {1030, 0, 60, 300}, 16, 136},
    };
    for (const FfnLayout& L : layouts)
        for (Activation act : {Activation::gelu, Activation::swiglu}) {
            const int G = int(L.sizes.size()), D = L.D, H = L.H;
            const int H1 = act == Activation::swiglu ? 2 * H : H;
            std::vector<int> off(size_t(G) + 1, 0);
            for (int g = 0; g < G; ++g) off[size_t(g) + 1] = off[size_t(g)] + L.sizes[size_t(g)];
            const int rows = off.back();
            const int max_rows = *std::max_element(L.sizes.begin(), L.sizes.end());
            const Backend::FfnShape shape{G, D, H, H1, act};
            const std::string tag = L.name + " " + act_name(act);
            const double fwd_bound = kTranscendental + product_bound(D) + product_bound(H);
            add_twin_case(
                "expert_ffn_forward " + tag, "expert_ffn_forward", fwd_bound, [=](TwinRun& r) {
                    auto xd = r.up(r.draw.normal(size_t(rows) * D));
                    auto w1 = r.up(r.draw.normal(size_t(G) * D * H1, 0.3f));
                    auto b1 = r.up(r.draw.normal(size_t(G) * H1));
                    auto w2 = r.up(r.draw.normal(size_t(G) * H * D, 0.3f));
                    auto b2 = r.up(r.draw.normal(size_t(G) * D));
                    auto pre = r.poison(size_t(rows) * H1);
                    auto h = r.poison(size_t(rows) * H);
                    auto yd = r.poison(size_t(rows) * D);
                    r.be.expert_ffn_forward(yd.get(), h.get(), pre.get(), xd.get(), w1.get(),
                                            b1.get(), w2.get(), b2.get(), off.data(), shape);
                    r.keep("pre", pre);
                    r.keep("h", h);
                    r.keep("yd", yd);
                });
            // in place as the model calls it: dh over h, dpre over pre, dXd over Xd
            add_twin_case("expert_ffn_backward " + tag, "expert_ffn_backward",
                          fwd_bound + product_bound(max_rows), [=](TwinRun& r) {
                              auto xd = r.up(r.draw.normal(size_t(rows) * D));
                              auto pre = r.up(r.draw.normal(size_t(rows) * H1, 2.0f));
                              auto h = r.up(r.draw.normal(size_t(rows) * H));
                              auto dyd = r.up(r.draw.normal(size_t(rows) * D));
                              auto w1 = r.up(r.draw.normal(size_t(G) * D * H1, 0.3f));
                              auto w2 = r.up(r.draw.normal(size_t(G) * H * D, 0.3f));
                              auto dw1 = r.up(r.draw.normal(size_t(G) * D * H1));
                              auto db1 = r.up(r.draw.normal(size_t(G) * H1));
                              auto dw2 = r.up(r.draw.normal(size_t(G) * H * D));
                              auto db2 = r.up(r.draw.normal(size_t(G) * D));
                              r.be.expert_ffn_backward(xd.get(), pre.get(), h.get(), dw1.get(),
                                                       db1.get(), dw2.get(), db2.get(), dyd.get(),
                                                       xd.get(), h.get(), pre.get(), w1.get(),
                                                       w2.get(), off.data(), shape);
                              r.keep("dxd", xd);
                              r.keep("dpre", pre);
                              r.keep("dh", h);
                              r.keep("dw1", dw1);
                              r.keep("db1", db1);
                              r.keep("dw2", dw2);
                              r.keep("db2", db2);
                          });
        }
}

void register_rmsnorm() {
    // a D-term float sum of squares, a sqrt and a division per row: transcendental. Not D = 1:
    // there dx = r g dy (1 - x^2 r^2) cancels to ~eps / x^2, and its relative error is that of
    // the cancellation, not of the op.
    for (const auto& shape :
         std::vector<std::pair<int, int>>{{0, 5}, {1, 3}, {5, 37}, {200, 256}}) {
        const int T = shape.first, D = shape.second;
        const std::string tag = dims(T, D);
        add_twin_case("rmsnorm_forward " + tag, "rmsnorm_forward", kTranscendental,
                      [=](TwinRun& r) {
                          auto x = r.up(r.draw.normal(size_t(T) * D));
                          auto g = r.up(r.draw.normal(size_t(D)));
                          auto y = r.poison(size_t(T) * D);
                          auto rrms = r.poison(size_t(T));
                          r.be.rmsnorm_forward(y.get(), rrms.get(), x.get(), g.get(), T, D);
                          r.keep("y", y);
                          r.keep("rrms", rrms);
                      });
        add_twin_case("rmsnorm_backward " + tag, "rmsnorm_backward", kTranscendental,
                      [=](TwinRun& r) {
                          const std::vector<float> xh = r.draw.normal(size_t(T) * D);
                          // rrms as forward would save it, computed here in double
                          std::vector<float> rh(static_cast<size_t>(T));
                          for (int t = 0; t < T; ++t) {
                              double ss = 0.0;
                              for (int j = 0; j < D; ++j)
                                  ss += double(xh[size_t(t) * D + j]) * xh[size_t(t) * D + j];
                              rh[size_t(t)] = float(1.0 / std::sqrt(ss / D + 1e-5));
                          }
                          auto x = r.up(xh);
                          auto rrms = r.up(rh);
                          auto g = r.up(r.draw.normal(size_t(D)));
                          auto dy = r.up(r.draw.normal(size_t(T) * D));
                          auto dx = r.poison(size_t(T) * D);
                          auto dg = r.up(r.draw.normal(size_t(D)));  // accumulates
                          r.be.rmsnorm_backward(dx.get(), dg.get(), dy.get(), x.get(), g.get(),
                                                rrms.get(), T, D);
                          r.keep("dx", dx);
                          r.keep("dg", dg);
                      });
    }
}

// ---- the by-token index of combine (routing_plan.h's tok_offsets / tok_assign) ---------------

// T tokens with 0..k assignments each; the assignments are the rows of Y in a random order,
// with `dropped` more rows of Y that no token uses (dropped slots).
struct TokenIndex {
    int T = 0, rows = 0;
    std::vector<int> tok_off, tok_assign;
    std::vector<char> used;  // per row of Y
};

TokenIndex token_index(Draw& d, int T, int max_k, int dropped) {
    TokenIndex ix;
    ix.T = T;
    const std::vector<int> k = d.ints(size_t(T), max_k + 1);
    ix.tok_off.assign(size_t(T) + 1, 0);
    for (int t = 0; t < T; ++t) ix.tok_off[size_t(t) + 1] = ix.tok_off[size_t(t)] + k[size_t(t)];
    const int A = ix.tok_off.back();
    ix.rows = A + dropped;
    const std::vector<int> perm = d.permutation(ix.rows);
    ix.tok_assign.assign(perm.begin(), perm.begin() + A);
    ix.used.assign(size_t(ix.rows), 0);
    for (int a : ix.tok_assign) ix.used[size_t(a)] = 1;
    return ix;
}

struct TokenLayout {
    std::string name;
    int T, max_k, dropped, D;
};
std::vector<TokenLayout> token_layouts() {
    return {
        {"mixed", 40, 2, 9, 37},         // tokens with 0, 1 or 2 assignments, dropped slots
        {"all dropped", 12, 0, 15, 21},  // no token has an assignment
        {"one token", 1, 1, 0, 8},       // one token, one assignment
        {"large", 1200, 3, 100, 40},     // across the CPU's parallel threshold
        {"no assignments at all", 0, 0, 0, 6},
    };
}

void register_combine() {
    for (const TokenLayout& L : token_layouts())
        for (bool weighted : {false, true}) {
            const std::string tag = L.name + (weighted ? " weighted" : " w=null");
            // out (+)= sum of w * Y over at most max_k rows in a fixed order: a few roundings
            for (bool accumulate : {false, true})
                add_twin_case(
                    "combine_by_token " + tag + " accumulate=" + std::to_string(accumulate),
                    "combine_by_token", kArith, [=](TwinRun& r) {
                        const TokenIndex ix = token_index(r.draw, L.T, L.max_k, L.dropped);
                        const int D = L.D;
                        auto Y = r.up(r.draw.normal(size_t(ix.rows) * D));
                        auto w = r.up(r.draw.uniform(size_t(ix.rows), 0.1f, 1.0f));
                        auto to = r.up(ix.tok_off);
                        auto ta = r.up(ix.tok_assign);
                        // overwritten: a token with no assignment must get 0, not NaN
                        auto out = accumulate ? r.up(r.draw.normal(size_t(L.T) * D))
                                              : r.poison(size_t(L.T) * D);
                        r.be.combine_by_token(out.get(), Y.get(), to.get(), ta.get(),
                                              weighted ? w.get() : nullptr, L.T, D, accumulate);
                        r.keep("out", out);
                    });
            // dY = w * dout: one rounding (equal bits); dw a D-term float dot: sums in another
            // order
            for (bool in_place : {false, true})
                add_twin_case("combine_by_token_backward " + tag + (in_place ? " in place" : ""),
                              "combine_by_token_backward", product_bound(L.D), [=](TwinRun& r) {
                                  const TokenIndex ix =
                                      token_index(r.draw, L.T, L.max_k, L.dropped);
                                  const int D = L.D;
                                  const std::vector<float> yh = r.draw.normal(size_t(ix.rows) * D);
                                  // the rows no token uses stay as they were; the others are overwritten
                                  std::vector<float> dyh = in_place ? yh : r.draw.normal(yh.size());
                                  std::vector<float> dwh = r.draw.normal(size_t(ix.rows));
                                  if (!in_place)
                                      for (int a = 0; a < ix.rows; ++a)
                                          if (ix.used[size_t(a)])
                                              std::fill_n(dyh.begin() + size_t(a) * D, D,
                                                          std::numeric_limits<float>::quiet_NaN());
                                  for (int a = 0; a < ix.rows; ++a)
                                      if (ix.used[size_t(a)])
                                          dwh[size_t(a)] = std::numeric_limits<float>::quiet_NaN();
                                  auto Y = r.up(yh);
                                  auto dY = r.up(dyh);
                                  auto dw = r.up(dwh);
                                  auto w = r.up(r.draw.uniform(size_t(ix.rows), 0.1f, 1.0f));
                                  auto dout = r.up(r.draw.normal(size_t(L.T) * D));
                                  auto to = r.up(ix.tok_off);
                                  auto ta = r.up(ix.tok_assign);
                                  float* dYp = in_place ? Y.get() : dY.get();
                                  r.be.combine_by_token_backward(
                                      dYp, dw.get(), dout.get(), Y.get(), to.get(), ta.get(),
                                      weighted ? w.get() : nullptr, L.T, D);
                                  r.keep("dY", in_place ? Y : dY, kExact);
                                  r.keep("dw", dw);
                              });
        }

    // dst[a] = src[idx[a]]: a copy. idx with repeats; 3000 x 32 crosses the parallel threshold.
    for (const auto& shape :
         std::vector<std::pair<int, int>>{{0, 4}, {1, 1}, {77, 13}, {3000, 32}}) {
        const int n = shape.first, D = shape.second;
        add_twin_case("gather_rows " + dims(n, D), "gather_rows", kExact, [=](TwinRun& r) {
            const int src_rows = 50;
            auto src = r.up(r.draw.normal(size_t(src_rows) * D));
            auto idx = r.up(r.draw.ints(size_t(n), src_rows));
            auto dst = r.poison(size_t(n) * D);
            r.be.gather_rows(dst.get(), src.get(), idx.get(), n, D);
            r.keep("dst", dst);
        });
    }
}

void register_gate_rows() {
    for (const auto& shape :
         std::vector<std::pair<int, int>>{{0, 3}, {1, 1}, {9, 37}, {1000, 40}}) {
        const int T = shape.first, D = shape.second;
        const std::string tag = dims(T, D);
        // g = sigmoid(a): an exp and a division; y += g * S
        add_twin_case("gate_rows_forward " + tag, "gate_rows_forward", kTranscendental,
                      [=](TwinRun& r) {
                          auto y = r.up(r.draw.normal(size_t(T) * D));  // accumulates
                          auto a = r.up(r.draw.normal(size_t(T), 2.0f));
                          auto S = r.up(r.draw.normal(size_t(T) * D));
                          r.be.gate_rows_forward(y.get(), a.get(), S.get(), T, D);
                          r.keep("y", y);
                          r.keep("g", a);
                      });
        // dS = g * dy: one rounding (equal bits); da: a double dot rounded to float, then a few
        // float operations
        add_twin_case("gate_rows_backward " + tag, "gate_rows_backward", kArith, [=](TwinRun& r) {
            auto dy = r.up(r.draw.normal(size_t(T) * D));
            auto S = r.up(r.draw.normal(size_t(T) * D));
            auto g = r.up(r.draw.uniform(size_t(T), 0.02f, 0.98f));
            auto dS = r.poison(size_t(T) * D);
            auto da = r.poison(size_t(T));
            r.be.gate_rows_backward(dS.get(), da.get(), dy.get(), S.get(), g.get(), T, D);
            r.keep("dS", dS, kExact);
            r.keep("da", da);
        });
    }
}

void register_token_ops() {
    // embeddings: copies and float sums in ascending t; ids with repeats
    for (const auto& shape :
         std::vector<std::pair<int, int>>{{0, 4}, {1, 1}, {77, 13}, {1000, 32}}) {
        const int T = shape.first, D = shape.second, V = 23;
        for (bool acc : {false, true})
            add_twin_case("embedding_forward " + dims(T, D) + (acc ? " accumulate" : ""),
                          "embedding_forward", kExact, [=](TwinRun& r) {
                              auto table = r.up(r.draw.normal(size_t(V) * D));
                              auto ids = r.up(r.draw.ints(size_t(T), V));
                              auto out = acc ? r.up(r.draw.normal(size_t(T) * D))
                                             : r.poison(size_t(T) * D);
                              r.be.embedding_forward(out.get(), table.get(), ids.get(), T, D, acc);
                              r.keep("out", out);
                          });
        add_twin_case("embedding_backward " + dims(T, D), "embedding_backward", kArith,
                      [=](TwinRun& r) {
                          auto dt = r.up(r.draw.normal(size_t(V) * D));  // accumulates
                          auto dout = r.up(r.draw.normal(size_t(T) * D));
                          auto ids = r.up(r.draw.ints(size_t(T), V));
                          r.be.embedding_backward(dt.get(), dout.get(), ids.get(), T, V, D);
                          r.keep("dtable", dt);
                      });
    }
    // attention: dots, an exp per score, a division; (nseq, S, H, hd)
    struct Shape {
        int nseq, S, H, hd;
    };
    for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 5, 3, 4}, Shape{4, 31, 4, 16}}) {
        const int D = s.H * s.hd, T = s.nseq * s.S;
        const size_t np = size_t(s.nseq) * s.H * s.S * s.S;
        const float scale = 1.0f / std::sqrt(float(s.hd));
        const std::string tag =
            std::to_string(s.nseq) + "x" + std::to_string(s.S) + " " + dims(s.H, s.hd);
        add_twin_case("attention_forward " + tag, "attention_forward", kTranscendental,
                      [=](TwinRun& r) {
                          auto qkv = r.up(r.draw.normal(size_t(T) * 3 * D));
                          auto out = r.poison(size_t(T) * D);
                          auto probs = r.poison(np);
                          r.be.attention_forward(out.get(), probs.get(), qkv.get(), s.nseq, s.S,
                                                 s.H, s.hd, scale);
                          r.keep("out", out);
                          r.keep("probs", probs);
                      });
        add_twin_case("attention_backward " + tag, "attention_backward", kTranscendental,
                      [=](TwinRun& r) {
                          auto qkv = r.up(r.draw.normal(size_t(T) * 3 * D));
                          auto out = r.poison(size_t(T) * D);
                          auto probs = r.poison(np);
                          r.be.attention_forward(out.get(), probs.get(), qkv.get(), s.nseq, s.S,
                                                 s.H, s.hd, scale);
                          auto dout = r.up(r.draw.normal(size_t(T) * D));
                          auto dqkv = r.poison(size_t(T) * 3 * D);
                          auto ds = r.poison(np);
                          r.be.attention_backward(dqkv.get(), ds.get(), dout.get(), qkv.get(),
                                                  probs.get(), s.nseq, s.S, s.H, s.hd, scale);
                          r.keep("dqkv", dqkv);
                          r.keep("dscores", ds);
                      });
    }
}

void register_cross_entropy() {
    struct Shape {
        int T, C;
        float scale;
    };
    for (Shape s :
         {Shape{1, 1, 1.0f}, Shape{1, 10, 1.0f}, Shape{37, 11, 0.7f}, Shape{300, 100, 1.0f}})
        for (bool with_grad : {true, false}) {
            // the loss and the gradient through exp and log; the count of correct rows is an
            // integer: equal
            add_twin_case("cross_entropy " + dims(s.T, s.C) + (with_grad ? "" : " no dlogits"),
                          "cross_entropy", kTranscendental, [=](TwinRun& r) {
                              const size_t n = size_t(s.T) * s.C;
                              const std::vector<float> z = r.draw.normal(n, 3.0f);
                              // half the labels are the row's argmax, so the count is not 0
                              std::vector<int> y = r.draw.ints(size_t(s.T), s.C);
                              int64_t expected = 0;
                              for (int t = 0; t < s.T; ++t) {
                                  int arg = 0;
                                  for (int c = 1; c < s.C; ++c)
                                      if (z[size_t(t) * s.C + c] > z[size_t(t) * s.C + arg])
                                          arg = c;
                                  if (t % 2 == 0) y[size_t(t)] = arg;
                                  expected += (y[size_t(t)] == arg);
                              }
                              auto logits = r.up(z);
                              auto labels = r.up(y);
                              auto dz = r.poison(with_grad ? n : 0);
                              int64_t correct = -1;
                              const double loss =
                                  r.be.cross_entropy(with_grad ? dz.get() : nullptr, logits.get(),
                                                     labels.get(), s.T, s.C, s.scale, &correct);
                              r.keep("loss", {loss});
                              r.keep("correct", {double(correct)}, kExact);
                              if (correct != expected)
                                  r.fail("correct = " + std::to_string(correct) + ", " +
                                         std::to_string(expected) + " rows have argmax = label");
                              if (with_grad) r.keep("dlogits", dz);
                          });
        }
}

// After an optimizer step: the gradient is all zero, and grad_sumsq has the bits of this
// backend's sum_squares of the gradient as it was.
void check_after_step(TwinRun& r, const TwinArray<float>& g, double sumsq_before, bool with_sumsq,
                      double grad_sumsq) {
    for (float v : g.download())
        if (v != 0.0f) {
            r.fail("the gradient is not zero after the step");
            break;
        }
    if (with_sumsq) {
        if (std::memcmp(&grad_sumsq, &sumsq_before, sizeof(double)) != 0)
            r.fail("grad_sumsq " + std::to_string(grad_sumsq) + " differs from sum_squares " +
                   std::to_string(sumsq_before));
        r.keep("grad_sumsq", {grad_sumsq}, 1e-6);  // as sum_squares
    }
}

void register_optimizers() {
    // every combination at n = 1000; with grad_sumsq, grad_scale 0.37, weight decay and
    // momentum at 0, 1 and 40000 values (three of the CPU's 16384-value pieces)
    for (size_t n : {size_t(0), size_t(1), size_t(1000), size_t(40000)})
        for (bool with_sumsq : {false, true})
            for (float grad_scale : {1.0f, 0.37f}) {
                if (n != 1000 && (!with_sumsq || grad_scale == 1.0f)) continue;
                const std::string tag = "n=" + std::to_string(n) + (with_sumsq ? " sumsq" : "") +
                                        " grad_scale=" + num(grad_scale);
                for (float wd : {0.0f, 0.01f}) {
                    if (n != 1000 && wd == 0.0f) continue;
                    // a sqrt, a division, and bias corrections through pow (double on the CPU):
                    // transcendental
                    add_twin_case("adam_step " + tag + " wd=" + num(wd), "adam_step",
                                  kTranscendental, [=](TwinRun& r) {
                                      auto p = r.up(r.draw.normal(n, 0.1f));
                                      const std::vector<float> gh = r.draw.normal(n);
                                      auto g = r.up(gh);
                                      auto m = r.up(r.draw.normal(n, 0.1f));
                                      auto v = r.up(r.draw.uniform(n, 0.01f, 1.0f));
                                      const double before = r.be.sum_squares(g.get(), n);
                                      const Backend::AdamHyper h{0.05f, 0.9f, 0.999f, 1e-8f, wd, 7};
                                      double sumsq = -1.0;
                                      r.be.adam_step(p.get(), g.get(), m.get(), v.get(), n, h,
                                                     grad_scale, with_sumsq ? &sumsq : nullptr);
                                      r.keep("p", p);
                                      r.keep("m", m);
                                      r.keep("v", v);
                                      check_after_step(r, g, before, with_sumsq, sumsq);
                                  });
                }
                for (float momentum : {0.0f, 0.9f}) {
                    if (n != 1000 && momentum == 0.0f) continue;
                    // v = mu v + g s; p -= lr v: a few roundings (FMA)
                    add_twin_case("sgd_step " + tag + " momentum=" + num(momentum), "sgd_step",
                                  kArith, [=](TwinRun& r) {
                                      auto p = r.up(r.draw.normal(n, 0.1f));
                                      auto g = r.up(r.draw.normal(n));
                                      auto v = r.up(r.draw.normal(n, 0.5f));
                                      const double before = r.be.sum_squares(g.get(), n);
                                      double sumsq = -1.0;
                                      r.be.sgd_step(p.get(), g.get(), v.get(), n, 0.05f, momentum,
                                                    grad_scale, with_sumsq ? &sumsq : nullptr);
                                      r.keep("p", p);
                                      r.keep("v", v);
                                      check_after_step(r, g, before, with_sumsq, sumsq);
                                  });
                }
            }
}

// The memory ops: alloc gives zeros; copy and fill_zero on ranges inside larger buffers (the
// bytes around them stay); to_device / to_host at an offset.
void register_memory() {
    for (size_t n : {size_t(1), size_t(1000), size_t(70001)}) {
        const std::string tag = "n=" + std::to_string(n);
        add_twin_case("alloc " + tag, "alloc", kExact, [=](TwinRun& r) {
            TwinArray<float> a(r.be, n);
            const std::vector<float> h = a.download();
            for (float v : h)
                if (v != 0.0f) {
                    r.fail("alloc did not give zeroed memory");
                    break;
                }
            r.keep("a", a);
        });
        add_twin_case("copy " + tag, "copy", kExact, [=](TwinRun& r) {
            auto src = r.up(r.draw.normal(n + 5));
            auto dst = r.up(r.draw.normal(n + 9));
            r.be.copy(dst.get() + 4, src.get() + 1, n * sizeof(float));
            r.keep("dst", dst);
        });
        add_twin_case("fill_zero " + tag, "fill_zero", kExact, [=](TwinRun& r) {
            auto a = r.up(r.draw.normal(n + 6));
            r.be.fill_zero(a.get() + 3, n * sizeof(float));
            r.keep("a", a);
        });
        add_twin_case("to_device to_host " + tag, "to_device", kExact, [=](TwinRun& r) {
            auto a = r.up(r.draw.normal(n + 8));
            const std::vector<float> h = r.draw.normal(n);
            r.be.to_device(a.get() + 2, h.data(), n * sizeof(float));
            std::vector<float> back(n + 2, 7.0f);
            r.be.to_host(back.data() + 1, a.get() + 3, (n - 1) * sizeof(float));
            r.keep("a", a);
            r.keep("back", std::vector<double>(back.begin(), back.end()));
        });
    }
}

// ---- routing (the default path's routing ops) ----------------------------------------------

// Shapes (T tokens, N experts, K per token): one expert, one token, K = N, rows across the CPU's
// pieces of 8192 / N rows, and slots across the CUDA plan build's chunks of 256.
struct RouteShape {
    int T, N, K;
};
const RouteShape kRouteShapes[] = {{1, 1, 1},    {1, 8, 2},    {37, 1, 1},   {64, 8, 2},
                                   {300, 16, 4}, {513, 64, 8}, {40, 512, 2}, {5, 6, 6}};

std::string route_tag(const RouteShape& s) {
    return "T=" + std::to_string(s.T) + " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K);
}

// K distinct experts per row: row t takes (r_t + j * step) % N, step coprime to N.
std::vector<int> distinct_selection(Draw& d, int T, int N, int K) {
    const std::vector<int> r = d.ints(size_t(T), N);
    int step = 1;
    for (int c = 1; c < N; ++c)
        if (std::gcd(c, N) == 1 && c * 3 > N) {
            step = c;
            break;
        }
    std::vector<int> sel(size_t(T) * K);
    for (int t = 0; t < T; ++t)
        for (int j = 0; j < K; ++j) sel[size_t(t) * K + j] = (r[size_t(t)] + j * step) % N;
    return sel;
}

// Logits whose softmax scores are well apart within each row (a permutation of 0..N-1 times 0.2,
// plus noise below 0.05): the top-k of either device's softmax is the same set in the same order.
std::vector<float> separated_logits(Draw& d, int T, int N) {
    std::vector<float> z(size_t(T) * N);
    const std::vector<float> noise = d.uniform(z.size(), 0.0f, 0.05f);
    for (int t = 0; t < T; ++t) {
        const std::vector<int> perm = d.permutation(N);
        for (int i = 0; i < N; ++i)
            z[size_t(t) * N + i] = 0.2f * float(perm[size_t(i)]) + noise[size_t(t) * N + i] - 3.0f;
    }
    return z;
}

void register_routing() {
    for (const RouteShape& sh : kRouteShapes) {
        const int T = sh.T, N = sh.N, K = sh.K;
        const std::string tag = route_tag(sh);
        for (int pad : {0, 3}) {
            const int ld = N + pad;
            const std::string ptag = tag + (pad ? " strided" : "");
            add_twin_case("softmax_rows " + ptag, "softmax_rows", kTranscendental, [=](TwinRun& r) {
                auto z = r.up(r.draw.normal(size_t(T) * ld, 3.0f));
                auto p = r.poison(size_t(T) * N);
                r.be.softmax_rows(p.get(), z.get(), T, N, ld);
                r.keep("p", p);
            });
            // p need not sum to 1 for the formula; the pad columns of d must stay
            add_twin_case("softmax_rows_backward " + ptag, "softmax_rows_backward", 1e-5,
                          [=](TwinRun& r) {
                              auto p = r.up(r.draw.uniform(size_t(T) * N, 0.01f, 1.0f));
                              auto d = r.up(r.draw.normal(size_t(T) * ld));
                              r.be.softmax_rows_backward(d.get(), p.get(), T, N, ld);
                              r.keep("d", d);
                          });
            add_twin_case(
                "logsumexp_rows " + ptag, "logsumexp_rows", kTranscendental, [=](TwinRun& r) {
                    auto x = r.up(r.draw.normal(size_t(T) * ld, 4.0f));
                    auto lse = r.up(
                        std::vector<double>(size_t(T), std::numeric_limits<double>::quiet_NaN()));
                    r.be.logsumexp_rows(lse.get(), x.get(), T, N, ld);
                    r.keep("lse", lse);
                });
        }
        // Top-k on the same scores: the same serial code on both devices, so equal bits.
        for (bool with_bias : {false, true})
            for (bool normalize : {true, false}) {
                const float scale = normalize ? 1.0f : 2.5f;
                add_twin_case("topk_rows " + tag + (with_bias ? " bias" : "") +
                                  (normalize ? " normalized" : " scaled"),
                              "topk_rows", kExact, [=](TwinRun& r) {
                                  auto s = r.up(r.draw.uniform(size_t(T) * N, 0.001f, 1.0f));
                                  auto bias = r.up(r.draw.normal(size_t(N), 0.1f));
                                  auto sel = r.up(std::vector<int>(size_t(T) * K, -7));
                                  auto gate = r.poison(size_t(T) * K);
                                  r.be.topk_rows(sel.get(), gate.get(), s.get(),
                                                 with_bias ? bias.get() : nullptr, T, N, K,
                                                 normalize, scale);
                                  r.keep("sel", sel);
                                  r.keep("gate", gate);
                              });
                add_twin_case("topk_rows_backward " + tag + (with_bias ? " strided" : "") +
                                  (normalize ? " normalized" : " scaled"),
                              "topk_rows_backward", 1e-5, [=](TwinRun& r) {
                                  const int ld = with_bias ? N + 2 : N;
                                  auto s = r.up(r.draw.uniform(size_t(T) * N, 0.001f, 1.0f));
                                  auto sel = r.up(distinct_selection(r.draw, T, N, K));
                                  auto dg = r.up(r.draw.normal(size_t(T) * K));
                                  auto ds = r.up(r.draw.normal(size_t(T) * ld));
                                  r.be.topk_rows_backward(ds.get(), s.get(), sel.get(), dg.get(), T,
                                                          N, K, normalize, scale, ld);
                                  r.keep("ds", ds);
                              });
            }
        // the plan's gate gradients to R slots: A of them, distinct slots, values past A unread
        add_twin_case("gate_grad_to_slots " + tag, "gate_grad_to_slots", kExact, [=](TwinRun& r) {
            const int R = T * K, A = R - R / 3;
            std::vector<int> o(size_t(N) + 1, 0);
            o[size_t(N)] = A;
            auto off = r.up(o);
            auto slot = r.up(r.draw.permutation(R));
            auto dg = r.up(r.draw.normal(size_t(R)));
            auto ds = r.poison(size_t(R));
            r.be.gate_grad_to_slots(ds.get(), dg.get(), slot.get(), off.get(), N, R);
            r.keep("d_slot", ds);
        });
        add_twin_case("switch_loss_grad " + tag, "switch_loss_grad", kExact, [=](TwinRun& r) {
            auto routed = r.up(r.draw.ints(size_t(N), T * K + 1));
            auto dp = r.up(r.draw.normal(size_t(T) * N, 0.01f));
            r.be.switch_loss_grad(dp.get(), routed.get(), T, N, K, 0.03f);
            r.keep("d_probs", dp);
        });
        add_twin_case("z_loss_grad " + tag + " strided", "z_loss_grad", kTranscendental,
                      [=](TwinRun& r) {
                          const int ldx = N + 2, ldd = N + 1;
                          const std::vector<float> xh = r.draw.normal(size_t(T) * ldx, 3.0f);
                          // a row's log-sum-exp, computed here in double (an input of the op)
                          std::vector<double> lh(static_cast<size_t>(T));
                          for (int t = 0; t < T; ++t) {
                              double s = 0.0;
                              for (int i = 0; i < N; ++i)
                                  s += std::exp(double(xh[size_t(t) * ldx + i]));
                              lh[size_t(t)] = std::log(s);
                          }
                          auto x = r.up(xh);
                          auto lse = r.up(lh);
                          auto d = r.up(r.draw.normal(size_t(T) * ldd, 0.01f));
                          r.be.z_loss_grad(d.get(), x.get(), lse.get(), T, N, ldx, ldd, 0.001f);
                          r.keep("d", d);
                      });
        add_twin_case("column_sums " + tag, "column_sums", kExact, [=](TwinRun& r) {
            auto x = r.up(r.draw.uniform(size_t(T) * N, 0.0f, 1.0f));
            auto sums =
                r.up(std::vector<double>(size_t(N), std::numeric_limits<double>::quiet_NaN()));
            r.be.column_sums(sums.get(), x.get(), T, N);
            r.keep("sums", sums);
        });
    }

    // Plan build from R = T K slots: experts uniform, only the even ones (empty experts), all -1
    // (every slot dropped by the router), one expert; tokens s / K or drawn (expert choice).
    struct PlanInput {
        std::string name;
        int T, N, K;
        int kind;  // 0: uniform in [-1, N), 1: even experts only, 2: all -1
        bool tokens;
    };
    const PlanInput plans[] = {
        {"uniform", 300, 16, 2, 0, false},      {"even experts", 513, 8, 3, 1, false},
        {"all dropped", 40, 8, 2, 2, false},    {"one expert", 700, 1, 1, 0, false},
        {"one token", 1, 4, 4, 0, false},       {"slot tokens", 200, 12, 3, 0, true},
        {"many experts", 256, 512, 2, 0, false}};
    for (const PlanInput& in : plans) {
        add_twin_case("plan_build " + in.name, "plan_build", kExact, [=](TwinRun& r) {
            const int R = in.T * in.K, N = in.N;
            std::vector<int> ex = r.draw.ints(size_t(R), N + 1);
            for (int& e : ex) e = in.kind == 2 ? -1 : in.kind == 1 ? (e / 2) * 2 - 1 : e - 1;
            auto expert = r.up(ex);
            auto sgate = r.up(r.draw.uniform(size_t(R), 0.01f, 1.0f));
            auto stok = r.up(r.draw.ints(size_t(R), in.T));
            auto off = r.up(std::vector<int>(size_t(N) + 1, -7));
            auto routed = r.up(std::vector<int>(size_t(N), -7));
            auto token = r.up(std::vector<int>(size_t(R), -7));
            auto slot = r.up(std::vector<int>(size_t(R), -7));
            auto gate = r.up(std::vector<float>(size_t(R), -7.0f));
            r.be.plan_build(off.get(), token.get(), gate.get(), slot.get(), routed.get(),
                            expert.get(), sgate.get(), in.tokens ? stok.get() : nullptr, R, in.K,
                            N);
            r.keep("offsets", off);
            r.keep("routed", routed);
            r.keep("token", token);
            r.keep("slot", slot);
            r.keep("gate", gate);
        });
    }

    // Capacity on a plan drawn on the host: segments of random sizes with empty ones, C = 1 (most
    // dropped), 3, and one above every segment (nothing dropped); distinct slots, and for the
    // score policy gates of four values (ties, decided by the slot).
    for (bool by_score : {false, true})
        for (int N : {1, 7, 64})
            for (int C : {1, 3, 100000}) {
                const std::string op = by_score ? "capacity_score" : "capacity_position";
                add_twin_case(op + " N=" + std::to_string(N) + " C=" + std::to_string(C), op,
                              kExact, [=](TwinRun& r) {
                                  std::vector<int> sizes = r.draw.ints(size_t(N), 9);
                                  for (int e = 0; e < N; e += 3) sizes[size_t(e)] = 0;
                                  if (N == 1) sizes[0] = 11;
                                  std::vector<int> o(size_t(N) + 1, 0);
                                  for (int e = 0; e < N; ++e)
                                      o[size_t(e) + 1] = o[size_t(e)] + sizes[size_t(e)];
                                  const int A = o.back(), A_max = A + 5;
                                  std::vector<float> g = r.draw.uniform(size_t(A_max), 0.01f, 1.0f);
                                  if (by_score)
                                      for (float& v : g) v = 0.25f * float(int(v * 4.0f) + 1);
                                  auto off = r.up(o);
                                  auto token = r.up(r.draw.ints(size_t(A_max), 50));
                                  auto slot = r.up(r.draw.permutation(A_max));
                                  auto gate = r.up(g);
                                  auto dropped = r.up(std::vector<int>(size_t(N), -7));
                                  if (by_score)
                                      r.be.capacity_score(off.get(), token.get(), gate.get(),
                                                          slot.get(), dropped.get(), N, C, A_max);
                                  else
                                      r.be.capacity_position(off.get(), token.get(), gate.get(),
                                                             slot.get(), dropped.get(), N, C,
                                                             A_max);
                                  r.keep("offsets", off);
                                  r.keep("dropped", dropped);
                                  r.keep("token", token);
                                  r.keep("slot", slot);
                                  r.keep("gate", gate);
                              });
            }

    // The by-token index of A assignments with distinct slots (a permutation), tokens with none,
    // and A_max - A values past the plan that must not be read.
    for (const RouteShape& sh : kRouteShapes) {
        add_twin_case("plan_index_by_token " + route_tag(sh), "plan_index_by_token", kExact,
                      [=](TwinRun& r) {
                          const int T = sh.T, N = sh.N, R = sh.T * sh.K;
                          const int A = R - R / 4, A_max = A + 4;
                          std::vector<int> o(size_t(N) + 1, 0);
                          o[size_t(N)] = A;
                          std::vector<int> perm = r.draw.permutation(R + 4);
                          std::vector<int> tok = r.draw.ints(size_t(A_max), std::max(1, T - T / 3));
                          perm.resize(size_t(A_max));
                          auto off = r.up(o);
                          auto token = r.up(tok);
                          auto slot = r.up(perm);
                          auto to = r.up(std::vector<int>(size_t(T) + 1, -7));
                          auto ta = r.up(std::vector<int>(size_t(A_max), -7));
                          r.be.plan_index_by_token(to.get(), ta.get(), token.get(), slot.get(),
                                                   off.get(), N, T, A_max);
                          r.keep("tok_offsets", to);
                          r.keep("tok_assign", ta);
                      });
    }

    // The whole default routing path as one chain, on logits whose scores are well apart: the
    // same selections and the same plan (every integer equal), the floats within their bounds.
    for (const RouteShape& sh : kRouteShapes)
        for (int C : {0, 1, 2}) {
            if (C == 2 && sh.T * sh.K < 64) continue;
            add_twin_case(
                "routing chain " + route_tag(sh) + " C=" + std::to_string(C), "plan_build",
                kTranscendental, [=](TwinRun& r) {
                    const int T = sh.T, N = sh.N, K = sh.K, R = T * K;
                    // C = 2: the capacity of factor 1 (ceil(T K / N)), C = 1: most
                    // assignments dropped
                    const int64_t cap = C == 2 ? (int64_t(R) + N - 1) / N : C;
                    auto z = r.up(separated_logits(r.draw, T, N));
                    auto p = r.poison(size_t(T) * N);
                    auto sel = r.up(std::vector<int>(size_t(R), -7));
                    auto sgate = r.poison(size_t(R));
                    auto off = r.up(std::vector<int>(size_t(N) + 1, -7));
                    auto routed = r.up(std::vector<int>(size_t(N), -7));
                    auto dropped = r.up(std::vector<int>(size_t(N), 0));
                    auto token = r.up(std::vector<int>(size_t(R), -7));
                    auto slot = r.up(std::vector<int>(size_t(R), -7));
                    auto gate = r.up(std::vector<float>(size_t(R), -7.0f));
                    auto to = r.up(std::vector<int>(size_t(T) + 1, -7));
                    auto ta = r.up(std::vector<int>(size_t(R), -7));
                    r.be.softmax_rows(p.get(), z.get(), T, N, N);
                    r.be.topk_rows(sel.get(), sgate.get(), p.get(), nullptr, T, N, K, true, 1.0f);
                    r.be.plan_build(off.get(), token.get(), gate.get(), slot.get(), routed.get(),
                                    sel.get(), sgate.get(), nullptr, R, K, N);
                    if (cap > 0)
                        r.be.capacity_position(off.get(), token.get(), gate.get(), slot.get(),
                                               dropped.get(), N, cap, R);
                    r.be.plan_index_by_token(to.get(), ta.get(), token.get(), slot.get(), off.get(),
                                             N, T, R);
                    r.keep("p", p);
                    r.keep("sel", sel, kExact);
                    r.keep("slot gates", sgate);
                    r.keep("offsets", off, kExact);
                    r.keep("routed", routed, kExact);
                    r.keep("dropped", dropped, kExact);
                    r.keep("token", token, kExact);
                    r.keep("slot", slot, kExact);
                    r.keep("gate", gate);
                    r.keep("tok_offsets", to, kExact);
                    r.keep("tok_assign", ta, kExact);
                });
        }
}

// The window summary (window_observe): two batches accumulated into a summary that starts from
// random counts and sums, with drops (tokens with no assignment), groups in [-1, G) and the
// second batch with fewer groups; variants without logits, without groups, without the by-token
// index, dropped and losses (null). Counts exact; the double sums within the transcendental
// bound (entropy and log-sum-exp).
void register_window() {
    struct WindowShape {
        int T, N, G;
        bool logits, groups, tok, optional;
    };
    const WindowShape shapes[] = {
        {1, 1, 1, true, true, true, true},     {300, 8, 4, true, true, true, true},
        {1000, 16, 3, true, true, true, true}, {65, 512, 2, true, true, true, true},
        {200, 6, 2, false, true, true, false}, {200, 6, 2, true, false, false, false},
        {40, 3, 0, false, false, true, false}};
    for (const WindowShape& sh : shapes) {
        const std::string tag = "T=" + std::to_string(sh.T) + " N=" + std::to_string(sh.N) +
                                " G=" + std::to_string(sh.G) + (sh.logits ? "" : " no logits") +
                                (sh.groups ? "" : " no groups") + (sh.tok ? "" : " dense") +
                                (sh.optional ? "" : " no dropped or losses");
        add_twin_case("window_observe " + tag, "window_observe", kTranscendental, [=](TwinRun& r) {
            using W = Backend::WindowSummary;
            const int T = sh.T, N = sh.N, G = sh.G;
            const std::vector<int> c0 = r.draw.ints(W::counts_size(N, G), 50);
            std::vector<int64_t> counts0(c0.begin(), c0.end());
            counts0[W::count(N, G, W::num_groups)] = G > 0 ? 1 : 0;
            const std::vector<float> s0 = r.draw.uniform(W::sums_size(N), 0.0f, 10.0f);
            auto counts = r.up(counts0);
            auto sums = r.up(std::vector<double>(s0.begin(), s0.end()));
            const std::vector<int> i0 = r.draw.ints(size_t(N), 50);
            auto interval = r.up(std::vector<int64_t>(i0.begin(), i0.end()));
            for (int batch = 0; batch < 2; ++batch) {
                const int ng = batch == 0 ? G : std::max(0, G - 1);
                auto routed = r.up(r.draw.ints(size_t(N), 3 * T));
                auto dropped = r.up(r.draw.ints(size_t(N), T + 1));
                // each token keeps 0, 1 or 2 assignments
                const std::vector<int> per = r.draw.ints(size_t(T), 3);
                std::vector<int> tok(size_t(T) + 1, 0);
                for (int t = 0; t < T; ++t) tok[size_t(t) + 1] = tok[size_t(t)] + per[size_t(t)];
                auto tok_offsets = r.up(tok);
                auto probs = r.up(r.draw.uniform(size_t(T) * N, 0.0f, 1.0f));
                auto logits = r.up(r.draw.normal(size_t(T) * N, 4.0f));
                std::vector<int> g = r.draw.ints(size_t(T), ng + 1);
                for (int& v : g) v -= 1;
                auto groups = r.up(g);
                const std::vector<float> l = r.draw.uniform(2, 0.0f, 2.0f);
                auto losses = r.up(std::vector<double>(l.begin(), l.end()));
                r.be.window_observe(counts.get(), sums.get(), interval.get(), routed.get(),
                                    sh.optional ? dropped.get() : nullptr,
                                    sh.tok ? tok_offsets.get() : nullptr, probs.get(),
                                    sh.logits ? logits.get() : nullptr,
                                    sh.groups ? groups.get() : nullptr, ng,
                                    sh.optional ? losses.get() : nullptr, T, N, G);
            }
            r.keep("counts", counts, kExact);
            r.keep("interval", interval, kExact);
            r.keep("sums", sums);
        });
    }
}

[[maybe_unused]] const bool registered = [] {
    register_gemm();
    register_grouped();
    register_expert_ffn();
    register_elementwise();
    register_rmsnorm();
    register_combine();
    register_gate_rows();
    register_cross_entropy();
    register_token_ops();
    register_optimizers();
    register_memory();
    register_routing();
    register_window();
    return true;
}();

}  // namespace
