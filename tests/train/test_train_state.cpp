// Training state has one home (train/train_state.h): every stateful part saves itself and loads
// itself back (a round trip gives the same bytes and the same behaviour afterwards), a TrainState
// loaded mid-run continues bit-identically to one that never stopped, and a wrong or short
// stream is refused.
#include <doctest/doctest.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "config/config_load.h"
#include "support/process.h"
#include "tasks/task.h"
#include "train/train_state.h"
#include "train/train_step.h"

using namespace moe;
using moe::test::source_path;

namespace {

template <class T>
std::string bytes_of(const T& part) {
    std::ostringstream os;
    BinaryWriter w(os);
    part.save(w);
    return os.str();
}

template <class T>
void load_from(T& part, const std::string& bytes) {
    std::istringstream is(bytes);
    BinaryReader r(is);
    part.load(r);
}

// A tiny run that exercises every part: top-2 with capacity drops, noise, bias balancing and
// a shared expert.
Config tiny_config() {
    return config_load_file(
        source_path("configs/quickstart.yaml"),
        {"threads=1", "data.train_size=1024", "data.eval_size=256", "train.batch_size=64",
         "model.d_model=16", "experts.count=4", "experts.d_ff=8", "experts.shared=1",
         "router.noise=0.3", "capacity.factor=0.75", "balance.bias_rate=0.01", "train.steps=40",
         "train.log_every=5", "train.eval_every=20"});
}

struct Trainer {
    Config cfg = tiny_config();
    std::unique_ptr<Backend> be = backend_create(Device::cpu, 1);
    std::unique_ptr<Task> task = task_create(cfg);
    TrainState st{cfg, task->input_dim(), task->num_classes(), task->num_groups()};
    Batch batch;

    // Steps st.step+1 .. st.step+n, with the statistics a run keeps.
    void steps(int n) {
        for (int i = 0; i < n; ++i) {
            const int64_t s = st.step + 1;
            const StepOutcome so = train_step(*be, cfg, *task, st.model, st.opt, batch, s, false);
            REQUIRE(so.finite);
            std::vector<MoeLayer*> layers = st.model.moe_layers();
            for (size_t l = 0; l < layers.size(); ++l) {
                const MoeLayer& m = *layers[l];
                st.stats.train_windows[l].observe(
                    m.plan(), m.router_state().probs.data(), m.logits(), batch.group.data(),
                    task->num_groups(), m.aux_loss(), m.z_loss_value());
                st.stats.collapse.count(int(l), m.plan().routed);
            }
            st.stats.metrics.add(so.loss, cfg.train.batch_size);
            st.step = s;
        }
    }
};

}  // namespace

