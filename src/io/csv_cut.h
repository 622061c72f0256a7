// Cutting a run's CSV files back to a step (`run --resume`, SPEC.md section 3): every row whose
// first column (the step) is larger than `step` is removed, and so is a torn last row (one
// without its line end); the header and the earlier rows stay byte for byte. The file is
// replaced atomically (write_file_atomic). A missing file is left missing.
#pragma once

#include <cstdint>
#include <filesystem>

namespace moe {

// Returns the number of rows removed. Throws UserError naming the file when it cannot be read
// or written, or when a row's first field is not an integer step.
int64_t csv_cut_after_step(const std::filesystem::path& path, int64_t step);

}  // namespace moe
