// The only file of moe-sim that includes yaml-cpp (DESIGN.md). It walks the parsed document
// along the schema: a section must be a mapping, a key must hold a scalar that parse_value
// accepts; anything else is one diagnostic at the node's line:column (yaml-cpp marks are 0-based,
// printed +1). Every problem is recorded and the walk goes on, so all are reported at once.
#include "config/load_internal.h"
#include "config/schema.h"

#include <fmt/format.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "config/yaml_util.h"

namespace moe::detail {

namespace {

// How the scalar `n` was written. yaml-cpp keeps no style: it gives a quoted scalar and a block
// scalar (| or >) the same tag "!", so the source is read at the node's mark, past an anchor
// (&name) or a tag (!...) written before the value.
schema::ScalarStyle scalar_style(const YAML::Node& n, std::string_view source) {
    if (n.Tag() != "!") return schema::ScalarStyle::plain;
    const YAML::Mark m = n.Mark();
    if (m.is_null() || m.pos < 0) return schema::ScalarStyle::quoted;
    if (source.substr(0, 3) == "\xEF\xBB\xBF") source.remove_prefix(3);  // marks start after a BOM
    size_t i = size_t(m.pos);
    auto space = [&](size_t j) {
        return j < source.size() && (source[j] == ' ' || source[j] == '\n' || source[j] == '\r');
    };
    while (i < source.size() && (source[i] == '&' || source[i] == '!')) {
        while (i < source.size() && !space(i)) ++i;
        while (space(i)) ++i;
    }
    if (i < source.size() && (source[i] == '|' || source[i] == '>'))
        return schema::ScalarStyle::block;
    return schema::ScalarStyle::quoted;
}

}  // namespace

std::string what_is(const YAML::Node& n, std::string_view source) {
    switch (n.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            return "an empty value";
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Map:
            return "a mapping";
        case YAML::NodeType::Scalar:
            break;
    }
    switch (scalar_style(n, source)) {
        case schema::ScalarStyle::quoted:
            return fmt::format("the quoted string \"{}\"", shown(n.Scalar()));
        case schema::ScalarStyle::block:
            return fmt::format("the block scalar \"{}\"", shown(n.Scalar()));
        case schema::ScalarStyle::plain:
            break;
    }
    return fmt::format("'{}'", shown(n.Scalar()));
}

namespace {

struct Walker {
    LoadState& st;
    Source base;            // a file (nodes carry their own line:column) or an override (no line)
    std::string_view text;  // what the nodes were parsed from

    std::string what(const YAML::Node& n) const { return what_is(n, text); }

    Source at(const YAML::Node& n) const { return at(n.Mark()); }
    Source at(const YAML::Mark& m) const {
        Source s = base;
        if (base.group == Source::in_file && !m.is_null())
            s.line = m.line + 1, s.column = m.column + 1;
        return s;
    }

    // One key's value. `key_at` is where the key was written: an empty value has no position of
    // its own (yaml-cpp puts it at the next token), so it is reported there.
    void leaf(const schema::Key& key, const YAML::Node& v, const Source& key_at) {
        Source value_at = v.IsNull() ? key_at : at(v);
        st.set_at(key.path, value_at);
        auto fail = [&](std::string message) {
            st.error(value_at, key.path, std::move(message));
            st.mark_bad(key.path);
        };
        if (!v.IsScalar()) {
            // A choice says "must be one of" for a bad scalar, "expected one of" for a non-scalar.
            fail(fmt::format("expected {}, got {}", schema::expected_text(key), what(v)));
            return;
        }
        const std::string& tag = v.Tag();
        if (tag != "?" && tag != "!") {
            fail(fmt::format(
                "expected {}, got a value with the YAML tag '{}' (tags are not supported)",
                schema::expected_text(key), shown(tag)));
            return;
        }
        schema::Value value;
        std::string message;
        if (!schema::parse_value(key, v.Scalar(), scalar_style(v, text), value, message)) {
            fail(std::move(message));
            return;
        }
        key.set(st.cfg, value);
    }

    // A node given for a section: a mapping of its keys; an empty value is an empty section.
    void section_value(std::string_view path, const YAML::Node& v, const Source& key_at) {
        if (v.IsMap()) return section(path, v);
        if (v.IsNull() && base.group == Source::in_file) return;
        std::string names;
        for (std::string_view c : schema::children_of(path))
            names += (names.empty() ? "" : ", ") + std::string(c);
        st.error(v.IsNull() ? key_at : at(v), path,
                 fmt::format("is a section: expected a mapping of its keys ({}), got {}", names,
                             what(v)));
    }

