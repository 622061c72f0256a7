// data.task -> the task that generates the data, by name. A task's name, summary, keys (its own
// sub-section data.<name>.*), rules and devices are its row in config/components.cpp; here it has
// one line. Adding a task touches its file, its row, this table and its tests.
#include "tasks/task_registry.h"

#include <memory>
#include <string>

#include "config/components.h"
#include "config/config_error.h"
#include "config/config_load.h"
#include "tasks/clusters.h"
#include "tasks/markov.h"
#include "tasks/modular.h"
#include "tasks/patch_clusters.h"
#include "tasks/task.h"

namespace moe {
namespace {

struct TaskFactory {
    std::string_view name;  // = the row's name = data.task = the file stem
    std::unique_ptr<Task> (*make)(const Config&);
};

constexpr TaskFactory kTaskFactories[] = {
    {"clusters",
     [](const Config& cfg) -> std::unique_ptr<Task> {
         return std::make_unique<ClustersTask>(cfg);
     }},
    {"markov",
     [](const Config& cfg) -> std::unique_ptr<Task> { return std::make_unique<MarkovTask>(cfg); }},
    {"modular",
     [](const Config& cfg) -> std::unique_ptr<Task> { return std::make_unique<ModularTask>(cfg); }},
    {"patch_clusters",
     [](const Config& cfg) -> std::unique_ptr<Task> {
         return std::make_unique<PatchClustersTask>(cfg);
     }},
};

}  // namespace

std::vector<std::string_view> task_factory_names() {
    std::vector<std::string_view> out;
    for (const TaskFactory& f : kTaskFactories) out.push_back(f.name);
    return out;
}

std::unique_ptr<Task> task_create(const Config& cfg) {
    // The row whose enum value is cfg.data.task (an explicit comparison), then its factory by name.
    const ComponentRow* row = find_component("data.task", int(cfg.data.task));
    if (row)
        for (const TaskFactory& f : kTaskFactories)
            if (f.name == row->name) return f.make(cfg);
    throw UserError(std::string("data.task: '") + std::string(to_string(cfg.data.task)) +
                    "' has no task in this build");
}

}  // namespace moe
