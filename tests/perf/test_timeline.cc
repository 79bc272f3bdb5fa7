// The --timeline writer (perf/timeline.h): one JSON line per sample with each rail's bytes
// of the interval and its rate, an event line before the sample when a rail's state
// changed, nothing before start() or after finish().
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "timeline.h"

namespace braid::perf {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 7'000 * kMs;

EndpointStats statsOf(std::vector<uint64_t> bytes, std::vector<std::string> states) {
  EndpointStats st;
  st.bytesSentPerRail = bytes;
  for (size_t i = 0; i < states.size(); ++i) {
    RailStats r;
    r.name = "rail" + std::to_string(i);
    r.state = states[i];
    r.bytesSent = bytes[i];
    r.throughputBps = 2 * 1048576.0;
    st.rails.push_back(r);
  }
  return st;
}

std::string tempPath() {
  return "/tmp/braid_timeline_test_" + std::to_string(::getpid()) + ".jsonl";
}

/// The lines after the origin line (which start() writes first, checked here).
std::vector<nlohmann::json> readLines(const std::string& path) {
  std::vector<nlohmann::json> v;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) v.push_back(nlohmann::json::parse(line));
  REQUIRE_FALSE(v.empty());
  CHECK(v.front()["t_ms"].get<double>() == 0.0);
  CHECK(v.front()["start_unix_ms"].get<int64_t>() > 0);
  v.erase(v.begin());
  return v;
}

}  // namespace

TEST_CASE("timeline: a sample per call with each rail's bytes and rate of the interval",
          "[perf][timeline]") {
  const std::string path = tempPath();
  auto t = Timeline::open(path, "test");
  REQUIRE(t.isOk());
  Timeline& tl = **t;
  CHECK(tl.nextNs() == UINT64_MAX);
  tl.sample(kT0, statsOf({5, 5}, {"up", "up"}));  // before start: nothing
  tl.start(kT0, statsOf({1000, 2000}, {"up", "up"}));
  CHECK(tl.nextNs() == kT0 + Timeline::kPeriodNs);
  tl.start(kT0 + 50 * kMs, statsOf({0, 0}, {"up", "up"}));  // ignored: already started
  // 100 ms: rail 0 sent 1.25 MB (100 Mbit/s), rail 1 nothing.
  tl.sample(kT0 + 100 * kMs, statsOf({1000 + 1'250'000, 2000}, {"up", "up"}));
  CHECK(tl.nextNs() == kT0 + 200 * kMs);
  auto lines = readLines(path);  // flushed line by line
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["t_ms"].get<double>() == Approx(100.0));
  CHECK(lines[0]["interval_ms"].get<double>() == Approx(100.0));
  auto rails = lines[0]["rails"];
  REQUIRE(rails.size() == 2);
  CHECK(rails[0]["rail"] == 0);
  CHECK(rails[0]["name"] == "rail0");
  CHECK(rails[0]["state"] == "up");
  CHECK(rails[0]["bytes"] == 1'250'000);
  CHECK(rails[0]["mbit_per_sec"].get<double>() == Approx(100.0));
  CHECK(rails[0]["throughput_mb_per_sec"].get<double>() == Approx(2.0));
  CHECK(rails[1]["bytes"] == 0);
  CHECK(rails[1]["mbit_per_sec"].get<double>() == 0.0);
  CHECK(tl.samples() == 1);
  std::remove(path.c_str());
}

