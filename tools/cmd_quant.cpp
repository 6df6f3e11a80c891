// curv quant plan | apply | eval: HAWQ-style mixed-precision quantization (docs/quant-plan.md).
#include <cmath>
#include <iostream>
#include <sstream>

#include "quant/bit_allocator.h"
#include "quant/model_quant.h"
#include "quant/plan.h"
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
      b = std::stoi(t);
    } catch (...) {
      throw std::invalid_argument("--bits: '" + t + "' is not an integer (expected e.g. 2,3,4,8)");
    }
    quant::check_bits(b);
    out.push_back(b);
  }
  if (out.empty()) throw std::invalid_argument("--bits: no bit widths given");
  return out;
}

struct QuantCommon {
  std::string scheme = "symmetric", granularity = "per-channel";
  std::int64_t groups = 1;
  void add(CLI::App& app) {
    app.add_option("--scheme", scheme, "symmetric or asymmetric")->check(CLI::IsMember({"symmetric", "asymmetric"}))->capture_default_str();
    app.add_option("--granularity", granularity, "per-tensor, per-channel or group")
        ->check(CLI::IsMember({"per-tensor", "per-channel", "group"}))->capture_default_str();
    app.add_option("--groups", groups, "Groups per layer for --granularity group (Q-BERT)")->check(CLI::PositiveNumber);
  }
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
        ->capture_default_str();
    app->add_option("--sensitivities", o->sensitivities,
                    "Reuse the sensitivities of an earlier --h5 file of this model instead of computing them");
    app->add_option("--bits", o->bits, "Candidate bit widths")->capture_default_str();
    auto* b1 = app->add_option("--avg-bits", o->avg_bits, "Budget: average bits per quantized weight");
    auto* b2 = app->add_option("--size-kb", o->size_kb, "Budget: model size in KB (1024 bytes), float32 parts included");
    auto* b3 = app->add_option("--bops", o->bops, "Budget: giga bit-operations per sample (MACs x weight bits x act bits)");
    b1->excludes(b2)->excludes(b3);
    b2->excludes(b3);
    app->add_option("--pin-first-last", o->pin, "Fix the first and last layer at this many bits (0: free)");
    app->add_option("--share", o->share, "Layers that must share a bit width: NAME,NAME,... (repeatable)");
    app->add_option("--act-bits", o->act_bits, "Activation bits for BOPs")->capture_default_str();
    app->add_option("--trace-probes", o->trace_probes, "Hutchinson probes per layer (trace)")->capture_default_str();
    app->add_option("--eig-tol", o->eig_tol, "Relative tolerance of lambda_max (eig, eig-stats)")->capture_default_str();
    app->add_option("--subsets", o->subsets, "Data subsets (eig-stats)")->capture_default_str();
    app->add_option("--out", o->out, "Plan file (JSON)")->required();
    app->add_option("--h5", o->h5, "Also write sensitivities and the Pareto frontier to this HDF5 file");
    app->callback([o, cmd, sens_opt] {
      std::vector<std::string> inputs = dataset_files(o->run.data);
      inputs.insert(inputs.end(), {o->run.model, o->sensitivities});
      check_output_paths(o->h5.empty() ? std::vector<std::string>{o->out} : std::vector<std::string>{o->out, o->h5},
                         inputs);
      auto tc = limit_threads(o->run.threads);
      if (!o->avg_bits && !o->size_kb && !o->bops) throw std::invalid_argument("quant plan: give a budget: --avg-bits, --size-kb or --bops");
      const std::vector<int> cand = parse_bits(o->bits);
      Dataset d = load_data(o->run);
      Model m = load_model(o->run, &d);
      const auto layers = quant::quantizable_layers(m);
      if (layers.empty()) throw std::invalid_argument(o->run.model + ": no Conv/Gemm/MatMul weights to quantize");
      quant::SensitivityOptions so;
      so.kind = quant::sensitivity_kind_from_string(o->sensitivity);
      so.trace_probes = o->trace_probes;
      so.eig_tol = o->eig_tol;
      so.subsets = o->subsets;
      so.seed = o->run.seed;
      so.objective = objective_options(o->run);
      quant::Budget budget;
      if (o->avg_bits) budget = {quant::BudgetKind::AvgBits, *o->avg_bits};
      if (o->size_kb) budget = {quant::BudgetKind::SizeKB, *o->size_kb};
      if (o->bops) budget = {quant::BudgetKind::GBops, *o->bops};
      quant::QuantSpec spec;
      spec.scheme = quant::scheme_from_string(o->qc.scheme);
      spec.granularity = quant::granularity_from_string(o->qc.granularity);
      spec.groups = static_cast<int>(o->qc.groups);
      // The allocation problem with every Omega still zero: feasibility does not depend on the
      // sensitivities, so an impossible budget or constraint fails before the Hessian work.
      quant::AllocProblem prob;
      prob.act_bits = o->act_bits;
      prob.extra_bits = 8 * quant::unquantized_bytes(m, layers);
      for (size_t i = 0; i < layers.size(); ++i) {
        const auto& l = layers[i];
        quant::AllocLayer al;
        al.name = l.name;
        al.numel = l.numel;
        al.macs = l.macs;
        al.overhead_bits = quant::scale_overhead_bits(spec.scheme, quant::num_groups(spec, l.shape[0]));
        for (int b : cand) al.options.push_back({b, 0.0});
        if (o->pin && (i == 0 || i + 1 == layers.size())) {
          quant::check_bits(o->pin);
          prob.pinned[l.name] = o->pin;
          if (std::find(cand.begin(), cand.end(), o->pin) == cand.end()) al.options.push_back({o->pin, 0.0});
        }
        prob.layers.push_back(al);
      }
      for (const auto& g : o->share) {
        std::vector<std::string> grp;
        std::stringstream ss(g);
        std::string t;
        while (std::getline(ss, t, ',')) grp.push_back(t);
        prob.shared.push_back(grp);
      }
      quant::BitAllocator(prob).solve(budget);

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
        sens = quant::layer_sensitivities(m, d, layers, so);
      }
      // Omega_i(b) = s'_i e_i(b) with s' the ordered sensitivities (the measured ones for
      // "hessian"); the measured s_i e_i(b) is kept to report what the curvature model predicts.
      const quant::SensitivityOrder order = quant::sensitivity_order_from_string(o->order);
      std::vector<double> measured;
      for (const auto& s : sens) measured.push_back(s.value);
      const std::vector<double> used = quant::reorder_sensitivities(measured, order, o->run.seed);
      const auto err = quant::quantization_errors(m, layers, spec, prob);
      std::vector<quant::PlanLayerInfo> info;
      quant::set_omegas(prob, err, used);
      for (size_t i = 0; i < layers.size(); ++i) {
        const auto& l = layers[i];
        quant::PlanLayerInfo pi;
        pi.scheme = spec.scheme;
        pi.granularity = spec.granularity;
        pi.groups = quant::num_groups(spec, l.shape[0]);
        pi.sensitivity = used[i];
        pi.negative_top_eigenvalue = sens[i].negative_top_eigenvalue;
        info.push_back(pi);
        if (sens[i].negative_top_eigenvalue)
          std::cerr << "quant plan: warning: layer " << l.name << " has a negative top eigenvalue (not at a minimum)\n";
      }
      quant::BitAllocator alloc(prob);
      const quant::Allocation a = alloc.solve(budget);
      const quant::ParetoFrontier front = alloc.pareto_frontier(quant::CostKind::Size);
      quant::Plan plan = quant::make_plan(alloc.problem(), a, info);
      plan.command = cmd;
      plan.model_path = o->run.model;
      plan.model_sha256 = sha;
      plan.sensitivity_kind = o->sensitivity;
      plan.order = o->order;
      if (order == quant::SensitivityOrder::Random) plan.order_seed = static_cast<std::int64_t>(o->run.seed);
      plan.measured_omega = quant::predicted_omega(prob, err, measured, a.bits);
      plan.budget = budget;
      plan.created_utc = quant::utc_timestamp();
      plan.candidate_bits = cand;
      if (!o->h5.empty()) quant::save_frontier(o->h5, cmd, sha, layers, sens, o->sensitivity, o->order, front);
      quant::write_plan(plan, o->out);
      nlohmann::json j = quant::plan_to_json(plan);
      j["frontier_points"] = front.points.size();
      j["frontier_exact"] = front.exact;
      if (o->run.json) return emit_json(o->run, j);
      std::cout << "plan (" << o->sensitivity << ", order " << o->order << ") -> " << o->out << ": avg " << plan.totals.avg_bits << " bits, " << plan.totals.size_bytes
                << " bytes, predicted loss increase " << plan.totals.predicted_omega << "\n";
      for (const auto& l : plan.layers)
        std::cout << "  " << l.name << "  " << l.bits << " bits  s=" << l.sensitivity << "  omega=" << l.omega << "\n";
    });
  }

  // ---------------------------------------------------------------- apply
  {
    auto model = std::make_shared<std::string>(), plan_path = std::make_shared<std::string>(),
         out = std::make_shared<std::string>();
    auto* app = q->add_subcommand("apply", "Quantize a model by a plan -> checkpoint with integer weights and scales");
    app->add_option("model", *model, "Model the plan was made for")->required();
    app->add_option("--plan", *plan_path, "plan.json")->required();
    app->add_option("--out", *out, "Quantized checkpoint .h5")->required();
    app->callback([model, plan_path, out] {
      check_output_paths({*out}, {*model, *plan_path});
      const quant::Plan plan = quant::read_plan(*plan_path);
      quant::check_plan_model(plan, *plan_path, *model);
      RunOptions o;
      o.model = *model;
      Model m = load_model(o, nullptr);
      const auto applied = quant::apply_plan(m, plan);
      m.meta()["quantized_by"] = *plan_path;
      quant::save_quantized(m, plan, applied, *out);
      std::cerr << "quant apply: " << applied.size() << " layers, avg " << plan.totals.avg_bits << " bits -> " << *out << "\n";
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
    auto* u = app->add_option("--uniform", o->uniform, "Quantize every layer to B bits instead of a plan");
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
      quant::apply_plan(m, plan);
      auto opts = objective_options(o->run);
      opts.cache_bytes = 0;
      auto obj = Objective::create(m, d, opts);
      const EvalResult r = obj->evaluate();
      nlohmann::json j{{"loss", r.loss},
                       {"accuracy", std::isnan(r.accuracy) ? nlohmann::json(nullptr) : nlohmann::json(r.accuracy)},
                       {"samples", r.samples},
                       {"size_bytes", plan.totals.size_bytes},
                       {"avg_bits", plan.totals.avg_bits},
                       {"bops", plan.totals.bops},
                       {"plan", o->plan.empty() ? "uniform:" + std::to_string(o->uniform) : o->plan}};
      if (o->run.json) return emit_json(o->run, j);
      std::cout << j.dump(2) << std::endl;
    });
  }
}

}  // namespace curv::cli
