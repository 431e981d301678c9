// CPU twins of the model kernels (docs/design/runtime-contract.md#kernels-and-their-cpu-twins), templated on float and
// double. llm.c argument order: outputs first, then inputs, then sizes.
// Backward kernels add into their gradient outputs. Weight gradients are
// summed over the rows of one call first and then added once, so that a
// micro-batch contributes one rounded value per element (deterministic,
// independent of what else is in the accumulator).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "../common/math.hpp"

namespace chimera::runtime::cpu {

using std::size_t;

template <class R>
void encoder_forward(R* out, const int* tokens, const R* wte, const R* wpe, int B, int T, int C) {
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
            R* o = out + (static_cast<size_t>(b) * T + t) * C;
            const R* e = wte + static_cast<size_t>(tokens[b * T + t]) * C;
            const R* p = wpe + static_cast<size_t>(t) * C;
            for (int i = 0; i < C; ++i) o[i] = e[i] + p[i];
        }
}

// Rows are visited in order, so the scatter-add into wte is deterministic.
template <class R>
void encoder_backward(R* dwte, R* dwpe, const R* dout, const int* tokens, int B, int T, int C) {
    std::vector<R> dpos(static_cast<size_t>(T) * C, R(0));
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
            const R* d = dout + (static_cast<size_t>(b) * T + t) * C;
            R* e = dwte + static_cast<size_t>(tokens[b * T + t]) * C;
            for (int i = 0; i < C; ++i) e[i] += d[i], dpos[static_cast<size_t>(t) * C + i] += d[i];
        }
    for (size_t i = 0; i < dpos.size(); ++i) dwpe[i] += dpos[i];
}

template <class R>
void layernorm_forward(R* out, R* mean, R* rstd, const R* inp, const R* weight, const R* bias, int N, int C) {
    for (int n = 0; n < N; ++n) {
        const R* x = inp + static_cast<size_t>(n) * C;
        R m = 0;
        for (int i = 0; i < C; ++i) m += x[i];
        m /= C;
        R v = 0;
        for (int i = 0; i < C; ++i) v += (x[i] - m) * (x[i] - m);
        v /= C;
        const R s = math::layernorm_rstd(v);
        R* o = out + static_cast<size_t>(n) * C;
        for (int i = 0; i < C; ++i) o[i] = (x[i] - m) * s * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = s;
    }
}

