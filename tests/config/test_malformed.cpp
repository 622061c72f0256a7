// The corpus of malformed configs: tests/config/malformed/NAME.yaml, each with the exact
// diagnostics it must give in NAME.expected (one line each, as Diagnostic::format() writes them,
// without cli's "moe-sim: error: " prefix) and, optionally, KEY=VALUE overrides in
// NAME.overrides (one per line). The file is loaded with the label "malformed/NAME.yaml", so the
// expected text does not depend on where the checkout is. The .expected files were written by
// hand from what the error should say; a mismatch prints both.
#include "config/config_load.h"

#include "config_test_util.h"

#include <algorithm>
#include <sstream>

using namespace moe;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(line);
    return out;
}

}  // namespace

TEST_SUITE("config") {
    TEST_CASE("malformed corpus: each config gives exactly its expected diagnostics") {
        const fs::path dir = fs::path(MOESIM_SOURCE_DIR) / "tests" / "config" / "malformed";
        std::vector<fs::path> configs;
        for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
            const fs::path& p = e.path();
            if (p.extension() == ".yaml")
                configs.push_back(p);
            else
                CHECK_MESSAGE((p.extension() == ".expected" || p.extension() == ".overrides"),
                              "stray file " << p);
            if (p.extension() != ".yaml") {
                fs::path yaml = p;
                CHECK_MESSAGE(fs::exists(yaml.replace_extension(".yaml")), p << " has no .yaml");
            }
        }
        std::sort(configs.begin(), configs.end());
        CHECK(configs.size() >= 30);
        for (const fs::path& p : configs) {
            const std::string name = p.stem().string();
            CAPTURE(name);
            fs::path expected_path = p, overrides_path = p;
            expected_path.replace_extension(".expected");
            overrides_path.replace_extension(".overrides");
            REQUIRE_MESSAGE(fs::exists(expected_path), "missing " << expected_path);
            std::vector<std::string> overrides;
            if (fs::exists(overrides_path))
                overrides = lines_of(moe::test::read_file(overrides_path));
            const std::vector<std::string> expected = lines_of(moe::test::read_file(expected_path));
            std::vector<std::string> got = moe::test::diagnostics_of([&] {
                config_load_string(moe::test::read_file(p), "malformed/" + name + ".yaml",
                                   overrides);
            });
            std::string got_text, expected_text;
            for (const std::string& l : got) got_text += l + "\n";
            for (const std::string& l : expected) expected_text += l + "\n";
            CHECK_MESSAGE(got == expected, "\n--- expected\n"
                                               << expected_text << "--- got\n"
                                               << got_text);
        }
    }

}  // TEST_SUITE
