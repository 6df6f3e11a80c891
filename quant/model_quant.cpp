#include "quant/model_quant.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include <map>

#include "curvature/spectra_reader.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/hdf5.h"
#include "quant/act_quantizer.h"

namespace curv::quant {

std::vector<std::vector<double>> quantization_errors(const Model& m, const std::vector<ModelLayer>& layers,
                                                     const QuantSpec& spec, const AllocProblem& problem) {
  if (problem.layers.size() != layers.size())
    throw std::invalid_argument("quantization_errors: " + std::to_string(layers.size()) + " model layers, " +
                                std::to_string(problem.layers.size()) + " problem layers");
  std::vector<std::vector<double>> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    // One quantization per distinct width; options that differ in activation bits share it.
    std::vector<int> widths;
    for (const auto& opt : problem.layers[i].options)
      if (std::find(widths.begin(), widths.end(), opt.bits) == widths.end()) widths.push_back(opt.bits);
    const std::vector<double> e = layer_quantization_errors(m, layers[i], spec, widths);
    std::vector<double> row;
    for (const auto& opt : problem.layers[i].options)
      row.push_back(e[std::find(widths.begin(), widths.end(), opt.bits) - widths.begin()]);
    out.push_back(std::move(row));
  }
  return out;
}

void set_omegas(AllocProblem& problem, const std::vector<std::vector<double>>& err, std::span<const double> s) {
  if (err.size() != problem.layers.size() || s.size() != problem.layers.size())
    throw std::invalid_argument("set_omegas: " + std::to_string(problem.layers.size()) + " layers, " +
                                std::to_string(err.size()) + " error rows, " + std::to_string(s.size()) + " sensitivities");
  for (size_t i = 0; i < problem.layers.size(); ++i)
    for (size_t b = 0; b < problem.layers[i].options.size(); ++b)
      problem.layers[i].options[b].omega = 0.5 * s[i] * err[i][b];
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
  return 0.5 * total;
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
    pl.groups = num_groups(spec, l.channels);
    pl.transposed = l.transposed;
    pl.numel = l.numel;
    pl.macs = l.macs;
    p.layers.push_back(pl);
  }
  p.unquantized_bytes = unquantized_bytes(m, layers);
  p.totals = compute_totals(p);
  return p;
}

std::vector<AppliedLayer> apply_plan(Model& m, const Plan& plan) {
  const std::vector<ModelLayer> layers = quantizable_layers(m);
  std::map<std::string, const ModelLayer*> by_name;
  for (const ModelLayer& l : layers) by_name[l.name] = &l;
  std::vector<AppliedLayer> out;
  for (const auto& pl : plan.layers) {
    const auto it = by_name.find(pl.name);
    if (it == by_name.end()) {
      if (m.find_param(pl.name) < 0) throw std::invalid_argument("plan layer '" + pl.name + "' is not a parameter of the model");
      throw std::invalid_argument("plan layer '" + pl.name + "' is not the weight of a Conv, Gemm or MatMul node");
    }
    const ModelLayer& l = *it->second;
    if (l.numel != pl.numel)
      throw std::invalid_argument("plan layer '" + pl.name + "' has " + std::to_string(pl.numel) +
                                  " weights, the model's tensor " + std::to_string(l.numel));
    QuantSpec spec;
    spec.bits = pl.bits;
    spec.scheme = pl.scheme;
    spec.granularity = pl.granularity;
    spec.groups = pl.granularity == Granularity::Group ? static_cast<int>(pl.groups) : 1;
    if (num_groups(spec, l.channels) != pl.groups)
      throw std::invalid_argument("plan layer '" + pl.name + "' has " + std::to_string(pl.groups) + " " +
                                  to_string(pl.granularity) + " groups, the model's tensor has " +
                                  std::to_string(l.channels) + " output channels");
    auto q = quantize_layer(m, l, spec);
    set_channel_major(m, l, q.dequantized);
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
    for (const PlanLayer& pl : plan.layers) {
      if (pl.name != l.name) continue;
      lg.write_attribute("transposed", std::int64_t{pl.transposed ? 1 : 0});
      if (pl.act_bits > 0) {  // the input's quantizer: scale, zero point, levels
        const FakeQuantizeAttrs a = act_quant_params(pl.act_lo, pl.act_hi, pl.act_bits, pl.act_scheme);
        lg.write_attribute("act_scale", a.scale);
        lg.write_attribute("act_zero_point", a.zero_point);
        lg.write_attribute("act_qmin", a.qmin);
        lg.write_attribute("act_qmax", a.qmax);
      }
    }
  }
  f.close();
  out.commit();
}

