// lib/transport/wire.h — braid's wire formats (docs/protocol.md explains the exchange).
//
// Every struct is fixed-width, little-endian (braid runs on x86_64/aarch64 only, both
// little-endian; checked below), packed by construction (no implicit padding) and
// static_asserted. Decoding validates everything a peer controls: magic, version, type,
// lengths, counts; a failure says what was wrong and never reads past the bytes given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "braid/status.h"

namespace braid::wire {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "braid's wire format is little-endian");

constexpr uint32_t kMagic = 0x44494152;  // "RAID" read as bytes 'R','A','I','D' — braid
// 2: verbs rails in Hello/HelloAck; 3: eager receives send no CTS (RTS); 4: frames checked
// per path, variable-length reject messages, cancel frames, no heartbeats; 5: rail down/up
// frames and rejoins of a failed TCP rail.
constexpr uint16_t kVersion = 7;
constexpr uint32_t kMaxRails = 16;        // per endpoint
constexpr uint32_t kMaxSocketsPerRail = 64;
constexpr uint64_t kMaxEagerLimit = 1u << 20;  // BRAID_EAGER_MAX's bound; a hello offering more is malformed
constexpr uint32_t kMaxHandshakeBody = 4096;  // anything longer is refused as absurd

/// Handshake frame types (control socket before it carries data frames).
enum class HsType : uint16_t {
  kHello = 1,     ///< connector -> listener: who I am, my rails
  kHelloAck = 2,  ///< listener -> connector: accepted; your endpoint id, my data addresses
  kReject = 3,    ///< either way: refused, with a reason
  kJoin = 4,      ///< connector -> listener, first frame of each data socket
  kRejoin = 5,    ///< connector -> listener, first frame of a data socket replacing one of
                  ///< a failed rail of a connected endpoint (RejoinBody)
};

/// Why a handshake was refused.
enum class RejectReason : uint32_t {
  kBadMagic = 1,
  kBadVersion = 2,
  kBadToken = 3,
  kMalformed = 4,
  kUnknownEndpoint = 5,
  kTimeout = 6,
  kNoRails = 7,
  kInternal = 8,
};
const char* rejectReasonName(RejectReason r);

/// Prefix of every handshake frame.
struct HsHeader {
  uint32_t magic;    ///< kMagic
  uint16_t version;  ///< kVersion of the sender
  uint16_t type;     ///< HsType
  uint32_t length;   ///< bytes of body that follow (<= kMaxHandshakeBody)
  uint32_t reserved; ///< 0
};
static_assert(sizeof(HsHeader) == 16);

/// One rail's reachable address.
struct RailDesc {
  uint16_t family;    ///< AF_INET or AF_INET6
  uint16_t port;      ///< listening port of this rail (0 in a Hello: not listening)
  uint32_t flags;     ///< 0
  uint8_t addr[16];   ///< IPv4 in the first 4 bytes, or IPv6
  char ifname[16];    ///< NUL-padded interface name, for messages
};
static_assert(sizeof(RailDesc) == 40);

/// Body of kHello (followed by railCount RailDesc).
struct HelloBody {
  uint64_t token;           ///< job token; must equal the listener's
  uint64_t nonce;           ///< connector's random id, echoed in the ack
  uint32_t railCount;       ///< rails the connector offers (1..kMaxRails)
  uint32_t socketsPerRail;  ///< data sockets the connector wants per rail
  uint64_t eagerMax;        ///< connector's eager limit (the smaller one is used)
  uint32_t transport;       ///< braid::Transport the connector wants
  uint32_t verbsRailCount;  ///< VerbsRailDesc that follow the RailDesc array (0..kMaxRails)
};
static_assert(sizeof(HelloBody) == 40);

/// Body of kHelloAck (followed by railCount RailDesc of the listener's data addresses).
struct HelloAckBody {
  uint64_t endpointId;      ///< listener-assigned id, presented in every kJoin
  uint64_t nonce;           ///< echo of the Hello's nonce
  uint32_t railCount;       ///< rails in use: min of both sides
  uint32_t socketsPerRail;  ///< data sockets per rail: min of both sides
  uint64_t eagerMax;        ///< agreed eager limit
  uint32_t verbsRailCount;  ///< verbs rails in use (min of both sides; 0: TCP data path),
                            ///< that many VerbsRailDesc follow the RailDesc array
  uint32_t reserved;        ///< 0
};
static_assert(sizeof(HelloAckBody) == 40);

