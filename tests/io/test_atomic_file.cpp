// write_file_atomic: content, replacement, no leftover temporaries, errors naming the path.
#include "io/atomic_file.h"

#include "config/config_error.h"
#include "io_test_util.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

using moe::test::io_scratch;
using moe::test::slurp;

namespace {

std::vector<std::string> names_in(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        names.push_back(e.path().filename().string());
    return names;
}

}  // namespace

TEST_SUITE("io") {
    TEST_CASE("write_file_atomic writes and replaces a file, leaving no temporary") {
        const auto dir = io_scratch("atomic");
        const auto path = dir / "summary.csv";
        moe::write_file_atomic(path, "a,b\n1,2\n");
        CHECK(slurp(path) == "a,b\n1,2\n");
        moe::write_file_atomic(path, "a,b\n3,4\n");
        CHECK(slurp(path) == "a,b\n3,4\n");
        moe::write_file_atomic(path, "");
        CHECK(slurp(path).empty());
        CHECK(names_in(dir) == std::vector<std::string>{"summary.csv"});
    }

    TEST_CASE("write_file_atomic: failure is a UserError with the path and the reason") {
        const auto dir = io_scratch("atomic_fail");
        const auto path = dir / "missing" / "config.yaml";
        try {
            moe::write_file_atomic(path, "x: 1\n");
            FAIL("expected a UserError");
        } catch (const moe::UserError& e) {
            const std::string msg = e.what();
            CHECK(msg.find(path.string()) != std::string::npos);
            CHECK(msg.find("No such file or directory") != std::string::npos);
        }
        // a directory in the way of the rename
        std::filesystem::create_directories(dir / "taken");
        CHECK_THROWS_AS(moe::write_file_atomic(dir / "taken", "x"), moe::UserError);
        CHECK(names_in(dir) == std::vector<std::string>{"taken"});  // temporary removed
    }

    TEST_CASE("is_atomic_temp_name") {
        CHECK(moe::is_atomic_temp_name(".summary.csv.tmp-1234-0"));
        CHECK(moe::is_atomic_temp_name(".config.yaml.tmp-1-17"));
        CHECK_FALSE(moe::is_atomic_temp_name("summary.csv"));
        CHECK_FALSE(moe::is_atomic_temp_name("summary.csv.tmp-1-2"));  // no leading dot
        CHECK_FALSE(moe::is_atomic_temp_name(".notes.tmp-x-1"));
        CHECK_FALSE(moe::is_atomic_temp_name(".notes.tmp-12"));
        CHECK_FALSE(moe::is_atomic_temp_name(".notes.tmp-12-"));
    }

}  // TEST_SUITE
