// V3 (docs/design/runtime-contract.md#equivalence-guarantees-and-how-they-are-tested): every CUDA kernel against its CPU twin on the same
// random inputs, odd shapes and tails included. Exits 77 (meson: SKIP) when
// no CUDA device is usable, so GPU-less machines still compile it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <common/bf16.hpp>
#include <cpu/kernels.hpp>
#include <cuda/device.hpp>
#include <cuda/gpu_kernels.hpp>
#include <gpt/model.hpp>

namespace gpu = chimera::runtime::gpu;
namespace cpu = chimera::runtime::cpu;
namespace math = chimera::runtime::math;
using gpu::device_buffer;

namespace {

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, double scale = 1.0) {
    chimera::gpt::rng g{seed};
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(scale * (2 * g.uniform() - 1));
    return v;
}
std::vector<int> random_ints(std::size_t n, int bound, std::uint64_t seed) {
    chimera::gpt::rng g{seed};
    std::vector<int> v(n);
    for (int& x : v) x = static_cast<int>(g.next() % static_cast<std::uint64_t>(bound));
    return v;
}

// |gpu - ref| <= atol + rtol |ref| everywhere, and finite where ref is.
void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double atol, double rtol,
                  const char* what) {
    REQUIRE(got.size() == ref.size());
    std::size_t bad = 0, worst = 0;
    double worst_excess = -1;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double diff = std::fabs(static_cast<double>(got[i]) - ref[i]);
        const double limit = atol + rtol * std::fabs(ref[i]);
        const bool ok = std::isfinite(ref[i]) ? std::isfinite(got[i]) && diff <= limit : true;
        if (!ok) ++bad;
        if (diff - limit > worst_excess) worst_excess = diff - limit, worst = i;
    }
    INFO(what << ": " << bad << " of " << ref.size() << " outside tolerance; worst at " << worst << ": gpu "
              << got[worst] << " vs cpu " << ref[worst]);
    CHECK(bad == 0);
}

void device_sync() { gpu::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

}  // namespace

TEST_CASE("encoder forward and deterministic backward") {
    const int B = 3, T = 7, C = 37, V = 11;  // few tokens: many rows share a bucket
    const auto tokens = random_ints(static_cast<std::size_t>(B) * T, V, 1);
    const auto wte = random_floats(static_cast<std::size_t>(V) * C, 2), wpe = random_floats(static_cast<std::size_t>(T) * C, 3);
    const auto dout = random_floats(static_cast<std::size_t>(B) * T * C, 4);
    std::vector<float> out(static_cast<std::size_t>(B) * T * C), dwte = random_floats(wte.size(), 5),
                                                                   dwpe = random_floats(wpe.size(), 6);
    const auto dwte0 = dwte, dwpe0 = dwpe;
    cpu::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);

    device_buffer<int> d_tokens(tokens);
    const auto buckets = gpu::token_buckets(tokens.data(), B * T);
    device_buffer<int> d_buckets(buckets);
    device_buffer<float> d_wte(wte), d_wpe(wpe), d_out(out.size()), d_dout(dout), d_dwte(dwte0), d_dwpe(dwpe0);
    gpu::encoder_forward(d_out.data(), d_tokens.data(), d_wte.data(), d_wpe.data(), B, T, C, nullptr);
    gpu::encoder_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), d_buckets.data(), buckets[0], B, T, C, nullptr);
    device_sync();
    expect_close(d_out.download(), out, 1e-5, 1e-5, "encoder_forward");
    expect_close(d_dwte.download(), dwte, 1e-5, 1e-5, "encoder_backward dwte");
    expect_close(d_dwpe.download(), dwpe, 1e-5, 1e-5, "encoder_backward dwpe");
    // V5 at kernel level: the same inputs give the same bits.
    const auto first = d_dwte.download();
    d_dwte.upload(dwte0);
    gpu::encoder_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), d_buckets.data(), buckets[0], B, T, C, nullptr);
    device_sync();
    CHECK(d_dwte.download() == first);
}

