// The bundled presets: one short config per routing system the literature names
// (configs/presets/NAME.yaml), compiled into the binary so that `moe-sim run presets/NAME` and
// `moe-sim presets` work from any directory. A file at the given path always wins: a user's own
// presets/NAME.yaml is read as any config file.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace moe {

struct Preset {
    std::string_view name;  // the file stem
    std::string_view text;  // the file, verbatim
};

namespace detail {
extern const Preset kBundledPresets[];  // generated from configs/presets (src/CMakeLists.txt)
extern const int kBundledPresetCount;
}  // namespace detail

// Every bundled preset, sorted by name.
std::span<const Preset> bundled_presets();
// The preset called name, or nullptr.
const Preset* find_preset(std::string_view name);
// The preset that a config path names, "presets/NAME" or "presets/NAME.yaml" (also with a
// leading "./"), or nullptr.
const Preset* preset_for_path(std::string_view path);
// Its one-line summary: the first comment line of the file, without the "# ".
std::string preset_summary(const Preset& p);

}  // namespace moe
