// `moe-sim presets [NAME]` and `presets/NAME` as a config path.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/presets.h"
#include "support/process.h"

using moe::test::run_moesim;
using moe::test::run_shell;
using moe::test::scratch_dir;

TEST_SUITE("cli") {
    TEST_CASE("presets lists every bundled preset with its summary and prints one by name") {
        const auto list = run_moesim("presets");
        REQUIRE(list.code == 0);
        for (const moe::Preset& p : moe::bundled_presets()) {
            CAPTURE(p.name);
            CHECK(list.output.find(std::string(p.name) + " ") != std::string::npos);
            CHECK(list.output.find(moe::preset_summary(p)) != std::string::npos);
        }
        const auto one = run_moesim("presets switch");
        REQUIRE(one.code == 0);
        CHECK(one.output == std::string(moe::find_preset("switch")->text));
        const auto bad = run_moesim("presets swich");
        CHECK(bad.code == 2);
        CHECK(bad.output.find("no preset 'swich'") != std::string::npos);
        CHECK(bad.output.find("switch") != std::string::npos);
    }

    TEST_CASE("presets/NAME is a config path from any directory and a file there wins") {
        const auto dir = scratch_dir("presets_path");
        const std::string cd = "cd '" + dir.string() + "' && '" + MOESIM_BINARY + "' ";
        // no presets/ here: the bundled preset
        auto r = run_shell(cd + "validate presets/switch");
        REQUIRE(r.code == 0);
        CHECK(r.output.find("k: 1") != std::string::npos);
        r = run_shell(cd + "validate presets/switch.yaml router.k=2");
        REQUIRE(r.code == 0);
        CHECK(r.output.find("k: 2") != std::string::npos);
        // an error in an override of a preset names the preset path
        r = run_shell(cd + "validate presets/switch router.k=0");
        CHECK(r.code == 2);
        // a file at exactly the path given is read instead
        std::filesystem::create_directories(dir / "presets");
        std::ofstream(dir / "presets" / "switch.yaml") << "name: mine\nrouter:\n  k: 3\n";
        r = run_shell(cd + "validate presets/switch.yaml");
        REQUIRE(r.code == 0);
        CHECK(r.output.find("name: mine") != std::string::npos);
        // an unknown preset is a missing file
        r = run_shell(cd + "validate presets/nosuch");
        CHECK(r.code == 2);
        CHECK(r.output.find("presets/nosuch") != std::string::npos);
    }
}
