#pragma once
/// \file timer.h
/// Wall-clock timing for benchmarks and progress reports.
#include <chrono>
#include <string>

namespace curv {

class Timer {
 public:
  Timer() : m_start(std::chrono::steady_clock::now()) {}
  void reset() { m_start = std::chrono::steady_clock::now(); }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  }

 private:
  std::chrono::steady_clock::time_point m_start;
};

/// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" (the `created_utc` of every file curv writes).
std::string utc_timestamp();

}  // namespace curv
