// The perf tools facing a hostile peer: this test connects to a real tool server (built
// in this tree, over TCP on loopback) and sends it forged control messages, or plays the
// server to a real tool client and answers with forged replies. Each tool must report the
// error, naming the peer and the field, and exit 1: no crash, no hang (the sanitizer
// builds run this too, so a heap overflow fails it).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "braid/transport.h"
#include "control_msgs.h"

namespace braid::perf {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

uint16_t randomPort() {
  static std::mt19937 rng{std::random_device{}()};
  return static_cast<uint16_t>(std::uniform_int_distribution<int>(20000, 60000)(rng));
}

/// A tool of this build as a child process, stdout and stderr in files.
class ToolProc {
 public:
  ToolProc(const std::string& tool, const std::vector<std::string>& args) {
    char tmpl[] = "/tmp/braid-hostile.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    const std::string path = std::string(BRAID_PERF_DIR) + "/" + tool;
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      setenv("BRAID_SOCKET_IFNAME", "lo", 1);
      int out = open((dir_ + "/out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = open((dir_ + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(err, 2);
      std::vector<char*> argv{const_cast<char*>(path.c_str())};
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(path.c_str(), argv.data());
      _exit(127);
    }
  }
  ~ToolProc() {
    if (pid_ > 0 && status_ == kRunning) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::remove((dir_ + "/out").c_str());
    std::remove((dir_ + "/err").c_str());
    rmdir(dir_.c_str());
  }
  std::string out() const { return slurp(dir_ + "/out"); }
  std::string err() const { return slurp(dir_ + "/err"); }

  /// Waits until a server printed its address: true, or false when it exited first.
  bool waitListening() {
    for (int i = 0; i < 1000; ++i) {
      if (out().find("listening at") != std::string::npos) return true;
      if (poll() != kRunning) return false;
      std::this_thread::sleep_for(10ms);
    }
    FAIL("the tool did not start listening within 10 s");
    return false;
  }
  /// The exit code (>= 0), minus the signal that killed it, or kRunning after `limit`
  /// (then it is killed).
  int waitExit(std::chrono::milliseconds limit = 30s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (poll() == kRunning && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(10ms);
    return status_;
  }
  static constexpr int kRunning = INT_MIN;

 private:
  int poll() {
    if (status_ != kRunning) return status_;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_)
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    return status_;
  }
  std::string dir_;
  pid_t pid_ = -1;
  int status_ = kRunning;
};

ContextOptions loopback() {
  ContextOptions o;
  o.transport = Transport::kTcp;
  o.socketIfname = "lo";
  o.jobToken = kDefaultToken;
  return o;
}

/// This test's side of a connection: a context, a worker and one endpoint.
struct Peer {
  std::shared_ptr<Context> ctx;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Endpoint> ep;

