// KEY=VALUE overrides (Hydra style): a dotted key from the schema, then a value read as YAML,
// so `router.k=4`, `router.normalize=false`, `train.lr=1e-3`, `router={k: 4, score: sigmoid}`.
// An override replaces the file's value. Its diagnostics have no line: their file is
// "override 'KEY=VALUE'", which reads `override 'train.lr=fast': train.lr: expected ...`.
// A space around '=' or at either end ('router.k =3', only possible when quoted) is refused, with
// the override to write instead: quietly trimming it hid a mistyped argument.
#include "config/load_internal.h"
#include "config/schema.h"

#include <fmt/format.h>

namespace moe::detail {
namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

constexpr size_t kMaxOverrideBytes = 64 * 1024;

}  // namespace

void apply_overrides(LoadState& st, const std::vector<std::string>& overrides) {
    for (size_t i = 0; i < overrides.size(); ++i) {
        const std::string& text = overrides[i];
        Source at{fmt::format("override '{}'", shown(text, 100)), 0, 0, Source::in_override,
                  int(i)};
        size_t eq = text.find('=');
        std::string_view key = eq == std::string::npos ? std::string_view{}
                                                       : trim(std::string_view(text).substr(0, eq));
        if (key.empty()) {
            st.error(at, {}, "expected KEY=VALUE");
            continue;
        }
        std::string_view raw_key = std::string_view(text).substr(0, eq);
        std::string_view value = std::string_view(text).substr(eq + 1);
        if (text.size() > kMaxOverrideBytes) {
            st.error(at, shown(key, 100),
                     fmt::format("the value is too long ({} bytes; at most {})", value.size(),
                                 kMaxOverrideBytes));
            st.mark_bad(key);
            continue;
        }
        if (!schema::find_key(key) && !schema::is_section(key)) {
            st.error(at, shown(key, 100), schema::unknown_key_message(key));
            continue;
        }
        if (raw_key != key || trim(value) != value) {
            st.error(at, shown(key, 100),
                     fmt::format("a space around '=' or at an end of KEY=VALUE; write '{}={}'",
                                 shown(key, 100), shown(trim(value), 100)));
            st.mark_bad(key);
            continue;
        }
        if (std::optional<TextProblem> p = find_text_problem(value)) {
            st.error(at, shown(key, 100), fmt::format("cannot read the value: {}", p->message));
            st.mark_bad(key);
            continue;
        }
        apply_yaml_value(st, key, value, at);
    }
}

}  // namespace moe::detail