/// One verbs rail (device port and its RC QP to this peer), carried in Hello and HelloAck
/// after the TCP rails. Rail i of the connector pairs with rail i of the listener.
struct VerbsRailDesc {
  uint8_t gid[16];       ///< GID of the chosen index (RoCE) or the port GID (IB)
  uint32_t qpn;          ///< RC QP number for this peer
  uint32_t psn;          ///< initial packet sequence number of that QP's send queue
  uint16_t lid;          ///< port LID (IB; 0 on RoCE)
  uint8_t linkLayer;     ///< IBV_LINK_LAYER_INFINIBAND (1) or _ETHERNET (2)
  uint8_t mtu;           ///< active MTU of the port (enum ibv_mtu, 1..5)
  uint32_t recvSlots;    ///< receive buffers posted on the QP: the peer's initial SEND credits
  uint64_t ctsRingAddr;  ///< this side's CTS ring; the peer RDMA-writes its CTS entries there
  uint32_t ctsRingRkey;  ///< rkey of the ring on this rail's PD
  uint32_t ctsSlots;     ///< entries in the ring (power of two)
  uint64_t flowAddr;     ///< this side's FlowBlock; the peer RDMA-writes its counters there
  uint32_t flowRkey;     ///< rkey of the FlowBlock on this rail's PD
  uint8_t port;          ///< device port number, for messages
  uint8_t gidIndex;      ///< GID index in use, for messages
  uint16_t railIndex;    ///< which of the sender's verbs rails owns the QP (several QPs per
                         ///< rail: BRAID_IB_QPS_PER_RAIL); indexes CtsEntry::rkeys
  char device[16];       ///< NUL-padded device name, for messages
};
static_assert(sizeof(VerbsRailDesc) == 80);

/// Verbs data path: a receive's clear-to-send, RDMA-written by the receiver into slot
/// (ordinal - 1) % ctsSlots of the sender's CTS ring. The ordinal is both the first and the
/// last word of the entry (two cache lines): the sender takes the entry once both read as
/// the next ordinal, so a half-placed write is never consumed.
struct CtsEntry {
  uint64_t ordinalHead;      ///< == ordinal
  uint64_t tag;              ///< user tag
  uint64_t seq;              ///< ordinal of the receive among those with this tag
  uint64_t capacity;         ///< receive buffer size
  uint64_t addr;             ///< receive buffer address (0: capacity <= eager limit)
  uint32_t rkeys[kMaxRails]; ///< rkey of the receive buffer on each of the receiver's verbs
                             ///< rails (0: none); a QP uses its peer's railIndex
  uint64_t reserved[2];      ///< 0
  uint64_t ordinal;          ///< 1-based ordinal of this CTS on the endpoint; 0 = empty slot
};
static_assert(sizeof(CtsEntry) == 128);

/// Verbs data path: a CTS riding inside a SEND on lane 0, after the payload. The SEND's
/// FrameHeader.flags says how many (bits 0-6) and which form (bit 7): full CtsEntry, or this
/// compact one for receives that take only eager messages (no address, no rkeys), which
/// keeps a ping that carries its pong's CTS small.
struct CompactCts {
  uint64_t tag;       ///< user tag
  uint64_t seq;       ///< ordinal of the receive among those with this tag
  uint64_t capacity;  ///< receive buffer size (<= the eager limit)
};
static_assert(sizeof(CompactCts) == 24);
/// FrameHeader.flags on the TCP control socket: a frame sent again after the verbs lanes
/// went (it may have arrived before over verbs: a duplicate is dropped).
constexpr uint8_t kAgain = 0x01;
constexpr uint8_t kPiggyFull = 0x80;       ///< FrameHeader.flags: the entries are CtsEntry
constexpr uint8_t kPiggyCountMask = 0x7F;  ///< FrameHeader.flags: how many entries

/// Verbs data path: counters a side RDMA-writes into its peer's FlowBlock (rail 0).
/// Both are cumulative, so a lost race between two updates only delays credit.
struct FlowBlock {
  uint64_t ctsConsumed;              ///< CTS entries of the peer's ring this side has read
  uint64_t recvReposted[kMaxRails];  ///< receive buffers this side re-posted, per rail
};
static_assert(sizeof(FlowBlock) == 136);

/// Body of kJoin: a data socket presenting itself.
struct JoinBody {
  uint64_t token;       ///< job token
  uint64_t endpointId;  ///< from the HelloAck
  uint32_t rail;        ///< rail index
  uint32_t socket;      ///< socket index within the rail
};
static_assert(sizeof(JoinBody) == 24);

/// Body of kRejoin: a data socket of a rail the connector brings back after a failure.
/// Every attempt has a higher `epoch` (the rail's generation: 0 at connect); the
/// listener's endpoint takes the rail back when all of its sockets of one epoch joined,
/// and answers with a kRailUp frame on the control socket.
struct RejoinBody {
  uint64_t token;       ///< job token
  uint64_t endpointId;  ///< from the HelloAck
  uint32_t rail;        ///< rail index
  uint32_t socket;      ///< socket index within the rail
  uint32_t epoch;       ///< > the rail's current epoch
  uint32_t reserved;    ///< 0
};
static_assert(sizeof(RejoinBody) == 32);

