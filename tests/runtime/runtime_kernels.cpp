// V1 (docs/design/runtime-contract.md#equivalence-guarantees-and-how-they-are-tested): every kernel's backward against central finite
// differences in double precision on a tiny model, through the stage code
// (so the stash and the I/W split are covered too).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <cpu/stage.hpp>
#include <gpt/model.hpp>

using namespace chimera;
using runtime::cpu::stage_model;

namespace {

const gpt::gpt_config tiny{10, 16, 6, 8, 2, 2};
constexpr int batch = 2, seq = 5;

std::vector<int> sample_ids(std::uint64_t seed) {
    gpt::rng g{seed};
    std::vector<int> ids(batch * seq);
    for (int& id : ids) id = static_cast<int>(g.next() % static_cast<std::uint64_t>(tiny.vocab));
    return ids;
}

// Loss and whole-model gradient of one micro-batch through a D-stage cut.
double loss_and_gradient(const std::vector<double>& params, int stages, std::vector<double>* grads) {
    const auto layouts = gpt::partition(tiny, stages);
    std::vector<stage_model<double>> models;
    for (const auto& l : layouts) models.emplace_back(tiny, l, batch, seq);
    std::vector<runtime::cpu::stash<double>> stashes;
    std::vector<double> activation(models[0].activation_size()), next(activation.size());
    for (int s = 0; s < stages; ++s) {
        stashes.push_back(models[s].make_stash());
        stashes[s].tokens = sample_ids(7);
        stashes[s].targets = sample_ids(8);
        models[s].forward(params.data() + layouts[s].offset, stashes[s], activation.data(), next.data());
        std::swap(activation, next);
    }
    const double loss = stashes.back().loss;
    if (grads) {
        grads->assign(params.size(), 0.0);
        std::vector<double> dout(activation.size()), din(activation.size());
        for (int s = stages - 1; s >= 0; --s) {
            models[s].backward_input(params.data() + layouts[s].offset, stashes[s], dout.data(), din.data(), 1.0);
            models[s].backward_weight(grads->data() + layouts[s].offset, stashes[s]);
            std::swap(dout, din);
        }
    }
    return loss;
}

}  // namespace

TEST_CASE("every parameter tensor's gradient matches central finite differences (fp64)") {
    auto params = gpt::initial_parameters<double>(tiny, 3);
    // Larger weights than GPT-2's init so that every path carries signal.
    gpt::rng g{11};
    const auto table = gpt::tensor_table(tiny);
    for (const auto& t : table)
        for (std::size_t j = 0; j < t.size; ++j) params[t.offset + j] += 0.3 * g.normal();
    std::vector<double> grads;
    const double loss = loss_and_gradient(params, 1, &grads);
    CHECK(std::isfinite(loss));
    int checked = 0;
    for (const auto& t : table) {
        const bool padded = t.name == "wte" || t.name == "head";
        const std::size_t usable = padded ? static_cast<std::size_t>(tiny.vocab) * tiny.channels : t.size;
        for (int k = 0; k < 6; ++k) {
            const std::size_t j = t.offset + g.next() % usable;
            const double saved = params[j], h = 1e-5;
            params[j] = saved + h;
            const double up = loss_and_gradient(params, 1, nullptr);
            params[j] = saved - h;
            const double down = loss_and_gradient(params, 1, nullptr);
            params[j] = saved;
            const double numeric = (up - down) / (2 * h);
            INFO(t.name << "[" << j - t.offset << "]: analytic " << grads[j] << ", numeric " << numeric);
            CHECK(std::abs(grads[j] - numeric) <= 1e-6 * (std::abs(grads[j]) + std::abs(numeric)) + 1e-9);
            ++checked;
        }
    }
    CHECK(checked == static_cast<int>(table.size()) * 6);
}

TEST_CASE("a two-stage cut gives bitwise the same loss and gradient as the whole model") {
    const auto params = gpt::initial_parameters<double>(tiny, 5);
    std::vector<double> whole, cut;
    const double a = loss_and_gradient(params, 1, &whole);
    const double b = loss_and_gradient(params, 2, &cut);
    CHECK(a == b);
    CHECK(whole == cut);
}

TEST_CASE("partition: the head counts, every stage gets a block, bad cuts are refused") {
    const auto first = runtime::balance_blocks(8, 4, 1.0, 0.0, 3.0);  // the head weighs 3 blocks
    REQUIRE(first.size() == 5);
    CHECK(first.front() == 0);
    CHECK(first.back() == 8);
    double largest = 0;
    for (int s = 0; s < 4; ++s) {
        CHECK(first[s + 1] > first[s]);
        largest = std::max(largest, (first[s + 1] - first[s]) + (s == 3 ? 3.0 : 0.0));
    }
    CHECK(largest == 4.0);  // optimum: 11 units over 4 stages with whole blocks
    CHECK(first[4] - first[3] == 1);
    CHECK_THROWS_AS(runtime::balance_blocks(3, 4, 1.0, 0.0, 0.0), std::invalid_argument);
    const auto layouts = gpt::partition(tiny, 2);
    CHECK(layouts[0].offset == 0);
    CHECK(layouts[1].offset == layouts[0].size);
    CHECK(layouts[1].offset + layouts[1].size == gpt::parameter_count(tiny));
}

// AdamW against numbers worked out by hand (exact decimal arithmetic), so a
// wrong bias correction, moment update or decay fails here and not only in
// a comparison of two runs that share the formula. lr 0.1, beta1 0.9,
// beta2 0.999, eps 1e-8, weight decay 0.01 on the first two parameters.
// Step 1 (g = 0.5 on p = 1): m = 0.05, v = 0.00025, m_hat = 0.05/0.1 = 0.5,
// v_hat = 0.00025/0.001 = 0.25, p = 1 - 0.1*(0.5/(0.5 + 1e-8) + 0.01*1)
// = 0.899000002. Step 2 (g = -0.25): m = 0.02, v = 0.00031225,
// m_hat = 0.02/0.19, v_hat = 0.00031225/0.001999.
TEST_CASE("AdamW: two steps on three parameters equal the hand-computed values") {
    const runtime::math::adamw_params adam{.learning_rate = 0.1, .beta1 = 0.9, .beta2 = 0.999, .epsilon = 1e-8,
                                           .weight_decay = 0.01};
    std::vector<double> p{1.0, -2.0, 0.5}, m(3, 0.0), v(3, 0.0);
    const bool decay[] = {true, true, false};
    const double gradients[2][3] = {{0.5, 0.1, -1.0}, {-0.25, 0.1, 2.0}};
    const double expected_p[2][3] = {{0.89900000199999996, -2.0979999900000010, 0.59999999900000001},
                                     {0.87146729870584616, -2.1959019800100020, 0.56338964652792491}};
    const double expected_m[2][3] = {{0.05, 0.01, -0.1}, {0.02, 0.019, 0.11}};
    const double expected_v[2][3] = {{0.00025, 0.00001, 0.001}, {0.00031225, 0.00001999, 0.004999}};
    for (int step = 1; step <= 2; ++step)
        for (int i = 0; i < 3; ++i) {
            CAPTURE(step);
            CAPTURE(i);
            runtime::math::adamw_update(p[i], m[i], v[i], gradients[step - 1][i], step, adam, decay[i]);
            CHECK(p[i] == doctest::Approx(expected_p[step - 1][i]).epsilon(1e-13));
            CHECK(m[i] == doctest::Approx(expected_m[step - 1][i]).epsilon(1e-13));
            CHECK(v[i] == doctest::Approx(expected_v[step - 1][i]).epsilon(1e-13));
        }
}