TEST_CASE("layernorm forward, input and weight backward") {
    // The weight backward's column sums: one row block (N <= 256) and several
    // (the last one partial).
    const int many = 3 * gpu::column_rows_per_block + 5;
    for (const auto& [N, C] : {std::pair{19, 77}, std::pair{5, 768}, std::pair{3, 1}, std::pair{many, 77},
                               std::pair{gpu::column_rows_per_block, 33}}) {
        const std::string shape = "N=" + std::to_string(N) + " C=" + std::to_string(C);
        INFO(shape);  // not CAPTURE: clang < 16 cannot capture structured bindings
        const std::size_t n = static_cast<std::size_t>(N) * C;
        const auto inp = random_floats(n, 10, 3.0), weight = random_floats(static_cast<std::size_t>(C), 11),
                   bias = random_floats(static_cast<std::size_t>(C), 12), dout = random_floats(n, 13);
        std::vector<float> out(n), mean(static_cast<std::size_t>(N)), rstd(mean.size()), dinp = random_floats(n, 14),
                                                                                          dw(static_cast<std::size_t>(C), 0.5f), db(dw);
        device_buffer<float> d_inp(inp), d_w(weight), d_b(bias), d_dout(dout), d_out(n), d_mean(mean.size()),
            d_rstd(mean.size()), d_dinp(dinp), d_dw(dw), d_db(db);
        cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N, C);
        cpu::layernorm_backward_input(dinp.data(), dout.data(), inp.data(), weight.data(), mean.data(), rstd.data(), N, C);
        cpu::layernorm_backward_weight(dw.data(), db.data(), dout.data(), inp.data(), mean.data(), rstd.data(), N, C);
        gpu::layernorm_forward(d_out.data(), d_mean.data(), d_rstd.data(), d_inp.data(), d_w.data(), d_b.data(), N, C,
                               nullptr);
        gpu::layernorm_backward_input(d_dinp.data(), d_dout.data(), d_inp.data(), d_w.data(), d_mean.data(),
                                      d_rstd.data(), N, C, nullptr);
        gpu::layernorm_backward_weight(d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(), d_mean.data(),
                                       d_rstd.data(), N, C, nullptr);
        device_sync();
        expect_close(d_out.download(), out, 1e-5, 1e-5, "layernorm out");
        expect_close(d_mean.download(), mean, 1e-5, 1e-5, "layernorm mean");
        expect_close(d_rstd.download(), rstd, 1e-5, 1e-5, "layernorm rstd");
        expect_close(d_dinp.download(), dinp, 1e-5, 1e-5, "layernorm dinp");
        expect_close(d_dw.download(), dw, 1e-5 * N, 1e-5, "layernorm dweight");
        expect_close(d_db.download(), db, 1e-5 * N, 1e-5, "layernorm dbias");
        // Deterministic: the same inputs give the same bits.
        const auto first_dw = d_dw.download(), first_db = d_db.download();
        d_dw.upload(std::vector<float>(dw.size(), 0.5f));
        d_db.upload(std::vector<float>(db.size(), 0.5f));
        gpu::layernorm_backward_weight(d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(), d_mean.data(),
                                       d_rstd.data(), N, C, nullptr);
        device_sync();
        CHECK(d_dw.download() == first_dw);
        CHECK(d_db.download() == first_db);
    }
}

TEST_CASE("residual and GELU") {
    const std::size_t n = 1001;
    const auto a = random_floats(n, 20, 4.0), b = random_floats(n, 21), dout = random_floats(n, 22);
    std::vector<float> sum(n), g(n), dg = random_floats(n, 23);
    device_buffer<float> d_a(a), d_b(b), d_dout(dout), d_sum(n), d_g(n), d_dg(dg);
    cpu::residual_forward(sum.data(), a.data(), b.data(), n);
    cpu::gelu_forward(g.data(), a.data(), n);
    cpu::gelu_backward(dg.data(), a.data(), dout.data(), n);
    gpu::residual_forward(d_sum.data(), d_a.data(), d_b.data(), n, nullptr);
    gpu::gelu_forward(d_g.data(), d_a.data(), n, nullptr);
    gpu::gelu_backward(d_dg.data(), d_a.data(), d_dout.data(), n, nullptr);
    device_sync();
    expect_close(d_sum.download(), sum, 1e-5, 1e-5, "residual");
    expect_close(d_g.download(), g, 1e-5, 1e-5, "gelu");
    expect_close(d_dg.download(), dg, 1e-5, 1e-5, "gelu backward");
}

