// perf/timeline.cc — --timeline: per-rail samples as JSON Lines (timeline.h).
#include "timeline.h"

#include <chrono>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace braid::perf {

Result<std::unique_ptr<Timeline>> Timeline::open(const std::string& path, std::string tool) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f)
    return Status(Code::kSystemError,
                  fmt::format("cannot write the timeline {}: {}", path, std::strerror(errno)));
  return std::unique_ptr<Timeline>(new Timeline(f, path, std::move(tool)));
}

Timeline::Timeline(std::FILE* f, std::string path, std::string tool)
    : f_(f), path_(std::move(path)), tool_(std::move(tool)) {}

Timeline::~Timeline() {
  if (f_) std::fclose(f_);
}

bool Timeline::writeLine(const std::string& line) {
  if (failed_) return false;
  if (std::fputs(line.c_str(), f_) < 0 || std::fputc('\n', f_) == EOF || std::fflush(f_) != 0) {
    // The run goes on without its timeline: a full disk is no reason to stop a benchmark.
    std::fprintf(stderr, "%s: warning: cannot write the timeline %s (%s): sampling stopped\n",
                 tool_.c_str(), path_.c_str(), std::strerror(errno));
    failed_ = true;
    nextNs_ = UINT64_MAX;
    return false;
  }
  return true;
}

void Timeline::start(uint64_t ns, const EndpointStats& st, int64_t wallMs) {
  if (started_ || failed_) return;
  started_ = true;
  t0Ns_ = lastNs_ = ns;
  t0WallMs_ = wallMs >= 0 ? wallMs
                          : std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  nextNs_ = ns + kPeriodNs;
  lastBytes_ = st.bytesSentPerRail;
  lastState_.clear();
  lastEventMs_.clear();
  for (const RailStats& r : st.rails) {
    lastState_.push_back(r.state);
    lastEventMs_.push_back(r.events.empty() ? INT64_MIN : r.events.back().unixMs);
  }
  // The origin in wall-clock time: logs, RailEvent times and outside actions (a cable
  // pulled at 12:03:07.250) map onto t_ms with it.
  nlohmann::ordered_json origin = {{"t_ms", 0.0}, {"start_unix_ms", t0WallMs_}};
  (void)writeLine(origin.dump());
}

void Timeline::sample(uint64_t ns, const EndpointStats& st) {
  if (!started_ || finished_ || failed_) return;
  const double tMs = static_cast<double>(ns - t0Ns_) * 1e-6;
  // Events first, so that a reader meets a rail's new state before the sample showing it.
  lastEventMs_.resize(std::max(lastEventMs_.size(), st.rails.size()), INT64_MIN);
  for (size_t i = 0; i < st.rails.size(); ++i) {
    bool told = false;
    for (const RailEvent& ev : st.rails[i].events) {
      if (ev.unixMs <= lastEventMs_[i]) continue;
      lastEventMs_[i] = ev.unixMs;
      told = true;
      nlohmann::ordered_json e = {{"t_ms", static_cast<double>(ev.unixMs - t0WallMs_)},
                                  {"event", fmt::format("rail {} {}: {}", i, ev.state, ev.cause)},
                                  {"rail", i},
                                  {"state", ev.state},
                                  {"cause", ev.cause}};
      if (!writeLine(e.dump())) return;
    }
    const std::string& state = st.rails[i].state;
    if (!told && i < lastState_.size() && lastState_[i] != state) {
      nlohmann::ordered_json e = {{"t_ms", tMs},
                                  {"event", fmt::format("rail {} {}", i, state)},
                                  {"rail", i},
                                  {"state", state},
                                  {"previous", lastState_[i]}};
      if (!writeLine(e.dump())) return;
    }
  }
  lastState_.resize(std::max(lastState_.size(), st.rails.size()));
  for (size_t i = 0; i < st.rails.size(); ++i) lastState_[i] = st.rails[i].state;

  const uint64_t intervalNs = ns > lastNs_ ? ns - lastNs_ : 0;
  const size_t n = std::max(st.rails.size(), st.bytesSentPerRail.size());
  nlohmann::ordered_json rails = nlohmann::ordered_json::array();
  for (size_t i = 0; i < n; ++i) {
    const uint64_t now = i < st.bytesSentPerRail.size() ? st.bytesSentPerRail[i] : 0;
    const uint64_t before = i < lastBytes_.size() ? lastBytes_[i] : 0;
    const uint64_t bytes = now > before ? now - before : 0;
    const double mbit =
        intervalNs ? static_cast<double>(bytes) * 8e3 / static_cast<double>(intervalNs) : 0.0;
    const RailStats* r = i < st.rails.size() ? &st.rails[i] : nullptr;
    rails.push_back({{"rail", i},
                     {"name", r ? r->name : std::string()},
                     {"state", r ? r->state : std::string("up")},
                     {"bytes", bytes},
                     {"mbit_per_sec", mbit},
                     {"throughput_mb_per_sec", r ? r->throughputBps / 1048576.0 : 0.0},
                     {"congestion", r ? r->congestion : 0.0}});
  }
  nlohmann::ordered_json line = {{"t_ms", tMs},
                                 {"interval_ms", static_cast<double>(intervalNs) * 1e-6},
                                 {"rails", std::move(rails)}};
  lastBytes_ = st.bytesSentPerRail;
  lastNs_ = ns;
  nextNs_ = ns + kPeriodNs;
  if (writeLine(line.dump())) ++samples_;
}

void Timeline::finish(uint64_t ns, const EndpointStats& st) {
  if (ns > lastNs_) sample(ns, st);
  if (started_) finished_ = true;
  nextNs_ = UINT64_MAX;
}

}  // namespace braid::perf