TEST_SUITE("train") {
    TEST_CASE("TrainState: a state loaded mid-run continues bit-identically") {
        Trainer a, b;
        a.steps(7);
        const std::string saved = bytes_of(a.st);
        load_from(b.st, saved);
        CHECK(b.st.step == 7);
        CHECK(bytes_of(b.st) == saved);  // the round trip is exact
        a.steps(6);
        b.steps(6);
        CHECK(a.st.model.params().data().host() == b.st.model.params().data().host());
        CHECK(bytes_of(a.st) == bytes_of(b.st));  // moments, bias, statistics too
        // and the comparison can fail: a state that missed a step differs
        Trainer c;
        c.steps(12);
        CHECK(bytes_of(c.st) != bytes_of(a.st));
    }

    TEST_CASE("TrainState: each part round-trips on its own") {
        Trainer a;
        a.steps(9);
        Trainer fresh;
        const std::string model = bytes_of(a.st.model);
        CHECK(model != bytes_of(fresh.st.model));
        load_from(fresh.st.model, model);
        CHECK(bytes_of(fresh.st.model) == model);
        const std::vector<MoeLayer*> la = a.st.model.moe_layers(), lf = fresh.st.model.moe_layers();
        for (size_t l = 0; l < la.size(); ++l) {
            CHECK(bytes_of(*lf[l]) == bytes_of(*la[l]));
            const int N = la[l]->experts();
            CHECK(std::vector<float>(lf[l]->bias(), lf[l]->bias() + N) ==
                  std::vector<float>(la[l]->bias(), la[l]->bias() + N));
        }
        const std::string opt = bytes_of(a.st.opt);
        load_from(fresh.st.opt, opt);
        CHECK(bytes_of(fresh.st.opt) == opt);

        // Statistics: the windows finish to the same values, the trackers behave the same next.
        StatsState& sa = a.st.stats;
        StatsState& sf = fresh.st.stats;
        load_from(sf, bytes_of(sa));
        CHECK(bytes_of(sf) == bytes_of(sa));
        for (size_t l = 0; l < sa.train_windows.size(); ++l) {
            const LayerStats x = sa.train_windows[l].finish(), y = sf.train_windows[l].finish();
            REQUIRE(x.num_tokens > 0);
            const auto vx = layer_stat_values(x), vy = layer_stat_values(y);
            for (size_t i = 0; i < vx.size(); ++i)
                CHECK((vx[i] == vy[i] || (std::isnan(vx[i]) && std::isnan(vy[i]))));
            CHECK(x.group_expert == y.group_expert);
        }
        std::vector<CollapseEvent> ea, ef;
        sa.collapse.end_interval(10, 0, ea);
        sf.collapse.end_interval(10, 0, ef);
        CHECK(bytes_of(sa.collapse) == bytes_of(sf.collapse));
        CHECK(sa.metrics.loss == sf.metrics.loss);
        CHECK(sa.metrics.steps == 9);
        CHECK(sf.summary.csv() == sa.summary.csv());
    }

    TEST_CASE("FlipTracker and CollapseTracker: loaded state gives the same next answers") {
        FlipTracker f;
        f.update(std::vector<int>{0, 1, 2, 3});
        FlipTracker g;
        load_from(g, bytes_of(f));
        const std::vector<int> next = {0, 1, 3, 3};
        CHECK(g.update(next) == 0.25);
        CHECK(f.update(next) == 0.25);

        CollapseTracker c(1, 4);
        std::vector<CollapseEvent> ev;
        c.count(0, std::vector<int>{10, 10, 0, 10});
        c.end_interval(5, 0, ev);  // expert 2 dies at 5
        REQUIRE(ev.size() == 1);
        c.count(0, std::vector<int>{1, 1, 1, 1});  // an open interval: saved too
        CollapseTracker d(1, 4);
        load_from(d, bytes_of(c));
        CHECK(d.is_dead(0, 2));
        CHECK(d.first_dead_step() == std::optional<int64_t>(5));
        std::vector<CollapseEvent> e1, e2;
        c.end_interval(10, 0, e1);
        d.end_interval(10, 0, e2);
        REQUIRE(e1.size() == 1);  // revived with the interval's counts
        REQUIRE(e2.size() == 1);
        CHECK(e2[0].kind == CollapseKind::revived);
    }

    TEST_CASE("TrainState: a wrong or short stream is refused and never read") {
        Trainer a, b;
        a.steps(2);
        const std::string saved = bytes_of(a.st);
        CHECK_THROWS_AS(load_from(b.st, saved.substr(0, saved.size() / 2)), std::runtime_error);
        std::string wrong = saved;
        wrong[0] = 'X';  // the first tag
        CHECK_THROWS_AS(load_from(b.st, wrong), std::runtime_error);
        // a state of another model size is refused
        Trainer other;
        other.cfg.experts.count = 8;
        other.task = task_create(other.cfg);
        TrainState bigger(other.cfg, other.task->input_dim(), other.task->num_classes(),
                          other.task->num_groups());
        CHECK_THROWS_AS(load_from(bigger, saved), std::runtime_error);
    }

}  // TEST_SUITE