TEST_CASE("matmul: the three layouts on G1, and G0 against G1") {
    // 2 * 256 + 3 rows: the bias gradient's column sum over 3 row blocks.
    for (const auto& [N, C, OC] : {std::tuple{37, 45, 71}, std::tuple{130, 200, 96}, std::tuple{1, 3, 1},
                                   std::tuple{2 * gpu::column_rows_per_block + 3, 3, 40}}) {
        const std::string shape = "N=" + std::to_string(N) + " C=" + std::to_string(C) + " OC=" + std::to_string(OC);
        INFO(shape);  // not CAPTURE: clang < 16 cannot capture structured bindings
        const auto inp = random_floats(static_cast<std::size_t>(N) * C, 30),
                   weight = random_floats(static_cast<std::size_t>(OC) * C, 31),
                   bias = random_floats(static_cast<std::size_t>(OC), 32),
                   dout = random_floats(static_cast<std::size_t>(N) * OC, 33);
        std::vector<float> out(static_cast<std::size_t>(N) * OC), dinp = random_floats(inp.size(), 34),
                                                                  dweight = random_floats(weight.size(), 35), dbias = random_floats(bias.size(), 36);
        device_buffer<float> d_inp(inp), d_w(weight), d_bias(bias), d_dout(dout), d_out(out.size()), d_out0(out.size()),
            d_dinp(dinp), d_dw(dweight), d_db(dbias);
        cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
        cpu::matmul_backward_input(dinp.data(), dout.data(), weight.data(), N, C, OC);
        cpu::matmul_backward_weight(dweight.data(), dbias.data(), dout.data(), inp.data(), N, C, OC);
        gpu::matmul_forward(d_out.data(), d_inp.data(), d_w.data(), d_bias.data(), N, C, OC, nullptr);
        gpu::gemm_g0({d_out0.data(), d_inp.data(), d_w.data(), d_bias.data(), C, 1, 1, C, N, OC, C, OC, false}, nullptr);
        gpu::matmul_backward_input(d_dinp.data(), d_dout.data(), d_w.data(), N, C, OC, nullptr);
        gpu::matmul_backward_weight(d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(), N, C, OC, nullptr);
        device_sync();
        const double grow = 1e-4 * std::sqrt(static_cast<double>(std::max({N, C, OC})) / 64.0 + 1);
        expect_close(d_out.download(), out, grow, 1e-4, "matmul forward (G1)");
        expect_close(d_out0.download(), out, grow, 1e-4, "matmul forward (G0)");
        expect_close(d_dinp.download(), dinp, grow, 1e-4, "matmul backward input");
        expect_close(d_dw.download(), dweight, grow, 1e-4, "matmul backward weight");
        expect_close(d_db.download(), dbias, grow, 1e-4, "matmul backward bias");
    }
}

