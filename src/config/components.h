// The component rows (DESIGN.md: "A component is one file and one registry row"). A router, a
// balancer or a task is one file plus one row here holding its config name, one-line summary,
// paper, the keys it reads, its rules between keys and the devices it runs on. From the rows come
// the choice lists of router.type, balance.loss and data.task (schema.cpp), the component rules of
// the validation (validate.cpp), the README's component table (components_markdown) and the
// lookups of the factories, which live in routing/router_registry.cpp and tasks/task_registry.cpp
// and find their row by name (a test checks that every built row has a factory and every factory
// a row).
//
// Adding a router: its file under routing/routers/, its factory in router_registry.cpp, its enum
// value in config.h, its row here (give it that enum value), its tests. Keys that belong to one
// component only go in its own sub-section, named after it: `router.expert_choice.capacity`,
// `data.markov.domains`. Such a key is legal only while its component is the one selected: given
// with another `router.type` it is an error naming the key (see own_section and
// not_selected_message). Keys shared by a family stay at the section level (`router.k` is read by
// every top-k router).
#pragma once

#include "config/config.h"

#include <array>
#include <span>
#include <string>
#include <string_view>

namespace moe {

namespace detail {
struct Show;  // how a rule shows the values it talks about (load_internal.h)
}

enum class ComponentKind { router, balancer, task };

// A rule between keys (mlpack's Require* style): the diagnostic is about `key`, sits at the line
// of the first of `reads` that was given, and the rule runs only when every key it reads (and the
// key that selects its component) passed its own checks.
struct KeyRule {
    std::string_view key;                   // the key the diagnostic is about
    std::array<std::string_view, 2> reads;  // the keys it reads (key included)
    std::string_view text;                  // the rule in words, for the reference
    std::string (*check)(const Config&,
                         const detail::Show&);  // "" when satisfied, else the message
};

// The devices a component runs on, as a bit set of Device values.
using DeviceSet = unsigned;
constexpr DeviceSet device_bit(Device d) {
    return 1u << unsigned(d);
}
inline constexpr DeviceSet kCpu = device_bit(Device::cpu);
inline constexpr DeviceSet kCuda = device_bit(Device::cuda);

struct ComponentRow {
    ComponentKind kind = ComponentKind::router;
    std::string_view name;  // config spelling = file stem
    // The choice key whose value selects it ("router.type", "balance.loss", "data.task"), or ""
    // for a balancer that its own key switches on (balance.z_loss > 0).
    std::string_view choice_key;
    // For a row without a choice key: what switches it on, in words ("`balance.z_loss` > 0").
    std::string_view on_when;
    // The value of the choice key's enum that selects it (compared explicitly, never a position);
    // -1 when the enum has no such value yet (not built) or when there is no choice key.
    int id = -1;
    bool built = false;        // false: a known name (SPEC.md) refused as not available yet
    std::string_view reason;   // not built: the refusal in words, when it needs more than the
                               // generic "not available yet" (what it waits for)
    std::string_view summary;  // one line
    std::string_view paper;    // "—" when none
    DeviceSet devices = 0;     // where it runs (0 when not built)
    std::span<const std::string_view> keys;  // the config keys it reads (its own and shared ones)
    std::span<const KeyRule> rules;          // run only while it is selected
};

// Every row: routers, then balancers, then tasks, each in the order of its choice list.
std::span<const ComponentRow> components();
// The row that the choice key `choice_key` selects with enum value `id`, or nullptr.
const ComponentRow* find_component(std::string_view choice_key, int id);
// The row of this kind and name, or nullptr.
const ComponentRow* find_component(ComponentKind kind, std::string_view name);
// The row selected in `cfg` by `choice_key` (never null for a key and config that validated).
const ComponentRow* selected_component(const Config& cfg, std::string_view choice_key);
// "router", "balancer", "task".
std::string_view to_string(ComponentKind kind);

// A component's own sub-section: "<section of its choice key>.<name>" ("data.clusters"), or ""
// for a row without a choice key. Keys inside it are read by that component only.
std::string own_section(const ComponentRow& row);
// The component whose own sub-section holds `key`, or nullptr (a shared key).
const ComponentRow* owner_of_key(std::string_view key);
// Whether the row may run on `device`.
inline bool runs_on(const ComponentRow& row, Device device) {
    return (row.devices & device_bit(device)) != 0;
}
// "cpu", "cpu, cuda", or "—" when none.
std::string devices_text(DeviceSet devices);

// The message for a key of `owner`'s own sub-section given while `selected` is the component
// chosen: "only read by data.task: clusters, but data.task is markov".
std::string not_selected_message(const ComponentRow& owner, const ComponentRow& selected);

// The README's component table (Markdown, one row per component, header included):
// name | kind | selected by | summary | paper | devices | status. `moe-sim validate --components`
// prints it.
std::string components_markdown();

}  // namespace moe
