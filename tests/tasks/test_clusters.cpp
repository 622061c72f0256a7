// The clusters task: determinism (seed, thread count), the mixture's frequencies, balanced
// per-cluster teachers, label noise, the held-out set, the epoch permutation of the train set.
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "backend/rng.h"
#include "config/config.h"
#include "tasks/clusters.h"
#include "tasks/task.h"

using namespace moe;

namespace {

Config small_config() {
    Config cfg;
    cfg.seed = 7;
    cfg.data.train_size = 2048;
    cfg.data.eval_size = 512;
    cfg.data.clusters.dim = 8;
    cfg.data.clusters.num_clusters = 6;
    cfg.data.clusters.num_classes = 4;
    return cfg;
}

bool same(const Batch& a, const Batch& b) {
    return a.B == b.B && a.dim == b.dim && a.x == b.x && a.y == b.y && a.group == b.group;
}

// Restores the OpenMP thread count when a test ends, even when it fails.
struct ThreadCount {
    int saved = omp_get_max_threads();
    ~ThreadCount() { omp_set_num_threads(saved); }
};

}  // namespace

TEST_SUITE("tasks") {
    TEST_CASE("task_create builds the clusters task from the config") {
        const Config cfg = small_config();
        const auto task = task_create(cfg);
        REQUIRE(task != nullptr);
        CHECK(task->name() == "clusters");
        CHECK(task->input_dim() == 8);
        CHECK(task->num_classes() == 4);
        CHECK(task->num_groups() == 6);
        CHECK(task->eval_set().B == 512);
        CHECK(task->eval_set().dim == 8);
        CHECK(task->eval_set().x.size() == 512u * 8u);
    }

    TEST_CASE("the same seed gives the same data, a different seed different data") {
        for (int64_t train_size : {int64_t{2048}, int64_t{0}}) {
            CAPTURE(train_size);
            Config cfg = small_config();
            cfg.data.train_size = train_size;
            const ClustersTask a(cfg), b(cfg);
            cfg.seed = 8;
            const ClustersTask c(cfg);
            Batch ba, bb, bc;
            for (int64_t step : {0, 1, 17, 1000}) {
                a.train_batch(step, 64, ba);
                b.train_batch(step, 64, bb);
                c.train_batch(step, 64, bc);
                CHECK(same(ba, bb));
                CHECK(ba.x != bc.x);
            }
            CHECK(same(a.eval_set(), b.eval_set()));
            CHECK(a.eval_set().x != c.eval_set().x);
            // A batch depends on its step only: asking again, out of order, gives it back.
            a.train_batch(17, 64, ba);
            Batch again;
            a.train_batch(1000, 64, again);
            a.train_batch(17, 64, again);
            CHECK(same(ba, again));
            // Consecutive steps differ.
            a.train_batch(18, 64, bb);
            CHECK(ba.x != bb.x);
        }
    }

    TEST_CASE("the data do not depend on the thread count") {
        ThreadCount restore;
        Config cfg = small_config();
        cfg.data.train_size = 8192;  // large enough for the parallel path
        cfg.data.eval_size = 8192;
        omp_set_num_threads(1);
        const ClustersTask one(cfg);
        Batch b1;
        one.train_batch(3, 4096, b1);
        omp_set_num_threads(2);
        const ClustersTask two(cfg);
        Batch b2;
        two.train_batch(3, 4096, b2);
        CHECK(same(one.train_set(), two.train_set()));
        CHECK(same(one.eval_set(), two.eval_set()));
        CHECK(same(b1, b2));

        cfg.data.train_size = 0;  // fresh examples, generated in parallel per batch
        omp_set_num_threads(1);
        const ClustersTask fresh1(cfg);
        fresh1.train_batch(5, 8192, b1);
        omp_set_num_threads(2);
        const ClustersTask fresh2(cfg);
        fresh2.train_batch(5, 8192, b2);
        CHECK(same(b1, b2));
    }

    TEST_CASE("labels, groups and inputs are in range and the clusters sit at their centres") {
        Config cfg = small_config();
        cfg.data.eval_size = 6000;
        const ClustersTask task(cfg);
        const Batch& e = task.eval_set();
        const int D = cfg.data.clusters.dim, C = cfg.data.clusters.num_clusters;
        std::vector<double> sum(static_cast<size_t>(C * D), 0.0);
        std::vector<int> count(static_cast<size_t>(C), 0);
        int bad = 0;
        for (int i = 0; i < e.B; ++i) {
            if (e.group[i] < 0 || e.group[i] >= C || e.y[i] < 0 ||
                e.y[i] >= cfg.data.clusters.num_classes) {
                ++bad;
                continue;
            }
            ++count[e.group[i]];
            for (int j = 0; j < D; ++j) {
                bad += !std::isfinite(e.row(i)[j]);
                sum[e.group[i] * D + j] += e.row(i)[j];
            }
        }
        REQUIRE(bad == 0);
        // Mean of ~1000 examples with sd 0.35 per coordinate: sd of the mean 0.011.
        for (int c = 0; c < C; ++c)
            for (int j = 0; j < D; ++j)
                CHECK(std::abs(sum[c * D + j] / count[c] - task.centre(c)[j]) < 0.06);
    }

    TEST_CASE("cluster frequencies follow Zipf(imbalance)") {
        for (double imbalance : {0.0, 1.0, 2.0}) {
            CAPTURE(imbalance);
            Config cfg = small_config();
            cfg.data.train_size = 0;
            cfg.data.eval_size = 0;
            cfg.data.clusters.num_clusters = 8;
            cfg.data.clusters.imbalance = imbalance;
            const ClustersTask task(cfg);
            double norm = 0;
            for (int c = 0; c < 8; ++c) norm += std::pow(c + 1.0, -imbalance);
            for (int c = 0; c < 8; ++c)
                CHECK(task.cluster_probabilities()[c] ==
                      doctest::Approx(std::pow(c + 1.0, -imbalance) / norm));

            constexpr int n = 100000;
            Batch b;
            task.train_batch(0, n, b);
            std::vector<int> count(8, 0);
            for (int g : b.group) ++count[g];
            for (int c = 0; c < 8; ++c) {
                const double p = std::pow(c + 1.0, -imbalance) / norm;
                const double sd = std::sqrt(p * (1 - p) / n);
                CHECK(std::abs(count[c] / double(n) - p) < 5 * sd);
            }
        }
    }

    TEST_CASE("every cluster's teacher uses all classes about equally") {
        for (Teacher teacher : {Teacher::mlp, Teacher::linear}) {
            CAPTURE(static_cast<int>(teacher));
            Config cfg;  // defaults: dim 32, 16 clusters, 8 classes
            cfg.data.train_size = 0;
            cfg.data.eval_size = 32000;
            cfg.data.clusters.teacher = teacher;
            const ClustersTask task(cfg);
            const Batch& e = task.eval_set();
            const int C = 16, K = 8;
            std::vector<int> count(static_cast<size_t>(C * K), 0), total(static_cast<size_t>(C), 0);
            for (int i = 0; i < e.B; ++i) ++count[e.group[i] * K + e.y[i]], ++total[e.group[i]];
            for (int c = 0; c < C; ++c) {
                CAPTURE(c);
                const int most =
                    *std::max_element(count.begin() + c * K, count.begin() + (c + 1) * K);
                const int least =
                    *std::min_element(count.begin() + c * K, count.begin() + (c + 1) * K);
                // Calibrated to 1/8 = 12.5% each; ~2000 examples per cluster.
                CHECK(most < 0.6 * total[c]);
                CHECK(most < 0.18 * total[c]);
                CHECK(least > 0.08 * total[c]);
            }
        }
    }

    TEST_CASE("each cluster has its own decision function") {
        Config cfg;
        cfg.data.train_size = 0;
        cfg.data.eval_size = 0;
        const ClustersTask task(cfg);
        const Rng r{99, kStreamEval, 0};
        constexpr int n = 4000;
        int agree = 0;
        std::vector<double> z(32);
        for (int s = 0; s < n; ++s) {
            for (int j = 0; j < 32; ++j) z[j] = r.normal_double(s, j);
            agree += task.teacher_label(0, z.data()) == task.teacher_label(1, z.data());
        }
        // Unrelated balanced teachers agree about 1/8 of the time.
        CHECK(agree / double(n) < 0.25);
    }

    TEST_CASE("label noise replaces labels at the configured rate and touches nothing else") {
        Config cfg = small_config();
        cfg.data.eval_size = 20000;
        const ClustersTask clean(cfg);
        cfg.data.clusters.label_noise = 0.3;
        const ClustersTask noisy(cfg);
        const Batch& a = clean.eval_set();
        const Batch& b = noisy.eval_set();
        CHECK(a.x == b.x);
        CHECK(a.group == b.group);
        int changed = 0;
        for (int i = 0; i < a.B; ++i) changed += a.y[i] != b.y[i];
        // A replaced label is uniform over K = 4 classes, so it changes with probability 0.3 * 3/4.
        const double p = 0.3 * 3.0 / 4.0, sd = std::sqrt(p * (1 - p) / a.B);
        CHECK(std::abs(changed / double(a.B) - p) < 5 * sd);
    }

    TEST_CASE("the eval set is drawn apart from the training data") {
        const Config cfg = small_config();
        const ClustersTask task(cfg);
        std::set<std::vector<float>> train_rows;
        const Batch& t = task.train_set();
        for (int i = 0; i < t.B; ++i) train_rows.emplace(t.row(i), t.row(i) + t.dim);
        const Batch& e = task.eval_set();
        int shared = 0;
        for (int i = 0; i < e.B; ++i)
            shared += train_rows.count(std::vector<float>(e.row(i), e.row(i) + e.dim)) > 0;
        CHECK(shared == 0);
        CHECK(e.x != std::vector<float>(t.x.begin(), t.x.begin() + static_cast<long>(e.x.size())));
    }

    TEST_CASE(
        "a fixed train set is walked in epochs: each example once per epoch, fresh order each "
        "epoch") {
        Config cfg = small_config();
        cfg.data.train_size = 1000;  // not a power of 4: the permutation cycle-walks
        const ClustersTask task(cfg);
        for (int batch : {100, 300, 1000, 7}) {
            CAPTURE(batch);
            const int64_t per_epoch = 1000;
            std::vector<int64_t> epoch0, epoch1;
            for (int64_t q = 0; q < 2 * per_epoch; ++q)
                (q < per_epoch ? epoch0 : epoch1)
                    .push_back(task.train_index(q / batch, batch, static_cast<int>(q % batch)));
            CHECK(epoch0 != epoch1);
            std::vector<int64_t> identity(1000);
            for (int i = 0; i < 1000; ++i) identity[i] = i;
            CHECK(epoch0 != identity);
            std::sort(epoch0.begin(), epoch0.end());
            std::sort(epoch1.begin(), epoch1.end());
            CHECK(epoch0 == identity);
            CHECK(epoch1 == identity);
        }
        // The batch rows are the train-set rows the permutation names.
        Batch b;
        task.train_batch(4, 100, b);
        for (int i = 0; i < 100; ++i) {
            const int64_t e = task.train_index(4, 100, i);
            CHECK(std::memcmp(b.row(i), task.train_set().row(static_cast<int>(e)),
                              sizeof(float) * 8) == 0);
            CHECK(b.y[i] == task.train_set().y[e]);
            CHECK(b.group[i] == task.train_set().group[e]);
        }
    }

    TEST_CASE("fresh examples (train_size = 0) continue the train set's stream") {
        Config cfg = small_config();
        const ClustersTask fixed(cfg);
        cfg.data.train_size = 0;
        const ClustersTask fresh(cfg);
        CHECK(fresh.train_set().B == 0);
        Batch b;
        fresh.train_batch(3, 64, b);  // examples 192 .. 255
        for (int i = 0; i < 64; ++i) {
            CHECK(std::memcmp(b.row(i), fixed.train_set().row(192 + i), sizeof(float) * 8) == 0);
            CHECK(b.y[i] == fixed.train_set().y[192 + i]);
        }
    }

    TEST_CASE("train_batch reuses the batch's storage") {
        for (int64_t train_size : {int64_t{2048}, int64_t{0}}) {
            Config cfg = small_config();
            cfg.data.train_size = train_size;
            const ClustersTask task(cfg);
            Batch b;
            task.train_batch(0, 128, b);
            const float* x = b.x.data();
            const int* y = b.y.data();
            const int* g = b.group.data();
            for (int64_t step = 1; step < 5; ++step) task.train_batch(step, 128, b);
            task.train_batch(5, 64, b);  // a smaller batch fits too
            CHECK(b.x.data() == x);
            CHECK(b.y.data() == y);
            CHECK(b.group.data() == g);
            CHECK(b.B == 64);
            CHECK(b.x.size() == 64u * 8u);
        }
    }

}  // TEST_SUITE("tasks")
