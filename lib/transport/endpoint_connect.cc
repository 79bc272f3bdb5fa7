// Endpoint: the client side of the connection handshake (hello, ack, data-socket joins).
#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/log.h"
#include "transport/internal.h"

namespace braid {

// ---------------------------------------------------------------- client handshake

Status EndpointImpl::startConnect(const Address& addr) {
  // Address layout: see listener.cc (encodeAddress).
  uint32_t magic;
  std::memcpy(&magic, addr.bytes, 4);
  if (magic != wire::kMagic) return Status(Code::kInvalidArgument, "not a braid address");
  uint16_t family, port;
  std::memcpy(&family, addr.bytes + 6, 2);
  std::memcpy(&port, addr.bytes + 8, 2);
  std::memcpy(&token, addr.bytes + 16, 8);
  tcp::SockAddr remote = tcp::SockAddr::fromBytes(family, addr.bytes + 24, port);
  if (remote.len == 0) return Status(Code::kInvalidArgument, "address with unknown family");
  peer = remote.toString();
  ctrlAddr = remote;
  nonce = core::randomNonZero();
  deadlineNs = core::nowNs() + static_cast<uint64_t>(ctx->timeoutMs) * 1000000ull;
  for (const auto& i : ctx->tcpRails) {
    uint8_t bytes[16];
    i.addr.toBytes(bytes);
    localRails.push_back(wire::makeRailDesc(i.name, i.addr.family(), bytes, 0));
  }
  if (!ctx->verbsRails.empty()) {
    auto vp = VerbsPath::create(this, ctx->verbsRails);
    if (vp) {
      verbs = std::move(vp).value();
    } else if (ctx->wantVerbsOnly) {
      return vp.status().withContext("creating the verbs queue pairs");
    } else {
      BRAID_LOG_WARN(kTransport, "connect to {}: verbs unavailable ({}); moving data over TCP",
                     peer, vp.status().toString());
    }
  }
  tcp::SockAddr local;  // control socket: let the kernel choose the source
  BRAID_ASSIGN_OR_RETURN(tcp::Fd fd,
                         tcp::startConnect(local, remote, {0, ctx->timeoutMs}));
  control = std::make_unique<Channel>(this, std::move(fd), -1, 0, true);
  BRAID_RETURN_IF_ERROR(worker->poller.add(control->fd(), EPOLLIN | EPOLLOUT, control.get()));
  wire::HelloBody hb{};
  hb.token = token;
  hb.nonce = nonce;
  hb.railCount = static_cast<uint32_t>(localRails.size());
  hb.socketsPerRail = static_cast<uint32_t>(ctx->socketsPerRail);
  hb.eagerMax = ctx->eagerMax;
  hb.transport = static_cast<uint32_t>(ctx->wantVerbsOnly ? Transport::kVerbs
                                       : verbs           ? Transport::kAuto
                                                         : Transport::kTcp);
  std::vector<wire::VerbsRailDesc> vdescs;
  if (verbs) vdescs = verbs->localDescs();
  hb.verbsRailCount = static_cast<uint32_t>(vdescs.size());
  hsOut = wire::encodeHello(hb, localRails, vdescs);
  hsSent = 0;
  hsBuf.assign(sizeof(wire::HsHeader), 0);
  hsGot = 0;
  state = EpState::kConnecting;
  return Status::ok();
}

void EndpointImpl::onHandshakeEvent(Channel& ch, uint32_t events) {
  if (state == EpState::kFailed) return;
  Status st = progressHandshake(ch);
  if (!st.isOk() && st.code() != Code::kInProgress) return fail(st);
  // epoll reports a reset or hung-up socket even when no event is armed (a listener's
  // sockets wait quietly for the other joins): nothing will clear it, so it is the end of
  // this handshake, not a reason to wake again.
  if ((events & (EPOLLERR | EPOLLHUP)) && state != EpState::kConnected &&
      state != EpState::kFailed) {
    int err = 0;
    socklen_t len = sizeof err;
    (void)getsockopt(ch.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    fail(Status(Code::kConnectionReset,
                fmt::format("peer {} {} its {} during the handshake{}", peer,
                            err != 0 ? "reset" : "closed", ch.name(),
                            err != 0 ? fmt::format(" ({})", std::strerror(err)) : "")));
  }
}

Status EndpointImpl::progressHandshake(Channel& ch) {
  if (&ch == control.get()) {
    if (state == EpState::kConnecting) {
      Status c = tcp::finishConnect(ch.fd(), ctrlAddr);
      if (c.code() == Code::kInProgress) return c;
      if (!c.isOk())
        return Status(c.code(), fmt::format("connect to listener {}: {}", peer, c.message()));
      // Write the hello (small: normally one call).
      while (hsSent < hsOut.size()) {
        iovec iov{hsOut.data() + hsSent, hsOut.size() - hsSent};
        BRAID_ASSIGN_OR_RETURN(auto r, tcp::writeSomeV(ch.fd(), &iov, 1, peer));
        if (r.wouldBlock) return Status(Code::kInProgress);
        hsSent += r.bytes;
      }
      BRAID_RETURN_IF_ERROR(worker->poller.modify(ch.fd(), EPOLLIN, &ch));
      state = EpState::kAwaitAck;
    }
    if (state == EpState::kAwaitAck) {
      for (;;) {
        BRAID_ASSIGN_OR_RETURN(auto r, tcp::readSome(ch.fd(), hsBuf.data() + hsGot,
                                                     hsBuf.size() - hsGot, peer));
        if (r.eof)
          return Status(Code::kConnectionRefused,
                        fmt::format("listener {} closed the connection during the handshake "
                                    "(wrong job token or version, or not a braid listener?)",
                                    peer));
        if (r.wouldBlock) return Status(Code::kInProgress);
        hsGot += r.bytes;
        if (hsGot < hsBuf.size()) continue;
        wire::HsHeader h;
        std::memcpy(&h, hsBuf.data(), sizeof h);
        if (hsBuf.size() == sizeof h) {
          auto chk = wire::checkHeader(h);
          if (!chk.status.isOk()) return chk.status.withContext("reply from " + peer);
          hsBuf.resize(sizeof h + h.length);
          if (h.length > 0) continue;
        }
        const uint8_t* body = hsBuf.data() + sizeof h;
        if (h.type == static_cast<uint16_t>(wire::HsType::kReject))
          return wire::decodeReject(body, h.length).withContext(peer);
        if (h.type != static_cast<uint16_t>(wire::HsType::kHelloAck))
          return Status(Code::kProtocolError, fmt::format("{} answered the hello with frame "
                                                          "type {}", peer, h.type));
        BRAID_ASSIGN_OR_RETURN(wire::HelloAck ack, wire::decodeHelloAck(body, h.length));
        if (ack.body.nonce != nonce)
          return Status(Code::kProtocolError, fmt::format("{} acked another connection", peer));
        return startDataSockets(ack);
      }
    }
    return Status(Code::kInProgress);
  }
  // A data socket: finish the connect, then write its join.
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i].get() != &ch || dataReady[i]) continue;
    if (dataConnecting[i]) {
      const wire::RailDesc& pr = peerRails[i / socketsPerRail];
      Status c = tcp::finishConnect(ch.fd(), tcp::SockAddr::fromBytes(pr.family, pr.addr, pr.port));
      if (c.code() == Code::kInProgress) return c;
      if (!c.isOk())
        return Status(c.code(), fmt::format("data socket {} of rail {} to {}: {}",
                                            i % socketsPerRail, i / socketsPerRail,
                                            wire::railName(peerRails[i / socketsPerRail]),
                                            c.message()));
      dataConnecting[i] = false;
    }
    while (joinSent[i] < joinOut[i].size()) {
      iovec iov{joinOut[i].data() + joinSent[i], joinOut[i].size() - joinSent[i]};
      BRAID_ASSIGN_OR_RETURN(auto r, tcp::writeSomeV(ch.fd(), &iov, 1, peer));
      if (r.wouldBlock) return Status(Code::kInProgress);
      joinSent[i] += r.bytes;
    }
    dataReady[i] = true;
    BRAID_RETURN_IF_ERROR(worker->poller.modify(ch.fd(), EPOLLIN, &ch));
  }
  if (std::all_of(dataReady.begin(), dataReady.end(), [](bool b) { return b; })) onConnected();
  return Status::ok();
}