// Block tile 128, K step 64: shapes with only edge tiles (small, ragged),
// only full tiles (exact multiples), and both (full tiles plus a ragged
// last row and column of tiles, K not a multiple of the K step).
TEST_CASE("G2 bf16 tensor-core GEMM against an fp64 product of the rounded inputs") {
    for (const auto& [M, N, K] : {std::tuple{130, 70, 72}, std::tuple{256, 128, 64}, std::tuple{7, 9, 8},
                                  std::tuple{128, 256, 192}, std::tuple{260, 135, 200}}) {
        const std::string shape = "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
        INFO(shape);  // not CAPTURE: clang < 16 cannot capture structured bindings
        const auto a = random_floats(static_cast<std::size_t>(M) * K, 40), b = random_floats(static_cast<std::size_t>(N) * K, 41);
        const auto bias = random_floats(static_cast<std::size_t>(N), 42);
        std::vector<std::uint16_t> a16(a.size()), b16(b.size());
        for (std::size_t i = 0; i < a.size(); ++i) a16[i] = math::to_bf16(a[i]);
        for (std::size_t i = 0; i < b.size(); ++i) b16[i] = math::to_bf16(b[i]);
        std::vector<double> product(static_cast<std::size_t>(M) * N);
        for (int m = 0; m < M; ++m)
            for (int n = 0; n < N; ++n) {
                double s = 0;
                for (int k = 0; k < K; ++k)
                    s += static_cast<double>(math::from_bf16(a16[static_cast<std::size_t>(m) * K + k])) *
                         math::from_bf16(b16[static_cast<std::size_t>(n) * K + k]);
                product[static_cast<std::size_t>(m) * N + n] = s;
            }
        device_buffer<std::uint16_t> d_a(a16), d_b(b16);
        device_buffer<float> d_bias(bias);
        std::vector<float> ref(product.begin(), product.end());
        device_buffer<float> d_out(ref.size());
        gpu::gemm_g2_bf16(d_out.data(), d_a.data(), d_b.data(), M, N, K, nullptr);
        device_sync();
        const auto first = d_out.download();
        expect_close(first, ref, 1e-4 * K, 1.0 / 128, "gemm_g2_bf16");
        gpu::gemm_g2_bf16(d_out.data(), d_a.data(), d_b.data(), M, N, K, nullptr);
        device_sync();
        CHECK(d_out.download() == first);  // bitwise repeatable
        // The epilogue: bias and accumulation into a wider output, odd ldc
        // (scalar stores) and even ldc (8-byte stores in full tiles).
        for (const int ldc : {N + 1, N + 2}) {
            INFO("ldc=" << ldc);
            const auto old = random_floats(static_cast<std::size_t>(M) * ldc, 43);
            std::vector<float> wide(old);
            for (int m = 0; m < M; ++m)
                for (int n = 0; n < N; ++n)
                    wide[static_cast<std::size_t>(m) * ldc + n] = static_cast<float>(
                        old[static_cast<std::size_t>(m) * ldc + n] + bias[static_cast<std::size_t>(n)] +
                        product[static_cast<std::size_t>(m) * N + n]);
            device_buffer<float> d_wide(old);
            gpu::gemm_g2_bf16(d_wide.data(), d_a.data(), d_b.data(), d_bias.data(), M, N, K, ldc, true, nullptr);
            device_sync();
            expect_close(d_wide.download(), wide, 1e-4 * K, 1.0 / 128, "gemm_g2_bf16 bias + accumulate");
        }
    }
}

TEST_CASE("G2 bf16 casts: row-major and transposed, K padded with zeros") {
    const int rows = 5, cols = 37;  // neither a multiple of 8
    const auto in = random_floats(static_cast<std::size_t>(rows) * cols, 45, 3.0);
    const int padded_cols = gpu::bf16_padded(cols), padded_rows = gpu::bf16_padded(rows);
    REQUIRE(padded_cols == 40);
    REQUIRE(padded_rows == 8);
    std::vector<std::uint16_t> flat(static_cast<std::size_t>(rows) * padded_cols, 0),
        transposed(static_cast<std::size_t>(cols) * padded_rows, 0);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
            const std::uint16_t h = math::to_bf16(in[static_cast<std::size_t>(r) * cols + c]);
            flat[static_cast<std::size_t>(r) * padded_cols + c] = h;
            transposed[static_cast<std::size_t>(c) * padded_rows + r] = h;
        }
    device_buffer<float> d_in(in);
    // Filled with ones first: the padding must be written, not left over.
    device_buffer<std::uint16_t> d_flat(std::vector<std::uint16_t>(flat.size(), 0xffff)),
        d_transposed(std::vector<std::uint16_t>(transposed.size(), 0xffff));
    gpu::cast_to_bf16_padded(d_flat.data(), d_in.data(), rows, cols, padded_cols, nullptr);
    gpu::transpose_to_bf16_padded(d_transposed.data(), d_in.data(), rows, cols, padded_rows, nullptr);
    device_sync();
    CHECK(d_flat.download() == flat);
    CHECK(d_transposed.download() == transposed);
}

