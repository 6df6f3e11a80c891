// curv info | eval | bench
#include <cmath>
#include <iostream>
#include <map>
#include <random>

#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/onnx_export.h"
#include "src/core/memory.h"
#include "src/core/ops.h"
#include "src/core/timer.h"
#include "tools/commands.h"

namespace curv::cli {

// ---------------------------------------------------------------- info
void register_info(CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  auto* app = root.add_subcommand("info", "Graph, parameter blocks and counts of a model");
  app->add_option("model", o->model, "Model: an .onnx file or a curv checkpoint .h5")->required();
  app->add_option("--params", o->params_regex, "ONNX initializers whose names (as curv info lists them) match REGEX are trainable parameters");
  app->add_option("--freeze", o->freeze_regex, "ONNX initializers whose names (as curv info lists them) match REGEX are constants");
  app->add_flag("--json", o->json, "Print one JSON object on stdout");
  app->callback([o] {
    Model m = load_model(*o, nullptr);
    nlohmann::json j;
    j["model"] = o->model;
    j["input"] = {{"name", m.values()[m.input()].name}, {"shape", m.input_shape()}};
    nlohmann::json inputs = nlohmann::json::array();
    for (int i : m.inputs()) {
      const Value& v = m.values()[i];
      inputs.push_back({{"name", v.name}, {"shape", v.shape}, {"dtype", v.integer ? "int64" : "float"}});
    }
    j["inputs"] = inputs;
    j["output"] = {{"shape", m.output_shape()}};
    j["params"] = m.num_params();
    j["nodes"] = m.nodes().size();
    std::map<std::string, int> ops;
    for (const auto& n : m.nodes()) ops[n.op->type()]++;
    j["ops"] = ops;
    nlohmann::json blocks = nlohmann::json::array();
    for (const auto& b : m.blocks("layers")) {
      nlohmann::json jb{{"name", b.name}, {"size", b.size}, {"tensors", nlohmann::json::array()}};
      for (int p : b.params) {
        const auto& pi = m.params()[p];
        jb["tensors"].push_back({{"name", pi.name}, {"shape", pi.shape}, {"size", pi.size}});
      }
      blocks.push_back(jb);
    }
    j["blocks"] = blocks;
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : m.meta()) meta[k] = v;
    j["meta"] = meta;
    if (o->json) {
      std::cout << j.dump() << std::endl;
      return;
    }
    std::cout << "model   " << o->model << "\n";
    for (int i : m.inputs()) {
      const Value& v = m.values()[i];
      std::cout << "input   " << v.name << " " << shape_str(with_lead(-1, v.shape)) << " "
                << (v.integer ? "int64" : "float") << "\n";
    }
    std::cout
              << "output  " << shape_str(with_lead(-1, m.output_shape())) << "\n"
              << "nodes   " << m.nodes().size() << " (";
    bool first = true;
    for (const auto& [t, c] : ops) std::cout << (first ? "" : ", ") << t << " x" << c, first = false;
    std::cout << ")\nparams  " << m.num_params() << " in " << m.params().size() << " tensors\n\n";
    for (const auto& b : m.blocks("layers")) {
      std::cout << "  " << b.name << "  " << b.size << "\n";
      for (int p : b.params)
        std::cout << "      " << m.params()[p].name << " " << shape_str(m.params()[p].shape) << "\n";
    }
  });
}

// ---------------------------------------------------------------- eval
void register_eval(CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  auto* app = root.add_subcommand("eval", "Loss and accuracy of a model on data");
  add_run_options(*app, *o, true);
  app->callback([o] {
    auto tc = limit_threads(o->threads);
    Dataset d = load_data(*o);
    Model m = load_model(*o, &d);
    auto opts = objective_options(*o);
    opts.cache_bytes = 0;
    auto obj = Objective::create(m, d, opts);
    Timer t;
    const EvalResult r = obj->evaluate();
    const double s = t.seconds();
    nlohmann::json j{{"loss", r.loss},
                     {"accuracy", std::isnan(r.accuracy) ? nlohmann::json(nullptr) : nlohmann::json(r.accuracy)},
                     {"samples", r.samples},
                     {"labelled", r.labelled},
                     {"seconds", s},
                     {"samples_per_s", r.samples / std::max(s, 1e-9)},
                     {"threads", thread_count()}};
    if (r.per_position) {  // a language model: accuracy is per token
      j["token_accuracy"] = r.accuracy;
      j["perplexity"] = std::exp(r.loss);
      j["tokens"] = r.labelled;
    }
    if (o->json) return emit_json(*o, j);
    std::cout << "loss " << r.loss;
    if (r.per_position)
      std::cout << "  token accuracy " << r.accuracy << "  perplexity " << std::exp(r.loss) << "  tokens "
                << r.labelled;
    else if (!std::isnan(r.accuracy))
      std::cout << "  accuracy " << r.accuracy;
    std::cout << "  samples " << r.samples << "  (" << (long long)(r.samples / std::max(s, 1e-9)) << " samples/s)\n";
  });
}