Status EndpointImpl::startDataSockets(const wire::HelloAck& ack) {
  endpointId = ack.body.endpointId;
  railCount = ack.body.railCount;
  socketsPerRail = ack.body.socketsPerRail;
  // The agreed limit is the smaller of both sides'; a listener announcing more than this
  // side offered is broken, and what a peer announces never raises a local limit.
  if (ack.body.eagerMax > ctx->eagerMax)
    return Status(Code::kProtocolError,
                  fmt::format("listener {} announced an eager limit of {} bytes, above the {} "
                              "this side offered",
                              peer, ack.body.eagerMax, ctx->eagerMax));
  eagerMax = ack.body.eagerMax;
  peerRails = ack.rails;
  if (railCount > localRails.size() || railCount != peerRails.size())
    return Status(Code::kProtocolError, "listener acked more rails than offered");
  if (ack.body.verbsRailCount > 0) {
    if (!verbs || ack.body.verbsRailCount > verbs->laneCount())
      return Status(Code::kProtocolError,
                    fmt::format("listener {} acked {} verbs rails, {} were offered", peer,
                                ack.body.verbsRailCount, verbs ? verbs->laneCount() : 0));
    // Our QPs reach RTS before any data socket joins: the listener sends nothing over
    // verbs before every join has arrived.
    BRAID_RETURN_IF_ERROR(verbs->connect(ack.verbsRails, ack.body.verbsRailCount, eagerMax)
                              .withContext("listener " + peer));
  } else if (verbs) {
    if (ctx->wantVerbsOnly)
      return Status(Code::kUnsupported,
                    fmt::format("listener {} has no verbs rail in common with this side "
                                "(BRAID_TRANSPORT=verbs here): check `braid_info` on both "
                                "hosts, or use BRAID_TRANSPORT=auto",
                                peer));
    BRAID_LOG_INFO(kTransport, "listener {} has no verbs rails: moving data over TCP", peer);
    verbs.reset();
  }
  state = EpState::kJoining;
  size_t n = static_cast<size_t>(railCount) * socketsPerRail;
  data.resize(n);
  dataReady.assign(n, false);
  dataConnecting.assign(n, true);
  joinOut.resize(n);
  joinSent.assign(n, 0);
  for (uint32_t r = 0; r < railCount; ++r) {
    tcp::SockAddr local = tcp::SockAddr::fromBytes(localRails[r].family, localRails[r].addr, 0);
    tcp::SockAddr remote =
        tcp::SockAddr::fromBytes(peerRails[r].family, peerRails[r].addr, peerRails[r].port);
    for (uint32_t k = 0; k < socketsPerRail; ++k) {
      size_t i = r * socketsPerRail + k;
      tcp::SocketTuning t{static_cast<int>(ctx->params.socketBufSize), ctx->timeoutMs};
      BRAID_ASSIGN_OR_RETURN(tcp::Fd fd, tcp::startConnect(local, remote, t));
      data[i] = std::make_unique<Channel>(this, std::move(fd), static_cast<int>(r),
                                          static_cast<int>(k), false);
      BRAID_RETURN_IF_ERROR(worker->poller.add(data[i]->fd(), EPOLLOUT, data[i].get()));
      joinOut[i] = wire::encodeJoin({token, endpointId, r, k});
    }
  }
  BRAID_LOG_DEBUG(kTransport, "{}: hello acked, {} rails x {} sockets", describe(), railCount,
                  socketsPerRail);
  return Status(Code::kInProgress);
}

