// Writing a config out, all from the schema: the fully resolved YAML (config_to_yaml), one key's
// value as text (config_value_string), and the markdown reference (docs/config.md).
#include "config/components.h"
#include "config/config_load.h"
#include "config/load_internal.h"
#include "config/schema.h"

#include <fmt/format.h>

#include <algorithm>

namespace moe {

std::string detail::md(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        char next = i + 1 < s.size() ? s[i + 1] : ' ';
        bool tag = s[i] == '<' &&
                   ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || next == '/');
        if (s[i] == '|' || tag) out += '\\';
        out += s[i];
    }
    return out;
}

namespace {

using detail::md;

// Depth of a dotted section path ("" = 0, "data" = 1, "data.clusters" = 2).
size_t depth_of(std::string_view section) {
    return section.empty() ? 0 : size_t(std::count(section.begin(), section.end(), '.')) + 1;
}

std::vector<std::string_view> path_parts(std::string_view path) {
    std::vector<std::string_view> out;
    while (!path.empty()) {
        size_t dot = path.find('.');
        out.push_back(path.substr(0, dot));
        path = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
    }
    return out;
}

std::string_view section_doc(std::string_view path) {
    for (const schema::Section& s : schema::sections())
        if (s.path == path) return s.doc;
    return {};
}

// A string as a YAML scalar: plain when it cannot be read as anything but this string,
// double-quoted otherwise.
std::string yaml_string(std::string_view s) {
    bool plain =
        !s.empty() && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_');
    for (char c : s)
        plain = plain && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.');
    std::string lower(s);
    for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
    for (std::string_view word : {"null", "true", "false", "yes", "no", "on", "off", "y", "n"})
        plain = plain && lower != word;
    if (plain) return std::string(s);
    std::string out = "\"";
    for (char c : s) {
        unsigned char u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\')
            out += '\\', out += c;
        else if (u < 0x20 || u == 0x7F)
            out += fmt::format("\\x{:02x}", u);
        else
            out += c;
    }
    return out + "\"";
}

std::string yaml_value(const schema::Key& key, const schema::Value& v) {
    std::string text = schema::value_text(key, v);
    return key.type == schema::Type::string ? yaml_string(text) : text;
}

std::string capitalized(std::string s) {
    if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = char(s[0] - 'a' + 'A');
    return s;
}

}  // namespace

std::string config_value_string(const Config& cfg, std::string_view dotted_key) {
    const schema::Key* key = schema::find_key(dotted_key);
    if (!key) {
        std::string message = schema::is_section(dotted_key)
                                  ? "is a section, not a key"
                                  : schema::unknown_key_message(dotted_key);
        throw UserError(
            std::vector<Diagnostic>{Diagnostic{{}, 0, 0, detail::shown(dotted_key, 100), message}});
    }
    return schema::value_text(*key, key->get(cfg));
}

std::string config_to_yaml(const Config& cfg) {
    std::string out = fmt::format(
        "# moe-sim {}: fully resolved config (every key, given or default, but the own keys of the "
        "components not selected)\n",
        MOESIM_VERSION);
    std::string_view open;  // the section whose keys are being written
    for (const schema::Key& key : schema::keys()) {
        // A component's own keys only while it is selected: given with another one they are an
        // error (validate.cpp), so the resolved config must load back without them.
        const ComponentRow* owner = owner_of_key(key.path);
        if (owner && selected_component(cfg, owner->choice_key) != owner) continue;
        std::string_view section = schema::parent_of(key.path);
        if (section != open) {
            // Open the sections of `section` that are not already open, outermost first.
            std::vector<std::string_view> now = path_parts(open), want = path_parts(section);
            size_t common = 0;
            while (common < now.size() && common < want.size() && now[common] == want[common])
                ++common;
            for (size_t d = common; d < want.size(); ++d) {
                if (d == 0) out += "\n";
                std::string_view path =
                    section.substr(0, size_t(want[d].data() + want[d].size() - section.data()));
                std::string head = fmt::format("{:{}}{}:", "", 2 * d, want[d]);
                out += fmt::format("{:<36}# {}\n", head + " ", section_doc(path));
            }
            open = section;
        }
        std::string line =
            fmt::format("{:{}}{}: {}", "", 2 * depth_of(section),
                        key.path.substr(key.path.rfind('.') + 1), yaml_value(key, key.get(cfg)));
        out += fmt::format("{:<36}# {}\n", line + " ", key.doc);
    }
    return out;
}

