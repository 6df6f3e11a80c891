#pragma once
// One register_* per subcommand; each adds itself to the root app with a callback.
#include "tools/common.h"

namespace curv::cli {
void register_info(CLI::App& root);
void register_eval(CLI::App& root);
void register_bench(CLI::App& root);
void register_convert(CLI::App& root);
void register_quant(CLI::App& root, int argc, char** argv);
void register_spectrum(CLI::App& root, int argc, char** argv);
void register_solve(CLI::App& root, int argc, char** argv);
void register_train(CLI::App& root, int argc, char** argv);
void register_study(CLI::App& root, int argc, char** argv);
void register_landscape(CLI::App& root, int argc, char** argv);
}  // namespace curv::cli
