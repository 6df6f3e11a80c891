#include "quant/model_quant.h"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/internal/hdf5_handle.h"
#include "curvature/spectra_reader.h"
#include "src/io/checkpoint.h"

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

// Minimal HDF5 writing for the two files below: UTF-8 string attributes and 1-D/2-D datasets.
// Every failure throws std::runtime_error("<path>: cannot write (<what>)").
class H5Writer {
 public:
  explicit H5Writer(std::string path) : m_path(std::move(path)), m_str(H5Tcopy(H5T_C_S1), H5Tclose) {
    internal::silence_hdf5_errors();
    H5Tset_size(m_str.get(), H5T_VARIABLE);
    H5Tset_cset(m_str.get(), H5T_CSET_UTF8);
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(m_path + ": cannot write (" + what + ")");
  }
  internal::H5Handle group(hid_t parent, const std::string& name) const {
    internal::H5Handle g(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!g.valid()) fail("group " + name);
    return g;
  }
  void str_attr(hid_t obj, const char* name, const std::string& v) const {
    internal::H5Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
    internal::H5Handle a(H5Acreate2(obj, name, m_str.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const char* c = v.c_str();
    if (!a.valid() || H5Awrite(a.get(), m_str.get(), &c) < 0) fail(std::string("attribute ") + name);
  }
  void dataset(hid_t grp, const char* name, hid_t type, const void* data, std::vector<hsize_t> dims) const {
    internal::H5Handle sp(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    internal::H5Handle d(H5Dcreate2(grp, name, type, sp.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
    hsize_t n = 1;
    for (auto x : dims) n *= x;
    if (!d.valid() || (n > 0 && H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
      fail(std::string("dataset ") + name);
  }
  hid_t string_type() const { return m_str.get(); }

 private:
  std::string m_path;
  internal::H5Handle m_str;
};

// Removes a temporary file unless disarmed.
struct TempFile {
  std::string path;
  bool armed = true;
  ~TempFile() {
    if (armed) std::filesystem::remove(path);
  }
  void commit_to(const std::string& target) {
    std::error_code ec;
    std::filesystem::rename(path, target, ec);
    if (ec) throw std::runtime_error(target + ": cannot rename the finished file into place (" + ec.message() + ")");
    armed = false;
  }
};

}  // namespace

void save_quantized(const Model& m, const Plan& plan, const std::vector<AppliedLayer>& layers, const std::string& path) {
  using internal::H5Handle;
  TempFile tmp{path + ".qtmp." + std::to_string(getpid())};
  save_checkpoint(m, tmp.path);
  H5Writer w(path);
  {
    H5Handle f(H5Fopen(tmp.path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    if (!f.valid()) w.fail("open " + tmp.path);
    H5Handle g = w.group(f.get(), "quant");
    w.str_attr(g.get(), "plan", plan_to_json(plan).dump());
    for (const auto& l : layers) {
      std::string esc;  // same escaping as checkpoints: '/' -> %2F, '%' -> %25
      for (char c : l.name) esc += c == '/' ? "%2F" : c == '%' ? "%25" : std::string(1, c);
      H5Handle lg = w.group(g.get(), esc);
      w.dataset(lg.get(), "codes", H5T_NATIVE_INT8, l.q.codes.data(), {l.q.codes.size()});
      w.dataset(lg.get(), "scales", H5T_NATIVE_DOUBLE, l.q.scales.data(), {l.q.scales.size()});
      w.dataset(lg.get(), "zero_points", H5T_NATIVE_INT32, l.q.zero_points.data(), {l.q.zero_points.size()});
      w.dataset(lg.get(), "group_begin", H5T_NATIVE_INT64, l.q.group_begin.data(), {l.q.group_begin.size()});
    }
  }
  tmp.commit_to(path);
}


void save_frontier(const std::string& path, const std::string& command, const std::string& model_sha256,
                   const std::vector<ModelLayer>& layers, const std::vector<Sensitivity>& sens,
                   const std::string& kind, const std::string& order, const ParetoFrontier& frontier) {
  using internal::H5Handle;
  TempFile tmp{path + ".tmp." + std::to_string(getpid())};
  H5Writer w(path);
  {
    H5Handle f(H5Fcreate(tmp.path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!f.valid()) w.fail("create " + tmp.path);
    w.str_attr(f.get(), "format", "curv");
    w.str_attr(f.get(), "command", command);
    w.str_attr(f.get(), "created_utc", utc_timestamp());
    w.str_attr(f.get(), "model_sha256", model_sha256);
    H5Handle q = w.group(f.get(), "quant");
    w.str_attr(q.get(), "sensitivity", kind);
    w.str_attr(q.get(), "order", order);
    H5Handle lg = w.group(q.get(), "layers");
    const hsize_t L = layers.size();
    std::vector<const char*> names;
    std::vector<std::int64_t> n, macs;
    std::vector<double> s;
    std::vector<std::int8_t> negative;
    for (size_t i = 0; i < layers.size(); ++i) {
      names.push_back(layers[i].name.c_str());
      n.push_back(layers[i].numel);
      macs.push_back(layers[i].macs);
      s.push_back(sens[i].value);
      negative.push_back(sens[i].negative_top_eigenvalue ? 1 : 0);
    }
    w.dataset(lg.get(), "names", w.string_type(), names.data(), {L});
    w.dataset(lg.get(), "numel", H5T_NATIVE_INT64, n.data(), {L});
    w.dataset(lg.get(), "macs", H5T_NATIVE_INT64, macs.data(), {L});
    w.dataset(lg.get(), "sensitivity", H5T_NATIVE_DOUBLE, s.data(), {L});
    w.dataset(lg.get(), "negative_top_eigenvalue", H5T_NATIVE_INT8, negative.data(), {L});
    H5Handle fg = w.group(q.get(), "frontier");
    w.str_attr(fg.get(), "exact", frontier.exact ? "true" : "false");
    const hsize_t K = frontier.points.size();
    std::vector<std::int64_t> size, bits;
    std::vector<double> omega, avg;
    for (const auto& p : frontier.points) {
      size.push_back((p.size_bits + 7) / 8);
      omega.push_back(p.omega);
      avg.push_back(p.avg_bits);
      for (int b : p.bits) bits.push_back(b);
    }
    w.dataset(fg.get(), "size_bytes", H5T_NATIVE_INT64, size.data(), {K});
    w.dataset(fg.get(), "omega", H5T_NATIVE_DOUBLE, omega.data(), {K});
    w.dataset(fg.get(), "avg_bits", H5T_NATIVE_DOUBLE, avg.data(), {K});
    w.dataset(fg.get(), "bits", H5T_NATIVE_INT64, bits.data(), {K, L});
  }
  tmp.commit_to(path);
}

std::vector<Sensitivity> load_sensitivities(const std::string& path, const std::vector<ModelLayer>& layers,
                                            const std::string& model_sha256, std::string& kind) {
  const SpectraReader r(path);
  auto fail = [&](const std::string& what) -> void { throw std::runtime_error(path + ": " + what); };
  if (!r.exists("/quant/layers/sensitivity")) fail("no /quant/layers/sensitivity (not a sensitivities file of curv quant plan)");
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
