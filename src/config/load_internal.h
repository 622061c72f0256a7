// Internal to config/: the state of one load (the config being built, where each key was set, and
// the diagnostics so far), shared by config_load.cpp, load_yaml.cpp, overrides.cpp and
// validate.cpp. Not part of the public API (that is config_load.h).
#pragma once

#include "config/config.h"
#include "config/config_error.h"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace moe::detail {

// Where a value came from. Diagnostics are sorted by (group, line, column, arrival).
struct Source {
    enum Group { in_file = 0, in_override = 1, no_place = 2 };
    std::string file;  // the file label, or "override 'KEY=VALUE'", or the config label
    int line = 0;      // 1-based; 0 = none
    int column = 0;    // 1-based; 0 = none
    Group group = no_place;
    int order = 0;  // the override's index, to keep overrides in command-line order
};

// True when two sources are the same place: the same file, or the same override.
bool same_place(const Source& a, const Source& b);

class LoadState {
public:
    LoadState(std::string label, Config base) : label(std::move(label)), cfg(std::move(base)) {}

    std::string label;  // the file label (or "config")
    Config cfg;         // defaults, then the file's values, then the overrides'

    // Records one problem. After kMaxDiagnostics, further ones are only counted.
    void error(const Source& at, std::string_view key, std::string message);
    // The key was set (last setter wins) / could not be set.
    void set_at(std::string_view key, const Source& at) { given_[std::string(key)] = at; }
    void mark_bad(std::string_view key) { bad_.insert(std::string(key)); }
    const Source* given(std::string_view key) const;
    bool bad(std::string_view key) const { return bad_.count(std::string(key)) > 0; }
    bool ok() const { return diagnostics_.empty(); }
    // Throws UserError with every diagnostic, sorted; does nothing when there is none.
    void throw_if_errors();

    static constexpr size_t kMaxDiagnostics = 100;

private:
    struct Entry {
        Source at;
        size_t arrival;
        Diagnostic d;
    };
    std::vector<Entry> diagnostics_;
    size_t suppressed_ = 0;
    std::map<std::string, Source, std::less<>> given_;
    std::set<std::string, std::less<>> bad_;
};

// How a rule shows the values it talks about (validate.cpp, components.cpp). A value set in
// another place than the one the diagnostic is reported at (`at`) says where it was set, so that
// a rule broken by an override and a file line names both.
struct Show {
    const LoadState& st;
    const Source* at = nullptr;  // where the diagnostic is reported; null: nowhere in particular
    // "20", "2 (the default)" when the key was not given, "100 (at run.yaml:46:15)" or
    // "20 (from override 'train.steps=20')" when it was given elsewhere than `at`.
    std::string value(std::string_view key) const;
    // "(16)", "(16, the default)", "(16, at run.yaml:3:10)", "(20, from override '...')".
    std::string paren(std::string_view key) const;
};

// Markdown text: '|' would end a table cell, '<' before a letter would start an HTML tag.
std::string md(std::string_view s);

// User text echoed in a message: control characters escaped (so a diagnostic stays one line),
// cut to `max` bytes with "..." (at a UTF-8 boundary).
std::string shown(std::string_view text, size_t max = 60);

// Raw-text checks run before YAML parsing: size, NUL bytes, UTF-8, tabs in indentation, nesting
// depth. Adds one diagnostic and returns false at the first problem.
bool check_text(LoadState& st, std::string_view text);
struct TextProblem {
    int line = 0, column = 0;  // 1-based; 0 when about the whole text (its size)
    std::string message;
};
std::optional<TextProblem> find_text_problem(std::string_view text);

// load_yaml.cpp: parses `text` as the config document and applies every key found. Returns false
// when the document cannot be read at all (not YAML, not a mapping): one diagnostic says why.
bool load_yaml_document(LoadState& st, std::string_view text);
// load_yaml.cpp: parses `value_text` as YAML (a scalar, a flow list or a flow mapping) and applies
// it to `path` (a key, or a section given as a mapping), reporting problems at `at`.
void apply_yaml_value(LoadState& st, std::string_view path, std::string_view value_text,
                      const Source& at);

// overrides.cpp: applies KEY=VALUE overrides in order.
void apply_overrides(LoadState& st, const std::vector<std::string>& overrides);

// validate.cpp: range/choice checks of every key of st.cfg (for configs not read from YAML).
void validate_each_key(LoadState& st);
// validate.cpp: the cross-key rules, then those of the selected components (components.cpp), and
// the component checks: a key of a component's own sub-section is given only while that component
// is selected, and every selected component runs on the chosen device. Each rule runs only when
// the keys it reads had no error.
void validate_cross_keys(LoadState& st);
// validate.cpp: the cross-key rules in words, one line each, for the reference (the general rules,
// then those of the built components and their own sub-sections).
std::vector<std::string> cross_key_rules_text();

}  // namespace moe::detail
