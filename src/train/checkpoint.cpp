#include "train/checkpoint.h"

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "backend/serialize.h"
#include "config/config_error.h"
#include "config/config_load.h"
#include "io/atomic_file.h"

namespace moe {
namespace {

constexpr char kMagic[8] = {'M', 'O', 'E', 'S', 'I', 'M', 'C', 'K'};

uint64_t fnv1a(std::string_view bytes) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

// The config a resumed run must match: every key but `threads`, as a user writes it.
std::vector<std::pair<std::string, std::string>> config_pairs(const Config& cfg) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const std::string& key : config_keys())
        if (key != "threads") out.emplace_back(key, config_value_string(cfg, key));
    return out;
}

}  // namespace

bool checkpoint_exists(const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::exists(dir / kCheckpointFile, ec);
}

void checkpoint_save(const std::filesystem::path& dir, const Config& cfg, const TrainState& st) {
    std::ostringstream payload_os;
    {
        BinaryWriter w(payload_os);
        st.save(w);
    }
    const std::string payload = payload_os.str();
    std::ostringstream os;
    BinaryWriter w(os);
    os.write(kMagic, sizeof kMagic);
    w.put<uint32_t>(kCheckpointFormat);
    w.str(MOESIM_VERSION);
    w.put<int64_t>(st.step);
    const auto pairs = config_pairs(cfg);
    w.put<uint64_t>(pairs.size());
    for (const auto& [k, v] : pairs) {
        w.str(k);
        w.str(v);
    }
    w.put<uint64_t>(payload.size());
    w.put<uint64_t>(fnv1a(payload));
    os.write(payload.data(), std::streamsize(payload.size()));
    write_file_atomic(dir / kCheckpointFile, os.str());
}

namespace {

// Reads and checks the whole file; returns the step and the payload.
int64_t read_verified(const std::filesystem::path& dir, const Config& cfg, std::string& payload) {
    const std::filesystem::path path = dir / kCheckpointFile;
    const std::string where = path.string();
    if (!checkpoint_exists(dir))
        throw UserError(where +
                        ": no checkpoint to resume from (the run wrote none: "
                        "train.checkpoint_every is 0, or it stopped before its first)");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(where + ": cannot read the checkpoint");
    std::ostringstream all;
    all << in.rdbuf();
    const std::string bytes = all.str();
    if (bytes.size() < sizeof kMagic || bytes.compare(0, sizeof kMagic, kMagic, sizeof kMagic) != 0)
        throw UserError(where + ": not a moe-sim checkpoint");
    std::istringstream is(bytes.substr(sizeof kMagic));
    BinaryReader r(is);
    int64_t step = 0;
    try {
        const uint32_t format = r.get<uint32_t>();
        if (format != kCheckpointFormat)
            throw UserError(where + ": checkpoint format " + std::to_string(format) +
                            ", this moe-sim reads format " + std::to_string(kCheckpointFormat));
        const std::string version = r.str();
        step = r.get<int64_t>();
        if (step < 0 || step > cfg.train.steps)
            throw UserError(where + ": checkpoint of step " + std::to_string(step) +
                            ", outside this run's train.steps (" + std::to_string(cfg.train.steps) +
                            ")");
        const uint64_t n = r.get<uint64_t>();
        if (n > 100000) throw std::runtime_error("implausible config size");
        std::vector<std::pair<std::string, std::string>> saved;
        for (uint64_t i = 0; i < n; ++i) {
            std::string k = r.str();
            std::string v = r.str();
            saved.emplace_back(std::move(k), std::move(v));
        }
        const auto now = config_pairs(cfg);
        std::string diff;
        int ndiff = 0;
        for (const auto& [k, v] : now) {
            std::string was = "(absent)";
            for (const auto& [sk, sv] : saved)
                if (sk == k) was = sv;
            if (was == v) continue;
            if (ndiff++ < 6) diff += (diff.empty() ? "" : ", ") + k + " (" + was + " -> " + v + ")";
        }
        if (ndiff > 0)
            throw UserError(where + ": the config differs from the one the run was started with (" +
                            std::to_string(ndiff) + " key" + (ndiff > 1 ? "s" : "") + "): " + diff +
                            (ndiff > 6 ? ", ..." : "") + "; use --force to start again");
        const uint64_t size = r.get<uint64_t>();
        const uint64_t sum = r.get<uint64_t>();
        const size_t start = sizeof kMagic + size_t(is.tellg());
        if (bytes.size() - start != size)
            throw UserError(where + ": the checkpoint is truncated or has trailing bytes (" +
                            std::to_string(bytes.size() - start) + " payload bytes, expected " +
                            std::to_string(size) + ")");
        payload = bytes.substr(start);
        if (fnv1a(payload) != sum)
            throw UserError(where + ": the checkpoint is corrupt (checksum)");
        (void)version;
    } catch (const UserError&) {
        throw;
    } catch (const std::exception& e) {
        throw UserError(where + ": the checkpoint is damaged (" + e.what() + ")");
    }
    return step;
}

}  // namespace

int64_t checkpoint_verify(const std::filesystem::path& dir, const Config& cfg) {
    std::string payload;
    return read_verified(dir, cfg, payload);
}

int64_t checkpoint_load(const std::filesystem::path& dir, const Config& cfg, TrainState& st) {
    const std::string where = (dir / kCheckpointFile).string();
    std::string payload;
    const int64_t step = read_verified(dir, cfg, payload);
    // Header, config and checksum checked out: only now is st read into (a failure from here on
    // leaves st partly loaded, and the caller stops).
    try {
        std::istringstream ps(payload);
        BinaryReader pr(ps);
        st.load(pr);
        if (st.step != step) throw std::runtime_error("the header's step and the state's differ");
        if (ps.peek() != std::char_traits<char>::eof())
            throw std::runtime_error("trailing bytes after the training state");
    } catch (const std::exception& e) {
        throw UserError(where + ": the checkpoint does not fit this model (" + e.what() + ")");
    }
    return step;
}

}  // namespace moe
