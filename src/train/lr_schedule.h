#pragma once
/// \file lr_schedule.h
/// Learning rate per optimizer step. With T total steps, S steps per epoch and W warm-up steps:
///
///   warm-up   lr(t) = base * (t + 1) / W                        for t < W
///   constant  lr(t) = base
///   step      lr(t) = base * gamma^floor(epoch(t) / step_epochs), epoch(t) = floor(t / S)
///   cosine    lr(t) = base * (1 + cos(pi (t - W) / (T - W))) / 2  (CosineAnnealingLR to 0, per step)
///
/// A pure function of t, so a resumed run sees exactly the rates of an uninterrupted one.
#include <cstdint>
#include <string>

namespace curv {

enum class ScheduleKind { Constant, Step, Cosine };

ScheduleKind parse_schedule(const std::string& s);  // "constant" | "step" | "cosine"
const char* schedule_name(ScheduleKind k);

struct LrScheduleOptions {
  ScheduleKind kind = ScheduleKind::Constant;
  /// Base learning rate (REQUIRES finite, > 0).
  double lr = 0.01;
  /// Linear warm-up length W in steps, plus `warmup_epochs` epochs (rounded to steps; 0: none).
  std::int64_t warmup_steps = 0;
  double warmup_epochs = 0;
  /// Step schedule: multiply by gamma every step_epochs epochs.
  std::int64_t step_epochs = 30;
  double gamma = 0.1;
};

class LrSchedule {
 public:
  /// REQUIRES: steps_per_epoch >= 1, total_steps >= 1. Throws std::invalid_argument on bad options.
  LrSchedule(LrScheduleOptions options, std::int64_t steps_per_epoch, std::int64_t total_steps);
  /// The rate of step t (0-based).
  double at(std::int64_t t) const;
  const LrScheduleOptions& options() const { return m_options; }

 private:
  LrScheduleOptions m_options;
  std::int64_t m_steps_per_epoch, m_total, m_warmup;
};

}  // namespace curv
