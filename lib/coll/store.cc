// lib/coll/store.cc — the TCP store (served by one process from a thread, the others its
// clients) and the prefix store.
//
// Wire protocol (version 1). Every integer is fixed-width little-endian.
//
//   frame   := u32 length | body          length = bytes of body, 1..kMaxFrameBody
//   body    := u8 type | fields of the type
//   str     := u32 n | n bytes            keys: n <= 4 KiB; values: n <= 64 MiB
//
//   client -> server                      server -> client
//   1  hello    u32 magic "BIDS"          64 hello-ok   (nothing)
//               u16 version (1)           65 reject     str reason (then it closes)
//               u64 job token             66 ok         (nothing)
//   2  set      str key, str value        67 value      str value
//   3  get      str key, u32 timeout ms   68 int        i64 value
//               (0xffffffff: no bound)    69 bool       u8 0|1
//   4  add      str key, i64 delta        70 timed-out  (get: the key was not set in time)
//   5  erase    str key                   71 error      u8 braid::Code, str message
//   6  contains str key
//
// The first frame of a connection is a hello; the server answers hello-ok, or reject and
// closes. Then each request gets exactly one reply, in order (the client sends one request
// at a time). A get on an unset key is parked on the server until the key is set or its
// timeout passes: clients never poll. A frame that is oversized, of an unknown type, or whose
// fields do not fill it exactly closes that connection only.
//
// The server is one thread polling the listening socket, an eventfd (stop, and sets made by
// the serving process itself) and every client, all non-blocking. The serving process's own
// Store reads and writes the same map directly, under the map's mutex.
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "braid/coll.h"
#include "coll/store_internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "tcp/socket.h"

