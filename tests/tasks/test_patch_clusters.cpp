// The patch_clusters task (Chen et al. 2022, Definition 3.1): the hidden vectors, each example's
// patches against the draws that made it, the amplitude ranges, the balance and determinism.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "config/config.h"
#include "tasks/patch_clusters.h"
#include "tasks/task.h"

namespace {

using moe::PatchClustersTask;

struct ThreadCount {
    int saved = omp_get_max_threads();
    ~ThreadCount() { omp_set_num_threads(saved); }
};

moe::PatchClustersConfig small_config() {
    moe::PatchClustersConfig pc;  // the paper's K = 4, P = 4, d = 50
    return pc;
}

// The patch at `pos` of row i is exactly float(scale * (amp * v[j])) for every j.
bool patch_is(const moe::Batch& b, int i, int pos, int d, double scale, double amp,
              const double* v) {
    const float* x = b.row(i) + static_cast<size_t>(pos) * d;
    for (int j = 0; j < d; ++j)
        if (x[j] != static_cast<float>(scale * (amp * v[j]))) return false;
    return true;
}

}  // namespace

TEST_SUITE("tasks") {
    TEST_CASE("patch_clusters: features and centres are orthonormal") {
        const PatchClustersTask t(small_config(), 0, 16, 7);
        const int K = 4, d = 50;
        std::vector<const double*> vecs;
        for (int k = 0; k < K; ++k) vecs.push_back(t.feature(k));
        for (int k = 0; k < K; ++k) vecs.push_back(t.centre(k));
        for (size_t a = 0; a < vecs.size(); ++a)
            for (size_t b = 0; b < vecs.size(); ++b) {
                double dot = 0;
                for (int j = 0; j < d; ++j) dot += vecs[a][j] * vecs[b][j];
                CHECK(dot == doctest::Approx(a == b ? 1.0 : 0.0).epsilon(1e-12).scale(1.0));
            }
        CHECK(t.input_dim() == 200);
        CHECK(t.num_classes() == 2);
        CHECK(t.num_groups() == 4);
    }

    TEST_CASE("patch_clusters: each patch is its role's vector at its drawn amplitude") {
        moe::PatchClustersConfig pc = small_config();
        pc.patches = 6;  // three Gaussian patches
        pc.scale = 10.0;
        const PatchClustersTask t(pc, 64, 256, 11);
        const int d = pc.dim;
        for (int set = 0; set < 2; ++set) {
            const moe::Batch& b = set == 0 ? t.eval_set() : t.train_set();
            for (int i = 0; i < b.B; ++i) {
                const auto ex = set == 0 ? t.eval_example(i) : t.train_example(i);
                CHECK(b.group[size_t(i)] == ex.cluster);
                CHECK(b.y[size_t(i)] == ex.label);
                CHECK(ex.other != ex.cluster);
                std::vector<int> seen(size_t(pc.patches), 0);
                for (int pos = 0; pos < pc.patches; ++pos) {
                    const int role = ex.role[size_t(pos)];
                    ++seen[size_t(role)];
                    if (role == PatchClustersTask::kSignal) {
                        CHECK(
                            patch_is(b, i, pos, d, 10.0, ex.y() * ex.alpha, t.feature(ex.cluster)));
                    } else if (role == PatchClustersTask::kCentre) {
                        CHECK(patch_is(b, i, pos, d, 10.0, ex.beta, t.centre(ex.cluster)));
                    } else if (role == PatchClustersTask::kFeature) {
                        CHECK(patch_is(b, i, pos, d, 10.0, ex.eps * ex.gamma, t.feature(ex.other)));
                    } else {
                        // A Gaussian patch: no multiple of a hidden vector (its projection on
                        // v_k leaves a residual).
                        const float* x = b.row(i) + size_t(pos) * d;
                        double dot = 0, sq = 0;
                        for (int j = 0; j < d; ++j) {
                            dot += x[j] * t.feature(ex.cluster)[j];
                            sq += double(x[j]) * x[j];
                        }
                        CHECK(sq - dot * dot > 1e-3);
                    }
                }
                for (int s : seen) CHECK(s == 1);  // the roles are a permutation
            }
        }
    }

    TEST_CASE("patch_clusters: amplitudes, signs, noise scale and patch order") {
        moe::PatchClustersConfig pc = small_config();
        pc.gamma_max = 2.0;
        pc.sigma_p = 2.0;
        pc.scale = 1.0;
        const PatchClustersTask t(pc, 0, 4000, 3);
        const int d = pc.dim;
        double noise_sq = 0;
        int64_t noise_n = 0;
        int eps_plus = 0;
        std::map<int, int> signal_at;
        for (int i = 0; i < 4000; ++i) {
            const auto ex = t.eval_example(i);
            CHECK(ex.alpha >= 0.5);
            CHECK(ex.alpha <= 2.0);
            CHECK(ex.beta >= 1.0);
            CHECK(ex.beta <= 2.0);
            CHECK(ex.gamma >= 0.5);
            CHECK(ex.gamma <= 2.0);
            CHECK((ex.eps == 1 || ex.eps == -1));
            eps_plus += ex.eps == 1;
            for (int pos = 0; pos < pc.patches; ++pos) {
                if (ex.role[size_t(pos)] == PatchClustersTask::kSignal) ++signal_at[pos];
                if (ex.role[size_t(pos)] < PatchClustersTask::kNoise) continue;
                const float* x = t.eval_set().row(i) + size_t(pos) * d;
                for (int j = 0; j < d; ++j) noise_sq += double(x[j]) * x[j];
                noise_n += d;
            }
        }
        // Gaussian coordinates have variance sigma_p^2 / d = 0.08 (4000 * 50 draws: +-1%).
        CHECK(noise_sq / double(noise_n) == doctest::Approx(0.08).epsilon(0.02));
        CHECK(eps_plus > 1800);
        CHECK(eps_plus < 2200);
        // The signal patch sits at each of the 4 positions about 1000 times.
        for (int pos = 0; pos < 4; ++pos) {
            CHECK(signal_at[pos] > 850);
            CHECK(signal_at[pos] < 1150);
        }
    }

    TEST_CASE("patch_clusters: fixed sets are balanced over clusters and labels") {
        const PatchClustersTask t(small_config(), 800, 808, 5);
        for (int set = 0; set < 2; ++set) {
            const moe::Batch& b = set == 0 ? t.train_set() : t.eval_set();
            std::map<std::pair<int, int>, int> cells;
            for (int i = 0; i < b.B; ++i) ++cells[{b.group[size_t(i)], b.y[size_t(i)]}];
            CHECK(cells.size() == 8);
            // 800 = 8 * 100 exactly; 808 = 8 * 101.
            for (const auto& [cell, n] : cells) CHECK(n == (set == 0 ? 100 : 101));
        }
        // Not balanced in order: the first 16 examples are not 0, 1, .., 7 twice.
        bool ordered = true;
        for (int i = 0; i < 16; ++i)
            ordered =
                ordered && t.train_set().group[size_t(i)] * 2 + t.train_set().y[size_t(i)] == i % 8;
        CHECK_FALSE(ordered);
    }

    TEST_CASE("patch_clusters: same seed same data at 1 and 2 threads and batches by step") {
        ThreadCount keep;
        for (int64_t train_size : {int64_t{0}, int64_t{1000}}) {
            omp_set_num_threads(1);
            const PatchClustersTask a(small_config(), train_size, 700, 9);
            moe::Batch ba, ba2;
            a.train_batch(3, 300, ba);
            omp_set_num_threads(2);
            const PatchClustersTask b(small_config(), train_size, 700, 9);
            moe::Batch bb;
            b.train_batch(3, 300, bb);
            a.train_batch(3, 300, ba2);
            CHECK(a.eval_set().x == b.eval_set().x);
            CHECK(a.eval_set().y == b.eval_set().y);
            CHECK(a.eval_set().group == b.eval_set().group);
            CHECK(ba.x == bb.x);
            CHECK(ba.y == bb.y);
            CHECK(ba.group == bb.group);
            CHECK(ba.x == ba2.x);  // a pure function of the step
            moe::Batch other;
            a.train_batch(4, 300, other);
            CHECK(other.x != ba.x);
            const PatchClustersTask c(small_config(), train_size, 700, 10);
            CHECK(c.eval_set().x != a.eval_set().x);
        }
        // A fixed train set: an epoch visits every example once.
        const PatchClustersTask t(small_config(), 100, 10, 1);
        std::vector<int> count(100, 0);
        for (int i = 0; i < 100; ++i) ++count[size_t(t.train_index(0, 100, i))];
        for (int n : count) CHECK(n == 1);
    }
}
