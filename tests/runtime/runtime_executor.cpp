// The executor, backend and transport concepts of include/chimera/runtime/
// used the way a framework embedding the headers uses them: a toy backend
// over plain doubles (stage s multiplies by its weight w_s) and a toy
// transport (one thread per worker). Every zoo schedule runs through
// chimera::runtime::run_iteration; each worker sees its lowered list in
// order, every message is received after it was sent (same key, once),
// and the reduced gradients equal the closed form.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <chimera/runtime/executor.hpp>
#include <chimera/runtime/message.hpp>
#include <chimera/runtime/transport.hpp>

using namespace chimera;
using namespace chimera::runtime;

namespace {

// Shared by all workers: posted sends, receive times, reductions.
struct toy_network {
    std::mutex mutex;
    std::condition_variable cv;
    std::map<message_key, double> payload;
    std::map<message_key, long> sent_at, received_at;
    std::map<message_key, int> sends, receives;
    struct reduction {
        std::vector<std::pair<int, double*>> members;  // (order, buffer)
        bool done = false;
    };
    std::map<int, reduction> reductions;
    long clock = 0;
};

// One worker's view of the network for one comm group: models
// runtime::transport (sends are buffered, as an eager transport's are).
class toy_channel {
public:
    explicit toy_channel(toy_network& net) : net_(net) {}
    void post_send(const message_key& key, double value) {
        std::lock_guard lock(net_.mutex);
        net_.payload[key] = value;
        net_.sent_at[key] = ++net_.clock;
        ++net_.sends[key];
        net_.cv.notify_all();
    }
    void post_recv(const message_key& key, double* out) { recvs_.emplace_back(key, out); }
    void post_reduce(const reduce_key& key, double* buffer) {
        std::lock_guard lock(net_.mutex);
        auto& r = net_.reductions[key.stage];
        r.members.emplace_back(key.order, buffer);
        reduces_.push_back(key.stage);
        if (static_cast<int>(r.members.size()) < key.members) return;
        std::sort(r.members.begin(), r.members.end());
        double sum = 0;
        for (const auto& m : r.members) sum += *m.second;
        for (const auto& m : r.members) *m.second = sum;
        r.done = true;
        net_.cv.notify_all();
    }
    void complete() {
        std::unique_lock lock(net_.mutex);
        const auto ready = [&] {
            for (const auto& [key, out] : recvs_)
                if (!net_.payload.count(key)) return false;
            for (int stage : reduces_)
                if (!net_.reductions[stage].done) return false;
            return true;
        };
        if (!net_.cv.wait_for(lock, std::chrono::seconds(20), ready)) throw std::runtime_error("toy transport: stuck");
        for (const auto& [key, out] : recvs_) {
            *out = net_.payload[key];
            net_.received_at[key] = ++net_.clock;
            ++net_.receives[key];
        }
    }

private:
    toy_network& net_;
    std::vector<std::pair<message_key, double*>> recvs_;
    std::vector<int> reduces_;
};
static_assert(transport<toy_channel, double, double*>);

// Stage s computes y = w_s * x; the loss of micro-batch m is the last
// stage's y, with x_m = 1 + m at stage 0. Records every call.
class toy_backend {
public:
    toy_backend(const schedule& s, toy_network& net, int group, int worker)
        : s_(s), net_(net), group_(group), worker_(worker) {
        for (const replica& r : replicas_on(s, worker)) weights_[key(r)] = weight(r.stage);
    }
    static double weight(int stage) { return 1.0 + 0.25 * stage; }
    static double input(int micro_batch) { return 1.0 + micro_batch; }

