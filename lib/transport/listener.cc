// Listener: accepts control and data sockets, runs the server side of the handshake,
// refuses bad peers without disturbing good ones. Also the Address format.
#include <arpa/inet.h>
#include <sys/random.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

// ---------------------------------------------------------------- Address
// bytes: [0,4) magic  [4,6) version  [6,8) family  [8,10) port  [10,16) 0
//        [16,24) job token  [24,40) IPv4 (first 4 bytes) or IPv6 address  [40,64) 0

namespace {

Address encodeAddress(const tcp::SockAddr& a, uint64_t token) {
  Address out;
  uint32_t magic = wire::kMagic;
  uint16_t version = wire::kVersion, family = static_cast<uint16_t>(a.family()), port = a.port();
  std::memcpy(out.bytes, &magic, 4);
  std::memcpy(out.bytes + 4, &version, 2);
  std::memcpy(out.bytes + 6, &family, 2);
  std::memcpy(out.bytes + 8, &port, 2);
  std::memcpy(out.bytes + 16, &token, 8);
  a.toBytes(out.bytes + 24);
  return out;
}

// A malformed address: the text as given, what is wrong with it, and the form expected.
Status badAddress(const std::string& text, std::string_view why) {
  return Status(Code::kInvalidArgument,
                fmt::format("'{}' is not a braid address: {} (expected "
                            "braid://HOST:PORT?token=TOKEN as Listener::address() prints it, "
                            "e.g. braid://10.0.0.1:18515?token=0x1f or "
                            "braid://[fe80::1]:18515?token=31)",
                            text, why));
}

bool isIpv6(const std::string& s) {
  in6_addr a;
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// Splits "HOST:PORT" or "[IPV6]:PORT"; the reason when neither fits. `rest` (?token=...)
// only goes into the spelling suggested for an IPv6 address without brackets.
Status splitHostPort(const std::string& text, const std::string& hostport,
                     const std::string& rest, std::string* host, std::string* port) {
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos)
      return badAddress(text, "'[' with no ']': an IPv6 address goes in brackets");
    *host = hostport.substr(1, close - 1);
    if (close + 1 == hostport.size()) return badAddress(text, "no port: add ':PORT' after ']'");
    if (hostport[close + 1] != ':') return badAddress(text, "expected ':PORT' after ']'");
    *port = hostport.substr(close + 2);
    return Status::ok();
  }
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) return badAddress(text, "no port: add ':PORT' after the host");
  if (hostport.find(':') != colon) {
    // The last group may be the port or part of the address: only brackets tell.
    std::string addr = hostport.substr(0, colon), last = hostport.substr(colon + 1);
    std::string fix = isIpv6(hostport) ? fmt::format("braid://[{}]:PORT{}", hostport, rest)
                      : isIpv6(addr)   ? fmt::format("braid://[{}]:{}{}", addr, last, rest)
                                       : std::string("braid://[IPV6]:PORT") + rest;
    return badAddress(text, "IPv6 address without brackets: write " + fix);
  }
  *host = hostport.substr(0, colon);
  *port = hostport.substr(colon + 1);
  return Status::ok();
}

}  // namespace

Result<Address> Address::fromHostPort(const std::string& host, uint16_t port, uint64_t token) {
  BRAID_ASSIGN_OR_RETURN(tcp::SockAddr a, tcp::SockAddr::resolve(host, port));
  return encodeAddress(a, token);
}

std::string Address::toString() const {
  uint16_t family, port;
  uint64_t token;
  std::memcpy(&family, bytes + 6, 2);
  std::memcpy(&port, bytes + 8, 2);
  std::memcpy(&token, bytes + 16, 8);
  tcp::SockAddr a = tcp::SockAddr::fromBytes(family, bytes + 24, port);
  return fmt::format("braid://{}?token=0x{:016x}", a.toString(), token);
}

