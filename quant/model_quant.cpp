#include "quant/model_quant.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/spectra_reader.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/hdf5.h"

namespace curv::quant {

std::vector<ModelLayer> quantizable_layers(const Model& m) {
  std::vector<ModelLayer> out;
  std::vector<bool> seen(m.params().size(), false);
  for (const auto& n : m.nodes()) {
    const std::string t = n.op->type();
    if (t != "Conv" && t != "Gemm" && t != "MatMul") continue;
    for (size_t a = 0; a < n.inputs.size() && a < 2; ++a) {
      const Value& v = m.values()[n.inputs[a]];
      if (v.kind != ValueKind::Parameter || v.shape.size() < 2 || seen[v.index]) continue;
      seen[v.index] = true;
      const ParamInfo& p = m.params()[v.index];
      // MACs per sample: output elements (batch 1) times the weights each one reads.
      const Shape& o = m.values()[n.output].shape;  // batch 1
      const std::int64_t out_features = t == "Conv" ? o.at(1) : o.back();
      const std::int64_t macs = numel(o) * (p.size / std::max<std::int64_t>(out_features, 1));
      out.push_back({p.name, v.index, p.shape, p.size, macs});
    }
  }
  return out;
}

std::int64_t unquantized_bytes(const Model& m, const std::vector<ModelLayer>& layers) {
  std::int64_t q = 0;
  for (const auto& l : layers) q += l.numel;
  return 4 * (m.num_params() - q);
}

namespace {

double lambda_max(const LinearOperator& op, const SensitivityOptions& o) {
  if (op.rows() <= 16) {  // Spectra needs k < n and a few Lanczos vectors: tiny blocks go dense
    ExactSpectrum ex(op);
    ex.compute();
    return ex.top(1)[0];
  }
  EigenSolverOptions eo;
  eo.top = 1;
  eo.tol = o.eig_tol;
  eo.seed = o.seed;
  EigenSolver es(op, eo);
  es.compute();
  if (es.info() != CompInfo::Successful)
    throw std::runtime_error("sensitivity: Lanczos did not converge for a block of " + std::to_string(op.rows()) +
                             " parameters within " + std::to_string(eo.max_restarts) + " restarts (residual " +
                             std::to_string(es.top_residuals()[0]) + " of lambda_max " +
                             std::to_string(es.top_values()[0]) + "; the eigenvalue tolerance " +
                             std::to_string(o.eig_tol) + " is too tight)");
  return es.top_values()[0];
}

}  // namespace

std::vector<Sensitivity> layer_sensitivities(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                             const SensitivityOptions& o) {
  std::vector<Sensitivity> out;
  if (o.kind == SensitivityKind::EigStats) {
    if (o.subsets < 2 || o.subsets > data.size())
      throw std::invalid_argument("eig-stats: the number of data subsets (= " + std::to_string(o.subsets) + ") must be in 2.." +
                                  std::to_string(data.size()) + " (the sample count)");
    std::vector<std::vector<double>> lam(layers.size());
    const std::int64_t per = data.size() / o.subsets;
    for (int s = 0; s < o.subsets; ++s) {
      Dataset sub = data.subset(s * per, per);
      auto obj = Objective::create(m, sub, o.objective);
      for (size_t i = 0; i < layers.size(); ++i) {
        CurvatureOperator op(*obj, Curvature::Hessian, {layers[i].param});
        lam[i].push_back(lambda_max(op, o));
      }
    }
    for (auto& l : lam) out.push_back(eig_stats_sensitivity(l));
    return out;
  }
  auto obj = Objective::create(m, data, o.objective);
  for (const auto& l : layers) {
    CurvatureOperator op(*obj, Curvature::Hessian, {l.param});
    if (o.kind == SensitivityKind::Eig) {
      out.push_back(eig_sensitivity(lambda_max(op, o)));
    } else {
      HutchinsonTraceOptions ho;
      ho.probes = o.trace_probes;
      ho.seed = o.seed + 1;
      HutchinsonTrace ht(op, ho);
      ht.compute();
      out.push_back(trace_sensitivity(ht.estimate(), l.numel));
    }
  }
  return out;
}

std::vector<std::vector<double>> quantization_errors(const Model& m, const std::vector<ModelLayer>& layers,
                                                     const QuantSpec& spec, const AllocProblem& problem) {
  if (problem.layers.size() != layers.size())
    throw std::invalid_argument("quantization_errors: " + std::to_string(layers.size()) + " model layers, " +
                                std::to_string(problem.layers.size()) + " problem layers");
  std::vector<std::vector<double>> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    std::vector<int> bits;
    for (const auto& opt : problem.layers[i].options) bits.push_back(opt.bits);
    const Tensor<double>& w = m.param(layers[i].param);
    std::vector<std::int64_t> shape(layers[i].shape.begin(), layers[i].shape.end());
    out.push_back(loss_increase<double>(1.0, std::span<const double>(w.data(), w.size()), shape, spec, bits));
  }
  return out;
}

