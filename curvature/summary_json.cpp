#include "curvature/summary_json.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace curv {

namespace {

using nlohmann::json;

json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json array(const Eigen::VectorXd& v) {
  json a = json::array();
  for (Eigen::Index i = 0; i < v.size(); ++i) a.push_back(number(v(i)));
  return a;
}

json attributes(const AttributeMap& attrs) {
  json o = json::object();
  for (const auto& kv : attrs) std::visit([&](const auto& x) { o[kv.first] = x; }, kv.second);
  return o;
}

}  // namespace

json summary_json(const StoreSection& s) {
  json o = json::object();
  if (s.eigen) {
    const EigenRecord& e = *s.eigen;
    json residuals = array(e.residuals);
    for (Eigen::Index i = 0; i < e.bottom_residuals.size(); ++i) residuals.push_back(number(e.bottom_residuals(i)));
    // Converged: every reported pair met the solver's tolerance (status "successful").
    const auto status = e.attributes.find("status");
    const bool converged = status == e.attributes.end() ||
                           (std::holds_alternative<std::string>(status->second) &&
                            std::get<std::string>(status->second) == "successful");
    o["eigen"] = {{"top", array(e.values)},
                  {"bottom", array(e.bottom_values)},
                  {"residuals", residuals},
                  {"converged", converged},
                  {"settings", attributes(e.attributes)}};
    if (e.values_stderr.size() || e.bottom_values_stderr.size()) {  // Monte Carlo Fisher (fisher_sampling.h)
      o["eigen"]["estimate"] = true;
      o["eigen"]["top_stderr"] = array(e.values_stderr);
      o["eigen"]["top_heldout"] = array(e.heldout_values);
      o["eigen"]["top_heldout_stderr"] = array(e.heldout_stderr);
      o["eigen"]["bottom_stderr"] = array(e.bottom_values_stderr);
      o["eigen"]["bottom_heldout"] = array(e.bottom_heldout_values);
      o["eigen"]["bottom_heldout_stderr"] = array(e.bottom_heldout_stderr);
    }
  }
  if (s.trace) {
    o["trace"] = {{"estimate", number(s.trace->estimate)},
                  {"stderr", number(s.trace->std_error)},
                  {"probes", s.trace->probes},
                  {"settings", attributes(s.trace->attributes)}};
    const auto label = s.trace->attributes.find("label_stderr");  // Monte Carlo Fisher
    if (label != s.trace->attributes.end() && std::holds_alternative<double>(label->second)) {
      o["trace"]["estimate_of"] = "true Fisher";
      o["trace"]["label_stderr"] = number(std::get<double>(label->second));
    }
  }
  if (s.kfac) {  // computed exactly from the factors
    o["exact"] = true;
    o["kfac"] = attributes(s.kfac->attributes);
  }
  if (s.diag) o["diag"] = {{"probes", s.diag->probes}, {"settings", attributes(s.diag->attributes)}};
  if (s.gradient) {
    o["gradient"] = {{"norm", number(s.gradient->norm)}, {"top_overlap", array(s.gradient->top_overlap)}};
  }
  if (s.density) {
    o["density"] = {{"probes", s.density->nodes.rows()},
                    {"steps", s.density->nodes.cols()},
                    {"settings", attributes(s.density->attributes)}};
  }
  return o;
}

json summary_json(const StoreRun& run) {
  json o = summary_json(run.model);
  if (!run.blocks.empty()) {
    json blocks = json::object();
    for (const auto& [name, section] : run.blocks) blocks[name] = summary_json(section);
    o["blocks"] = std::move(blocks);
  }
  return o;
}

}  // namespace curv