TEST_CASE("matmul: the three layouts on G2 (bf16) against an fp64 product of the rounded inputs") {
    for (const auto& [N, C, OC] : {std::tuple{37, 45, 71}, std::tuple{130, 200, 96}, std::tuple{1, 3, 1},
                                   std::tuple{16, 64, 192}}) {
        const std::string shape = "N=" + std::to_string(N) + " C=" + std::to_string(C) + " OC=" + std::to_string(OC);
        INFO(shape);  // not CAPTURE: clang < 16 cannot capture structured bindings
        const auto inp = random_floats(static_cast<std::size_t>(N) * C, 80),
                   weight = random_floats(static_cast<std::size_t>(OC) * C, 81),
                   bias = random_floats(static_cast<std::size_t>(OC), 82),
                   dout = random_floats(static_cast<std::size_t>(N) * OC, 83),
                   dinp = random_floats(inp.size(), 84), dweight = random_floats(weight.size(), 85),
                   dbias = random_floats(bias.size(), 86);
        auto rounded = [](float x) { return static_cast<double>(math::from_bf16(math::to_bf16(x))); };
        auto at = [](const std::vector<float>& v, int row, int cols, int col) {
            return v[static_cast<std::size_t>(row) * cols + col];
        };
        // fp64 references; the previous contents of the gradients are added
        // (backward accumulates), the bias is added unrounded.
        std::vector<float> out_ref(static_cast<std::size_t>(N) * OC), dinp_ref(dinp), dweight_ref(dweight), dbias_ref(dbias);
        for (int n = 0; n < N; ++n)
            for (int o = 0; o < OC; ++o) {
                double s = bias[static_cast<std::size_t>(o)];
                for (int c = 0; c < C; ++c) s += rounded(at(inp, n, C, c)) * rounded(at(weight, o, C, c));
                out_ref[static_cast<std::size_t>(n) * OC + o] = static_cast<float>(s);
            }
        for (int n = 0; n < N; ++n)
            for (int c = 0; c < C; ++c) {
                double s = at(dinp, n, C, c);
                for (int o = 0; o < OC; ++o) s += rounded(at(dout, n, OC, o)) * rounded(at(weight, o, C, c));
                dinp_ref[static_cast<std::size_t>(n) * C + c] = static_cast<float>(s);
            }
        for (int o = 0; o < OC; ++o) {
            for (int c = 0; c < C; ++c) {
                double s = at(dweight, o, C, c);
                for (int n = 0; n < N; ++n) s += rounded(at(dout, n, OC, o)) * rounded(at(inp, n, C, c));
                dweight_ref[static_cast<std::size_t>(o) * C + c] = static_cast<float>(s);
            }
            double s = dbias[static_cast<std::size_t>(o)];
            for (int n = 0; n < N; ++n) s += at(dout, n, OC, o);
            dbias_ref[static_cast<std::size_t>(o)] = static_cast<float>(s);
        }
        device_buffer<float> d_inp(inp), d_w(weight), d_bias(bias), d_dout(dout), d_out(out_ref.size()), d_dinp(dinp),
            d_dw(dweight), d_db(dbias);
        device_buffer<std::uint16_t> scratch(gpu::matmul_bf16_scratch(N, C, OC));
        gpu::matmul_forward_bf16(d_out.data(), d_inp.data(), d_w.data(), d_bias.data(), N, C, OC, scratch.data(), nullptr);
        gpu::matmul_backward_input_bf16(d_dinp.data(), d_dout.data(), d_w.data(), N, C, OC, scratch.data(), nullptr);
        gpu::matmul_backward_weight_bf16(d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(), N, C, OC,
                                         scratch.data(), nullptr);
        device_sync();
        // bf16 rtol 2^-7 (docs/design/runtime-contract.md#equivalence-guarantees-and-how-they-are-tested); the atol covers fp32 accumulation
        // over K terms of size up to 1 (random-walk growth, sqrt(K)).
        auto atol = [](int K) { return 1e-5 * std::sqrt(static_cast<double>(K)); };
        expect_close(d_out.download(), out_ref, atol(C), 1.0 / 128, "matmul forward (G2)");
        expect_close(d_dinp.download(), dinp_ref, atol(OC), 1.0 / 128, "matmul backward input (G2)");
        expect_close(d_dw.download(), dweight_ref, atol(N), 1.0 / 128, "matmul backward weight (G2)");
        expect_close(d_db.download(), dbias_ref, 1e-5 * N, 1e-5, "matmul backward bias (fp32)");
    }
}

