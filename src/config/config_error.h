// The one exception type for user errors (bad config, bad arguments, bad files): DESIGN.md.
// It carries one or more diagnostics, each rendered as one line:
//   <file>:<line>:<col>: <dotted.key>: <message>
// with the parts that do not apply left out. cli/ prints each line after "moe-sim: error: " and
// exits with code 2. Lines and columns are 1-based (yaml-cpp marks are 0-based: add 1).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace moe {

struct Diagnostic {
    std::string file;     // empty when not from a file (an override, a CLI argument)
    int line = 0;         // 1-based; 0 = unknown
    int column = 0;       // 1-based; 0 = unknown
    std::string key;      // dotted key path; empty when not about a key
    std::string message;  // what is allowed, then what was given

    std::string format() const;
};

class UserError : public std::runtime_error {
public:
    explicit UserError(std::vector<Diagnostic> diagnostics);
    explicit UserError(const std::string& message);  // a single line with no location
    const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

private:
    std::vector<Diagnostic> diagnostics_;
};

using ConfigError = UserError;

}  // namespace moe
