// curv train: mini-batch or full-batch training with SGD/Adam/AdamW or the Hessian-diagonal
// optimizers AdaHessian and Sophia (src/train/diagonal_optimizer.h), optionally sharpness-aware
// (SAM, ASAM, GNR, GAM), logging curvature over training into the checkpoint's history/ group
// (curvature/curvature_probe_monitor.h).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "curvature/curvature_probe_monitor.h"
#include "curvature/hessian_free_step_rule.h"
#include "curvature/kfac_step_rule.h"
#include "quant/activation.h"
#include "quant/fake_quant_weights.h"
#include "quant/plan.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/data_io.h"
#include "src/core/timer.h"
#include "src/train/trainer.h"
#include "tools/commands.h"

namespace curv::cli {

namespace {

struct TrainCli {
  RunOptions run;
  std::string test_data;
  std::int64_t test_samples = 0;
  std::int64_t epochs = 1;
  std::string batch_size = "128";
  std::string optimizer = "sgd";
  double lr = 0.01, momentum = 0, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool nesterov = false, no_shuffle = false;
  std::string schedule = "constant";
  double warmup = 0;  // epochs
  std::int64_t lr_step_epochs = 30;
  double lr_gamma = 0.1;
  double sam = 0;
  bool asam = false;
  double asam_eta = 0.01;
  double gnr = -1;
  double bn_momentum = 0.1;
  // AdaHessian / Sophia (0 for hessian_every: the optimizer's default, 1 or 10) and GAM.
  std::int64_t hessian_every = 0;
  double hessian_power = 1;
  std::string hessian_estimator = "hutchinson";
  bool no_spatial_average = false;
  double sophia_gamma = 0.01, sophia_rho = 1;
  double gam = 0, gam_alpha = 1;
  std::string log_curvature;
  std::int64_t curvature_samples = 1000, curvature_top = 0, curvature_probes = 10;
  double curvature_tol = 1e-3;
  std::int64_t save_every = 0;
  std::string quant_plan;
  int quant_stages = 1;
  std::string out;
  // Second-order optimizers (kfac, hf, bhf; curvature/kfac_step_rule.h, hessian_free_step_rule.h).
  std::string kfac_type = "mc";
  double stat_decay = 0.95, kl_clip = 1e-3;
  std::int64_t inv_every = 10, factor_every = 1;
  double damping = 0;  // not given: 1e-3 for kfac, 1 for hf/bhf
  std::string damping_adapt = "auto";  // auto: off for kfac, on for hf/bhf
  std::string hf_curvature = "ggn";
  std::int64_t cg_max_iters = 50, curvature_batch = 0;
  double cg_rtol = 1e-4, cg_decay = 0.95;
  bool no_backtrack = false, line_search = false, restricted_blocks = false;
  std::string blocks = "layers";
};

bool second_order(const std::string& optimizer) { return optimizer == "kfac" || optimizer == "hf" || optimizer == "bhf"; }

// The run's settings, stored as JSON in the checkpoint: f(key, option, field) for each. A resumed
// run takes every one that is not given again on its command line.
template <class F>
void for_each_setting(TrainCli& o, F f) {
  f("epochs", "--epochs", o.epochs);
  f("batch_size", "--batch-size", o.batch_size);
  f("optimizer", "--optimizer", o.optimizer);
  f("lr", "--lr", o.lr);
  f("momentum", "--momentum", o.momentum);
  f("nesterov", "--nesterov", o.nesterov);
  f("weight_decay", "--weight-decay", o.weight_decay);
  f("beta1", "--beta1", o.beta1);
  f("beta2", "--beta2", o.beta2);
  f("eps", "--eps", o.eps);
  f("schedule", "--schedule", o.schedule);
  f("warmup", "--warmup", o.warmup);
  f("lr_step_epochs", "--lr-step-epochs", o.lr_step_epochs);
  f("lr_gamma", "--lr-gamma", o.lr_gamma);
  f("sam", "--sam", o.sam);
  f("asam", "--asam", o.asam);
  f("asam_eta", "--asam-eta", o.asam_eta);
  f("gnr", "--gnr", o.gnr);
  f("bn_momentum", "--bn-momentum", o.bn_momentum);
  f("hessian_every", "--hessian-every", o.hessian_every);
  f("hessian_power", "--hessian-power", o.hessian_power);
  f("hessian_estimator", "--hessian-estimator", o.hessian_estimator);
  f("no_spatial_average", "--no-spatial-average", o.no_spatial_average);
  f("sophia_gamma", "--sophia-gamma", o.sophia_gamma);
  f("sophia_rho", "--sophia-rho", o.sophia_rho);
  f("gam", "--gam", o.gam);
  f("gam_alpha", "--gam-alpha", o.gam_alpha);
  f("no_shuffle", "--no-shuffle", o.no_shuffle);
  f("seed", "--seed", o.run.seed);
  f("relabel", "--relabel", o.run.relabel);
  f("micro_batch", "--micro-batch", o.run.micro_batch);
  f("precision", "--precision", o.run.precision);
  f("log_curvature", "--log-curvature", o.log_curvature);
  f("curvature_samples", "--curvature-samples", o.curvature_samples);
  f("curvature_top", "--curvature-top", o.curvature_top);
  f("curvature_probes", "--curvature-probes", o.curvature_probes);
  f("curvature_tol", "--curvature-tol", o.curvature_tol);
  f("save_every", "--save-every", o.save_every);
  f("kfac_type", "--kfac-type", o.kfac_type);
  f("stat_decay", "--stat-decay", o.stat_decay);
  f("inv_every", "--inv-every", o.inv_every);
  f("factor_every", "--factor-every", o.factor_every);
  f("kl_clip", "--kl-clip", o.kl_clip);
  f("damping", "--damping", o.damping);
  f("damping_adapt", "--damping-adapt", o.damping_adapt);
  f("hf_curvature", "--hf-curvature", o.hf_curvature);
  f("cg_max_iters", "--cg-max-iters", o.cg_max_iters);
  f("cg_rtol", "--cg-rtol", o.cg_rtol);
  f("cg_decay", "--cg-decay", o.cg_decay);
  f("curvature_batch", "--curvature-batch", o.curvature_batch);
  f("no_backtrack", "--no-backtrack", o.no_backtrack);
  f("line_search", "--line-search", o.line_search);
  f("blocks", "--blocks", o.blocks);
  f("restricted_blocks", "--restricted-blocks", o.restricted_blocks);
}

void add_second_order_options(CLI::App& app, TrainCli& o) {
  app.add_option("--kfac-type", o.kfac_type, "kfac: factor statistics, mc (sampled labels), exact or empirical")
      ->check(CLI::IsMember({"mc", "exact", "empirical"}))
      ->capture_default_str();
  app.add_option("--stat-decay", o.stat_decay, "kfac: running-average decay of the factors")
      ->check(in_range(0, 1))
      ->capture_default_str();
  app.add_option("--inv-every", o.inv_every, "kfac: refresh the factor eigendecompositions every N steps")
      ->check(in_range(-1e9, 1e9))
      ->capture_default_str();
  app.add_option("--factor-every", o.factor_every,
                 "kfac: mini-batch factor statistics every N steps (kfac-pytorch's factor_update_steps)")
      ->check(in_range(-1e9, 1e9))
      ->capture_default_str();
  app.add_option("--kl-clip", o.kl_clip, "kfac: KL clipping of the preconditioned step (0: off)")
      ->check(in_range(0, 1e6))
      ->capture_default_str();
  app.add_option("--damping", o.damping, "kfac/hf/bhf: Tikhonov damping lambda (default 1e-3 for kfac, 1 for hf/bhf)")
      ->check(in_range(-1e12, 1e12));
  app.add_option("--damping-adapt", o.damping_adapt,
                 "Levenberg-Marquardt damping from the reduction ratio: on, off or auto (kfac off, hf/bhf on)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str();
  app.add_option("--hf-curvature", o.hf_curvature, "hf/bhf: CG on the ggn or the hessian")
      ->check(CLI::IsMember({"ggn", "hessian"}))
      ->capture_default_str();
  app.add_option("--cg-max-iters", o.cg_max_iters, "hf/bhf: CG iteration cap per step")
      ->check(in_range(-1e9, 1e9))
      ->capture_default_str();
  app.add_option("--cg-rtol", o.cg_rtol, "hf/bhf: CG stops at ||r|| <= RTOL ||b||")->check(in_range(0, 1))->capture_default_str();
  app.add_option("--cg-decay", o.cg_decay, "hf/bhf: warm start CG from DECAY times the last step's solution")
      ->check(in_range(0, 1))
      ->capture_default_str();
  app.add_option("--curvature-batch", o.curvature_batch,
                 "hf/bhf: curvature products on the first N samples of each mini-batch (0: all)")
      ->check(in_range(0, kMaxSamples))
      ->capture_default_str();
  app.add_flag("--no-backtrack", o.no_backtrack, "hf/bhf: take the last CG iterate (no CG backtracking)");
  app.add_flag("--line-search", o.line_search,
               "hf/bhf: Armijo line search on the step's rate (0.8^k, rejects the step when none decreases the loss)");
  app.add_option("--blocks", o.blocks, "bhf: 'layers' or groups of layer names, e.g. fc1+fc2,fc3")->capture_default_str();
  app.add_flag("--restricted-blocks", o.restricted_blocks,
               "bhf: one product per block on its own parameters (tangents from the block on) instead of one pass "
               "with a column per block; same matrices, different rounding");
}

// The second-order step rule of --optimizer kfac|hf|bhf (null for the first-order optimizers).
std::unique_ptr<StepRule> make_step_rule(const TrainCli& o, const Model& model, const CLI::App& app) {
  if (!second_order(o.optimizer)) return nullptr;
  const bool given = app.count("--damping") > 0;
  const bool adapt = o.damping_adapt == "on" || (o.damping_adapt == "auto" && o.optimizer != "kfac");
  if (o.optimizer == "kfac") {
    KfacStepOptions k;
    k.type = parse_kfac_type(o.kfac_type);
    k.stat_decay = o.stat_decay;
    k.inv_every = o.inv_every;
    k.factor_every = o.factor_every;
    k.damping = given ? o.damping : 1e-3;
    k.adapt_damping = adapt;
    k.kl_clip = o.kl_clip;
    k.momentum = o.momentum;
    k.weight_decay = o.weight_decay;
    k.seed = o.run.seed;
    std::string notes;
    auto r = std::make_unique<KfacStepRule>(model, k, &notes);
    if (!notes.empty()) std::cerr << notes << "\n";
    return r;
  }
  HessianFreeOptions h;
  h.curvature = parse_curvature(o.hf_curvature);
  h.blocks = o.optimizer == "bhf" ? o.blocks : "";
  if (o.optimizer == "bhf" && h.blocks.empty()) throw std::invalid_argument("bhf: --blocks is empty");
  h.damping = given ? o.damping : 1.0;
  h.adapt_damping = adapt;
  h.max_iters = o.cg_max_iters;
  h.rtol = o.cg_rtol;
  h.cg_decay = o.cg_decay;
  h.curvature_batch = o.curvature_batch;
  h.backtrack = !o.no_backtrack;
  h.line_search = o.line_search;
  h.restricted_blocks = o.restricted_blocks;
  h.weight_decay = o.weight_decay;
  return std::make_unique<HessianFreeStepRule>(model, h);
}

nlohmann::json config_json(TrainCli& o) {
  nlohmann::json j;
  for_each_setting(o, [&](const char* k, const char*, const auto& v) { j[k] = v; });
  j["data"] = o.run.data;
  j["test_data"] = o.test_data;
  j["model"] = o.run.arch.empty() ? o.run.model : "arch:" + o.run.arch;
  return j;
}

// Options not given on this command line take the checkpoint's values.
void inherit(TrainCli& o, const CLI::App& app, const nlohmann::json& cfg) {
  for_each_setting(o, [&](const char* key, const char* flag, auto& v) {
    if (app.count(flag) == 0 && cfg.contains(key)) v = cfg.at(key).get<std::decay_t<decltype(v)>>();
  });
}

Trainer* g_trainer = nullptr;
extern "C" void on_train_signal(int) {
  if (g_trainer) g_trainer->request_stop();
}

std::string epoch_path(const std::string& out, std::int64_t epoch) {
  std::filesystem::path p(out);
  const std::string ext = p.has_extension() ? p.extension().string() : ".h5";
  char buf[32];
  std::snprintf(buf, sizeof buf, ".epoch%03lld", static_cast<long long>(epoch));
  return (p.parent_path() / (p.stem().string() + buf + ext)).string();
}

nlohmann::json curvature_json(const CurvatureRecord& r) {
  return {{"step", r.step},       {"epoch", r.epoch},
          {"loss", r.loss},       {"lambda_max", r.lambda_max},
          {"lambda_max_residual", r.lambda_max_residual},
          {"trace", r.trace},     {"trace_stderr", r.trace_stderr},
          {"grad_overlap", r.grad_overlap}, {"top_values", r.top_values},
          {"hvps", r.hvps},       {"seconds", r.seconds}};
}

}  // namespace

void register_train(CLI::App& root, int argc, char** argv) {
  auto o = std::make_shared<TrainCli>();
  auto* app = root.add_subcommand(
      "train", "Train a model (SGD/Adam/AdamW, AdaHessian, Sophia; SAM/ASAM/GNR, GAM), logging curvature");
  add_run_options(*app, o->run, true);
  app->add_option("--test-data", o->test_data, "Test data, evaluated at the end of every epoch");
  app->add_option("--test-samples", o->test_samples, "Use the first N test samples; 0 = all")
      ->check(in_range(0, kMaxSamples));
  app->add_option("--epochs", o->epochs, "Total epochs (a resumed run continues up to this)")
      ->check(in_range(1, 1e6))
      ->capture_default_str();
  app->add_option("--batch-size", o->batch_size, "Samples per step, or 'full' for full-batch gradient descent")
      ->capture_default_str();
  app->add_option("--optimizer", o->optimizer,
                  "sgd, adam, adamw; adahessian (Yao et al.) or sophia (Liu et al., SophiaG), which take "
                  "--beta1/--beta2/--eps with their papers' defaults (0.9/0.999/1e-4 and 0.965/0.99/1e-12) "
                  "unless given; or the second-order kfac (K-FAC), hf (Hessian-free), bhf (block-diagonal HF)")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "adahessian", "sophia", "kfac", "hf", "bhf"}))
      ->capture_default_str();
  app->add_option("--lr", o->lr, "Base learning rate")->check(in_range(0, 1e6))->capture_default_str();
  app->add_option("--momentum", o->momentum, "SGD momentum")->check(in_range(0, 1))->capture_default_str();
  app->add_flag("--nesterov", o->nesterov, "Nesterov momentum (SGD)");
  app->add_option("--weight-decay", o->weight_decay, "L2 (sgd, adam) or decoupled (adamw) weight decay")
      ->check(in_range(0, 1e6))
      ->capture_default_str();
  app->add_option("--beta1", o->beta1, "Adam beta1")->check(in_range(0, 1))->capture_default_str();
  app->add_option("--beta2", o->beta2, "Adam beta2")->check(in_range(0, 1))->capture_default_str();
  app->add_option("--eps", o->eps, "Adam epsilon")->check(in_range(0, 1))->capture_default_str();
  app->add_option("--schedule", o->schedule, "constant, step or cosine")
      ->check(CLI::IsMember({"constant", "step", "cosine"}))
      ->capture_default_str();
  app->add_option("--warmup", o->warmup, "Linear warm-up length in epochs (fractions allowed)")
      ->check(in_range(0, 1e6))
      ->capture_default_str();
  app->add_option("--lr-step-epochs", o->lr_step_epochs, "step schedule: decay every this many epochs")
      ->check(in_range(1, 1e6))
      ->capture_default_str();
  app->add_option("--lr-gamma", o->lr_gamma, "step schedule: decay factor")->check(in_range(0, 1e6))->capture_default_str();
  app->add_option("--sam", o->sam, "Sharpness-aware minimization with radius RHO (Foret et al.)")->check(in_range(0, 1e6));
  app->add_flag("--asam", o->asam, "Adaptive SAM: scale the ascent by T = |w| + eta (Kwon et al.; needs --sam)");
  app->add_option("--asam-eta", o->asam_eta, "ASAM's eta")->check(in_range(0, 1e6))->capture_default_str();
  app->add_option("--gnr", o->gnr,
                  "Gradient-norm regularization: step with (1-ALPHA) g(w) + ALPHA g(w + RHO g/|g|) (needs --sam)")
      ->check(in_range(0, 1));
  app->add_option("--bn-momentum", o->bn_momentum, "BatchNorm running-statistics momentum (PyTorch convention)")
      ->check(in_range(0, 1))
      ->capture_default_str();
  app->add_flag("--no-shuffle", o->no_shuffle, "Visit samples in data order every epoch");
  app->add_option("--hessian-every", o->hessian_every,
                  "adahessian/sophia: refresh the Hessian diagonal every K steps (default 1 for adahessian, 10 for "
                  "sophia)")
      ->check(in_range(1, 1e9));
  app->add_option("--hessian-power", o->hessian_power, "adahessian: Hessian power k in [0, 1]")
      ->check(in_range(0, 1))
      ->capture_default_str();
  app->add_option("--hessian-estimator", o->hessian_estimator,
                  "sophia: hutchinson (z . Hz) or gnb (Gauss-Newton-Bartlett, labels sampled from the softmax)")
      ->check(CLI::IsMember({"hutchinson", "gnb"}))
      ->capture_default_str();
  app->add_flag("--no-spatial-average", o->no_spatial_average,
                "adahessian: do not average the diagonal over convolution kernels");
  app->add_option("--sophia-gamma", o->sophia_gamma, "sophia: gamma in clip(m / max(gamma h, eps), rho)")
      ->check(in_range(1e-12, 1e12))
      ->capture_default_str();
  app->add_option("--sophia-rho", o->sophia_rho, "sophia: clip threshold rho")
      ->check(in_range(1e-12, 1e12))
      ->capture_default_str();
  app->add_option("--gam", o->gam,
                  "Gradient-norm-aware minimization (Zhang et al. 2023) with radius RHO: adds ALPHA RHO "
                  "H(w_a) g_a / |g_a| at w_a = w + RHO Hg/|Hg| (exact Hessian products; combines with --sam)")
      ->check(in_range(0, 1e6));
  app->add_option("--gam-alpha", o->gam_alpha, "GAM's penalty weight alpha")->check(in_range(1e-12, 1e6))->capture_default_str();
  app->add_option("--log-curvature", o->log_curvature,
                  "Measure lambda_max, trace and gradient overlap every EVERY[:steps|epochs] (default epochs)");
  app->add_option("--curvature-samples", o->curvature_samples, "Training samples of the fixed curvature subset")
      ->check(in_range(1, kMaxSamples))
      ->capture_default_str();
  app->add_option("--curvature-top", o->curvature_top, "Top eigenpairs for the overlap (0: number of classes)")
      ->check(in_range(0, kMaxEigenpairs));
  app->add_option("--curvature-probes", o->curvature_probes, "Hutchinson probes per measurement")
      ->check(in_range(0, kMaxProbes))
      ->capture_default_str();
  app->add_option("--curvature-tol", o->curvature_tol, "Relative tolerance of the eigenpairs")
      ->check(in_range(kMinTol, kMaxTol))
      ->capture_default_str();
  app->add_option("--save-every", o->save_every, "Also keep OUT-stem.epochNNN.h5 every N epochs")
      ->check(in_range(0, 1e6));
  app->add_option("--quant-plan", o->quant_plan,
                  "Quantization-aware fine-tuning for this plan (curv quant plan): fake-quantized weights and planned "
                  "activations, straight-through gradients");
  app->add_option("--quant-stages", o->quant_stages,
                  "HAWQ-V1's block-wise fine-tuning: quantize the plan's fine_tune_order in S stages over the "
                  "epochs (stage s quantizes its first (s+1)/S)")
      ->check(in_range(1, 1e4))
      ->capture_default_str();
  add_second_order_options(*app, *o);
  app->add_option("--out", o->out, "Output checkpoint .h5")->required();
  const std::string cmd = command_line(argc, argv);
  app->callback([o, app, cmd] {
    // Fails now, not after hours of training, if the output cannot be written.
    std::vector<std::string> inputs = dataset_files(o->run.data), test_inputs = dataset_files(o->test_data);
    inputs.insert(inputs.end(), test_inputs.begin(), test_inputs.end());
    inputs.push_back(o->run.model);
    if (!o->quant_plan.empty()) inputs.push_back(o->quant_plan);
    check_output_paths({o->out}, inputs);
    auto tc = limit_threads(o->run.threads);
    // Continue from a curv checkpoint's training state when it has one.
    std::optional<TrainState> resume;
    if (o->run.arch.empty() && !o->run.model.empty() && std::filesystem::path(o->run.model).extension() == ".h5") {
      resume = load_train_state(o->run.model);  // clear error if it is not a checkpoint
      if (resume) {
        try {
          inherit(*o, *app, nlohmann::json::parse(resume->config));
        } catch (const nlohmann::json::exception& e) {
          throw std::runtime_error(o->run.model + ": corrupt '/train' config (" + std::string(e.what()) + ")");
        }
      }
    }
    if (o->run.arch == "resnet20" || o->run.arch == "resnet20-noskip") o->run.arch += "-bn";  // trained with BatchNorm
    if ((o->asam || o->gnr >= 0) && !(o->sam > 0))
      throw std::invalid_argument("--asam and --gnr need --sam RHO > 0");
    if (o->asam && o->gnr >= 0) throw std::invalid_argument("--asam and --gnr exclude each other");
    if (app->count("--gam") && !(o->gam > 0))
      throw std::invalid_argument("--gam: rho must be > 0 (got " + std::to_string(o->gam) + ")");
    const DiagonalKind diag = diagonal_kind(o->optimizer);
    if (diag == DiagonalKind::None) {
      for (const char* flag : {"--hessian-every", "--hessian-power", "--hessian-estimator", "--no-spatial-average",
                               "--sophia-gamma", "--sophia-rho"})
        if (app->count(flag)) throw std::invalid_argument(std::string(flag) + " applies to --optimizer adahessian or sophia");
    } else if (!resume) {
      // The papers' defaults where the Adam-shared options are not given.
      const bool ada = diag == DiagonalKind::AdaHessian;
      if (!app->count("--beta1")) o->beta1 = ada ? 0.9 : 0.965;
      if (!app->count("--beta2")) o->beta2 = ada ? 0.999 : 0.99;
      if (!app->count("--eps")) o->eps = ada ? 1e-4 : 1e-12;
      if (o->hessian_every == 0) o->hessian_every = ada ? 1 : 10;
    }
    if (diag == DiagonalKind::AdaHessian && o->hessian_estimator != "hutchinson")
      throw std::invalid_argument("--hessian-estimator gnb is Sophia's; adahessian uses hutchinson");
    if (o->momentum > 0 && diag != DiagonalKind::None) throw std::invalid_argument("--momentum applies to sgd (use --beta1)");
    if (app->count("--sam") && !(o->sam > 0))
      throw std::invalid_argument("--sam: rho must be > 0 (got " + std::to_string(o->sam) + ")");

    TrainOptions to;
    to.epochs = o->epochs;
    if (o->batch_size == "full") {
      to.batch_size = 0;
    } else {
      try {
        std::size_t used = 0;
        to.batch_size = std::stoll(o->batch_size, &used);
        if (used != o->batch_size.size() || to.batch_size <= 0 || to.batch_size > kMaxSamples)
          throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw std::invalid_argument("--batch-size: expected an integer in [1, 1e12] or 'full', got '" + o->batch_size +
                                    "'");
      }
    }
    to.seed = o->run.seed;
    to.shuffle = !o->no_shuffle;
    if (!second_order(o->optimizer))
      to.optimizer.kind = diagonal_kind(o->optimizer) == DiagonalKind::None ? parse_optimizer(o->optimizer)
                                                                             : OptimizerKind::Adam;
    to.optimizer.momentum = o->momentum;
    to.optimizer.nesterov = o->nesterov;
    to.optimizer.weight_decay = o->weight_decay;
    to.optimizer.beta1 = o->beta1;
    to.optimizer.beta2 = o->beta2;
    to.optimizer.eps = o->eps;
    to.schedule.kind = parse_schedule(o->schedule);
    to.schedule.lr = o->lr;
    to.schedule.step_epochs = o->lr_step_epochs;
    to.schedule.warmup_epochs = o->warmup;
    to.schedule.gamma = o->lr_gamma;
    to.sharpness.kind = o->sam > 0 ? (o->asam ? SharpnessKind::Asam : o->gnr >= 0 ? SharpnessKind::Gnr : SharpnessKind::Sam)
                                   : SharpnessKind::None;
    to.sharpness.rho = o->sam;
    to.sharpness.eta = o->asam_eta;
    to.sharpness.alpha = o->gnr >= 0 ? o->gnr : 0.5;
    to.sharpness.gam_rho = o->gam;
    to.sharpness.gam_alpha = o->gam_alpha;
    if (diag != DiagonalKind::None) {
      to.optimizer.kind = OptimizerKind::Adam;  // unused: the diagonal optimizer steps
      to.diagonal.kind = diag;
      to.diagonal.beta1 = o->beta1;
      to.diagonal.beta2 = o->beta2;
      to.diagonal.eps = o->eps;
      to.diagonal.weight_decay = o->weight_decay;
      to.diagonal.hessian_every = std::max<std::int64_t>(o->hessian_every, 1);
      to.diagonal.hessian_power = o->hessian_power;
      to.diagonal.spatial_average = !o->no_spatial_average;
      to.diagonal.gamma = o->sophia_gamma;
      to.diagonal.clip = o->sophia_rho;
      to.diagonal.estimator = parse_diagonal_estimator(o->hessian_estimator);
      to.diagonal.seed = o->run.seed;
      validate(to.diagonal);
    }
    to.bn_momentum = o->bn_momentum;
    to.objective = objective_options(o->run);
    to.config = config_json(*o).dump();
    if (!std::isfinite(o->lr) || o->lr <= 0)
      throw std::invalid_argument("--lr must be finite and > 0 (got " + std::to_string(o->lr) + ")");

    std::int64_t every = 0;
    bool per_epoch = true;
    if (!o->log_curvature.empty()) {
      const auto colon = o->log_curvature.find(':');
      const std::string num = o->log_curvature.substr(0, colon);
      const std::string unit = colon == std::string::npos ? "epochs" : o->log_curvature.substr(colon + 1);
      try {
        std::size_t used = 0;
        every = std::stoll(num, &used);
        if (used != num.size() || every <= 0 || every > 1e9) throw std::invalid_argument("");
      } catch (const std::exception&) {
        every = -1;
      }
      if (every <= 0 || (unit != "steps" && unit != "epochs"))
        throw std::invalid_argument("--log-curvature: expected EVERY[:steps|epochs] with EVERY in [1, 1e9], got '" +
                                    o->log_curvature + "'");
      per_epoch = unit == "epochs";
    }

    Dataset train = load_data(o->run);
    std::optional<Dataset> test;
    if (!o->test_data.empty()) {
      RunOptions t = o->run;
      t.data = o->test_data;
      t.samples = o->test_samples;
      t.offset = 0;
      test = load_data(t);
    }
    Model model = load_model(o->run, &train);
    model.meta()["trained_by"] = cmd;
    // Quantization-aware training: weights through the plan's quantizers (straight-through),
    // activations through FakeQuantize nodes; the checkpoint keeps the graph without them and the
    // latent weights, marked as fine-tuned for the plan's model so that quant apply / eval accept it.
    Model train_model = model;
    std::shared_ptr<quant::WeightFakeQuantizer> staged;
    std::vector<std::string> stage_order;
    if (o->quant_stages > 1 && o->quant_plan.empty()) throw std::invalid_argument("--quant-stages needs --quant-plan");
    if (!o->quant_plan.empty()) {
      if (!o->run.arch.empty()) throw std::invalid_argument("--quant-plan needs the plan's MODEL, not --arch");
      const quant::Plan plan = quant::read_plan(o->quant_plan);
      quant::check_plan_model(plan, o->quant_plan, o->run.model, &model.meta());
      auto wq = std::make_shared<quant::WeightFakeQuantizer>(model, plan);
      to.weight_transform = [wq](std::vector<double>& w) { wq->apply(w); };
      train_model = quant::with_activation_quantizers(model, plan);
      if (o->quant_stages > 1) {
        if (plan.fine_tune_order.empty())
          throw std::invalid_argument("--quant-stages: " + o->quant_plan +
                                      " has no fine_tune_order (plans with lambda_max sensitivities have one)");
        if (o->quant_stages > o->epochs || o->quant_stages > static_cast<int>(plan.layers.size()))
          throw std::invalid_argument("--quant-stages " + std::to_string(o->quant_stages) +
                                      " exceeds the epochs or the plan's layers");
        staged = wq;
        stage_order = plan.fine_tune_order;
      }
      model.meta()[quant::kFineTunedForKey] = plan.model_sha256;
      model.meta()["quant_plan"] = o->quant_plan;
    }
    Trainer trainer(train_model, train, test ? &*test : nullptr, to);
    // Staged (block-wise) fine-tuning: stage s covers epochs [s E / S, (s+1) E / S).
    auto set_stage = [&](std::int64_t epochs_done) {
      if (!staged) return;
      const int s = static_cast<int>(std::min<std::int64_t>(o->quant_stages - 1, epochs_done * o->quant_stages / o->epochs));
      staged->set_active(quant::WeightFakeQuantizer::stage_layers(stage_order, s, o->quant_stages));
      std::cerr << "train: quantization stage " << s + 1 << "/" << o->quant_stages << "\n";
    };
    // kfac, hf, bhf: validated before any data pass (bad options exit with status 2).
    std::unique_ptr<StepRule> rule = make_step_rule(*o, train_model, *app);
    if (rule) trainer.set_step_rule(rule.get());
    if (resume) trainer.restore(*resume);
    set_stage(trainer.history().epochs.size());

    // Curvature on a fixed subset of the training data, at the current weights (BatchNorm in inference mode).
    std::optional<CurvatureProbeMonitor> monitor;
    if (every > 0) {
      CurvatureProbeOptions po;
      po.top = o->curvature_top;  // 0: the number of classes
      po.eig_tol = o->curvature_tol;
      po.trace_probes = o->curvature_probes;
      po.seed = o->run.seed;
      monitor.emplace(train.subset(0, std::min(o->curvature_samples, train.size())), objective_options(o->run), po);
      trainer.set_curvature_monitor(&*monitor, every, per_epoch);
      trainer.on_curvature = [](const CurvatureRecord& r) {
        std::fprintf(stderr,
                     "curvature @ step %lld: lambda_max %.4g (residual %.2g, 2/lr %.4g), trace %.4g +- %.2g, "
                     "gradient in top-%zu %.3f, %lld HVPs, %.1f s\n",
                     (long long)r.step, r.lambda_max, r.lambda_max_residual, 2.0 / r.lr, r.trace, r.trace_stderr,
                     r.top_values.size(), r.grad_overlap, (long long)r.hvps, r.seconds);
      };
    }
    // The checkpoint: the trainer's weights and running statistics in the original graph (the
    // activation quantizers hold no parameters or constants, so both orders agree).
    auto saved_model = [&model](Trainer& t) -> const Model& {
      const Model& e = t.eval_model();
      model.set_flat_params(e.flat_params());
      for (int i = 0; i < model.num_constants(); ++i) model.constant(i) = e.constant(i);
      return model;
    };
    std::unique_ptr<Progress> bar;
    trainer.on_step = [&](const StepInfo& s) {
      if (s.batch == 1)
        bar = std::make_unique<Progress>("epoch " + std::to_string(s.epoch) + "/" + std::to_string(to.epochs),
                                         s.batches);
      char note[160];
      if (std::isnan(s.accuracy))
        std::snprintf(note, sizeof note, "loss %.4f  %.0f samples/s", s.loss, s.samples_per_second);
      else
        std::snprintf(note, sizeof note, "loss %.4f  acc %.2f%%  %.0f samples/s", s.loss, 100 * s.accuracy,
                      s.samples_per_second);
      bar->update(s.batch, note);
    };
    trainer.on_epoch_end = [&](Trainer& t) {
      const EpochRecord& r = t.history().epochs.back();
      if (staged && r.epoch < to.epochs) set_stage(r.epoch);
      char note[200];
      int n = std::snprintf(note, sizeof note, "train loss %.4f", r.train_loss);
      if (!std::isnan(r.train_accuracy)) n += std::snprintf(note + n, sizeof note - n, " acc %.2f%%", 100 * r.train_accuracy);
      if (!std::isnan(r.test_loss)) n += std::snprintf(note + n, sizeof note - n, ", test loss %.4f", r.test_loss);
      if (!std::isnan(r.test_accuracy))
        n += std::snprintf(note + n, sizeof note - n, " acc %.2f%%", 100 * r.test_accuracy);
      std::snprintf(note + n, sizeof note - n, ", %.1f s", r.seconds);
      if (bar) bar->finish(note);
      if (o->save_every > 0 && r.epoch % o->save_every == 0 && r.epoch < to.epochs) {
        const TrainState st = t.state();
        save_checkpoint(saved_model(t), epoch_path(o->out, r.epoch), &st);
      }
    };

    g_trainer = &trainer;
    std::signal(SIGINT, on_train_signal);
    std::signal(SIGTERM, on_train_signal);
    Timer timer;
    const bool done = trainer.run();
    g_trainer = nullptr;
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    if (!done) {
      std::cerr << "curv: train: interrupted at step " << trainer.step() << "; nothing written to " << o->out
                << (o->save_every > 0 ? " (resume from the last .epochNNN.h5 checkpoint)" : "") << "\n";
      std::exit(130);
    }
    const TrainState st = trainer.state();
    save_checkpoint(saved_model(trainer), o->out, &st);

    const auto& h = trainer.history();
    nlohmann::json j;
    j["epochs"] = st.epoch;
    j["steps"] = st.step;
    j["params"] = model.num_params();
    j["seconds"] = timer.seconds();
    j["out"] = o->out;
    j["optimizer"] = o->optimizer;
    j["sharpness"] = sharpness_name(to.sharpness.kind);
    if (!h.epochs.empty()) {
      const auto& e = h.epochs.back();
      j["train_loss"] = e.train_loss;
      j["train_accuracy"] = e.train_accuracy;
      j["test_loss"] = e.test_loss;
      j["test_accuracy"] = e.test_accuracy;
      j["samples_per_second"] = e.samples_per_second;
      if (!e.optimizer.empty()) j["optimizer_stats"] = e.optimizer;
    }
    if (!h.curvature.empty()) j["curvature"] = curvature_json(h.curvature.back());
    if (!h.optimizer.empty()) j["optimizer_last_step"] = h.optimizer.back().values;  // kfac, hf, bhf, adahessian, sophia
    if (o->run.json) return emit_json(o->run, j);
    std::cerr << "train: " << st.epoch << " epochs, " << st.step << " steps in " << timer.seconds() << " s -> "
              << o->out << "\n";
  });
}

}  // namespace curv::cli
