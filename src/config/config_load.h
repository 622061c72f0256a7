// Loading, validating and printing a Config (SPEC.md section 2). The public face of config/:
// the rest of moe-sim never sees yaml-cpp.
//
// Conventions (docs/config.md says the same to users):
// - An empty file, or one with only comments, is valid and means all defaults; so is `{}`.
// - Strict: an unknown key, a duplicate key, a wrong type, an empty (null) value, an out-of-range
//   value or an unavailable choice is an error. Every problem is collected and reported at once:
//   the UserError holds one Diagnostic per problem, sorted by line; override problems follow.
// - One spelling per value: integers are -?digits only (no '+'); numbers also take 0.5, .5, 1e-3
//   (not .inf/.nan, no leading '+'; one beyond a double's range is refused as such); booleans
//   are lower-case true/false only (True, yes/no/on/off are refused); a quoted scalar is a
//   string, so it is refused where a number or boolean is expected.
// - The file must be UTF-8 text (no NUL byte) of at most 16 MiB, without tabs in indentation,
//   nested at most 64 levels deep; anything else is refused before YAML parsing.
// - Overrides are KEY=VALUE with a dotted key; VALUE is read as YAML (a scalar, a flow list, or a
//   flow mapping for a whole section: router={k: 4, score: sigmoid}). An override replaces the
//   file's value; its diagnostics carry no line: their `file` is "override 'KEY=VALUE'", so a
//   diagnostic reads `override 'train.lr=fast': train.lr: expected a number > 0, got 'fast'`.
#pragma once

#include "config/config.h"
#include "config/config_error.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

// Largest config file or text accepted, and deepest nesting of [ { and block "- " accepted.
inline constexpr size_t kConfigMaxBytes = size_t{16} << 20;
inline constexpr int kConfigMaxDepth = 64;

// The text of a config: the file at path or, when there is none and path names a bundled preset
// (presets/NAME or presets/NAME.yaml, config/presets.h), that preset. Throws UserError (a missing
// or unreadable file, a directory, a file over kConfigMaxBytes).
std::string config_read_source(const std::string& path);
// Loads a YAML file (config_read_source), applies KEY=VALUE overrides (dotted paths, value parsed as a YAML scalar or
// flow list), validates; throws UserError carrying EVERY diagnostic.
Config config_load_file(const std::string& path, const std::vector<std::string>& overrides = {});
// Same from text; `label` is used as the file name in diagnostics.
Config config_load_string(const std::string& yaml_text, const std::string& label,
                          const std::vector<std::string>& overrides = {});
// Applies KEY=VALUE overrides to an already valid config and validates the result (for sweeps);
// throws UserError. `label` names the config in diagnostics that have no better location.
Config config_apply_overrides(const Config& base, const std::vector<std::string>& overrides,
                              const std::string& label = "config");
// Validates a config built in code: every key's range/choice, then the cross-key rules.
// Throws UserError (diagnostics have `label` as file and no line).
void config_validate(const Config& cfg, const std::string& label = "config");

// Fully resolved config as YAML (every key, with a comment per key, except the own keys of a
// component that is not selected: router.topk.* only with router.type topk); loads back to an identical
// Config. The first line is a comment with the moe-sim version.
std::string config_to_yaml(const Config& cfg);
// Markdown reference of every key: path, type, default, allowed range/choices, doc line, plus
// the cross-key rules and the loading conventions. docs/config.md is this text.
std::string config_reference_markdown();

// Names of enum values as spelled in the config (used by CSV writers and summary rows).
std::string_view to_string(Device v);
std::string_view to_string(TaskKind v);
std::string_view to_string(Teacher v);
std::string_view to_string(Activation v);
std::string_view to_string(RouterType v);
std::string_view to_string(Normalize v);
std::string_view to_string(ScoreFn v);
std::string_view to_string(DropPolicy v);
std::string_view to_string(BalanceLoss v);  // switch_loss -> "switch"
std::string_view to_string(OptimizerKind v);
std::string_view to_string(Schedule v);

// Value of one key of a config as the text a user would write ("0.01", "topk", "true").
// Throws UserError for an unknown key (with a suggestion) or a section.
std::string config_value_string(const Config& cfg, std::string_view dotted_key);
// All dotted key paths, in schema order.
std::vector<std::string> config_keys();

}  // namespace moe
