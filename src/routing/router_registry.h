// The routers' factories, found by name (router_registry.cpp). Each built router row of
// config/components.cpp has one factory here and each factory a row; a test keeps them equal.
#pragma once

#include <string_view>
#include <vector>

namespace moe {

// The names of the routers that have a factory, in table order.
std::vector<std::string_view> router_factory_names();

}  // namespace moe