Result<Address> Address::parse(const std::string& text) {
  // Each way an address can be malformed has its own message: "not a braid address" alone
  // left users comparing characters by eye.
  const std::string prefix = "braid://", tokenKey = "?token=";
  if (text.empty()) return badAddress(text, "empty");
  if (std::isspace(static_cast<unsigned char>(text.front())) ||
      std::isspace(static_cast<unsigned char>(text.back())))
    return badAddress(text, "leading or trailing space");
  if (text.compare(0, prefix.size(), prefix) != 0)
    return badAddress(text, "it must start with braid://");
  auto q = text.find(tokenKey, prefix.size());
  if (q == std::string::npos) return badAddress(text, "no ?token= (the listener's job token)");
  std::string host, portText, tokenText = text.substr(q + tokenKey.size());
  BRAID_RETURN_IF_ERROR(splitHostPort(text, text.substr(prefix.size(), q - prefix.size()),
                                      text.substr(q), &host, &portText));
  if (host.empty()) return badAddress(text, "no host");
  if (portText.empty()) return badAddress(text, "no port after ':'");
  if (portText.find_first_not_of("0123456789") != std::string::npos)
    return badAddress(text, fmt::format("port '{}' is not a decimal number", portText));
  unsigned long port = portText.size() > 5 ? 0 : std::stoul(portText);
  if (port == 0 || port > 65535)
    return badAddress(text, fmt::format("port {} is out of range (1..65535)", portText));
  if (tokenText.empty()) return badAddress(text, "the token is empty");
  auto token = core::parseToken(tokenText);
  if (!token)
    return badAddress(text, fmt::format("token '{}' is invalid: {} (0x then hex digits, or "
                                        "decimal)",
                                        tokenText, token.status().message()));
  auto a = fromHostPort(host, static_cast<uint16_t>(port), *token);
  if (!a) return a.status().withContext(fmt::format("braid address '{}'", text));
  return a;
}

// ---------------------------------------------------------------- Listener internals

struct ListenerImpl;

/// A listening socket of one rail.
struct ListenSock final : tcp::Pollable {
  ListenerImpl* l = nullptr;
  tcp::Fd fd;
  int rail = 0;
  void onEvent(uint32_t) override;
};

/// An accepted socket whose first frame (hello or join) is not read yet.
struct PendingConn final : tcp::Pollable {
  ListenerImpl* l = nullptr;
  tcp::Fd fd;
  tcp::SockAddr peer;
  int rail = 0;
  uint64_t deadlineNs = 0;
  std::vector<uint8_t> buf = std::vector<uint8_t>(sizeof(wire::HsHeader));
  size_t got = 0;
  bool done = false;
  void onEvent(uint32_t) override;
};

struct ListenerImpl {
  std::shared_ptr<WorkerImpl> workerRef;  ///< the caller may destroy the Worker first
  WorkerImpl* worker = nullptr;
  const Context::Impl* ctx = nullptr;
  uint64_t token = 0;
  Address address;
  uint16_t port = 0;
  std::vector<std::unique_ptr<ListenSock>> socks;
  std::vector<wire::RailDesc> rails;  // with listening ports
  std::vector<std::unique_ptr<PendingConn>> pending;
  std::vector<std::shared_ptr<EndpointImpl>> joining;
  std::deque<std::shared_ptr<EndpointImpl>> ready;
  uint64_t refused = 0;
  uint64_t logWindowNs = 0, logShown = 0, logSuppressed = 0;  ///< refusal log rate limit
  /// Handshakes in progress (accepted sockets without a complete hello or join, and
  /// endpoints waiting for their data sockets) are bounded: past this, the oldest idle
  /// socket is refused, so idle or slow connections cannot exhaust descriptors.
  static constexpr size_t kMaxPending = 128;

  void onAcceptable(ListenSock& s);
  void onPending(PendingConn& p);
  Status handle(PendingConn& p, const wire::HsHeader& h, const uint8_t* body);
  Status handleRejoin(PendingConn& p, const uint8_t* body, size_t len);
  /// Sets up the endpoint's verbs lanes (QPs to RTS) when both sides have verbs rails.
  Status acceptVerbs(EndpointImpl& ep, const wire::Hello& hello);
  void refuse(PendingConn& p, wire::RejectReason why, const Status& detail);
  void sweep();
};

void ListenSock::onEvent(uint32_t) { l->onAcceptable(*this); }
void PendingConn::onEvent(uint32_t) { l->onPending(*this); }

