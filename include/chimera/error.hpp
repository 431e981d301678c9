// The one exception type of the library: every refusal names the rule it
// enforces (the ids of docs/design/schedule-rules.md / docs/design/formats.md) and the offending values.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace chimera {

class schedule_error : public std::invalid_argument {
public:
    schedule_error(std::string_view rule, const std::string& message)
        : std::invalid_argument(message), rule_(rule) {}
    // Spec rule id ("S1", ...); a string literal, so the view stays valid.
    std::string_view rule() const noexcept { return rule_; }

private:
    std::string_view rule_;
};

}  // namespace chimera
