// CsvWriter: RFC 4180 quoting, shortest round-trip numbers, empty cells for undefined values,
// whole rows on flush, append (resume) and its checks.
#include "io/csv_writer.h"

#include "config/config_error.h"
#include "io/io_error.h"
#include "io_test_util.h"

#include <sys/resource.h>

#include <csignal>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using moe::CsvCell;
using moe::CsvMode;
using moe::CsvWriter;
using moe::test::io_scratch;
using moe::test::slurp;
using moe::test::spit;

TEST_SUITE("io") {
    TEST_CASE("csv_quote follows RFC 4180") {
        CHECK(moe::csv_quote("plain") == "plain");
        CHECK(moe::csv_quote("") == "");
        CHECK(moe::csv_quote("a,b") == "\"a,b\"");
        CHECK(moe::csv_quote("say \"hi\"") == "\"say \"\"hi\"\"\"");
        CHECK(moe::csv_quote("two\nlines") == "\"two\nlines\"");
        CHECK(moe::csv_quote("cr\r") == "\"cr\r\"");
        CHECK(moe::csv_quote("\"") == "\"\"\"\"");
        CHECK(moe::csv_quote("router.type=topk;k=2") == "router.type=topk;k=2");
    }

    TEST_CASE("CsvCell formats numbers, strings and undefined values") {
        CHECK(CsvCell(3.0).text() == "3");
        CHECK(CsvCell(0.1).text() == "0.1");
        CHECK(CsvCell(0.1f).text() == "0.1");
        CHECK(CsvCell(-2.5).text() == "-2.5");
        CHECK(CsvCell(42).text() == "42");
        CHECK(CsvCell(int64_t{-7}).text() == "-7");
        CHECK(CsvCell(std::numeric_limits<int64_t>::max()).text() == "9223372036854775807");
        CHECK(CsvCell(uint8_t{200}).text() == "200");
        CHECK(CsvCell(std::numeric_limits<uint64_t>::max()).text() == "18446744073709551615");
        CHECK(CsvCell(true).text() == "true");
        CHECK(CsvCell(std::numeric_limits<double>::quiet_NaN()).text().empty());
        CHECK(CsvCell(std::numeric_limits<float>::quiet_NaN()).text().empty());
        CHECK(CsvCell(std::numeric_limits<double>::infinity()).text() == "inf");
        CHECK(CsvCell(std::optional<double>{}).text().empty());
        CHECK(CsvCell(std::optional<double>{2.5}).text() == "2.5");
        CHECK(CsvCell(std::optional<int64_t>{12}).text() == "12");
        CHECK(CsvCell().text().empty());
        CHECK(CsvCell("train").text() == "train");
        CHECK(CsvCell(std::string("a,b")).text() == "\"a,b\"");
    }

    TEST_CASE("numbers round-trip exactly through their text") {
        const std::vector<double> doubles = {1.0 / 3.0,
                                             std::numbers::pi,
                                             1e300,
                                             -1e-300,
                                             5e-324,
                                             0.1 + 0.2,
                                             1e16,
                                             123456789.123456789,
                                             -0.0,
                                             2.5e-8,
                                             std::numeric_limits<double>::max()};
        for (double v : doubles) {
            const std::string t = CsvCell(v).text();
            CAPTURE(t);
            CHECK(std::strtod(t.c_str(), nullptr) == v);
            CHECK(std::signbit(std::strtod(t.c_str(), nullptr)) == std::signbit(v));
        }
        const std::vector<float> floats = {0.1f, 1.0f / 3.0f, 3.4e38f, 1e-45f, -7.25f, 16777217.0f};
        for (float v : floats) {
            const std::string t = CsvCell(v).text();
            CAPTURE(t);
            CHECK(std::strtof(t.c_str(), nullptr) == v);
        }
    }

    TEST_CASE("CsvWriter writes the header at once and rows only on flush") {
        const auto dir = io_scratch("csv_rows");
        const auto path = dir / "layers.csv";
        {
            CsvWriter w(path, {"step", "split", "note", "max_vio", "spec_nmi"});
            CHECK(w.is_open());
            CHECK(slurp(path) == "step,split,note,max_vio,spec_nmi\n");
            w.write_row({100, "train", "a,b", 0.25, std::numeric_limits<double>::quiet_NaN()});
            w.write_row({200, "eval", "say \"x\"", 1.0 / 3.0, 0.5});
            // buffered: nothing but the header on disk yet
            CHECK(slurp(path) == "step,split,note,max_vio,spec_nmi\n");
            w.flush();
            CHECK(slurp(path) ==
                  "step,split,note,max_vio,spec_nmi\n"
                  "100,train,\"a,b\",0.25,\n"
                  "200,eval,\"say \"\"x\"\"\",0.3333333333333333,0.5\n");
            CHECK(w.rows_written() == 2);
            // a dynamic row
            std::vector<CsvCell> row;
            row.emplace_back(300);
            row.emplace_back("eval");
            row.emplace_back();
            row.emplace_back(2.0);
            row.emplace_back(std::optional<double>{});
            w.write_row(row);
            w.close();
            CHECK_FALSE(w.is_open());
        }
        CHECK(slurp(path).ends_with("\n300,eval,,2,\n"));
    }

    TEST_CASE("CsvWriter rejects a row of the wrong width") {
        const auto dir = io_scratch("csv_width");
        CsvWriter w(dir / "m.csv", {"a", "b"});
        CHECK_THROWS_AS(w.write_row({1}), std::logic_error);
        CHECK_THROWS_AS(w.write_row({1, 2, 3}), std::logic_error);
        w.write_row({1, 2});
        w.close();
        CHECK(slurp(dir / "m.csv") == "a,b\n1,2\n");
    }

    TEST_CASE("CsvWriter flushes on destruction and truncates on a new open") {
        const auto dir = io_scratch("csv_truncate");
        const auto path = dir / "m.csv";
        {
            CsvWriter w(path, {"a"});
            w.write_row({1});
        }
        CHECK(slurp(path) == "a\n1\n");
        {
            CsvWriter w(path, {"a"});  // truncate is the default
        }
        CHECK(slurp(path) == "a\n");
    }

    TEST_CASE("CsvWriter is movable") {
        const auto dir = io_scratch("csv_move");
        CsvWriter a(dir / "m.csv", {"x"});
        a.write_row({1});
        CsvWriter b(std::move(a));
        CHECK_FALSE(a.is_open());
        b.write_row({2});
        CsvWriter c;
        c = std::move(b);
        c.close();
        CHECK(slurp(dir / "m.csv") == "x\n1\n2\n");
    }

    TEST_CASE("CsvWriter append: resumes after the last whole row") {
        const auto dir = io_scratch("csv_append");
        const auto path = dir / "m.csv";
        // a file cut in the middle of its third row by a kill
        spit(path, "step,loss\n1,0.5\n2,0.25\n3,0.1");
        {
            CsvWriter w(path, {"step", "loss"}, CsvMode::append);
            CHECK(slurp(path) == "step,loss\n1,0.5\n2,0.25\n");
            w.write_row({3, 0.125});
        }
        CHECK(slurp(path) == "step,loss\n1,0.5\n2,0.25\n3,0.125\n");

        // a missing file is created with its header
        { CsvWriter w(dir / "new.csv", {"step", "loss"}, CsvMode::append); }
        CHECK(slurp(dir / "new.csv") == "step,loss\n");

        // a file with only a partial header line is rejected (its header cannot be checked)
        spit(dir / "bad.csv", "step,lo");
        CHECK_THROWS_AS(CsvWriter(dir / "bad.csv", {"step", "loss"}, CsvMode::append),
                        moe::UserError);
    }

    TEST_CASE("CsvWriter append: refuses a different header") {
        const auto dir = io_scratch("csv_header");
        const auto path = dir / "m.csv";
        spit(path, "step,loss\n1,0.5\n");
        try {
            CsvWriter w(path, {"step", "accuracy"}, CsvMode::append);
            FAIL("expected a UserError");
        } catch (const moe::UserError& e) {
            const std::string msg = e.what();
            CHECK(msg.find(path.string()) != std::string::npos);
            CHECK(msg.find("header") != std::string::npos);
        }
        CHECK(slurp(path) == "step,loss\n1,0.5\n");  // untouched
    }

    TEST_CASE("CsvWriter: an unwritable path is a UserError naming it") {
        const auto dir = io_scratch("csv_missing_dir");
        const auto path = dir / "no" / "such" / "m.csv";
        try {
            CsvWriter w(path, {"a"});
            FAIL("expected a UserError");
        } catch (const moe::UserError& e) {
            const std::string msg = e.what();
            CHECK(msg.find(path.string()) != std::string::npos);
            CHECK(msg.find("No such file or directory") != std::string::npos);
        }
    }

    // A file size limit (RLIMIT_FSIZE) makes write() behave as on a full disk without root or a
    // small file system: a write that crosses the limit is cut short, the next one fails (EFBIG).
    namespace {
    struct FileSizeLimit {
        rlimit saved{};
        void (*saved_handler)(int) = nullptr;
        explicit FileSizeLimit(rlim_t bytes) {
            getrlimit(RLIMIT_FSIZE, &saved);
            saved_handler = std::signal(SIGXFSZ, SIG_IGN);  // else the process is killed
            rlimit lim = saved;
            lim.rlim_cur = bytes;
            setrlimit(RLIMIT_FSIZE, &lim);
        }
        ~FileSizeLimit() {
            setrlimit(RLIMIT_FSIZE, &saved);
            std::signal(SIGXFSZ, saved_handler);
        }
    };
    }  // namespace

    TEST_CASE("CsvWriter: a write that fails midway leaves the file ending at its last whole row") {
        const auto path = io_scratch("csv_full") / "experts.csv";
        // header (23 bytes) + first flush (2 rows of 16 bytes) fit; the second flush crosses 70 bytes.
        const std::string head = "step,expert,load_share\n";
        REQUIRE(head.size() == 23);
        CsvWriter w(path, {"step", "expert", "load_share"});
        w.write_row({100, 0, 0.1234567});
        w.write_row({100, 1, 0.8765432});
        w.flush();
        const std::string good = slurp(path);
        REQUIRE(good.size() == 55);
        {
            FileSizeLimit limit(70);
            for (int e = 0; e < 4; ++e) w.write_row({200, e, 0.25});
            try {
                w.flush();
                FAIL("expected an IoError");
            } catch (const moe::IoError& e) {
                const std::string msg = e.what();
                CHECK(msg.find(path.string()) != std::string::npos);
                CHECK(msg.find("last whole row") != std::string::npos);
            }
        }
        CHECK_FALSE(w.is_open());
        CHECK(slurp(path) == good);  // not a byte of the half row
        w.flush();                   // closed: nothing more is written
        w.close();
        CHECK(slurp(path) == good);
    }

    TEST_CASE("CsvWriter: a full device is an IoError naming it") {
        if (!std::filesystem::exists("/dev/full")) return;
        try {
            CsvWriter w("/dev/full", {"a", "b"});
            FAIL("expected an IoError");
        } catch (const moe::IoError& e) {
            const std::string msg = e.what();
            CHECK(msg.find("/dev/full") != std::string::npos);
            CHECK(msg.find("No space left on device") != std::string::npos);
        }
    }

}  // TEST_SUITE
