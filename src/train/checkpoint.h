// Checkpoints of the whole training state (train/train_state.h) in a run directory, for
// `moe-sim run --resume` and for sweeps that resume an interrupted run.
//
// File `checkpoint.bin`:
//   "MOESIMCK"                 8 bytes of magic
//   u32 format version         kCheckpointFormat
//   str moe-sim version        the version that wrote it (information)
//   i64 step                   the last completed training step
//   u64 n, n x (str, str)      the resolved config, key by key, without `threads`: a resumed run
//                              must have the same config (any thread count gives the same bits)
//   u64 payload size, u64 FNV-1a 64 checksum of the payload, then the payload: TrainState::save
// It is written atomically (temporary file, fsync, rename): the previous checkpoint stays until
// the new one is whole. Reading verifies everything before it touches the state it loads into.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "config/config.h"
#include "train/train_state.h"

namespace moe {

// 2: the statistics windows and the collapse tracker keep the dense routers' weight masses.
// 3: the summary keeps the final dropped-token rate, dispatch entropy and task loss.
// 4: train.early_stop's state (the running minimum of the training loss, the stop reason).
inline constexpr uint32_t kCheckpointFormat = 4;
inline constexpr const char* kCheckpointFile = "checkpoint.bin";

// Writes dir/checkpoint.bin from st (its step is st.step). Throws UserError on an I/O error.
void checkpoint_save(const std::filesystem::path& dir, const Config& cfg, const TrainState& st);

// True when dir holds a checkpoint file (valid or not).
bool checkpoint_exists(const std::filesystem::path& dir);

// Checks dir/checkpoint.bin without loading it (what `run --resume` does before it touches the
// run directory) and returns its step; the same errors as checkpoint_load.
int64_t checkpoint_verify(const std::filesystem::path& dir, const Config& cfg);

// Loads dir/checkpoint.bin into st and returns its step. Throws UserError (one line, naming the
// file) when there is none, when it is truncated, corrupt or not a moe-sim checkpoint, when its
// format version is another, or when its config differs from cfg (naming the keys that differ).
// st is read into only after the header, the config and the checksum checked out.
int64_t checkpoint_load(const std::filesystem::path& dir, const Config& cfg, TrainState& st);

}  // namespace moe