namespace braid::coll {

namespace detail {

Status checkKey(const std::string& key) {
  if (key.empty()) return Status(Code::kInvalidArgument, "store keys must not be empty");
  if (key.size() > kMaxKeyBytes)
    return Status(Code::kInvalidArgument,
                  fmt::format("store key '{}...' is {} bytes long; keys are limited to {} bytes",
                              key.substr(0, 64), key.size(), kMaxKeyBytes));
  return Status::ok();
}

Status checkValue(const std::string& key, const std::string& value) {
  if (value.size() > kMaxValueBytes)
    return Status(Code::kInvalidArgument,
                  fmt::format("the value for store key '{}' is {} bytes; values are limited to "
                              "{} MiB",
                              key, value.size(), kMaxValueBytes >> 20));
  return Status::ok();
}

Result<int64_t> addToStored(const std::string& key, const std::string* stored, int64_t delta) {
  int64_t current = 0;
  if (stored != nullptr && !stored->empty()) {
    const char* first = stored->data();
    const char* last = first + stored->size();
    auto [ptr, ec] = std::from_chars(first, last, current);
    if (ec != std::errc() || ptr != last)
      return Status(Code::kInvalidArgument,
                    fmt::format("store key '{}' holds a value that is not a decimal integer "
                                "({} bytes): add() only works on keys set by add() or to "
                                "decimal text",
                                key, stored->size()));
  }
  int64_t sum = 0;
  if (__builtin_add_overflow(current, delta, &sum))
    return Status(
        Code::kInvalidArgument,
        fmt::format("add({}) to store key '{}' (now {}) overflows 64 bits", delta, key, current));
  return sum;
}

}  // namespace detail

namespace {

using detail::Frame;
using detail::kMaxFrameBody;
using detail::kMaxKeyBytes;
using detail::kMaxValueBytes;

constexpr uint32_t kNoTimeout = 0xffffffffu;
// The longest frame (a set: type, key, value) must be describable by its u32 length.
static_assert(uint64_t{1} + 4 + kMaxKeyBytes + 4 + kMaxValueBytes == kMaxFrameBody);
static_assert(kMaxFrameBody < UINT32_MAX, "frame lengths are u32");
// A connection whose unsent replies exceed this is not read until they drain (backpressure:
// a client that sends without reading cannot grow the server's memory without bound).
constexpr size_t kOutputHighWater = size_t{1} << 20;
// At most this much is read from one client per poll round, so that one fast writer cannot
// starve the others.
constexpr size_t kReadBudget = size_t{4} << 20;

// Saturating: a timeout of milliseconds::max() means "no bound".
uint64_t deadlineAfter(std::chrono::milliseconds t) {
  uint64_t now = core::nowNs();
  if (t.count() <= 0) return now;
  constexpr int64_t kMaxMs = int64_t{1} << 40;  // ~35 years: as good as forever
  if (t.count() >= kMaxMs) return UINT64_MAX;
  return now + static_cast<uint64_t>(t.count()) * 1000000ull;
}

std::string hostPort(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

// ---- frame encoding ----

class FrameWriter {
 public:
  explicit FrameWriter(Frame type) {
    buf_.resize(4);
    buf_.push_back(static_cast<char>(type));
  }
  FrameWriter& u8(uint8_t v) {
    buf_.push_back(static_cast<char>(v));
    return *this;
  }
  FrameWriter& u16(uint16_t v) { return le(v, 2); }
  FrameWriter& u32(uint32_t v) { return le(v, 4); }
  FrameWriter& u64(uint64_t v) { return le(v, 8); }
  FrameWriter& i64(int64_t v) { return le(static_cast<uint64_t>(v), 8); }
  FrameWriter& str(const std::string& s) {
    u32(static_cast<uint32_t>(s.size()));
    buf_.append(s);
    return *this;
  }
  std::string finish() {  // leaves the writer empty
    uint32_t len = static_cast<uint32_t>(buf_.size() - 4);
    for (int i = 0; i < 4; ++i) buf_[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    return std::move(buf_);
  }

 private:
  FrameWriter& le(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) buf_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  std::string buf_;
};

uint64_t loadLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// Reads the fields of one frame body; every read is bounds-checked and a failed read makes
// every later one fail, so a handler checks once (ok()) at the end.
class FrameReader {
 public:
  FrameReader(const char* p, size_t n) : p_(p), n_(n) {}
  uint8_t u8() { return static_cast<uint8_t>(take(1)); }
  uint16_t u16() { return static_cast<uint16_t>(take(2)); }
  uint32_t u32() { return static_cast<uint32_t>(take(4)); }
  uint64_t u64() { return take(8); }
  int64_t i64() { return static_cast<int64_t>(take(8)); }
  std::string str(size_t max) {
    uint32_t len = u32();
    if (!ok_ || len > max || n_ - pos_ < len) {
      ok_ = false;
      return {};
    }
    std::string s(p_ + pos_, len);
    pos_ += len;
    return s;
  }
  /// Every read fitted and the body was consumed exactly.
  bool ok() const { return ok_ && pos_ == n_; }

 private:
  uint64_t take(int bytes) {
    if (!ok_ || n_ - pos_ < static_cast<size_t>(bytes)) {
      ok_ = false;
      return 0;
    }
    uint64_t v = loadLe(p_ + pos_, bytes);
    pos_ += static_cast<size_t>(bytes);
    return v;
  }
  const char* p_;
  size_t n_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// ---- the key map ----

struct KvState {
  std::mutex mu;
  std::condition_variable cv;  // signalled on every set/add: local get()s wait on it
  std::unordered_map<std::string, std::string> map;
  size_t localWaiters = 0;  // local get()s waiting (ServedStats)
};

// ---- the server thread ----

class TcpStoreServer {
 public:
  static Result<std::unique_ptr<TcpStoreServer>> start(const TcpStoreOptions& o,
                                                       std::shared_ptr<KvState> kv) {
    std::unique_ptr<TcpStoreServer> s(new TcpStoreServer(std::move(kv), o.jobToken));
    bool wildcard = o.host.empty() || o.host == "0.0.0.0" || o.host == "::";
    std::string shown = o.host.empty() ? "0.0.0.0" : o.host;
    tcp::SockAddr addr;
    if (wildcard) {
      addr = tcp::SockAddr::any(o.host == "::" ? AF_INET6 : AF_INET);
      addr.setPort(o.port);
    } else {
      auto r = tcp::SockAddr::resolve(o.host, o.port);
      if (!r)
        return r.status().withContext(
            fmt::format("cannot serve the TCP store on {}", hostPort(shown, o.port)));
      addr = *r;
    }
    auto fd = tcp::listenOn(addr);
    if (!fd)
      return fd.status().withContext(
          fmt::format("cannot serve the TCP store on {}", hostPort(shown, o.port)));
    s->listen_ = std::move(*fd);
    auto local = tcp::localAddress(s->listen_.get());
    if (!local) return local.status();
    s->port_ = local->port();
    s->where_ = hostPort(shown, s->port_);
    s->wake_ = tcp::Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!s->wake_.valid())
      return Status(Code::kSystemError,
                    fmt::format("eventfd for the TCP store on {}: {} (errno {})", s->where_,
                                std::strerror(errno), errno));
    TcpStoreServer* raw = s.get();
    s->thread_ = std::thread([raw] { raw->run(); });
    BRAID_LOG_INFO(kColl, "TCP store serving on {} ({})", s->where_, addr.toString());
    return s;
  }

  ~TcpStoreServer() {
    stop_.store(true);
    wake();
    if (thread_.joinable()) thread_.join();
  }

  uint16_t port() const { return port_; }
  const std::string& where() const { return where_; }

  /// The serving process changed the map: parked gets may now be answerable.
  void wake() noexcept {
    uint64_t one = 1;
    // A full eventfd counter (EAGAIN) already means "wake up": nothing is lost.
    ssize_t rc = ::write(wake_.get(), &one, sizeof one);
    (void)rc;
  }

  detail::ServedStats stats() const {
    detail::ServedStats st;
    st.clients = clients_.load();
    st.pendingGets = pending_.load();
    return st;
  }

 private:
  struct Conn {
    tcp::Fd fd;
    std::string peer;
    std::string in;   // received bytes not yet parsed
    std::string out;  // replies not yet sent, from outOff
    size_t outOff = 0;
    bool hello = false;    // the hello was accepted
    bool closing = false;  // close once `out` is flushed (after a reject)
    bool eof = false;      // the peer closed its side
    bool dead = false;     // to be closed at the end of this round
    bool pending = false;  // a get is parked
    std::string pendingKey;
    uint64_t pendingDeadline = 0;
    size_t unsent() const { return out.size() - outOff; }
  };

  TcpStoreServer(std::shared_ptr<KvState> kv, uint64_t token) : kv_(std::move(kv)), token_(token) {}

  void run() {
    std::vector<pollfd> pfds;
    while (!stop_.load()) {
      pfds.clear();
      pfds.push_back({wake_.get(), POLLIN, 0});
      pfds.push_back({listen_.get(), POLLIN, 0});
      uint64_t now = core::nowNs();
      int timeoutMs = -1;
      for (auto& c : conns_) {
        short ev = POLLRDHUP;
        if (c->unsent() > 0) ev |= POLLOUT;
        if (!c->closing && !c->pending && !c->eof && c->unsent() < kOutputHighWater) ev |= POLLIN;
        pfds.push_back({c->fd.get(), ev, 0});
        if (c->pending && c->pendingDeadline != UINT64_MAX) {
          uint64_t left = c->pendingDeadline > now ? c->pendingDeadline - now : 0;
          int ms = static_cast<int>(std::min<uint64_t>((left + 999999) / 1000000, INT_MAX));
          timeoutMs = timeoutMs < 0 ? ms : std::min(timeoutMs, ms);
        }
      }
      int n = ::poll(pfds.data(), pfds.size(), timeoutMs);
      if (n < 0) {
        if (errno == EINTR) continue;
        BRAID_LOG_WARN(kColl, "TCP store on {}: poll: {} (errno {})", where_, std::strerror(errno),
                       errno);
        continue;
      }
      if (pfds[0].revents != 0) {
        uint64_t v;
        ssize_t rc = ::read(wake_.get(), &v, sizeof v);
        (void)rc;
      }
      if (stop_.load()) break;
      size_t polled = pfds.size() - 2;  // conns_ accepted below are polled next round
      for (size_t i = 0; i < polled; ++i) onEvents(*conns_[i], pfds[i + 2].revents);
      if (pfds[1].revents & POLLIN) acceptAll();
      // A set handled for one client may answer another's parked get, serviced earlier in
      // the round: go round again until nothing changes the map.
      do {
        changed_ = false;
        for (auto& c : conns_) service(*c);
      } while (changed_);
      size_t before = conns_.size();
      conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                                  [](const std::unique_ptr<Conn>& c) { return c->dead; }),
                   conns_.end());
      if (conns_.size() != before) clients_.store(conns_.size());
      size_t parked = 0;
      for (auto& c : conns_) parked += c->pending ? 1 : 0;
      pending_.store(parked);
    }
    // Closing every client here (their fds, via conns_) lets them see the server go.
    size_t open = conns_.size();
    conns_.clear();
    clients_.store(0);
    pending_.store(0);
    BRAID_LOG_INFO(kColl, "TCP store on {} stopped ({} clients were connected)", where_, open);
  }

  void acceptAll() {
    for (;;) {
      tcp::SockAddr peer;
      auto fd = tcp::acceptOne(listen_.get(), &peer, tcp::SocketTuning{});
      if (!fd) {
        if (fd.status().code() != Code::kInProgress)
          BRAID_LOG_WARN(kColl, "TCP store on {}: {}", where_, fd.status().toString());
        return;
      }
      auto c = std::make_unique<Conn>();
      c->fd = std::move(*fd);
      c->peer = peer.toString();
      BRAID_LOG_DEBUG(kColl, "TCP store on {}: client {} connected", where_, c->peer);
      conns_.push_back(std::move(c));
      clients_.store(conns_.size());
    }
  }

  void drop(Conn& c, const std::string& why, bool warn) {
    if (c.dead) return;
    if (warn)
      BRAID_LOG_WARN(kColl, "TCP store on {}: closing client {}: {}", where_, c.peer, why);
    else
      BRAID_LOG_DEBUG(kColl, "TCP store on {}: client {} {}", where_, c.peer, why);
    c.dead = true;
  }

  void onEvents(Conn& c, short rev) {
    if (rev == 0 || c.dead) return;
    if (rev & (POLLERR | POLLNVAL)) {
      drop(c, "socket error (the client was killed or its host is gone?)", false);
      return;
    }
    if (rev & POLLOUT) flush(c);
    if ((rev & POLLIN) && !c.dead) readIn(c);
    // Hung up without our asking to read (a parked get): the client is gone.
    if ((rev & (POLLHUP | POLLRDHUP)) && !(rev & POLLIN)) c.eof = true;
  }

  void readIn(Conn& c) {
    char buf[65536];
    size_t got = 0;
    while (got < kReadBudget) {
      auto r = tcp::readSome(c.fd.get(), buf, sizeof buf, c.peer);
      if (!r) {
        drop(c, r.status().message(), false);
        return;
      }
      if (r->eof) {
        c.eof = true;
        return;
      }
      if (r->wouldBlock) return;
      c.in.append(buf, r->bytes);
      got += r->bytes;
    }
  }

  void flush(Conn& c) {
    while (c.unsent() > 0) {
      iovec iov{c.out.data() + c.outOff, c.unsent()};
      auto r = tcp::writeSomeV(c.fd.get(), &iov, 1, c.peer);
      if (!r) {
        drop(c, r.status().message(), false);
        return;
      }
      if (r->wouldBlock) return;
      c.outOff += r->bytes;
    }
    c.out.clear();
    c.outOff = 0;
    if (c.closing) drop(c, "was refused and closed", false);
  }

  void reply(Conn& c, std::string frame) {
    if (c.unsent() == 0) {
      c.out = std::move(frame);
      c.outOff = 0;
    } else {
      c.out.append(frame);
    }
  }

  void replyError(Conn& c, const Status& st) {
    reply(
        c,
        FrameWriter(Frame::kError).u8(static_cast<uint8_t>(st.code())).str(st.message()).finish());
  }

  void service(Conn& c) {
    if (c.dead) return;
    if (c.pending) {
      std::string value;
      bool found = false;
      {
        std::lock_guard<std::mutex> lk(kv_->mu);
        auto it = kv_->map.find(c.pendingKey);
        if (it != kv_->map.end()) {
          value = it->second;
          found = true;
        }
      }
      if (found) {
        // Counted off before the reply leaves: a client that has its value sees the stats agree.
        c.pending = false;
        pending_.fetch_sub(1);
        reply(c, FrameWriter(Frame::kValue).str(value).finish());
      } else if (c.eof) {
        drop(c, "closed the connection while waiting for a key", false);
        return;
      } else if (core::nowNs() >= c.pendingDeadline) {
        c.pending = false;
        pending_.fetch_sub(1);
        reply(c, FrameWriter(Frame::kTimedOut).finish());
      }
    }
    size_t off = 0;
    while (!c.dead && !c.closing && !c.pending && (c.eof || c.unsent() < kOutputHighWater) &&
           c.in.size() - off >= 4) {
      uint32_t len = static_cast<uint32_t>(loadLe(c.in.data() + off, 4));
      if (len == 0 || len > kMaxFrameBody) {
        drop(c,
             fmt::format("it sent a frame of {} bytes (allowed: 1 to {}); not a braid store "
                         "client, or a corrupted stream",
                         len, kMaxFrameBody),
             true);
        break;
      }
      if (c.in.size() - off - 4 < len) break;
      handleFrame(c, c.in.data() + off + 4, len);
      off += 4 + size_t{len};
    }
    if (off > 0) c.in.erase(0, off);
    if (c.dead) return;
    if (c.unsent() > 0) flush(c);
    // The peer closed its side: whatever it sent before has been handled (a set then exit
    // is kept); nobody will read further replies.
    if (c.eof && !c.dead) drop(c, "closed the connection", false);
  }

  void handleFrame(Conn& c, const char* p, uint32_t n) {
    FrameReader r(p, n);
    auto type = static_cast<Frame>(r.u8());
    if (!c.hello) {
      if (type != Frame::kHello) {
        reject(c, "the first frame was not a hello (not a braid store client?)");
        return;
      }
      uint32_t magic = r.u32();
      uint16_t version = r.u16();
      uint64_t token = r.u64();
      if (!r.ok()) {
        drop(c, "malformed hello frame", true);
      } else if (magic != detail::kStoreMagic) {
        reject(c, fmt::format("bad magic {:#x} (not a braid store client?)", magic));
      } else if (version != detail::kStoreVersion) {
        reject(c, fmt::format("protocol version {} but this server speaks version {}: run the "
                              "same braid version on every rank",
                              version, detail::kStoreVersion));
      } else if (token != token_) {
        reject(c,
               "job token mismatch: the client's job token differs from the server's (is "
               "it from another job, or is BRAID_JOB_TOKEN set differently on some ranks?)");
      } else {
        c.hello = true;
        reply(c, FrameWriter(Frame::kHelloOk).finish());
      }
      return;
    }
    switch (type) {
      case Frame::kSet: {
        std::string key = r.str(kMaxKeyBytes);
        std::string value = r.str(kMaxValueBytes);
        if (!r.ok()) return malformed(c, "set");
        if (Status st = detail::checkKey(key); !st) return replyError(c, st);
        {
          std::lock_guard<std::mutex> lk(kv_->mu);
          kv_->map[key] = std::move(value);
        }
        kv_->cv.notify_all();
        changed_ = true;
        reply(c, FrameWriter(Frame::kOk).finish());
        return;
      }
      case Frame::kGet: {
        std::string key = r.str(kMaxKeyBytes);
        uint32_t ms = r.u32();
        if (!r.ok()) return malformed(c, "get");
        if (Status st = detail::checkKey(key); !st) return replyError(c, st);
        {
          std::lock_guard<std::mutex> lk(kv_->mu);
          auto it = kv_->map.find(key);
          if (it != kv_->map.end())
            return reply(c, FrameWriter(Frame::kValue).str(it->second).finish());
        }
        // Parked: service() answers it once a set or add makes the key, or at the deadline.
        c.pending = true;
        pending_.fetch_add(1);
        c.pendingKey = std::move(key);
        c.pendingDeadline =
            ms == kNoTimeout ? UINT64_MAX : deadlineAfter(std::chrono::milliseconds(ms));
        return;
      }
      case Frame::kAdd: {
        std::string key = r.str(kMaxKeyBytes);
        int64_t delta = r.i64();
        if (!r.ok()) return malformed(c, "add");
        if (Status st = detail::checkKey(key); !st) return replyError(c, st);
        Result<int64_t> sum = Status(Code::kInternal, "unset");
        {
          std::lock_guard<std::mutex> lk(kv_->mu);
          auto it = kv_->map.find(key);
          sum = detail::addToStored(key, it == kv_->map.end() ? nullptr : &it->second, delta);
          if (sum) kv_->map[key] = std::to_string(*sum);
        }
        if (!sum) return replyError(c, sum.status());
        kv_->cv.notify_all();
        changed_ = true;
        reply(c, FrameWriter(Frame::kInt).i64(*sum).finish());
        return;
      }
      case Frame::kErase: {
        std::string key = r.str(kMaxKeyBytes);
        if (!r.ok()) return malformed(c, "erase");
        {
          std::lock_guard<std::mutex> lk(kv_->mu);
          kv_->map.erase(key);
        }
        reply(c, FrameWriter(Frame::kOk).finish());
        return;
      }
      case Frame::kContains: {
        std::string key = r.str(kMaxKeyBytes);
        if (!r.ok()) return malformed(c, "contains");
        bool has;
        {
          std::lock_guard<std::mutex> lk(kv_->mu);
          has = kv_->map.count(key) != 0;
        }
        reply(c, FrameWriter(Frame::kBool).u8(has ? 1 : 0).finish());
        return;
      }
      default:
        drop(c, fmt::format("it sent a frame of unknown type {}", static_cast<int>(type)), true);
        return;
    }
  }

  void malformed(Conn& c, const char* what) {
    drop(c, fmt::format("malformed {} frame (fields do not fit its length)", what), true);
  }

  void reject(Conn& c, const std::string& reason) {
    BRAID_LOG_WARN(kColl, "TCP store on {}: refusing client {}: {}", where_, c.peer, reason);
    reply(c, FrameWriter(Frame::kReject).str(reason).finish());
    c.closing = true;
  }

  std::shared_ptr<KvState> kv_;
  uint64_t token_;
  tcp::Fd listen_;
  tcp::Fd wake_;
  uint16_t port_ = 0;
  std::string where_;
  std::vector<std::unique_ptr<Conn>> conns_;  // the server thread's only
  bool changed_ = false;                      // the server thread's only: map written
  std::atomic<bool> stop_{false};
  std::atomic<size_t> clients_{0};
  std::atomic<size_t> pending_{0};
  std::thread thread_;  // last: started once everything above exists
};

// ---- the serving process's store ----

class ServingTcpStore final : public Store {
 public:
  ServingTcpStore(std::shared_ptr<KvState> kv, std::unique_ptr<TcpStoreServer> server)
      : kv_(std::move(kv)), server_(std::move(server)) {}
  ~ServingTcpStore() override = default;  // the server joins its thread