    void zero_grad(const replica& r) { grads_[key(r)] = 0; }
    void forward(const op& o) {
        calls.push_back(o);
        const double x = o.stage == 0 ? input(o.micro_batch) : take(input_of(s_, o, offset()));
        stash_[{o.pipeline, o.stage, o.micro_batch}] = {x, 0};
        if (o.stage + 1 < s_.stages()) put(output_of(s_, o, offset()), weights_.at(key(o)) * x);
    }
    void backward(const op& o) {
        calls.push_back(o);
        input_part(o);
        weight_part(o);
    }
    void backward_input(const op& o) {
        calls.push_back(o);
        input_part(o);
    }
    void backward_weight(const op& o) {
        calls.push_back(o);
        weight_part(o);
    }
    void input_part(const op& o) {
        auto& st = stash_.at({o.pipeline, o.stage, o.micro_batch});
        st.second = o.stage + 1 == s_.stages() ? 1.0 : take(input_of(s_, o, offset()));
        if (o.stage > 0) put(output_of(s_, o, offset()), weights_.at(key(o)) * st.second);
    }
    void weight_part(const op& o) {
        const auto& st = stash_.at({o.pipeline, o.stage, o.micro_batch});
        grads_[key(o)] += st.first * st.second;
    }
    void release_activations(const op& o) { released.push_back(o); }
    void comm(std::span<const op> group) {
        toy_channel channel(net_);
        for (const op& o : group) {
            calls.push_back(o);
            if (o.kind == op_kind::REDUCE_GRAD) {
                channel.post_reduce(reduction_of(o, group_, s_.pipelines(), data_parallel), &grads_[key(o)]);
                continue;
            }
            const message_key k = message_of(o, worker_, offset());
            if (o.kind == op_kind::SEND_F || o.kind == op_kind::SEND_B) channel.post_send(k, take(k));
            else channel.post_recv(k, &boxes_[k]);
        }
        channel.complete();
    }
    void synchronize() {
        if (!boxes_.empty()) throw std::runtime_error("unconsumed messages at the end of the iteration");
    }
    void optimizer_step(const replica& r) { reduced[key(r)] = grads_[key(r)]; }

    int data_parallel = 1;
    std::vector<op> calls, released;
    std::map<std::pair<int, int>, double> reduced;  // (pipeline, stage) -> gradient after the reduction

private:
    static std::pair<int, int> key(const replica& r) { return {r.pipeline, r.stage}; }
    static std::pair<int, int> key(const op& o) { return {o.pipeline, o.stage}; }
    int offset() const { return group_ * s_.workers(); }
    void put(const message_key& k, double v) { boxes_[k] = v; }
    double take(const message_key& k) {
        const auto it = boxes_.find(k);
        if (it == boxes_.end()) throw std::runtime_error("missing message: " + to_string(k));
        const double v = it->second;
        boxes_.erase(it);
        return v;
    }