TEST_CASE("attention v1 forward and backward, v2 flash forward") {
    for (const auto& [B, T, C, NH] : {std::tuple{2, 13, 24, 3}, std::tuple{1, 37, 128, 2}}) {
        const std::string shape = "T=" + std::to_string(T) + " C=" + std::to_string(C);
        INFO(shape);  // not CAPTURE: clang < 16 cannot capture structured bindings
        const std::size_t n = static_cast<std::size_t>(B) * T * C, scores = static_cast<std::size_t>(B) * NH * T * T;
        const auto qkv = random_floats(3 * n, 50), dout = random_floats(n, 51);
        std::vector<float> out(n), att(scores), dqkv = random_floats(3 * n, 52);
        device_buffer<float> d_qkv(qkv), d_dout(dout), d_out(n), d_att(scores), d_dqkv(dqkv), d_scratch(scores);
        cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
        cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
        gpu::attention_forward(d_out.data(), d_att.data(), d_qkv.data(), B, T, C, NH, nullptr);
        gpu::attention_backward(d_dqkv.data(), d_scratch.data(), d_dout.data(), d_qkv.data(), d_att.data(), B, T, C, NH,
                                nullptr);
        device_sync();
        expect_close(d_out.download(), out, 1e-4, 1e-4, "attention forward");
        expect_close(d_att.download(), att, 1e-4, 1e-4, "attention probabilities");
        expect_close(d_dqkv.download(), dqkv, 1e-4, 1e-4, "attention backward");
        if (C / NH == 64) {
            device_buffer<float> d_flash(n), d_lse(static_cast<std::size_t>(B) * NH * T);
            gpu::attention_forward_flash(d_flash.data(), d_lse.data(), d_qkv.data(), B, T, C, NH, nullptr);
            device_sync();
            expect_close(d_flash.download(), out, 1e-4, 1e-4, "flash attention forward");
        }
    }
}

TEST_CASE("attention v2 flash backward: against the twin and v1, no T x T buffer") {
    // T not a multiple of the 32-row query and key tiles (one tile, a
    // partial second, three), and an exact multiple; several heads and batches.
    for (const auto& [B, T, C, NH] : {std::tuple{2, 13, 128, 2}, std::tuple{3, 37, 64, 1}, std::tuple{1, 70, 192, 3},
                                      std::tuple{1, 64, 64, 1}}) {
        const std::string shape = "B=" + std::to_string(B) + " T=" + std::to_string(T) + " NH=" + std::to_string(NH);
        INFO(shape);  // not CAPTURE: clang < 16 cannot capture structured bindings
        const std::size_t n = static_cast<std::size_t>(B) * T * C, scores = static_cast<std::size_t>(B) * NH * T * T;
        const std::size_t rows = static_cast<std::size_t>(B) * NH * T;
        const auto qkv = random_floats(3 * n, 80, 2.0), dout = random_floats(n, 81), dqkv0 = random_floats(3 * n, 82);
        std::vector<float> out(n), att(scores), dqkv = dqkv0;
        cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
        cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);

        device_buffer<float> d_qkv(qkv), d_dout(dout), d_out(n), d_lse(rows), d_scratch(rows), d_dqkv(dqkv0);
        gpu::attention_forward_flash(d_out.data(), d_lse.data(), d_qkv.data(), B, T, C, NH, nullptr);
        gpu::attention_backward_flash(d_dqkv.data(), d_scratch.data(), d_dout.data(), d_qkv.data(), d_out.data(),
                                      d_lse.data(), B, T, C, NH, nullptr);
        device_sync();
        const auto flash_out = d_out.download(), flash_dqkv = d_dqkv.download();
        expect_close(flash_out, out, 1e-4, 1e-4, "flash forward vs twin");
        expect_close(flash_dqkv, dqkv, 1e-4, 1e-4, "flash backward vs twin");

        // v1 on the GPU, same inputs: v2 forward + backward agree with it.
        device_buffer<float> v1_out(n), v1_att(scores), v1_scratch(scores), v1_dqkv(dqkv0);
        gpu::attention_forward(v1_out.data(), v1_att.data(), d_qkv.data(), B, T, C, NH, nullptr);
        gpu::attention_backward(v1_dqkv.data(), v1_scratch.data(), d_dout.data(), d_qkv.data(), v1_att.data(), B, T, C,
                                NH, nullptr);
        device_sync();
        expect_close(flash_out, v1_out.download(), 1e-4, 1e-4, "flash forward vs v1");
        expect_close(flash_dqkv, v1_dqkv.download(), 1e-4, 1e-4, "flash backward vs v1");

        // Deterministic: the same inputs give the same bits.
        const auto flash_lse = d_lse.download();
        gpu::attention_forward_flash(d_out.data(), d_lse.data(), d_qkv.data(), B, T, C, NH, nullptr);
        device_sync();
        CHECK(d_out.download() == flash_out);
        CHECK(d_lse.download() == flash_lse);
        d_dqkv.upload(dqkv0);
        gpu::attention_backward_flash(d_dqkv.data(), d_scratch.data(), d_dout.data(), d_qkv.data(), d_out.data(),
                                      d_lse.data(), B, T, C, NH, nullptr);
        device_sync();
        CHECK(d_dqkv.download() == flash_dqkv);
    }
    device_buffer<float> any(16);
    CHECK_THROWS_WITH_AS(gpu::attention_backward_flash(any.data(), any.data(), any.data(), any.data(), any.data(),
                                                       any.data(), 1, 2, 96, 3, nullptr),
                         "attention_backward_flash: head size must be 64 (got C/NH = 32)", std::invalid_argument);
}

