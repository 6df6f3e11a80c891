// Tests of quant/ plans: make_plan and its totals, the JSON round trip, corrupt or foreign files
// named with what is wrong, the sha256 check against the model, and SHA-256 itself.
#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/plan.h"
#include "src/io/sha256.h"
#include "tests/test_util.h"

using namespace curv::quant;

namespace {

std::string temp_path(const std::string& name) { return (curv_test::scratch_dir("quant") / name).string(); }
using curv_test::write_text;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Plans

namespace {

Plan sample_plan() {
  AllocProblem p;
  p.layers = {{"conv1", 432, 442368, scale_overhead_bits(Scheme::Symmetric, 16), {{4, 0.3}, {8, 0.01}}},
              {"conv2", 2304, 2359296, scale_overhead_bits(Scheme::Symmetric, 16), {{2, 0.9}, {4, 0.2}, {8, 0.02}}},
              {"conv3", 2304, 2359296, scale_overhead_bits(Scheme::Symmetric, 16), {{2, 0.7}, {4, 0.1}, {8, 0.03}}},
              {"fc", 640, 640, scale_overhead_bits(Scheme::Asymmetric, 2), {{4, 0.05}, {8, 0.004}}}};
  p.shared = {{"conv2", "conv3"}};
  p.pinned = {{"conv1", 8}, {"fc", 8}};
  p.extra_bits = 32 * 84;
  const BitAllocator alloc(p);
  const Allocation a = alloc.solve({BudgetKind::AvgBits, 4.0});
  PlanLayerInfo conv;
  conv.groups = 16;
  conv.sensitivity = 1.5;
  std::vector<PlanLayerInfo> info(4, conv);
  info[3].scheme = Scheme::Asymmetric;
  info[3].granularity = Granularity::Group;
  info[3].groups = 2;
  info[3].sensitivity = -0.25;
  info[3].negative_top_eigenvalue = true;
  Plan plan = make_plan(p, a, info);
  plan.command = "curv quant plan model.onnx --data fashion-mnist:train --avg-bits 4";
  plan.model_path = "model.onnx";
  plan.model_sha256 = curv::sha256_hex("model bytes");
  plan.sensitivity_kind = "trace";
  plan.budget = Budget{BudgetKind::AvgBits, 4.0};
  plan.created_utc = utc_timestamp();
  return plan;
}

}  // namespace

TEST_CASE("plan: make_plan respects the constraints and computes the totals") {
  const Plan plan = sample_plan();
  REQUIRE(plan.layers.size() == 4);
  CHECK(plan.layers[0].bits == 8);
  CHECK(plan.layers[0].pinned);
  CHECK(plan.layers[3].bits == 8);
  CHECK(plan.layers[1].bits == plan.layers[2].bits);
  CHECK(plan.totals.avg_bits <= 4.0);
  CHECK(plan.totals.weight_bits == 432 * 8 + 2304 * 2 * plan.layers[1].bits + 640 * 8);
  CHECK(plan.totals.overhead_bits == 3 * 16 * 32 + 2 * 40);
  CHECK(plan.totals.size_bytes == (plan.totals.weight_bits + plan.totals.overhead_bits + 7) / 8 + 336);
  CHECK(plan.candidate_bits == std::vector<int>{2, 4, 8});
  CHECK(plan.optimizer_method == "pareto-dp");
  CHECK(plan.curv_version == curv_version_string());
}

TEST_CASE("plan: JSON round trip") {
  const Plan plan = sample_plan();
  const std::string path = temp_path("plan.json");
  write_plan(plan, path);
  CHECK(curv_test::temp_files_beside(path) == 0);
  const Plan back = read_plan(path);
  CHECK(plan_to_json(back) == plan_to_json(plan));
  CHECK(back.layers[3].scheme == Scheme::Asymmetric);
  CHECK(back.layers[3].granularity == Granularity::Group);
  CHECK(back.layers[3].negative_top_eigenvalue);
  CHECK(back.budget->kind == BudgetKind::AvgBits);
  CHECK(back.totals.predicted_omega == plan.totals.predicted_omega);
  CHECK(back.order == "hessian");
  CHECK_FALSE(back.order_seed);

  Plan random = plan;
  random.order = "random";
  random.order_seed = 42;
  random.measured_omega = 0.125;
  write_plan(random, path);
  const Plan rback = read_plan(path);
  CHECK(rback.order == "random");
  CHECK(rback.order_seed == 42);
  CHECK(rback.measured_omega == 0.125);
  CHECK(plan_to_json(rback) == plan_to_json(random));
}

TEST_CASE("plan: corrupt, foreign or wrong-schema files raise \"<path>: <what is wrong>\"") {
  const Plan plan = sample_plan();
  const std::string path = temp_path("bad.json");
  const nlohmann::json good = plan_to_json(plan);
  auto with = [&](auto edit) {
    nlohmann::json j = good;
    edit(j);
    write_text(path, j.dump(2));
  };
  auto expect = [&](const std::string& what) {
    CHECK_THROWS_WITH_AS(read_plan(path), (path + ": " + what).c_str(), std::runtime_error);
  };
  CHECK_THROWS_WITH_AS(read_plan(path + ".missing"), (path + ".missing: cannot open for reading").c_str(),
                       std::runtime_error);
  write_text(path, good.dump(2).substr(0, 200));
  CHECK_THROWS_WITH_AS(read_plan(path), doctest::Contains((path + ": not valid JSON (").c_str()), std::runtime_error);
  write_text(path, "");
  CHECK_THROWS_WITH_AS(read_plan(path), doctest::Contains((path + ": not valid JSON (").c_str()), std::runtime_error);
  write_text(path, "[1, 2, 3]");
  expect("expected an object, got array [1,2,3]");
  with([](auto& j) { j["format"] = "curv-spectrum"; });
  expect("not a curv quantization plan (expected \"format\": \"curv-quant-plan\")");
  with([](auto& j) { j["schema_version"] = 3; });
  expect("schema_version: 3 is not supported (this curv reads 1..2)");
  with([](auto& j) { j["layers"][0].erase("bits"); });
  expect("layers[0].bits: missing");
  with([](auto& j) { j["layers"][1]["bits"] = "4"; });
  expect("layers[1].bits: expected an integer, got string \"4\"");
  with([](auto& j) { j["layers"][0]["bits"] = 9; });
  expect("layers[0].bits: 9 is outside 2..8");
  with([](auto& j) { j["layers"][0]["scheme"] = "sym"; });
  expect("layers[0].scheme: scheme \"sym\" is not one of symmetric, asymmetric");
  with([](auto& j) { j["layers"][2]["name"] = "conv2"; });
  expect("layers[2].name: \"conv2\" appears twice");
  with([](auto& j) { j["model"]["sha256"] = "xyz"; });
  expect("model.sha256: \"xyz\" is not 64 lower-case hex digits");
  with([](auto& j) { j["order"] = "inverse"; });
  expect("order: order \"inverse\" is not one of hessian, reverse, random, equal");
  with([](auto& j) { j["order_seed"] = -1; });
  expect("order_seed: -1 is outside 0..9223372036854775807");
  with([](auto& j) { j["layers"] = nlohmann::json::array(); });
  expect("layers: empty (a plan has at least one layer)");
  with([](auto& j) { j["totals"]["size_bytes"] = 999; });
  expect("totals.size_bytes: 999 does not match the layers (" + std::to_string(plan.totals.size_bytes) + ")");
  with([](auto& j) { j["totals"]["predicted_omega"] = 1.0; });
  expect(std::string("totals.predicted_omega: 1.0 does not match the layers (") +
         nlohmann::json(plan.totals.predicted_omega).dump() + ")");
  with([](auto& j) { j["layers"][2]["bits"] = 8; });  // conv2 and conv3 share a width
  CHECK_THROWS_WITH_AS(read_plan(path), doctest::Contains("shared[0]: layers conv2"), std::runtime_error);

  // An invalid plan is never written.
  Plan bad = plan;
  bad.layers[0].bits = 1;
  const std::string out = temp_path("never.json");
  CHECK_THROWS_AS(write_plan(bad, out), std::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("plan: a plan for another model is refused by sha256") {
  const std::string model = temp_path("model.bin");
  write_text(model, "model bytes");
  Plan plan = sample_plan();
  CHECK_NOTHROW(check_plan_model(plan, "plan.json", model));
  write_text(model, "other model");
  CHECK_THROWS_WITH_AS(check_plan_model(plan, "plan.json", model),
                       ("plan.json: plan was made for a model with sha256 " + plan.model_sha256 + ", but " + model +
                        " has sha256 " + curv::sha256_hex("other model"))
                           .c_str(),
                       std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// sha256

TEST_CASE("sha256: FIPS 180-4 test vectors, streaming and files") {
  using namespace curv;
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  for (bool portable : {false, true}) {
    CAPTURE(portable);
    Sha256 h(portable);  // one million 'a', fed in uneven pieces
    const std::string chunk(997, 'a');
    std::size_t left = 1000000;
    while (left > 0) {
      const std::size_t n = std::min(left, chunk.size() - left % 7);
      h.update(chunk.data(), n);
      left -= n;
    }
    CHECK(Sha256::hex(h.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
  // The CPU-extension path (where the processor has it) and the portable one agree on every
  // length around the block and padding boundaries, for arbitrary bytes.
  std::mt19937 rng(7);
  std::string bytes(300, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng());
  for (std::size_t len = 0; len <= bytes.size(); ++len) {
    Sha256 a(false), b(true);
    a.update(bytes.data(), len);
    b.update(bytes.data(), len);
    CHECK(Sha256::hex(a.finish()) == Sha256::hex(b.finish()));
  }
  for (std::size_t n : {55, 56, 63, 64, 65, 119, 120}) {  // padding boundaries: one-shot equals byte by byte
    const std::string s(n, 'x');
    Sha256 b;
    for (char c : s) b.update(&c, 1);
    CHECK(Sha256::hex(b.finish()) == sha256_hex(s));
  }
  const std::string file = temp_path("abc.txt");
  write_text(file, "abc");
  CHECK(sha256_file(file) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_THROWS_WITH_AS(sha256_file(file + ".missing"), (file + ".missing: cannot open for reading").c_str(),
                       std::runtime_error);
}

TEST_CASE("xxh3_128_file: XXH3-128 of a file read in pieces equals the one-shot digest, canonical hex") {
  using namespace curv;
  const std::string empty = temp_path("empty.bin"), abc = temp_path("abc3.txt"), big = temp_path("big.bin");
  write_text(empty, "");
  write_text(abc, "abc");
  {
    // 3 MiB + 5 bytes: crosses the reader's 1 MiB pieces.
    std::string bytes(3 * (std::size_t(1) << 20) + 5, '\0');
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(static_cast<unsigned char>(i * 131 + 7));
    std::ofstream(big, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  // One-shot XXH3_128bits digests (xxhash 0.8.1, canonical big-endian); the empty one is xxhsum's.
  CHECK(xxh3_128_file(empty) == "99aa06d3014798d86001c324468d497f");
  CHECK(xxh3_128_file(abc) == "06b05ab6733a618578af5f94892f3950");
  CHECK(xxh3_128_file(big) == "f4d0ff02b723a81069f0da16733f338d");
  CHECK_THROWS_WITH_AS(xxh3_128_file(abc + ".missing"), (abc + ".missing: cannot open for reading").c_str(),
                       std::runtime_error);
}
