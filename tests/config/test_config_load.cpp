// Loading: defaults, each type, ranges and choices, overrides, cross-key rules, all errors at
// once, and robustness (missing file, directory, huge and deep documents, random garbage).
#include "config/config_load.h"

#include "config_test_util.h"

#include <cstdint>
#include <filesystem>
#include <fstream>

using namespace moe;
using moe::test::diagnostics_of;
using moe::test::load_error;
using moe::test::load_errors;
namespace fs = std::filesystem;

namespace {
Config load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
    return config_load_string(yaml, "t.yaml", overrides);
}
}  // namespace

TEST_SUITE("config") {
    TEST_CASE("load: an empty config is all defaults") {
        const Config d{};
        CHECK(load("") == d);
        CHECK(load("{}") == d);
        CHECK(load("# only a comment\n\n   \n") == d);
        CHECK(load("---\n") == d);
        CHECK(load("~\n") == d);
        CHECK(load("\xEF\xBB\xBF# a UTF-8 byte order mark is fine\n") == d);
        CHECK(load("router:\ntrain:\n  # nothing here either\n") ==
              d);  // empty sections keep defaults
        CHECK(load("router: {}\n") == d);
    }

    TEST_CASE("load: values of every type") {
        Config c = load(
            "name: run_1.a-b\n"
            "seed: 18446744073709551615\n"
            "threads: 4\n"
            "data:\n"
            "  train_size: 0\n"
            "  clusters:\n"
            "    spread: .5\n"
            "    teacher: linear\n"
            "router:\n"
            "  k: 010\n"  // YAML 1.2: decimal, not octal
            "  normalize: false\n"
            "  noise: 1e-3\n"
            "  score: \"sigmoid\"\n"  // a quoted choice is fine: choices are strings
            "train:\n"
            "  lr: 5.\n"
            "  steps: 3000000000\n"
            "  min_lr: -0.0\n");
        CHECK(c.name == "run_1.a-b");
        CHECK(c.seed == UINT64_MAX);
        CHECK(c.threads == 4);
        CHECK(c.data.train_size == 0);
        CHECK(c.data.clusters.spread == 0.5);
        CHECK(c.data.clusters.teacher == Teacher::linear);
        CHECK(c.router.k == 10);
        CHECK(c.router.normalize == Normalize::no);
        CHECK(c.router.noise == 0.001);
        CHECK(c.router.score == ScoreFn::sigmoid);
        CHECK(c.train.lr == 5.0);
        CHECK(c.train.steps == 3'000'000'000);
        CHECK(c.train.min_lr == 0.0);
        CHECK(load("name: \"123\"\n").name == "123");
        CHECK(load("name: 123\n").name == "123");
        CHECK(load("router: {normalize: true}\n").router.normalize == Normalize::yes);
    }

    TEST_CASE(
        "load: type errors name the key and the line and say what is allowed and what was given") {
        CHECK(load_error("experts:\n  count: sixteen\n") ==
              "t.yaml:2:10: experts.count: expected an integer between 1 and 4096, got 'sixteen'");
        CHECK(load_error("router: {k: 1.5}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got '1.5'");
        CHECK(load_error("router: {k: 1e1}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got '1e1'");
        CHECK(load_error("router: {k: 0x10}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got '0x10'");
        CHECK(load_error("train: {lr: fast}\n") ==
              "t.yaml:1:13: train.lr: expected a number > 0, got 'fast'");
        CHECK(load_error("train: {lr: .inf}\n") ==
              "t.yaml:1:13: train.lr: expected a number > 0, got '.inf'");
        CHECK(load_error("router: {normalize: yes}\n") ==
              "t.yaml:1:21: router.normalize: must be one of: auto, true, false, got 'yes'");
        CHECK(load_error("router: {normalize: 1}\n") ==
              "t.yaml:1:21: router.normalize: must be one of: auto, true, false, got '1'");
        CHECK(load_error("router: {normalize: on}\n") ==
              "t.yaml:1:21: router.normalize: must be one of: auto, true, false, got 'on'");
        CHECK(
            load_error("seed: 1.0\n") ==
            "t.yaml:1:7: seed: expected an integer between 0 and 18446744073709551615, got '1.0'");
        CHECK(load_error("name: [a, b]\n") ==
              "t.yaml:1:7: name: expected a string of 1 to 100 letters, digits, '.', '_' or '-', "
              "not starting with "
              "'.', got a list");
        CHECK(load_error("name: .hidden\n") ==
              "t.yaml:1:7: name: must be 1 to 100 letters, digits, '.', '_' or '-', not starting "
              "with '.', got '.hidden'");
        CHECK(load_error("name: " + std::string(101, 'a') + "\n").find("got 'aaaaaaaa") !=
              std::string::npos);
        CHECK(load_error("router: {score: [softmax]}\n") ==
              "t.yaml:1:17: router.score: expected one of: softmax, sigmoid, got a list");
        // Echoed text stays on one line and is cut short.
        CHECK(load_error("train: {lr: \"a\\nb\"}\n") ==
              "t.yaml:1:13: train.lr: expected a number > 0, got the quoted string \"a\\nb\"");
        std::string long_value = load_error("train: {lr: " + std::string(500, 'x') + "}\n");
        CHECK(long_value.size() < 150);
        CHECK(long_value.find("...'") != std::string::npos);
    }

    TEST_CASE("load: a number its type cannot hold is said to be too large or too close to 0") {
        CHECK(load_error("train: {lr: 1e999}\n") ==
              "t.yaml:1:13: train.lr: must be > 0, got 1e999, which is too large for a number "
              "(the largest is about 1.8e308)");
        CHECK(load_error("", {"train.lr=1e400"}) ==
              "override 'train.lr=1e400': train.lr: must be > 0, got 1e400, which is too large "
              "for a number (the largest is about 1.8e308)");
        CHECK(load_error("router: {noise: -" + std::string(400, '9') + ".5}\n")
                  .find("which is too large for a number") != std::string::npos);
        CHECK(load_error("", {"train.lr=0.1e310"}).find("too large") != std::string::npos);
        CHECK(load_error("", {"train.lr=1e-400"}) ==
              "override 'train.lr=1e-400': train.lr: must be > 0, got 1e-400, which is too close "
              "to 0 for a number (the smallest above 0 is about 4.9e-324)");
        CHECK(load_error("", {"train.lr=0.0001e-321"}).find("too close to 0") != std::string::npos);
        CHECK(load_error("", {"train.lr=1000e-327"}).find("too close to 0") != std::string::npos);
        // The limits themselves, and subnormal numbers, are numbers.
        CHECK(load("", {"train.lr=1.7976931348623157e308"}).train.lr == 1.7976931348623157e308);
        CHECK(load("", {"train.lr=5e-324"}).train.lr > 0);
        CHECK(load("", {"router.noise=0.000e999"}).router.noise == 0.0);  // zero fits any type
        CHECK(load_error("train: {steps: 99999999999999999999}\n") ==
              "t.yaml:1:16: train.steps: must be >= 1, got 99999999999999999999, which is too "
              "large for an integer (the largest is 9223372036854775807)");
        CHECK(load_error("router: {k: -99999999999999999999}\n") ==
              "t.yaml:1:13: router.k: must be between 1 and 64, got -99999999999999999999, which "
              "is too small for an integer (the smallest is -9223372036854775808)");
        CHECK(load_error("seed: 18446744073709551616\n") ==
              "t.yaml:1:7: seed: must be between 0 and 18446744073709551615, got "
              "18446744073709551616, which is too large for an integer (the largest is "
              "18446744073709551615)");
    }

    TEST_CASE("load: a block scalar is described as a block scalar, not as a quoted string") {
        CHECK(load_error("router:\n  k: |\n    3\n") ==
              "t.yaml:2:6: router.k: expected an integer between 1 and 64, got the block scalar "
              "\"3\\n\"");
        CHECK(load_error("train:\n  lr: >-\n    0.5\n") ==
              "t.yaml:2:7: train.lr: expected a number > 0, got the block scalar \"0.5\"");
        CHECK(load_error("router:\n  k: &n |\n    3\n") ==
              "t.yaml:2:6: router.k: expected an integer between 1 and 64, got the block scalar "
              "\"3\\n\"");
        CHECK(load_error("router: |\n  k: 3\n") ==
              "t.yaml:1:9: router: is a section: expected a mapping of its keys (type, k, score, "
              "normalize, noise, noise_kind, scale, jitter, head, init, patch_tied, cosine, topk, "
              "hash, "
              "sinkhorn, hierarchical, "
              "soft_slots), got the "
              "block scalar "
              "\"k: 3\\n\"");
        CHECK(load_error("", {"router.k=|\n  3"}) ==
              "override 'router.k=|\\n  3': router.k: expected an integer between 1 and 64, got "
              "the block scalar \"3\"");
        CHECK(load("name: |-\n  run-1\n").name == "run-1");  // a string may be a block scalar
        // yaml-cpp's marks count from after a byte order mark.
        CHECK(load_error("\xEF\xBB\xBFrouter:\n  k: |\n    3\n") ==
              "t.yaml:2:6: router.k: expected an integer between 1 and 64, got the block scalar "
              "\"3\\n\"");
        CHECK(load_error("\xEF\xBB\xBFrouter:\n  k: \"3\"\n") ==
              "t.yaml:2:6: router.k: expected an integer between 1 and 64, got the quoted string "
              "\"3\"");
        // Quoted strings are still quoted strings, anchored or not.
        CHECK(load_error("router: {k: '3'}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got the quoted string "
              "\"3\"");
        CHECK(load_error("router: {k: &a \"3\"}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got the quoted string "
              "\"3\"");
    }

    TEST_CASE("load: a value has one spelling: a leading '+' and 'True' are refused") {
        CHECK(load_error("router: {k: +3}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got '+3' (write it "
              "without '+': 3)");
        CHECK(load_error("", {"router.k=+3"}) ==
              "override 'router.k=+3': router.k: expected an integer between 1 and 64, got '+3' "
              "(write it without '+': 3)");
        CHECK(load_error("seed: +7\n") ==
              "t.yaml:1:7: seed: expected an integer between 0 and 18446744073709551615, got '+7' "
              "(write it without '+': 7)");
        CHECK(load_error("train: {lr: +0.5}\n") ==
              "t.yaml:1:13: train.lr: expected a number > 0, got '+0.5' (write it without '+': "
              "0.5)");
        CHECK(load_error("train: {lr: +-1}\n") ==
              "t.yaml:1:13: train.lr: expected a number > 0, got '+-1'");
        CHECK(load_error("router: {normalize: True}\n") ==
              "t.yaml:1:21: router.normalize: must be one of: auto, true, false, got 'True' (did "
              "you mean 'true'?)");
        // A sign in the exponent, a minus sign and leading zeros are fine.
        CHECK(load("train: {lr: 1e+0}\n").train.lr == 1.0);
        CHECK(load("router: {k: 007}\n").router.k == 7);
        CHECK(load("router: {noise: -0}\n").router.noise == 0.0);
    }

    TEST_CASE("load: inclusive and exclusive ranges of integers and numbers") {
        CHECK(load("router: {k: 64}\nexperts: {count: 64}\n").router.k == 64);
        CHECK(load_error("router: {k: 65}\n") ==
              "t.yaml:1:13: router.k: must be between 1 and 64, got 65");
        CHECK(load_error("router: {k: -1}\n") ==
              "t.yaml:1:13: router.k: must be between 1 and 64, got -1");
        CHECK(load("threads: 0\n").threads == 0);
        CHECK(load_error("threads: 1025\n") ==
              "t.yaml:1:10: threads: must be between 0 and 1024, got 1025");
        CHECK(load("train: {beta1: 0}\n").train.beta1 == 0.0);
        CHECK(load_error("train: {beta2: 1}\n") ==
              "t.yaml:1:16: train.beta2: must be >= 0 and < 1, got 1");
        CHECK(load_error("train: {lr: 0.0}\n") == "t.yaml:1:13: train.lr: must be > 0, got 0.0");
        CHECK(load_error("router: {noise: -0.1}\n") ==
              "t.yaml:1:17: router.noise: must be >= 0, got -0.1");
        CHECK(load("capacity: {factor: 0}\n").capacity.factor == 0.0);
        CHECK(load("capacity: {factor: 0.01}\n").capacity.factor == 0.01);
        CHECK(load_error("capacity: {factor: 0.005}\n") ==
              "t.yaml:1:20: capacity.factor: must be 0 or between 0.01 and 1024, got 0.005");
        CHECK(load_error("data: {clusters: {num_classes: 1}}\n") ==
              "t.yaml:1:32: data.clusters.num_classes: must be between 2 and 65536, got 1");
        CHECK(load_error("data: {eval_size: 0}\n") ==
              "t.yaml:1:19: data.eval_size: must be between 1 and 1000000000, got 0");
        CHECK(load_error("train: {batch_size: 0}\n") ==
              "t.yaml:1:21: train.batch_size: must be between 1 and 1048576, got 0");
    }

    TEST_CASE("load: choices with suggestions and not-yet-available names") {
        CHECK(load_error("router: {score: sofmax}\n") ==
              "t.yaml:1:17: router.score: must be one of: softmax, sigmoid, got 'sofmax' (did you "
              "mean 'softmax'?)");
        CHECK(load_error("balance: {loss: switch_loss}\n") ==
              "t.yaml:1:17: balance.loss: must be one of: none, switch, gshard, shazeer, sequence, "
              "got "
              "'switch_loss'");
        // a loss that needs sequences, on a task without them
        CHECK(load_error("balance:\n  loss: sequence\n") ==
              "t.yaml:2:9: balance.loss: 'sequence' balances within each sequence; only data.task: "
              "markov has sequences, got data.task = clusters (the default)");
        CHECK(load_error("data: {task: markow}\n") ==
              "t.yaml:1:14: data.task: must be one of: clusters, markov, modular, patch_clusters, "
              "got 'markow' "
              "(did you mean 'markov'?)");
        CHECK(load_error("data: {task: modular, modular: {ops: 'add, sub'}}\n") ==
              "t.yaml:1:38: data.modular.ops: must be a comma-separated list of distinct add, sub, "
              "mul, div, got 'add, sub'");
        // device: cuda is a valid config (whether a GPU is there is the run's check); features
        // still on the host refuse it by name
        CHECK(load_error("device: cuda\nrouter: {head: cosine}\n") ==
              "t.yaml:2:16: router.head: 'cosine' is not built for device: cuda yet (its "
              "normalisation runs on the host); use router.head: linear or device: cpu");
        CHECK(load_error("device: cuda\nrouter: {jitter: 0.01}\n") ==
              "t.yaml:2:18: router.jitter: input jitter (0.01) is not built for device: cuda yet "
              "(it runs on the host); use router.jitter: 0 or device: cpu");
    }

    TEST_CASE("load: unknown and misspelt and duplicate and misplaced keys") {
        CHECK(load_error("router:\n  kk: 3\n") ==
              "t.yaml:2:3: router.kk: unknown key (did you mean 'router.k'?)");
        CHECK(load_error("model: {d_modle: 3}\n") ==
              "t.yaml:1:9: model.d_modle: unknown key (did you mean 'model.d_model'?)");
        CHECK(load_error("optimizer: sgd\n") ==
              "t.yaml:1:1: optimizer: unknown key (did you mean 'train.optimizer'?)");
        CHECK(load_error("data: {clusters: {dims: 3}}\n") ==
              "t.yaml:1:19: data.clusters.dims: unknown key (did you mean 'data.clusters.dim'?)");
        CHECK(load_error("router: {k: 2, k: 3}\n") ==
              "t.yaml:1:16: router.k: duplicate key (first given on line 1)");
        CHECK(load_error("router: {k: {a: 1}}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got a mapping");
        CHECK(load_error("router: 3\n") ==
              "t.yaml:1:9: router: is a section: expected a mapping of its keys (type, k, score, "
              "normalize, noise, noise_kind, scale, jitter, head, init, patch_tied, cosine, topk, "
              "hash, "
              "sinkhorn, hierarchical, "
              "soft_slots), got '3'");
        CHECK(load_error("data:\n  clusters: none\n") ==
              "t.yaml:2:13: data.clusters: is a section: expected a mapping of its keys (dim, "
              "num_clusters, "
              "num_classes, spread, imbalance, teacher, label_noise), got 'none'");
        CHECK(load_error("router: {k: }\n") ==
              "t.yaml:1:10: router.k: expected an integer between 1 and 64, got an empty value");
    }

    TEST_CASE("load: every problem is reported at once in line order") {
        std::vector<std::string> e = load_errors(
            "train:\n  lr: fast\n"
            "experts:\n  count: 0\n"
            "routr:\n  k: 2\n");
        REQUIRE(e.size() == 3);
        CHECK(e[0] == "t.yaml:2:7: train.lr: expected a number > 0, got 'fast'");
        CHECK(e[1] == "t.yaml:4:10: experts.count: must be between 1 and 4096, got 0");
        CHECK(e[2] == "t.yaml:5:1: routr: unknown key (did you mean 'router'?)");

        // The UserError carries structured diagnostics too.
        try {
            load("train:\n  lr: fast\n");
            FAIL("no error");
        } catch (const UserError& err) {
            REQUIRE(err.diagnostics().size() == 1);
            const Diagnostic& d = err.diagnostics()[0];
            CHECK(d.file == "t.yaml");
            CHECK(d.line == 2);
            CHECK(d.column == 7);
            CHECK(d.key == "train.lr");
            CHECK(d.message == "expected a number > 0, got 'fast'");
        }
    }

    TEST_CASE("load: a flood of errors is cut at 100 lines") {
        std::string yaml;
        for (int i = 0; i < 250; ++i) yaml += "unknown_" + std::to_string(i) + ": 1\n";
        std::vector<std::string> e = load_errors(yaml);
        REQUIRE(e.size() == 101);
        CHECK(e[0].rfind("t.yaml:1:1: unknown_0: unknown key", 0) == 0);
        CHECK(e[100] == "t.yaml: 150 more errors not shown");
    }

    TEST_CASE("cross-key rules") {
        CHECK(load_error("experts: {count: 8}\nrouter: {k: 9}\n") ==
              "t.yaml:2:13: router.k: 9 is larger than experts.count (8)");
        CHECK(load_error("router: {k: 20}\n") ==
              "t.yaml:1:13: router.k: 20 is larger than experts.count (16, the default)");
        CHECK(load_error("experts: {count: 1}\n") ==
              "t.yaml:1:18: router.k: 2 (the default) is larger than experts.count (1)");
        CHECK(load("experts: {count: 1}\nrouter: {k: 1}\n").experts.count == 1);
        CHECK(load_error("model: {layers: 2, moe_every: 3}\n") ==
              "t.yaml:1:31: model.moe_every: 3 is larger than model.layers (2), so no block would "
              "have an MoE layer");
        CHECK(load_error("train: {steps: 100, log_every: 200, eval_every: 100}\n") ==
              "t.yaml:1:32: train.log_every: 200 is larger than train.steps (100)");
        CHECK(load_error("train: {steps: 100, eval_every: 101}\n") ==
              "t.yaml:1:33: train.eval_every: 101 is larger than train.steps (100)");
        CHECK(
            load_error("train: {warmup_steps: 3000}\n") ==
            "t.yaml:1:23: train.warmup_steps: 3000 is larger than train.steps (2000, the default)");
        CHECK(load_error("train: {min_lr: 0.01}\n") ==
              "t.yaml:1:17: train.min_lr: 0.01 is larger than train.lr (0.001, the default)");
        CHECK(load_error("balance: {loss: shazeer}\nrouter: {noise: 0}\n") ==
              "t.yaml:1:17: balance.loss: 'shazeer' needs router.noise > 0 or router.topk.noise: "
              "learned (its load estimator divides by the noise std), "
              "got router.noise = 0.0");
        CHECK(load("balance: {loss: shazeer}\nrouter: {noise: 1.0}\n").balance.loss ==
              BalanceLoss::shazeer);
        CHECK(load("train: {steps: 10, log_every: 10, eval_every: 10, warmup_steps: 10}\n")
                  .train.steps == 10);
        CHECK(load_error("balance: {loss: gshard}\nrouter: {type: expert_choice}\n") ==
              "t.yaml:1:17: balance.loss: 'gshard' needs a token-choice router (k slots per "
              "token); expert_choice has none: use switch or none");
        CHECK(load_error("train: {steps: 300}\nbalance: {bias_warmup: 301}\n") ==
              "t.yaml:2:24: balance.bias_warmup: 301 is larger than train.steps (300)");
        CHECK(load_error("experts: {shared_gate: sigmoid}\n") ==
              "t.yaml:1:24: experts.shared_gate: 'sigmoid' gates the shared experts, but "
              "experts.shared = 0 (the default)");
        CHECK(load("experts: {shared: 1, shared_gate: sigmoid}\n").experts.shared_gate ==
              SharedGate::sigmoid);

        // A rule is skipped when a key it reads is already wrong: one mistake, one line.
        std::vector<std::string> e = load_errors("experts: {count: 8}\nrouter: {k: 100}\n");
        REQUIRE(e.size() == 1);
        CHECK(e[0] == "t.yaml:2:13: router.k: must be between 1 and 64, got 100");
        e = load_errors("experts: {count: zero}\n");
        REQUIRE(e.size() == 1);
    }

    TEST_CASE("load: several auxiliary losses, each given once") {
        // balance.loss with balance.alpha, plus a mapping of further losses and coefficients
        const Config c = load(
            "balance:\n  loss: switch\n  losses: {gshard: 0.02, shazeer: 0.001}\n"
            "router: {noise: 1.0}\n");
        CHECK(c.balance.loss == BalanceLoss::switch_loss);
        CHECK(c.balance.alpha == 0.01);
        CHECK(c.balance.losses.switch_loss == 0.0);
        CHECK(c.balance.losses.gshard == 0.02);
        CHECK(c.balance.losses.shazeer == 0.001);
        // the mapping alone: balance.loss none
        CHECK(load("balance: {loss: none, losses: {switch: 0.01}}\n").balance.losses.switch_loss ==
              0.01);
        // a loss given twice (balance.loss is switch by default): one line, at the mapping's key
        CHECK(load_error("balance:\n  losses:\n    switch: 0.01\n") ==
              "t.yaml:3:13: balance.losses.switch: 'switch' is already balance.loss (switch, the "
              "default), weighted by balance.alpha: give each loss once (to give every loss in "
              "balance.losses, set balance.loss: none)");
        CHECK(load_error("balance: {loss: none, losses: {shazeer: 0.1}}\n") ==
              "t.yaml:1:41: balance.losses.shazeer: the shazeer loss needs router.noise > 0 (its "
              "load estimator divides by the noise std), got router.noise = 0.0 (the default)");
        CHECK(load_error("balance: {loss: none, losses: {gshard: 0.1}}\n"
                         "router: {type: expert_choice}\n") ==
              "t.yaml:1:40: balance.losses.gshard: the gshard loss counts each token's first "
              "choice; expert_choice has none");
        CHECK(load_error("balance: {losses: {swich: 0.1}}\n") ==
              "t.yaml:1:20: balance.losses.swich: unknown key (did you mean "
              "'balance.losses.switch'?)");
    }

    TEST_CASE("overrides") {
        SUBCASE("a scalar sets the key and replaces the file's value") {
            Config c = load("router: {k: 4}\ntrain: {lr: 0.5}\n",
                            {"router.k=3", "train.lr=1e-3", "name=sweep-1"});
            CHECK(c.router.k == 3);
            CHECK(c.train.lr == 0.001);
            CHECK(c.name == "sweep-1");
        }
        SUBCASE("the last override of a key wins") {
            CHECK(load("", {"router.k=3", "router.k=1"}).router.k == 1);
        }
        SUBCASE("choices, and spaces inside a value") {
            Config c = load("", {"router.normalize=false", "router.score=sigmoid",
                                 "balance.loss=none", "router={k: 1,  noise: 0.5}"});
            CHECK(c.router.normalize == Normalize::no);
            CHECK(c.router.score == ScoreFn::sigmoid);
            CHECK(c.balance.loss == BalanceLoss::none);
            CHECK(c.router.noise == 0.5);
        }
        SUBCASE("a space around '=' or at an end is refused, not trimmed") {
            CHECK(load_error("", {"router.k =3"}) ==
                  "override 'router.k =3': router.k: a space around '=' or at an end of "
                  "KEY=VALUE; write 'router.k=3'");
            CHECK(load_error("", {" router.score=sigmoid"}) ==
                  "override ' router.score=sigmoid': router.score: a space around '=' or at an "
                  "end of KEY=VALUE; write 'router.score=sigmoid'");
            CHECK(load_error("", {"balance.loss= none"}) ==
                  "override 'balance.loss= none': balance.loss: a space around '=' or at an end "
                  "of KEY=VALUE; write 'balance.loss=none'");
            CHECK(load_error("", {"train.lr=0.1 "}) ==
                  "override 'train.lr=0.1 ': train.lr: a space around '=' or at an end of "
                  "KEY=VALUE; write 'train.lr=0.1'");
            CHECK(load_error("", {"train.lr=0.1\n"}) ==
                  "override 'train.lr=0.1\\n': train.lr: a space around '=' or at an end of "
                  "KEY=VALUE; write 'train.lr=0.1'");
            // The key is marked bad: no cross-key rule reports on its old value as well.
            CHECK(
                load_errors("experts: {count: 4}\nrouter: {k: 4}\n", {"experts.count =2"}).size() ==
                1);
            // An unknown key is said first.
            CHECK(load_error("", {"router.kk =3"}) ==
                  "override 'router.kk =3': router.kk: unknown key (did you mean 'router.k'?)");
            CHECK(load_error("", {" =3"}) == "override ' =3': expected KEY=VALUE");
        }
        SUBCASE("a whole section as a flow mapping") {
            Config c = load("", {"router={k: 1, score: sigmoid}"});
            CHECK(c.router.k == 1);
            CHECK(c.router.score == ScoreFn::sigmoid);
            CHECK(load_error("", {"router={k: 1, kk: 2}"}) ==
                  "override 'router={k: 1, kk: 2}': router.kk: unknown key (did you mean "
                  "'router.k'?)");
        }
        SUBCASE("errors name the override and have no line") {
            CHECK(load_error("", {"train.lr=fast"}) ==
                  "override 'train.lr=fast': train.lr: expected a number > 0, got 'fast'");
            CHECK(load_error("", {"router.k=[1, 2]"}) ==
                  "override 'router.k=[1, 2]': router.k: expected an integer between 1 and 64, got "
                  "a list");
            CHECK(load_error("", {"router.kk=3"}) ==
                  "override 'router.kk=3': router.kk: unknown key (did you mean 'router.k'?)");
            CHECK(load_error("", {"foo"}) == "override 'foo': expected KEY=VALUE");
            CHECK(load_error("", {"=3"}) == "override '=3': expected KEY=VALUE");
            CHECK(load_error("", {"train.lr="}) ==
                  "override 'train.lr=': train.lr: expected a number > 0, got an empty value");
            CHECK(load_error("", {"router=topk"}) ==
                  "override 'router=topk': router: is a section: expected a mapping of its keys "
                  "(type, k, score, "
                  "normalize, noise, noise_kind, scale, jitter, head, init, patch_tied, cosine, "
                  "topk, hash, "
                  "sinkhorn, "
                  "hierarchical, soft_slots), got "
                  "'topk'");
            CHECK(load_error("", {"router="}) ==
                  "override 'router=': router: is a section: expected a mapping of its keys (type, "
                  "k, score, "
                  "normalize, noise, noise_kind, scale, jitter, head, init, patch_tied, cosine, "
                  "topk, hash, "
                  "sinkhorn, "
                  "hierarchical, soft_slots), got "
                  "an empty value");
            CHECK(
                load_error("", {"train.lr=[1"})
                    .rfind(
                        "override 'train.lr=[1': train.lr: cannot read the value: not valid YAML: ",
                        0) == 0);
            CHECK(load_error("", {"router.k=" + std::string(1000, '[')}) ==
                  "override 'router.k=" + std::string(91, '[') +
                      "...': router.k: cannot read the value: nesting is "
                      "deeper than 64 levels");
            CHECK(load_error("", {"router.k=" + std::string(70000, '1')})
                      .find("the value is too long") != std::string::npos);
            try {
                load("", {"train.lr=fast"});
            } catch (const UserError& e) {
                CHECK(e.diagnostics()[0].line == 0);
                CHECK(e.diagnostics()[0].key == "train.lr");
            }
        }
        SUBCASE("a valid override does not hide the file's errors, and they come first") {
            std::vector<std::string> e =
                load_errors("router: {score: bad}\n", {"router.k=0", "router.score=softmax"});
            REQUIRE(e.size() == 2);
            CHECK(e[0] == "t.yaml:1:17: router.score: must be one of: softmax, sigmoid, got 'bad'");
            CHECK(e[1] == "override 'router.k=0': router.k: must be between 1 and 64, got 0");
        }
        SUBCASE("cross-key rules see the overridden values") {
            CHECK(load_error("experts: {count: 8}\n", {"router.k=9"}) ==
                  "override 'router.k=9': router.k: 9 is larger than experts.count (8, at "
                  "t.yaml:1:18)");
            CHECK(load("router: {k: 9}\n", {"experts.count=9"}).router.k == 9);
        }
        SUBCASE("a rule an override breaks names the override and the other key's line") {
            const std::string file = "train:\n  steps: 600\n  log_every: 10\n  eval_every: 100\n";
            // No interval is scaled down: the override is reported, with the fix.
            CHECK(load_errors(file, {"train.steps=20"}) ==
                  std::vector<std::string>{
                      "override 'train.steps=20': train.eval_every: 100 (at t.yaml:4:15) is "
                      "larger than train.steps (20); to keep this override, also override "
                      "train.eval_every"});
            CHECK(load_errors(file, {"train.steps=5"}) ==
                  std::vector<std::string>{
                      "override 'train.steps=5': train.log_every: 10 (at t.yaml:3:14) is larger "
                      "than train.steps (5); to keep this override, also override "
                      "train.log_every",
                      "override 'train.steps=5': train.eval_every: 100 (at t.yaml:4:15) is larger "
                      "than train.steps (5); to keep this override, also override "
                      "train.eval_every"});
            CHECK(load(file, {"train.steps=20", "train.eval_every=20"}).train.eval_every == 20);
            // Two overrides: the rule's own key's override, naming the other one.
            CHECK(load_error(file, {"train.steps=20", "train.eval_every=50"}) ==
                  "override 'train.eval_every=50': train.eval_every: 50 is larger than "
                  "train.steps (20, from override 'train.steps=20')");
            // A component's rule goes through the same mechanism.
            CHECK(load_error("balance: {loss: shazeer}\nrouter: {noise: 1.0}\n",
                             {"router.noise=0"}) ==
                  "override 'router.noise=0': balance.loss: 'shazeer' needs router.noise > 0 or "
                  "router.topk.noise: learned (its load estimator divides by the noise std), got "
                  "router.noise = 0.0; to keep this "
                  "override, also override balance.loss");
            // Keys of one file need no place: the diagnostic is at one of its lines.
            CHECK(load_error(file + "  warmup_steps: 601\n") ==
                  "t.yaml:5:17: train.warmup_steps: 601 is larger than train.steps (600)");
        }
        SUBCASE("config_apply_overrides on a loaded config") {
            Config base = load("router: {k: 4}\n");
            Config c = config_apply_overrides(
                base, {"router.k=2", "train.steps=10", "train.log_every=5", "train.eval_every=5"});
            CHECK(c.router.k == 2);
            CHECK(c.train.steps == 10);
            CHECK(diagnostics_of([&] { config_apply_overrides(base, {"train.steps=10"}); }) ==
                  std::vector<std::string>{
                      "override 'train.steps=10': train.eval_every: 200 (the default) is larger "
                      "than train.steps (10); to keep this override, also override "
                      "train.eval_every"});
        }
    }

    TEST_CASE("config_validate checks a config built in code") {
        Config c;
        CHECK_NOTHROW(config_validate(c));
        c.router.k = 0;
        c.name = "a b";
        c.train.lr = -1;
        c.device = Device::cuda;
        c.router.head = RouterHeadKind::cosine;
        std::vector<std::string> e = diagnostics_of([&] { config_validate(c, "built"); });
        REQUIRE(e.size() == 4);
        CHECK(e[0] ==
              "built: name: must be 1 to 100 letters, digits, '.', '_' or '-', not starting with "
              "'.', got 'a b'");
        CHECK(e[1] == "built: router.k: must be between 1 and 64, got 0");
        CHECK(e[2] == "built: train.lr: must be > 0, got -1.0");
        CHECK(e[3] ==
              "built: router.head: 'cosine' is not built for device: cuda yet (its normalisation "
              "runs on the host); use router.head: linear or device: cpu");
        Config d;
        d.experts.count = 1;
        CHECK(
            diagnostics_of([&] { config_validate(d); }) ==
            std::vector<std::string>{
                "config: router.k: 2 (the default) is larger than experts.count (1, the default)"});
    }

    TEST_CASE("load: documents that cannot be read stop with one line") {
        CHECK(load_error("- a\n- b\n") ==
              "t.yaml:1:1: expected a mapping of config keys at the top level, got a list");
        CHECK(load_error("just words\n") ==
              "t.yaml:1:1: expected a mapping of config keys at the top level, got 'just words'");
        CHECK(load_error("a: 1\n---\nb: 2\n") ==
              "t.yaml:2:1: expected one YAML document, found a second one starting here");
        // yaml-cpp 0.7's LoadAll would loop forever on these (jbeder/yaml-cpp#1040).
        CHECK(load_error(",") == "t.yaml:1:1: not valid YAML: unexpected ','");
        CHECK(load_error("[1],\n") == "t.yaml:1:4: not valid YAML: unexpected ','");
        CHECK(load_error("router: {k: 1},\n").rfind("t.yaml:1:", 0) == 0);
        CHECK(load_error("", {"router.k=,"}) ==
              "override 'router.k=,': router.k: cannot read the value: not valid YAML: unexpected "
              "','");
        CHECK(load_error("router: {k: 2\n").rfind("t.yaml:", 0) == 0);
        CHECK(load_error("router: {k: 2\n").find("not valid YAML: ") != std::string::npos);
        CHECK(load_error(std::string("a: 1\n\0b: 2\n", 11)) ==
              "t.yaml:2:1: not a text file: it contains a NUL byte");
        CHECK(load_error("a: \xC0\xAF\n") ==
              "t.yaml:1:4: not UTF-8 text: invalid byte 0xC0");  // overlong '/'
        CHECK(load_error("a: \xED\xA0\x80\n") ==
              "t.yaml:1:4: not UTF-8 text: invalid byte 0xED");  // a surrogate
        CHECK(load("# caf\xC3\xA9 \xE2\x9C\x93 (UTF-8 is fine)\nrouter: {k: 1}\n").router.k == 1);
        CHECK(load_error("name: caf\xC3\xA9\n") ==
              "t.yaml:1:7: name: must be 1 to 100 letters, digits, '.', '_' or '-', not starting "
              "with '.', got 'caf\xC3\xA9'");
    }

    TEST_CASE("load: deep nesting is refused without recursing") {
        CHECK(load_error("a: " + std::string(100000, '[') + "\n") ==
              "t.yaml:1:68: nesting is deeper than 64 levels");
        CHECK(load_error("a: " + std::string(100000, '{') + "\n") ==
              "t.yaml:1:68: nesting is deeper than 64 levels");
        std::string dashes;
        for (int i = 0; i < 100000; ++i) dashes += "- ";
        CHECK(load_error(dashes + "x\n") == "t.yaml:1:129: nesting is deeper than 64 levels");
        std::string maps;
        for (int i = 0; i < 100000; ++i) maps += "{a: ";
        CHECK(load_error(maps) == "t.yaml:1:257: nesting is deeper than 64 levels");
        // Brackets inside a comment do not count; 64 levels are still read (and refused as a list).
        CHECK(load("# " + std::string(1000, '[') + "\n") == Config{});
        CHECK(load_error("router: {k: " + std::string(63, '[') + std::string(63, ']') + "}\n") ==
              "t.yaml:1:13: router.k: expected an integer between 1 and 64, got a list");
        // Deep block nesting by indentation is stopped by yaml-cpp's own guard.
        std::string indented;
        for (int i = 0; i < 600; ++i) indented += std::string(size_t(i), ' ') + "a:\n";
        std::string e = load_error(indented);
        CHECK(e.rfind("t.yaml:", 0) == 0);
    }

    TEST_CASE("load: tabs in indentation are refused") {
        CHECK(load_error("router:\n\tk: 2\n") ==
              "t.yaml:2:1: a tab in indentation: YAML indents with spaces only");
        CHECK(load_error("router:\n  \tk: 2\n") ==
              "t.yaml:2:3: a tab in indentation: YAML indents with spaces only");
        CHECK(load("router:\n  k: 2\t# a tab after the value is fine\n\t# and before a comment\n")
                  .router.k == 2);
    }

    TEST_CASE("config_load_file: files") {
        fs::path dir = moe::test::scratch_dir("files");
        SUBCASE("a file loads, with its path in diagnostics") {
            fs::path p = dir / "run.yaml";
            std::ofstream(p) << "router:\n  k: 1\n";
            CHECK(config_load_file(p.string()).router.k == 1);
            CHECK(config_load_file(p.string(), {"router.k=3"}).router.k == 3);
            std::ofstream(p) << "router:\n  k: 0\n";
            CHECK(diagnostics_of([&] { config_load_file(p.string()); }) ==
                  std::vector<std::string>{p.string() +
                                           ":2:6: router.k: must be between 1 and 64, got 0"});
        }
        SUBCASE("an empty file is all defaults") {
            fs::path p = dir / "empty.yaml";
            std::ofstream(p).flush();
            CHECK(config_load_file(p.string()) == Config{});
        }
        SUBCASE("a missing file") {
            std::string p = (dir / "missing.yaml").string();
            CHECK(diagnostics_of([&] { config_load_file(p); }) ==
                  std::vector<std::string>{p +
                                           ": cannot open config file: No such file or directory"});
        }
        SUBCASE("a directory") {
            CHECK(diagnostics_of([&] { config_load_file(dir.string()); }) ==
                  std::vector<std::string>{dir.string() +
                                           ": cannot open config file: Is a directory"});
        }
        SUBCASE("a huge file is refused before it is read") {
            fs::path p = dir / "huge.yaml";
            std::ofstream(p).flush();
            fs::resize_file(p, 50u << 20);  // sparse: costs no disk
            CHECK(diagnostics_of([&] { config_load_file(p.string()); }) ==
                  std::vector<std::string>{
                      p.string() +
                      ": config file is too large: 52428800 bytes, the limit is 16 MiB "
                      "(16777216 bytes)"});
            fs::remove(p);
        }
        SUBCASE("a binary file") {
            fs::path p = dir / "binary.yaml";
            std::ofstream(p, std::ios::binary) << std::string(
                "\x7f"
                "ELF\x02\x01\x01\0\0\0",
                10);
            CHECK(diagnostics_of([&] { config_load_file(p.string()); }) ==
                  std::vector<std::string>{p.string() +
                                           ":1:8: not a text file: it contains a NUL byte"});
        }
    }

    TEST_CASE("config_load_string: text over 16 MiB is refused") {
        std::string big(kConfigMaxBytes + 1, '#');
        CHECK(load_error(big) ==
              "t.yaml: config is too large: 16777217 bytes, the limit is 16 MiB (16777216 bytes)");
    }

    TEST_CASE("load: random garbage never crashes: it loads or throws UserError") {
        const std::string base = config_to_yaml(moe::test::nontrivial_config());
        const std::string alphabet = std::string("[]{}:-#'\"\t\n ,&*!|>%@`?~.0123456789eE+abc\\") +
                                     std::string("\0\xff\xc3", 3);
        uint64_t state = 12345;
        auto next = [&] {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            return state >> 33;
        };
        int loaded = 0, refused = 0;
        for (int trial = 0; trial < 400; ++trial) {
            std::string text = base;
            int edits = 1 + int(next() % 6);
            for (int e = 0; e < edits && !text.empty(); ++e) {
                size_t at = next() % text.size();
                switch (next() % 4) {
                    case 0:
                        text[at] = alphabet[next() % alphabet.size()];
                        break;
                    case 1:
                        text.erase(at, 1 + next() % 8);
                        break;
                    case 2:
                        text.insert(at, 1, alphabet[next() % alphabet.size()]);
                        break;
                    case 3:
                        text.insert(at, text.substr(next() % text.size(), 1 + next() % 40));
                        break;
                }
            }
            try {
                config_load_string(text, "fuzz.yaml");
                ++loaded;
            } catch (const UserError& e) {
                ++refused;
                for (const Diagnostic& d : e.diagnostics()) {
                    std::string line = d.format();
                    CHECK_MESSAGE(line.find('\n') == std::string::npos, line);
                }
            }
        }
        CHECK(loaded + refused == 400);
        CHECK(refused > 100);
    }

}  // TEST_SUITE
