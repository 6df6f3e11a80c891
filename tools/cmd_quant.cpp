// curv quant plan | apply | eval: HAWQ-style mixed-precision quantization (docs/quant-plan.md).
// The pipeline is quant/planner.h; this file parses, calls and prints.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include "quant/model_quant.h"
#include "quant/planner.h"
#include "quant/quantized_eval.h"
#include "src/io/atomic_file.h"
#include "src/io/data_io.h"
#include "src/io/sha256.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

std::vector<int> parse_bits(const std::string& s) {
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
      throw std::invalid_argument("--bits: '" + t + "' is not an integer (expected e.g. 2,3,4,8)");
    }
    try {
      quant::check_bits(b);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("--bits: " + std::string(e.what()));
    }
    out.push_back(b);
  }
  if (out.empty()) throw std::invalid_argument("--bits: no bit widths given");
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
  void add(CLI::App& app) {
    app.add_option("--scheme", scheme, "symmetric or asymmetric")->check(CLI::IsMember({"symmetric", "asymmetric"}))->capture_default_str();
    app.add_option("--granularity", granularity, "per-tensor, per-channel or group")
        ->check(CLI::IsMember({"per-tensor", "per-channel", "group"}))->capture_default_str();
    app.add_option("--groups", groups, "Groups per layer for --granularity group (Q-BERT)")->check(in_range(1, 1e6));
  }
};

