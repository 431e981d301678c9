// Umbrella header: the schedule IR, every generator and the passes.
// Needs only the standard library. File formats live in chimera/io/.
#pragma once

#include "analysis.hpp"
#include "check.hpp"
#include "config.hpp"
#include "dependencies.hpp"
#include "error.hpp"
#include "generate.hpp"
#include "lower.hpp"
#include "simulate.hpp"
#include "op.hpp"
#include "placement.hpp"
#include "registry.hpp"
#include "rendezvous.hpp"
#include "schedule.hpp"
#include "schedule_entry.hpp"
#include "slots.hpp"
