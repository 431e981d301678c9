// Determinism, resume and failure handling of the runtime (docs/design/runtime-contract.md#equivalence-guarantees-and-how-they-are-tested V5,
// docs/design/runtime-contract.md#cpu-transport deadlock detection, checkpoints).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include <chimera/check.hpp>
#include <chimera/generate.hpp>
#include <chimera/io/json.hpp>
#include <chimera/lower.hpp>
#include <common/checkpoint.hpp>
#include <cpu/trainer.hpp>

using namespace chimera;
using namespace chimera::runtime;
using namespace chimera::runtime::cpu;

namespace {

const gpt::dataset& data() {
    static const gpt::dataset d(16384, 2);
    return d;
}

run_shape test_shape(int micro_batches) {
    run_shape shape;
    shape.model = {data().vocab(), 64, 8, 16, 4, 2};
    shape.batch = 2;
    shape.seq = 8;
    shape.micro_batches = micro_batches;
    shape.adam.learning_rate = 1e-2;
    return shape;
}

const schedule& chimera4() {
    static const schedule s = lower(generate({algorithm::chimera, 4, 4, 2}));
    return s;
}

std::string temporary_directory(const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() / ("chimera-runtime-test-" + name);
    std::filesystem::remove_all(dir);
    return dir.string();
}

}  // namespace

TEST_CASE("two runs give the same bytes (V5)") {
    const auto shape = test_shape(4);
    const auto initial = gpt::initial_parameters<float>(shape.model, 7);
    pipeline_trainer<float> a(chimera4(), shape, data(), initial), b(chimera4(), shape, data(), initial);
    for (int step = 0; step < 3; ++step) {
        const auto ra = a.step(step), rb = b.step(step);
        CHECK(ra.micro_batch_losses == rb.micro_batch_losses);
    }
    CHECK(a.state() == b.state());
}

TEST_CASE("resume from a checkpoint equals the uninterrupted run, bitwise (V5)") {
    const auto shape = test_shape(4);
    const auto initial = gpt::initial_parameters<float>(shape.model, 7);
    const std::string dir = temporary_directory("resume");
    pipeline_trainer<float> whole(chimera4(), shape, data(), initial);
    std::vector<double> whole_losses;
    for (int step = 0; step < 4; ++step) whole_losses.push_back(whole.step(step).loss);

    {
        pipeline_trainer<float> first(chimera4(), shape, data(), initial);
        for (int step = 0; step < 2; ++step) first.step(step);
        const auto s = first.state();
        save_checkpoint<float>(dir, {shape.model, 2, 7, s.params, s.first_moment, s.second_moment});
    }
    auto c = load_checkpoint<float>(dir, shape.model, 7);
    CHECK(c.next_step == 2);
    // Resume under another schedule: the checkpoint is the whole model.
    pipeline_trainer<float> second(lower(generate({algorithm::one_f_one_b, 2, 4})), shape, data(), initial);
    pipeline_trainer<float> same(chimera4(), shape, data(), initial);
    second.load({c.params, c.first_moment, c.second_moment});
    same.load({c.params, c.first_moment, c.second_moment});
    for (int step = 2; step < 4; ++step) {
        CHECK(same.step(step).loss == whole_losses[static_cast<std::size_t>(step)]);
        CHECK(second.step(step).loss == doctest::Approx(whole_losses[static_cast<std::size_t>(step)]).epsilon(1e-5));
    }
    CHECK(same.state() == whole.state());
    std::filesystem::remove_all(dir);
}

TEST_CASE("corrupted or mismatched checkpoints are refused with a clear message") {
    const auto shape = test_shape(4);
    const std::string dir = temporary_directory("corrupt");
    const auto params = gpt::initial_parameters<float>(shape.model, 3);
    const std::vector<float> zeros(params.size(), 0.0f);
    save_checkpoint<float>(dir, {shape.model, 5, 3, params, zeros, zeros});
    CHECK(load_checkpoint<float>(dir, shape.model, 3).params == params);
    CHECK_FALSE(std::filesystem::exists(checkpoint_path(dir) + ".tmp"));

    auto message = [&](auto&& f) -> std::string {
        try {
            f();
        } catch (const checkpoint_error& e) {
            return e.what();
        }
        return "accepted";
    };
    auto other = shape.model;
    other.channels = 32;
    CHECK(message([&] { load_checkpoint<float>(dir, other, 3); }).find("model mismatch") != std::string::npos);
    CHECK(message([&] { load_checkpoint<float>(dir, shape.model, 4); }).find("seed mismatch") != std::string::npos);
    CHECK(message([&] { load_checkpoint<double>(dir, shape.model, 3); }).find("32-bit") != std::string::npos);
    {
        std::fstream f(checkpoint_path(dir), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(200);
        f.put('\x7f');
    }
    CHECK(message([&] { load_checkpoint<float>(dir, shape.model, 3); }).find("checksum") != std::string::npos);
    std::filesystem::resize_file(checkpoint_path(dir), 100);
    CHECK(message([&] { load_checkpoint<float>(dir, shape.model, 3); }).find("checksum") != std::string::npos);
    std::filesystem::resize_file(checkpoint_path(dir), 3);
    CHECK(message([&] { load_checkpoint<float>(dir, shape.model, 3); }).find("bad magic") != std::string::npos);
    std::filesystem::remove_all(dir);
    CHECK(message([&] { load_checkpoint<float>(dir, shape.model, 3); }).find("no checkpoint") != std::string::npos);
}

TEST_CASE("a send moved after its partner's receive is caught by the checker and reported by the runtime, no hang") {
    // Hand-edit the JSON: worker 0 sends the activation of its first SEND_F
    // at the very end of its list, after the receive that depends on it.
    auto j = nlohmann::json::parse(io::write_json(chimera4()));
    auto& list = j["ops"][0];
    std::size_t send = 0;
    while (list[send]["kind"] != "SEND_F") ++send;
    const auto moved = list[send];
    list.erase(send);
    list.push_back(moved);
    const schedule broken = io::read_json(j.dump());

    const auto report = check(broken);
    CHECK_FALSE(report.ok());
    CHECK(report.has("C3"));

    const auto shape = test_shape(4);
    pipeline_trainer<float> t(broken, shape, data(), gpt::initial_parameters<float>(shape.model, 1),
                              std::chrono::milliseconds(5000));
    std::string error;
    try {
        t.step(0);
    } catch (const std::runtime_error& e) {
        error = e.what();
    }
    INFO(error);
    CHECK(error.find("deadlock") != std::string::npos);
    CHECK(error.find("worker 1 blocked") != std::string::npos);
    CHECK(error.find("RECV_F") != std::string::npos);
}

TEST_CASE("the watchdog stops a run that makes no progress") {
    // A lone receive whose sender never exists in the list: every other
    // worker finishes, so the detector fires; with a tiny watchdog either
    // report is a clean failure, never a hang.
    const auto& good = chimera4();
    schedule s = copy_frame(good);
    for (int w = 0; w < good.workers(); ++w) {
        s.add_worker();
        if (w == 1) s.push_op({op_kind::RECV_F, 1, 0, 0, 0});
    }
    const auto shape = test_shape(4);
    pipeline_trainer<float> t(s, shape, data(), gpt::initial_parameters<float>(shape.model, 1),
                              std::chrono::milliseconds(200));
    CHECK_THROWS_WITH_AS(t.step(0), doctest::Contains("worker 1 blocked"), std::runtime_error);
}
