// braidrun — a one-host launcher for braid collectives, like `mpirun -n N` on one machine:
//
//   braidrun -n 4 [--store tcp|file] [--bind-to none|core] [--report-bindings]
//            [--timeout SECONDS] [--tag-output] [--] prog args...
//
// Starts N copies of `prog` with what braid::coll::Communicator::fromEnvironment() reads:
// BRAID_RANK, BRAID_WORLD_SIZE, BRAID_LOCAL_RANK (= the rank) and BRAID_STORE: a TCP store
// on 127.0.0.1 at a port below the ephemeral range, free when braidrun picked it (rank 0
// serves it), or with
// `--store file` a fresh directory under $TMPDIR (or /tmp), removed when braidrun exits.
//
// The children stay in braidrun's process group, so a Ctrl-C on the terminal reaches them
// all; SIGINT, SIGTERM and SIGHUP sent to braidrun alone are forwarded to each of them.
// The first child to fail (non-zero exit or a signal) is reported and its code becomes
// braidrun's (128 + signal for a signal); the others get SIGTERM, then SIGKILL 3 s later.
// --timeout ends the job the same way and exits 124. With --tag-output every line a child
// writes to stdout or stderr is prefixed with "[RANK] ".
//
// --bind-to core pins rank r to the r-th CPU (modulo their count) of those braidrun may run
// on (its own affinity mask), as `mpirun --bind-to core` does; with more ranks than CPUs,
// ranks r and r + CPUs share one. Unbound (the default, as torchrun), busy-polling ranks
// that outnumber the cores are left to the scheduler, which can keep three on one core and
// one on the other for milliseconds (each rank is "cache hot"); bound, each core carries its
// share. --report-bindings prints each rank's CPU set to stderr.
//
// Exit codes: the first failing rank's code; 0 when every rank exits 0; 124 on --timeout;
// 126/127 when the program cannot be executed / is not found; 128+N when braidrun itself
// got signal N; 2 for a bad command line; 1 when braidrun cannot set the job up.
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitSetup = 1;
constexpr int kExitTimeout = 124;
constexpr int kMaxRanks = 4096;
constexpr auto kKillGrace = std::chrono::seconds(3);

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: braidrun -n N [--store tcp|file] [--bind-to none|core] [--report-bindings]\n"
    "                [--timeout SECONDS] [--tag-output] [--] PROGRAM [ARGS...]\n"
    "\n"
    "Starts N ranks of PROGRAM on this host for braid's collectives: each gets BRAID_RANK,\n"
    "BRAID_WORLD_SIZE, BRAID_LOCAL_RANK and BRAID_STORE in its environment.\n"
    "\n"
    "  -n, -np, --np N      number of ranks (1..4096)\n"
    "  --store tcp|file     tcp: a TCP store on 127.0.0.1 served by rank 0 (default);\n"
    "                       file: a fresh directory under $TMPDIR or /tmp, removed at exit\n"
    "  --bind-to none|core  core: rank r runs only on the r-th CPU braidrun may use (modulo\n"
    "                       their count, so ranks share CPUs when they outnumber them);\n"
    "                       none: each rank inherits braidrun's CPU set (default)\n"
    "  --report-bindings    print each rank's CPU set to stderr as it starts\n"
    "  --timeout SECONDS    end the job after this long and exit 124\n"
    "  --tag-output         prefix each line of each rank's stdout/stderr with \"[RANK] \"\n"
    "  -h, --help           this text\n"
    "\n"
    "The first rank to fail sets the exit code (128+N for signal N); the others get SIGTERM,\n"
    "then SIGKILL after 3 s. SIGINT/SIGTERM/SIGHUP sent to braidrun are forwarded to the ranks.\n";

struct Options {
  int ranks = 0;
  bool fileStore = false;
  std::optional<double> timeoutSec;
  bool tagOutput = false;
  bool bindCore = false;
  bool reportBindings = false;
  std::vector<std::string> command;  // program and its arguments, untouched
};

