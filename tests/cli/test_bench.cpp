// `moe-sim bench`: it runs, its CSV has the documented columns, and its FLOP count matches a
// count by hand. No timing assertions (timings depend on the machine and its load).
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "cli/bench_flops.h"
#include "config/config_load.h"
#include "support/process.h"

using moe::test::run_moesim;
using moe::test::source_path;

namespace {

const std::string kTinyBench = "'" + source_path("configs/bench/tiny.yaml") + "'";
const char* kHeader =
    "experts.count,router.k,experts.d_ff,model.d_model,train.batch_size,threads,"
    "ms_per_step_median,ms_per_step_min,ms_per_step_max,tokens_per_s,gflop_per_step,gflops,"
    "optimizer_ms,optimizer_gbs,peak_gflops,pct_of_peak,stream_gbs,optimizer_pct_of_stream";

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string f;
    while (std::getline(ss, f, sep)) out.push_back(f);
    if (!s.empty() && s.back() == sep) out.emplace_back();  // an empty last cell
    return out;
}

std::vector<std::string> lines_of(const std::string& s) {
    std::vector<std::string> out;
    for (const std::string& l : split(s, '\n'))
        if (!l.empty()) out.push_back(l);
    return out;
}

}  // namespace

TEST_SUITE("bench") {
    TEST_CASE("bench --csv on tiny prints the header and one row") {
        auto r = run_moesim("bench " + kTinyBench + " --steps 2 --warmup 1 --csv --threads 1");
        REQUIRE(r.code == 0);
        const auto lines = lines_of(r.output);
        REQUIRE(lines.size() == 2);
        CHECK(lines[0] == kHeader);
        const auto cols = split(lines[1], ',');
        REQUIRE(cols.size() == 18);
        CHECK(cols[0] == "8");     // experts.count
        CHECK(cols[1] == "2");     // router.k
        CHECK(cols[2] == "64");    // experts.d_ff
        CHECK(cols[3] == "32");    // model.d_model
        CHECK(cols[4] == "1024");  // train.batch_size
        CHECK(cols[5] == "1");     // threads (--threads 1)
        const double med = std::stod(cols[6]), mn = std::stod(cols[7]), mx = std::stod(cols[8]);
        CHECK(mn > 0.0);
        CHECK(mn <= med);
        CHECK(med <= mx);
        CHECK(std::stod(cols[9]) > 0.0);
        // Counted FLOPs lie between "every assignment dropped" and "none dropped" (T*k = 2048).
        const moe::Config cfg = moe::config_load_file(source_path("configs/bench/tiny.yaml"));
        const double lo = moe::bench_flops(cfg, 32, 16, 1024, 0.0).total() * 1e-9;
        const double hi = moe::bench_flops(cfg, 32, 16, 1024, 2048.0).total() * 1e-9;
        const double gflop = std::stod(cols[10]);
        CHECK(gflop > lo);
        CHECK(gflop <= hi + 1e-6);
        CHECK(std::stod(cols[11]) > 0.0);
        CHECK(std::stod(cols[12]) > 0.0);                              // optimizer_ms
        CHECK(std::stod(cols[13]) > 0.0);                              // optimizer_gbs
        for (int c = 14; c < 18; ++c) CHECK(cols[size_t(c)].empty());  // no --ceiling
    }

    TEST_CASE(
        "bench --ceiling: the machine's limits, and the step and optimizer as shares of them") {
        auto alone = run_moesim("bench --ceiling --threads 1");
        REQUIRE(alone.code == 0);
        CHECK(alone.output.find("FP32 FMA peak") != std::string::npos);
        CHECK(alone.output.find("STREAM triad") != std::string::npos);
        auto r =
            run_moesim("bench " + kTinyBench + " --steps 2 --warmup 1 --csv --threads 1 --ceiling");
        REQUIRE(r.code == 0);
        const auto lines = lines_of(r.output);
        REQUIRE(lines.size() == 2);
        const auto cols = split(lines[1], ',');
        REQUIRE(cols.size() == 18);
        const double gflops = std::stod(cols[11]), opt_gbs = std::stod(cols[13]);
        const double peak = std::stod(cols[14]), pct = std::stod(cols[15]);
        const double stream = std::stod(cols[16]), opt_pct = std::stod(cols[17]);
        CHECK(peak > 0.0);
        CHECK(stream > 0.0);
        // the percentages are the ratios of the printed figures (to their rounding)
        CHECK(pct == doctest::Approx(100.0 * gflops / peak).epsilon(0.02));
        CHECK(opt_pct == doctest::Approx(100.0 * opt_gbs / stream).epsilon(0.02));
        auto report =
            run_moesim("bench " + kTinyBench + " --steps 1 --warmup 0 --threads 1 --ceiling");
        REQUIRE(report.code == 0);
        CHECK(report.output.find("% of the FMA peak of 1 thread(s)") != std::string::npos);
        CHECK(report.output.find("% of the STREAM triad over the same bytes") != std::string::npos);
        CHECK(report.output.find("machine:") != std::string::npos);
    }

    TEST_CASE("bench overrides and the human-readable report") {
        auto r =
            run_moesim("bench " + kTinyBench + " experts.count=4 --steps 1 --warmup 0 --threads 1");
        REQUIRE(r.code == 0);
        CHECK(r.output.find("4 experts") != std::string::npos);
        CHECK(r.output.find("ms per step:") != std::string::npos);
        CHECK(r.output.find("GFLOP/s:") != std::string::npos);
        CHECK(r.output.find("peak RSS") != std::string::npos);
    }

    TEST_CASE("bench usage and config errors exit 2") {
        auto none = run_moesim("bench");
        CHECK(none.code == 2);
        CHECK(none.output.find("a config file is needed (or --ceiling alone") != std::string::npos);
        CHECK(run_moesim("bench " + kTinyBench + " --steps 0").code == 2);
        CHECK(run_moesim("bench " + kTinyBench + " router.kk=1 --steps 1").code == 2);
        CHECK(run_moesim("bench /nonexistent/bench.yaml").code == 2);
    }

    TEST_CASE("FLOP count of the tiny bench config, by hand") {
        const moe::Config cfg = moe::config_load_file(source_path("configs/bench/tiny.yaml"));
        // T = 1024 tokens, Din = 32, D = 32, H = 64 (gelu), N = 8, C = 16; A = 2000 kept assignments.
        const moe::BenchFlops f = moe::bench_flops(cfg, 32, 16, 1024, 2000.0);
        CHECK(f.embed == doctest::Approx(2.0 * 2 * 1024 * 32 * 32));  // fwd + dW only
        CHECK(f.router == doctest::Approx(3.0 * 2 * 1024 * 32 * 8));
        CHECK(f.experts == doctest::Approx(3.0 * (2.0 * 2000 * 32 * 64 + 2.0 * 2000 * 64 * 32)));
        CHECK(f.shared == 0.0);
        CHECK(f.dense == 0.0);
        CHECK(f.head == doctest::Approx(3.0 * 2 * 1024 * 32 * 16));
        CHECK(f.total() == doctest::Approx(58064896.0));  // 4194304 + 1572864 + 49152000 + 3145728
    }

    TEST_CASE("FLOP count with swiglu, a shared expert and a dense block, by hand") {
        moe::Config cfg;
        cfg.model.d_model = 4;
        cfg.model.layers = 2;
        cfg.model.moe_every = 2;  // block 0 dense FFN, block 1 MoE
        cfg.experts.count = 6;
        cfg.experts.d_ff = 5;
        cfg.experts.activation = moe::Activation::swiglu;  // W1 is D x 2H
        cfg.experts.shared = 1;
        // T = 10, Din = 3, C = 7, A = 15
        const moe::BenchFlops f = moe::bench_flops(cfg, 3, 7, 10, 15.0);
        CHECK(f.embed == doctest::Approx(480.0));     // 2 * 2*10*3*4
        CHECK(f.router == doctest::Approx(1440.0));   // 3 * 2*10*4*6
        CHECK(f.experts == doctest::Approx(5400.0));  // 3 * (2*15*4*10 + 2*15*5*4)
        CHECK(f.shared == doctest::Approx(3600.0));   // 3 * (2*10*4*10 + 2*10*5*4)
        CHECK(f.dense == doctest::Approx(3600.0));    // same shapes as the shared expert
        CHECK(f.head == doctest::Approx(1680.0));     // 3 * 2*10*4*7
        CHECK(f.total() == doctest::Approx(16200.0));
        // the router head's products: learned noise doubles the logits; the cosine head is
        // x Wp (D x d) then the cosines against the L embeddings (d each)
        cfg.router.topk.noise = moe::TopkNoise::learned;
        CHECK(moe::bench_flops(cfg, 3, 7, 10, 15.0).router == doctest::Approx(2880.0));
        cfg.router.topk.noise = moe::TopkNoise::fixed;
        cfg.router.head = moe::RouterHeadKind::cosine;
        cfg.router.cosine.dim = 3;
        // 3 * (2*10*4*3 + 2*10*3*6) = 3 * (240 + 360)
        CHECK(moe::bench_flops(cfg, 3, 7, 10, 15.0).router == doctest::Approx(1800.0));
    }

    TEST_CASE("FLOP count of the transformer, by hand") {
        moe::Config cfg;
        cfg.data.task = moe::TaskKind::markov;
        cfg.data.markov.seq_len = 5;  // S = 4 positions
        cfg.model.kind = moe::ModelKind::transformer;
        cfg.model.d_model = 4;
        cfg.model.heads = 2;
        cfg.model.layers = 2;
        cfg.experts.count = 6;
        cfg.experts.d_ff = 5;
        // T = 8 tokens (2 sequences), Din = 3 (unused), C = 7, A = 16
        const moe::BenchFlops f = moe::bench_flops(cfg, 3, 7, 8, 16.0);
        CHECK(f.embed == 0.0);                     // lookups, no products
        CHECK(f.head == doctest::Approx(1344.0));  // 3 * 2*8*4*7
        // per block: projections 3 * (2*8*4*12 + 2*8*4*4) = 3072; scores and P v: per sequence
        // and head 1+2+3+4 = 10 dots of 2 values, 2 products, 3 passes: 3 * 2 * (2*2*10*2*2)
        // = 960; two blocks
        CHECK(f.attention == doctest::Approx(2.0 * (3072.0 + 960.0)));
        CHECK(f.total() == doctest::Approx(f.router + f.experts + f.head + 8064.0));
        // and the bench runs a transformer config, reporting the attention part
        auto r = run_moesim("bench '" + source_path("configs/markov_transformer.yaml") +
                            "' --steps 1 --warmup 0 --threads 1");
        REQUIRE(r.code == 0);
        CHECK(r.output.find("and attention") != std::string::npos);
    }

    TEST_CASE("FLOP count of the dense routers, by hand") {
        moe::Config cfg;
        cfg.model.d_model = 4;
        cfg.model.layers = 1;
        cfg.experts.count = 3;
        cfg.experts.d_ff = 5;
        cfg.experts.activation = moe::Activation::relu;
        // soft: every token on every expert: the caller's A = T * N = 30 for T = 10
        cfg.router.type = moe::RouterType::soft;
        moe::BenchFlops f = moe::bench_flops(cfg, 3, 7, 10, 30.0);
        CHECK(f.router == doctest::Approx(720.0));    // 3 * 2*10*4*3
        CHECK(f.experts == doctest::Approx(7200.0));  // 3 * (2*30*4*5 + 2*30*5*4)
        // soft_slots, S = 2: 6 logits per token; A = N*S = 6 slot rows; dispatch Xs = Dᵀ x and
        // combine y = C Ys are (T, 6) by (., 4) products, 3 * 2*10*6*4 each
        cfg.router.type = moe::RouterType::soft_slots;
        cfg.router.soft_slots.slots = 2;
        f = moe::bench_flops(cfg, 3, 7, 10, 6.0);
        CHECK(f.router == doctest::Approx(1440.0 + 2 * 1440.0));  // 3 * 2*10*4*6, + the two
        CHECK(f.experts == doctest::Approx(1440.0));              // 3 * (2*6*4*5 + 2*6*5*4)
    }

}  // TEST_SUITE