void ListenerImpl::onAcceptable(ListenSock& s) {
  for (int i = 0; i < 16; ++i) {
    tcp::SockAddr peer;
    tcp::SocketTuning t{static_cast<int>(ctx->params.socketBufSize), ctx->timeoutMs};
    auto r = tcp::acceptOne(s.fd.get(), &peer, t);
    if (!r) {
      if (r.status().code() != Code::kInProgress)
        BRAID_LOG_WARN(kTransport, "listener {}: {}", address.toString(), r.status().toString());
      return;
    }
    if (pending.size() + joining.size() >= kMaxPending) {
      auto oldest = std::find_if(pending.begin(), pending.end(), [](auto& q) { return !q->done; });
      if (oldest != pending.end()) {
        refuse(**oldest, wire::RejectReason::kTimeout,
               Status(Code::kAgain, fmt::format("{} handshakes in progress, the most this "
                                                "listener holds: the oldest idle one goes",
                                                kMaxPending)));
        pending.erase(oldest);
      } else {
        ++refused;
        BRAID_LOG_WARN(kTransport,
                       "listener {} refused {}: {} endpoints are still joining their data "
                       "sockets",
                       address.toString(), peer.toString(), joining.size());
        continue;  // the accepted socket closes: the peer sees a reset
      }
    }
    auto p = std::make_unique<PendingConn>();
    p->l = this;
    p->fd = std::move(r).value();
    p->peer = peer;
    p->rail = s.rail;
    p->deadlineNs = core::nowNs() + static_cast<uint64_t>(ctx->timeoutMs) * 1000000ull;
    Status st = worker->poller.add(p->fd.get(), EPOLLIN, p.get());
    if (!st.isOk()) {
      BRAID_LOG_WARN(kTransport, "listener: {}", st.toString());
      continue;
    }
    pending.push_back(std::move(p));
  }
}

void ListenerImpl::refuse(PendingConn& p, wire::RejectReason why, const Status& detail) {
  ++refused;
  // A flood of bad peers must not become a flood of log lines: at most 10 a second, then
  // one line saying how many were not shown.
  const uint64_t now = core::nowNs();
  if (now - logWindowNs > 1'000'000'000ull) {
    if (logSuppressed > 0)
      BRAID_LOG_ERROR(kTransport, "listener {} refused {} more peers in the last second (not "
                                  "shown one by one)",
                      address.toString(), logSuppressed);
    logWindowNs = now;
    logShown = logSuppressed = 0;
  }
  if (++logShown <= 10)
    BRAID_LOG_ERROR(kTransport,
                    "listener {} refused peer {} on rail {}: {} ({}); the peer was told why",
                    address.toString(), p.peer.toString(), p.rail, wire::rejectReasonName(why),
                    detail.message());
  else
    ++logSuppressed;
  auto frame = wire::encodeReject(why, detail.message());
  iovec iov{frame.data(), frame.size()};
  (void)tcp::writeSomeV(p.fd.get(), &iov, 1, p.peer.toString());  // best effort
  worker->linger(std::move(p.fd));
  p.done = true;
}

void ListenerImpl::onPending(PendingConn& p) {
  if (p.done) return;
  for (;;) {
    auto r = tcp::readSome(p.fd.get(), p.buf.data() + p.got, p.buf.size() - p.got,
                           p.peer.toString());
    if (!r || r->eof) {
      ++refused;
      BRAID_LOG_ERROR(kTransport, "listener {}: peer {} {} after {} bytes of handshake",
                      address.toString(), p.peer.toString(),
                      r ? "closed the connection" : r.status().toString(), p.got);
      worker->poller.remove(p.fd.get());
      p.fd.reset();
      p.done = true;
      return;
    }
    if (r->wouldBlock) return;
    p.got += r->bytes;
    if (p.got < p.buf.size()) continue;
    wire::HsHeader h;
    std::memcpy(&h, p.buf.data(), sizeof h);
    if (p.buf.size() == sizeof h) {
      auto chk = wire::checkHeader(h);
      if (!chk.status.isOk()) return refuse(p, chk.reason, chk.status);
      if (h.type != static_cast<uint16_t>(wire::HsType::kHello) &&
          h.type != static_cast<uint16_t>(wire::HsType::kJoin) &&
          h.type != static_cast<uint16_t>(wire::HsType::kRejoin))
        return refuse(p, wire::RejectReason::kMalformed,
                      Status(Code::kProtocolError,
                             fmt::format("first frame has type {}, not hello, join or rejoin",
                                         h.type)));
      p.buf.resize(sizeof h + h.length);
      if (h.length > 0) continue;
    }
    Status st = handle(p, h, p.buf.data() + sizeof h);
    if (!st.isOk()) {
      auto why = st.code() == Code::kConnectionRefused ? wire::RejectReason::kBadToken
                 : st.code() == Code::kNotFound        ? wire::RejectReason::kUnknownEndpoint
                 : st.code() == Code::kUnsupported     ? wire::RejectReason::kNoRails
                                                       : wire::RejectReason::kMalformed;
      refuse(p, why, st);
    }
    return;
  }
}