[[noreturn]] void usageError(const std::string& message) {
  std::fprintf(stderr, "braidrun: %s\n%s", message.c_str(), kUsage);
  std::exit(kExitUsage);
}

std::optional<long> parseInt(std::string_view s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::optional<double> parseSeconds(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end == s.c_str() || *end != '\0' || !(v > 0) || v > 1e7) return std::nullopt;
  return v;
}

Options parseArgs(int argc, char** argv) {
  Options o;
  int i = 1;
  // The value of an option given as "--opt VALUE" or "--opt=VALUE".
  auto valueOf = [&](std::string_view arg, std::string_view name) -> std::optional<std::string> {
    if (arg == name) {
      if (i + 1 >= argc) usageError(std::string(name) + " needs a value");
      return std::string(argv[++i]);
    }
    if (arg.size() > name.size() + 1 && arg.substr(0, name.size()) == name &&
        arg[name.size()] == '=')
      return std::string(arg.substr(name.size() + 1));
    return std::nullopt;
  };
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.empty() || a[0] != '-') break;  // the program: the rest is its own
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a == "--tag-output") {
      o.tagOutput = true;
      continue;
    }
    if (a == "--report-bindings") {
      o.reportBindings = true;
      continue;
    }
    std::optional<std::string> v;
    if ((v = valueOf(a, "-n")) || (v = valueOf(a, "-np")) || (v = valueOf(a, "--np"))) {
      auto n = parseInt(*v);
      if (!n || *n < 1 || *n > kMaxRanks)
        usageError("-n '" + *v + "': a number of ranks from 1 to 4096 expected");
      o.ranks = static_cast<int>(*n);
    } else if (a.size() > 2 && a.substr(0, 2) == "-n" && parseInt(a.substr(2))) {
      auto n = parseInt(a.substr(2));  // -n4
      if (*n < 1 || *n > kMaxRanks) usageError("-n: a number of ranks from 1 to 4096 expected");
      o.ranks = static_cast<int>(*n);
    } else if ((v = valueOf(a, "--store"))) {
      if (*v == "tcp")
        o.fileStore = false;
      else if (*v == "file")
        o.fileStore = true;
      else
        usageError("--store '" + *v + "': tcp or file expected");
    } else if ((v = valueOf(a, "--bind-to"))) {
      if (*v == "core")
        o.bindCore = true;
      else if (*v == "none")
        o.bindCore = false;
      else
        usageError("--bind-to '" + *v + "': none or core expected");
    } else if ((v = valueOf(a, "--timeout"))) {
      o.timeoutSec = parseSeconds(*v);
      if (!o.timeoutSec)
        usageError("--timeout '" + *v + "': a positive number of seconds expected");
    } else {
      usageError("unknown option '" + std::string(a) + "'");
    }
  }
  if (o.ranks == 0) usageError("-n N is required");
  if (i >= argc) usageError("no program to run");
  for (; i < argc; ++i) o.command.emplace_back(argv[i]);
  return o;
}

// ------------------------------------------------------------------ job setup

/// Binds `port` on every address (SO_REUSEADDR, as the store does) and closes it again.
/// Port 0 binds whatever the kernel gives: the port is returned. Nullopt: not free.
std::optional<uint16_t> tryBind(uint16_t port, std::string& error) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return std::nullopt;
  }
  int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = htons(port);
  socklen_t len = sizeof sa;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    error = "bind 0.0.0.0:" + std::to_string(port) + ": " + std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  ::close(fd);
  return ntohs(sa.sin_port);
}

/// The first port of the kernel's ephemeral range, where connect() takes local ports
/// (net.ipv4.ip_local_port_range; 32768 when it cannot be read).
int ephemeralLow() {
  FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  int low = 32768, high = 60999;
  if (f) {
    if (std::fscanf(f, "%d %d", &low, &high) != 2) low = 32768;
    std::fclose(f);
  }
  return low;
}