  Status set(const std::string& key, const std::string& value) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    BRAID_RETURN_IF_ERROR(detail::checkValue(key, value));
    {
      std::lock_guard<std::mutex> lk(kv_->mu);
      kv_->map[key] = value;
    }
    kv_->cv.notify_all();
    server_->wake();
    return Status::ok();
  }

  Result<std::string> get(const std::string& key, std::chrono::milliseconds timeout) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::unique_lock<std::mutex> lk(kv_->mu);
    auto found = [&] { return kv_->map.count(key) != 0; };
    if (!found()) {
      uint64_t deadline = deadlineAfter(timeout);
      ++kv_->localWaiters;
      bool ok;
      if (deadline == UINT64_MAX) {
        kv_->cv.wait(lk, found);
        ok = true;
      } else {
        auto until = std::chrono::steady_clock::now() +
                     std::chrono::nanoseconds(deadline - std::min(deadline, core::nowNs()));
        ok = kv_->cv.wait_until(lk, until, found);
      }
      --kv_->localWaiters;
      if (!ok) return timedOut(key, timeout, server_->where());
    }
    return kv_->map[key];
  }

  Result<int64_t> add(const std::string& key, int64_t delta) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    Result<int64_t> sum = Status(Code::kInternal, "unset");
    {
      std::lock_guard<std::mutex> lk(kv_->mu);
      auto it = kv_->map.find(key);
      sum = detail::addToStored(key, it == kv_->map.end() ? nullptr : &it->second, delta);
      if (sum) kv_->map[key] = std::to_string(*sum);
    }
    if (sum) {
      kv_->cv.notify_all();
      server_->wake();
    }
    return sum;
  }

  Status erase(const std::string& key) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::lock_guard<std::mutex> lk(kv_->mu);
    kv_->map.erase(key);
    return Status::ok();
  }

  Result<bool> contains(const std::string& key) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::lock_guard<std::mutex> lk(kv_->mu);
    return kv_->map.count(key) != 0;
  }

  uint16_t port() const { return server_->port(); }
  detail::ServedStats stats() const {
    detail::ServedStats st = server_->stats();
    std::lock_guard<std::mutex> lk(kv_->mu);
    st.pendingGets += kv_->localWaiters;
    return st;
  }

  static Status timedOut(const std::string& key, std::chrono::milliseconds timeout,
                         const std::string& where) {
    return Status(Code::kTimedOut,
                  fmt::format("store key '{}' was not set within {} ms (TCP store at {}): the "
                              "rank that sets it has not started, is slower, or failed; check "
                              "that every rank runs and uses the same store, or raise "
                              "BRAID_TIMEOUT_MS",
                              key, timeout.count(), where));
  }

 private:
  std::shared_ptr<KvState> kv_;
  std::unique_ptr<TcpStoreServer> server_;
};

