// Reading the `sweep:` section of a config file (sweep_spec.h). yaml-cpp stays inside config/.
#include "config/sweep_spec.h"

#include "config/config_load.h"
#include "config/load_internal.h"
#include "config/schema.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <array>
#include <map>

#include "config/yaml_util.h"

namespace moe {
namespace {

using detail::shown;

using detail::what_is;

struct Parser {
    std::string label;
    std::vector<Diagnostic> diags;

    int line(const YAML::Node& n) const { return n.Mark().is_null() ? 0 : n.Mark().line + 1; }
    int col(const YAML::Node& n) const { return n.Mark().is_null() ? 0 : n.Mark().column + 1; }

    void error(const YAML::Node& at, std::string key, std::string message) {
        diags.push_back(Diagnostic{label, line(at), col(at), std::move(key), std::move(message)});
    }

    // A value as override text: a plain scalar as written, a quoted one quoted (so that the
    // loader reads it as a string, as it would in the file), a mapping in flow style.
    bool value_text(const YAML::Node& v, const std::string& key, std::string& out) {
        if (v.IsScalar()) {
            if (v.Tag() == "!") {
                YAML::Emitter e;
                e << YAML::DoubleQuoted << v.Scalar();
                out = e.c_str();
            } else {
                out = v.Scalar();
            }
            return true;
        }
        if (v.IsMap() && schema::is_section(key)) {
            YAML::Emitter e;
            e << YAML::Flow << v;
            out = e.c_str();
            return true;
        }
        error(v, key, fmt::format("expected a value, got {}", what_is(v)));
        return false;
    }

    // Checks one value on its own and records it.
    bool check(const YAML::Node& v, const std::string& key, SweepValue& out) {
        std::string text;
        if (!value_text(v, key, text)) return false;
        std::vector<Diagnostic> d = sweep_check_value(key, text, label, line(v), col(v));
        if (!d.empty()) {
            diags.insert(diags.end(), d.begin(), d.end());
            return false;
        }
        out = SweepValue{text, line(v), col(v)};
        return true;
    }

    // Walks a mapping of keys (dotted or nested under sections), calling leaf(path, key node,
    // value node) for every key or section that gets a value.
    template <class Leaf>
    void walk(const std::string& prefix, const YAML::Node& map, std::map<std::string, int>& seen,
              const Leaf& leaf) {
        for (const auto& pair : map) {
            const YAML::Node& k = pair.first;
            const YAML::Node& v = pair.second;
            if (!k.IsScalar() || k.Scalar().empty()) {
                error(k, prefix, fmt::format("expected a key name, got {} as a key", what_is(k)));
                continue;
            }
            std::string path = prefix.empty() ? k.Scalar() : prefix + "." + k.Scalar();
            const bool is_key = schema::find_key(path) != nullptr;
            const bool is_sect = !is_key && schema::is_section(path);
            if (!is_key && !is_sect) {
                error(k, shown(path, 100), schema::unknown_key_message(path));
                continue;
            }
            if (is_sect && v.IsMap()) {  // keys nested under their section
                walk(path, v, seen, leaf);
                continue;
            }
            if (auto it = seen.find(path); it != seen.end()) {
                error(k, path, fmt::format("given twice (first on line {})", it->second));
                continue;
            }
            seen.emplace(path, line(k));
            leaf(path, k, v);
        }
    }

    void grid(const YAML::Node& node, SweepSection& out, std::map<std::string, int>& seen) {
        if (!node.IsMap()) {
            error(node, "sweep.grid",
                  fmt::format("expected a mapping of keys to lists of values (experts.count: [8, "
                              "16]), got {}",
                              what_is(node)));
            return;
        }
        walk(
            "", node, seen, [&](const std::string& path, const YAML::Node& k, const YAML::Node& v) {
                if (!v.IsSequence()) {
                    error(
                        v.IsNull() ? k : v, path,
                        fmt::format("expected a list of values ([a, b, ...]), got {}", what_is(v)));
                    return;
                }
                if (v.size() == 0) {
                    error(v, path, "empty list: give at least one value");
                    return;
                }
                SweepFileAxis axis{path, {}, line(k), col(k)};
                bool ok = true;
                for (const YAML::Node& e : v) {
                    SweepValue sv;
                    if (e.IsNull()) {
                        error(e.Mark().is_null() ? v : e, path, "an empty value in the list");
                        ok = false;
                    } else if (check(e, path, sv)) {
                        axis.values.push_back(std::move(sv));
                    } else {
                        ok = false;
                    }
                }
                if (ok) out.grid.push_back(std::move(axis));
            });
    }

