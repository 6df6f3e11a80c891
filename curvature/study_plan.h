#pragma once
/// \file study_plan.h
/// Reads a study file (docs/study.md) into the list of runs it declares, fully resolved and
/// checked, before anything runs.
///
/// A study file is a JSON object:
///     {"name": "granziol",                  optional
///      "root": "../..",                     optional: paths are relative to this folder, itself
///                                           relative to the study file (default: its folder)
///      "defaults": {SETTING: VALUE, ...},   applied to every run whose kind takes the setting
///      "runs":  [{"kind": K, "name": N?, SETTING: VALUE, ...}, ...],
///      "grids": [{"kind": K, "name": N?, SETTING: VALUE, ..., "axes": {SETTING: [V, ...], ...}}],
///      "grid":  {...one grid...},
///      "figures": [...],                    for tools/plot_study.py, passed through
///      "description": "..."}                free text
/// Runs are planned in the order the file lists its entries. A grid is the cartesian product of
/// its axes (first axis outermost). A model value with glob
/// characters (*, ?, [) stands for the matching files in name order, one run each.
///
/// Run names: "name" with {SETTING} placeholders replaced by the run's values (a path by its file
/// stem), or without placeholders "name" plus ".KEY=VALUE,..." for the settings that vary within
/// the entry; without "name", the kind. Names must be unique, without '/', at most 200 bytes.
///
/// Errors: std::invalid_argument("<file>: <entry>: <problem>") for anything wrong with the file:
/// invalid JSON, an unknown key, a setting of the wrong type or out of range, an empty or
/// unknown axis, a glob that matches nothing, a missing model file, duplicate names.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "curvature/run_kind.h"

namespace curv {

struct StudyPlan {
  std::filesystem::path file;  // the study file
  std::filesystem::path root;  // paths in settings are relative to this
  std::string text;            // the study file's content
  std::string name;
  std::vector<PlannedRun> runs;
  nlohmann::json figures = nlohmann::json::array();
};

/// Parses and expands the study file and computes every run's settings hash (which reads the
/// input files' contents; cached per file within the call).
StudyPlan plan_study(const std::filesystem::path& file);
/// The same for a study given as text (`file` only names it in messages and sets the root).
StudyPlan plan_study_text(const std::string& text, const std::filesystem::path& file);

/// The settings hash of `run`: sha256 over "curv-study-run", the kind and its version, the
/// settings JSON (sorted keys) and the XXH3-128 digest of each input file's contents
/// (xxh3_128_file). `file_hashes` caches file digests by path.
std::string run_hash(const PlannedRun& run, const std::vector<std::string>& input_files,
                     std::map<std::string, std::string>& file_hashes);

/// Keeps the runs whose name matches one of the shell patterns (fnmatch); every pattern must
/// match some run (std::invalid_argument naming it). Empty `patterns`: all runs.
std::vector<const PlannedRun*> select_runs(const StudyPlan& plan, const std::vector<std::string>& patterns);

/// Every setting of `kind` (common ones included) at its default, overridden by `values`
/// (checked: std::invalid_argument "<setting>: <problem>" or "unknown setting"). For commands that
/// run one kind directly (curv landscape).
nlohmann::json resolve_settings(const RunKind& kind, const nlohmann::json& values);

/// The JSON Schema (draft 2020-12) of a study file with the registered kinds' settings.
nlohmann::json study_schema();

}  // namespace curv