// ---- a client ----

// Waits until `fd` is ready for `events` or the deadline (kTimedOut).
Status waitFd(int fd, short events, uint64_t deadline) {
  for (;;) {
    uint64_t now = core::nowNs();
    if (now >= deadline) return Status(Code::kTimedOut);
    int ms =
        deadline == UINT64_MAX
            ? -1
            : static_cast<int>(std::min<uint64_t>((deadline - now + 999999) / 1000000, INT_MAX));
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, ms);
    if (n > 0) return Status::ok();
    if (n < 0 && errno != EINTR)
      return Status(Code::kSystemError,
                    fmt::format("poll: {} (errno {})", std::strerror(errno), errno));
  }
}

class TcpStoreClient final : public Store {
 public:
  static Result<std::shared_ptr<Store>> connect(const TcpStoreOptions& o) {
    std::string where = hostPort(o.host, o.port);
    if (o.host.empty() || o.port == 0)
      return Status(Code::kInvalidArgument,
                    fmt::format("a TCP store client needs the server's host and port (got '{}'): "
                                "give both, e.g. BRAID_STORE=node01:29500",
                                where));
    uint64_t deadline = deadlineAfter(o.timeout);
    auto backoff = std::chrono::milliseconds(10);
    Status last(Code::kTimedOut, "no attempt finished");
    int attempts = 0;
    for (;;) {
      ++attempts;
      auto fd = attempt(o, where, deadline);
      if (fd) {
        BRAID_LOG_DEBUG(kColl, "connected to the TCP store at {} (attempt {})", where, attempts);
        return std::shared_ptr<Store>(new TcpStoreClient(std::move(*fd), where, o.timeout));
      }
      last = fd.status();
      // A refusal by the server (token, version) will not change by retrying.
      if (last.code() == Code::kConnectionRefused &&
          last.message().find("refused this client") != std::string::npos)
        return last;
      uint64_t now = core::nowNs();
      if (now >= deadline) break;
      uint64_t left = deadline - now;
      auto nap = std::min<uint64_t>(static_cast<uint64_t>(backoff.count()) * 1000000ull, left);
      std::this_thread::sleep_for(std::chrono::nanoseconds(nap));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
    }
    Code code =
        last.code() == Code::kConnectionRefused ? Code::kConnectionRefused : Code::kTimedOut;
    return Status(code, fmt::format("could not reach the TCP store at {} within {} ms ({} "
                                    "attempts; last: {}): check that rank 0 runs and serves it "
                                    "there (BRAID_STORE, MASTER_ADDR/MASTER_PORT), and that no "
                                    "firewall is in the way",
                                    where, o.timeout.count(), attempts,
                                    last.message().empty() ? std::string(codeName(last.code()))
                                                           : last.message()));
  }

