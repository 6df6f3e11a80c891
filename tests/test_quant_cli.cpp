// `curv quant` and `curv train --quant-plan` end to end: activation plans evaluated and applied
// alike, quantization-aware fine-tuning whose checkpoint quant eval / apply accept, measured
// selection, and the bad-input contract (one line, exit 2, no output file) for plans of another
// model, activation plans without calibration data, unmet --max-drop, and inconsistent budgets.
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/cli_run.h"

namespace fs = std::filesystem;

namespace {

using curv_test::check_bad;
using curv_test::curv;
using curv_test::Run;
using curv_test::tmpdir;

const std::string kModel = std::string(CURV_SOURCE_DIR) + "/data/fmnist_cnn.onnx";
const std::string kMlp = std::string(CURV_SOURCE_DIR) + "/data/fixtures/mlp.onnx";
const std::string kTrain = " --data fashion-mnist:train --samples 64";

nlohmann::json run_json(const std::string& args) {
  const Run r = curv(args + " --json");
  INFO("curv ", args, "\nstderr: ", r.err);
  REQUIRE(r.status == 0);
  return nlohmann::json::parse(r.out);
}

}  // namespace

TEST_CASE("quant CLI: an activation plan evaluates the same through quant eval and the applied checkpoint") {
  const fs::path plan = tmpdir() / "act.json", q = tmpdir() / "act.h5";
  const auto j = run_json("quant plan " + kModel + kTrain + " --trace-probes 4 --bits 4,8 --bops 0.05 "
                          "--quantize-activations 4,8 --calib-data fashion-mnist:train --calib-samples 128 --out " +
                          plan.string());
  CHECK(j["totals"]["bops"].get<double>() <= 0.05e9 * (1 + 1e-9));
  bool some = false;
  for (const auto& l : j["layers"]) some = some || l.value("act_bits", 0) > 0;
  CHECK(some);
  CHECK(j["activations"]["calibration"] == "minmax");
  CHECK(j.contains("measured_omega"));
  const auto e = run_json("quant eval " + kModel + " --data fashion-mnist:test --samples 200 --plan " + plan.string());
  CHECK(e["activations_quantized"] == true);
  run_json("quant apply " + kModel + " --plan " + plan.string() + " --out " + q.string());
  const auto a = run_json("eval " + q.string() + " --data fashion-mnist:test --samples 200");
  CHECK(a["loss"] == e["loss"]);
}

TEST_CASE("quant CLI: curv train --quant-plan fine-tunes a checkpoint that quant eval and apply accept") {
  const fs::path plan = tmpdir() / "ft.json", ckpt = tmpdir() / "ft.h5", q = tmpdir() / "ftq.h5";
  run_json("quant plan " + kModel + kTrain + " --trace-probes 4 --bits 2 --avg-bits 2 --out " + plan.string());
  const auto before = run_json("quant eval " + kModel + " --data fashion-mnist:test --samples 300 --plan " + plan.string());
  const auto t = run_json("train " + kModel + " --data fashion-mnist:train --samples 2000 --epochs 1 --batch-size 64 "
                          "--optimizer adam --lr 1e-3 --quant-plan " + plan.string() + " --out " + ckpt.string());
  CHECK(t["epochs"] == 1);
  const auto after = run_json("quant eval " + ckpt.string() + " --data fashion-mnist:test --samples 300 --plan " + plan.string());
  INFO("2-bit loss before ", before["loss"], " after fine-tuning ", after["loss"]);
  CHECK(after["loss"].get<double>() < before["loss"].get<double>());
  run_json("quant apply " + ckpt.string() + " --plan " + plan.string() + " --out " + q.string());
  CHECK(run_json("eval " + q.string() + " --data fashion-mnist:test --samples 300")["loss"] == after["loss"]);
  // The plan of another model is refused by train, eval and apply.
  check_bad("train " + kMlp + " --data " + std::string(CURV_SOURCE_DIR) + "/data/fixtures/mlp.npz --quant-plan " +
                plan.string() + " --out " + (tmpdir() / "no.h5").string(),
            "plan was made for a model with sha256");
  CHECK(!fs::exists(tmpdir() / "no.h5"));
  check_bad("quant eval " + kMlp + " --data " + std::string(CURV_SOURCE_DIR) + "/data/fixtures/mlp.npz --plan " +
                plan.string(),
            "plan was made for a model with sha256");
}

