// data.task -> the task that generates the data. Adding a task: its file, one case here, its tests.
#include <memory>
#include <stdexcept>

#include "tasks/clusters.h"
#include "tasks/task.h"

namespace moe {

std::unique_ptr<Task> task_create(const Config& cfg) {
    switch (cfg.data.task) {
        case TaskKind::clusters:
            return std::make_unique<ClustersTask>(cfg);
    }
    throw std::logic_error("task_create: a TaskKind without a task");
}

}  // namespace moe
