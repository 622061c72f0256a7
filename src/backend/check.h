// Always-on internal checks (DESIGN.md "Errors"): an invariant that guards memory (a stack buffer
// sized by a schema limit, an index into a workspace) is checked in every build, not only where
// assert() is compiled in. A failed check is a bug in moe-sim, not a user error: it throws
// std::logic_error naming the file, the line and the condition, which the command line reports as
// an internal error.
#pragma once

#include <stdexcept>
#include <string>

#define MOESIM_CHECK(cond, what)                                                               \
    do {                                                                                       \
        if (!(cond)) [[unlikely]]                                                              \
            throw std::logic_error(std::string("internal check failed at ") + __FILE__ + ":" + \
                                   std::to_string(__LINE__) + ": " #cond " (" + (what) + ")"); \
    } while (0)
