// IoError: a file could not be read, created or written (a read-only directory, a full disk, a
// path under a regular file). It is a UserError (one line per diagnostic, naming the path and
// the system's reason), and cli/ maps it to exit code 1, not 2: the command line was fine, the
// machine refused (README: 1 = the run failed, diverged or an I/O error).
#pragma once

#include "config/config_error.h"

namespace moe {

class IoError : public UserError {
public:
    using UserError::UserError;
};

}  // namespace moe
