// The validation rules of the dense routers (soft, soft_slots): every key that has no meaning
// when every expert sees every token is refused with one line naming it.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config/config_load.h"
#include "config_test_util.h"

using namespace moe;
using moe::test::load_error;
using moe::test::load_errors;

namespace {

// A valid dense config.
std::string dense_yaml(const std::string& type) {
    return "router: {type: " + type + "}\ncapacity: {factor: 0}\nbalance: {loss: none}\n";
}

}  // namespace

TEST_SUITE("config") {
    TEST_CASE("dense routers: a valid config loads, and soft_slots keeps its slots") {
        for (const std::string type : {"soft", "soft_slots"}) {
            CAPTURE(type);
            CHECK_NOTHROW(config_load_string(dense_yaml(type), "t.yaml"));
        }
        const Config c = config_load_string(
            "router: {type: soft_slots, soft_slots: {slots: 4}}\ncapacity: {factor: 0}\n"
            "balance: {loss: none, z_loss: 0.01}\nexperts: {shared: 1}\n",
            "t.yaml");
        CHECK(c.router.type == RouterType::soft_slots);
        CHECK(c.router.soft_slots.slots == 4);
        // the resolved config loads back the same, soft_slots' own key included
        CHECK(config_load_string(config_to_yaml(c), "resolved.yaml") == c);
        // and a router.soft_slots key with another router is an error naming it
        CHECK(load_error("router: {type: soft, soft_slots: {slots: 2}}\ncapacity: {factor: 0}\n"
                         "balance: {loss: none}\n") ==
              "t.yaml:1:42: router.soft_slots.slots: only read by router.type: soft_slots, but "
              "router.type is soft");
    }

    TEST_CASE(
        "dense routers: capacity, drops, balancing losses, bias, noise and scores are refused") {
        struct Bad {
            std::vector<std::string> overrides;
            std::string key;  // the key the diagnostic names
        };
        const Bad bad[] = {
            {{"capacity.factor=1.25"}, "capacity.factor"},
            {{"capacity.eval_factor=2"}, "capacity.eval_factor"},
            {{"capacity.drop_policy=score"}, "capacity.drop_policy"},
            {{"capacity.min=4"}, "capacity.drop_policy"},
            {{"balance.loss=switch"}, "balance.loss"},
            {{"balance.loss=shazeer", "router.noise=1"}, "balance.loss"},
            {{"balance.bias_rate=0.01"}, "balance.bias_rate"},
            {{"balance.losses.switch=0.01"}, "balance.losses.switch"},
            {{"balance.losses.gshard=0.01"}, "balance.losses.gshard"},
            {{"router.noise=0.5"}, "router.noise"},
            {{"router.score=sigmoid"}, "router.score"},
            {{"router.normalize=true"}, "router.normalize"},
        };
        for (const std::string type : {"soft", "soft_slots"}) {
            for (const Bad& b : bad) {
                CAPTURE(type);
                CAPTURE(b.key);
                const std::vector<std::string> errors = load_errors(dense_yaml(type), b.overrides);
                REQUIRE(!errors.empty());
                bool named = false;
                for (const std::string& e : errors) {
                    CHECK(e.find('\n') == std::string::npos);  // one line each
                    if (e.find(": " + b.key + ": ") != std::string::npos) named = true;
                }
                CHECK_MESSAGE(named, errors.front());
            }
        }
        // soft_slots has no gate scale; soft multiplies its gates by it
        CHECK(load_errors(dense_yaml("soft_slots"), {"router.scale=2"}).size() == 1);
        CHECK(config_load_string(dense_yaml("soft"), "t.yaml", {"router.scale=2"}).router.scale ==
              2.0);
        // the message says what to do
        CHECK(load_error("router: {type: soft}\nbalance: {loss: none}\n") ==
              "t.yaml:1:16: capacity.factor: soft sends every token to every expert (nothing can "
              "be dropped): set capacity.factor to 0, got 1.25 (the default)");
    }
}
