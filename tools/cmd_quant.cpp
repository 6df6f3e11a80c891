// curv quant plan | apply | eval: HAWQ-style mixed-precision quantization (docs/quant-plan.md).
// The pipeline is quant/planner.h (+ hessian_sensitivity, activation, inter_layer, selection);
// this file parses, calls and prints.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include "quant/activation.h"
#include "quant/inter_layer.h"
#include "quant/model_quant.h"
#include "quant/planner.h"
#include "quant/quantized_eval.h"
#include "quant/selection.h"
#include "src/io/atomic_file.h"
#include "src/io/data_io.h"
#include "src/io/sha256.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

std::vector<int> parse_bits(const std::string& s, const char* flag) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ',')) {
    int b = 0;
    try {
      std::size_t used = 0;
      b = std::stoi(t, &used);
      if (used != t.size()) throw std::invalid_argument(t);
    } catch (...) {
      throw std::invalid_argument(std::string(flag) + ": '" + t + "' is not an integer (expected e.g. 2,3,4,8)");
    }
    try {
      quant::check_bits(b);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(flag) + ": " + e.what());
    }
    if (std::find(out.begin(), out.end(), b) != out.end())
      throw std::invalid_argument(std::string(flag) + ": " + std::to_string(b) + " is listed twice");
    out.push_back(b);
  }
  if (out.empty()) throw std::invalid_argument(std::string(flag) + ": no bit widths given");
  return out;
}

std::vector<std::vector<std::string>> parse_shared(const std::vector<std::string>& groups) {
  std::vector<std::vector<std::string>> out;
  for (const auto& g : groups) {
    std::vector<std::string> grp;
    std::stringstream ss(g);
    std::string t;
    while (std::getline(ss, t, ',')) grp.push_back(t);
    out.push_back(grp);
  }
  return out;
}

// The allocator's infeasible-budget error in the flags of this command.
std::string infeasible_message(const quant::Budget& asked, const quant::InfeasibleBudget& e) {
  auto flag = [](const quant::Budget& b, const char* format) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, b.value);
    return "--" + quant::to_string(b.kind) + " " + buf;
  };
  return "infeasible budget: " + flag(asked, "%.10g") + " is below the smallest feasible budget " +
         flag(e.smallest_feasible(), "%.6g") + " (every layer at its fewest allowed bits)";
}

struct QuantCommon {
  std::string scheme = "symmetric", granularity = "per-channel";
  std::int64_t groups = 1;
  CLI::Option* granularity_opt = nullptr;
  CLI::Option* groups_opt = nullptr;
  void add(CLI::App& app) {
    app.add_option("--scheme", scheme, "symmetric or asymmetric")->check(CLI::IsMember({"symmetric", "asymmetric"}))->capture_default_str();
    granularity_opt = app.add_option("--granularity", granularity, "per-tensor, per-channel or group")
                          ->check(CLI::IsMember({"per-tensor", "per-channel", "group"}))
                          ->capture_default_str();
    groups_opt = app.add_option("--groups", groups, "Groups per layer for group-wise quantization (Q-BERT); implies --granularity group")
                     ->check(in_range(1, 1e6));
  }
  quant::Granularity granularity_value() const {
    if (groups_opt->count() > 0 && granularity_opt->count() == 0) return quant::Granularity::Group;
    const quant::Granularity g = quant::granularity_from_string(granularity);
    if (groups_opt->count() > 0 && g != quant::Granularity::Group)
      throw std::invalid_argument("--groups needs --granularity group (got --granularity " + granularity + ")");
    return g;
  }
};

nlohmann::json eval_json(const EvalResult& r) {
  return {{"loss", r.loss},
          {"accuracy", std::isnan(r.accuracy) ? nlohmann::json(nullptr) : nlohmann::json(r.accuracy)},
          {"samples", r.samples}};
}

// Loads the model and a plan for it: the plan's sha256 must match the file, or the file is a
// checkpoint fine-tuned for the plan (curv train --quant-plan).
quant::Plan read_plan_for(const std::string& plan_path, const std::string& model_path, const Model& m) {
  quant::Plan plan = quant::read_plan(plan_path);
  quant::check_plan_model(plan, plan_path, model_path, &m.meta());
  return plan;
}

