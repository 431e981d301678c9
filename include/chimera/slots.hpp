// The unit-time slot of every op (every op lasts one slot): the closed form
// of the schedule's registry entry where it applies (Chimera: docs/design/chimera-closed-form.md#the-closed-form,
// the slots of the paper's figures), else the start step of a unit-time ASAP
// run (docs/design/lowering.md#the-placement-rule). The text
// grid and the lowering pass place ops by these slots.
#pragma once

#include <vector>

#include "analysis.hpp"
#include "registry.hpp"
#include "schedule.hpp"
#include "schedule_entry.hpp"

namespace chimera {

struct unit_slots {
    bool complete = false;   // false: the schedule deadlocks, slots of stuck ops are -1
    int span = 0;            // last slot + 1
    std::vector<int> slot;   // per op, indexed like all_ops()
};

template <schedule_like S>
constexpr unit_slots make_unit_slots(const S& s) {
    unit_slots u;
    u.slot.reserve(s.op_count());
    const schedule_entry* e = find_schedule(s.params().schedule);
    const schedule_shape shape = shape_of(s);
    if (e && e->unit_slot && e->has_unit_slots(shape)) {
        u.complete = true;
        for (const op& o : s.all_ops()) {
            const int slot = is_compute(o.kind) ? e->unit_slot(shape, o) : -1;
            u.slot.push_back(slot);
            u.span = std::max(u.span, slot + 1);
        }
        return u;
    }
    const timing t = asap(s);
    u.complete = t.complete;
    u.span = static_cast<int>(t.makespan);
    for (double start : t.start) u.slot.push_back(static_cast<int>(start));
    return u;
}

}  // namespace chimera