/// A port for the store, free on every address right now (rank 0 serves it on 0.0.0.0).
/// Drawn below the ephemeral range: a port the kernel hands out for port 0 comes from that
/// range, and under parallel tests another process's outgoing connection took it before
/// rank 0 bound it ("already in use"). Below the range only another server's explicit bind
/// can take it in between, as unlikely as two draws among thousands colliding.
std::optional<uint16_t> pickFreePort(std::string& error) {
  const int first = 10000, last = ephemeralLow() - 1;
  if (last - first >= 1000) {
    std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
    std::uniform_int_distribution<int> pick(first, last);
    for (int attempt = 0; attempt < 100; ++attempt) {
      if (auto p = tryBind(static_cast<uint16_t>(pick(rng)), error)) return p;
    }
  }
  return tryBind(0, error);  // a range too small to draw from: whatever the kernel gives
}

int removeEntry(const char* path, const struct stat*, int, struct FTW*) {
  if (::remove(path) != 0)
    std::fprintf(stderr, "braidrun: cannot remove %s: %s\n", path, std::strerror(errno));
  return 0;  // go on with the rest
}

/// The file store's directory, removed (with what the ranks wrote in it) on destruction.
class TempDir {
 public:
  ~TempDir() {
    if (!path_.empty()) ::nftw(path_.c_str(), removeEntry, 16, FTW_DEPTH | FTW_PHYS);
  }
  bool create(std::string& error) {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
    std::string tmpl = base + "/braidrun.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      error = "mkdtemp " + tmpl + ": " + std::strerror(errno);
      return false;
    }
    path_ = buf.data();
    return true;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ------------------------------------------------------------------ signals

int gWakeWrite = -1;                // self-pipe, written from signal handlers
volatile sig_atomic_t gSignal = 0;  // SIGINT/SIGTERM/SIGHUP received (first one)

void onSignal(int sig) {
  int saved = errno;
  if (sig != SIGCHLD && gSignal == 0) gSignal = sig;
  char c = 0;
  [[maybe_unused]] ssize_t n = ::write(gWakeWrite, &c, 1);
  errno = saved;
}

void installHandlers() {
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) ::sigaction(s, &sa, nullptr);
  // A closed stdout (braidrun ... | head) must not kill braidrun and orphan the ranks.
  ::signal(SIGPIPE, SIG_IGN);
}

std::string signalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev != nullptr) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

// ------------------------------------------------------------------ output tagging

void writeAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // our own output is gone (EPIPE): drop the text, keep managing the ranks
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

/// One child's stdout or stderr, read through a pipe and written out line by line.
struct TaggedStream {
  int fd = -1;    // read end; -1 once closed
  int outFd = 1;  // where its lines go (1 or 2)
  std::string prefix;
  std::string partial;  // a line not yet ended