template <class R>
void layernorm_backward_input(R* dinp, const R* dout, const R* inp, const R* weight, const R* mean, const R* rstd,
                              int N, int C) {
    for (int n = 0; n < N; ++n) {
        const R* d = dout + static_cast<size_t>(n) * C;
        const R* x = inp + static_cast<size_t>(n) * C;
        R* dx = dinp + static_cast<size_t>(n) * C;
        R dnorm_mean = 0, dnorm_norm_mean = 0;
        for (int i = 0; i < C; ++i) {
            const R norm = (x[i] - mean[n]) * rstd[n];
            const R dnorm = weight[i] * d[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int i = 0; i < C; ++i) {
            const R norm = (x[i] - mean[n]) * rstd[n];
            const R dnorm = weight[i] * d[i];
            dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd[n];
        }
    }
}

template <class R>
void layernorm_backward_weight(R* dweight, R* dbias, const R* dout, const R* inp, const R* mean, const R* rstd, int N,
                               int C) {
    std::vector<R> dw(static_cast<size_t>(C), R(0)), db(static_cast<size_t>(C), R(0));
    for (int n = 0; n < N; ++n) {
        const R* d = dout + static_cast<size_t>(n) * C;
        const R* x = inp + static_cast<size_t>(n) * C;
        for (int i = 0; i < C; ++i) {
            dw[i] += (x[i] - mean[n]) * rstd[n] * d[i];
            db[i] += d[i];
        }
    }
    for (int i = 0; i < C; ++i) dweight[i] += dw[i], dbias[i] += db[i];
}

// out[N, OC] = inp[N, C] * weight[OC, C]^T + bias
template <class R>
void matmul_forward(R* out, const R* inp, const R* weight, const R* bias, int N, int C, int OC) {
    for (int n = 0; n < N; ++n) {
        const R* x = inp + static_cast<size_t>(n) * C;
        for (int o = 0; o < OC; ++o) {
            const R* w = weight + static_cast<size_t>(o) * C;
            R sum = bias ? bias[o] : R(0);
            for (int i = 0; i < C; ++i) sum += x[i] * w[i];
            out[static_cast<size_t>(n) * OC + o] = sum;
        }
    }
}

template <class R>
void matmul_backward_input(R* dinp, const R* dout, const R* weight, int N, int C, int OC) {
    for (int n = 0; n < N; ++n) {
        R* dx = dinp + static_cast<size_t>(n) * C;
        for (int o = 0; o < OC; ++o) {
            const R d = dout[static_cast<size_t>(n) * OC + o];
            const R* w = weight + static_cast<size_t>(o) * C;
            for (int i = 0; i < C; ++i) dx[i] += d * w[i];
        }
    }
}

template <class R>
void matmul_backward_weight(R* dweight, R* dbias, const R* dout, const R* inp, int N, int C, int OC) {
    std::vector<R> row(static_cast<size_t>(C));
    for (int o = 0; o < OC; ++o) {
        std::fill(row.begin(), row.end(), R(0));
        R db = 0;
        for (int n = 0; n < N; ++n) {
            const R d = dout[static_cast<size_t>(n) * OC + o];
            const R* x = inp + static_cast<size_t>(n) * C;
            for (int i = 0; i < C; ++i) row[i] += d * x[i];
            db += d;
        }
        R* w = dweight + static_cast<size_t>(o) * C;
        for (int i = 0; i < C; ++i) w[i] += row[i];
        if (dbias) dbias[o] += db;
    }
}

// Causal multi-head attention. qkv: [B, T, 3C] (q, k, v), out: [B, T, C],
// att: [B, NH, T, T] the softmax probabilities (saved for backward).
template <class R>
void attention_forward(R* out, R* att, const R* qkv, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const R scale = R(1) / std::sqrt(static_cast<R>(hs));
    const size_t C3 = static_cast<size_t>(C) * 3;
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t)
            for (int h = 0; h < NH; ++h) {
                const R* q = qkv + (static_cast<size_t>(b) * T + t) * C3 + static_cast<size_t>(h) * hs;
                R* a = att + ((static_cast<size_t>(b) * NH + h) * T + t) * T;
                R maxval = -std::numeric_limits<R>::infinity();
                for (int t2 = 0; t2 <= t; ++t2) {
                    const R* k = qkv + (static_cast<size_t>(b) * T + t2) * C3 + C + static_cast<size_t>(h) * hs;
                    R v = 0;
                    for (int i = 0; i < hs; ++i) v += q[i] * k[i];
                    v *= scale;
                    a[t2] = v;
                    maxval = std::max(maxval, v);
                }
                R sum = 0;
                for (int t2 = 0; t2 <= t; ++t2) sum += (a[t2] = std::exp(a[t2] - maxval));
                const R inv = R(1) / sum;
                for (int t2 = 0; t2 < T; ++t2) a[t2] = t2 <= t ? a[t2] * inv : R(0);
                R* o = out + (static_cast<size_t>(b) * T + t) * C + static_cast<size_t>(h) * hs;
                for (int i = 0; i < hs; ++i) o[i] = 0;
                for (int t2 = 0; t2 <= t; ++t2) {
                    const R* v = qkv + (static_cast<size_t>(b) * T + t2) * C3 + 2 * static_cast<size_t>(C) +
                                 static_cast<size_t>(h) * hs;
                    for (int i = 0; i < hs; ++i) o[i] += a[t2] * v[i];
                }
            }
}