// ---------------------------------------------------------------- bench
void register_bench(CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  auto block = std::make_shared<std::int64_t>(16);
  auto repeat = std::make_shared<int>(3);
  auto check = std::make_shared<bool>(false);
  auto memory_gb = std::make_shared<double>(0.0);
  auto* app = root.add_subcommand("bench", "Timings and peak memory of loss, gradient and Hessian-vector products (1 and K directions)");
  add_run_options(*app, *o, true);
  app->add_option("--block", *block, "Directions in one block product")->check(in_range(1, kMaxBlock))->capture_default_str();
  app->add_option("--repeat", *repeat, "Repetitions per timing (the best is reported)")->check(in_range(1, 1000))->capture_default_str();
  app->add_option("--memory-gb", *memory_gb,
                  "Cap on the engine's memory (GB; 0: none): kept activations shrink, then fewer micro-batches run at once")
      ->check(in_range(0, 1e6));
  app->add_flag("--check", *check, "Also check one HVP against finite differences of gradients (float64)");
  app->callback([o, block, repeat, check, memory_gb] {
    auto tc = limit_threads(o->threads);
    Dataset d = load_data(*o);
    Model m = load_model(*o, &d);
    ObjectiveOptions opts = objective_options(*o);
    opts.memory_bytes = static_cast<std::size_t>(*memory_gb * 1e9);
    // Freed buffers kept for reuse are resident too: within a budget, at most an eighth of it.
    if (opts.memory_bytes > 0) set_block_pool_limit(std::min(block_pool_limit(), opts.memory_bytes / 8));
    auto obj = Objective::create(m, d, opts);
    const std::int64_t P = obj->num_params();
    // k random directions (the first k columns of one seeded sequence). The block is made only for
    // the block timings, so that it does not count in the memory of the single-direction calls.
    auto directions = [&](std::int64_t k) {
      std::mt19937_64 rng(o->seed + 1);
      std::normal_distribution<double> nd;
      Eigen::MatrixXd M(P, k);
      for (std::int64_t i = 0; i < M.size(); ++i) M.data()[i] = nd(rng);
      return M;
    };
    Eigen::MatrixXd V, Y;
    Eigen::VectorXd g;
    // Peak resident memory (VmHWM, restarted before each measurement) and the peak of the engine's
    // own allocations, per measured call; the best time of `repeat` runs.
    nlohmann::json rss = nlohmann::json::object(), engine = nlohmann::json::object();
    // Restart the peaks (returns the engine's bytes held now), and record them under `key`.
    auto start_peaks = [] {
      reset_peak_resident();
      reset_tracked_peak();
      return tracked_bytes();
    };
    auto record_peaks = [&](const char* key, std::size_t live) {
      rss[key] = peak_resident_bytes();
      engine[key] = tracked_peak_bytes() - std::min(live, tracked_peak_bytes());
    };
    auto report = [&](const char* what, const char* key, double s) {
      std::cerr << "bench: " << what << " " << s << " s, peak RSS " << rss[key].get<std::size_t>() / 1e6 << " MB\n";
    };
    // `fresh`: the calls start from an empty primal cache (each clears it first); it is emptied
    // before the peaks restart too, so that the passes the previous measurement kept (the loss
    // keeps its passes) count neither in the resident baseline nor as engine bytes held before.
    auto best = [&](const char* what, const char* key, bool fresh, auto&& f) {
      double b = 1e300;
      if (fresh) obj->clear_cache();
      const std::size_t live = start_peaks();
      for (int r = 0; r < *repeat; ++r) {
        Timer t;
        f();
        b = std::min(b, t.seconds());
      }
      record_peaks(key, live);
      report(what, key, b);
      return b;
    };
    if (!*check) {
      // The Objective holds the parameters in its own precision and reads only the Model's graph
      // from here on (objective.h); the Model's float64 values are needed again only by --check.
      for (size_t i = 0; i < m.params().size(); ++i) m.param(static_cast<int>(i)) = Tensor<double>();
    }
    reset_peak_resident();  // returns what loading freed
    const std::size_t base_rss = resident_bytes();
    std::cerr << "bench: " << m.num_params() << " parameters, " << d.size() << " samples, micro-batch "
              << obj->micro_batch() << ", " << thread_count() << " threads, " << o->precision << "\n";
    const double loss_s = best("loss", "loss", true, [&] { obj->clear_cache(); obj->value(); });
    const double grad_s = best("gradient", "grad", true, [&] { obj->clear_cache(); obj->gradient(g); });
    // The gradient's result is the gradient's output, not the products': freed before their
    // timings, so that their peaks count their own direction and result (P doubles each) but not it
    // (it was still held through the first HVP's measurement, 188 MB of ResNet-50's 1.39 GB).
    g = Eigen::VectorXd();
    V = directions(1);  // made after the gradient timings, which do not use it
    const double first_s = best("hvp (with primal pass)", "hvp_first", true,
                                [&] { obj->clear_cache(); obj->product(Curvature::Hessian, V, Y); });
    obj->gradient(g);  // primal pass cached (when it fits the budget)
    g = Eigen::VectorXd();
    const double hvp_s = best("hvp", "hvp", false, [&] { obj->product(Curvature::Hessian, V, Y); });
    const double ggn_s = best("ggn-vp", "ggn", false, [&] { obj->product(Curvature::GGN, V, Y); });
    V = directions(*block);
    // The block and the K single products, timed as one run each (both sides equally long
    // measurements: the best of short runs is biased low on a noisy machine), in three groups of
    // `repeat` runs, block / singles / block, the block's time the best of both of its groups: a
    // drift of the host's speed during the seconds they take on a large model then cannot favour
    // one side (timed block then singles, the ratio drifted by 5-12% on models where the two run
    // the very same passes), and each side is still timed back to back with itself, as estimators
    // call it (alternating run by run made a small model's block 1.5x slower than its singles: each
    // side's buffers evicted the other's). The first run of the first group of each side starts from
    // reset memory statistics and gives its peak memory.
    // Single products go one direction at a time through a P x 1 matrix held outside the loop:
    // converting V.col(j) for each call allocated and faulted in a fresh P-sized matrix (and Y
    // another), which made 16 single products up to twice as slow as a block on ResNet-18 for
    // reasons outside the engine. Both touched here, before the timing: their first writes would
    // otherwise fault them in inside the first repetition (1.7 GB on a 108M-parameter MLP).
    Eigen::MatrixXd v1 = Eigen::MatrixXd::Zero(P, 1), y1 = Eigen::MatrixXd::Zero(P, 1);
    auto run_block = [&] { obj->product(Curvature::Hessian, V, Y); };
    auto run_singles = [&] {
      for (std::int64_t j = 0; j < *block; ++j) {
        v1 = V.col(j);
        obj->product(Curvature::Hessian, v1, y1);
      }
    };
    double blk_s = 1e300, singles_s = 1e300;
    for (int group = 0; group < 3; ++group) {
      const bool blk = group != 1;
      const char* key = blk ? "hvp_block" : "hvp_singles";
      for (int r = 0; r < *repeat; ++r) {
        const bool first = r == 0 && group < 2;
        const std::size_t live = first ? start_peaks() : 0;
        Timer t;
        blk ? run_block() : run_singles();
        double& b = blk ? blk_s : singles_s;
        b = std::min(b, t.seconds());
        if (first) record_peaks(key, live);
      }
    }
    report("hvp block", "hvp_block", blk_s);
    report("hvp singles", "hvp_singles", singles_s);
    nlohmann::json j{{"samples", d.size()},
                     {"params", P},
                     {"threads", thread_count()},
                     {"precision", o->precision},
                     {"conv_backend", conv_backend()},
                     {"gemm_backend", gemm_backend()},
                     {"loss_s", loss_s},
                     {"grad_s", grad_s},
                     {"hvp_s", hvp_s},
                     {"hvp_first_s", first_s},
                     {"ggn_s", ggn_s},
                     {"hvp_block_s", blk_s},
                     {"block", *block},
                     {"hvp_over_grad", hvp_s / grad_s},
                     {"hvp_singles_s", singles_s},
                     {"block_over_singles", blk_s / singles_s},
                     {"block_over_uncached_singles", blk_s / (double(*block) * first_s)},
                     {"cache_bytes", obj->cache_bytes_used()},
                     {"cache_bytes_estimate", obj->cache_bytes_estimate()},
                     {"micro_batch", obj->micro_batch()},
                     {"base_rss", base_rss},
                     {"peak_rss", rss},
                     {"engine_peak_bytes", engine}};
    if (*check) {
      // Central differences of exact gradients along a unit direction, in float64.
      Dataset dc = d.subset(0, std::min<std::int64_t>(d.size(), 32));
      ObjectiveOptions oc = objective_options(*o);
      oc.precision = Precision::Float64;
      auto o64 = Objective::create(m, dc, oc);
      Eigen::VectorXd v = V.col(0).normalized(), hv, gp, gm;
      Eigen::MatrixXd Hv;
      o64->product(Curvature::Hessian, v, Hv);
      const auto w0 = o64->params();
      // Small step: piecewise-linear activations (ReLU, max-pool) must not cross a kink within it.
      const double eps = 1e-6;
      auto shifted = w0;
      for (std::int64_t i = 0; i < P; ++i) shifted[i] = w0[i] + eps * v[i];
      o64->set_params(shifted);
      o64->gradient(gp);
      for (std::int64_t i = 0; i < P; ++i) shifted[i] = w0[i] - eps * v[i];
      o64->set_params(shifted);
      o64->gradient(gm);
      const Eigen::VectorXd fd = (gp - gm) / (2 * eps);
      const double err = (Hv.col(0) - fd).norm() / fd.norm();
      j["hvp_check"] = {{"samples", dc.size()}, {"rel_err", err}, {"vHv", v.dot(Hv.col(0))}};
      std::cerr << "bench: HVP vs finite differences of gradients (float64, " << dc.size()
                << " samples): relative error " << err << "\n";
    }
    if (o->json) return emit_json(*o, j);
    std::cout << j.dump(2) << std::endl;
  });
}