void set_omegas(AllocProblem& problem, const std::vector<std::vector<double>>& err, std::span<const double> s) {
  if (err.size() != problem.layers.size() || s.size() != problem.layers.size())
    throw std::invalid_argument("set_omegas: " + std::to_string(problem.layers.size()) + " layers, " +
                                std::to_string(err.size()) + " error rows, " + std::to_string(s.size()) + " sensitivities");
  for (size_t i = 0; i < problem.layers.size(); ++i)
    for (size_t b = 0; b < problem.layers[i].options.size(); ++b) problem.layers[i].options[b].omega = s[i] * err[i][b];
}

double predicted_omega(const AllocProblem& problem, const std::vector<std::vector<double>>& err,
                       std::span<const double> s, std::span<const int> bits) {
  double total = 0.0;
  for (size_t i = 0; i < problem.layers.size(); ++i) {
    const auto& options = problem.layers[i].options;
    auto it = std::find_if(options.begin(), options.end(), [&](const BitOption& o) { return o.bits == bits[i]; });
    if (it == options.end())
      throw std::invalid_argument("predicted_omega: layer " + problem.layers[i].name + ": " + std::to_string(bits[i]) +
                                  " bits is not among its options");
    total += s[i] * err[i][it - options.begin()];
  }
  return total;
}

Plan uniform_plan(const Model& m, int bits, Scheme scheme, Granularity granularity, std::int64_t groups) {
  check_bits(bits);
  Plan p;
  p.sensitivity_kind = "";
  p.candidate_bits = {bits};
  p.optimizer_method = "given";
  const auto layers = quantizable_layers(m);
  if (layers.empty()) throw std::invalid_argument("model has no Conv/Gemm/MatMul weights to quantize");
  for (const auto& l : layers) {
    PlanLayer pl;
    pl.name = l.name;
    pl.bits = bits;
    pl.scheme = scheme;
    pl.granularity = granularity;
    QuantSpec spec{bits, scheme, granularity, static_cast<int>(groups)};
    pl.groups = num_groups(spec, l.shape[0]);
    pl.numel = l.numel;
    pl.macs = l.macs;
    p.layers.push_back(pl);
  }
  p.unquantized_bytes = unquantized_bytes(m, layers);
  p.totals = compute_totals(p);
  return p;
}

std::vector<AppliedLayer> apply_plan(Model& m, const Plan& plan) {
  std::vector<AppliedLayer> out;
  for (const auto& pl : plan.layers) {
    const int pi = m.find_param(pl.name);
    if (pi < 0) throw std::invalid_argument("plan layer '" + pl.name + "' is not a parameter of the model");
    Tensor<double>& w = m.param(pi);
    if (w.size() != pl.numel)
      throw std::invalid_argument("plan layer '" + pl.name + "' has " + std::to_string(pl.numel) +
                                  " weights, the model's tensor " + std::to_string(w.size()));
    QuantSpec spec;
    spec.bits = pl.bits;
    spec.scheme = pl.scheme;
    spec.granularity = pl.granularity;
    spec.groups = pl.granularity == Granularity::Group ? static_cast<int>(pl.groups) : 1;
    std::vector<std::int64_t> shape(w.shape().begin(), w.shape().end());
    auto q = quantize<double>(std::span<const double>(w.data(), w.size()), shape, spec);
    std::copy(q.dequantized.begin(), q.dequantized.end(), w.data());
    out.push_back({pl.name, std::move(q)});
  }
  return out;
}

namespace {

// Same escaping as checkpoints: '/' -> %2F, '%' -> %25.
std::string escape_name(const std::string& name) {
  std::string esc;
  for (char c : name) esc += c == '/' ? "%2F" : c == '%' ? "%25" : std::string(1, c);
  return esc;
}

template <class T>
void write_1d(const h5::Object& g, const std::string& name, const std::vector<T>& v) {
  g.write_dataset(name, std::span<const T>(v), {v.size()});
}

}  // namespace

void save_quantized(const Model& m, const Plan& plan, const std::vector<AppliedLayer>& layers, const std::string& path) {
  std::vector<std::string> inputs = model_files(m);
  if (!plan.model_path.empty()) inputs.push_back(plan.model_path);
  AtomicFile out(path, inputs);
  h5::Object f = h5::Object::create(out.temp_path(), path);
  write_checkpoint(m, f);
  const h5::Object g = f.create_group("quant");
  g.write_attribute("plan", plan_to_json(plan).dump());
  for (const auto& l : layers) {
    const h5::Object lg = g.create_group(escape_name(l.name));
    write_1d(lg, "codes", l.q.codes);
    write_1d(lg, "scales", l.q.scales);
    write_1d(lg, "zero_points", l.q.zero_points);
    write_1d(lg, "group_begin", l.q.group_begin);
  }
  f.close();
  out.commit();
}

