#include "core/log.h"

#include <unistd.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "core/params.h"

namespace braid::core {
namespace {

constexpr std::array<const char*, 9> kNames = {"core", "topo",  "verbs", "tcp", "gpu",
                                               "transport", "coll", "plugin", "tool"};

std::mutex gFnMutex;
LogFn gFn;  // guarded by gFnMutex

// Forwards to the user's function when one is set, else to the default sink.
class ForwardSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ForwardSink(spdlog::sink_ptr fallback) : fallback_(std::move(fallback)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    {
      std::lock_guard<std::mutex> lk(gFnMutex);
      if (gFn) {
        gFn(msg.level, std::string_view(msg.logger_name.data(), msg.logger_name.size()),
            std::string_view(msg.payload.data(), msg.payload.size()));
        return;
      }
    }
    fallback_->log(msg);
  }
  void flush_() override { fallback_->flush(); }

 private:
  spdlog::sink_ptr fallback_;
};

struct Loggers {
  std::array<std::shared_ptr<spdlog::logger>, kNames.size()> byId;
};

Loggers& loggers() {
  static Loggers* l = [] {
    auto* out = new Loggers();
    std::string levelName = "warn";
    std::string file;
    auto p = paramsWithoutWarnings();  // params() warns through the loggers built here
    if (p) {
      levelName = p->logLevel;
      file = p->logFile;
    }
    spdlog::sink_ptr base;
    if (!file.empty()) {
      auto pos = file.find("%p");
      if (pos != std::string::npos) file.replace(pos, 2, std::to_string(::getpid()));
      try {
        base = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file);
      } catch (const std::exception&) {
        base.reset();
      }
    }
    if (!base) base = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    // The pattern goes on the sink that formats (the forwarder passes raw messages on).
    base->set_pattern("[%H:%M:%S.%f] [braid:%n] [%l] [pid %P] %v");
    auto sink = std::make_shared<ForwardSink>(base);
    auto level = spdlog::level::from_str(levelName == "warn" ? "warning" : levelName);
    for (size_t i = 0; i < kNames.size(); ++i) {
      out->byId[i] = std::make_shared<spdlog::logger>(kNames[i], sink);
      out->byId[i]->set_level(level);
      out->byId[i]->flush_on(spdlog::level::warn);
    }
    if (!p) {
      out->byId[0]->error("{} (using defaults for logging)", p.status().message());
    }
    if (!file.empty() && !std::dynamic_pointer_cast<spdlog::sinks::basic_file_sink_mt>(base)) {
      out->byId[0]->error("BRAID_LOG_FILE='{}' cannot be opened; logging to stderr", file);
    }
    return out;
  }();
  return *l;
}

}  // namespace

void setLogLevel(spdlog::level::level_enum level) {
  for (auto& l : loggers().byId) l->set_level(level);
}

spdlog::logger& logger(Subsys s) { return *loggers().byId[static_cast<size_t>(s)]; }

void setLogFunction(LogFn fn) {
  std::lock_guard<std::mutex> lk(gFnMutex);
  gFn = std::move(fn);
}

}  // namespace braid::core
