// The zoo through chimera.schedule/1: every generator's schedule, its params
// included (chunks, group size, split backward), survives a round trip and
// still passes the checker; and every entry of the registry is complete.
#include <doctest/doctest.h>

#include <chimera/chimera.hpp>
#include <chimera/io/json.hpp>

using namespace chimera;

namespace {
std::string test_rules(const check_report& r) {
    std::string out;
    for (const auto& d : r.diagnostics) out += std::string(d.rule) + ": " + d.message + "\n";
    return out;
}
}  // namespace

TEST_CASE("JSON round trip of every generator") {
    for (algorithm a : generated_algorithms)
        for (int d : {2, 4}) {
            config c{a, d, 3 * d};
            if (a == algorithm::interleaved) c.micro_batches = 2 * d;
            if (a == algorithm::looped_bfs) c.chunks = 3;
            if (validate(c)) continue;
            const schedule s = generate(c);
            const schedule back = io::read_json(io::write_json(s));
            CAPTURE(to_string(a));
            CHECK(back == s);
            CHECK(check(back).ok());
        }
}

TEST_CASE("JSON round trip keeps split backward and the interleaved group size") {
    config c{algorithm::chimera, 4, 8};
    c.split_backward = true;
    const schedule s = generate(c);
    const std::string text = io::write_json(s);
    CHECK(text.find("\"split_backward\":true") != std::string::npos);
    const schedule back = io::read_json(text);
    CHECK(back.params().split_backward);
    CHECK(back == s);
    CHECK(check(back).ok());

    config i{algorithm::interleaved, 4, 10};
    i.group_size = 6;
    i.chunks = 3;
    const schedule si = generate(i);
    const std::string ti = io::write_json(si);
    CHECK(ti.find("\"chunks\":3,\"group_size\":6,\"g\":6") != std::string::npos);
    CHECK(io::read_json(ti) == si);
}

namespace {
bool starts_with_rule(const config_rule& r) {
    return r.summary.starts_with("chimera rule " + std::string(r.id) + ": ") && r.broken && r.message;
}
}  // namespace

TEST_CASE("every registry entry: names, defaults, rules, generation, checker, JSON params, compare rows") {
    for (const config_rule& r : detail::shared_rules) CHECK(starts_with_rule(r));
    for (const schedule_entry* e : schedule_registry) {
        CAPTURE(e->name);
        CHECK(find_schedule(e->id) == e);
        CHECK(find_schedule(e->name) == e);
        for (std::string_view alias : e->aliases) CHECK(parse_algorithm(alias) == e->id);
        CHECK(to_string(e->id) == e->name);
        CHECK((e->n_constraint.ends_with('.') && !e->description.empty()));
        for (const config_rule& r : e->rules) CHECK(starts_with_rule(r));
        // At its defaults (k, v) with D=4, N=8: valid, generated, checked.
        const config c{e->id, 4, 8};
        REQUIRE_FALSE(validate(c));
        const schedule s = generate(c);
        CHECK(s == chimera::generator_of(*e)(c));
        CHECK(s.name() == e->name);
        CHECK(s.params().pipelines == e->default_pipelines);
        CHECK(s.workers() == 4);
        CHECK(s.stages() == 4 * chunk_count(c));
        const auto report = check(s);
        CHECK_MESSAGE(report.ok(), test_rules(report));
        // Its params are written in the entry's order and read back.
        const std::string text = io::write_json(s);
        std::size_t at = text.find("\"pipelines\":");
        for (const param_field& p : e->params) {
            if (p.kind == param_field::type::flag_if_set && !(s.params().*p.flag)) continue;  // written when set
            const std::size_t next = text.find(std::string("\"").append(p.key).append("\":"), at);
            CHECK(next != std::string::npos);
            at = next;
        }
        CHECK(io::read_json(text) == s);
        // Each setting compare shows is valid there and passes the checker.
        for (const schedule_variant& v : e->variants) {
            CAPTURE(v.label);
            REQUIRE_FALSE(validate(v.apply(c)));
            CHECK(check(generate(v.apply(c))).ok());
        }
    }
    CHECK(std::size(schedule_registry) == std::size(generated_algorithms));
    CHECK(!parse_algorithm("custom"));
    CHECK(to_string(algorithm::custom) == "custom");
    CHECK(validate_code(config{algorithm::custom}) == config_errc::custom_not_generated);
}
