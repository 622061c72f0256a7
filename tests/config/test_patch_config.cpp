// The rules of Chen et al. 2022's model pieces (model.kind: moe_only, experts.kind: patch,
// experts.patch.*, router.patch_tied): the legal combination loads, and each conflict is one
// diagnostic naming its key.
#include <doctest/doctest.h>

#include <string>

#include "config/config_load.h"
#include "config/config_test_util.h"

using namespace moe;
using moe::test::load_error;

namespace {
Config load(const std::string& yaml) {
    return config_load_string(yaml, "t.yaml", {});
}
bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}
// The paper's model: one MoE layer of patch experts on the raw patches.
const std::string kBase =
    "data: {task: patch_clusters}\nmodel: {kind: moe_only}\nexperts: {kind: patch}\n";
}  // namespace

TEST_SUITE("config") {
    TEST_CASE("patch experts: the paper's combination loads with its keys") {
        const Config c = load(
            "data: {task: patch_clusters}\nmodel: {kind: moe_only}\n"
            "experts: {kind: patch, count: 8, patch: {activation: linear, channels: 40, "
            "init_scale: 0.5}}\nrouter: {patch_tied: true}\n");
        CHECK(c.model.kind == ModelKind::moe_only);
        CHECK(c.experts.kind == ExpertKind::patch);
        CHECK(c.experts.patch.activation == PatchActivation::linear);
        CHECK(c.experts.patch.channels == 40);
        CHECK(c.experts.patch.init_scale == 0.5);
        CHECK(c.router.patch_tied);
        // the defaults
        const Config d = load("");
        CHECK(d.model.kind == ModelKind::residual);
        CHECK(d.experts.kind == ExpertKind::ffn);
        CHECK(d.experts.patch.activation == PatchActivation::cubic);
        CHECK(d.experts.patch.channels == 8);
        CHECK(d.experts.patch.init_scale == 0.001);
        CHECK_FALSE(d.router.patch_tied);
    }

    TEST_CASE("patch experts: moe_only needs patch experts") {
        CHECK(has(load_error("data: {task: patch_clusters}\nmodel: {kind: moe_only}\n"),
                  "model.kind: 'moe_only' makes the logits from the MoE layer's output, which "
                  "only patch experts give (experts.kind = ffn (the default))"));
    }

    TEST_CASE("patch experts: they need moe_only") {
        CHECK(has(load_error("data: {task: patch_clusters}\nexperts: {kind: patch}\n"),
                  "experts.kind: 'patch' experts output the 2 class scores, not the residual "
                  "stream; they need model.kind: moe_only (model.kind = residual (the default))"));
    }

    TEST_CASE("patch experts: they need the patch_clusters task") {
        CHECK(has(load_error("model: {kind: moe_only}\nexperts: {kind: patch}\n"),
                  "experts.kind: 'patch' experts read data.patch_clusters' patches and its 2 "
                  "classes; data.task = clusters (the default)"));
    }

    TEST_CASE("patch experts: no shared experts") {
        CHECK(has(load_error("data: {task: patch_clusters}\nmodel: {kind: moe_only}\n"
                             "experts: {kind: patch, shared: 1}\n"),
                  "experts.kind: 'patch' experts have no shared experts; experts.shared = 1"));
    }

    TEST_CASE("patch experts: not with the dense routers") {
        // (soft's own rules add their diagnostics: k and the balancing loss)
        bool found = false;
        for (const std::string& line : moe::test::load_errors(kBase + "router: {type: soft}\n"))
            found = found || has(line,
                                 "experts.kind: 'patch' experts run on the token-expert path; "
                                 "router.type = soft");
        CHECK(found);
    }

    TEST_CASE("patch experts: device cpu only") {
        CHECK(has(load_error(kBase + "device: cuda\n"),
                  "experts.kind: 'patch' experts are not built for device: cuda yet"));
    }

    TEST_CASE("patch experts: the channels and the init scale are checked") {
        CHECK(has(load_error("experts: {patch: {channels: 0}}\n"), "experts.patch.channels"));
        CHECK(has(load_error("experts: {patch: {init_scale: 0}}\n"), "experts.patch.init_scale"));
        CHECK(
            has(load_error("experts: {patch: {activation: relu}}\n"), "experts.patch.activation"));
    }

    TEST_CASE("patch experts: the tied router needs moe_only and the linear head") {
        CHECK(has(load_error("router: {patch_tied: true}\n"),
                  "router.patch_tied: a tied router reads the input's raw patches, which only "
                  "moe_only gives it; model.kind = residual (the default)"));
        CHECK(has(load_error(kBase + "router: {patch_tied: true, head: cosine}\n"),
                  "router.patch_tied: only the linear head can tie its weight across patches"));
    }
}  // TEST_SUITE
