// tune's explanations (docs/planning.md#why-it-wins): the terms of the
// iteration time of the top configurations, the rule each rejected one broke,
// the whole search as JSON, and a throughput/memory-against-D plot (SVG).
#pragma once

#include <string>

#include <chimera/tune.hpp>

namespace chimera_sched {

// "why" tables under tune's ranking (--why).
std::string terms_table(const chimera::tune_request& r, const chimera::tune_result& result, std::size_t top);
std::string rejection_summary(const chimera::tune_result& result);
// --format json: the request, every ranked row (terms for the first `top`) and every rejection.
std::string tune_json(const std::string& label, const chimera::tune_request& r, const chimera::tune_result& result,
                      std::size_t top);
// --plot FILE.svg: best throughput and its memory against D, per schedule; the best point circled.
std::string tune_plot(const std::string& label, const chimera::tune_request& r, const chimera::tune_result& result);

}  // namespace chimera_sched