    void section(std::string_view prefix, const YAML::Node& map) {
        std::map<std::string, YAML::Mark, std::less<>> seen;
        for (const auto& pair : map) {  // `pair` is a value: its nodes live through the body
            const YAML::Node& k = pair.first;
            const YAML::Node& v = pair.second;
            Source key_at = at(k);
            if (!k.IsScalar()) {
                st.error(key_at, prefix,
                         fmt::format("expected a key name, got {} as a key", what(k)));
                continue;
            }
            const std::string& name = k.Scalar();
            std::string path = prefix.empty() ? name : fmt::format("{}.{}", prefix, name);
            std::string path_shown = shown(path, 100);
            if (auto first = seen.find(name); first != seen.end()) {
                st.error(
                    key_at, path_shown,
                    fmt::format("duplicate key (first given on line {})", first->second.line + 1));
                st.mark_bad(path);
                continue;
            }
            seen.emplace(name, k.Mark());
            const schema::Key* key = schema::find_key(path);
            bool sect = !key && schema::is_section(path);
            if (name.find('.') != std::string::npos && (key || sect)) {
                st.error(key_at, path_shown,
                         fmt::format(
                             "a dotted key is only for overrides (KEY=VALUE); in a file, nest it "
                             "under '{}:'",
                             name.substr(0, name.find('.'))));
                st.mark_bad(path);
            } else if (key) {
                leaf(*key, v, key_at);
            } else if (sect) {
                section_value(path, v, key_at);
            } else if (path == "sweep") {
                // The sweep section belongs to `moe-sim sweep` (config/sweep_spec.cpp checks it);
                // run and validate read the base config around it, which is what each run of
                // the sweep starts from.
            } else {
                st.error(key_at, path_shown, schema::unknown_key_message(path));
            }
        }
    }
};

// yaml-cpp 0.7's LoadAll() loops forever, allocating, on a stray ',' at document level (","
// or "[1],"): the parser does not consume the token and reports an endless run of empty
// documents that all start at the same place (jbeder/yaml-cpp#1040, fixed upstream by #1319).
// So documents are first counted from parser events, stopping after the third, and a document
// that starts where the previous one did is a syntax error. Only then is the one document built
// with YAML::Load, which reads a single document.
class DocumentStarts : public YAML::EventHandler {
public:
    std::vector<YAML::Mark> starts;
    void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
};

struct Parsed {
    YAML::Node node;    // the document (null when there is none)
    std::string error;  // set when the text is not one YAML document
    YAML::Mark error_at = YAML::Mark::null_mark();
};

// Parses `text` as one YAML document. yaml-cpp's exceptions propagate.
Parsed parse_one_document(const std::string& text) {
    Parsed out;
    DocumentStarts docs;
    {
        std::istringstream in(text);
        YAML::Parser parser(in);
        while (docs.starts.size() < 3 && parser.HandleNextDocument(docs)) {
            size_t n = docs.starts.size();
            if (n >= 2 && docs.starts[n - 1].pos == docs.starts[n - 2].pos) {
                size_t pos = size_t(std::max(0, docs.starts[n - 1].pos));
                char c = pos < text.size() ? text[pos] : ' ';
                out.error = c > ' ' && c < 0x7F
                                ? fmt::format("not valid YAML: unexpected '{}'", c)
                                : std::string("not valid YAML: unexpected character");
                out.error_at = docs.starts[n - 1];
                return out;
            }
        }
    }
    if (docs.starts.size() > 1) {
        out.error = "expected one YAML document, found a second one starting here";
        out.error_at = docs.starts[1];
        return out;
    }
    if (docs.starts.size() == 1) out.node = YAML::Load(text);
    return out;
}

}  // namespace

bool load_yaml_document(LoadState& st, std::string_view text) {
    Walker w{st, Source{st.label, 0, 0, Source::in_file}, text};
    Parsed parsed;
    try {
        parsed = parse_one_document(std::string(text));
    } catch (const YAML::DeepRecursion& e) {
        st.error(w.at(e.mark), {}, "nesting is too deep");
        return false;
    } catch (const YAML::ParserException& e) {
        st.error(w.at(e.mark), {}, fmt::format("not valid YAML: {}", e.msg));
        return false;
    } catch (const YAML::Exception& e) {
        st.error(w.at(e.mark), {}, fmt::format("not valid YAML: {}", e.msg));
        return false;
    }
    if (!parsed.error.empty()) {
        st.error(w.at(parsed.error_at), {}, parsed.error);
        return false;
    }
    // An empty file, or one with only comments, is a valid config: all defaults.
    const YAML::Node& doc = parsed.node;
    if (!doc.IsDefined() || doc.IsNull()) return true;
    if (!doc.IsMap()) {
        st.error(
            w.at(doc), {},
            fmt::format("expected a mapping of config keys at the top level, got {}", w.what(doc)));
        return false;
    }
    w.section("", doc);
    return true;
}

void apply_yaml_value(LoadState& st, std::string_view path, std::string_view value_text,
                      const Source& at) {
    Walker w{st, at, value_text};
    Parsed parsed;
    try {
        parsed = parse_one_document(std::string(value_text));
    } catch (const YAML::Exception& e) {
        parsed.error = fmt::format("not valid YAML: {}", e.msg);
    }
    if (!parsed.error.empty()) {
        st.error(at, path, fmt::format("cannot read the value: {}", parsed.error));
        st.mark_bad(path);
        return;
    }
    const YAML::Node& node = parsed.node;
    if (const schema::Key* key = schema::find_key(path)) {
        w.leaf(*key, node, at);
    } else {
        w.section_value(path, node, at);
    }
}

}  // namespace moe::detail
