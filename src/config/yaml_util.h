// Helpers shared by the two files of config/ that read YAML (load_yaml.cpp, sweep_spec.cpp).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

namespace moe::detail {

// What a node is, in the words of "..., got <what>": "a list", "'sixteen'", "the quoted string
// \"x\"", "the block scalar \"x\\n\"", ... `source`: the text the node was parsed from, which
// tells a block scalar from a quoted one (yaml-cpp gives both the tag "!"); without it, both are
// described as quoted.
std::string what_is(const YAML::Node& n, std::string_view source = {});

}  // namespace moe::detail
