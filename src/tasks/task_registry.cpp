// data.task -> the task that generates the data. Adding a task: its file, one case here, its tests.
#include <cassert>
#include <memory>

#include "tasks/clusters.h"
#include "tasks/task.h"

namespace moe {

std::unique_ptr<Task> task_create(const Config& cfg) {
    switch (cfg.data.task) {
        case TaskKind::clusters:
            return std::make_unique<ClustersTask>(cfg);
    }
    assert(false && "task_create: unknown TaskKind");
    return nullptr;
}

}  // namespace moe