TEST_CASE("timeline: a rail's state change is an event line before the sample",
          "[perf][timeline]") {
  const std::string path = tempPath();
  auto t = Timeline::open(path, "test");
  REQUIRE(t.isOk());
  Timeline& tl = **t;
  tl.start(kT0, statsOf({0, 0}, {"up", "up"}));
  tl.sample(kT0 + 100 * kMs, statsOf({10, 10}, {"up", "up"}));
  tl.sample(kT0 + 200 * kMs, statsOf({20, 10}, {"up", "down"}));
  tl.sample(kT0 + 300 * kMs, statsOf({30, 10}, {"up", "down"}));  // no change: no event
  tl.sample(kT0 + 400 * kMs, statsOf({40, 11}, {"up", "probing"}));
  // The last, shorter interval; then nothing more.
  tl.finish(kT0 + 430 * kMs, statsOf({43, 12}, {"up", "up"}));
  CHECK(tl.nextNs() == UINT64_MAX);
  tl.sample(kT0 + 600 * kMs, statsOf({50, 20}, {"up", "up"}));
  tl.finish(kT0 + 700 * kMs, statsOf({50, 20}, {"up", "up"}));
  auto lines = readLines(path);
  REQUIRE(lines.size() == 8);
  std::vector<std::string> events;
  double lastT = 0;
  for (auto& l : lines) {
    CHECK(l["t_ms"].get<double>() >= lastT);
    lastT = l["t_ms"].get<double>();
    if (l.contains("event")) events.push_back(l["event"].get<std::string>());
  }
  CHECK(events == std::vector<std::string>{"rail 1 down", "rail 1 probing", "rail 1 up"});
  CHECK(lines[1]["event"] == "rail 1 down");
  CHECK(lines[1]["rail"] == 1);
  CHECK(lines[1]["previous"] == "up");
  CHECK(lines[1]["t_ms"].get<double>() == Approx(200.0));
  CHECK(lines[2]["rails"][1]["state"] == "down");  // the sample after its event
  CHECK(lines[7]["t_ms"].get<double>() == Approx(430.0));
  CHECK(lines[7]["interval_ms"].get<double>() == Approx(30.0));
  CHECK(lines[7]["rails"][0]["bytes"] == 3);
  CHECK(tl.samples() == 5);
  std::remove(path.c_str());
}

TEST_CASE("timeline: a rail's own events come at their time with their cause, once each",
          "[perf][timeline]") {
  const std::string path = tempPath();
  auto t = Timeline::open(path, "test");
  REQUIRE(t.isOk());
  Timeline& tl = **t;
  const int64_t wall0 = 1'800'000'000'000;
  EndpointStats st = statsOf({0, 0}, {"up", "up"});
  st.rails[1].events.push_back({wall0 - 5000, "down", "an old failure, before the run"});
  st.rails[1].events.push_back({wall0 - 4000, "up", "rejoined (epoch 1)"});
  tl.start(kT0, st, wall0);
  // Rail 1 fails at 150 ms and comes back at 180 ms, both between two samples.
  st = statsOf({10, 10}, {"up", "probing"});
  st.rails[1].events = {{wall0 - 4000, "up", "rejoined (epoch 1)"},
                        {wall0 + 150, "down", "system-error: recv: Network is unreachable"},
                        {wall0 + 180, "up", "rejoined (epoch 2)"}};
  tl.sample(kT0 + 200 * kMs, st);
  tl.sample(kT0 + 300 * kMs, st);  // the same events again: not repeated
  st.rails[1].state = "up";        // probing over: a sampled state change
  tl.sample(kT0 + 400 * kMs, st);
  auto lines = readLines(path);
  std::vector<std::string> events;
  std::vector<double> times;
  for (auto& l : lines)
    if (l.contains("event")) {
      events.push_back(l["event"].get<std::string>());
      times.push_back(l["t_ms"].get<double>());
    }
  REQUIRE(events.size() == 3);
  CHECK(events[0] == "rail 1 down: system-error: recv: Network is unreachable");
  CHECK(events[1] == "rail 1 up: rejoined (epoch 2)");
  CHECK(events[2] == "rail 1 up");
  CHECK(times == std::vector<double>{150.0, 180.0, 400.0});
  CHECK(lines[0]["cause"] == "system-error: recv: Network is unreachable");
  std::remove(path.c_str());
}

TEST_CASE("timeline: a file that cannot be created is an error naming it", "[perf][timeline]") {
  auto t = Timeline::open("/nonexistent-dir/x.jsonl", "test");
  REQUIRE(!t.isOk());
  CHECK(t.status().code() == Code::kSystemError);
  CHECK(t.status().message().find("/nonexistent-dir/x.jsonl") != std::string::npos);
}

}  // namespace braid::perf
