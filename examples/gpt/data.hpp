// The training data: a synthetic, character-level language generated from a
// small grammar (no download), split into a training and a held-out part,
// and the deterministic choice of every micro-batch's token windows.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"

namespace chimera::gpt {

// Sentences such as "the small cat sees two red birds." and sums such as
// "3+4=7."; agreement and arithmetic make the text learnable beyond unigrams.
inline std::string synthetic_text(std::size_t length, std::uint64_t seed) {
    static constexpr std::string_view adjectives[] = {"small", "red", "old", "quick", "green", "happy", "dark", "tall"};
    static constexpr std::string_view nouns[] = {"cat", "dog", "bird", "fox", "tree", "ship", "king", "river"};
    static constexpr std::string_view verbs[] = {"see", "like", "chase", "find", "watch", "help"};
    static constexpr std::string_view numbers[] = {"two", "three", "four", "five"};
    rng g{seed};
    auto pick = [&](auto& list) { return list[g.next() % std::size(list)]; };
    std::string text;
    while (text.size() < length) {
        const auto kind = g.next() % 4;
        if (kind == 3) {
            const int a = static_cast<int>(g.next() % 10), b = static_cast<int>(g.next() % 10);
            text += std::to_string(a) + "+" + std::to_string(b) + "=" + std::to_string(a + b) + ". ";
            continue;
        }
        const bool plural_subject = g.next() % 2 == 0;
        text += plural_subject ? std::string(pick(numbers)) + " " : std::string("the ");
        if (g.next() % 2 == 0) text += std::string(pick(adjectives)) + " ";
        text += std::string(pick(nouns)) + (plural_subject ? "s " : " ");
        text += std::string(pick(verbs)) + (plural_subject ? " " : "s ");
        const bool plural_object = g.next() % 2 == 0;
        text += plural_object ? std::string(pick(numbers)) + " " : std::string("a ");
        if (g.next() % 2 == 0) text += std::string(pick(adjectives)) + " ";
        text += std::string(pick(nouns)) + (plural_object ? "s" : "") + (kind == 2 ? "! " : ". ");
    }
    text.resize(length);
    return text;
}

class dataset {
public:
    // 90 % training, 10 % held out; vocabulary = the characters present, sorted.
    explicit dataset(std::size_t length = 65536, std::uint64_t seed = 1) {
        const std::string text = synthetic_text(length, seed);
        bool used[256] = {};
        for (unsigned char ch : text) used[ch] = true;
        int id_of[256] = {};
        for (int ch = 0; ch < 256; ++ch)
            if (used[ch]) id_of[ch] = static_cast<int>(alphabet_.size()), alphabet_.push_back(static_cast<char>(ch));
        std::vector<int> ids;
        for (unsigned char ch : text) ids.push_back(id_of[ch]);
        const std::size_t split = ids.size() * 9 / 10;
        train_.assign(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(split));
        held_out_.assign(ids.begin() + static_cast<std::ptrdiff_t>(split), ids.end());
    }
    int vocab() const { return static_cast<int>(alphabet_.size()); }
    const std::string& alphabet() const { return alphabet_; }

    // Rows of micro-batch `index` of step `step`: B windows of T+1 tokens
    // (inputs and next-token targets), positions drawn from (seed, step, index).
    void micro_batch(bool held_out, std::uint64_t seed, int step, int index, int B, int T, std::vector<int>& tokens,
                     std::vector<int>& targets) const {
        const auto& ids = held_out ? held_out_ : train_;
        rng g{seed ^ (static_cast<std::uint64_t>(step) << 32) ^ (static_cast<std::uint64_t>(index) << 8) ^
              (held_out ? 0x5555ULL : 0)};
        tokens.resize(static_cast<std::size_t>(B) * T);
        targets.resize(tokens.size());
        for (int b = 0; b < B; ++b) {
            const std::size_t start = g.next() % (ids.size() - static_cast<std::size_t>(T) - 1);
            for (int t = 0; t < T; ++t) {
                tokens[static_cast<std::size_t>(b) * T + t] = ids[start + t];
                targets[static_cast<std::size_t>(b) * T + t] = ids[start + t + 1];
            }
        }
    }

private:
    std::string alphabet_;
    std::vector<int> train_, held_out_;
};

}  // namespace chimera::gpt