TEST_CASE("quant CLI: measured selection never returns a plan worse than uniform on the calibration data") {
  const fs::path h5 = tmpdir() / "sel.h5", omega = tmpdir() / "omega.json", sel = tmpdir() / "sel.json";
  run_json("quant plan " + kModel + kTrain + " --trace-probes 4 --bits 2,3,4,8 --avg-bits 3 --out " + omega.string() +
           " --h5 " + h5.string());
  const auto s = run_json("quant plan " + kModel + kTrain + " --sensitivities " + h5.string() +
                          " --bits 2,3,4,8 --avg-bits 3 --select measured --candidates 4 --calib-data "
                          "fashion-mnist:train --calib-samples 300 --out " + sel.string());
  CHECK(s["totals"]["avg_bits"].get<double>() <= 3.0 + 1e-9);
  const auto& ev = s["selection"]["evaluated"];
  REQUIRE(ev.size() >= 2);
  double best = 1e300;
  for (const auto& e : ev) best = std::min(best, e["loss"].get<double>());
  const auto chosen = run_json("quant eval " + kModel + " --data fashion-mnist:train --samples 300 --plan " + sel.string());
  CHECK(chosen["loss"].get<double>() == doctest::Approx(best).epsilon(1e-9));
  const auto uniform = run_json("quant eval " + kModel + " --data fashion-mnist:train --samples 300 --uniform 3");
  CHECK(chosen["loss"].get<double>() <= uniform["loss"].get<double>() * (1 + 1e-9));
  // The one size model: uniform 3 bits is feasible under --avg-bits 3 for every scheme and granularity.
  for (const char* g : {"--granularity per-tensor", "--granularity per-channel", "--groups 2"})
    for (const char* scheme : {"symmetric", "asymmetric"}) {
      const auto u = run_json("quant plan " + kModel + kTrain + " --sensitivities " + h5.string() +
                              " --bits 3 --avg-bits 3 --scheme " + scheme + " " + g + " --out " +
                              (tmpdir() / "u.json").string());
      CHECK(u["totals"]["avg_bits"] == 3.0);
      const auto ue = run_json("quant eval " + kModel + " --data fashion-mnist:test --samples 10 --uniform 3 --scheme " +
                               scheme + " " + g);
      CHECK(ue["size_bytes"] == u["totals"]["size_bytes"]);
    }
}

TEST_CASE("quant CLI bad input: one line, exit 2, no output file") {
  const fs::path out = tmpdir() / "bad.json";
  const std::string plan = "quant plan " + kModel + kTrain + " --trace-probes 2 --out " + out.string() + " ";
  check_bad(plan + "--avg-bits 4 --quantize-activations 8", "--quantize-activations needs calibration data: give --calib-data");
  check_bad(plan + "--avg-bits 4 --select measured", "--select measured needs calibration data");
  check_bad(plan + "--avg-bits 4 --size-kb 60", "give one budget: --avg-bits, --size-kb or --bops");
  check_bad(plan + "--max-drop 1 --select measured --calib-data fashion-mnist:train", "two ways to choose a plan");
  check_bad(plan + "--bits 2 --max-drop 0.01 --calib-data fashion-mnist:train --calib-samples 100",
            "--max-drop: no frontier point is within a drop of 0.01 accuracy points: the largest one");
  check_bad(plan + "--avg-bits 4 --inter-layer --share 0.weight,3.weight", "--inter-layer cannot be combined with --share");
  check_bad(plan + "--avg-bits 4 --sensitivity eig-stats --subsets 12 --subset-frac 0.1",
            "12 disjoint subsets of 6 samples");
  check_bad(plan + "--avg-bits 4 --quantize-activations 4,9 --calib-data fashion-mnist:train", "--quantize-activations: bits (= 9)");
  check_bad(plan + "--avg-bits 4 --percentile 30", "--percentile");
  check_bad(plan + "--avg-bits 4 --subset-frac 1.5", "--subset-frac");
  check_bad(plan + "--avg-bits 4 --trace-tol -1", "--trace-tol");
  check_bad(plan + "--avg-bits 4 --groups 2 --granularity per-channel", "--groups needs --granularity group");
  check_bad(plan + "--avg-bits 4 --sensitivity eig --trace-method shared", "apply to --sensitivity trace");
  CHECK(!fs::exists(out));
}
