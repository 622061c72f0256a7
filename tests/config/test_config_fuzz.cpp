// A deterministic mutation fuzzer over the config loader and the override parser (no libFuzzer:
// it runs in every CI build, release and asan, as one CTest test). Seeds: the malformed corpus
// (tests/config/malformed/*.yaml), the bundled configs (configs/**.yaml) and the resolved YAML of
// two configs. Each iteration mutates a seed (byte flips, insertions of bytes and YAML tokens,
// deletions, duplications, token swaps, truncations, splices of another seed's lines) and draws
// 0-3 overrides (a key of the schema or a mutated one, a value from a dictionary or mutated,
// spaces and missing '=' included), then loads them. What must hold:
// - nothing crashes, and nothing is thrown but UserError (a std::logic_error, a YAML::Exception
//   or a std::bad_alloc is a bug);
// - every diagnostic is one line and names a place (a file or an override) or a key;
// - a config that loads is legal (config_validate), and loading is idempotent: config_to_yaml of
//   it loads again to the same Config and the same text.
// The seed and the number of iterations are fixed; MOESIM_FUZZ_ITERATIONS and MOESIM_FUZZ_SEED
// run it longer or elsewhere, and MOESIM_FUZZ_TRACE=1 prints each input before it is loaded
// (to find the one that crashes).
#include "config/config_load.h"

#include "config_test_util.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <string_view>
#include <vector>

using namespace moe;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kSeed = 20240617;
constexpr int kIterations = 3000;
constexpr size_t kMaxText = 16 * 1024;  // mutations stop growing a text past this

// splitmix64: small, fast, the same everywhere.
struct Rng {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return n == 0 ? 0 : size_t(next() % n); }
    bool one_in(size_t n) { return below(n) == 0; }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[below(v.size())];
    }
};

// YAML syntax and values that the loader has to tell apart.
// clang-format off
const std::vector<std::string> kTokens = {
    ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "#", " #", "'", "\"", "|", ">", "|-", ">+",
    "&a ", "*a", "!", "!!str ", "!!int ", "!foo ", "? ", "<<: ", "~", "null", "---\n", "...\n",
    "\n", "\n  ", "  ", "\t", "\r\n", "\\", "%YAML 1.2\n", "@", "`", "\xef\xbb\xbf", "\xff",
    std::string(1, '\0'), "\xc3\xa9", "\xe2\x80\xa8", "true", "True", "FALSE", "yes", "on", "0",
    "-0", "+3", "007", "0x10", "1e400", "1e-400", "-1e999", ".inf", "-.inf", ".nan", "1.5", ".5",
    "5.", "1e3", "99999999999999999999", "-9223372036854775809", "18446744073709551616",
    "0.30000000000000004", "topk", "expert_choice", "sigmoid", "auto", "shazeer", "none", "cuda",
    "router", "train", "experts", "k", "steps", "eval_every", "log_every", "count", "lr",
    "sweep", "name", "seed", "data", "clusters",
};
// clang-format on

std::vector<std::string> override_values() {
    // clang-format off
    std::vector<std::string> v = {
        "", "1", "0", "-1", "3", "+3", "64", "65", "1e400", "1e-400", "0.5", ".inf", "nan",
        "true", "True", "false", "auto", "topk", "softmax", "[1, 2]", "{k: 1}", "{k: 1, kk: 2}",
        "{", "[", "'x'", "\"3\"", "|\n  3", "> \n  x", "&a 3", "*a", "!!str 3", "~", "null",
        " 3", "3 ", "a=b", "=", "==", "#", "- 1", "99999999999999999999", "x\n- y", "\xff",
        std::string(200, '['), std::string(300, 'x'),
    };
    // clang-format on
    return v;
}

// A legal value of every key (from two configs), so that overrides often load.
std::vector<std::string> legal_override(const std::string& key) {
    std::vector<std::string> out;
    for (const Config& c : {Config{}, moe::test::nontrivial_config()})
        out.push_back(key + "=" + config_value_string(c, key));
    return out;
}

std::vector<std::string> override_keys() {
    std::vector<std::string> keys = config_keys();
    for (const char* s :
         {"router", "train", "data", "data.clusters", "sweep", "router.kk", "Router.k", "router..k",
          ".router.k", "router.k.", "", " router.k", "router.k ", "train.lr\n", "experts.count=2"})
        keys.push_back(s);
    return keys;
}

// Splits text into tokens: runs of [A-Za-z0-9_.+-] and single other bytes.
std::vector<std::string> tokens_of(const std::string& text) {
    auto word = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '+' || c == '-';
    };
    std::vector<std::string> out;
    for (size_t i = 0; i < text.size();) {
        size_t j = i + 1;
        if (word(text[i]))
            while (j < text.size() && word(text[j])) ++j;
        out.push_back(text.substr(i, j - i));
        i = j;
    }
    return out;
}