/// Body of kReject: this header, then `length` bytes of UTF-8 explanation (no NUL).
struct RejectBody {
  uint32_t reason;  ///< RejectReason
  uint32_t length;  ///< bytes of message that follow (<= kMaxRejectMessage)
};
static_assert(sizeof(RejectBody) == 8);
/// A reject message longer than this is cut at a word boundary, with "...".
constexpr uint32_t kMaxRejectMessage = 1024;
static_assert(sizeof(RejectBody) + kMaxRejectMessage <= kMaxHandshakeBody);

/// Data-phase frame types.
enum class FrameType : uint8_t {
  kCts = 1,        ///< receiver posted receive (tag, seq) with capacity `total`
  kEager = 2,      ///< whole message of `length` bytes follows
  kChunk = 3,      ///< `length` bytes of message (tag, seq) at `offset` follow
  kTruncated = 4,  ///< sender's message (tag, seq) of `total` bytes exceeds the receive
  kHeartbeat = 5,  ///< liveness, no payload
  kClose = 6,      ///< graceful close, no payload
  kFin = 7,        ///< verbs: the byte ranges of message (tag, seq) of `total` bytes in its
                   ///< payload (FinRange each, `offset` bytes in all) were RDMA-written on
                   ///< this lane before this frame (sent as a SEND)
  kRts = 8,        ///< verbs: message (tag, seq) of `total` (> eager limit) bytes waits for
                   ///< its CTS (an eager-only receive answers with one; others ignore it)
  kCancelRecv = 9,   ///< receiver -> sender: receive (tag, seq) asks to be withdrawn
  kCancelReply = 10, ///< sender -> receiver: `offset` 1: withdrawn (the sender skips seq),
                     ///< 0: too late (its message is on its way and completes the receive)
  kCancelSend = 11,  ///< sender -> receiver: send (tag, seq) was canceled before it started;
                     ///< the receive it matches ends with kCanceled
  kRailDown = 12,    ///< either way: this side gave up rail `offset` of epoch `total` (its
                     ///< sockets are closed; what they carried goes again over the others)
  kRailUp = 13,      ///< listener -> connector: every socket of rail `offset`'s rejoin of
                     ///< epoch `total` arrived; the rail carries data again
  kRecheck = 14,     ///< verbs, control socket, sender -> receiver after a lane failed: which
                     ///< bytes of [offset, offset + total) of message (tag, seq) are missing?
  kRecheckReply = 15,  ///< receiver -> sender: [offset, offset + total) is missing (write it
                       ///< again); flags kRecheckLast: the answer to the recheck at `offset`
                       ///< is complete (`total` 0)
  kLaneJoin = 16,     ///< verbs, connector -> listener: lane `offset` tries to rejoin (epoch
                      ///< `total`) with the new QP in the payload (a VerbsRailDesc); `seq`: the
                      ///< receive slots the sender returned on the lane before (credit base)
  kLaneJoinAck = 17,  ///< listener -> connector: its new QP for lane `offset` (payload), `seq`
                      ///< as above; flags kJoinRefused and no payload: not now
  kVerbsBack = 18,    ///< verbs, connector -> listener, after a move to TCP and the lanes'
                      ///< rejoin: return to RDMA, lane `tag` the control lane? `offset`:
                      ///< messages the sender has put on
                      ///< the wire to the peer, `total`: the peer's messages arrived here,
                      ///< `seq`: CTS entries the sender has written into the peer's ring
  kVerbsBackAck = 19, ///< listener -> connector: returned (the listener's counts, as above),
                      ///< or flags kJoinRefused: not now (a transfer is open, counts differ)
};

/// kFin payload: one byte range the lane wrote, [offset, offset + length).
struct FinRange {
  uint64_t offset;
  uint64_t length;
};
static_assert(sizeof(FinRange) == 16);
/// Ranges one FIN carries at most (a lane's part of a message with more sends several).
constexpr uint32_t kFinRanges = 16;
/// kRailDown.tag: the rail is a verbs lane (0: a TCP rail).
constexpr uint64_t kRailDownVerbsLane = 1;
/// kLaneJoinAck.flags: the listener cannot take the lane back now (its port is down).
constexpr uint8_t kJoinRefused = 1;
/// One VerbsRailDesc as a lane join carries it, validated as the handshake's are (pure).
Result<VerbsRailDesc> decodeVerbsRailDesc(const uint8_t* p, size_t len);
/// kRecheckReply.flags: the last answer to one recheck.
constexpr uint8_t kRecheckLast = 1;

