// The config schema: THE one table that declares every key once (SPEC.md section 2, DESIGN.md).
// Each row gives the dotted path, the type, the range or the choices, one line of documentation,
// and a getter/setter into moe::Config. Defaults are not written here: they are read from a
// default-constructed Config through the getter, so they cannot drift from config.h.
// Loading (load_yaml.cpp, overrides.cpp), validation (validate.cpp), config_to_yaml,
// config_value_string and the markdown reference (config_write.cpp) all read this table.
#pragma once

#include "config/config.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace moe::schema {

enum class Type {
    integer,           // int / int64_t field; decimal digits only
    unsigned_integer,  // uint64_t field (the seed)
    number,            // double field; finite
    boolean,           // true | false
    string,            // std::string field, restricted by Key::check
    choice,            // enum field, spelled as in Key::choices
};

// One value of a key, whatever its type. integer and choice hold int64_t (a choice holds the
// enum's underlying value), unsigned_integer uint64_t, number double, boolean bool, string string.
using Value = std::variant<int64_t, uint64_t, double, bool, std::string>;

// One spelling of an enum key. The choices of router.type, balance.loss and data.task are built
// from the component rows (components.h); the others are written in schema.cpp. A choice that is
// known (SPEC.md names it) but not available in this version has available = false; it is refused
// with `reason`, or with a generic
// "'x' is not available yet in this version of moe-sim; available: ..." when reason is empty.
struct Choice {
    std::string_view name;
    int value = -1;  // the enum's underlying value; -1 when the enum has no such value yet
    bool available = true;
    std::string_view reason = {};
};

// Inclusive integer range.
struct IntRange {
    int64_t min = 0;
    int64_t max = INT64_MAX;
};

// Number range; an infinite bound means unbounded on that side. zero_ok: 0 is allowed besides
// the range (for "0 = off" keys whose other values must be at least some positive minimum).
struct NumRange {
    double min = 0.0;
    double max = 0.0;
    bool min_open = false;
    bool max_open = false;
    bool zero_ok = false;
};

struct Key {
    std::string_view path;  // dotted: "router.k"
    Type type = Type::integer;
    std::string_view doc;             // one line
    IntRange ints;                    // integer
    NumRange nums;                    // number
    std::span<const Choice> choices;  // choice
    // string: what is allowed, in words ("1 to 100 letters, ..."), and the check: "" when fine.
    std::string_view allowed_text;
    bool (*string_ok)(std::string_view) = nullptr;
    Value (*get)(const Config&) = nullptr;
    void (*set)(Config&, const Value&) = nullptr;
};

// A section: a mapping of keys ("data", "data.clusters"), with one line of documentation.
struct Section {
    std::string_view path;
    std::string_view doc;
};

// Every key, in schema order (a section's keys are contiguous; top-level keys come first).
std::span<const Key> keys();
// Every section, in schema order.
std::span<const Section> sections();
// The key with this dotted path, or nullptr.
const Key* find_key(std::string_view path);
// True when this dotted path names a section.
bool is_section(std::string_view path);
// The section part of a dotted path ("data.clusters.dim" -> "data.clusters", "seed" -> "").
std::string_view parent_of(std::string_view path);

// ---- describing values and ranges (the words used in error messages and in the reference) ----

// "an integer between 1 and 64", "a number > 0", "true or false", "one of: softmax, sigmoid", ...
std::string expected_text(const Key& key);
// The allowed values alone: "between 1 and 64", "> 0", "softmax, sigmoid", "true or false".
std::string allowed_text(const Key& key);
// Type name for the reference: "integer", "number", "boolean", "string", "choice".
std::string_view type_name(Type type);
// A value as a user would write it: "0.01", "topk", "true", "quickstart".
std::string value_text(const Key& key, const Value& value);
// The spelling of an enum value of a choice key (empty when the value is not in the table).
std::string_view choice_name(std::span<const Choice> choices, int value);

// ---- parsing and checking one value (no YAML here: load_yaml.cpp hands over the scalar text) ----

// How a scalar was written in YAML: plain, quoted ('...', "..." or with the tag !), or a block
// scalar (| or >). A quoted or block scalar is a string: refused where a number is expected.
enum class ScalarStyle { plain, quoted, block };

// Parses scalar text for `key`, written in `style`. On failure returns false and sets `error` to
// the message (without the key), e.g. "expected an integer between 1 and 64, got 'sixteen'".
// Range, choice availability and string rules are checked too, so success means a legal value.
bool parse_value(const Key& key, std::string_view text, ScalarStyle style, Value& out,
                 std::string& error);
// Checks a typed value (range, choice availability, string rule). Returns "" when legal, else the
// message, using `given` as the value's text ("must be between 1 and 64, got 0").
std::string check_value(const Key& key, const Value& value, std::string_view given);

// ---- suggestions ----

// Optimal-string-alignment edit distance (Levenshtein plus adjacent transpositions).
size_t edit_distance(std::string_view a, std::string_view b);
// The candidate nearest to `given`, when reasonably close (compared case-insensitively);
// "" when none is.
std::string_view nearest(std::string_view given, std::span<const std::string_view> candidates);
// For an unknown dotted path: a valid key or section to suggest, or "". A key with the same last
// component in another section wins ("router.count" -> "experts.count"), then the nearest path.
std::string_view suggest_key(std::string_view path);
// The message for an unknown dotted path: "unknown key (did you mean 'router.k'?)", or without a
// close match "unknown key (router has: type, k, score, normalize, noise)".
std::string unknown_key_message(std::string_view path);
// Names of the keys and sections directly inside a section ("" = the top level), in schema order.
std::vector<std::string_view> children_of(std::string_view section);

}  // namespace moe::schema