  Status set(const std::string& key, const std::string& value) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    BRAID_RETURN_IF_ERROR(detail::checkValue(key, value));
    std::string body;
    BRAID_ASSIGN_OR_RETURN(Frame t, call(FrameWriter(Frame::kSet).str(key).str(value).finish(),
                                         deadlineAfter(timeout_), "set", key, &body));
    return expect(t, Frame::kOk, body, "set", key);
  }

  Result<std::string> get(const std::string& key, std::chrono::milliseconds timeout) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    int64_t ms = std::max<int64_t>(0, timeout.count());
    uint32_t wire = ms >= int64_t{kNoTimeout} ? kNoTimeout : static_cast<uint32_t>(ms);
    // The server bounds the wait; the client waits its own request bound longer, so that a
    // server that stopped answering is noticed too.
    uint64_t serverDeadline = wire == kNoTimeout ? UINT64_MAX : deadlineAfter(timeout);
    uint64_t grace = static_cast<uint64_t>(std::max<int64_t>(timeout_.count(), 0)) * 1000000ull;
    uint64_t deadline = serverDeadline > UINT64_MAX - grace ? UINT64_MAX : serverDeadline + grace;
    std::string body;
    BRAID_ASSIGN_OR_RETURN(Frame t, call(FrameWriter(Frame::kGet).str(key).u32(wire).finish(),
                                         deadline, "get", key, &body));
    if (t == Frame::kTimedOut) return ServingTcpStore::timedOut(key, timeout, where_);
    BRAID_RETURN_IF_ERROR(expect(t, Frame::kValue, body, "get", key));
    FrameReader r(body.data(), body.size());
    std::string value = r.str(kMaxValueBytes);
    if (!r.ok()) return protocolError("get", key);
    return value;
  }

  Result<int64_t> add(const std::string& key, int64_t delta) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::string body;
    BRAID_ASSIGN_OR_RETURN(Frame t, call(FrameWriter(Frame::kAdd).str(key).i64(delta).finish(),
                                         deadlineAfter(timeout_), "add", key, &body));
    BRAID_RETURN_IF_ERROR(expect(t, Frame::kInt, body, "add", key));
    FrameReader r(body.data(), body.size());
    int64_t v = r.i64();
    if (!r.ok()) return protocolError("add", key);
    return v;
  }

  Status erase(const std::string& key) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::string body;
    BRAID_ASSIGN_OR_RETURN(Frame t, call(FrameWriter(Frame::kErase).str(key).finish(),
                                         deadlineAfter(timeout_), "erase", key, &body));
    return expect(t, Frame::kOk, body, "erase", key);
  }

  Result<bool> contains(const std::string& key) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::string body;
    BRAID_ASSIGN_OR_RETURN(Frame t, call(FrameWriter(Frame::kContains).str(key).finish(),
                                         deadlineAfter(timeout_), "contains", key, &body));
    BRAID_RETURN_IF_ERROR(expect(t, Frame::kBool, body, "contains", key));
    FrameReader r(body.data(), body.size());
    uint8_t v = r.u8();
    if (!r.ok() || v > 1) return protocolError("contains", key);
    return v == 1;
  }

 private:
  TcpStoreClient(tcp::Fd fd, std::string where, std::chrono::milliseconds timeout)
      : fd_(std::move(fd)), where_(std::move(where)), timeout_(timeout) {}

  std::string serverName() const { return "the TCP store server at " + where_; }

  // One connection attempt: connect, hello, hello-ok.
  static Result<tcp::Fd> attempt(const TcpStoreOptions& o, const std::string& where,
                                 uint64_t deadline) {
    BRAID_ASSIGN_OR_RETURN(tcp::SockAddr addr, tcp::SockAddr::resolve(o.host, o.port));
    BRAID_ASSIGN_OR_RETURN(tcp::Fd fd,
                           tcp::startConnect(tcp::SockAddr{}, addr, tcp::SocketTuning{}));
    for (;;) {
      Status st = tcp::finishConnect(fd.get(), addr);
      if (st) break;
      if (st.code() != Code::kInProgress) return st;
      Status w = waitFd(fd.get(), POLLOUT, deadline);
      if (w.code() == Code::kTimedOut)
        return Status(Code::kTimedOut, fmt::format("connect to {} did not finish", where));
      BRAID_RETURN_IF_ERROR(w);
    }
    std::string peer = "the TCP store server at " + where;
    BRAID_RETURN_IF_ERROR(sendAll(fd.get(),
                                  FrameWriter(Frame::kHello)
                                      .u32(detail::kStoreMagic)
                                      .u16(detail::kStoreVersion)
                                      .u64(o.jobToken)
                                      .finish(),
                                  deadline, peer));
    std::string body;
    BRAID_ASSIGN_OR_RETURN(Frame t, recvFrame(fd.get(), deadline, peer, &body));
    if (t == Frame::kReject) {
      FrameReader r(body.data(), body.size());
      std::string reason = r.str(kMaxKeyBytes);
      return Status(Code::kConnectionRefused,
                    fmt::format("{} refused this client: {}", peer,
                                r.ok() ? reason : std::string("(malformed reason)")));
    }
    if (t != Frame::kHelloOk || !body.empty())
      return Status(Code::kProtocolError,
                    fmt::format("{} answered the hello with frame type {}: is it a braid TCP "
                                "store?",
                                peer, static_cast<int>(t)));
    return fd;
  }

  static Status sendAll(int fd, const std::string& data, uint64_t deadline,
                        const std::string& peer) {
    size_t off = 0;
    while (off < data.size()) {
      iovec iov{const_cast<char*>(data.data()) + off, data.size() - off};
      BRAID_ASSIGN_OR_RETURN(tcp::IoResult r, tcp::writeSomeV(fd, &iov, 1, peer));
      off += r.bytes;
      if (r.wouldBlock) {
        Status w = waitFd(fd, POLLOUT, deadline);
        if (w.code() == Code::kTimedOut)
          return Status(Code::kTimedOut, fmt::format("sending to {} stalled", peer));
        BRAID_RETURN_IF_ERROR(w);
      }
    }
    return Status::ok();
  }

  static Status recvExact(int fd, char* buf, size_t n, uint64_t deadline, const std::string& peer) {
    size_t off = 0;
    while (off < n) {
      BRAID_ASSIGN_OR_RETURN(tcp::IoResult r, tcp::readSome(fd, buf + off, n - off, peer));
      if (r.eof)
        return Status(Code::kConnectionReset,
                      fmt::format("{} closed the connection (did the serving rank exit or "
                                  "fail?)",
                                  peer));
      off += r.bytes;
      if (r.wouldBlock) {
        Status w = waitFd(fd, POLLIN, deadline);
        if (w.code() == Code::kTimedOut)
          return Status(Code::kTimedOut, fmt::format("{} did not answer in time", peer));
        BRAID_RETURN_IF_ERROR(w);
      }
    }
    return Status::ok();
  }

  static Result<Frame> recvFrame(int fd, uint64_t deadline, const std::string& peer,
                                 std::string* body) {
    char hdr[4];
    BRAID_RETURN_IF_ERROR(recvExact(fd, hdr, 4, deadline, peer));
    uint32_t len = static_cast<uint32_t>(loadLe(hdr, 4));
    if (len == 0 || len > kMaxFrameBody)
      return Status(Code::kProtocolError,
                    fmt::format("{} sent a frame of {} bytes (allowed 1 to {}): is it a braid "
                                "TCP store?",
                                peer, len, kMaxFrameBody));
    std::string b(len, '\0');
    BRAID_RETURN_IF_ERROR(recvExact(fd, b.data(), len, deadline, peer));
    auto t = static_cast<Frame>(static_cast<uint8_t>(b[0]));
    body->assign(b, 1, std::string::npos);
    return t;
  }

  // One request and its reply. Any failure leaves the stream out of step, so the connection
  // is closed and every later call returns the same error.
  Result<Frame> call(const std::string& frame, uint64_t deadline, const char* op,
                     const std::string& key, std::string* body) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!broken_.isOk()) return broken_;
    std::string peer = serverName();
    Status st = sendAll(fd_.get(), frame, deadline, peer);
    Result<Frame> t = st.isOk() ? recvFrame(fd_.get(), deadline, peer, body) : Result<Frame>(st);
    if (!t) {
      broken_ = t.status().withContext(fmt::format("{}('{}')", op, key));
      BRAID_LOG_WARN(kColl, "TCP store client: {}; closing the connection", broken_.message());
      fd_.reset();
      return broken_;
    }
    return t;
  }

  Status expect(Frame got, Frame want, const std::string& body, const char* op,
                const std::string& key) {
    if (got == want) return Status::ok();
    if (got == Frame::kError) {
      FrameReader r(body.data(), body.size());
      uint8_t code = r.u8();
      std::string msg = r.str(kMaxValueBytes);
      if (r.ok() && code > static_cast<uint8_t>(Code::kOk) &&
          code <= static_cast<uint8_t>(Code::kInternal))
        return Status(static_cast<Code>(code), msg);
    }
    return protocolError(op, key);
  }

  Status protocolError(const char* op, const std::string& key) {
    return Status(Code::kProtocolError,
                  fmt::format("{} answered {}('{}') with a malformed or unexpected frame: run "
                              "the same braid version on every rank",
                              serverName(), op, key));
  }

  std::mutex mu_;
  tcp::Fd fd_;
  std::string where_;
  std::chrono::milliseconds timeout_;
  Status broken_;
};