TEST_CASE("fused classifier = softmax + cross-entropy + dlogits of the twin") {
    const int N = 11, V = 53, Vp = 64;
    const auto logits = random_floats(static_cast<std::size_t>(N) * Vp, 60, 5.0);
    const auto targets = random_ints(static_cast<std::size_t>(N), V, 61);
    std::vector<float> probs(logits.size()), losses(static_cast<std::size_t>(N)), dlogits(logits.size());
    const float scale = 0.25f / N;
    cpu::classifier_forward(probs.data(), losses.data(), logits.data(), targets.data(), N, V, Vp);
    cpu::classifier_backward(dlogits.data(), probs.data(), targets.data(), scale, N, V, Vp);
    device_buffer<float> d_logits(logits), d_losses(losses.size());
    device_buffer<int> d_targets(targets);
    gpu::fused_classifier(d_logits.data(), d_losses.data(), d_targets.data(), scale, N, V, Vp, nullptr);
    device_sync();
    expect_close(d_losses.download(), losses, 1e-5, 1e-5, "losses");
    expect_close(d_logits.download(), dlogits, 1e-5, 1e-5, "dlogits");
}

// The kernel against numbers worked out by hand (not against math.hpp, which
// it shares): beta1 = 1/2, beta2 = 3/4, epsilon 0, lr 0.01, decay 0.5, so
// every intermediate is a short fraction. Element 0 without decay, 1 with.
//   step 1, p = 1, g = 2:  m = 1, v = 1, m^ = 1/(1/2) = 2, v^ = 1/(1/4) = 4,
//     m^/sqrt(v^) = 1:   p = 1 - 0.01 = 0.99;   decayed 1 - 0.01 (1 + 0.5) = 0.985
//   step 2, g = -2:  m = 1/2 - 1 = -1/2, v = 3/4 + 1 = 7/4, m^ = -(1/2)/(3/4) = -2/3,
//     v^ = (7/4)/(7/16) = 4, ratio -1/3:  p = 0.99 + 0.01/3 = 0.993333...;
//     decayed 0.985 - 0.01 (-1/3 + 0.5 * 0.985) = 0.98340833...
// Step 1000 from zero moments, defaults (0.9, 0.999, 1e-8), lr 0.01, g = 2:
//   1 - 0.9^1000 = 1 (in float), 1 - 0.999^1000 = 0.632304575, m^ = 0.2,
//   v^ = 0.004 / 0.632304575 = 0.00632606525, sqrt 0.0795365, p = 1 - 0.01 * 2.51457 = 0.974854336.
TEST_CASE("AdamW kernel: steps 1, 2 and 1000 against hand-computed values") {
    math::adamw_params p{0.01, 0.5, 0.75, 0.0, 0.5};
    device_buffer<float> d_p(std::vector<float>{1.f, 1.f}), d_m(std::vector<float>(2, 0.f)),
        d_v(std::vector<float>(2, 0.f)), d_g(std::vector<float>{2.f, 2.f});
    auto step = [&](int t) {
        gpu::adamw(d_p.data(), d_m.data(), d_v.data(), d_g.data(), 1, t, p, false, nullptr);
        gpu::adamw(d_p.data() + 1, d_m.data() + 1, d_v.data() + 1, d_g.data() + 1, 1, t, p, true, nullptr);
        device_sync();
        return d_p.download();
    };
    auto p1 = step(1);
    CHECK(p1[0] == doctest::Approx(0.99).epsilon(1e-6));
    CHECK(p1[1] == doctest::Approx(0.985).epsilon(1e-6));
    CHECK(d_m.download() == std::vector<float>{1.f, 1.f});
    CHECK(d_v.download() == std::vector<float>{1.f, 1.f});
    d_g.upload(std::vector<float>{-2.f, -2.f});
    auto p2 = step(2);
    CHECK(p2[0] == doctest::Approx(0.99 + 0.01 / 3).epsilon(1e-6));
    CHECK(p2[1] == doctest::Approx(0.985 - 0.01 * (-1.0 / 3 + 0.5 * 0.985)).epsilon(1e-6));
    CHECK(d_m.download() == std::vector<float>{-0.5f, -0.5f});
    CHECK(d_v.download() == std::vector<float>{1.75f, 1.75f});

    p = math::adamw_params{0.01, 0.9, 0.999, 1e-8, 0.0};
    device_buffer<float> e_p(std::vector<float>{1.f}), e_m(std::vector<float>{0.f}), e_v(std::vector<float>{0.f}),
        e_g(std::vector<float>{2.f});
    gpu::adamw(e_p.data(), e_m.data(), e_v.data(), e_g.data(), 1, 1000, p, false, nullptr);
    device_sync();
    CHECK(e_p.download()[0] == doctest::Approx(0.974854336).epsilon(1e-6));
}

