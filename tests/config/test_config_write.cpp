// Writing configs out: the resolved YAML round-trips exactly, and docs/config.md is the
// generated reference.
#include "config/components.h"
#include "config/config_load.h"
#include "config/schema.h"

#include "config_test_util.h"

#include <cstdlib>
#include <fstream>

using namespace moe;
namespace fs = std::filesystem;

namespace {
Config round_trip(const Config& c) {
    return config_load_string(config_to_yaml(c), "resolved.yaml");
}
}  // namespace

TEST_SUITE("config") {
    TEST_CASE("config_to_yaml: starts with the version and lists every key") {
        std::string yaml = config_to_yaml(Config{});
        CHECK(yaml.rfind(std::string("# moe-sim ") + MOESIM_VERSION, 0) == 0);
        for (const std::string& key : config_keys()) {
            // the own keys of a component not selected are left out (given, they are an error):
            // not even their section (router.hash:, data.markov:) is written
            if (const ComponentRow* owner = owner_of_key(key);
                owner && selected_component(Config{}, owner->choice_key) != owner) {
                const size_t a = key.find('.'), b = key.rfind('.');
                CHECK_MESSAGE(
                    yaml.find("\n  " + key.substr(a + 1, b - a - 1) + ":") == std::string::npos,
                    key);
                continue;
            }
            std::string leaf = key.substr(key.rfind('.') + 1);
            bool listed = yaml.find(" " + leaf + ": ") != std::string::npos ||
                          yaml.find("\n" + leaf + ": ") != std::string::npos;
            CHECK_MESSAGE(listed, key);
        }
        CHECK(yaml.find("\nrouter:") != std::string::npos);
        CHECK(yaml.find("\n  clusters:") != std::string::npos);
        CHECK(yaml.find("\n    label_noise: 0.0") != std::string::npos);
        CHECK(yaml.find("\n  loss: switch") != std::string::npos);
    }

    TEST_CASE("config_to_yaml: round trip of the defaults and of a config that changes every key") {
        CHECK(round_trip(Config{}) == Config{});
        const Config c = moe::test::nontrivial_config();
        CHECK_NOTHROW(config_validate(c));
        // Every key differs from its default, except the ones with a single available choice
        // and router.topk.second_expert (its `random` needs router.k = 2, the default), and the
        // own keys of the routers other than topk (an error while topk is selected), and
        // router.topk.noise (`learned` needs router.noise = 0, softmax scores and no z-loss),
        // router.init (`zero` needs the linear head, and the cosine head is set) and
        // router.noise_kind (`uniform` refuses the shazeer loss, which is set), model.kind,
        // experts.kind and router.patch_tied (moe_only, patch experts and the tied router need
        // each other and data.task: patch_clusters; their round trip is the test below).
        for (const std::string& key : config_keys()) {
            if (key == "device" || key == "data.task" || key == "router.type" ||
                key == "router.topk.second_expert" || key == "router.topk.noise" ||
                key == "router.init" || key == "router.noise_kind" || key == "model.kind" ||
                key == "experts.kind" || key == "router.patch_tied" ||
                key.rfind("router.hash.", 0) == 0 || key.rfind("router.sinkhorn.", 0) == 0 ||
                key.rfind("router.hierarchical.", 0) == 0)
                continue;
            if (const ComponentRow* owner = owner_of_key(key);
                owner && selected_component(c, owner->choice_key) != owner)
                continue;
            // the own keys of the tasks not selected are not written: their own test below
            if (key.rfind("data.markov.", 0) == 0 || key.rfind("data.modular.", 0) == 0 ||
                key.rfind("data.patch_clusters.", 0) == 0)
                continue;
            CHECK_MESSAGE(config_value_string(c, key) != config_value_string(Config{}, key), key);
        }
        Config back = round_trip(c);
        CHECK(back == c);
        for (const std::string& key : config_keys())
            CHECK(config_value_string(back, key) == config_value_string(c, key));
        CHECK(config_to_yaml(back) == config_to_yaml(c));
    }

    TEST_CASE("config_to_yaml: round trip of the markov and the modular task's own keys") {
        Config m;
        m.data.task = TaskKind::markov;
        m.data.markov.domains = 3;
        m.data.markov.vocab = 17;
        m.data.markov.branching = 5;
        m.data.markov.order = 2;
        m.data.markov.concentration = 0.25;
        m.data.markov.imbalance = 1.5;
        m.data.markov.seq_len = 20;
        m.data.markov.context = 6;
        Config q;
        q.data.task = TaskKind::modular;
        q.data.modular.p = 13;
        q.data.modular.ops = "mul,div,add";
        q.data.modular.train_fraction = 0.3;
        Config pc;
        pc.data.task = TaskKind::patch_clusters;
        pc.data.patch_clusters.num_clusters = 3;
        pc.data.patch_clusters.patches = 5;
        pc.data.patch_clusters.dim = 20;
        pc.data.patch_clusters.gamma_max = 2.0;
        pc.data.patch_clusters.sigma_p = 2.0;
        pc.data.patch_clusters.scale = 1.5;
        pc.model.kind = ModelKind::moe_only;  // Chen et al.'s model, which needs this task
        pc.experts.kind = ExpertKind::patch;
        pc.router.patch_tied = true;
        for (const Config& c : {m, q, pc}) {
            CHECK_NOTHROW(config_validate(c));
            CHECK(round_trip(c) == c);
        }
        for (const std::string& key : config_keys())
            if (key.rfind("data.markov.", 0) == 0)
                CHECK_MESSAGE(config_value_string(m, key) != config_value_string(Config{}, key),
                              key);
            else if (key.rfind("data.modular.", 0) == 0)
                CHECK_MESSAGE(config_value_string(q, key) != config_value_string(Config{}, key),
                              key);
            else if (key.rfind("data.patch_clusters.", 0) == 0 || key == "model.kind" ||
                     key == "experts.kind" || key == "router.patch_tied")
                CHECK_MESSAGE(config_value_string(pc, key) != config_value_string(Config{}, key),
                              key);
        for (const std::string& key : config_keys()) {
            const std::string leaf = key.substr(key.rfind('.') + 1);
            if (key.rfind("data.markov.", 0) == 0)
                CHECK_MESSAGE(config_to_yaml(m).find("\n    " + leaf + ": ") != std::string::npos,
                              key);
            if (key.rfind("data.modular.", 0) == 0)
                CHECK_MESSAGE(config_to_yaml(q).find("\n    " + leaf + ": ") != std::string::npos,
                              key);
            if (key.rfind("data.patch_clusters.", 0) == 0)
                CHECK_MESSAGE(config_to_yaml(pc).find("\n    " + leaf + ": ") != std::string::npos,
                              key);
        }
        CHECK(config_to_yaml(m).find("modular") == std::string::npos);
        CHECK(config_to_yaml(q).find("markov") == std::string::npos);
    }

    TEST_CASE("config_to_yaml: a router's own keys are written only while it is selected") {
        Config c;
        c.router.type = RouterType::expert_choice;
        c.router.k = 1;
        c.balance.loss = BalanceLoss::none;
        const std::string yaml = config_to_yaml(c);
        // router.topk.* would be refused on loading with router.type: expert_choice
        CHECK(yaml.find("second_expert") == std::string::npos);
        CHECK(yaml.find("topk_groups") == std::string::npos);
        CHECK(round_trip(c) == c);
        CHECK(config_to_yaml(Config{}).find("second_expert") != std::string::npos);
    }

    TEST_CASE("config_to_yaml: doubles round-trip bit for bit") {
        for (double x : {0.1, 1e-7, 0.30000000000000004, 123456.789, 1e20, 3.0, 0.01,
                         2.2250738585072014e-308, 1.7976931348623157e308, 1.0 / 3.0}) {
            Config c;
            c.balance.alpha = x;
            CAPTURE(x);
            CHECK(round_trip(c).balance.alpha == x);
        }
    }

    TEST_CASE("config_to_yaml: names that YAML would read as something else are quoted") {
        for (const char* name : {"123", "1e5", "true", "False", "null", "NULL", "yes", "off", "y",
                                 "0x1F", "-run", "_x", "a.b-c_d", "run1", "1.5", "--", "e"}) {
            Config c;
            c.name = name;
            CAPTURE(name);
            CHECK(round_trip(c).name == name);
        }
        Config c;
        c.name = "true";
        CHECK(config_to_yaml(c).find("name: \"true\"") != std::string::npos);
        c.name = "run1";
        CHECK(config_to_yaml(c).find("name: run1 ") != std::string::npos);
    }

    TEST_CASE(
        "config_reference_markdown: every key with its default and allowed values and every rule") {
        std::string md = config_reference_markdown();
        const Config d{};
        for (const schema::Key& k : schema::keys()) {
            std::string row = "| `" + std::string(k.path) + "` | " +
                              std::string(schema::type_name(k.type)) + " | `" +
                              config_value_string(d, k.path) + "` |";
            CHECK_MESSAGE(md.find(row) != std::string::npos, row);
        }
        CHECK(md.find("| `router.score` | choice | `softmax` | softmax, sigmoid |") !=
              std::string::npos);
        CHECK(md.find("topk, expert_choice, soft, soft_slots, hash, random, sinkhorn, base, "
                      "hierarchical") != std::string::npos);
        CHECK(md.find("| `device` | choice | `cpu` | cpu, cuda |") != std::string::npos);
        CHECK(md.find("| `router.k` | integer | `2` | between 1 and 64 |") != std::string::npos);
        CHECK(md.find("`router.k` <= `experts.count`") != std::string::npos);
        CHECK(md.find("`balance.loss: shazeer` needs `router.noise` > 0") != std::string::npos);
        CHECK(md.find("An empty file") != std::string::npos);
    }

    TEST_CASE("docs/config.md is the generated reference") {
        const fs::path doc = fs::path(MOESIM_SOURCE_DIR) / "docs" / "config.md";
        const std::string want = config_reference_markdown();
        if (const char* regen = std::getenv("MOESIM_REGENERATE_DOCS");
            regen && std::string(regen) == "1") {
            std::ofstream(doc, std::ios::binary) << want;
            MESSAGE("wrote " << doc.string());
        }
        CHECK_MESSAGE(moe::test::read_file(doc) == want,
                      "docs/config.md is out of date with the schema (src/config/schema.cpp). "
                      "Regenerate it with "
                      "`moe-sim validate --reference > docs/config.md`, or "
                      "MOESIM_REGENERATE_DOCS=1 moesim_tests "
                      "-tc='docs/config.md*'");
    }

}  // TEST_SUITE