std::string config_reference_markdown() {
    const Config defaults{};
    std::string out;
    out += "# Configuration reference\n\n";
    out +=
        "<!-- Generated from the schema (src/config/schema.cpp); do not edit by hand.\n"
        "     Regenerate with: moe-sim validate --reference > docs/config.md -->\n\n";
    out +=
        "A run is described by one YAML file. Every key has a default, so a config only says what\n"
        "differs; `moe-sim` writes the fully resolved config (every key, except the own keys of\n"
        "components not selected) next to the results.\n\n";
    out += "## How a config is read\n\n";
    out +=
        "- An empty file, or one with only comments, is valid and means all defaults; so is `{}`.\n"
        "  An empty section (`router:` with nothing under it) keeps that section's defaults.\n"
        "- Keys are nested in sections (`router:` then `  k: 4`). Dotted keys (`router.k`) are "
        "only\n"
        "  for overrides.\n"
        "- Strict: an unknown key, a duplicate key, a wrong type, an empty (null) value, an\n"
        "  out-of-range value or an unavailable choice is an error. Every problem is reported at\n"
        "  once, one line each: `file:line:column: key: message`, saying what is allowed, then "
        "what\n"
        "  was given, with the nearest valid name for a misspelt key or choice.\n"
        "- Integers are decimal digits with an optional `-` (`1.5`, `1e3`, `0x10` and `+3` are\n"
        "  not integers: a value is not given two spellings, as a sweep names runs by it). "
        "Numbers\n"
        "  also take `0.5`, `.5`, `1e-3` (`.inf`, `.nan` and a leading `+` are refused), and a\n"
        "  number too large for a double (`1e400`) or too close to 0 (`1e-400`) is refused as\n"
        "  such. `true` and `false` are lower case (`True`, `TRUE`, `yes`, `no`, `on`, `off` are\n"
        "  refused). A quoted value (`\"2\"`) is a string, so it is refused where a number is\n"
        "  expected. YAML tags are not supported.\n"
        "- The file must be UTF-8 text (no NUL byte) of at most 16 MiB, with spaces (not tabs) "
        "for\n"
        "  indentation, nested at most 64 levels deep, and hold one YAML document.\n"
        "- Overrides on the command line are `KEY=VALUE` with a dotted key: `router.k=4`,\n"
        "  `train.lr=1e-3`, with no space around `=` or at either end (`'router.k =3'` is\n"
        "  refused, not trimmed). The value is read as YAML, so a whole section can be given as\n"
        "  a flow mapping: `router={k: 4, score: sigmoid}`. An override replaces the file's\n"
        "  value, and its errors read\n"
        "  `override 'train.lr=fast': train.lr: expected a number > 0, got 'fast'`.\n"
        "- An override changes its own key and nothing else: a shorter `train.steps` does not\n"
        "  scale `train.log_every` or `train.eval_every` down. When an override breaks a rule\n"
        "  between keys, the error is at the override, names the line of the other key, and\n"
        "  says which key to override as well:\n"
        "  `override 'train.steps=20': train.eval_every: 100 (at quickstart.yaml:46:15) is larger\n"
        "  than train.steps (20); to keep this override, also override train.eval_every`.\n\n";

    std::string_view current = "(none)";
    for (const schema::Key& key : schema::keys()) {
        std::string_view section = schema::parent_of(key.path);
        if (section != current) {
            if (section.empty())
                out += "## Top level\n\n";
            else
                out += fmt::format("## `{}`\n\n{}.\n\n", section,
                                   capitalized(md(section_doc(section))));
            out += "| key | type | default | allowed | description |\n";
            out += "| --- | --- | --- | --- | --- |\n";
            current = section;
        }
        std::string allowed = md(schema::allowed_text(key));
        if (key.type == schema::Type::choice) {
            std::string later;
            for (const schema::Choice& c : key.choices)
                if (!c.available) later += fmt::format("{}{}", later.empty() ? "" : ", ", c.name);
            if (!later.empty()) allowed += fmt::format(" (not available yet: {})", later);
        }
        out +=
            fmt::format("| `{}` | {} | `{}` | {} | {} |\n", key.path, schema::type_name(key.type),
                        schema::value_text(key, key.get(defaults)), allowed, md(key.doc));
        if (&key == &schema::keys().back() || schema::parent_of((&key + 1)->path) != section)
            out += "\n";
    }
    out += "## Rules between keys\n\n";
    for (const std::string& rule : detail::cross_key_rules_text())
        out += fmt::format("- {}\n", rule);
    return out;
}

}  // namespace moe