void mutate_text(Rng& rng, std::string& text, const std::vector<std::string>& seeds) {
    size_t n = text.size();
    switch (rng.below(10)) {
        case 0:  // flip one bit
            if (n) text[rng.below(n)] ^= char(1u << rng.below(8));
            break;
        case 1:  // insert a byte
            text.insert(rng.below(n + 1), 1, char(rng.below(256)));
            break;
        case 2:  // insert a YAML token
            text.insert(rng.below(n + 1), rng.pick(kTokens));
            break;
        case 3: {  // replace the value after a ':' with a token
            size_t colon = text.find(": ", rng.below(n + 1));
            if (colon == std::string::npos) break;
            size_t end = text.find('\n', colon);
            if (end == std::string::npos) end = text.size();
            text.replace(colon + 2, end - colon - 2, rng.pick(kTokens));
            break;
        }
        case 4:  // delete a range
            if (n) text.erase(rng.below(n), 1 + rng.below(16));
            break;
        case 5: {  // duplicate a range (a line or two, usually)
            if (!n) break;
            size_t from = rng.below(n);
            text.insert(rng.below(n + 1), text.substr(from, 1 + rng.below(48)));
            break;
        }
        case 6: {  // swap two tokens
            std::vector<std::string> t = tokens_of(text);
            if (t.size() < 2) break;
            std::swap(t[rng.below(t.size())], t[rng.below(t.size())]);
            text.clear();
            for (const std::string& s : t) text += s;
            break;
        }
        case 7:  // truncate
            text.resize(rng.below(n + 1));
            break;
        case 8: {  // splice in lines of another seed
            const std::string& other = rng.pick(seeds);
            if (other.empty()) break;
            size_t from = rng.below(other.size());
            size_t at = text.rfind('\n', rng.below(n + 1));
            text.insert(at == std::string::npos ? 0 : at + 1, other.substr(from, rng.below(200)));
            break;
        }
        case 9: {  // change the indentation of a line
            size_t line = text.rfind('\n', rng.below(n + 1));
            size_t at = line == std::string::npos ? 0 : line + 1;
            if (rng.one_in(2))
                text.insert(at, std::string(1 + rng.below(3), ' '));
            else if (at < text.size() && text[at] == ' ')
                text.erase(at, 1 + rng.below(2));
            break;
        }
    }
    if (text.size() > kMaxText) text.resize(kMaxText);
}

std::string make_override(Rng& rng, const std::vector<std::string>& keys,
                          const std::vector<std::string>& values,
                          const std::vector<std::string>& legal) {
    std::string o;
    if (rng.one_in(2)) {
        o = rng.pick(legal);
    } else {
        o = rng.pick(keys);
        if (!rng.one_in(12)) o += "=";
        o += rng.pick(values);
    }
    int edits = rng.one_in(3) ? 1 + int(rng.below(3)) : 0;
    for (int e = 0; e < edits; ++e) {
        size_t n = o.size();
        switch (rng.below(4)) {
            case 0:
                if (n) o[rng.below(n)] ^= char(1u << rng.below(8));
                break;
            case 1:
                o.insert(rng.below(n + 1), rng.pick(kTokens));
                break;
            case 2:
                if (n) o.erase(rng.below(n), 1 + rng.below(4));
                break;
            case 3:
                o.insert(rng.below(n + 1), rng.one_in(2) ? " " : "=");
                break;
        }
    }
    return o;
}

// Text shown in a failure message: one line, control and non-ASCII bytes as \xNN.
std::string escaped(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\')
            out += '\\', out += char(c);
        else if (c >= 0x20 && c < 0x7F)
            out += char(c);
        else
            out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    }
    return out;
}

// The input of one iteration, printable on one line.
std::string describe(const std::string& text, const std::vector<std::string>& overrides) {
    std::string out = "text \"" + escaped(text) + "\"";
    for (const std::string& o : overrides) out += " override \"" + escaped(o) + "\"";
    return out;
}

struct Seeds {
    std::vector<std::string> all;
    std::vector<std::string> valid;  // those that load: the bundled configs, the resolved YAMLs
};

Seeds seed_texts() {
    Seeds out;
    std::vector<std::string>& seeds = out.all;
    const fs::path src(MOESIM_SOURCE_DIR);
    std::vector<fs::path> files;
    for (const fs::directory_entry& e : fs::directory_iterator(src / "tests/config/malformed"))
        if (e.path().extension() == ".yaml") files.push_back(e.path());
    for (const fs::directory_entry& e : fs::recursive_directory_iterator(src / "configs"))
        if (e.path().extension() == ".yaml") files.push_back(e.path());
    std::sort(files.begin(), files.end());  // directory order differs between machines
    for (const fs::path& p : files) seeds.push_back(moe::test::read_file(p));
    seeds.push_back(config_to_yaml(Config{}));
    seeds.push_back(config_to_yaml(moe::test::nontrivial_config()));
    for (const std::string& text : seeds) {
        try {
            config_load_string(text, "seed.yaml");
            out.valid.push_back(text);
        } catch (const UserError&) {
        }
    }
    return out;
}

