#include "src/train/lr_schedule.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace curv {

ScheduleKind parse_schedule(const std::string& s) {
  if (s == "constant") return ScheduleKind::Constant;
  if (s == "step") return ScheduleKind::Step;
  if (s == "cosine") return ScheduleKind::Cosine;
  throw std::invalid_argument("unknown schedule '" + s + "' (expected constant, step or cosine)");
}

const char* schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::Step: return "step";
    case ScheduleKind::Cosine: return "cosine";
  }
  return "?";
}

LrSchedule::LrSchedule(LrScheduleOptions o, std::int64_t steps_per_epoch, std::int64_t total_steps)
    : m_options(o), m_steps_per_epoch(steps_per_epoch), m_total(total_steps) {
  if (!std::isfinite(o.lr) || o.lr <= 0)
    throw std::invalid_argument("learning rate must be finite and > 0 (got " + std::to_string(o.lr) + ")");
  if (o.warmup_steps < 0 || !(o.warmup_epochs >= 0)) throw std::invalid_argument("warm-up must be >= 0");
  if (o.step_epochs < 1) throw std::invalid_argument("step schedule: step_epochs must be >= 1");
  if (!std::isfinite(o.gamma) || o.gamma <= 0) throw std::invalid_argument("step schedule: gamma must be > 0");
  if (steps_per_epoch < 1 || total_steps < 1) throw std::invalid_argument("schedule: needs at least one step");
  m_warmup = o.warmup_steps + std::llround(o.warmup_epochs * double(steps_per_epoch));
}

double LrSchedule::at(std::int64_t t) const {
  const auto& o = m_options;
  if (t < m_warmup) return o.lr * double(t + 1) / double(m_warmup);
  switch (o.kind) {
    case ScheduleKind::Constant: return o.lr;
    case ScheduleKind::Step: return o.lr * std::pow(o.gamma, double((t / m_steps_per_epoch) / o.step_epochs));
    case ScheduleKind::Cosine: {
      const double span = double(std::max<std::int64_t>(1, m_total - m_warmup));
      const double x = std::min(1.0, double(t - m_warmup) / span);
      return o.lr * 0.5 * (1 + std::cos(std::numbers::pi * x));
    }
  }
  return o.lr;
}

}  // namespace curv