nlohmann::json eval_json(const EvalResult& r) {
  return {{"loss", r.loss},
          {"accuracy", std::isnan(r.accuracy) ? nlohmann::json(nullptr) : nlohmann::json(r.accuracy)},
          {"samples", r.samples}};
}

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
      std::optional<double> avg_bits, size_kb, bops;
      int pin = 0, act_bits = 8, subsets = 4;
      std::vector<std::string> share;
      std::int64_t trace_probes = 64;
      double eig_tol = 1e-4;
    };
    auto o = std::make_shared<Opt>();
    auto* app = q->add_subcommand("plan", "Sensitivities, Pareto frontier and the optimal bit allocation -> plan.json");
    add_run_options(*app, o->run, false);
    o->qc.add(*app);
    auto* sens_opt = app->add_option("--sensitivity", o->sensitivity, "eig (HAWQ-V1), trace (HAWQ-V2) or eig-stats (Q-BERT)")
        ->check(CLI::IsMember({"eig", "trace", "eig-stats"}))->capture_default_str();
    app->add_option("--order", o->order,
                    "hessian (as measured), or a baseline: reverse (rank-reversed) or random (permuted by --seed)")
        ->check(CLI::IsMember({"hessian", "reverse", "random"}))->capture_default_str();
    app->add_option("--seed", o->run.seed, "Seed of the sensitivity estimators and of --order random")
        ->check(in_range(0, kMaxSeed))
        ->capture_default_str();
    app->add_option("--sensitivities", o->sensitivities,
                    "Reuse the sensitivities of an earlier --h5 file of this model instead of computing them");
    app->add_option("--bits", o->bits, "Candidate bit widths")->capture_default_str();
    auto* b1 = app->add_option("--avg-bits", o->avg_bits, "Budget: average bits per quantized weight")->check(in_range(0, 64));
    auto* b2 = app->add_option("--size-kb", o->size_kb, "Budget: model size in KB (1024 bytes), float32 parts included")
                   ->check(in_range(0, 1e12));
    auto* b3 = app->add_option("--bops", o->bops, "Budget: giga bit-operations per sample (MACs x weight bits x act bits)")
                   ->check(in_range(0, 1e12));
    b1->excludes(b2)->excludes(b3);
    b2->excludes(b3);
    app->add_option("--pin-first-last", o->pin, "Fix the first and last layer at this many bits (0: free)")
        ->check(in_range(0, 8));
    app->add_option("--share", o->share, "Layers that must share a bit width: NAME,NAME,... (repeatable)");
    app->add_option("--act-bits", o->act_bits, "Activation bits for BOPs")->check(in_range(1, 32))->capture_default_str();
    app->add_option("--trace-probes", o->trace_probes, "Hutchinson probes per layer (trace)")
        ->check(in_range(1, kMaxProbes))
        ->capture_default_str();
    app->add_option("--eig-tol", o->eig_tol, "Relative tolerance of lambda_max (eig, eig-stats)")
        ->check(in_range(kMinTol, kMaxTol))
        ->capture_default_str();
    app->add_option("--subsets", o->subsets, "Data subsets (eig-stats)")->check(in_range(2, 1e6))->capture_default_str();
    app->add_option("--out", o->out, "Plan file (JSON)")->required();
    app->add_option("--h5", o->h5, "Also write sensitivities and the Pareto frontier to this HDF5 file");
    app->callback([o, cmd, sens_opt] {
      std::vector<std::string> inputs = dataset_files(o->run.data);
      inputs.insert(inputs.end(), {o->run.model, o->sensitivities});
      check_output_paths(o->h5.empty() ? std::vector<std::string>{o->out} : std::vector<std::string>{o->out, o->h5},
                         inputs);
      auto tc = limit_threads(o->run.threads);
      if (!o->avg_bits && !o->size_kb && !o->bops) throw std::invalid_argument("quant plan: give a budget: --avg-bits, --size-kb or --bops");
      quant::PlannerOptions po;
      po.candidate_bits = parse_bits(o->bits);
      if (o->pin) {
        try {
          quant::check_bits(o->pin);
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument("--pin-first-last: " + std::string(e.what()));
        }
      }
      if (o->avg_bits) po.budget = {quant::BudgetKind::AvgBits, *o->avg_bits};
      if (o->size_kb) po.budget = {quant::BudgetKind::SizeKB, *o->size_kb};
      if (o->bops) po.budget = {quant::BudgetKind::GBops, *o->bops};
      po.spec.scheme = quant::scheme_from_string(o->qc.scheme);
      po.spec.granularity = quant::granularity_from_string(o->qc.granularity);
      po.spec.groups = static_cast<int>(o->qc.groups);
      po.pin_first_last = o->pin;
      po.shared = parse_shared(o->share);
      po.act_bits = o->act_bits;
      po.order = quant::sensitivity_order_from_string(o->order);
      po.order_seed = o->run.seed;
      Dataset d = load_data(o->run);
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

      const std::string sha = sha256_file(o->run.model);
      std::vector<quant::Sensitivity> sens;
      if (!o->sensitivities.empty()) {
        std::string kind;
        sens = quant::load_sensitivities(o->sensitivities, layers, sha, kind);
        if (sens_opt->count() > 0 && kind != o->sensitivity)
          throw std::invalid_argument("--sensitivity " + o->sensitivity + " disagrees with " + o->sensitivities +
                                      ", which holds " + kind + " sensitivities");
        o->sensitivity = kind;
        std::cerr << "quant plan: " << kind << " sensitivities of " << layers.size() << " layers from "
                  << o->sensitivities << "\n";
      } else {
        std::cerr << "quant plan: " << o->sensitivity << " sensitivity of " << layers.size() << " layers on "
                  << d.size() << " samples\n";
        quant::SensitivityOptions so;
        so.kind = quant::sensitivity_kind_from_string(o->sensitivity);
        so.trace_probes = o->trace_probes;
        so.eig_tol = o->eig_tol;
        so.subsets = o->subsets;
        so.seed = o->run.seed;
        so.objective = objective_options(o->run);
        sens = quant::layer_sensitivities(m, d, layers, so);
      }
      for (std::size_t i = 0; i < layers.size(); ++i)
        if (sens[i].negative_top_eigenvalue)
          std::cerr << "quant plan: warning: layer " << layers[i].name
                    << " has a negative top eigenvalue (not at a minimum)\n";
      quant::PlanResult r = planner->plan(sens);
      quant::Plan& plan = r.plan;
      plan.command = cmd;
      plan.model_path = o->run.model;
      plan.model_sha256 = sha;
      plan.created_utc = quant::utc_timestamp();
      if (!o->h5.empty()) quant::save_frontier(o->h5, cmd, sha, layers, sens, o->sensitivity, o->order, r.frontier);
      quant::write_plan(plan, o->out);
      nlohmann::json j = quant::plan_to_json(plan);
      j["frontier_points"] = r.frontier.points.size();
      j["frontier_exact"] = r.frontier.exact;
      if (o->run.json) return emit_json(o->run, j);
      std::cout << "plan (" << o->sensitivity << ", order " << o->order << ") -> " << o->out << ": avg " << plan.totals.avg_bits << " bits, " << plan.totals.size_bytes
                << " bytes, predicted loss increase " << plan.totals.predicted_omega << "\n";
      for (const auto& l : plan.layers)
        std::cout << "  " << l.name << "  " << l.bits << " bits  s=" << l.sensitivity << "  omega=" << l.omega << "\n";
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
    app->add_option("model", o->model, "Model the plan was made for")->required();
    app->add_option("--plan", o->plan, "plan.json")->required();
    app->add_option("--out", o->out, "Quantized checkpoint .h5")->required();
    app->add_flag("--json", o->json, "Print one JSON object with the results on stdout");
    app->callback([o] {
      check_output_paths({o->out}, {o->model, o->plan});
      const quant::Plan plan = quant::read_plan(o->plan);
      quant::check_plan_model(plan, o->plan, o->model);
      RunOptions ro;
      ro.model = o->model;
      Model m = load_model(ro, nullptr);
      const auto applied = quant::apply_plan(m, plan);
      m.meta()["quantized_by"] = o->plan;
      quant::save_quantized(m, plan, applied, o->out);
      std::cerr << "quant apply: " << applied.size() << " layers, avg " << plan.totals.avg_bits << " bits -> " << o->out << "\n";
      if (o->json)
        std::cout << nlohmann::json{{"model", o->model},
                                    {"plan", o->plan},
                                    {"out", o->out},
                                    {"layers", applied.size()},
                                    {"avg_bits", plan.totals.avg_bits},
                                    {"size_bytes", plan.totals.size_bytes}}
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
        plan = quant::read_plan(o->plan);
        quant::check_plan_model(plan, o->plan, o->run.model);
      } else {
        plan = quant::uniform_plan(m, o->uniform, quant::scheme_from_string(o->qc.scheme),
                                   quant::granularity_from_string(o->qc.granularity), o->qc.groups);
      }
      const EvalResult r = quant::evaluate_quantized(m, d, plan, objective_options(o->run));
      nlohmann::json j = eval_json(r);
      j["size_bytes"] = plan.totals.size_bytes;
      j["avg_bits"] = plan.totals.avg_bits;
      j["bops"] = plan.totals.bops;
      j["plan"] = o->plan.empty() ? "uniform:" + std::to_string(o->uniform) : o->plan;
      if (o->run.json) return emit_json(o->run, j);
      std::cout << j.dump(2) << std::endl;
    });
  }
}

}  // namespace curv::cli