// ---------------------------------------------------------------- convert / export
namespace {
nlohmann::json conversion_json(const std::string& in, const std::string& out, const Model& m) {
  return {{"model", in}, {"out", out}, {"params", m.num_params()}, {"tensors", m.params().size()},
          {"nodes", m.nodes().size()}};
}
}  // namespace

void register_convert(CLI::App& root) {
  auto in = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* app = root.add_subcommand("convert", "ONNX model to a curv HDF5 checkpoint");
  app->add_option("model", *in, "Input .onnx")->required();
  app->add_option("out", *out, "Output checkpoint .h5")->required();
  app->add_flag("--json", *json, "Print one JSON object with the results on stdout");
  app->callback([in, out, json] {
    check_output_paths({*out}, {*in});
    RunOptions o;
    o.model = *in;
    Model m = load_model(o, nullptr);
    save_checkpoint(m, *out);
    std::cerr << "convert: " << m.num_params() << " parameters -> " << *out << "\n";
    if (*json) std::cout << conversion_json(*in, *out, m).dump() << std::endl;
  });
  auto ein = std::make_shared<std::string>(), eout = std::make_shared<std::string>();
  auto ejson = std::make_shared<bool>(false);
  auto* ex = root.add_subcommand("export", "curv model (checkpoint or ONNX) to ONNX (opset 17, float32)");
  ex->add_option("model", *ein, "Input .h5 checkpoint")->required();
  ex->add_option("out", *eout, "Output .onnx")->required();
  ex->add_flag("--json", *ejson, "Print one JSON object with the results on stdout");
  ex->callback([ein, eout, ejson] {
    check_output_paths({*eout}, {*ein});
    RunOptions o;
    o.model = *ein;
    Model m = load_model(o, nullptr);
    export_onnx(m, *eout);
    std::cerr << "export: " << m.num_params() << " parameters -> " << *eout << "\n";
    if (*ejson) std::cout << conversion_json(*ein, *eout, m).dump() << std::endl;
  });
}

}  // namespace curv::cli