TEST_CASE("AdamW, deterministic sums, replica sum and bf16 casts") {
    const std::size_t n = 100003;
    const auto grads = random_floats(n, 70), params0 = random_floats(n, 71);
    math::adamw_params p;
    p.weight_decay = 0.01;
    for (const bool decay : {false, true}) {
        std::vector<float> params = params0, m(n, 0.f), v(n, 0.f);
        device_buffer<float> d_p(params), d_m(m), d_v(v), d_g(grads);
        for (int step = 1; step <= 3; ++step) {
            for (std::size_t i = 0; i < n; ++i) math::adamw_update(params[i], m[i], v[i], grads[i], step, p, decay);
            gpu::adamw(d_p.data(), d_m.data(), d_v.data(), d_g.data(), n, step, p, decay, nullptr);
        }
        device_sync();
        expect_close(d_p.download(), params, 1e-5, 1e-5, "adamw parameters");
        expect_close(d_m.download(), m, 1e-5, 1e-5, "adamw first moment");
        expect_close(d_v.download(), v, 1e-5, 1e-5, "adamw second moment");
    }
    device_buffer<float> d_g(grads), d_sum(1);
    for (const bool squares : {false, true}) {
        double ref = 0;
        for (float g : grads) ref += squares ? static_cast<double>(g) * g : g;
        gpu::deterministic_sum(d_sum.data(), d_g.data(), n, squares, nullptr);
        device_sync();
        const float first = d_sum.download()[0];
        CHECK(std::fabs(first - ref) <= 1e-3 + 1e-5 * std::fabs(ref));
        gpu::deterministic_sum(d_sum.data(), d_g.data(), n, squares, nullptr);
        device_sync();
        CHECK(d_sum.download()[0] == first);  // bitwise
    }
    // Replica sum in member order is bitwise the host's left-to-right sum.
    const auto x = random_floats(n, 72), y = random_floats(n, 73), z = random_floats(n, 74);
    device_buffer<float> d_x(x), d_y(y), d_z(z), d_out(n);
    device_buffer<const float*> members(std::vector<const float*>{d_x.data(), d_y.data(), d_z.data()});
    gpu::replica_sum(d_out.data(), members.data(), 3, n, nullptr);
    device_sync();
    std::vector<float> ref(n);
    for (std::size_t i = 0; i < n; ++i) ref[i] = x[i] + y[i] + z[i];
    CHECK(d_out.download() == ref);
    // Casts: the same bits as the shared rounding function.
    device_buffer<std::uint16_t> d_half(n);
    device_buffer<float> d_back(n);
    gpu::cast_to_bf16(d_half.data(), d_x.data(), n, nullptr);
    gpu::cast_from_bf16(d_back.data(), d_half.data(), n, nullptr);
    device_sync();
    std::vector<std::uint16_t> half(n);
    std::vector<float> back(n);
    for (std::size_t i = 0; i < n; ++i) half[i] = math::to_bf16(x[i]), back[i] = math::from_bf16(half[i]);
    CHECK(d_half.download() == half);
    CHECK(d_back.download() == back);
}

int main(int argc, char** argv) {
    std::string reason;
    if (!gpu::device_available(reason)) {
        std::printf("SKIP: %s\n", reason.c_str());
        return 77;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