  void emit(std::string_view line) {
    std::string s = prefix;
    s.append(line);
    s.push_back('\n');
    writeAll(outFd, s.data(), s.size());
  }
  /// Reads what is there; false at end of file (the stream is then closed and flushed).
  bool readSome() {
    char buf[65536];
    ssize_t n;
    do {
      n = ::read(fd, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) {
      close();
      return false;
    }
    partial.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1)
      emit(std::string_view(partial).substr(start, nl - start));
    partial.erase(0, start);
    return true;
  }
  void close() {
    if (!partial.empty()) emit(partial);  // a last line without its newline
    partial.clear();
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// ------------------------------------------------------------------ the job

struct Rank {
  pid_t pid = -1;
  bool running = false;
  int status = 0;  // waitpid's, once exited
};

/// Shell convention: 128+N for signal N.
int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

/// A CPU mask sized for `cpus` CPUs (glibc's cpu_set_t stops at 1024).
struct CpuSet {
  explicit CpuSet(int cpus) : bytes(CPU_ALLOC_SIZE(cpus)), set(CPU_ALLOC(cpus)) {
    if (set) CPU_ZERO_S(bytes, set);
  }
  ~CpuSet() { CPU_FREE(set); }
  CpuSet(const CpuSet&) = delete;
  CpuSet& operator=(const CpuSet&) = delete;
  size_t bytes;
  cpu_set_t* set;
};

/// The CPUs this process may run on, in increasing order.
bool allowedCpus(std::vector<int>& cpus, std::string& error) {
  for (int n = 1024; n <= (1 << 20); n *= 2) {
    CpuSet s(n);
    if (!s.set) {
      error = "cannot allocate a CPU set of " + std::to_string(n) + " CPUs";
      return false;
    }
    if (::sched_getaffinity(0, s.bytes, s.set) == 0) {
      cpus.clear();
      for (int c = 0; c < n; ++c)
        if (CPU_ISSET_S(static_cast<size_t>(c), s.bytes, s.set)) cpus.push_back(c);
      if (!cpus.empty()) return true;
      error = "sched_getaffinity: an empty CPU set";
      return false;
    }
    const int e = errno;
    if (e != EINVAL) {  // EINVAL: the kernel's mask is larger: try twice the size
      error = std::string("sched_getaffinity: ") + std::strerror(e);
      return false;
    }
  }
  error = "sched_getaffinity: the kernel's CPU mask is larger than 1048576 CPUs";
  return false;
}

class Job {
 public:
  explicit Job(const Options& o) : o_(o), ranks_(static_cast<size_t>(o.ranks)) {}

  int run(const std::string& store) {
    int wake[2];
    if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
      std::fprintf(stderr, "braidrun: pipe: %s\n", std::strerror(errno));
      return kExitSetup;
    }
    wakeRead_ = wake[0];
    gWakeWrite = wake[1];
    installHandlers();
    if (o_.bindCore || o_.reportBindings) {
      std::string error;
      if (!allowedCpus(cpus_, error)) {
        std::fprintf(stderr, "braidrun: cannot read the CPUs braidrun may run on: %s\n", error.c_str());
        return kExitSetup;
      }
    }

    for (int r = 0; r < o_.ranks; ++r) {
      int rc = spawn(r, store);
      if (rc != 0) {
        exitCode_ = rc;
        terminateAll();
        break;
      }
    }
    if (o_.timeoutSec)
      deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(*o_.timeoutSec));
    loop();
    return exitCode_.value_or(0);
  }

