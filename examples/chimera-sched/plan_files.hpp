// Model and cluster files (docs/planning.md#file-formats): JSON descriptions
// of a transformer and of the devices and networks it trains on, read
// strictly: a missing or unknown field, a wrong type, a value out of range or
// an inconsistent pair is refused with the file, the field and the value.
#pragma once

#include <string>
#include <vector>

#include <chimera/perf_model.hpp>

namespace chimera_sched {

struct cluster_description {
    chimera::hardware machine;
    int devices = 0;  // how many the cluster has (tune's default P)
};

// Parse (text is the file's content; path only names it in errors). Throw usage_error.
chimera::model_description parse_model_file(const std::string& path, const std::string& text);
cluster_description parse_cluster_file(const std::string& path, const std::string& text);

// A profile (chimera-train --profile-out) measured on `model`: its stages'
// layers must add up to the model's.
chimera::measured_profile parse_profile_file(const std::string& path, const std::string& text,
                                             const chimera::model_description& model);
chimera::measured_profile read_profile_file(const std::string& path, const chimera::model_description& model);
// --profile FILE... (one per micro-batch size): chimera::calibrate with every file.
void calibrate_with(chimera::model_description& model, chimera::hardware& machine,
                    const std::vector<std::string>& profile_paths);

// The same, reading the file first.
chimera::model_description read_model_file(const std::string& path);
cluster_description read_cluster_file(const std::string& path);

}  // namespace chimera_sched