void EndpointImpl::onConnected() {
  state = EpState::kConnected;
  for (Channel* ch : allChannels()) {
    Status st = ch->arm(EPOLLIN);
    if (!st.isOk()) return fail(st);
  }
  stats.bytesSentPerRail.assign(verbs ? verbs->laneCount() : railCount, 0);
  const uint32_t planned = static_cast<uint32_t>(verbs ? verbs->laneCount() : railCount);
  monitor = transport::RailMonitor(planned);
  links.assign(planned, RailLink{});
  railsDown = 0;
  for (uint32_t r = 0; r < planned; ++r) {
    if (verbs) monitor.describe(r, 1, verbs->laneNominalBps(r));
    else monitor.describe(r, socketsPerRail, tcp::linkSpeedMbps(std::string(localRails[r].ifname, strnlen(localRails[r].ifname, sizeof localRails[r].ifname))) * 1e6 / 8);
  }
  if (!queued.empty()) startQueued();
  lastRxNs = lastTxNs = core::nowNs();
  hsBuf.clear();
  hsBuf.shrink_to_fit();
  joinOut.clear();
  std::string rails;
  for (uint32_t r = 0; r < railCount; ++r)
    rails += fmt::format(" {}->{}", wire::railName(localRails[r]), wire::railName(peerRails[r]));
  if (verbs) {
    std::string lanes;
    for (size_t i = 0; i < verbs->laneCount(); ++i) lanes += " " + verbs->laneName(i);
    BRAID_LOG_INFO(kTransport, "{} connected ({}): {} verbs rails:{}; tcp (control):{}",
                   describe(), isServer ? "accepted" : "connected", verbs->laneCount(), lanes,
                   rails);
    return;
  }
  BRAID_LOG_INFO(kTransport, "{} connected ({}): {} rails x {} sockets:{}", describe(),
                 isServer ? "accepted" : "connected", railCount, socketsPerRail, rails);
}

Status EndpointImpl::connectProgress() {
  if (state == EpState::kConnected) return Status::ok();
  if (state == EpState::kFailed) return error;
  BRAID_ASSIGN_OR_RETURN(size_t n, worker->progress(0));
  (void)n;
  if (state == EpState::kConnected) return Status::ok();
  if (state == EpState::kFailed) return error;
  return Status(Code::kInProgress, "connecting to " + peer);
}

}  // namespace braid