    const schedule& s_;
    toy_network& net_;
    int group_, worker_;
    std::map<std::pair<int, int>, double> weights_, grads_;
    std::map<std::tuple<int, int, int>, std::pair<double, double>> stash_;  // (x, dy)
    std::map<message_key, double> boxes_;
};
static_assert(backend<toy_backend>);

// d(sum_m y_m)/d w_s = sum_m x_m * prod_{t != s} w_t.
double expected_gradient(const schedule& s, int stage, int data_parallel) {
    double rest = 1;
    for (int t = 0; t < s.stages(); ++t)
        if (t != stage) rest *= toy_backend::weight(t);
    double inputs = 0;
    for (int m = 0; m < s.micro_batches(); ++m) inputs += toy_backend::input(m);
    return inputs * rest * data_parallel;
}

void run_and_check(const config& c, sync_policy sync) {
    const schedule s = lower(generate(c), {.sync = sync});
    const int W = c.data_parallel;
    toy_network net;
    std::vector<std::unique_ptr<toy_backend>> workers;
    for (int g = 0; g < W; ++g)
        for (int w = 0; w < s.workers(); ++w) {
            workers.push_back(std::make_unique<toy_backend>(s, net, g, w));
            workers.back()->data_parallel = W;
        }
    std::vector<std::string> errors(workers.size());
    std::vector<std::thread> threads;
    for (std::size_t r = 0; r < workers.size(); ++r)
        threads.emplace_back([&, r] {
            const int w = static_cast<int>(r) % s.workers();
            const auto owned = replicas_on(s, w);
            try {
                run_iteration(s.ops(w), owned, *workers[r]);
            } catch (const std::exception& e) {
                errors[r] = e.what();
            }
        });
    for (auto& t : threads) t.join();
    for (std::size_t r = 0; r < workers.size(); ++r) {
        INFO("rank " << r << ": " << errors[r]);
        REQUIRE(errors[r].empty());
        const auto ops = s.ops(static_cast<int>(r) % s.workers());
        CHECK(workers[r]->calls == std::vector<op>(ops.begin(), ops.end()));  // the list, in order
        std::vector<op> dying;
        for (const op& o : ops)
            if (o.kind == op_kind::B || o.kind == op_kind::W) dying.push_back(o);
        CHECK(workers[r]->released == dying);  // a stash dies at its B or W
        for (const auto& [replica, gradient] : workers[r]->reduced)
            CHECK(gradient == doctest::Approx(expected_gradient(s, replica.second, W)).epsilon(1e-12));
    }
    CHECK(net.sends.size() == net.receives.size());
    for (const auto& [key, count] : net.sends) {
        INFO(to_string(key));
        CHECK(count == 1);
        REQUIRE(net.receives.count(key) == 1);
        CHECK(net.receives.at(key) == 1);
        CHECK(net.sent_at.at(key) < net.received_at.at(key));
    }
}

std::vector<config> zoo() {
    std::vector<config> out = {
        {.schedule = algorithm::gpipe, .stages = 4, .micro_batches = 4},
        {.schedule = algorithm::one_f_one_b, .stages = 4, .micro_batches = 6},
        {.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4},
        {.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8, .scaling_mode = scaling::doubling},
        {.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8, .scaling_mode = scaling::halving},
        {.schedule = algorithm::chimera, .stages = 8, .micro_batches = 8, .pipelines = 4},
        {.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8, .split_backward = true},
        {.schedule = algorithm::interleaved, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::interleaved, .stages = 4, .micro_batches = 8, .chunks = 3},
        {.schedule = algorithm::looped_bfs, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::gems, .stages = 4, .micro_batches = 4},
        {.schedule = algorithm::zb_h1, .stages = 4, .micro_batches = 6},
        {.schedule = algorithm::zb_h2, .stages = 4, .micro_batches = 6},
        {.schedule = algorithm::zb_v, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::dualpipe, .stages = 4, .micro_batches = 8},
        {.schedule = algorithm::dualpipev, .stages = 2, .micro_batches = 4},
    };
    const std::size_t single = out.size();
    for (std::size_t i = 0; i < single; ++i) {
        config c = out[i];
        c.data_parallel = 2;
        out.push_back(c);
    }
    return out;
}

}  // namespace

TEST_CASE("library executor: every zoo schedule runs on a toy backend; order, messages and gradients hold") {
    for (const config& c : zoo())
        for (const sync_policy sync : {sync_policy::end, sync_policy::eager}) {
            INFO(to_string(c.schedule) << " D=" << c.stages << " N=" << c.micro_batches << " W=" << c.data_parallel
                                       << " " << to_string(c.scaling_mode) << (c.split_backward ? " split" : "")
                                       << " sync " << to_string(sync));
            run_and_check(c, sync);
        }
}

TEST_CASE("message keys: a send and its receive name the same message; bad ops refused") {
    const schedule s = lower(generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4}));
    int pairs = 0;
    for (int w = 0; w < s.workers(); ++w)
        for (const op& o : s.ops(w)) {
            if (o.kind != op_kind::SEND_F && o.kind != op_kind::SEND_B) continue;
            const message_key k = message_of(o, w, 8);
            CHECK(k.from == 8 + w);
            CHECK(k.to == 8 + o.peer);
            int matches = 0;
            for (const op& r : s.ops(o.peer))
                if (is_p2p(r.kind) && r.kind != o.kind && message_of(r, o.peer, 8) == k) ++matches;
            CHECK(matches == 1);
            ++pairs;
        }
    CHECK(pairs > 0);
    CHECK_THROWS_AS(message_of(forward(0, 0, 0), 0), std::invalid_argument);
    CHECK_THROWS_AS(message_of({op_kind::SEND_F, 0, 0, 0, no_peer}, 0), std::invalid_argument);
    CHECK_THROWS_AS(reduction_of(forward(0, 0, 0), 0, 2, 1), std::invalid_argument);
    const reduce_key r = reduction_of({op_kind::REDUCE_GRAD, 3, no_micro_batch, 1, no_peer}, 2, 2, 3);
    CHECK(r.stage == 3);
    CHECK(r.order == 5);
    CHECK(r.members == 6);
}
