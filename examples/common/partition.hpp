// Contiguous split of L equal blocks into D stages that minimises the
// largest stage cost (docs/design/runtime-contract.md#the-model), the head counted on the last stage.
#pragma once

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace chimera::runtime {

// first_block[s] .. first_block[s+1]-1 are stage s's blocks (size D+1).
// Every stage gets at least one block; ties go to the split with more blocks
// early (deterministic).
inline std::vector<int> balance_blocks(int blocks, int stages, double block_cost, double first_extra,
                                       double last_extra) {
    if (stages < 1 || blocks < stages)
        throw std::invalid_argument("partition: need layers L >= stages D (got L=" + std::to_string(blocks) +
                                    ", D=" + std::to_string(stages) + ")");
    // best[s][b]: minimal max cost placing the first b blocks on the first s stages.
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<std::vector<double>> best(stages + 1, std::vector<double>(blocks + 1, inf));
    std::vector<std::vector<int>> cut(stages + 1, std::vector<int>(blocks + 1, 0));
    best[0][0] = 0;
    for (int s = 1; s <= stages; ++s)
        for (int b = s; b <= blocks; ++b)
            for (int a = s - 1; a < b; ++a) {
                double cost = (b - a) * block_cost;
                if (s == 1) cost += first_extra;
                if (s == stages) cost += last_extra;
                const double value = std::max(best[s - 1][a], cost);
                if (value < best[s][b]) best[s][b] = value, cut[s][b] = a;
            }
    std::vector<int> first(stages + 1, blocks);
    for (int s = stages, b = blocks; s >= 1; --s) {
        first[s] = b;
        b = cut[s][b];
        first[s - 1] = b;
    }
    return first;
}

}  // namespace chimera::runtime
