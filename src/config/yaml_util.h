// Helpers shared by the two files of config/ that read YAML (load_yaml.cpp, sweep_spec.cpp).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace moe::detail {

// What a node is, in the words of "..., got <what>": "a list", "'sixteen'", ...
std::string what_is(const YAML::Node& n);

}  // namespace moe::detail