void save_frontier(const std::string& path, const std::string& command, const std::string& model_sha256,
                   const std::vector<ModelLayer>& layers, const std::vector<Sensitivity>& sens,
                   const std::string& kind, const std::string& order, const ParetoFrontier& frontier) {
  AtomicFile out(path);
  h5::Object f = h5::Object::create(out.temp_path(), path);
  f.write_attribute("format", "curv");
  f.write_attribute("schema_version", kFrontierSchemaVersion);
  f.write_attribute("curv_version", curv_version_string());
  f.write_attribute("created_utc", utc_timestamp());
  f.write_attribute("command", command);
  f.write_attribute("model_sha256", model_sha256);
  const h5::Object q = f.create_group("quant");
  q.write_attribute("sensitivity", kind);
  q.write_attribute("order", order);
  const h5::Object lg = q.create_group("layers");
  std::vector<std::string> names;
  std::vector<std::int64_t> n, macs;
  std::vector<double> s;
  std::vector<std::int8_t> negative;
  for (size_t i = 0; i < layers.size(); ++i) {
    names.push_back(layers[i].name);
    n.push_back(layers[i].numel);
    macs.push_back(layers[i].macs);
    s.push_back(sens[i].value);
    negative.push_back(sens[i].negative_top_eigenvalue ? 1 : 0);
  }
  lg.write_strings("names", names);
  write_1d(lg, "numel", n);
  write_1d(lg, "macs", macs);
  write_1d(lg, "sensitivity", s);
  write_1d(lg, "negative_top_eigenvalue", negative);
  const h5::Object fg = q.create_group("frontier");
  fg.write_attribute("exact", frontier.exact ? "true" : "false");
  std::vector<std::int64_t> size, bits;
  std::vector<double> omega, avg;
  for (const auto& p : frontier.points) {
    size.push_back((p.size_bits + 7) / 8);
    omega.push_back(p.omega);
    avg.push_back(p.avg_bits);
    for (int b : p.bits) bits.push_back(b);
  }
  write_1d(fg, "size_bytes", size);
  write_1d(fg, "omega", omega);
  write_1d(fg, "avg_bits", avg);
  fg.write_dataset("bits", std::span<const std::int64_t>(bits), {frontier.points.size(), layers.size()});
  f.close();
  out.commit();
}

std::vector<Sensitivity> load_sensitivities(const std::string& path, const std::vector<ModelLayer>& layers,
                                            const std::string& model_sha256, std::string& kind) {
  const SpectraReader r(path);
  auto fail = [&](const std::string& what) -> void { throw std::runtime_error(path + ": " + what); };
  if (!r.exists("/quant/layers/sensitivity")) fail("no /quant/layers/sensitivity (not a sensitivities file of curv quant plan)");
  // Files before schema_version 1 carry no version; newer ones than this reader are refused.
  if (r.has_attribute("/", "schema_version")) {
    const double v = r.number_attribute("/", "schema_version");
    if (v != static_cast<double>(kFrontierSchemaVersion))
      fail("schema_version " + std::to_string(static_cast<long long>(v)) + " is not supported (this curv reads " +
           std::to_string(kFrontierSchemaVersion) + ")");
  }
  std::string sha;
  try {
    sha = r.string_attribute("/", "model_sha256");
  } catch (const std::runtime_error&) {
    fail("no model_sha256 attribute: cannot tell which model the sensitivities belong to");
  }
  if (sha != model_sha256)
    fail("sensitivities were computed for a model with sha256 " + sha + ", not this model (sha256 " + model_sha256 +
         ")");
  kind = r.string_attribute("/quant", "sensitivity");
  const SensitivityKind k = sensitivity_kind_from_string(kind);
  const StoredArray s = r.read("/quant/layers/sensitivity"), n = r.read("/quant/layers/numel");
  if (s.data.size() != layers.size() || n.data.size() != layers.size())
    fail(std::to_string(s.data.size()) + " layers, the model has " + std::to_string(layers.size()));
  const bool flags = r.exists("/quant/layers/negative_top_eigenvalue");
  const StoredArray neg = flags ? r.read("/quant/layers/negative_top_eigenvalue") : StoredArray{};
  std::vector<Sensitivity> out;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (static_cast<std::int64_t>(n.data[i]) != layers[i].numel)
      fail("layer " + std::to_string(i) + " has " + std::to_string(static_cast<std::int64_t>(n.data[i])) +
           " weights, the model's " + layers[i].name + " has " + std::to_string(layers[i].numel));
    if (!std::isfinite(s.data[i])) fail("sensitivity of " + layers[i].name + " is not finite");
    Sensitivity x;
    x.kind = k;
    x.value = s.data[i];
    x.negative_top_eigenvalue = flags && neg.data.size() == layers.size() && neg.data[i] != 0.0;
    out.push_back(x);
  }
  return out;
}

}  // namespace curv::quant
