// The key table itself: every key once, defaults legal, setters independent, enum spellings,
// value text, suggestions.
#include "config/schema.h"

#include "config_test_util.h"

#include <algorithm>
#include <set>

using namespace moe;
using moe::test::diagnostics_of;

TEST_SUITE("config") {
    TEST_CASE("schema: every path is unique and a section's keys are contiguous") {
        std::set<std::string_view> paths;
        std::set<std::string_view> closed;  // sections already left
        std::string_view current = "";
        for (const schema::Key& k : schema::keys()) {
            CHECK_MESSAGE(paths.insert(k.path).second, "duplicate key " << k.path);
            CHECK_FALSE(k.doc.empty());
            std::string_view section = schema::parent_of(k.path);
            CHECK_MESSAGE((section.empty() || schema::is_section(section)),
                          k.path << " is in an undeclared section");
            if (section != current) {
                CHECK_MESSAGE(closed.count(section) == 0,
                              "keys of " << section << " are split around " << k.path);
                closed.insert(current);
                current = section;
            }
        }
        for (const schema::Section& s : schema::sections()) CHECK_FALSE(s.doc.empty());
    }

    TEST_CASE("schema: config_keys lists every key in schema order") {
        std::vector<std::string> keys = config_keys();
        REQUIRE(keys.size() == schema::keys().size());
        CHECK(keys.front() == "name");
        CHECK(keys.back() == "train.early_stop.after_step");
        CHECK(std::find(keys.begin(), keys.end(), "router.k") != keys.end());
        CHECK(std::find(keys.begin(), keys.end(), "data.clusters.label_noise") != keys.end());
        CHECK(keys.size() == 104);
    }

    TEST_CASE("schema: the defaults in config.h are legal") {
        CHECK_NOTHROW(config_validate(Config{}));
        const Config d{};
        for (const schema::Key& k : schema::keys()) {
            schema::Value v = k.get(d);
            CHECK_MESSAGE(schema::check_value(k, v, schema::value_text(k, v)).empty(), k.path);
        }
    }

    TEST_CASE("schema: each setter changes its own field and no other") {
        const Config d{};
        for (const schema::Key& k : schema::keys()) {
            CAPTURE(k.path);
            // A value different from the default, legal or not (setters do not check).
            schema::Value v = k.get(d);
            switch (k.type) {
                case schema::Type::integer:
                    v = std::get<int64_t>(v) + 1;
                    break;
                case schema::Type::unsigned_integer:
                    v = std::get<uint64_t>(v) + 1;
                    break;
                case schema::Type::number:
                    v = std::get<double>(v) + 0.5;
                    break;
                case schema::Type::boolean:
                    v = !std::get<bool>(v);
                    break;
                case schema::Type::string:
                    v = std::get<std::string>(v) + "x";
                    break;
                case schema::Type::choice:
                    v = std::get<int64_t>(v) + 1;
                    break;
            }
            Config c = d;
            k.set(c, v);
            CHECK(k.get(c) == v);
            CHECK_FALSE(c == d);
            for (const schema::Key& other : schema::keys())
                if (&other != &k)
                    CHECK_MESSAGE(other.get(c) == other.get(d),
                                  "setting " << k.path << " changed " << other.path);
        }
    }

    TEST_CASE("schema: integer ranges fit their fields") {
        for (const schema::Key& k : schema::keys()) {
            if (k.type != schema::Type::integer) continue;
            CAPTURE(k.path);
            CHECK(k.ints.min <= k.ints.max);
            for (int64_t bound : {k.ints.min, k.ints.max}) {
                Config c;
                k.set(c, schema::Value{bound});
                CHECK(std::get<int64_t>(k.get(c)) == bound);
            }
        }
    }

    TEST_CASE("schema: Config has not grown a field the schema does not know") {
        // Tripwire: when a field is added to config.h, add its key to schema.cpp, set it in
        // nontrivial_config() (tests/config/config_test_util.h), then update this size.
        CHECK_MESSAGE(sizeof(Config) == 680, "sizeof(Config) is " << sizeof(Config));
    }

    TEST_CASE("schema: to_string spells every enum value as the config does") {
        CHECK(to_string(Device::cpu) == "cpu");
        CHECK(to_string(Device::cuda) == "cuda");
        CHECK(to_string(TaskKind::clusters) == "clusters");
        CHECK(to_string(Teacher::linear) == "linear");
        CHECK(to_string(Teacher::mlp) == "mlp");
        CHECK(to_string(Activation::relu) == "relu");
        CHECK(to_string(Activation::gelu) == "gelu");
        CHECK(to_string(Activation::swiglu) == "swiglu");
        CHECK(to_string(RouterType::topk) == "topk");
        CHECK(to_string(ScoreFn::softmax) == "softmax");
        CHECK(to_string(ScoreFn::sigmoid) == "sigmoid");
        CHECK(to_string(DropPolicy::position) == "position");
        CHECK(to_string(DropPolicy::score) == "score");
        CHECK(to_string(DropPolicy::random) == "random");
        CHECK(to_string(DropPolicy::priority) == "priority");
        CHECK(to_string(BalanceLoss::none) == "none");
        CHECK(to_string(BalanceLoss::switch_loss) == "switch");
        CHECK(to_string(BalanceLoss::shazeer) == "shazeer");
        CHECK(to_string(BalanceLoss::gshard) == "gshard");
        CHECK(to_string(OptimizerKind::sgd) == "sgd");
        CHECK(to_string(OptimizerKind::adam) == "adam");
        CHECK(to_string(OptimizerKind::adamw) == "adamw");
        CHECK(to_string(Schedule::constant) == "constant");
        CHECK(to_string(Schedule::cosine) == "cosine");
    }

    TEST_CASE("schema: every available choice loads and reads back") {
        for (const schema::Key& k : schema::keys()) {
            if (k.type != schema::Type::choice) continue;
            for (const schema::Choice& c : k.choices) {
                if (!c.available) continue;
                std::string override_text = std::string(k.path) + "=" + std::string(c.name);
                CAPTURE(override_text);
                Config cfg;
                if (c.name == "shazeer" || (k.path == "router.topk.gate_logits" &&
                                            c.name == "clean"))  // both need gating noise
                    cfg = config_load_string("", "t.yaml", {override_text, "router.noise=1"});
                else if (k.path == "experts.shared_gate")
                    cfg = config_load_string("", "t.yaml", {override_text, "experts.shared=1"});
                else if (c.name == "sequence")  // needs sequences
                    cfg = config_load_string("", "t.yaml", {override_text, "data.task=markov"});
                else if (c.name == "transformer")  // token sequences: markov, whole ones
                    cfg = config_load_string("", "t.yaml",
                                             {override_text, "data.task=markov",
                                              "data.markov.seq_len=33", "train.batch_size=256"});
                else if (c.name == "base")  // one expert per token
                    cfg = config_load_string("", "t.yaml", {override_text, "router.k=1"});
                else if (c.name == "moe_only" || (k.path == "experts.kind" && c.name == "patch"))
                    cfg = config_load_string("", "t.yaml",
                                             {override_text, "data.task=patch_clusters",
                                              "model.kind=moe_only", "experts.kind=patch"});
                else if (c.name == "soft" || c.name == "soft_slots")  // dense: no capacity
                    cfg = config_load_string(
                        "", "t.yaml", {override_text, "capacity.factor=0", "balance.loss=none"});
                else
                    cfg = config_load_string("", "t.yaml", {override_text});
                CHECK(config_value_string(cfg, k.path) == c.name);
            }
        }
    }

    TEST_CASE("config_value_string: a key's value as a user writes it") {
        Config c;
        CHECK(config_value_string(c, "balance.alpha") == "0.01");
        CHECK(config_value_string(c, "router.type") == "topk");
        CHECK(config_value_string(c, "router.normalize") == "auto");
        CHECK(config_value_string(c, "name") == "quickstart");
        CHECK(config_value_string(c, "capacity.factor") == "1.25");
        CHECK(config_value_string(c, "train.grad_clip") == "1.0");
        CHECK(config_value_string(c, "router.noise") == "0.0");
        CHECK(config_value_string(c, "balance.loss") == "switch");
        CHECK(config_value_string(c, "seed") == "1");
        CHECK(config_value_string(c, "data.clusters.dim") == "32");
        c.balance.alpha = 1e-7;
        c.train.steps = 5'000'000'000;
        c.seed = 18446744073709551615ull;
        CHECK(config_value_string(c, "balance.alpha") == "1e-07");
        CHECK(config_value_string(c, "train.steps") == "5000000000");
        CHECK(config_value_string(c, "seed") == "18446744073709551615");

        auto e = diagnostics_of([&] { config_value_string(c, "router.kk"); });
        REQUIRE(e.size() == 1);
        CHECK(e[0] == "router.kk: unknown key (did you mean 'router.k'?)");
        e = diagnostics_of([&] { config_value_string(c, "router"); });
        REQUIRE(e.size() == 1);
        CHECK(e[0] == "router: is a section, not a key");
    }

    TEST_CASE("schema: edit distance and suggestions") {
        CHECK(schema::edit_distance("", "") == 0);
        CHECK(schema::edit_distance("kitten", "sitting") == 3);
        CHECK(schema::edit_distance("d_modle", "d_model") == 1);  // a transposition costs 1
        CHECK(schema::edit_distance("abc", "") == 3);
        CHECK(schema::suggest_key("router.kk") == "router.k");
        CHECK(schema::suggest_key("model.d_modle") == "model.d_model");
        CHECK(schema::suggest_key("router.count") == "experts.count");
        CHECK(schema::suggest_key("lr") == "train.lr");
        CHECK(schema::suggest_key("Router") == "router");
        CHECK(schema::suggest_key("clusters") == "data.clusters");
        CHECK(schema::suggest_key("router.xyz") == "");
        CHECK(schema::suggest_key("foo") == "");
        CHECK(schema::suggest_key("completely.unrelated.thing") == "");
        std::vector<std::string_view> names = {"softmax", "sigmoid"};
        CHECK(schema::nearest("sofmax", names) == "softmax");
        CHECK(schema::nearest("SIGMOID", names) == "sigmoid");
        CHECK(schema::nearest("relu", names) == "");
        CHECK(
            schema::unknown_key_message("router.bogus") ==
            "unknown key (router has: type, k, score, normalize, noise, noise_kind, scale, jitter, "
            "head, init, patch_tied, "
            "cosine, topk, hash, sinkhorn, hierarchical, soft_slots)");
        CHECK(schema::unknown_key_message("nope.nope") == "unknown key");
    }

    TEST_CASE("schema: expected and allowed texts") {
        CHECK(schema::expected_text(*schema::find_key("router.k")) ==
              "an integer between 1 and 64");
        CHECK(schema::expected_text(*schema::find_key("train.steps")) == "an integer >= 1");
        CHECK(schema::expected_text(*schema::find_key("train.lr")) == "a number > 0");
        CHECK(schema::expected_text(*schema::find_key("train.beta1")) == "a number >= 0 and < 1");
        CHECK(schema::expected_text(*schema::find_key("router.noise")) == "a number >= 0");
        CHECK(schema::expected_text(*schema::find_key("router.normalize")) ==
              "one of: auto, true, false");
        CHECK(schema::expected_text(*schema::find_key("router.score")) ==
              "one of: softmax, sigmoid");
        CHECK(schema::allowed_text(*schema::find_key("capacity.factor")) ==
              "0 or between 0.01 and 1024");
        CHECK(schema::allowed_text(*schema::find_key("data.clusters.spread")) == "> 0 and <= 100");
        CHECK(schema::allowed_text(*schema::find_key("device")) == "cpu, cuda");
    }

    TEST_CASE("schema: a boolean is lower-case true or false, as docs/config.md says") {
        // No key is boolean in this version (router.normalize is a choice): a key made here.
        schema::Key key;
        key.path = "flag";
        key.type = schema::Type::boolean;
        schema::Value v;
        std::string error;
        CHECK(schema::parse_value(key, "true", schema::ScalarStyle::plain, v, error));
        CHECK(std::get<bool>(v));
        CHECK(schema::parse_value(key, "false", schema::ScalarStyle::plain, v, error));
        CHECK(!std::get<bool>(v));
        for (std::string_view refused : {"True", "TRUE", "False", "FALSE"}) {
            CAPTURE(refused);
            CHECK(!schema::parse_value(key, refused, schema::ScalarStyle::plain, v, error));
            CHECK(error == "expected true or false, got '" + std::string(refused) +
                               "' (lower case: " + (refused[0] == 'T' ? "true" : "false") + ")");
        }
        for (std::string_view refused : {"yes", "no", "on", "off", "1", "0"}) {
            CAPTURE(refused);
            CHECK(!schema::parse_value(key, refused, schema::ScalarStyle::plain, v, error));
            CHECK(error == "expected true or false, got '" + std::string(refused) + "'");
        }
        CHECK(!schema::parse_value(key, "true", schema::ScalarStyle::quoted, v, error));
        CHECK(error == "expected true or false, got the quoted string \"true\"");
    }

}  // TEST_SUITE