/// Where a data-phase frame arrived. Each path carries its own frame types, and what may
/// arrive is bounded by this side's limits, never by what the peer announced.
enum class Path : uint8_t {
  kControlSocket,  ///< TCP control socket: CTS, EAGER, TRUNCATED, CLOSE, cancel and rail frames
  kDataSocket,     ///< TCP data socket: CHUNK only
  kVerbsSend,      ///< a SEND on a verbs lane: EAGER, TRUNCATED, FIN, RTS, cancel frames
};
const char* pathName(Path p);

/// Data-phase frame header: 40 bytes, followed by `length` payload bytes.
struct FrameHeader {
  uint16_t magic;   ///< kFrameMagic
  uint8_t type;     ///< FrameType
  uint8_t flags;    ///< 0
  uint32_t length;  ///< payload bytes after this header
  uint64_t tag;     ///< user tag
  uint64_t seq;     ///< ordinal of the message among those with this tag
  uint64_t offset;  ///< kChunk: byte offset of the payload in the message
  uint64_t total;   ///< kEager/kChunk/kTruncated: message size; kCts: receive capacity
};
static_assert(sizeof(FrameHeader) == 40);
/// The ranges of a FIN checkFrame accepted (pure): each non-empty and within the message,
/// adding up to its `offset`. Fills `out` (kFinRanges at most) and `*n`.
Status parseFinRanges(const FrameHeader& f, const uint8_t* payload, FinRange* out, uint32_t* n);
/// Verbs: an EAGER frame goes with only the first kEagerHeaderBytes of its header (magic,
/// type, flags, length, tag, seq); offset is 0 and total equals length.
constexpr size_t kEagerHeaderBytes = 24;
static_assert(offsetof(FrameHeader, offset) == kEagerHeaderBytes);
constexpr uint16_t kFrameMagic = 0xB7A1;
constexpr uint32_t kMaxFrameLength = 1u << 30;

/// A data frame header with the magic set (pure).
inline FrameHeader makeFrame(FrameType t, uint64_t tag, uint64_t seq, uint64_t total,
                             uint32_t length = 0, uint64_t offset = 0) {
  FrameHeader h{};
  h.magic = kFrameMagic;
  h.type = static_cast<uint8_t>(t);
  h.length = length;
  h.tag = tag;
  h.seq = seq;
  h.offset = offset;
  h.total = total;
  return h;
}

// ---- encode (pure) ----
/// `body.verbsRailCount` must equal `verbs.size()`.
std::vector<uint8_t> encodeHello(const HelloBody& body, const std::vector<RailDesc>& rails,
                                 const std::vector<VerbsRailDesc>& verbs = {});
std::vector<uint8_t> encodeHelloAck(const HelloAckBody& body, const std::vector<RailDesc>& rails,
                                    const std::vector<VerbsRailDesc>& verbs = {});
std::vector<uint8_t> encodeJoin(const JoinBody& body);
std::vector<uint8_t> encodeRejoin(const RejoinBody& body);
std::vector<uint8_t> encodeReject(RejectReason reason, const std::string& message);
/// Wraps an arbitrary body (tests use this to forge frames).
std::vector<uint8_t> encodeFrame(HsType type, const void* body, size_t len,
                                 uint32_t magic = kMagic, uint16_t version = kVersion);

// ---- decode (pure) ----
/// Validates a header; on a bad magic/version the error carries the RejectReason to send.
struct HeaderCheck {
  Status status;
  RejectReason reason = RejectReason::kMalformed;
};
HeaderCheck checkHeader(const HsHeader& h);

struct Hello {
  HelloBody body{};
  std::vector<RailDesc> rails;
  std::vector<VerbsRailDesc> verbsRails;
};
Result<Hello> decodeHello(const uint8_t* body, size_t len);
struct HelloAck {
  HelloAckBody body{};
  std::vector<RailDesc> rails;
  std::vector<VerbsRailDesc> verbsRails;
};
Result<HelloAck> decodeHelloAck(const uint8_t* body, size_t len);
Result<JoinBody> decodeJoin(const uint8_t* body, size_t len);
Result<RejoinBody> decodeRejoin(const uint8_t* body, size_t len);
/// A reject as a Status (kConnectionRefused) with the peer's message.
Status decodeReject(const uint8_t* body, size_t len);

/// Validates a data frame header that arrived on `path` against the receiver's limits
/// (`eagerMax`: the limit this side agreed to, never more than its own).
Status checkFrame(const FrameHeader& f, uint64_t eagerMax, Path path);

std::string railName(const RailDesc& r);
/// "rxe0:1 gid ::ffff:10.77.0.1 qpn 0x11" for messages.
std::string verbsRailName(const VerbsRailDesc& r);
/// Fills a RailDesc from an interface name and socket address (port included).
RailDesc makeRailDesc(const std::string& ifname, int family, const uint8_t addr[16], uint16_t port);

}  // namespace braid::wire