    void seeds(const YAML::Node& k, const YAML::Node& v, SweepSection& out) {
        if (!v.IsSequence()) {
            error(v.IsNull() ? k : v, "sweep.seeds",
                  fmt::format("expected a list of seeds ([1, 2, 3]), got {}", what_is(v)));
            return;
        }
        if (v.size() == 0) {
            error(v, "sweep.seeds", "empty list: give at least one seed");
            return;
        }
        SweepFileAxis axis{"seed", {}, line(k), col(k)};
        bool ok = true;
        for (const YAML::Node& e : v) {
            SweepValue sv;
            if (e.IsNull()) {
                error(v, "sweep.seeds", "an empty value in the list");
                ok = false;
            } else if (check(e, "seed", sv)) {
                axis.values.push_back(std::move(sv));
            } else {
                ok = false;
            }
        }
        if (ok) {
            out.seeds = std::move(axis);
            out.has_seeds = true;
        }
    }

    void variants(const YAML::Node& k, const YAML::Node& v, SweepSection& out) {
        if (!v.IsSequence()) {
            error(v.IsNull() ? k : v, "sweep.variants",
                  fmt::format("expected a list of mappings ([{{balance.alpha: 0}}, ...]), got {}",
                              what_is(v)));
            return;
        }
        if (v.size() == 0) {
            error(v, "sweep.variants", "empty list: give at least one variant");
            return;
        }
        for (const YAML::Node& e : v) {
            if (!e.IsMap() || e.size() == 0) {
                error(e.Mark().is_null() ? v : e, "sweep.variants",
                      fmt::format("each variant is a non-empty mapping of keys to values, got {}",
                                  what_is(e)));
                continue;
            }
            SweepFileVariant var;
            var.line = line(e), var.column = col(e);
            std::map<std::string, int> seen;
            bool ok = true;
            walk("", e, seen,
                 [&](const std::string& path, const YAML::Node& key, const YAML::Node& val) {
                     SweepValue sv;
                     if (val.IsNull()) {
                         error(key, path, "an empty value");
                         ok = false;
                     } else if (check(val, path, sv)) {
                         var.settings.emplace_back(path, std::move(sv));
                     } else {
                         ok = false;
                     }
                 });
            if (ok && !var.settings.empty()) out.variants.push_back(std::move(var));
        }
    }

