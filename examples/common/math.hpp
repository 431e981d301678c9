// Per-element and per-row formulas shared by the CPU kernels and the later
// CUDA kernels (docs/design/runtime-contract.md#kernels-and-their-cpu-twins): loops, parallelism and reductions stay
// backend-specific, the formulas live here once.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define CHIMERA_HD __host__ __device__
#else
#define CHIMERA_HD
#endif

namespace chimera::runtime::math {

// GELU, tanh form: 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))).
template <class R>
CHIMERA_HD inline R gelu(R u) {
    const R scale = static_cast<R>(0.7978845608028654);  // sqrt(2/pi)
    const R cube = static_cast<R>(0.044715) * u * u * u;
    return static_cast<R>(0.5) * u * (static_cast<R>(1) + std::tanh(scale * (u + cube)));
}

template <class R>
CHIMERA_HD inline R gelu_derivative(R u) {
    const R scale = static_cast<R>(0.7978845608028654);
    const R cube = static_cast<R>(0.044715) * u * u * u;
    const R arg = scale * (u + cube);
    const R t = std::tanh(arg);
    const R cosh_value = std::cosh(arg);
    const R sech2 = static_cast<R>(1) / (cosh_value * cosh_value);
    return static_cast<R>(0.5) * (static_cast<R>(1) + t) +
           u * static_cast<R>(0.5) * sech2 * scale * (static_cast<R>(1) + static_cast<R>(3 * 0.044715) * u * u);
}

// Layernorm statistics from the row sums: 1/sqrt(var + eps), eps = 1e-5.
template <class R>
CHIMERA_HD inline R layernorm_rstd(R variance) {
    return static_cast<R>(1) / std::sqrt(variance + static_cast<R>(1e-5));
}

// Online softmax: fold value x into a running (max, sum of exp(v - max)).
template <class R>
CHIMERA_HD inline void online_softmax_update(R& running_max, R& running_sum, R x) {
    if (x > running_max) {
        running_sum = running_sum * std::exp(running_max - x) + static_cast<R>(1);
        running_max = x;
    } else {
        running_sum += std::exp(x - running_max);
    }
}

struct adamw_params {
    double learning_rate = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double epsilon = 1e-8;
    double weight_decay = 0.0;
};

// AdamW's constants for one step in the parameters' type, with the bias
// corrections 1 - beta^step: computed once per step (on the host for the
// GPU kernel, which then does no pow and no double arithmetic per element).
template <class R>
struct adamw_step {
    R learning_rate, beta1, beta2, epsilon, weight_decay, correction1, correction2;
};
template <class R>
inline adamw_step<R> adamw_prepare(const adamw_params& p, int step) {
    return {static_cast<R>(p.learning_rate),
            static_cast<R>(p.beta1),
            static_cast<R>(p.beta2),
            static_cast<R>(p.epsilon),
            static_cast<R>(p.weight_decay),
            static_cast<R>(1) - static_cast<R>(std::pow(p.beta1, step)),
            static_cast<R>(1) - static_cast<R>(std::pow(p.beta2, step))};
}

// One AdamW update of one parameter; decay: apply this step's weight decay.
template <class R>
CHIMERA_HD inline void adamw_update(R& parameter, R& first_moment, R& second_moment, R gradient,
                                    const adamw_step<R>& s, bool decay) {
    first_moment = s.beta1 * first_moment + (static_cast<R>(1) - s.beta1) * gradient;
    second_moment = s.beta2 * second_moment + (static_cast<R>(1) - s.beta2) * gradient * gradient;
    const R m_hat = first_moment / s.correction1;
    const R v_hat = second_moment / s.correction2;
    const R wd = decay ? s.weight_decay : static_cast<R>(0);
    parameter -= s.learning_rate * (m_hat / (std::sqrt(v_hat) + s.epsilon) + wd * parameter);
}

// The same with the step's constants computed here; step is 1-based.
template <class R>
inline void adamw_update(R& parameter, R& first_moment, R& second_moment, R gradient, int step,
                         const adamw_params& p, bool decay) {
    adamw_update(parameter, first_moment, second_moment, gradient, adamw_prepare<R>(p, step), decay);
}

}  // namespace chimera::runtime::math
