// The modular task: every (op, a, b) triple once, split by train_fraction with a seeded
// permutation; the encoding of "a OP b =" and the answer c; groups = operations.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "tasks/modular.h"
#include "tasks/task.h"

using namespace moe;

namespace {

ModularConfig config(int p, const char* ops, double fraction) {
    ModularConfig mc;
    mc.p = p;
    mc.ops = ops;
    mc.train_fraction = fraction;
    return mc;
}

}  // namespace

TEST_SUITE("tasks") {
    TEST_CASE("modular splits every defined triple once between train and held out") {
        const ModularTask task(config(7, "add,div,mul,sub", 0.3), 1000, 3);
        CHECK(task.input_dim() == 2 * 7 + 4);
        CHECK(task.num_classes() == 7);
        CHECK(task.num_groups() == 4);
        std::set<std::tuple<int, int, int>> seen;
        for (const auto* part : {&task.train_triples(), &task.held_out_triples()})
            for (const auto& t : *part) {
                CHECK(seen.insert({t.op, t.a, t.b}).second);
                if (t.op == 1) CHECK(t.b != 0);  // div by 0 is not a triple
            }
        const size_t M = 4 * 49 - 7;
        CHECK(seen.size() == M);
        CHECK(task.train_triples().size() == size_t(std::llround(0.3 * double(M))));
        // the eval set: the held-out triples (all of them: eval_size is larger)
        CHECK(task.eval_set().B == int(M - task.train_triples().size()));
        // a different seed, a different split
        const ModularTask other(config(7, "add,div,mul,sub", 0.3), 1000, 4);
        int differ = 0;
        for (size_t i = 0; i < task.train_triples().size(); ++i)
            differ += task.train_triples()[i].a != other.train_triples()[i].a ||
                      task.train_triples()[i].b != other.train_triples()[i].b;
        CHECK(differ > 10);
        // eval_size caps the eval set
        CHECK(ModularTask(config(7, "add", 0.5), 5, 3).eval_set().B == 5);
    }

    TEST_CASE("modular examples encode a OP b and are labelled with the answer") {
        const int p = 11;
        const ModularTask task(config(p, "add,sub,mul,div", 0.5), 10000, 1);
        Batch b;
        task.train_batch(3, 300, b);
        for (const Batch* batch : {static_cast<const Batch*>(&b), &task.eval_set()})
            for (int i = 0; i < batch->B; ++i) {
                const float* x = batch->row(i);
                int a = -1, op = -1, bb = -1, ones = 0;
                for (int j = 0; j < task.input_dim(); ++j) {
                    REQUIRE((x[j] == 0.0f || x[j] == 1.0f));
                    if (x[j] == 0.0f) continue;
                    ++ones;
                    if (j < p)
                        a = j;
                    else if (j < p + 4)
                        op = j - p;
                    else
                        bb = j - p - 4;
                }
                REQUIRE(ones == 3);
                REQUIRE((a >= 0 && op >= 0 && bb >= 0));
                const int c = batch->y[size_t(i)];
                CHECK(batch->group[size_t(i)] == op);
                CHECK(batch->token[size_t(i)] == bb);
                // the answer, checked by its defining property
                if (op == 0) CHECK((a + bb) % p == c);
                if (op == 1) CHECK(((a - bb) % p + p) % p == c);
                if (op == 2) CHECK(a * bb % p == c);
                if (op == 3) CHECK(c * bb % p == a);
            }
        // training examples come from the training triples only
        std::set<std::tuple<int, int, int>> train;
        for (const auto& t : task.train_triples()) train.insert({t.op, t.a, t.b});
        for (int i = 0; i < b.B; ++i) {
            const float* x = b.row(i);
            int a = 0, op = 0, bb = 0;
            for (int j = 0; j < task.input_dim(); ++j)
                if (x[j] == 1.0f)
                    (j < p ? a : j < p + 4 ? op : bb) = j < p ? j : j < p + 4 ? j - p : j - p - 4;
            CHECK(train.count({op, a, bb}) == 1);
        }
        CHECK(task.ideal_loss() == 0.0);
        // the batch of a step is a function of (seed, step)
        Batch again;
        task.train_batch(3, 300, again);
        CHECK(again.x == b.x);
        CHECK(again.y == b.y);
    }

    TEST_CASE("modular in sequence form: a OP b = as four rows, the answer the last label") {
        const int p = 11;
        const ModularTask task(config(p, "add,sub,mul,div", 0.5), 4 * 30 + 2, 1, true);
        const int V = p + 4 + 1, eq = p + 4;
        CHECK(task.vocab() == V);
        CHECK(task.input_dim() == V);
        CHECK(task.num_classes() == V);
        CHECK(task.num_groups() == 4);
        std::set<std::tuple<int, int, int>> train;
        for (const auto& t : task.train_triples()) train.insert({t.op, t.a, t.b});
        Batch b;
        task.train_batch(3, 4 * 50, b);
        REQUIRE(b.B == 200);
        // eval_size counts tokens: floor(122 / 4) = 30 sequences
        REQUIRE(task.eval_set().B == 4 * 30);
        for (const Batch* batch : {static_cast<const Batch*>(&b), &task.eval_set()})
            for (int j = 0; j < batch->B / 4; ++j) {
                const int r0 = 4 * j;
                const int a = batch->token[size_t(r0)], opt = batch->token[size_t(r0) + 1],
                          bb = batch->token[size_t(r0) + 2], op = opt - p;
                REQUIRE((a >= 0 && a < p && op >= 0 && op < 4 && bb >= 0 && bb < p));
                CHECK(batch->token[size_t(r0) + 3] == eq);
                // row i's label is token i + 1; the last one is the answer
                CHECK(batch->y[size_t(r0)] == opt);
                CHECK(batch->y[size_t(r0) + 1] == bb);
                CHECK(batch->y[size_t(r0) + 2] == eq);
                const int c = batch->y[size_t(r0) + 3];
                if (op == 0) CHECK((a + bb) % p == c);
                if (op == 1) CHECK(((a - bb) % p + p) % p == c);
                if (op == 2) CHECK(a * bb % p == c);
                if (op == 3) CHECK(c * bb % p == a);
                for (int i = 0; i < 4; ++i) {
                    const size_t r = size_t(r0 + i);
                    CHECK(batch->group[r] == op);
                    CHECK(batch->sequence[r] == j);
                    CHECK(batch->position[r] == i + 1);
                    const float* x = batch->row(int(r));  // the one-hot of the row's token
                    for (int v = 0; v < V; ++v) CHECK(x[v] == (v == batch->token[r] ? 1.0f : 0.0f));
                }
                if (batch == &b) CHECK(train.count({op, a, bb}) == 1);
            }
        // the eval sequences are the first held-out triples, in order
        for (int j = 0; j < 30; ++j) {
            const auto& t = task.held_out_triples()[size_t(j)];
            CHECK(task.eval_set().token[size_t(4 * j)] == t.a);
            CHECK(task.eval_set().token[size_t(4 * j + 2)] == t.b);
        }
        // the same triples as the window form's batch of the same step and examples
        const ModularTask window(config(p, "add,sub,mul,div", 0.5), 1000, 1);
        Batch w;
        window.train_batch(3, 50, w);
        for (int j = 0; j < 50; ++j) {
            CHECK(w.token[size_t(j)] == b.token[size_t(4 * j + 2)]);
            CHECK(w.y[size_t(j)] == b.y[size_t(4 * j + 3)]);
        }
    }
}