 private:
  /// Forks and execs rank `r`. Returns 0, or the exit code to leave with when PROGRAM
  /// cannot be executed (the child reports exec's errno through a close-on-exec pipe).
  int spawn(int r, const std::string& store) {
    int errPipe[2];
    if (::pipe2(errPipe, O_CLOEXEC) != 0) {
      std::fprintf(stderr, "braidrun: pipe: %s\n", std::strerror(errno));
      return kExitSetup;
    }
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (o_.tagOutput && (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)) {
      std::fprintf(stderr, "braidrun: pipe: %s\n", std::strerror(errno));
      return kExitSetup;
    }
    std::vector<char*> argv;
    for (const auto& a : o_.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::string rank = std::to_string(r), size = std::to_string(o_.ranks);

    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = ::fork();
    if (pid < 0) {
      std::fprintf(stderr, "braidrun: fork: %s\n", std::strerror(errno));
      return kExitSetup;
    }
    if (pid == 0) {
      // The child: default signal dispositions (SIG_IGN would survive exec), then exec.
      for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(s, SIG_DFL);
      if (o_.tagOutput) {
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
      }
      ::setenv("BRAID_RANK", rank.c_str(), 1);
      ::setenv("BRAID_WORLD_SIZE", size.c_str(), 1);
      ::setenv("BRAID_LOCAL_RANK", rank.c_str(), 1);
      ::setenv("BRAID_STORE", store.c_str(), 1);
      bindChild(r);
      ::execvp(argv[0], argv.data());
      int e = errno;
      [[maybe_unused]] ssize_t n = ::write(errPipe[1], &e, sizeof e);
      ::_exit(127);
    }
    ::close(errPipe[1]);
    if (o_.tagOutput) {
      ::close(out[1]);
      ::close(err[1]);
      std::string prefix = "[" + rank + "] ";
      for (auto [fd, to] : {std::pair{out[0], 1}, std::pair{err[0], 2}}) {
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        streams_.push_back(TaggedStream{fd, to, prefix, {}});
      }
    }
    auto& rk = ranks_[static_cast<size_t>(r)];
    rk.pid = pid;
    rk.running = true;
    int e = 0;
    ssize_t n;
    do {
      n = ::read(errPipe[0], &e, sizeof e);  // 0 bytes: exec succeeded (the pipe closed)
    } while (n < 0 && errno == EINTR);
    ::close(errPipe[0]);
    if (n == static_cast<ssize_t>(sizeof e)) {
      std::fprintf(stderr, "braidrun: cannot execute '%s': %s\n", o_.command[0].c_str(),
                   std::strerror(e));
      reported_ = true;  // its exit (127) is this message, not a rank failure
      return (e == ENOENT || e == ENOTDIR) ? 127 : 126;
    }
    return 0;
  }

  bool anyRunning() const {
    for (const auto& r : ranks_)
      if (r.running) return true;
    return false;
  }

  void signalRunning(int sig) {
    for (const auto& r : ranks_)
      if (r.running) ::kill(r.pid, sig);
  }

  /// SIGTERM now, SIGKILL after the grace period to whoever is still there.
  void terminateAll() {
    if (killAt_) return;
    signalRunning(SIGTERM);
    killAt_ = Clock::now() + kKillGrace;
  }

  void reap() {
    for (;;) {
      int st = 0;
      pid_t pid = ::waitpid(-1, &st, WNOHANG);
      if (pid <= 0) return;
      for (size_t r = 0; r < ranks_.size(); ++r) {
        auto& rk = ranks_[r];
        if (rk.pid != pid || !rk.running) continue;
        rk.running = false;
        rk.status = st;
        bool failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (failed && !exitCode_ && !reported_) {
          if (WIFSIGNALED(st))
            std::fprintf(stderr, "braidrun: rank %zu (pid %d) was killed by signal %s\n", r,
                         static_cast<int>(pid), signalName(WTERMSIG(st)).c_str());
          else
            std::fprintf(stderr, "braidrun: rank %zu (pid %d) exited with code %d\n", r,
                         static_cast<int>(pid), exitCodeOf(st));
          exitCode_ = exitCodeOf(st);
          terminateAll();
        }
      }
    }
  }

  void onTimeout() {
    std::string still;
    for (size_t r = 0; r < ranks_.size(); ++r)
      if (ranks_[r].running)
        still += " " + std::to_string(r) + " (pid " + std::to_string(ranks_[r].pid) + ")";
    std::fprintf(stderr, "braidrun: timed out after %g s; ranks still running:%s\n", *o_.timeoutSec,
                 still.c_str());
    if (!exitCode_) exitCode_ = kExitTimeout;
    reported_ = true;
    terminateAll();
  }

  void onSignal(int sig) {
    std::fprintf(stderr, "braidrun: got %s, forwarding it to the ranks\n", signalName(sig).c_str());
    signalRunning(sig);
    if (!exitCode_) exitCode_ = 128 + sig;
    reported_ = true;
    if (!killAt_) killAt_ = Clock::now() + kKillGrace;
  }

  /// Milliseconds until the nearest deadline (-1: none).
  int pollTimeout(std::optional<Clock::time_point> extra) const {
    std::optional<Clock::time_point> next;
    for (auto d : {deadline_, killAt_, extra})
      if (d && (!next || *d < *next)) next = d;
    if (!next) return -1;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*next - Clock::now()).count();
    return ms < 0 ? 0 : static_cast<int>(ms + 1);
  }

