#include "quant/model_quant.h"

#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include "curvature/curvature_operator.h"
#include "curvature/eigen_solver.h"
#include "curvature/exact_spectrum.h"
#include "curvature/hutchinson_trace.h"
#include "curvature/internal/hdf5_handle.h"
#include "src/checkpoint.h"

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
  if (es.top_values().size() == 0)
    throw std::runtime_error("sensitivity: Lanczos did not converge for a block of " + std::to_string(op.rows()) +
                             " parameters (try a larger --eig-tol)");
  return es.top_values()[0];
}

}  // namespace

std::vector<Sensitivity> layer_sensitivities(const Model& m, const Dataset& data, const std::vector<ModelLayer>& layers,
                                             const SensitivityOptions& o) {
  std::vector<Sensitivity> out;
  if (o.kind == SensitivityKind::EigStats) {
    if (o.subsets < 2 || o.subsets > data.size())
      throw std::invalid_argument("eig-stats: --subsets (= " + std::to_string(o.subsets) + ") must be in 2.." +
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

void save_quantized(const Model& m, const Plan& plan, const std::vector<AppliedLayer>& layers, const std::string& path) {
  using internal::H5Handle;
  const std::string tmp = path + ".qtmp." + std::to_string(getpid());
  struct Cleanup {
    std::string p;
    bool armed = true;
    ~Cleanup() {
      if (armed) std::filesystem::remove(p);
    }
  } cleanup{tmp};
  save_checkpoint(m, tmp);
  internal::silence_hdf5_errors();
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(path + ": cannot write quantized weights (" + what + ")");
  };
  {
    H5Handle f(H5Fopen(tmp.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    if (!f.valid()) fail("open");
    H5Handle g(H5Gcreate2(f.get(), "quant", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!g.valid()) fail("group /quant");
    const std::string js = plan_to_json(plan).dump();
    H5Handle st(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(st.get(), H5T_VARIABLE);
    H5Tset_cset(st.get(), H5T_CSET_UTF8);
    H5Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
    H5Handle at(H5Acreate2(g.get(), "plan", st.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const char* cs = js.c_str();
    if (!at.valid() || H5Awrite(at.get(), st.get(), &cs) < 0) fail("plan attribute");
    auto write = [&](hid_t grp, const char* name, hid_t type, const void* data, hsize_t n) {
      H5Handle s(H5Screate_simple(1, &n, nullptr), H5Sclose);
      H5Handle d(H5Dcreate2(grp, name, type, s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
      if (!d.valid() || (n > 0 && H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
        fail(std::string("dataset ") + name);
    };
    for (const auto& l : layers) {
      std::string esc;  // same escaping as checkpoints: '/' -> %2F, '%' -> %25
      for (char c : l.name) esc += c == '/' ? "%2F" : c == '%' ? "%25" : std::string(1, c);
      H5Handle lg(H5Gcreate2(g.get(), esc.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
      if (!lg.valid()) fail("group /quant/" + esc);
      write(lg.get(), "codes", H5T_NATIVE_INT8, l.q.codes.data(), l.q.codes.size());
      write(lg.get(), "scales", H5T_NATIVE_DOUBLE, l.q.scales.data(), l.q.scales.size());
      write(lg.get(), "zero_points", H5T_NATIVE_INT32, l.q.zero_points.data(), l.q.zero_points.size());
      write(lg.get(), "group_begin", H5T_NATIVE_INT64, l.q.group_begin.data(), l.q.group_begin.size());
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error(path + ": cannot rename the finished file into place (" + ec.message() + ")");
  cleanup.armed = false;
}

}  // namespace curv::quant

namespace curv::quant {

void save_frontier(const std::string& path, const std::string& command, const std::vector<ModelLayer>& layers,
                   const std::vector<Sensitivity>& sens, const std::string& kind, const ParetoFrontier& frontier,
                   std::int64_t extra_bytes) {
  using internal::H5Handle;
  internal::silence_hdf5_errors();
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  auto fail = [&](const std::string& what) {
    std::filesystem::remove(tmp);
    throw std::runtime_error(path + ": cannot write (" + what + ")");
  };
  {
    H5Handle f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!f.valid()) fail("create " + tmp);
    H5Handle st(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(st.get(), H5T_VARIABLE);
    H5Tset_cset(st.get(), H5T_CSET_UTF8);
    auto str_attr = [&](hid_t obj, const char* name, const std::string& v) {
      H5Handle sp(H5Screate(H5S_SCALAR), H5Sclose);
      H5Handle a(H5Acreate2(obj, name, st.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
      const char* c = v.c_str();
      if (!a.valid() || H5Awrite(a.get(), st.get(), &c) < 0) fail(std::string("attribute ") + name);
    };
    auto write = [&](hid_t grp, const char* name, hid_t type, const void* data, std::vector<hsize_t> dims) {
      H5Handle s(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
      H5Handle d(H5Dcreate2(grp, name, type, s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
      hsize_t n = 1;
      for (auto x : dims) n *= x;
      if (!d.valid() || (n > 0 && H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
        fail(std::string("dataset ") + name);
    };
    str_attr(f.get(), "format", "curv");
    str_attr(f.get(), "command", command);
    str_attr(f.get(), "created_utc", utc_timestamp());
    H5Handle q(H5Gcreate2(f.get(), "quant", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    str_attr(q.get(), "sensitivity", kind);
    H5Handle lg(H5Gcreate2(q.get(), "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    const hsize_t L = layers.size();
    std::vector<const char*> names;
    std::vector<std::int64_t> n, macs;
    std::vector<double> s;
    for (size_t i = 0; i < layers.size(); ++i) {
      names.push_back(layers[i].name.c_str());
      n.push_back(layers[i].numel);
      macs.push_back(layers[i].macs);
      s.push_back(sens[i].value);
    }
    write(lg.get(), "names", st.get(), names.data(), {L});
    write(lg.get(), "numel", H5T_NATIVE_INT64, n.data(), {L});
    write(lg.get(), "macs", H5T_NATIVE_INT64, macs.data(), {L});
    write(lg.get(), "sensitivity", H5T_NATIVE_DOUBLE, s.data(), {L});
    H5Handle fg(H5Gcreate2(q.get(), "frontier", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    str_attr(fg.get(), "exact", frontier.exact ? "true" : "false");
    const hsize_t K = frontier.points.size();
    std::vector<std::int64_t> size, bits;
    std::vector<double> omega, avg;
    for (const auto& p : frontier.points) {
      size.push_back((p.size_bits + 7) / 8 + extra_bytes);
      omega.push_back(p.omega);
      avg.push_back(p.avg_bits);
      for (int b : p.bits) bits.push_back(b);
    }
    write(fg.get(), "size_bytes", H5T_NATIVE_INT64, size.data(), {K});
    write(fg.get(), "omega", H5T_NATIVE_DOUBLE, omega.data(), {K});
    write(fg.get(), "avg_bits", H5T_NATIVE_DOUBLE, avg.data(), {K});
    write(fg.get(), "bits", H5T_NATIVE_INT64, bits.data(), {K, L});
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("rename: " + ec.message());
}

}  // namespace curv::quant
