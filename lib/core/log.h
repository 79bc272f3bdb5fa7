// lib/core/log.h — logging facade over spdlog: one logger per subsystem.
//
// Level from BRAID_LOG_LEVEL (default warn), output to stderr or BRAID_LOG_FILE.
// Internal header: spdlog/fmt never appear in include/braid/.
#pragma once

#include <spdlog/spdlog.h>

#include <functional>
#include <string_view>

namespace braid::core {

enum class Subsys { kCore, kTopo, kVerbs, kTcp, kGpu, kTransport, kColl, kPlugin, kTool };

/// The logger of a subsystem, created on first use with the params' level and sink.
spdlog::logger& logger(Subsys s);

/// Routes every braid log line to `fn` instead of stderr/file (the NCCL plugin uses this
/// to log through NCCL's logger). Pass nullptr to restore.
using LogFn = std::function<void(spdlog::level::level_enum, std::string_view subsys,
                                 std::string_view message)>;
void setLogFunction(LogFn fn);
/// Sets every subsystem's level (as BRAID_LOG_LEVEL does at start).
void setLogLevel(spdlog::level::level_enum level);

}  // namespace braid::core

#define BRAID_LOG_ERROR(sub, ...) ::braid::core::logger(::braid::core::Subsys::sub).error(__VA_ARGS__)
#define BRAID_LOG_WARN(sub, ...) ::braid::core::logger(::braid::core::Subsys::sub).warn(__VA_ARGS__)
#define BRAID_LOG_INFO(sub, ...) ::braid::core::logger(::braid::core::Subsys::sub).info(__VA_ARGS__)
#define BRAID_LOG_DEBUG(sub, ...) ::braid::core::logger(::braid::core::Subsys::sub).debug(__VA_ARGS__)
#define BRAID_LOG_TRACE(sub, ...) ::braid::core::logger(::braid::core::Subsys::sub).trace(__VA_ARGS__)