Status ListenerImpl::acceptVerbs(EndpointImpl& ep, const wire::Hello& hello) {
  size_t n = std::min(hello.verbsRails.size(), ctx->verbsRails.size());
  const bool peerVerbsOnly = hello.body.transport == static_cast<uint32_t>(Transport::kVerbs);
  auto noVerbs = [&](const std::string& why) {
    return Status(Code::kUnsupported,
                  fmt::format("no verbs rails in common: {} (this side has {}, the peer offers "
                              "{}); check `braid_info` on both hosts, or use "
                              "BRAID_TRANSPORT=auto",
                              why, ctx->verbsRails.size(), hello.verbsRails.size()));
  };
  if (n == 0) {
    if (ctx->wantVerbsOnly) return noVerbs("BRAID_TRANSPORT=verbs on the listener");
    if (peerVerbsOnly) return noVerbs("BRAID_TRANSPORT=verbs on the connector");
    return Status::ok();
  }
  auto vp = VerbsPath::create(&ep, ctx->verbsRails);
  if (vp) n = std::min(hello.verbsRails.size(), (*vp)->laneCount());  // QPs, not rails
  Status st = vp ? (*vp)->connect(hello.verbsRails, n, ep.eagerMax) : vp.status();
  if (!st.isOk()) {
    if (ctx->wantVerbsOnly || peerVerbsOnly) return noVerbs(st.message());
    BRAID_LOG_WARN(kTransport, "listener: verbs with {} failed ({}); moving data over TCP",
                   ep.peer, st.toString());
    return Status::ok();
  }
  ep.verbs = std::move(vp).value();
  return Status::ok();
}

Status ListenerImpl::handle(PendingConn& p, const wire::HsHeader& h, const uint8_t* body) {
  if (h.type == static_cast<uint16_t>(wire::HsType::kHello)) {
    BRAID_ASSIGN_OR_RETURN(wire::Hello hello, wire::decodeHello(body, h.length));
    if (hello.body.token != token)
      return Status(Code::kConnectionRefused,
                    fmt::format("job token 0x{:016x} does not match this listener's; set the same "
                                "BRAID_JOB_TOKEN on every rank or pass the listener's address",
                                hello.body.token));
    if (p.rail != 0)
      return Status(Code::kProtocolError, "hello arrived on a data rail's port");
    auto ep = std::make_shared<EndpointImpl>(workerRef);
    ep->isServer = true;
    ep->peer = p.peer.toString();
    ep->token = token;
    ep->endpointId = core::randomNonZero();
    ep->railCount = std::min<uint32_t>(hello.body.railCount, static_cast<uint32_t>(rails.size()));
    ep->socketsPerRail =
        std::min<uint32_t>(hello.body.socketsPerRail, static_cast<uint32_t>(ctx->socketsPerRail));
    ep->eagerMax = std::min<uint64_t>(hello.body.eagerMax, ctx->eagerMax);
    ep->localRails.assign(rails.begin(), rails.begin() + ep->railCount);
    ep->peerRails.assign(hello.rails.begin(), hello.rails.begin() + ep->railCount);
    ep->deadlineNs = p.deadlineNs;
    BRAID_RETURN_IF_ERROR(acceptVerbs(*ep, hello));
    std::vector<wire::VerbsRailDesc> vdescs;
    if (ep->verbs) vdescs = ep->verbs->localDescs();
    wire::HelloAckBody ab{ep->endpointId, hello.body.nonce, ep->railCount, ep->socketsPerRail,
                          ep->eagerMax, static_cast<uint32_t>(vdescs.size()), 0};
    auto ack = wire::encodeHelloAck(ab, ep->localRails, vdescs);
    iovec iov{ack.data(), ack.size()};
    BRAID_ASSIGN_OR_RETURN(auto w, tcp::writeSomeV(p.fd.get(), &iov, 1, ep->peer));
    if (w.bytes != ack.size())
      return Status(Code::kSystemError, "could not write the hello-ack in one go");
    ep->control = std::make_unique<Channel>(ep.get(), std::move(p.fd), -1, 0, true);
    BRAID_RETURN_IF_ERROR(ep->control->arm(0));  // quiet until every data socket joined
    size_t n = static_cast<size_t>(ep->railCount) * ep->socketsPerRail;
    ep->data.resize(n);
    ep->dataReady.assign(n, false);
    ep->state = EpState::kJoining;
    p.done = true;
    BRAID_LOG_DEBUG(kTransport, "listener: hello from {}: endpoint {:x}, {} rails x {} sockets",
                    ep->peer, ep->endpointId, ep->railCount, ep->socketsPerRail);
    joining.push_back(std::move(ep));
    return Status::ok();
  }
  if (h.type == static_cast<uint16_t>(wire::HsType::kRejoin)) return handleRejoin(p, body, h.length);
  BRAID_ASSIGN_OR_RETURN(wire::JoinBody j, wire::decodeJoin(body, h.length));
  if (j.token != token)
    return Status(Code::kConnectionRefused,
                  fmt::format("data socket with job token 0x{:016x}", j.token));
  auto it = std::find_if(joining.begin(), joining.end(),
                         [&](auto& e) { return e->endpointId == j.endpointId; });
  if (it == joining.end())
    return Status(Code::kNotFound, fmt::format("join for unknown endpoint {:x}", j.endpointId));
  EndpointImpl& ep = **it;
  if (j.rail >= ep.railCount || j.socket >= ep.socketsPerRail ||
      static_cast<int>(j.rail) != p.rail)
    return Status(Code::kProtocolError,
                  fmt::format("join for rail {} socket {} (endpoint has {} x {}) on rail {}", j.rail,
                              j.socket, ep.railCount, ep.socketsPerRail, p.rail));
  size_t i = j.rail * ep.socketsPerRail + j.socket;
  if (ep.dataReady[i])
    return Status(Code::kProtocolError, fmt::format("rail {} socket {} joined twice", j.rail, j.socket));
  ep.data[i] = std::make_unique<Channel>(&ep, std::move(p.fd), static_cast<int>(j.rail),
                                         static_cast<int>(j.socket), false);
  BRAID_RETURN_IF_ERROR(ep.data[i]->arm(0));
  ep.dataReady[i] = true;
  p.done = true;
  if (std::all_of(ep.dataReady.begin(), ep.dataReady.end(), [](bool b) { return b; })) {
    ep.onConnected();
    ready.push_back(std::move(*it));
    joining.erase(it);
  }
  return Status::ok();
}

