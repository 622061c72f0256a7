// Expanding a sweep into its run list (sweep_plan.h).
#include "sweep/sweep_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>

#include "config/config_error.h"
#include "config/config_load.h"
#include "config/sweep_spec.h"

namespace moe {
namespace {

std::string trim(std::string s) {
    size_t b = s.find_first_not_of(" \t");
    size_t e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string shown(const std::string& s, size_t max = 100) {
    return s.size() <= max ? s : s.substr(0, max) + "...";
}

std::string where(const std::string& file, int line) {
    return line > 0 ? fmt::format("{}:{}", file, line) : file;
}

// A key given somewhere, for the "given twice" check.
struct KeyUse {
    std::string key;
    std::string origin;  // "on the command line", "sweep.grid (cfg.yaml:4)", ...
    Diagnostic at;       // where to report a second use
};

bool overlaps(const std::string& a, const std::string& b) {
    if (a == b) return true;
    auto inside = [](const std::string& sect, const std::string& key) {
        return key.size() > sect.size() && key.compare(0, sect.size(), sect) == 0 &&
               key[sect.size()] == '.';
    };
    return inside(a, b) || inside(b, a);
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

// The value of one swept key in a resolved config, as validate prints it; the override text for
// a whole section.
std::string swept_value(const Config& cfg, const std::string& key, const std::string& given) {
    try {
        return config_value_string(cfg, key);
    } catch (const UserError&) {
        return given;
    }
}

SweepPlan plan_from(const SweepConfigFile& file, const std::vector<std::string>& args) {
    SweepPlan plan;
    plan.config_path = file.label;
    plan.base_text = file.base_text;
    plan.has_sweep_section = file.sweep.present;

    std::vector<Diagnostic> diags;
    std::vector<KeyUse> uses;
    auto use = [&](const std::string& key, const std::string& origin, Diagnostic at) {
        for (const KeyUse& u : uses) {
            if (!overlaps(u.key, key)) continue;
            at.key = key;
            if (u.key != key)
                at.message =
                    fmt::format("given twice: '{}' {} and '{}' {}", u.key, u.origin, key, origin);
            else if (u.origin == origin)
                at.message = fmt::format("given twice {}", origin);
            else
                at.message = fmt::format("given twice: {} and {}", u.origin, origin);
            diags.push_back(std::move(at));
            return false;
        }
        uses.push_back(KeyUse{key, origin, {}});
        return true;
    };

    // 1. The file's grid.
    const SweepSection& sec = file.sweep;
    for (const SweepFileAxis& a : sec.grid) {
        std::string origin = fmt::format("in sweep.grid ({})", where(file.label, a.line));
        if (!use(a.key, origin, Diagnostic{file.label, a.line, a.column, {}, {}})) continue;
        SweepAxis axis{a.key, {}, origin};
        for (const SweepValue& v : a.values) axis.values.push_back(v.text);
        plan.axes.push_back(std::move(axis));
    }

    // 2. The command line.
    for (const std::string& arg : args) {
        const std::string label = fmt::format("override '{}'", shown(arg));
        size_t eq = arg.find('=');
        std::string key = eq == std::string::npos ? std::string() : trim(arg.substr(0, eq));
        if (key.empty()) {
            diags.push_back(Diagnostic{label, 0, 0, {}, "expected KEY=VALUE or KEY=V1,V2,..."});
            continue;
        }
        if (key != arg.substr(0, eq) || trim(arg.substr(eq + 1)) != arg.substr(eq + 1)) {
            // as for run's overrides: a space there is refused, not trimmed silently
            diags.push_back(Diagnostic{
                label, 0, 0, shown(key),
                fmt::format("a space around '=' or at an end of KEY=V1,V2,...; write '{}={}'", key,
                            trim(arg.substr(eq + 1)))});
            continue;
        }
        if (std::string problem = sweep_key_problem(key); !problem.empty()) {
            diags.push_back(Diagnostic{label, 0, 0, shown(key), problem});
            continue;
        }
        const std::string text = arg.substr(eq + 1);
        std::vector<std::string> values = split_axis_values(text);
        bool ok = true;
        if (trim(text).empty()) {
            diags.push_back(Diagnostic{label, 0, 0, key,
                                       "empty value: give a value, or V1,V2,... for an axis"});
            ok = false;
        } else if (std::any_of(values.begin(), values.end(),
                               [](const std::string& v) { return v.empty(); })) {
            diags.push_back(
                Diagnostic{label, 0, 0, key, "an empty value in the list (two commas in a row?)"});
            ok = false;
        }
        for (size_t i = 0; ok && i < values.size(); ++i) {
            std::vector<Diagnostic> d = sweep_check_value(key, values[i], label);
            if (!d.empty()) {
                diags.insert(diags.end(), d.begin(), d.end());
                ok = false;
            }
        }
        if (!use(key, "on the command line", Diagnostic{label, 0, 0, {}, {}}) || !ok) continue;
        if (values.size() == 1) {
            plan.fixed.push_back(key + "=" + values[0]);
        } else {
            plan.axes.push_back(SweepAxis{key, values, "on the command line"});
        }
    }

    // 3. Variants: their keys must not be given anywhere else (they may repeat across variants).
    std::set<std::string> variant_keys_bad;
    for (const SweepFileVariant& v : sec.variants) {
        std::vector<std::pair<std::string, std::string>> settings;
        for (const auto& [key, value] : v.settings) {
            if (std::find(plan.variant_keys.begin(), plan.variant_keys.end(), key) ==
                    plan.variant_keys.end() &&
                !variant_keys_bad.count(key)) {
                std::string origin =
                    fmt::format("in sweep.variants ({})", where(file.label, value.line));
                if (use(key, origin, Diagnostic{file.label, value.line, value.column, {}, {}}))
                    plan.variant_keys.push_back(key);
                else
                    variant_keys_bad.insert(key);
            }
            settings.emplace_back(key, value.text);
        }
        plan.variants.push_back(std::move(settings));
    }

    // 4. Seeds.
    if (sec.has_seeds) {
        std::string origin = fmt::format("in sweep.seeds ({})", where(file.label, sec.seeds.line));
        if (use("seed", origin, Diagnostic{file.label, sec.seeds.line, sec.seeds.column, {}, {}}))
            for (const SweepValue& v : sec.seeds.values) plan.seeds.push_back(v.text);
    }

    // The same value twice on one axis.
    auto twice = [&](const std::string& key, const std::vector<std::string>& values,
                     const std::string& origin) {
        std::set<std::string> seen;
        for (const std::string& v : values)
            if (!seen.insert(v).second)
                diags.push_back(
                    Diagnostic{{},
                               0,
                               0,
                               key,
                               fmt::format("the value {} is given twice {}", shown(v), origin)});
    };
    for (const SweepAxis& a : plan.axes) twice(a.key, a.values, a.origin);
    twice("seed", plan.seeds, "in sweep.seeds");
    if (!diags.empty()) throw UserError(std::move(diags));

    // Swept keys, in axis order.
    for (const SweepAxis& a : plan.axes) plan.swept_keys.push_back(a.key);
    for (const std::string& k : plan.variant_keys) plan.swept_keys.push_back(k);
    if (!plan.seeds.empty()) plan.swept_keys.push_back("seed");

    // The size of the product.
    std::vector<size_t> radix;
    for (const SweepAxis& a : plan.axes) radix.push_back(a.values.size());
    radix.push_back(std::max<size_t>(1, plan.variants.size()));
    radix.push_back(std::max<size_t>(1, plan.seeds.size()));
    size_t total = 1;
    for (size_t r : radix) {
        if (total > kMaxSweepRuns / r) {
            throw UserError(fmt::format(
                "the sweep has more than {} runs; split it into several sweeps", kMaxSweepRuns));
        }
        total *= r;
    }

    // The base config with the fixed overrides, for the fast path (apply the swept overrides to
    // it); when it fails alone (a rule that only the swept values satisfy) every run is loaded
    // whole.
    std::optional<Config> base;
    try {
        base = config_load_string(plan.base_text, plan.config_path, plan.fixed);
    } catch (const UserError&) {
    }

    // Expansion, last axis fastest.
    std::vector<std::pair<std::string, std::vector<std::string>>> run_errors;  // line -> run names
    std::map<std::string, size_t> error_index;
    std::map<std::string, size_t> raw_names;  // unsanitised name -> run index
    std::set<std::string> safe_names;
    std::vector<size_t> digit(radix.size(), 0);
    for (size_t r = 0; r < total; ++r) {
        PlannedRun run;
        run.index = r;
        run.overrides = plan.fixed;
        std::map<std::string, std::string> given;  // swept key -> override text of this run
        for (size_t a = 0; a < plan.axes.size(); ++a) {
            const std::string& v = plan.axes[a].values[digit[a]];
            run.overrides.push_back(plan.axes[a].key + "=" + v);
            given[plan.axes[a].key] = v;
        }
        if (!plan.variants.empty())
            for (const auto& [k, v] : plan.variants[digit[plan.axes.size()]]) {
                run.overrides.push_back(k + "=" + v);
                given[k] = v;
            }
        if (!plan.seeds.empty()) {
            const std::string& v = plan.seeds[digit.back()];
            run.overrides.push_back("seed=" + v);
            given["seed"] = v;
        }

        bool valid = false;
        if (base) {
            try {
                std::vector<std::string> swept(run.overrides.begin() + ptrdiff_t(plan.fixed.size()),
                                               run.overrides.end());
                run.config = config_apply_overrides(*base, swept, plan.config_path);
                valid = true;
            } catch (const UserError&) {
            }
        }
        std::vector<Diagnostic> problems;
        if (!valid) {
            try {
                run.config = config_load_string(plan.base_text, plan.config_path, run.overrides);
                valid = true;
            } catch (const UserError& e) {
                problems = e.diagnostics();
            }
        }

        std::string raw;
        for (const std::string& key : plan.swept_keys) {
            auto it = given.find(key);
            std::string value =
                valid ? swept_value(run.config, key, it == given.end() ? std::string() : it->second)
                      : (it == given.end() ? std::string("-") : it->second);
            run.swept_values.push_back(value);
            raw += (raw.empty() ? "" : ",") + key + "=" + value;
        }
        if (plan.swept_keys.empty()) raw = "run";
        for (const Diagnostic& d : problems) {
            std::string line = d.format();
            auto [it, fresh] = error_index.emplace(line, run_errors.size());
            if (fresh) run_errors.push_back({line, {}});
            run_errors[it->second].second.push_back(raw);
        }
        if (valid) {
            if (auto it = raw_names.find(raw); it != raw_names.end()) {
                throw UserError(fmt::format(
                    "runs {} and {} of the sweep are the same run ({}): a value is given twice, or "
                    "two values mean the same",
                    it->second + 1, r + 1, raw));
            }
            raw_names.emplace(raw, r);
        }
        std::string name = safe_run_name(raw);
        for (int k = 2; safe_names.count(name); ++k)
            name = safe_run_name(raw) + "-" + std::to_string(k);
        safe_names.insert(name);
        run.name = name;
        plan.runs.push_back(std::move(run));

        for (size_t a = radix.size(); a-- > 0;) {
            if (++digit[a] < radix[a]) break;
            digit[a] = 0;
        }
    }

    if (!run_errors.empty()) {
        std::vector<Diagnostic> out;
        constexpr size_t kShown = 20;
        for (size_t i = 0; i < run_errors.size() && i < kShown; ++i) {
            const auto& [line, runs] = run_errors[i];
            std::string msg;
            if (runs.size() == total)
                msg = line;
            else if (runs.size() == 1)
                msg = fmt::format("run '{}': {}", runs[0], line);
            else
                msg =
                    fmt::format("run '{}' (and {} more runs): {}", runs[0], runs.size() - 1, line);
            out.push_back(Diagnostic{{}, 0, 0, {}, msg});
        }
        if (run_errors.size() > kShown)
            out.push_back(Diagnostic{
                {}, 0, 0, {}, fmt::format("{} more errors not shown", run_errors.size() - kShown)});
        throw UserError(std::move(out));
    }
    return plan;
}

}  // namespace

std::vector<std::string> split_axis_values(const std::string& text) {
    std::vector<std::string> out;
    std::string cur;
    int depth = 0;
    char quote = 0;
    for (char c : text) {
        if (quote) {
            if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '[' || c == '{') {
            ++depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        } else if (c == ',' && depth == 0) {
            out.push_back(trim(cur));
            cur.clear();
            continue;
        }
        cur += c;
    }
    out.push_back(trim(cur));
    return out;
}

std::string safe_run_name(const std::string& name) {
    if (name.empty()) return "run";
    std::string out;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '+' || c == '=' || c == ',';
        out += ok ? c : '_';
    }
    if (out == "." || out == "..") out = "_" + out;
    constexpr size_t kMax = 200;
    if (out.size() > kMax)
        out = out.substr(0, kMax - 17) + "-" + fmt::format("{:016x}", fnv1a(name));
    return out;
}

Shard parse_shard(const std::string& text) {
    auto fail = [&] {
        return UserError(
            fmt::format("--shard: expected I/N with 0 <= I < N (0-based, e.g. --shard "
                        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT "
                        "with --array=0-(N-1)), got '{}'",
                        shown(text, 40)));
    };
    size_t slash = text.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == text.size()) throw fail();
    auto number = [&](const std::string& s, size_t& out) {
        if (s.empty() || s.size() > 9 ||
            !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return false;
        out = std::stoul(s);
        return true;
    };
    Shard sh;
    if (!number(text.substr(0, slash), sh.index) || !number(text.substr(slash + 1), sh.count) ||
        sh.count == 0 || sh.index >= sh.count)
        throw fail();
    return sh;
}

SweepPlan plan_sweep(const std::string& config_path, const std::vector<std::string>& args) {
    return plan_from(sweep_config_load_file(config_path), args);
}

SweepPlan plan_sweep_text(const std::string& config_text, const std::string& label,
                          const std::vector<std::string>& args) {
    return plan_from(sweep_config_parse(config_text, label), args);
}

}  // namespace moe
