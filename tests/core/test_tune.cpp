// Performance model and configuration search (docs/design/chimera-closed-form.md#iteration-time,
// #choosing-a-configuration).
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include <chimera/tune.hpp>

using namespace chimera;

namespace {

hardware machine(std::string_view device, std::string_view network) {
    return {*find_preset(device_presets, device), *find_preset(network_presets, network)};
}

}  // namespace

TEST_CASE("model presets reproduce the paper's parameter counts (docs/design/chimera-closed-form.md#what-the-paper-reports)") {
    CHECK(find_preset(model_presets, "gpt2-1.3b")->parameters() == 1'389'327'360);
    CHECK(find_preset(model_presets, "bert-48")->parameters() == 669'790'012);
    CHECK(find_preset(model_presets, "gpt2-124m")->parameters() == 124'439'808);  // GPT-2 small, tied head
    CHECK(!find_preset(model_presets, "gpt3"));
    for (const preset& p : presets) {
        CHECK(find_preset(model_presets, p.model));
        CHECK(find_preset(device_presets, p.device));
        CHECK(find_preset(network_presets, p.network));
    }
}

TEST_CASE("layer partition: every stage has a layer, the output layer lightens the last stage") {
    const model_description gpt = *find_preset(model_presets, "gpt2-1.3b");
    for (int d : {1, 2, 4, 8, 16, 32, 64}) {
        const std::vector<int> layers = partition_layers(gpt, d);
        REQUIRE(layers.size() == static_cast<std::size_t>(d));
        int sum = 0;
        for (int l : layers) {
            CHECK(l >= 1);
            sum += l;
        }
        CHECK(sum == 64);
        if (d > 1) CHECK(layers.back() <= layers.front());
    }
    // The output layer costs 2.89 layers: 63 layers over 7 stages, the head stage keeps one.
    CHECK(partition_layers(gpt, 8) == std::vector<int>{9, 9, 9, 9, 9, 9, 9, 1});
    CHECK(partition_layers(*find_preset(model_presets, "gpt2-124m"), 4) == std::vector<int>{4, 4, 3, 1});
}

TEST_CASE("cost model: FLOPs to time, bytes per stage") {
    const model_description gpt = *find_preset(model_presets, "gpt2-124m");
    const hardware hw = machine("h100", "nvlink-ib");
    const cost_model c = make_cost_model(gpt, hw, 4, 8, false, 2);
    const double tokens = 8.0 * 1024;
    const double rate = 989e12 * 0.45 * tokens / (tokens + 1024);
    CHECK(c.stage(0).forward == doctest::Approx(8 * 4 * gpt.layer_flops() / rate));  // layers 4, 4, 3, 1
    CHECK(c.stage(3).forward == doctest::Approx(8 * (gpt.layer_flops() + gpt.head_flops()) / rate));
    CHECK(c.stage(0).backward == doctest::Approx(2 * c.stage(0).forward));
    CHECK(c.stage(0).message_bytes == 8 * 2.0 * 1024 * 768);
    // Weights of all stages add up to the model.
    double bytes = 0;
    for (int s = 0; s < 4; ++s) bytes += c.stage(s).parameter_bytes;
    CHECK(bytes == doctest::Approx(4.0 * gpt.parameters()));
    const cost_model r = make_cost_model(gpt, hw, 4, 8, true, 2);
    CHECK(r.duration(op_kind::B, 1) == doctest::Approx(3 * c.stage(1).forward));
    CHECK(r.stage(1).recompute_bytes < r.stage(1).activation_bytes);
}

TEST_CASE("tune equals a brute-force search on small grids") {
    struct grid {
        const char* model;
        int devices, batch;
        double memory;
    };
    for (const grid& g : {grid{"gpt2-124m", 8, 32, 2.0}, grid{"gpt2-124m", 16, 64, 1.0}, grid{"bert-48", 8, 16, 4.0},
                          grid{"gpt2-1.3b", 16, 32, 16.0}}) {
        const char* model = g.model;
        const int devices = g.devices, batch = g.batch;
        const double memory = g.memory;
        INFO(model, " P=", devices, " G=", batch, " memory ", memory, " GiB");
        tune_request r{.model = *find_preset(model_presets, model),
                       .machine = machine("p100", "aries"),
                       .devices = devices,
                       .global_batch = batch,
                       .memory_limit_bytes = memory * (1LL << 30),
                       .max_micro_batch_size = 8};
        const tune_result result = tune(r);
        // Brute force: every (D, B, schedule, k, mode, recompute), simulated
        // in full, memory from the simulator's own report.
        std::vector<tune_candidate> all;
        for (int d = 1; d <= devices; ++d)
            for (int b = 1; b <= 8; ++b) {
                const bool power_of_two = (b & (b - 1)) == 0;
                if (devices % d || !power_of_two || d > r.model.layers) continue;
                const int w = devices / d;
                if (batch % (b * w)) continue;
                for (algorithm a : tune_algorithms)
                    for (int k = 1; k <= 2 * d; ++k)
                        for (scaling mode : {scaling::direct, scaling::doubling, scaling::halving})
                            for (bool recompute : {false, true}) {
                                config c{a, d, batch / (b * w), a == algorithm::chimera ? k : 0, mode, w};
                                if ((a != algorithm::chimera && k != 1) || validate(c)) continue;
                                if (mode == scaling::halving && b % 2) continue;
                                const double size = mode == scaling::halving ? b / 2.0 : b;
                                const cost_model costs = make_cost_model(r.model, r.machine, d, size, recompute, w);
                                const simulation sim = simulate(lower(generate(c), {.sync = r.sync}), costs);
                                double peak = 0;
                                for (const auto& wr : sim.workers) peak = std::max(peak, wr.memory_bytes());
                                if (peak > r.memory_limit()) continue;
                                all.push_back({{c, b, recompute}, true, peak, sim.makespan, batch / sim.makespan,
                                               sim.bubble_ratio()});
                            }
            }
        std::sort(all.begin(), all.end(), better);
        REQUIRE(result.ranked.size() == all.size());
        CHECK(!all.empty());
        for (std::size_t i = 0; i < all.size(); ++i) {
            CHECK(result.ranked[i].point == all[i].point);
            CHECK(result.ranked[i].throughput == doctest::Approx(all[i].throughput));
            CHECK(result.ranked[i].memory_bytes == doctest::Approx(all[i].memory_bytes));
        }
        CHECK(result.evaluated >= all.size());
    }
}

TEST_CASE("tune: memory limits prune, impossible requests give an empty ranking") {
    tune_request r{.model = *find_preset(model_presets, "gpt2-1.3b"),
                   .machine = machine("p100", "aries"),
                   .devices = 8,
                   .global_batch = 8};
    const tune_result fits = tune(r);
    for (const auto& c : fits.ranked) CHECK(c.memory_bytes <= 16.0 * (1LL << 30));
    r.memory_limit_bytes = 1e6;  // 1 MB: nothing fits
    CHECK(tune(r).ranked.empty());
    r.memory_limit_bytes = 0;
    r.global_batch = 3;  // no B * W divides 3 except W = 1
    for (const auto& c : tune(r).ranked) CHECK(c.point.schedule.data_parallel == 1);
    std::size_t calls = 0;
    tune(r, [&](std::size_t done, std::size_t total) {
        CHECK(done <= total);
        ++calls;
    });
    CHECK(calls == tune_points(r).size());
}
