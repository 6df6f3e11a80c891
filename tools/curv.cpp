// curv: second-order curvature analysis of neural networks. See README.md and docs/.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <iostream>

#include "src/core/allocator_tuning.h"
#include "tools/commands.h"

namespace {

// "spectrum m.onnx", "quant plan m.onnx": the command and its first positional argument, the
// context of a failure whose message does not name its file (see error_line).
std::string command_context(int argc, char** argv) {
  std::string s;
  int words = 0;
  for (int i = 1; i < argc && words < 3; ++i) {
    if (argv[i][0] == '-') break;
    s += (s.empty() ? "" : " ") + std::string(argv[i]);
    ++words;
    if (words == 1 && std::strcmp(argv[i], "quant") != 0) words = 2;  // quant has a subcommand
  }
  return s;
}

// The backend switches read from the environment (docs/cli.md): a value curv does not know is a
// failure of its own (exit status 2), not a silent fall-back to the default backend.
void check_backend_env(const char* name, const char* a, const char* b) {
  const char* v = std::getenv(name);
  if (v && std::strcmp(v, a) != 0 && std::strcmp(v, b) != 0)
    throw std::invalid_argument(std::string(name) + "='" + v + "' is not a valid setting (expected " + a + " or " + b +
                                ")");
}

}  // namespace

int main(int argc, char** argv) {
  curv::tune_glibc_allocator();
  CLI::App app{"curv: exact Hessian-vector products, spectra and quantization plans for neural networks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", CURV_VERSION);
  curv::cli::set_error_context(command_context(argc, argv));
  // Every failure is one line on stderr with exit status 2 (interrupted training exits 130).
  try {
    check_backend_env("CURV_CONV_BACKEND", "builtin", "onednn");
    check_backend_env("CURV_GEMM_BACKEND", "eigen", "onednn");
    check_backend_env("CURV_CONV_WINOGRAD", "0", "1");
    curv::cli::register_info(app);
    curv::cli::register_eval(app);
    curv::cli::register_bench(app);
    curv::cli::register_convert(app);
    curv::cli::register_quant(app, argc, argv);
    curv::cli::register_spectrum(app, argc, argv);
    curv::cli::register_solve(app, argc, argv);
    curv::cli::register_train(app, argc, argv);
    curv::cli::register_study(app, argc, argv);
    curv::cli::register_landscape(app, argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << curv::cli::error_line(e) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << curv::cli::error_line(e) << "\n";
    return 2;
  } catch (...) {
    std::cerr << "curv: " << curv::cli::error_context() << ": unknown failure\n";
    return 2;
  }
  return 0;
}