Status ListenerImpl::handleRejoin(PendingConn& p, const uint8_t* body, size_t len) {
  BRAID_ASSIGN_OR_RETURN(wire::RejoinBody j, wire::decodeRejoin(body, len));
  if (j.token != token)
    return Status(Code::kConnectionRefused,
                  fmt::format("rejoin with job token 0x{:016x}", j.token));
  if (static_cast<int>(j.rail) != p.rail)
    return Status(Code::kProtocolError,
                  fmt::format("rejoin for rail {} arrived on rail {}'s port", j.rail, p.rail));
  // The endpoint this listener accepted (it is on the listener's worker until destroyed).
  EndpointImpl* ep = nullptr;
  for (EndpointImpl* e : worker->endpoints)
    if (e->isServer && e->endpointId == j.endpointId && e->token == token) ep = e;
  if (ep == nullptr)
    return Status(Code::kNotFound, fmt::format("rejoin for unknown endpoint {:x}", j.endpointId));
  worker->poller.remove(p.fd.get());  // the endpoint's channel registers it again
  Status st = ep->acceptRejoin(j, std::move(p.fd));
  p.done = true;
  if (!st.isOk())
    BRAID_LOG_DEBUG(kTransport, "listener {}: rejoin from {} refused: {}", address.toString(),
                    p.peer.toString(), st.toString());
  return Status::ok();  // a refused rejoin's socket is closed: the connector tries again
}

void sweepListener(ListenerImpl* l) { l->sweep(); }