// Checks one UserError: diagnostics, one line each, each naming a place or a key.
std::string user_error_problem(const UserError& e) {
    const std::vector<Diagnostic>& ds = e.diagnostics();
    if (ds.empty()) return "a UserError without a diagnostic";
    for (const Diagnostic& d : ds) {
        const std::string line = d.format();
        if (line.find_first_of("\n\r") != std::string::npos)
            return "a diagnostic of more than one line: " + escaped(line);
        if (d.file.empty() && d.key.empty())
            return "a diagnostic that names no place and no key: " + escaped(line);
        if (d.message.empty()) return "a diagnostic without a message: " + escaped(line);
    }
    return {};
}

// Runs f; returns "" when it returns or throws a proper UserError (`refused` says which), else
// what went wrong.
template <class F>
std::string run_checked(F&& f, bool& refused) {
    refused = false;
    try {
        f();
        return {};
    } catch (const UserError& e) {
        refused = true;
        return user_error_problem(e);
    } catch (const std::bad_alloc&) {
        return "std::bad_alloc";
    } catch (const std::exception& e) {
        return std::string("an exception that is not a UserError: ") + e.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

uint64_t env_or(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

}  // namespace

TEST_SUITE("config") {
    TEST_CASE(
        "fuzz: mutated configs and overrides load or give one-line UserErrors, and round-trip") {
        const Seeds seeds = seed_texts();
        REQUIRE(seeds.all.size() >= 30);
        REQUIRE(seeds.valid.size() >= 5);
        const std::vector<std::string> keys = override_keys();
        const std::vector<std::string> values = override_values();
        std::vector<std::string> legal;
        for (const std::string& k : config_keys())
            for (std::string& o : legal_override(k)) legal.push_back(std::move(o));
        const uint64_t seed = env_or("MOESIM_FUZZ_SEED", kSeed);
        const int iterations = int(env_or("MOESIM_FUZZ_ITERATIONS", kIterations));
        const bool trace = env_or("MOESIM_FUZZ_TRACE", 0) != 0;
        Rng rng{seed};
        int loaded = 0, refused = 0, failures = 0;
        auto fail = [&](int i, const std::string& what, const std::string& input) {
            if (++failures <= 10)
                FAIL_CHECK("iteration " << i << " (MOESIM_FUZZ_SEED=" << seed << "): " << what
                                        << "\n  input: " << input);
        };
        auto draw_overrides = [&] {
            std::vector<std::string> out;
            size_t n = rng.one_in(2) ? 0 : 1 + rng.below(3);
            for (size_t o = 0; o < n; ++o) out.push_back(make_override(rng, keys, values, legal));
            return out;
        };
        for (int i = 0; i < iterations; ++i) {
            // Half the time a config that loads, changed a little; else any seed, changed more.
            const bool from_valid = rng.one_in(2);
            std::string text = rng.pick(from_valid ? seeds.valid : seeds.all);
            if (rng.one_in(20)) text.clear();
            int mutations = from_valid ? int(rng.below(3)) : 1 + int(rng.below(5));
            for (int m = 0; m < mutations; ++m) mutate_text(rng, text, seeds.all);
            const std::vector<std::string> overrides = draw_overrides();
            const std::string input = describe(text, overrides);
            if (trace) std::fprintf(stderr, "fuzz %d: %s\n", i, input.c_str());

            Config cfg;
            bool was_refused = false;
            std::string problem = run_checked(
                [&] { cfg = config_load_string(text, "fuzz.yaml", overrides); }, was_refused);
            if (!problem.empty()) {
                fail(i, problem, input);
                continue;
            }
            if (was_refused) {
                ++refused;
                continue;
            }
            ++loaded;
            // A loaded config is legal, and loading its resolved YAML gives it back.
            problem = run_checked(
                [&] {
                    config_validate(cfg);
                    const std::string yaml = config_to_yaml(cfg);
                    const Config again = config_load_string(yaml, "resolved.yaml");
                    if (!(again == cfg))
                        fail(i, "the resolved YAML loads to another config", input);
                    if (config_to_yaml(again) != yaml)
                        fail(i, "the resolved YAML is not a fixed point", input);
                },
                was_refused);
            if (!problem.empty() || was_refused)
                fail(i, "the loaded config does not load back: " + problem, input);
            // More overrides on the loaded config, as a sweep applies its axes.
            const std::vector<std::string> more = draw_overrides();
            if (trace) std::fprintf(stderr, "fuzz %d: then %s\n", i, describe("", more).c_str());
            Config swept;
            problem = run_checked([&] { swept = config_apply_overrides(cfg, more, "fuzz.yaml"); },
                                  was_refused);
            if (!problem.empty()) fail(i, problem, input + " then" + describe("", more));
            if (problem.empty() && !was_refused &&
                config_load_string(config_to_yaml(swept), "resolved.yaml") != swept)
                fail(i, "config_apply_overrides gave a config that does not load back",
                     input + " then" + describe("", more));
        }
        MESSAGE("fuzz: " << iterations << " iterations, " << loaded << " loaded, " << refused
                         << " refused, " << failures << " failures");
        CHECK(failures == 0);
        // The mutations reach both sides, so the checks above were exercised.
        if (iterations >= 1000) {
            CHECK(loaded > iterations / 10);
            CHECK(refused > iterations / 3);
        }
    }

}  // TEST_SUITE