// ---- prefix store ----

class PrefixStore final : public Store {
 public:
  PrefixStore(std::shared_ptr<Store> inner, std::string prefix)
      : inner_(std::move(inner)), prefix_(std::move(prefix)) {}
  Status set(const std::string& key, const std::string& value) override {
    return inner_->set(prefix_ + key, value);
  }
  Result<std::string> get(const std::string& key, std::chrono::milliseconds timeout) override {
    return inner_->get(prefix_ + key, timeout);
  }
  Result<int64_t> add(const std::string& key, int64_t delta) override {
    return inner_->add(prefix_ + key, delta);
  }
  Status erase(const std::string& key) override { return inner_->erase(prefix_ + key); }
  Result<bool> contains(const std::string& key) override { return inner_->contains(prefix_ + key); }
  const Store& inner() const { return *inner_; }

 private:
  std::shared_ptr<Store> inner_;
  std::string prefix_;
};

// The serving store under any number of prefix stores, or null.
const ServingTcpStore* servingStore(const Store& store) {
  const Store* s = &store;
  while (auto* p = dynamic_cast<const PrefixStore*>(s)) s = &p->inner();
  return dynamic_cast<const ServingTcpStore*>(s);
}

}  // namespace

namespace detail {
ServedStats servedStats(const Store& store) {
  const ServingTcpStore* s = servingStore(store);
  return s != nullptr ? s->stats() : ServedStats{};
}
}  // namespace detail

std::shared_ptr<Store> prefixStore(std::shared_ptr<Store> inner, std::string prefix) {
  if (inner == nullptr) return nullptr;
  return std::make_shared<PrefixStore>(std::move(inner), std::move(prefix));
}

Result<std::shared_ptr<Store>> openTcpStore(const TcpStoreOptions& options) {
  if (!options.serve) return TcpStoreClient::connect(options);
  auto kv = std::make_shared<KvState>();
  BRAID_ASSIGN_OR_RETURN(std::unique_ptr<TcpStoreServer> server,
                         TcpStoreServer::start(options, kv));
  return std::shared_ptr<Store>(std::make_shared<ServingTcpStore>(kv, std::move(server)));
}

uint16_t servedPort(const Store& store) {
  const ServingTcpStore* s = servingStore(store);
  return s != nullptr ? s->port() : 0;
}

}  // namespace braid::coll
