// curv: second-order curvature analysis of neural networks. See README.md and docs/.
#include <iostream>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"curv: exact Hessian-vector products, spectra and quantization plans for neural networks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", CURV_VERSION);
  curv::cli::register_info(app);
  curv::cli::register_eval(app);
  curv::cli::register_bench(app);
  curv::cli::register_convert(app);
  curv::cli::register_quant(app, argc, argv);
  curv::cli::register_spectrum(app, argc, argv);
  curv::cli::register_train(app, argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Usage errors: one line, status 2.
    std::cerr << "curv: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "curv: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