  Peer() {
    auto c = Context::create(loopback());
    REQUIRE(c.isOk());
    ctx = std::move(c).value();
    auto w = Worker::create(ctx);
    REQUIRE(w.isOk());
    worker = std::move(w).value();
  }
  void connect(uint16_t port) {
    auto addr = Address::fromHostPort("127.0.0.1", port, kDefaultToken);
    REQUIRE(addr.isOk());
    auto e = Endpoint::connect(*worker, *addr);
    REQUIRE(e.isOk());
    Status st = (*e)->waitConnected(10s);
    INFO(st.toString());
    REQUIRE(st.isOk());
    ep = std::move(e).value();
  }
  /// Listens on a free port (returned) for a tool client.
  uint16_t listen() {
    for (int attempt = 0; attempt < 20; ++attempt) {
      ListenOptions lo;
      lo.port = randomPort();
      lo.jobToken = kDefaultToken;
      auto l = Listener::create(*worker, lo);
      if (!l) continue;
      listener = std::move(l).value();
      return lo.port;
    }
    FAIL("no free port to listen on");
    return 0;
  }
  void accept() {
    auto e = listener->waitAccept(10s);
    INFO(e.status().toString());
    REQUIRE(e.isOk());
    ep = std::move(e).value();
  }
  void send(const void* p, size_t len, uint64_t tag) {
    auto r = ep->isend(p, len, tag);
    REQUIRE(r.isOk());
    Status st = r->wait(10s);
    INFO(st.toString());
    REQUIRE(st.isOk());
  }
  template <typename T>
  void send(const T& m, uint64_t tag) {
    send(&m, sizeof m, tag);
  }
};

/// A started tool server on a free port, and this test connected to it.
struct ServerUnderTest {
  std::unique_ptr<ToolProc> proc;
  Peer peer;
  explicit ServerUnderTest(const std::string& tool) {
    for (int attempt = 0; attempt < 10 && !proc; ++attempt) {
      const uint16_t port = randomPort();
      proc = std::make_unique<ToolProc>(
          tool, std::vector<std::string>{"--transport", "tcp", "-p", std::to_string(port)});
      if (!proc->waitListening()) {  // the port was taken: another one
        proc.reset();
        continue;
      }
      peer.connect(port);
    }
    REQUIRE(proc);
  }
};

/// The server refused, told us why (when `refused`), exited 1, and said why on stderr.
void expectRejected(ServerUnderTest& s, Request* reply, const ReplyMsg* msg,
                    const std::string& expect) {
  if (reply) {
    Status st = reply->wait(10s);
    INFO(st.toString());
    REQUIRE(st.isOk());
    CHECK(msg->type == static_cast<uint8_t>(ReplyType::kRefuse));
    CHECK(textOf(msg->text, sizeof msg->text).find(expect.substr(0, 60)) != std::string::npos);
  }
  const int rc = s.proc->waitExit();
  const std::string err = s.proc->err();
  INFO("server stderr: " << err);
  CHECK(rc == 1);  // not a signal (-6: an abort, a sanitizer report), not a hang
  CHECK(err.find("error:") != std::string::npos);
  CHECK(err.find("client 127.0.0.1:") != std::string::npos);
  CHECK(err.find(expect) != std::string::npos);
  CHECK(err.find("AddressSanitizer") == std::string::npos);
}

TestMsg sendBwTest() {
  TestMsg t;
  t.tool = static_cast<uint8_t>(ToolKind::kSendBw);
  t.command = static_cast<uint8_t>(TestCommand::kRun);
  t.txDepth = 16;
  t.size = 4096;
  t.iters = 10;
  t.warmup = 10;
  return t;
}

struct Forged {
  const char* what;
  std::vector<uint8_t> bytes;
  std::string expect;
};

template <typename T>
std::vector<uint8_t> bytesOf(const T& m, size_t len = sizeof(T)) {
  std::vector<uint8_t> b(len, 0xab);
  std::memcpy(b.data(), &m, std::min(len, sizeof m));
  return b;
}

std::vector<Forged> forgedTests() {
  std::vector<Forged> v;
  TestMsg t = sendBwTest();
  t.size = kU64Max;
  v.push_back({"huge size", bytesOf(t),
               "asked for a 18446744073709551615-byte message; the limit is 1 to 2147483648 "
               "bytes (2 GiB)"});
  t = sendBwTest();
  t.iters = kU64Max;
  v.push_back({"huge iters", bytesOf(t), "asked for 18446744073709551615 iterations"});
  t = sendBwTest();
  t.command = 7;
  v.push_back({"unknown command", bytesOf(t), "sent test command 7"});
  t = sendBwTest();
  t.iters = 0;
  t.warmup = 0;
  v.push_back({"zero iters", bytesOf(t), "asked for 0 iterations"});
  t = sendBwTest();
  t.warmup = kU64Max;
  v.push_back(
      {"warm-up overflow", bytesOf(t), "asked for a warm-up of 18446744073709551615 messages"});
  t = sendBwTest();
  t.txDepth = 0;
  v.push_back({"zero tx depth", bytesOf(t), "tx depth of 0"});
  t = sendBwTest();
  t.tool = 99;
  v.push_back({"unknown tool", bytesOf(t), "runs another tool (tool kind 99)"});
  t = sendBwTest();
  t.size = 1ull << 31;
  t.txDepth = 4096;
  t.iters = 10000;
  t.warmup = 4096;
  t.flags = kFlagValidate;
  v.push_back(
      {"buffers above the limit", bytesOf(t), "asked for 4096 buffers of 2147483648 bytes"});
  v.push_back({"short message", bytesOf(sendBwTest(), 39),
               "sent 39 bytes of test parameters; 40 expected"});
  v.push_back(
      {"long message", bytesOf(sendBwTest(), 300), "sent more than 256 bytes of test parameters"});
  return v;
}

}  // namespace

TEST_CASE(
    "a tool server refuses forged test messages, names the client and the field, and "
    "exits 1") {
  for (const Forged& f : forgedTests()) {
    INFO("forged test message: " << f.what);
    ServerUnderTest s("braid_send_bw");
    ReplyMsg reply;
    auto rq = s.peer.ep->irecv(&reply, sizeof reply, kTagReply);
    REQUIRE(rq.isOk());
    s.peer.send(f.bytes.data(), f.bytes.size(), kTagTest);
    // Data as a client sends it after the test message: a server that believed the forged
    // size would receive it into a buffer sized from it (an eager message: it goes out
    // whether or not the server posted a receive).
    std::vector<uint8_t> data(8192, 0x5a);
    s.peer.send(data.data(), data.size(), kTagData);
    expectRejected(s, &*rq, &reply, f.expect);
  }
}

TEST_CASE("a one-sided tool server rejects a forged end of size and exits 1") {
  struct Case {
    const char* what;
    RmaEndMsg m;
    size_t len;
    std::string expect;
  };
  std::vector<Case> cases;
  RmaEndMsg m;
  m.slots = 0xffffffffu;
  cases.push_back({"huge slot table", m, sizeof m, "sent a table of 4294967295 slots; 0 expected"});
  m = RmaEndMsg();
  m.code = 200;
  cases.push_back({"unknown error code", m, sizeof m, "sent error code 200"});
  m = RmaEndMsg();
  m.iters = kU64Max;
  m.elapsedNs = 1;
  cases.push_back({"huge iters", m, sizeof m, "reports 18446744073709551615 timed operations"});
  m = RmaEndMsg();
  m.iters = 10;
  m.elapsedNs = 1'000'000;
  m.peakBps = kU64Max;
  cases.push_back({"impossible peak", m, sizeof m, "a peak lies between the average"});
  cases.push_back({"short message", RmaEndMsg(), 100, "sent 100 bytes of end of size"});
  for (const Case& c : cases) {
    INFO("forged end of size: " << c.what);
    // Over TCP the server has no remote key to give, but it still waits for the client's
    // end of size, which is what is forged here.
    ServerUnderTest s("braid_write_bw");
    ReplyMsg ready;
    KeyMsg key;
    auto rq = s.peer.ep->irecv(&ready, sizeof ready, kTagReply);
    auto kq = s.peer.ep->irecv(&key, sizeof key, kTagKey);
    REQUIRE(rq.isOk());
    REQUIRE(kq.isOk());
    TestMsg t = sendBwTest();
    t.tool = static_cast<uint8_t>(ToolKind::kWriteBw);
    s.peer.send(t, kTagTest);
    REQUIRE(rq->wait(10s).isOk());
    REQUIRE(ready.type == static_cast<uint8_t>(ReplyType::kReady));
    REQUIRE(kq->wait(10s).isOk());
    std::vector<uint8_t> b(std::max(c.len, sizeof c.m), 0);
    std::memcpy(b.data(), &c.m, sizeof c.m);
    s.peer.send(b.data(), c.len, kTagRmaEnd);
    expectRejected(s, nullptr, nullptr, c.expect);
  }
}

namespace {

/// A tool client against this test as its server: reads the client's TestMsg and answers
/// kReady; `answer` sends the rest. The client must exit 1 with `expect` on stderr.
template <typename Answer>
void clientFacesForgedServer(const std::string& tool, const std::string& expect, Answer answer) {
  Peer server;
  const uint16_t port = server.listen();
  ToolProc client(tool, {"127.0.0.1", "-p", std::to_string(port), "--transport", "tcp", "-s",
                         "4096", "-n", "10"});
  server.accept();
  alignas(8) uint8_t raw[256];
  auto tq = server.ep->irecv(raw, sizeof raw, kTagTest);
  REQUIRE(tq.isOk());
  REQUIRE(tq->wait(10s).isOk());
  TestMsg t;
  REQUIRE(tq->size() == sizeof t);
  std::memcpy(&t, raw, sizeof t);
  ReplyMsg ready;
  ready.type = static_cast<uint8_t>(ReplyType::kReady);
  server.send(ready, kTagReply);
  answer(server, t);
  const int rc = client.waitExit();
  const std::string err = client.err();
  INFO("client stderr: " << err);
  CHECK(rc == 1);
  CHECK(err.find("error:") != std::string::npos);
  CHECK(err.find("127.0.0.1") != std::string::npos);
  CHECK(err.find(expect) != std::string::npos);
  CHECK(err.find("AddressSanitizer") == std::string::npos);
}

}  // namespace

TEST_CASE("a tool client rejects a server's end of size with out-of-range fields") {
  SECTION("more bad messages than checked") {
    clientFacesForgedServer("braid_send_bw", "reports 5 bad messages of 0 checked",
                            [](Peer& server, const TestMsg&) {
                              ReplyMsg warmed;
                              warmed.type = static_cast<uint8_t>(ReplyType::kWarmedUp);
                              server.send(warmed, kTagReply);
                              ReplyMsg done;
                              done.type = static_cast<uint8_t>(ReplyType::kDone);
                              done.badMessages = 5;
                              server.send(done, kTagReply);
                            });
  }
  SECTION("a peak no interval allows") {
    clientFacesForgedServer("braid_send_bw", "a peak lies between the average and ten times it",
                            [](Peer& server, const TestMsg& t) {
                              ReplyMsg warmed;
                              warmed.type = static_cast<uint8_t>(ReplyType::kWarmedUp);
                              server.send(warmed, kTagReply);
                              ReplyMsg done;
                              done.type = static_cast<uint8_t>(ReplyType::kDone);
                              done.elapsedNs = 1000;
                              done.bytes = t.iters * t.size;
                              done.peakBps = kU64Max;
                              server.send(done, kTagReply);
                            });
  }
  SECTION("a remote key of a region too small") {
    clientFacesForgedServer("braid_write_bw",
                            "sent the key of a 5-byte region; this test needs 4096 bytes",
                            [](Peer& server, const TestMsg&) {
                              KeyMsg key;
                              key.valid = 1;
                              key.length = 5;
                              server.send(key, kTagKey);
                            });
  }
}

}  // namespace braid::perf