template <class R>
void attention_backward(R* dqkv, const R* dout, const R* qkv, const R* att, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const R scale = R(1) / std::sqrt(static_cast<R>(hs));
    const size_t C3 = static_cast<size_t>(C) * 3;
    std::vector<R> datt(static_cast<size_t>(T)), dpre(static_cast<size_t>(T));
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t)
            for (int h = 0; h < NH; ++h) {
                const size_t qoff = (static_cast<size_t>(b) * T + t) * C3 + static_cast<size_t>(h) * hs;
                const R* a = att + ((static_cast<size_t>(b) * NH + h) * T + t) * T;
                const R* d = dout + (static_cast<size_t>(b) * T + t) * C + static_cast<size_t>(h) * hs;
                for (int t2 = 0; t2 <= t; ++t2) {
                    const size_t voff = (static_cast<size_t>(b) * T + t2) * C3 + 2 * static_cast<size_t>(C) +
                                        static_cast<size_t>(h) * hs;
                    R s = 0;
                    for (int i = 0; i < hs; ++i) {
                        s += qkv[voff + i] * d[i];
                        dqkv[voff + i] += a[t2] * d[i];
                    }
                    datt[t2] = s;
                }
                R dot = 0;
                for (int t2 = 0; t2 <= t; ++t2) dot += a[t2] * datt[t2];
                for (int t2 = 0; t2 <= t; ++t2) dpre[t2] = a[t2] * (datt[t2] - dot) * scale;
                for (int t2 = 0; t2 <= t; ++t2) {
                    const size_t koff = (static_cast<size_t>(b) * T + t2) * C3 + C + static_cast<size_t>(h) * hs;
                    for (int i = 0; i < hs; ++i) {
                        dqkv[qoff + i] += qkv[koff + i] * dpre[t2];
                        dqkv[koff + i] += qkv[qoff + i] * dpre[t2];
                    }
                }
            }
}

template <class R>
void gelu_forward(R* out, const R* inp, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = math::gelu(inp[i]);
}

template <class R>
void gelu_backward(R* dinp, const R* inp, const R* dout, size_t n) {
    for (size_t i = 0; i < n; ++i) dinp[i] += math::gelu_derivative(inp[i]) * dout[i];
}

template <class R>
void residual_forward(R* out, const R* a, const R* b, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// Softmax over the first V of Vp columns and the token losses; probs of the
// padding columns are 0. Returns the mean loss over the N rows.
template <class R>
R classifier_forward(R* probs, R* losses, const R* logits, const int* targets, int N, int V, int Vp) {
    R total = 0;
    for (int n = 0; n < N; ++n) {
        const R* l = logits + static_cast<size_t>(n) * Vp;
        R* p = probs + static_cast<size_t>(n) * Vp;
        R maxval = l[0];
        for (int i = 1; i < V; ++i) maxval = std::max(maxval, l[i]);
        R sum = 0;
        for (int i = 0; i < V; ++i) sum += (p[i] = std::exp(l[i] - maxval));
        const R inv = R(1) / sum;
        for (int i = 0; i < V; ++i) p[i] *= inv;
        for (int i = V; i < Vp; ++i) p[i] = 0;
        // log-sum-exp form keeps the loss finite when a probability underflows
        losses[n] = std::log(sum) + maxval - l[targets[n]];
        total += losses[n];
    }
    return total / N;
}

// dlogits = (probs - onehot(target)) * scale, padding columns 0.
template <class R>
void classifier_backward(R* dlogits, const R* probs, const int* targets, R scale, int N, int V, int Vp) {
    for (int n = 0; n < N; ++n) {
        const R* p = probs + static_cast<size_t>(n) * Vp;
        R* d = dlogits + static_cast<size_t>(n) * Vp;
        for (int i = 0; i < Vp; ++i) d[i] = i < V ? (p[i] - (i == targets[n] ? R(1) : R(0))) * scale : R(0);
    }
}

}  // namespace chimera::runtime::cpu