// Progress notes of a command: live on a terminal; otherwise kept and printed when the command
// succeeds, so that a failure found only after the work (an unmet --max-drop) is still one line.
class Notes {
 public:
  Notes() : m_live(::isatty(2) != 0) {}
  std::ostream& operator()() { return m_live ? std::cerr : m_kept; }
  void flush() {
    if (!m_live) std::cerr << m_kept.str();
    m_kept.str("");
  }

 private:
  bool m_live;
  std::ostringstream m_kept;
};

}  // namespace

void register_quant(CLI::App& root, int argc, char** argv) {
  auto* q = root.add_subcommand("quant", "HAWQ-style mixed-precision quantization plans");
  q->require_subcommand(1);
  const std::string cmd = command_line(argc, argv);

  // ---------------------------------------------------------------- plan
  {
    struct Opt {
      RunOptions run;
      QuantCommon qc;
      std::string sensitivity = "trace", order = "hessian", bits = "2,3,4,8", out, h5, sensitivities;
      std::optional<double> avg_bits, size_kb, bops, max_drop;
      int pin = 0, act_bits = 8, subsets = 4, candidates = 5;
      double subset_frac = 0.1;
      std::vector<std::string> share;
      std::int64_t trace_probes = 64, trace_sketch = 16, calib_samples = 0;
      double eig_tol = 1e-4, trace_tol = 0.0, percentile = 99.99;
      std::string trace_method = "per-layer", act_quant, act_scheme = "asymmetric", calibration = "minmax", calib_data,
                  select = "omega";
      bool inter_layer = false, measured_blocks = false;
    };
    auto o = std::make_shared<Opt>();
    auto* app = q->add_subcommand("plan", "Sensitivities, Pareto frontier and the optimal bit allocation -> plan.json");
    add_run_options(*app, o->run, false);
    o->qc.add(*app);
    auto* sens_opt =
        app->add_option("--sensitivity", o->sensitivity,
                        "eig (HAWQ-V1: lambda_max/n), eig-bound (lambda_max), trace (HAWQ-V2: Tr/n) or eig-stats (Q-BERT)")
            ->check(CLI::IsMember({"eig", "eig-bound", "trace", "eig-stats"}))
            ->capture_default_str();
    app->add_option("--order", o->order,
                    "hessian (as measured), or a baseline: reverse (rank-reversed), random (permuted by --seed), "
                    "equal (one value for all)")
        ->check(CLI::IsMember({"hessian", "reverse", "random", "equal"}))
        ->capture_default_str();
    app->add_option("--seed", o->run.seed, "Seed of the sensitivity estimators, the Q-BERT subsets and --order random")
        ->check(in_range(0, kMaxSeed))
        ->capture_default_str();
    app->add_option("--sensitivities", o->sensitivities,
                    "Reuse the sensitivities of an earlier --h5 file of this model instead of computing them");
    app->add_option("--bits", o->bits, "Candidate weight bit widths")->capture_default_str();
    auto* b1 = app->add_option("--avg-bits", o->avg_bits, "Budget: average bits per quantized weight (no scales)")
                   ->check(in_range(0, 64));
    auto* b2 = app->add_option("--size-kb", o->size_kb, "Budget: model size in KB (1024 bytes), scales and float32 parts included")
                   ->check(in_range(0, 1e12));
    auto* b3 = app->add_option("--bops", o->bops, "Budget: giga bit-operations per sample (MACs x weight bits x act bits)")
                   ->check(in_range(0, 1e12));
    app->add_option("--pin-first-last", o->pin, "Fix the first and last layer at this many bits (0: free)")
        ->check(in_range(0, 8));
    app->add_option("--share", o->share, "Layers that must share a bit width: NAME,NAME,... (repeatable)");
    app->add_option("--act-bits", o->act_bits, "Activation bits in the BOPs of layers whose activations are not quantized")
        ->check(in_range(1, 32))
        ->capture_default_str();
    app->add_option("--trace-probes", o->trace_probes, "Hutchinson probes at most: per layer (per-layer) or shared (shared)")
        ->check(in_range(1, kMaxProbes))
        ->capture_default_str();
    app->add_option("--trace-method", o->trace_method,
                    "per-layer (one block product per layer and probe) or shared (one product per probe for all "
                    "layers, with a control variate)")
        ->check(CLI::IsMember({"per-layer", "shared"}))
        ->capture_default_str();
    app->add_option("--trace-tol", o->trace_tol, "Stop once every layer's trace has relative standard error <= T (0: all probes)")
        ->check(in_range(0, kMaxTol))
        ->capture_default_str();
    app->add_option("--trace-sketch", o->trace_sketch, "Rank of the shared method's control variate (0: none)")
        ->check(in_range(0, kMaxEigenpairs))
        ->capture_default_str();
    app->add_option("--eig-tol", o->eig_tol, "Relative tolerance of lambda_max (eig, eig-bound, eig-stats)")
        ->check(in_range(kMinTol, kMaxTol))
        ->capture_default_str();
    app->add_option("--subsets", o->subsets, "Random disjoint data subsets (eig-stats)")->check(in_range(2, 1e6))->capture_default_str();
    app->add_option("--subset-frac", o->subset_frac, "Fraction of the samples in each subset (eig-stats)")
        ->check(in_range(1e-9, 1))
        ->capture_default_str();
    app->add_option("--quantize-activations", o->act_quant,
                    "Quantize every layer's input too, choosing its width among these (e.g. 4,8); needs --calib-data");
    app->add_option("--act-scheme", o->act_scheme, "Activation quantizer scheme")
        ->check(CLI::IsMember({"symmetric", "asymmetric"}))
        ->capture_default_str();
    app->add_option("--calibration", o->calibration, "Activation ranges: minmax or percentile")
        ->check(CLI::IsMember({"minmax", "percentile"}))
        ->capture_default_str();
    app->add_option("--percentile", o->percentile, "Upper percentile of --calibration percentile")
        ->check(in_range(50.000001, 100))
        ->capture_default_str();
    app->add_option("--calib-data", o->calib_data, "Calibration data (activation ranges, --select measured, --max-drop)");
    app->add_option("--calib-samples", o->calib_samples, "Use the first N calibration samples; 0 = all")
        ->check(in_range(0, kMaxSamples));
    app->add_flag("--inter-layer", o->inter_layer,
                  "Add the measured terms dW_i^T H_ij dW_j of adjacent layers to the objective (exact chain DP)");
    app->add_flag("--measured-blocks", o->measured_blocks,
                  "Use the measured 1/2 dW_i^T H_ii dW_i of every layer and width as its Omega instead of "
                  "1/2 s_i ||dW_i||^2 (Hessian products, as --inter-layer)");
    app->add_option("--select", o->select, "omega (the predicted optimum) or measured (best calibration loss of --candidates)")
        ->check(CLI::IsMember({"omega", "measured"}))
        ->capture_default_str();
    app->add_option("--candidates", o->candidates, "Frontier points nearest the budget that --select measured evaluates")
        ->check(in_range(1, 1e4))
        ->capture_default_str();
    app->add_option("--max-drop", o->max_drop,
                    "Smallest frontier plan whose calibration accuracy drop is at most X points (bisection)")
        ->check(in_range(0, 100));
    app->add_option("--out", o->out, "Plan file (JSON)")->required();
    app->add_option("--h5", o->h5, "Also write sensitivities and the Pareto frontier to this HDF5 file");
    app->callback([o, cmd, sens_opt, b1, b2, b3, app] {
      std::vector<std::string> inputs = dataset_files(o->run.data), calib_inputs = dataset_files(o->calib_data);
      inputs.insert(inputs.end(), calib_inputs.begin(), calib_inputs.end());
      inputs.insert(inputs.end(), {o->run.model, o->sensitivities});
      check_output_paths(o->h5.empty() ? std::vector<std::string>{o->out} : std::vector<std::string>{o->out, o->h5},
                         inputs);
      auto tc = limit_threads(o->run.threads);
      Notes notes;
      // Consistency of budgets and modes, before any work.
      const int budgets = static_cast<int>(b1->count() + b2->count() + b3->count());
      if (budgets > 1) throw std::invalid_argument("quant plan: give one budget: --avg-bits, --size-kb or --bops");
      if (budgets == 0 && !o->max_drop)
        throw std::invalid_argument("quant plan: give a budget: --avg-bits, --size-kb or --bops (or --max-drop)");
      if (o->max_drop && app->count("--select") && o->select == "measured")
        throw std::invalid_argument("quant plan: --max-drop and --select measured are two ways to choose a plan; give one");
      const bool acts = !o->act_quant.empty();
      if ((acts || o->select == "measured" || o->max_drop) && o->calib_data.empty())
        throw std::invalid_argument(std::string("quant plan: ") +
                                    (acts ? "--quantize-activations" : o->max_drop ? "--max-drop" : "--select measured") +
                                    " needs calibration data: give --calib-data");
      if (o->measured_blocks && o->order != "hessian")
        throw std::invalid_argument("quant plan: --measured-blocks replaces the sensitivities, so --order " + o->order +
                                    " has nothing to reorder");
      if (o->inter_layer && !o->share.empty())
        throw std::invalid_argument("quant plan: --inter-layer cannot be combined with --share");
      if (app->count("--trace-method") + app->count("--trace-tol") + app->count("--trace-sketch") > 0 &&
          o->sensitivity != "trace" && !acts && o->sensitivities.empty())
        throw std::invalid_argument(
            "quant plan: --trace-method, --trace-tol and --trace-sketch apply to --sensitivity trace and "
            "--quantize-activations");

      quant::PlannerOptions po;
      po.candidate_bits = parse_bits(o->bits, "--bits");
      if (acts) po.act_candidate_bits = parse_bits(o->act_quant, "--quantize-activations");
      po.act_scheme = quant::scheme_from_string(o->act_scheme);
      if (o->pin) {
        try {
          quant::check_bits(o->pin);
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument("--pin-first-last: " + std::string(e.what()));
        }
      }
      std::optional<quant::Budget> budget;
      if (o->avg_bits) budget = quant::Budget{quant::BudgetKind::AvgBits, *o->avg_bits};
      if (o->size_kb) budget = quant::Budget{quant::BudgetKind::SizeKB, *o->size_kb};
      if (o->bops) budget = quant::Budget{quant::BudgetKind::GBops, *o->bops};
      // --max-drop alone searches the whole frontier: every layer at 8 bits bounds it.
      po.budget = budget ? *budget : quant::Budget{quant::BudgetKind::AvgBits, 8.0};
      po.spec.scheme = quant::scheme_from_string(o->qc.scheme);
      po.spec.granularity = o->qc.granularity_value();
      po.spec.groups = static_cast<int>(o->qc.groups);
      po.pin_first_last = o->pin;
      po.shared = parse_shared(o->share);
      po.act_bits = o->act_bits;
      po.order = quant::sensitivity_order_from_string(o->order);
      po.order_seed = o->run.seed;
      Dataset d = load_data(o->run);
      std::optional<Dataset> calib;
      if (!o->calib_data.empty()) {
        RunOptions c = o->run;
        c.data = o->calib_data;
        c.samples = o->calib_samples;
        c.offset = 0;
        calib = load_data(c);
      }
      Model m = load_model(o->run, &d);
      // The problem and its feasibility come before any Hessian work.
      std::optional<quant::QuantPlanner> planner;
      try {
        planner.emplace(m, po);
      } catch (const quant::InfeasibleBudget& e) {
        throw std::invalid_argument(infeasible_message(po.budget, e));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(o->run.model + ": " + e.what());  // layers and constraints
      }
      const auto& layers = planner->layers();
      const ObjectiveOptions oo = objective_options(o->run);

      const std::string sha = sha256_file(o->run.model);
      std::vector<quant::Sensitivity> sens;
      quant::SensitivityReport report;
      quant::SensitivityOptions so;
      so.kind = quant::sensitivity_kind_from_string(o->sensitivity);
      so.trace_method = quant::trace_method_from_string(o->trace_method);
      so.trace_probes = o->trace_probes;
      so.trace_tol = o->trace_tol;
      so.trace_sketch = o->trace_sketch;
      so.eig_tol = o->eig_tol;
      so.subsets = o->subsets;
      so.subset_frac = o->subset_frac;
      so.seed = o->run.seed;
      so.objective = oo;
      const bool reused = !o->sensitivities.empty();
      if (reused) {
        std::string kind;
        sens = quant::load_sensitivities(o->sensitivities, layers, sha, kind);
        if (sens_opt->count() > 0 && kind != o->sensitivity)
          throw std::invalid_argument("--sensitivity " + o->sensitivity + " disagrees with " + o->sensitivities +
                                      ", which holds " + kind + " sensitivities");
        o->sensitivity = kind;
        notes() << "quant plan: " << kind << " sensitivities of " << layers.size() << " layers from "
                  << o->sensitivities << "\n";
      } else {
        notes() << "quant plan: " << o->sensitivity << " sensitivity of " << layers.size() << " layers on "
                  << d.size() << " samples\n";
        try {
          sens = quant::layer_sensitivities(m, d, layers, so, &report);
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument("quant plan: " + std::string(e.what()));
        }
        notes() << "quant plan: " << report.products << " curvature products in " << report.seconds << " s\n";
      }
      for (std::size_t i = 0; i < layers.size(); ++i)
        if (sens[i].negative_top_eigenvalue)
          notes() << "quant plan: warning: layer " << layers[i].name
                    << " has a negative top eigenvalue (not at a minimum)\n";

      quant::PlanInputs in;
      nlohmann::json activations;
      if (acts) {
        quant::CalibOptions co;
        co.method = quant::calib_method_from_string(o->calibration);
        co.percentile = o->percentile;
        notes() << "quant plan: activation ranges (" << o->calibration << ") on " << calib->size()
                  << " calibration samples, activation Hessian traces on " << d.size() << " samples\n";
        in.act_ranges = quant::calibrate_activations(m, *calib, layers, co, oo);
        in.act_err = quant::activation_errors(m, *calib, layers, in.act_ranges, po.act_candidate_bits, po.act_scheme, oo);
        quant::SensitivityOptions ao = so;
        ao.kind = quant::SensitivityKind::Trace;
        quant::SensitivityReport arep;
        in.act_sens = quant::activation_sensitivities(m, d, layers, ao, &arep);
        activations = {{"calibration", o->calibration},
                       {"percentile", o->calibration == "percentile" ? nlohmann::json(o->percentile) : nlohmann::json(nullptr)},
                       {"calib_data", o->calib_data},
                       {"calib_samples", calib->size()},
                       {"trace_products", arep.products},
                       {"seconds", arep.seconds}};
      }
      std::int64_t inter_products = 0;
      if (o->inter_layer || o->measured_blocks) {
        std::vector<std::vector<int>> widths;
        for (std::size_t i = 0; i < layers.size(); ++i) widths.push_back(planner->weight_bits(i));
        quant::InterLayerTerms t = quant::inter_layer_terms(m, d, layers, po.spec, widths, oo);
        if (o->inter_layer) in.chain = std::move(t.c);
        if (o->measured_blocks) in.diag = std::move(t.diag);
        inter_products = t.products;
        notes() << "quant plan: measured quadratic terms of " << layers.size() << " layers, " << inter_products
                << " curvature products\n";
      }
      quant::PlanResult r = planner->plan(sens, in);
      quant::Plan plan = r.plan;
      if (o->select == "measured" || o->max_drop) {
        try {
          quant::SelectionResult s =
              o->max_drop ? quant::select_max_drop(*planner, r, m, *calib, *o->max_drop, oo, budget)
                          : quant::select_measured(*planner, r, m, *calib, o->candidates, oo, budget);
          plan = s.plan;
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument(std::string(o->max_drop ? "--max-drop: " : "--select measured: ") + e.what());
        }
        if (!budget) plan.budget.reset();
      }
      plan.activations = activations;
      plan.measurement = {{"trace_method", o->sensitivity == "trace" && !reused ? nlohmann::json(o->trace_method) : nlohmann::json(nullptr)},
                          {"reused", reused},
                          {"products", report.products},
                          {"shared_probes", report.shared_probes},
                          {"fallback_layers", report.fallback_layers},
                          {"inter_layer_products", inter_products},
                          {"measured_blocks", o->measured_blocks},
                          {"seconds", report.seconds},
                          {"samples", d.size()}};
      plan.measured_omega = quant::measured_omega(m, d, plan, oo);
      plan.command = cmd;
      plan.model_path = o->run.model;
      plan.model_sha256 = sha;
      plan.created_utc = quant::utc_timestamp();
      if (!o->h5.empty())
        quant::save_frontier(o->h5, cmd, sha, layers, sens, o->sensitivity, o->order, r.frontier,
                             reused ? nullptr : &report);
      quant::write_plan(plan, o->out);
      nlohmann::json j = quant::plan_to_json(plan);
      j["frontier_points"] = r.frontier.points.size();
      j["frontier_exact"] = r.frontier.exact;
      notes.flush();
      if (o->run.json) return emit_json(o->run, j);
      std::cout << "plan (" << o->sensitivity << ", order " << o->order << ") -> " << o->out << ": avg "
                << plan.totals.avg_bits << " bits, " << plan.totals.size_bytes << " bytes, predicted loss increase "
                << plan.totals.predicted_omega << ", measured 1/2 dW^T H dW " << *plan.measured_omega << "\n";
      for (const auto& l : plan.layers)
        std::cout << "  " << l.name << "  " << l.bits << " bits"
                  << (l.act_bits ? "  act " + std::to_string(l.act_bits) + " bits" : std::string())
                  << "  s=" << l.sensitivity << "  omega=" << l.omega << "\n";
    });
  }

  // ---------------------------------------------------------------- apply
  {
    struct Opt {
      std::string model, plan, out;
      bool json = false;
    };
    auto o = std::make_shared<Opt>();
    auto* app = q->add_subcommand("apply", "Quantize a model by a plan -> checkpoint with integer weights and scales");
    app->add_option("model", o->model, "Model the plan was made for (or a checkpoint fine-tuned for it)")->required();
    app->add_option("--plan", o->plan, "plan.json")->required();
    app->add_option("--out", o->out, "Quantized checkpoint .h5")->required();
    app->add_flag("--json", o->json, "Print one JSON object with the results on stdout");
    app->callback([o] {
      check_output_paths({o->out}, {o->model, o->plan});
      RunOptions ro;
      ro.model = o->model;
      Model m = load_model(ro, nullptr);
      const quant::Plan plan = read_plan_for(o->plan, o->model, m);
      const auto applied = quant::apply_plan(m, plan);
      Model out = quant::with_activation_quantizers(m, plan);
      out.meta()["quantized_by"] = o->plan;
      quant::save_quantized(out, plan, applied, o->out);
      std::cerr << "quant apply: " << applied.size() << " layers, avg " << plan.totals.avg_bits << " bits"
                << (quant::has_activation_quantization(plan) ? ", activations quantized" : "") << " -> " << o->out
                << "\n";
      if (o->json)
        std::cout << nlohmann::json{{"model", o->model},
                                    {"plan", o->plan},
                                    {"out", o->out},
                                    {"layers", applied.size()},
                                    {"avg_bits", plan.totals.avg_bits},
                                    {"size_bytes", plan.totals.size_bytes},
                                    {"bops", plan.totals.bops}}
                         .dump()
                  << std::endl;
    });
  }

  // ---------------------------------------------------------------- eval
  {
    struct Opt {
      RunOptions run;
      QuantCommon qc;
      std::string plan;
      int uniform = 0;
    };
    auto o = std::make_shared<Opt>();
    auto* app = q->add_subcommand("eval", "Loss and accuracy of a model quantized by a plan or uniformly");
    add_run_options(*app, o->run, false);
    o->qc.add(*app);
    auto* p = app->add_option("--plan", o->plan, "plan.json");
    auto* u = app->add_option("--uniform", o->uniform, "Quantize every layer to B bits instead of a plan")->check(in_range(2, 8));
    p->excludes(u);
    app->callback([o] {
      auto tc = limit_threads(o->run.threads);
      if (o->plan.empty() && !o->uniform) throw std::invalid_argument("quant eval: give --plan or --uniform B");
      Dataset d = load_data(o->run);
      Model m = load_model(o->run, &d);
      quant::Plan plan;
      if (!o->plan.empty()) {
        plan = read_plan_for(o->plan, o->run.model, m);
      } else {
        plan = quant::uniform_plan(m, o->uniform, quant::scheme_from_string(o->qc.scheme), o->qc.granularity_value(),
                                   o->qc.groups);
      }
      const EvalResult r = quant::evaluate_quantized(m, d, plan, objective_options(o->run));
      nlohmann::json j = eval_json(r);
      j["size_bytes"] = plan.totals.size_bytes;
      j["avg_bits"] = plan.totals.avg_bits;
      j["bops"] = plan.totals.bops;
      j["activations_quantized"] = quant::has_activation_quantization(plan);
      j["plan"] = o->plan.empty() ? "uniform:" + std::to_string(o->uniform) : o->plan;
      if (o->run.json) return emit_json(o->run, j);
      std::cout << j.dump(2) << std::endl;
    });
  }
}

}  // namespace curv::cli
