// The component rows (config/components.h): each is consistent with the schema, the choice lists
// of router.type, balance.loss and data.task are the rows, every built row has a factory and every
// factory a row, own sub-sections belong to their component, and the README's component table is
// the one the rows render.
#include "config/components.h"

#include "config/config_load.h"
#include "config/schema.h"
#include "routing/router.h"
#include "routing/router_registry.h"
#include "support/process.h"
#include "tasks/task_registry.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

using namespace moe;

namespace {

constexpr std::string_view kChoiceKeys[] = {"router.type", "balance.loss", "data.task"};

std::set<std::string_view> built_names(ComponentKind kind) {
    std::set<std::string_view> out;
    for (const ComponentRow& r : components())
        if (r.kind == kind && r.built) out.insert(r.name);
    return out;
}

std::set<std::string_view> as_set(const std::vector<std::string_view>& v) {
    return {v.begin(), v.end()};
}

bool contains(std::span<const std::string_view> keys, std::string_view key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// The text between the two marker lines of README.md (without the marker lines).
std::string readme_table(const std::string& readme) {
    const std::string begin = "<!-- components:begin";
    const std::string end = "<!-- components:end -->";
    size_t b = readme.find(begin);
    size_t e = readme.find(end);
    if (b == std::string::npos || e == std::string::npos || e < b) return "(markers not found)";
    b = readme.find('\n', b);
    return readme.substr(b + 1, e - b - 1);
}

}  // namespace

TEST_SUITE("config") {
    TEST_CASE("components: every row is consistent with the schema") {
        std::set<std::pair<int, std::string_view>> names;
        for (const ComponentRow& r : components()) {
            CAPTURE(r.name);
            CHECK(names.insert({int(r.kind), r.name}).second);
            CHECK_FALSE(r.summary.empty());
            CHECK_FALSE(r.paper.empty());
            CHECK(r.summary.find('\n') == std::string_view::npos);
            if (r.choice_key.empty()) {
                // Switched on by its own key: said in words, and that key is its first.
                CHECK(r.built);
                CHECK(r.id == -1);
                REQUIRE_FALSE(r.keys.empty());
                CHECK(r.on_when.find("`" + std::string(r.keys[0]) + "`") != std::string::npos);
            } else {
                CHECK(contains(kChoiceKeys, r.choice_key));
                CHECK(r.on_when.empty());
                CHECK(r.built == (r.id >= 0));
                if (r.built) CHECK(find_component(r.choice_key, r.id) == &r);
            }
            if (r.built) {
                // The routers, balancers and tasks run on the host for both backends: every built
                // component runs on both devices.
                CHECK(r.devices == (kCpu | kCuda));
            } else {
                CHECK(r.devices == 0);
                CHECK(r.keys.empty());
                CHECK(r.rules.empty());
            }
            for (std::string_view k : r.keys) CHECK_MESSAGE(schema::find_key(k), k);
            for (const KeyRule& rule : r.rules) {
                CHECK(schema::find_key(rule.key));
                CHECK(rule.reads[0] == rule.key);
                for (std::string_view k : rule.reads) CHECK_MESSAGE(schema::find_key(k), k);
                // The rule says in words which component it belongs to.
                if (!r.choice_key.empty())
                    CHECK(rule.text.find(fmt::format("`{}: {}`", r.choice_key, r.name)) !=
                          std::string_view::npos);
            }
        }
    }

    TEST_CASE(
        "components: the choice lists of router.type, balance.loss and data.task are the "
        "rows") {
        for (std::string_view choice_key : kChoiceKeys) {
            CAPTURE(choice_key);
            const schema::Key* key = schema::find_key(choice_key);
            REQUIRE(key);
            std::vector<const ComponentRow*> rows;
            for (const ComponentRow& r : components())
                if (r.choice_key == choice_key) rows.push_back(&r);
            REQUIRE(key->choices.size() == rows.size());
            for (size_t i = 0; i < rows.size(); ++i) {
                CHECK(key->choices[i].name == rows[i]->name);
                CHECK(key->choices[i].available == rows[i]->built);
                if (rows[i]->built) CHECK(key->choices[i].value == rows[i]->id);
            }
            // The default config selects a built row.
            const ComponentRow* chosen = selected_component(Config{}, choice_key);
            REQUIRE(chosen);
            CHECK(chosen->built);
        }
        CHECK(to_string(RouterType::topk) == "topk");
        CHECK(find_component(ComponentKind::balancer, "switch")->id ==
              int(BalanceLoss::switch_loss));
        CHECK(find_component("data.task", int(TaskKind::clusters))->name == "clusters");
    }

    TEST_CASE("components: every built router and task has a factory, every factory a row") {
        CHECK(as_set(router_factory_names()) == built_names(ComponentKind::router));
        CHECK(as_set(task_factory_names()) == built_names(ComponentKind::task));
        // The factory is found through the row of the enum value.
        for (const ComponentRow& r : components()) {
            if (r.kind != ComponentKind::router || !r.built) continue;
            RouterConfig rc;
            rc.type = RouterType(r.id);
            rc.k = 1;  // legal for every router (base needs it)
            CHECK(router_create(rc) != nullptr);
        }
    }

    TEST_CASE("components: a component's own sub-section holds only its keys") {
        const ComponentRow* clusters = find_component(ComponentKind::task, "clusters");
        REQUIRE(clusters);
        CHECK(own_section(*clusters) == "data.clusters");
        CHECK(owner_of_key("data.clusters.dim") == clusters);
        CHECK(owner_of_key("data.clusters") == nullptr);
        CHECK(owner_of_key("router.k") == nullptr);  // shared by the top-k family
        CHECK(owner_of_key("balance.z_loss") == nullptr);
        CHECK(own_section(*find_component(ComponentKind::balancer, "z_loss")).empty());
        // Every key of an own sub-section is listed by its owner, and no row reads the own keys of
        // another component.
        for (const schema::Key& k : schema::keys())
            if (const ComponentRow* owner = owner_of_key(k.path))
                CHECK_MESSAGE(contains(owner->keys, k.path), k.path);
        for (const ComponentRow& r : components())
            for (std::string_view k : r.keys) {
                const ComponentRow* owner = owner_of_key(k);
                CHECK_MESSAGE((owner == nullptr || owner == &r), r.name << " reads " << k);
            }
        // Given while its component is selected, an own key is fine.
        CHECK(config_load_string("data: {task: clusters, clusters: {dim: 8}}", "t.yaml")
                  .data.clusters.dim == 8);
        // Given with another component selected, the error names the component and the choice
        // (markov is the next task; no second task is built yet to load such a config).
        const ComponentRow* markov = find_component(ComponentKind::task, "markov");
        REQUIRE(markov);
        CHECK(not_selected_message(*clusters, *markov) ==
              "only read by data.task: clusters, but data.task is markov");
        CHECK(config_reference_markdown().find("- `data.clusters.*` only with `data.task: "
                                               "clusters`") != std::string::npos);
    }

    TEST_CASE("components: a component's rules run only while it is selected") {
        // shazeer's rule (router.noise > 0) is its row's; with another loss it does not apply.
        CHECK_NOTHROW(
            config_load_string("balance: {loss: switch}\nrouter: {noise: 0}\n", "t.yaml"));
        CHECK_THROWS_AS(config_load_string("balance: {loss: shazeer}\n", "t.yaml"), UserError);
        const std::string md = config_reference_markdown();
        CHECK(md.find("- `router.type: topk` needs `router.k` <= `experts.count`") !=
              std::string::npos);
    }

    TEST_CASE("components: the table renders every row") {
        const std::string md = components_markdown();
        CHECK(md.rfind("| name | kind | selected by | summary | paper | devices | status |\n", 0) ==
              0);
        CHECK(md.find("| `topk` | router | `router.type: topk` |") != std::string::npos);
        CHECK(md.find("| `z_loss` | balancer | `balance.z_loss` > 0 |") != std::string::npos);
        CHECK(md.find("| cpu, cuda | built |") != std::string::npos);
        // each row's status cell says what its built flag says
        long built = 0;
        for (const ComponentRow& r : components()) built += r.built;
        size_t at = 0;
        long built_cells = 0, not_built_cells = 0;
        while ((at = md.find("| built |\n", at)) != std::string::npos) ++built_cells, ++at;
        at = 0;
        while ((at = md.find("| — | not built yet |\n", at)) != std::string::npos)
            ++not_built_cells, ++at;
        CHECK(built_cells == built);
        CHECK(not_built_cells == long(components().size()) - built);
        CHECK(std::count(md.begin(), md.end(), '\n') == long(components().size()) + 2);
    }

    TEST_CASE("README.md's component table is the one the rows render") {
        const std::string readme = moe::test::read_text(moe::test::source_path("README.md"));
        CHECK_MESSAGE(readme_table(readme) == components_markdown(),
                      "README.md's component table is out of date with the rows "
                      "(src/config/components.cpp). Replace the lines between its "
                      "<!-- components:begin --> and <!-- components:end --> markers with the "
                      "output of `moe-sim validate --components`.");
    }

    TEST_CASE("moe-sim validate --components prints the table") {
        auto r = moe::test::run_moesim("validate --components");
        CHECK(r.code == 0);
        CHECK(r.output == components_markdown());
    }
}  // TEST_SUITE
