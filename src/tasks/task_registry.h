// The tasks' factories, found by name (task_registry.cpp). Each built task row of
// config/components.cpp has one factory here and each factory a row; a test keeps them equal.
#pragma once

#include <string_view>
#include <vector>

namespace moe {

// The names of the tasks that have a factory, in table order.
std::vector<std::string_view> task_factory_names();

}  // namespace moe
