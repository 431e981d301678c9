// Interchange formats: JSON, PyTorch CSV, Chrome trace, SVG and text.
// Golden cases from the spec, round trips over parameter grids, and every
// kind of malformed input the readers promise to refuse.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include <chimera/chimera.hpp>
#include <chimera/io/chrome_trace.hpp>
#include <chimera/io/csv.hpp>
#include <chimera/io/json.hpp>
#include <chimera/io/svg.hpp>
#include <chimera/io/text.hpp>

using namespace chimera;

namespace {

std::string golden(const std::string& name) {
    std::ifstream in(std::string(CHIMERA_GOLDEN_DIR) + "/" + name, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "missing golden file " << name);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// Pipelines spelled out: a config with k = 0 ("the default") reads back from
// JSON with the k it stands for, and config's == tells the two apart.
schedule make(algorithm a, int stages, int micro_batches, int pipelines = 0, scaling mode = scaling::direct) {
    config c{a, stages, micro_batches, pipelines, mode};
    c.pipelines = pipeline_count(c);
    return generate(c);
}

// The rule and the location of the first error a reader reports.
struct refusal {
    std::string rule, where, message;
};

template <class Read>
refusal refuse(Read read) {
    try {
        read();
    } catch (const io::format_error& e) {
        return {std::string(e.rule()), e.where(), e.what()};
    }
    FAIL("the reader accepted the input");
    return {};
}

refusal refuse_csv(std::string_view text, io::csv_read_options options = {}) {
    return refuse([&] { io::read_csv(text, options); });
}
refusal refuse_json(std::string_view text) {
    return refuse([&] { io::read_json(text); });
}

// PyTorch's lowering of its smallest example
// (docs/design/schedule-zoo.md#reference-numbers-from-other-projects), by hand.
schedule pytorch_lowered_oracle() {
    schedule s;
    s.set_shape("lowered", 2, 2, 1);
    s.set_placement(0, 0, 0);
    s.set_placement(0, 1, 1);
    auto comm = [](op_kind kind, int stage, int micro_batch, int peer) { return op{kind, stage, micro_batch, 0, peer}; };
    s.add_worker();
    for (op o : {forward(0, 0, 0), comm(op_kind::SEND_F, 0, 0, 1), forward(0, 1, 0), comm(op_kind::SEND_F, 0, 1, 1),
                 comm(op_kind::RECV_B, 0, 0, 1), backward(0, 0, 0), comm(op_kind::RECV_B, 0, 1, 1), backward(0, 1, 0)})
        s.push_op(o);
    s.add_worker();
    for (op o : {comm(op_kind::RECV_F, 1, 0, 0), comm(op_kind::RECV_F, 1, 1, 0), forward(0, 0, 1), backward(0, 0, 1),
                 comm(op_kind::SEND_B, 1, 0, 0), forward(0, 1, 1), backward(0, 1, 1), comm(op_kind::SEND_B, 1, 1, 0)})
        s.push_op(o);
    return s;
}

}  // namespace

TEST_CASE("text: the D=4, N=4 Chimera grid is the slot table of docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches") {
    const std::string text = io::write_text(make(algorithm::chimera, 4, 4));
    CHECK(text == golden("chimera-d4-n4.txt"));
    // The table of the spec, '·' written as '.'.
    const char* rows[] = {"P0  F0 .  F1 F2 B2 F3 B3 B0 .  B1", "P1  .  F0 F2 F1 F3 B2 B0 B3 B1 .",
                          "P2  .  F2 F0 F3 F1 B0 B2 B1 B3 .", "P3  F2 .  F3 F0 B0 F1 B1 B2 .  B3"};
    for (const char* row : rows) CHECK(text.find(std::string("\n") + row + "\n") != std::string::npos);
    CHECK(text.find(" \n") == std::string::npos);  // no trailing blanks
}

TEST_CASE("text: colour only when asked for") {
    const schedule s = make(algorithm::chimera, 4, 4);
    CHECK(io::write_text(s).find('\x1b') == std::string::npos);
    CHECK(io::write_text(s, {.color = true}).find("\x1b[34m") != std::string::npos);
}

TEST_CASE("svg: golden file and structure of the D=4, N=4 Chimera timeline") {
    const schedule s = make(algorithm::chimera, 4, 4);
    const std::string svg = io::write_svg(s);
    CHECK(svg == golden("chimera-d4-n4.svg"));
    CHECK(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    CHECK(svg.ends_with("</svg>\n"));
    // Self-contained: no scripts, links, external fonts or images.
    for (const char* banned : {"<script", "href", "@import", "url(", "<image", "<foreignObject"})
        CHECK_MESSAGE(svg.find(banned) == std::string::npos, banned);
    auto count = [&](const std::string& needle) {
        std::size_t n = 0;
        for (auto at = svg.find(needle); at != std::string::npos; at = svg.find(needle, at + 1)) ++n;
        return n;
    };
    CHECK(count("<rect class=\"op ") == s.op_count());
    CHECK(count("<rect class=\"op F\"") == 16);
    CHECK(count("<rect class=\"op B\"") == 16);
    CHECK(count("<g class=\"worker\"") == 4);
    // P0's boxes sit at slots 0 2 3 4 5 6 7 9 (x = 44 + 28 * slot + 1).
    const auto p0 = svg.substr(svg.find("id=\"P0\""), svg.find("id=\"P1\"") - svg.find("id=\"P0\""));
    for (int slot : {0, 2, 3, 4, 5, 6, 7, 9})
        CHECK_MESSAGE(p0.find("x=\"" + std::to_string(44 + 28 * slot + 1) + "\"") != std::string::npos, slot);
    CHECK(p0.find("x=\"" + std::to_string(44 + 28 * 1 + 1) + "\"") == std::string::npos);
    // Forward lighter than backward, one hue per pipeline.
    CHECK(svg.find("class=\"op F\" x=\"45\" y=\"40\" width=\"26\" height=\"24\" rx=\"3\" fill=\"#9ecae1\"") !=
          std::string::npos);
    CHECK(count("fill=\"#cb181d\"") >= 8);  // pipeline 1's backward boxes
}

TEST_CASE("svg: timed boxes and escaped names") {
    schedule s = make(algorithm::one_f_one_b, 2, 2);
    const timing t = asap(s, {.forward = 1, .backward = 2});
    const std::string svg = io::write_svg(s, t);
    CHECK(t.makespan == 9);
    CHECK(svg.find("makespan 9") != std::string::npos);
    CHECK(svg.find("width=\"54\"") != std::string::npos);  // a B box lasts 2 units: 2 * 28 - 2
    schedule named = io::read_json(std::string(io::write_json(s)).replace(
        io::write_json(s).find("\"1f1b\""), 6, "\"a<&>b\""));
    const std::string escaped = io::write_svg(named);
    CHECK(escaped.find("a&lt;&amp;&gt;b") != std::string::npos);
}

TEST_CASE("json: lossless round trip, compute-only and lowered") {
    for (auto a : {algorithm::gpipe, algorithm::one_f_one_b})
        for (int d = 1; d <= 6; ++d)
            for (int n = 1; n <= 9; n += 2) {
                const schedule s = make(a, d, n);
                const std::string text = io::write_json(s);
                const schedule back = io::read_json(text);
                CHECK(back == s);
                CHECK(io::write_json(back) == text);
            }
    for (int d : {2, 4, 8})
        for (int k : {2, 4})
            for (auto mode : {scaling::direct, scaling::doubling})
                for (int n : {d, 2 * d, 4 * d}) {
                    const config c{algorithm::chimera, d, n, k, mode};
                    if (validate(c)) continue;
                    const schedule s = generate(c);
                    CHECK(io::read_json(io::write_json(s)) == s);
                }
    const schedule lowered = pytorch_lowered_oracle();
    CHECK(io::read_json(io::write_json(lowered)) == lowered);
    // Found by fuzzing: params with "pipelines":0 (the default) were kept as
    // 0 but written as the count in effect, so the round trip changed them.
    std::string defaulted = io::write_json(make(algorithm::gpipe, 3, 2));
    const auto at = defaulted.find("\"pipelines\":1");
    REQUIRE(at != std::string::npos);
    defaulted.replace(at, 13, "\"pipelines\":0");
    const schedule read = io::read_json(defaulted);
    CHECK(read.params().pipelines == 1);
    CHECK(io::read_json(io::write_json(read)) == read);
}

TEST_CASE("json: malformed input gives the promised error") {
    const std::string good = io::write_json(make(algorithm::one_f_one_b, 2, 2));
    auto with = [&](const std::string& from, const std::string& to) {
        std::string text = good;
        const auto at = text.find(from);
        REQUIRE(at != std::string::npos);
        return text.replace(at, from.size(), to);
    };
    SUBCASE("empty file") {
        const auto r = refuse_json("");
        CHECK(r.rule == "JSON1");
        CHECK(r.where == "line 1, column 1");
    }
    SUBCASE("truncated") {
        const auto r = refuse_json(good.substr(0, good.size() / 2));
        CHECK(r.rule == "JSON1");
        CHECK(r.where.starts_with("line "));
    }
    SUBCASE("not an object") { CHECK(refuse_json("[1,2]").rule == "JSON1"); }
    SUBCASE("wrong format") { CHECK(refuse_json(with("chimera.schedule/1", "chimera.schedule/2")).where == "$.format"); }
    SUBCASE("wrong type") {
        const auto r = refuse_json(with("\n \"stages\":2", "\n \"stages\":\"2\""));
        CHECK(r.rule == "JSON2");
        CHECK(r.where == "$.stages");
    }
    SUBCASE("missing key") {
        const auto r = refuse_json(with("\"workers\":2,", ""));
        CHECK(r.rule == "JSON2");
        CHECK(r.message.find("\"workers\"") != std::string::npos);
    }
    SUBCASE("unknown kind") {
        const auto r = refuse_json(with("{\"kind\":\"B\"", "{\"kind\":\"BW\""));
        CHECK(r.rule == "JSON5");
        CHECK(r.where == "$.ops[0][2].kind");
    }
    SUBCASE("out-of-range stage") {
        const auto r = refuse_json(with("{\"kind\":\"F\",\"stage\":0", "{\"kind\":\"F\",\"stage\":2"));
        CHECK(r.rule == "JSON3");
        CHECK(r.where == "$.ops[0][0].stage");
    }
    SUBCASE("huge numbers") {
        CHECK(refuse_json(with("\n \"stages\":2", "\n \"stages\":99999999999999999999999")).rule == "JSON2");
        CHECK(refuse_json(with("\n \"stages\":2", "\n \"stages\":18446744073709551615")).rule == "JSON3");
        CHECK(refuse_json(with("\n \"stages\":2", "\n \"stages\":16777216")).rule == "JSON3");
        const auto r = refuse_json(with("\"micro_batches\":2,\"pipelines\":1,\"workers\"", "\"micro_batches\":16777216,\"pipelines\":1,\"workers\""));
        CHECK(r.rule == "JSON3");
    }
    SUBCASE("a number beyond any JSON number type (found by fuzzing)") {
        const auto r = refuse_json("4444444444444444444444444444444444444e44444444444444444");
        CHECK(r.rule == "JSON1");
        CHECK(r.message.find("out of range") != std::string::npos);
        CHECK(refuse_json(with("\n \"stages\":2", "\n \"stages\":1e999")).rule == "JSON1");
    }
    SUBCASE("sizes are checked before allocating") {
        const auto r = refuse_json(with("\"micro_batches\":2,\"pipelines\":1,\"workers\"", "\"micro_batches\":8388608,\"pipelines\":1,\"workers\""));
        CHECK(r.rule == "JSON4");
        CHECK(r.where == "$.micro_batch_pipeline");
    }
    SUBCASE("peer on a compute op") {
        CHECK(refuse_json(with("\"micro_batch\":0,\"pipeline\":0}", "\"micro_batch\":0,\"pipeline\":0,\"peer\":1}"))
                  .rule == "JSON5");
    }
    SUBCASE("duplicated op: read, then refused by the checker") {
        const schedule s = io::read_json(with("{\"kind\":\"F\",\"stage\":0,\"micro_batch\":1",
                                              "{\"kind\":\"F\",\"stage\":0,\"micro_batch\":0"));
        CHECK(check(s).has("S5"));
    }
    SUBCASE("CRLF and blank lines are plain JSON white space") {
        std::string crlf;
        for (char ch : good) crlf += ch == '\n' ? std::string("\r\n\r\n") : std::string(1, ch);
        CHECK(io::read_json(crlf) == io::read_json(good));
    }
}

TEST_CASE("csv: PyTorch's smallest example (docs/design/formats.md#pytorch-pipelining-csv) is exactly 1F1B with D=2, N=2") {
    const std::string example = "0F0,0F1,,0B0,,0B1\n,1F0,1B0,1F1,1B1,\n";
    const schedule expected = make(algorithm::one_f_one_b, 2, 2);
    CHECK(io::write_csv(expected) == example);
    const schedule read = io::read_csv(example);
    CHECK(read.name() == "pytorch-csv");
    CHECK(read.params().schedule == algorithm::custom);
    CHECK(read.pipelines() == 1);
    CHECK(read.placement(0, 0) == 0);
    CHECK(read.placement(0, 1) == 1);
    CHECK(same_structure(read, expected));
    CHECK(check(read).ok());
    // The same file as Python's csv.writer writes it (CRLF) and without the final newline.
    CHECK(same_structure(io::read_csv("0F0,0F1,,0B0,,0B1\r\n,1F0,1B0,1F1,1B1,\r\n"), expected));
    CHECK(same_structure(io::read_csv("0F0,0F1,,0B0,,0B1\n,1F0,1B0,1F1,1B1,"), expected));
}

TEST_CASE("csv: round trips for GPipe and 1F1B over a grid") {
    for (auto a : {algorithm::gpipe, algorithm::one_f_one_b})
        for (int d = 1; d <= 8; ++d)
            for (int n = 1; n <= 12; ++n) {
                const schedule s = make(a, d, n);
                const std::string text = io::write_csv(s);
                const schedule back = io::read_csv(text);
                CHECK(same_structure(back, s));
                CHECK(check(back).ok());
                CHECK(io::write_csv(back) == text);
                // Columns are unit-time slots: every row has span cells.
                const int span = make_unit_slots(s).span;
                std::istringstream lines(text);
                for (std::string line; std::getline(lines, line);)
                    CHECK(std::count(line.begin(), line.end(), ',') == span - 1);
            }
}

TEST_CASE("csv: schedules with replicated stages are refused with a reason") {
    for (auto mode : {scaling::direct, scaling::doubling}) {
        const schedule s = make(algorithm::chimera, 4, 8, 2, mode);
        try {
            (void)io::write_csv(s);
            FAIL("Chimera was written as CSV");
        } catch (const schedule_error& e) {
            CHECK(e.rule() == "CSV7");
            const std::string message = e.what();
            CHECK(message.find("2 pipelines") != std::string::npos);
            CHECK(message.find("several workers") != std::string::npos);
            CHECK(message.find("JSON") != std::string::npos);
        }
        CHECK(io::csv_refusal(s).has_value());
    }
    CHECK_FALSE(io::csv_refusal(make(algorithm::gpipe, 4, 4)).has_value());
}

TEST_CASE("csv: compute_comms of a lowered schedule (PyTorch's oracle, docs/design/schedule-zoo.md#reference-numbers-from-other-projects)") {
    const schedule lowered = pytorch_lowered_oracle();
    const std::string text = io::write_csv(lowered, io::csv_format::compute_comms);
    CHECK(text ==
          "0F0,0SEND_F0,0WAIT_SEND_F0,0F1,0SEND_F1,0RECV_B0,0WAIT_SEND_F1,0B0,0RECV_B1,0B1\n"
          "1RECV_F0,1RECV_F1,1F0,1B0,1SEND_B0,1WAIT_SEND_B0,1F1,1B1,1SEND_B1,1WAIT_SEND_B1\n");
    const schedule back = io::read_csv(text);
    CHECK(same_structure(back, lowered));  // peers inferred from stage -> rank, waits dropped
    CHECK(io::write_csv(back, io::csv_format::compute_comms) == text);
    // compute_only of a lowered schedule drops the communication.
    CHECK(io::write_csv(lowered) == "0F0,0F1,,0B0,,0B1\n,1F0,1B0,1F1,1B1,\n");
    // A compute-only schedule has nothing to write as compute_comms.
    CHECK_THROWS_AS(io::write_csv(make(algorithm::gpipe, 2, 2), io::csv_format::compute_comms), schedule_error);
}

TEST_CASE("csv: REDUCE_GRAD and its wait") {
    schedule s;
    s.set_shape("lowered", 1, 1, 1);
    s.set_placement(0, 0, 0);
    s.add_worker();
    s.push_op(forward(0, 0, 0));
    s.push_op(backward(0, 0, 0));
    s.push_op({op_kind::REDUCE_GRAD, 0, no_micro_batch, 0, no_peer});
    const std::string text = io::write_csv(s, io::csv_format::compute_comms);
    CHECK(text == "0F0,0B0,0REDUCE_GRAD,0WAIT_REDUCE_GRAD\n");
    CHECK(same_structure(io::read_csv(text), s));
}

TEST_CASE("csv: PyTorch's own compute_comms dump (UNSHARD/RESHARD and waits are dropped)") {
    // torch 2.15 _PipelineScheduleRuntime._dump_csv of the smallest example.
    const std::string dumped =
        "0UNSHARD,0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0,0WAIT_SEND_F0,0RECV_B1,0B1,0WAIT_SEND_F1,0REDUCE_GRAD,"
        "0WAIT_REDUCE_GRAD,0RESHARD\r\n"
        "1UNSHARD,1RECV_F0,1F0,1RECV_F1,1B0,1SEND_B0,1F1,1B1,1SEND_B1,1REDUCE_GRAD,1WAIT_REDUCE_GRAD,1RESHARD,"
        "1WAIT_SEND_B0,1WAIT_SEND_B1\r\n";
    const schedule s = io::read_csv(dumped);
    CHECK(s.ops(0).size() == 9);
    CHECK(check(s).ok());
    CHECK(s.ops(1).size() == 9);
    CHECK(s.ops(0)[1] == op{op_kind::SEND_F, 0, 0, 0, 1});
    CHECK(s.ops(1).back() == op{op_kind::REDUCE_GRAD, 1, no_micro_batch, 0, no_peer});
}

TEST_CASE("csv: OVERLAP_F_B cells are read as their actions in order") {
    const schedule s = io::read_csv("0F0,(0F1;1B0)OVERLAP_F_B,0B1\n");
    REQUIRE(s.ops(0).size() == 4);
    CHECK(s.ops(0)[1] == forward(0, 1, 0));
    CHECK(s.ops(0)[2] == backward(0, 0, 1));
    CHECK(s.stages() == 2);
}

TEST_CASE("csv: I/W split and the accepted action spellings") {
    const schedule s = io::read_csv("0F0,0I0,0W0,0SEND_F0\n1RECV_F0,1F0,1B0\n");
    CHECK(s.ops(0)[1].kind == op_kind::I);
    CHECK(s.ops(0)[2].kind == op_kind::W);
    CHECK(s.ops(0)[3] == op{op_kind::SEND_F, 0, 0, 0, 1});
    CHECK(s.ops(1)[0] == op{op_kind::RECV_F, 1, 0, 0, 0});
}

TEST_CASE("csv: malformed input gives the promised error") {
    SUBCASE("empty file") { CHECK(refuse_csv("").rule == "CSV1"); }
    SUBCASE("blank line") {
        const auto r = refuse_csv("0F0,0B0\n\n1F0,1B0\n");
        CHECK(r.rule == "CSV1");
        CHECK(r.where == "line 2, column 1");
        CHECK(refuse_csv("0F0,0B0\n\n").where == "line 2, column 1");
        CHECK(refuse_csv("0F0,0B0\r\n\r\n").rule == "CSV1");
    }
    SUBCASE("a row without actions") {
        CHECK(refuse_csv("0F0,0B0\n,,\n").rule == "CSV1");
        // Found by fuzzing: a row of dropped actions only wrote back as a blank line.
        const auto r = refuse_csv("4UNSHARD,\n0F0,0F1,,0B0,,0B1\n,1F0,1B0,1F1,1B1,\n");
        CHECK(r.rule == "CSV1");
        CHECK(r.where == "line 1, column 1");
        CHECK(refuse_csv("0WAIT_REDUCE_GRAD\n").rule == "CSV1");
    }
    SUBCASE("byte-order mark") { CHECK(refuse_csv("\xef\xbb\xbf" "0F0,0B0\n").rule == "CSV1"); }
    SUBCASE("stray carriage return") {
        const auto r = refuse_csv("0F0\r,0B0\n");
        CHECK(r.rule == "CSV2");
        CHECK(r.where == "line 1, column 1");
    }
    SUBCASE("truncated cell") {
        const auto r = refuse_csv("0F0,0F1,,0B0,,0B1\n,1F0,1B0,1F1,1");
        CHECK(r.rule == "CSV2");
        CHECK(r.where == "line 2, column 14");
    }
    SUBCASE("white space and quotes") {
        CHECK(refuse_csv("0F0, 0B0\n").where == "line 1, column 5");
        CHECK(refuse_csv("\"0F0\",0B0\n").rule == "CSV2");
    }
    SUBCASE("unknown kinds") {
        auto r = refuse_csv("0F0,0X0\n");
        CHECK(r.rule == "CSV2");
        CHECK(r.where == "line 1, column 5");
        CHECK(r.message.find("'0X0'") != std::string::npos);
        CHECK(refuse_csv("F0,0B0\n").rule == "CSV2");
        CHECK(refuse_csv("0F,0B0\n").rule == "CSV2");
        CHECK(refuse_csv("0F0x,0B0\n").rule == "CSV2");
        CHECK(refuse_csv("0F0,0B0,(0F1)OVERLAP\n").rule == "CSV2");
        CHECK(refuse_csv("0F0,0B0,(0SEND_F0;0F1)OVERLAP_F_B\n").rule == "CSV2");
        CHECK(refuse_csv("0F0,0B0,()OVERLAP_F_B\n").rule == "CSV2");
    }
    SUBCASE("tokens this library does not take") {
        CHECK(refuse_csv("0F0,0BW0\n").rule == "CSV5");
        CHECK(refuse_csv("0UNSHARD,0F0,0B0\n", {.format = io::csv_format::compute_only}).rule == "CSV5");
        const auto r = refuse_csv("0F0,0SEND_F0\n1RECV_F0,1F0,1B0\n", {.format = io::csv_format::compute_only});
        CHECK(r.rule == "CSV5");
        CHECK(r.where == "line 1, column 5");
    }
    SUBCASE("huge numbers") {
        auto r = refuse_csv("99999999999999999999999F0\n");
        CHECK(r.rule == "CSV3");
        CHECK(r.message.find("too large") != std::string::npos);
        CHECK(refuse_csv("0F0,0F16777216\n").rule == "CSV3");
        CHECK(refuse_csv("0F0,16777215F0\n").rule == "CSV4");  // fits, but stages 1.. never appear
    }
    SUBCASE("out-of-range stages and micro-batches") {
        auto r = refuse_csv("0F0,0B0\n2F0,2B0\n");
        CHECK(r.rule == "CSV4");
        CHECK(r.message.find("stage 1 appears in no row") != std::string::npos);
        CHECK(refuse_csv("0F0,0B0,0F2,0B2\n").message.find("micro-batch 1") != std::string::npos);
        CHECK(refuse_csv("0SEND_F0,0F0,0B0\n").rule == "CSV4");  // to stage 1, which does not exist
    }
    SUBCASE("a stage on two ranks") {
        const auto r = refuse_csv("0F0,1F0\n1B0,0B0\n");
        CHECK(r.rule == "CSV4");
        CHECK(r.where == "line 2, column 1");
        CHECK(r.message.find("JSON") != std::string::npos);
    }
    SUBCASE("duplicated ops") {
        const auto r = refuse_csv("0F0,0F1,,0B0,,0B1,0F1\n,1F0,1B0,1F1,1B1,\n");
        CHECK(r.rule == "CSV6");
        CHECK(r.where == "line 1, column 19");
    }
    SUBCASE("readable but invalid: the checker reports it") {
        const schedule s = io::read_csv("0F0,0B0\n1B0,1F0\n");
        CHECK_FALSE(check(s).ok());
    }
}

TEST_CASE("chrome trace: one complete event per op with the cost model's times") {
    const schedule s = make(algorithm::chimera, 4, 4);
    const std::string text = io::write_chrome_trace(s, op_costs{.forward = 1, .backward = 2});
    const auto trace = nlohmann::json::parse(text);
    REQUIRE(trace.contains("traceEvents"));
    std::size_t complete = 0;
    double end = 0;
    for (const auto& e : trace["traceEvents"]) {
        CHECK(e.contains("ph"));
        CHECK(e.contains("pid"));
        if (e["ph"] != "X") continue;
        ++complete;
        CHECK(e["tid"] == 0);
        CHECK(e["args"].contains("kind"));
        CHECK(e["args"].contains("micro_batch"));
        const double dur = e["dur"].get<double>();
        CHECK(dur == (e["args"]["kind"] == "F" ? 1000.0 : 2000.0));
        end = std::max(end, e["ts"].get<double>() + dur);
    }
    CHECK(complete == s.op_count());
    CHECK(end == 16000.0);  // docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches: makespan 16 with t_F = 1, t_B = 2
    CHECK(text.find("\"name\":\"F m0 s0 p0\"") != std::string::npos);
    CHECK(io::write_chrome_trace(s) == io::write_chrome_trace(s));  // deterministic
}

TEST_CASE("chrome trace: communication on thread 1, deadlock refused") {
    const auto trace = nlohmann::json::parse(io::write_chrome_trace(pytorch_lowered_oracle()));
    std::size_t comm = 0;
    for (const auto& e : trace["traceEvents"])
        if (e["ph"] == "X" && e["tid"] == 1) {
            ++comm;
            CHECK(e["args"].contains("peer"));
            CHECK(e["cat"] == "communication");
        }
    CHECK(comm == 8);
    const schedule stuck = io::read_csv("0F0,0B0\n1B0,1F0\n");
    CHECK_THROWS_AS(io::write_chrome_trace(stuck), schedule_error);
}
