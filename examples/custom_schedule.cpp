// A schedule written by hand with chimera::schedule_builder: a two-worker
// pipeline in which each backward is split into I and W and worker 0 runs
// its weight gradients late, in the bubble that 1F1B leaves at its end.
// The builder appends ops per worker; chimera::check validates the result
// exactly as it validates the built-in generators. Exit 0 when valid.
#include <cstdio>
#include <string>

// GCC 12 reports a false -Wrestrict inside libstdc++'s string append when
// write_text is inlined here (GCC bug 105329).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include <chimera/analysis.hpp>
#include <chimera/builder.hpp>
#include <chimera/check.hpp>
#include <chimera/io/text.hpp>

int main() {
    using namespace chimera;
    const int micro_batches = 4;
    schedule_builder builder("hand-zb", {.stages = 2, .micro_batches = micro_batches, .pipelines = 1, .workers = 2});
    builder.place(0, 0, 0).place(0, 1, 1);  // stage s on worker s
    // Worker 1 (last stage): F, I, W per micro-batch.
    for (int m = 0; m < micro_batches; ++m)
        builder.append(forward(0, m, 1)).append(input_gradient(0, m, 1)).append(weight_gradient(0, m, 1));
    // Worker 0: one forward ahead, then F / I alternating; W passes delayed by one.
    builder.append(forward(0, 0, 0));
    for (int m = 0; m < micro_batches; ++m) {
        if (m + 1 < micro_batches) builder.append(forward(0, m + 1, 0));
        builder.append(input_gradient(0, m, 0));
        if (m > 0) builder.append(weight_gradient(0, m - 1, 0));
    }
    builder.append(weight_gradient(0, micro_batches - 1, 0));

    const schedule s = builder.build();
    const check_report report = check(s);
    std::fputs(io::write_text(s).c_str(), stdout);
    for (const auto& d : report.diagnostics) std::printf("%.*s: %s\n", static_cast<int>(d.rule.size()), d.rule.data(), d.message.c_str());
    const timing t = asap(s, {1, 2, 1, 1});
    std::printf("%s; span %.0f with F=I=W=1, bubble ratio %.3f, peak activations %d\n",
                report.ok() ? "valid" : "INVALID", t.makespan, t.bubble_ratio(), peak_activations(s, 0));
    return report.ok() ? 0 : 1;
}