void save_frontier(const std::string& path, const std::string& command, const std::string& model_sha256,
                   const std::vector<ModelLayer>& layers, const std::vector<Sensitivity>& sens,
                   const std::string& kind, const std::string& order, const ParetoFrontier& frontier,
                   const SensitivityReport* report) {
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
  std::vector<double> s, lambda, trace, stderr_, lmean, lstd;
  std::vector<std::int64_t> probes;
  std::vector<std::int8_t> negative;
  for (size_t i = 0; i < layers.size(); ++i) {
    names.push_back(layers[i].name);
    n.push_back(layers[i].numel);
    macs.push_back(layers[i].macs);
    s.push_back(sens[i].value);
    lambda.push_back(sens[i].lambda_max);
    lmean.push_back(sens[i].mean);
    lstd.push_back(sens[i].stddev);
    trace.push_back(sens[i].trace);
    stderr_.push_back(sens[i].trace_stderr);
    probes.push_back(sens[i].trace_probes);
    negative.push_back(sens[i].negative_top_eigenvalue ? 1 : 0);
  }
  lg.write_strings("names", names);
  write_1d(lg, "numel", n);
  write_1d(lg, "macs", macs);
  write_1d(lg, "sensitivity", s);
  write_1d(lg, "lambda_max", lambda);
  write_1d(lg, "lambda_mean", lmean);
  write_1d(lg, "lambda_std", lstd);
  write_1d(lg, "trace", trace);
  write_1d(lg, "trace_stderr", stderr_);
  write_1d(lg, "trace_probes", probes);
  write_1d(lg, "negative_top_eigenvalue", negative);
  if (report && report->trace_samples.size() == layers.size()) {
    // Ragged per-layer probe samples: layer i's are samples[offsets[i] : offsets[i+1]].
    const h5::Object tg = q.create_group("trace");
    std::vector<double> flat;
    std::vector<std::int64_t> offsets{0};
    for (const auto& v : report->trace_samples) {
      flat.insert(flat.end(), v.begin(), v.end());
      offsets.push_back(static_cast<std::int64_t>(flat.size()));
    }
    write_1d(tg, "samples", flat);
    write_1d(tg, "offsets", offsets);
    write_1d(tg, "known", report->trace_known);
    tg.write_attribute("products", report->products);
    tg.write_attribute("shared_products", report->shared_products);
    tg.write_attribute("shared_probes", report->shared_probes);
    tg.write_attribute("fallback_layers", report->fallback_layers);
    tg.write_attribute("seconds", report->seconds);
  }
  const h5::Object fg = q.create_group("frontier");
  fg.write_attribute("exact", frontier.exact ? "true" : "false");
  fg.write_attribute("cost", frontier.cost == CostKind::Bops ? "bops" : "size");
  std::vector<std::int64_t> size, bops, bits, act;
  std::vector<double> omega, avg;
  for (const auto& p : frontier.points) {
    size.push_back((p.size_bits + 7) / 8);
    bops.push_back(p.bops);
    omega.push_back(p.omega);
    avg.push_back(p.avg_bits);
    for (int b : p.bits) bits.push_back(b);
    for (int a : p.act_bits) act.push_back(a);
  }
  write_1d(fg, "size_bytes", size);
  write_1d(fg, "bops", bops);
  write_1d(fg, "omega", omega);
  write_1d(fg, "avg_bits", avg);
  fg.write_dataset("bits", std::span<const std::int64_t>(bits), {frontier.points.size(), layers.size()});
  fg.write_dataset("act_bits", std::span<const std::int64_t>(act), {frontier.points.size(), layers.size()});
  f.close();
  out.commit();
}

std::vector<Sensitivity> load_sensitivities(const std::string& path, const std::vector<ModelLayer>& layers,
                                            const std::string& model_sha256, std::string& kind) {
  const SpectraReader r(path);
  auto fail = [&](const std::string& what) -> void { throw std::runtime_error(path + ": " + what); };
  if (!r.exists("/quant/layers/sensitivity")) fail("no /quant/layers/sensitivity (not a sensitivities file of curv quant plan)");
  // Files before schema_version 1 carry no version; newer ones than this reader are refused.
  double version = 0;
  if (r.has_attribute("/", "schema_version")) {
    version = r.number_attribute("/", "schema_version");
    if (version < 1 || version > static_cast<double>(kFrontierSchemaVersion))
      fail("schema_version " + std::to_string(static_cast<long long>(version)) + " is not supported (this curv reads 1.." +
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
  // Before schema_version 2, "eig" stored lambda_max itself: today's "eig-bound".
  if (version < 2 && kind == "eig") kind = "eig-bound";
  const SensitivityKind k = sensitivity_kind_from_string(kind);
  const bool has_lambda = r.exists("/quant/layers/lambda_max");
  const StoredArray lam = has_lambda ? r.read("/quant/layers/lambda_max") : StoredArray{};
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
    if (has_lambda && lam.data.size() == layers.size()) x.lambda_max = lam.data[i];
    if (!has_lambda && k == SensitivityKind::EigBound) x.lambda_max = x.value;
    out.push_back(x);
  }
  return out;
}

}  // namespace curv::quant