    void section(const YAML::Node& key, const YAML::Node& node, SweepSection& out) {
        out.present = true;
        out.line = line(key), out.column = col(key);
        if (!node.IsMap() || node.size() == 0) {
            error(node.IsNull() ? key : node, "sweep",
                  fmt::format("expected a mapping with grid, variants and/or seeds, got {}",
                              what_is(node)));
            return;
        }
        static constexpr std::array<std::string_view, 3> names = {"grid", "variants", "seeds"};
        std::map<std::string, int> seen_keys;   // keys of the grid
        std::map<std::string, int> seen_names;  // grid / variants / seeds
        for (const auto& pair : node) {
            const YAML::Node& k = pair.first;
            const YAML::Node& v = pair.second;
            std::string name = k.IsScalar() ? k.Scalar() : std::string();
            if (auto it = seen_names.find(name); it != seen_names.end()) {
                error(k, "sweep." + name,
                      fmt::format("duplicate key (first given on line {})", it->second));
                continue;
            }
            seen_names.emplace(name, line(k));
            if (name == "grid") {
                grid(v, out, seen_keys);
            } else if (name == "seeds") {
                seeds(k, v, out);
            } else if (name == "variants") {
                variants(k, v, out);
            } else {
                std::string_view guess = schema::nearest(name, names);
                error(k, "sweep." + shown(name, 100),
                      guess.empty() ? "unknown key (sweep has: grid, variants, seeds)"
                                    : fmt::format("unknown key (did you mean 'sweep.{}'?)", guess));
            }
        }
    }
};

// The text with lines [first, last) emptied (their newlines kept).
std::string blank_lines(const std::string& text, int first, int last) {
    std::string out;
    out.reserve(text.size());
    int line = 0;  // 0-based
    for (char c : text) {
        if (c == '\n') {
            out += c;
            ++line;
        } else if (line < first || line >= last) {
            out += c;
        }
    }
    return out;
}

// The file text without the top-level `sweep:` entry whose key is at 0-based line `key_line`,
// column 0: that line and the following ones up to the next line that starts a new top-level
// entry (a character other than a space or '#' in column 0) are emptied.
std::string strip_block_section(const std::string& text, int key_line) {
    std::vector<size_t> starts = {0};
    for (size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n') starts.push_back(i + 1);
    int end = key_line + 1;
    for (; end < int(starts.size()); ++end) {
        size_t s = starts[end];
        if (s >= text.size()) break;
        char c = text[s];
        if (c != ' ' && c != '#' && c != '\n' && c != '\r' && c != '\t') break;
    }
    return blank_lines(text, key_line, end);
}

}  // namespace

std::string sweep_key_problem(std::string_view key) {
    if (schema::find_key(key) || schema::is_section(key)) return {};
    return schema::unknown_key_message(key);
}

std::vector<Diagnostic> sweep_check_value(std::string_view key, std::string_view value,
                                          const std::string& file, int line, int column) {
    detail::LoadState st(file, Config{});
    // in_override: the walker keeps our line:column instead of the value's own position.
    detail::Source at{file, line, column, detail::Source::in_override, 0};
    if (std::optional<detail::TextProblem> p = detail::find_text_problem(value)) {
        st.error(at, key, fmt::format("cannot read the value: {}", p->message));
    } else {
        detail::apply_yaml_value(st, key, value, at);
    }
    try {
        st.throw_if_errors();
    } catch (const UserError& e) {
        return e.diagnostics();
    }
    return {};
}

SweepConfigFile sweep_config_parse(const std::string& text, const std::string& label) {
    SweepConfigFile out;
    out.label = label;
    out.text = text;
    out.base_text = text;
    // Problems of the file itself (not YAML, not a mapping, too large...) are the config loader's
    // to report: every run loads base_text.
    if (detail::find_text_problem(text)) return out;
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception&) {
        return out;
    }
    if (!root.IsMap()) return out;

    Parser p{label, {}};
    YAML::Node sweep_key, sweep_value;
    int count = 0;
    for (const auto& pair : root) {
        if (!pair.first.IsScalar() || pair.first.Scalar() != "sweep") continue;
        if (++count == 1) {
            sweep_key = pair.first;
            sweep_value = pair.second;
        } else {
            p.error(pair.first, "sweep",
                    fmt::format("duplicate key (first given on line {})", p.line(sweep_key)));
        }
    }
    if (count == 0) return out;
    p.section(sweep_key, sweep_value, out.sweep);

    // Strip the section, keeping every other line where it was. Checked by parsing the result:
    // the same top-level keys less `sweep`. A layout the line rule cannot handle (a flow-style
    // document) is re-emitted without the section instead (line numbers then differ).
    bool stripped = false;
    if (!sweep_key.Mark().is_null() && sweep_key.Mark().column == 0) {
        std::string base = strip_block_section(text, sweep_key.Mark().line);
        try {
            YAML::Node b = YAML::Load(base);
            bool same = (b.IsMap() || b.IsNull()) && b.size() + 1 == root.size() && !b["sweep"];
            if (same)
                for (const auto& pair : root)
                    if (pair.first.IsScalar() && pair.first.Scalar() != "sweep" &&
                        !b[pair.first.Scalar()])
                        same = false;
            if (same) {
                out.base_text = std::move(base);
                stripped = true;
            }
        } catch (const YAML::Exception&) {
        }
    }
    if (!stripped) {
        YAML::Node copy(YAML::NodeType::Map);
        for (const auto& pair : root)
            if (!(pair.first.IsScalar() && pair.first.Scalar() == "sweep"))
                copy[pair.first] = pair.second;
        YAML::Emitter e;
        e << copy;
        out.base_text = copy.size() == 0 ? std::string("{}\n") : std::string(e.c_str()) + "\n";
    }
    if (!p.diags.empty()) throw UserError(std::move(p.diags));
    return out;
}

SweepConfigFile sweep_config_load_file(const std::string& path) {
    return sweep_config_parse(config_read_source(path), path);
}

}  // namespace moe