  void loop() {
    // Once every rank has exited, their output pipes are drained to EOF; a grandchild that
    // keeps one open is not waited for more than this.
    constexpr auto kDrainLimit = std::chrono::seconds(2);
    std::optional<Clock::time_point> drainUntil;
    bool signalSeen = false;
    for (;;) {
      reap();
      if (gSignal != 0 && !signalSeen) {
        signalSeen = true;
        onSignal(gSignal);
      }
      auto now = Clock::now();
      if (deadline_ && now >= *deadline_) {
        deadline_.reset();
        if (anyRunning()) onTimeout();
      }
      if (killAt_ && now >= *killAt_) {
        signalRunning(SIGKILL);
        killAt_.reset();
      }
      bool streamsOpen = false;
      for (const auto& s : streams_) streamsOpen = streamsOpen || s.fd >= 0;
      if (!anyRunning()) {
        if (!streamsOpen) return;
        if (!drainUntil) drainUntil = now + kDrainLimit;
        if (now >= *drainUntil) {
          for (auto& s : streams_) s.close();
          return;
        }
      }

      std::vector<pollfd> fds;
      fds.push_back({wakeRead_, POLLIN, 0});
      for (const auto& s : streams_)
        if (s.fd >= 0) fds.push_back({s.fd, POLLIN, 0});
      int n = ::poll(fds.data(), fds.size(), pollTimeout(drainUntil));
      if (n < 0) {
        if (errno == EINTR) continue;
        std::fprintf(stderr, "braidrun: poll: %s\n", std::strerror(errno));
        return;
      }
      if (fds[0].revents != 0) {
        char buf[256];
        while (::read(wakeRead_, buf, sizeof buf) > 0) {
        }
      }
      size_t k = 1;
      for (auto& s : streams_) {
        if (s.fd < 0) continue;
        if (fds[k].fd == s.fd && fds[k].revents != 0) s.readSome();
        ++k;
      }
    }
  }

  /// In the child, before exec: --bind-to core pins rank `r` to one CPU of braidrun's set.
  void bindChild(int r) {
    if (cpus_.empty()) return;
    int cpu = cpus_[static_cast<size_t>(r) % cpus_.size()];
    if (o_.bindCore) {
      CpuSet set(cpu + 1);
      CPU_SET_S(static_cast<size_t>(cpu), set.bytes, set.set);
      if (::sched_setaffinity(0, set.bytes, set.set) != 0) {
        std::fprintf(stderr, "braidrun: rank %d: cannot bind to CPU %d: %s (try --bind-to none)\n", r,
                     cpu, std::strerror(errno));
        ::_exit(kExitSetup);
      }
    }
    if (o_.reportBindings) {
      std::string list = std::to_string(cpu);
      if (!o_.bindCore) {
        list.clear();
        for (int c : cpus_) list += (list.empty() ? "" : ",") + std::to_string(c);
      }
      std::fprintf(stderr, "braidrun: rank %d (pid %d) runs on CPU%s %s\n", r, static_cast<int>(::getpid()),
                   !o_.bindCore && cpus_.size() > 1 ? "s" : "", list.c_str());
    }
  }

  const Options& o_;
  std::vector<int> cpus_;  // braidrun's own CPU set, when binding or reporting
  std::vector<Rank> ranks_;
  std::vector<TaggedStream> streams_;
  int wakeRead_ = -1;
  std::optional<int> exitCode_;  // the first failure's code
  bool reported_ = false;        // a failure already explained (exec, timeout, signal)
  std::optional<Clock::time_point> deadline_;  // --timeout
  std::optional<Clock::time_point> killAt_;    // SIGKILL to the survivors
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parseArgs(argc, argv);

  std::string store, error;
  TempDir dir;
  if (o.fileStore) {
    if (!dir.create(error)) {
      std::fprintf(stderr, "braidrun: cannot create the file store: %s\n", error.c_str());
      return kExitSetup;
    }
    store = "file:" + dir.path();
  } else {
    auto port = pickFreePort(error);
    if (!port) {
      std::fprintf(stderr, "braidrun: cannot find a free port for the store: %s\n", error.c_str());
      return kExitSetup;
    }
    store = "127.0.0.1:" + std::to_string(*port);
  }
  Job job(o);
  return job.run(store);
}