void ListenerImpl::sweep() {
  uint64_t now = core::nowNs();
  for (auto& p : pending)
    if (!p->done && now > p->deadlineNs)
      refuse(*p, wire::RejectReason::kTimeout,
             Status(Code::kTimedOut,
                    fmt::format("no complete hello/join within BRAID_TIMEOUT_MS={} ({} bytes "
                                "received)",
                                ctx->timeoutMs, p->got)));
  pending.erase(std::remove_if(pending.begin(), pending.end(), [](auto& p) { return p->done; }),
                pending.end());
  // Endpoints whose data sockets never all joined time out in their own tick().
  for (auto it = joining.begin(); it != joining.end();) {
    if ((*it)->state == EpState::kFailed) {
      ++refused;
      it = joining.erase(it);
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------- Listener

Listener::Listener(std::unique_ptr<ListenerImpl> impl) : impl_(std::move(impl)) {}

Listener::~Listener() {
  impl_->worker->removeListener(impl_.get());
  for (auto& s : impl_->socks) impl_->worker->poller.remove(s->fd.get());
  for (auto& p : impl_->pending)
    if (p->fd.valid()) impl_->worker->poller.remove(p->fd.get());
}

Result<std::unique_ptr<Listener>> Listener::create(Worker& worker, const ListenOptions& o) {
  auto l = std::make_unique<ListenerImpl>();
  l->workerRef = worker.impl().shared_from_this();
  l->worker = l->workerRef.get();
  l->ctx = l->worker->ctx;
  l->token = o.jobToken ? *o.jobToken : l->ctx->jobToken ? *l->ctx->jobToken : core::randomNonZero();
  const auto& rails = l->ctx->tcpRails;
  for (size_t r = 0; r < rails.size(); ++r) {
    tcp::SockAddr a = rails[r].addr;
    // The control port (rail 0's socket) listens on every local address, as perftest
    // does: a peer reaches it wherever it can reach this host (127.0.0.1 included), and
    // the rails are negotiated after. Rail 0's data sockets join there too.
    if (r == 0 && o.controlOnAnyAddress) a = tcp::SockAddr::any(a.family());
    a.setPort(r == 0 ? o.port : 0);
    auto fd = tcp::listenOn(a);
    if (!fd) {
      Status st = fd.status().withContext(fmt::format("listen on rail {} ({})", r, rails[r].name));
      BRAID_LOG_DEBUG(kTransport, "{}", st.toString());
      return st;
    }
    auto s = std::make_unique<ListenSock>();
    s->l = l.get();
    s->fd = std::move(fd).value();
    s->rail = static_cast<int>(r);
    BRAID_ASSIGN_OR_RETURN(tcp::SockAddr bound, tcp::localAddress(s->fd.get()));
    if (r == 0 && o.controlOnAnyAddress) {
      // Advertise rail 0's address (the wildcard is no address to connect to).
      uint16_t port = bound.port();
      bound = rails[r].addr;
      bound.setPort(port);
    }
    BRAID_RETURN_IF_ERROR(l->worker->poller.add(s->fd.get(), EPOLLIN, s.get()));
    uint8_t bytes[16];
    bound.toBytes(bytes);
    l->rails.push_back(wire::makeRailDesc(rails[r].name, bound.family(), bytes, bound.port()));
    if (r == 0) {
      l->address = encodeAddress(bound, l->token);
      l->port = bound.port();
    }
    l->socks.push_back(std::move(s));
  }
  l->worker->listeners.push_back(l.get());
  BRAID_LOG_INFO(kTransport, "listening at {} on {} rails{}", l->address.toString(),
                 l->rails.size(),
                 o.controlOnAnyAddress ? " (control port on every local address)" : "");
  return std::unique_ptr<Listener>(new Listener(std::move(l)));
}

const Address& Listener::address() const { return impl_->address; }
uint16_t Listener::port() const { return impl_->port; }
uint64_t Listener::refusedCount() const { return impl_->refused; }

Result<std::unique_ptr<Endpoint>> Listener::accept() {
  BRAID_WORKER_ENTRY(impl_->worker, "Listener::accept");
  if (impl_->ready.empty()) {
    BRAID_ASSIGN_OR_RETURN(size_t n, impl_->worker->progress(0));
    (void)n;
    impl_->sweep();
  }
  if (impl_->ready.empty()) return Status(Code::kInProgress, "no peer yet");
  auto ep = std::move(impl_->ready.front());
  impl_->ready.pop_front();
  return std::unique_ptr<Endpoint>(new Endpoint(std::move(ep)));
}

Result<std::unique_ptr<Endpoint>> Listener::waitAccept(std::chrono::milliseconds timeout) {
  BRAID_WORKER_ENTRY(impl_->worker, "Listener::waitAccept");
  uint64_t end = core::nowNs() + static_cast<uint64_t>(std::min<int64_t>(
                                     timeout.count(), INT64_MAX / 2000000)) * 1000000ull;
  for (;;) {
    auto r = accept();
    if (r || r.status().code() != Code::kInProgress) return r;
    if (core::nowNs() > end)
      return Status(Code::kTimedOut, fmt::format("no peer connected to {} within {} ms",
                                                 impl_->address.toString(), timeout.count()));
    auto w = impl_->worker->progress(10);
    if (!w) return w.status();
  }
}

}  // namespace braid
