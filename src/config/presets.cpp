#include "config/presets.h"

namespace moe {

std::span<const Preset> bundled_presets() {
    return {detail::kBundledPresets, size_t(detail::kBundledPresetCount)};
}

const Preset* find_preset(std::string_view name) {
    for (const Preset& p : bundled_presets())
        if (p.name == name) return &p;
    return nullptr;
}

const Preset* preset_for_path(std::string_view path) {
    if (path.starts_with("./")) path.remove_prefix(2);
    constexpr std::string_view dir = "presets/", ext = ".yaml";
    if (!path.starts_with(dir)) return nullptr;
    path.remove_prefix(dir.size());
    if (path.ends_with(ext)) path.remove_suffix(ext.size());
    if (path.empty() || path.find('/') != std::string_view::npos) return nullptr;
    return find_preset(path);
}

std::string preset_summary(const Preset& p) {
    std::string_view text = p.text;
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (!line.starts_with("#")) return {};
    line.remove_prefix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    return std::string(line);
}

}  // namespace moe
