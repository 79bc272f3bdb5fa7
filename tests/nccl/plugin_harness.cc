// tests/nccl/plugin_harness.cc — drives libnccl-net-braid.so as NCCL 2.28.9 does, without
// NCCL or a GPU: the library is dlopen()ed by NCCL's name rules (RTLD_NOW | RTLD_LOCAL), the
// table is looked up by version symbol, and two processes exchange the 128-byte handle out
// of band, then run init, devices, getProperties, listen/connect/accept (retried until
// non-NULL), regMr, isend/irecv (grouped receives, the 0x1 hint, NULL-request retries),
// test, deregMr, close and finalize, validating every byte.
//
//   plugin_harness pair  --plugin P [--version 11|10|9|8] [--max-size BYTES] [--repeat N]
//       fork()s a receiver and a sender that talk over a socketpair.
//   plugin_harness recv  --plugin P --oob-listen PORT ...   (two hosts: the receiver)
//   plugin_harness send  --plugin P --oob HOST:PORT ...     (two hosts: the sender)
//   plugin_harness local --plugin P   two communicators in one process, loopback connect
//       and accept from one thread, a second copy of the library, closeListen unused.
//   plugin_harness threads --plugin P  a service thread (connect, accept, regMr) and a
//       progress thread (isend, irecv, test) on one communicator at once.
//   plugin_harness bench --plugin P --size BYTES --iters N (pair over fork; prints MB/s)
//
// Exit status 0 when everything checked out; 1 with a message naming the step otherwise.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "nccl_net_abi.h"

namespace {

using Clock = std::chrono::steady_clock;
std::string gRole = "harness";

[[noreturn]] void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "[%s %d] FAIL: ", gRole.c_str(), static_cast<int>(getpid()));
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::fflush(stderr);
  _exit(1);
}

#define CHECK(cond, ...)        \
  do {                          \
    if (!(cond)) die(__VA_ARGS__); \
  } while (0)
#define NCCLCHECK(call)                                                        \
  do {                                                                         \
    int rc_ = static_cast<int>(call);                                          \
    if (rc_ != 0) die("%s returned ncclResult %d (line %d)", #call, rc_, __LINE__); \
  } while (0)

void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stdout, "[%s] ", gRole.c_str());
  std::vfprintf(stdout, fmt, ap);
  std::fprintf(stdout, "\n");
  va_end(ap);
  std::fflush(stdout);
}

// NCCL's logger: WARN always, INFO with NCCL_DEBUG=INFO (as NCCL prints them).
void logger(braid_ncclDebugLogLevel level, unsigned long, const char*, int, const char* fmt, ...) {
  static const bool info = [] {
    const char* d = std::getenv("NCCL_DEBUG");
    return d != nullptr && (std::strcmp(d, "INFO") == 0 || std::strcmp(d, "TRACE") == 0);
  }();
  if (level > BRAID_NCCL_LOG_WARN && !(info && level == BRAID_NCCL_LOG_INFO)) return;
  va_list ap;
  va_start(ap, fmt);
  char buf[4096];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "[%s] NCCL %s %s\n", gRole.c_str(),
               level == BRAID_NCCL_LOG_WARN ? "WARN" : "INFO", buf);
}

/// NCCL 2.28.9's openPluginLib: the name as given, then libnccl-net-<name>.so unless the
/// name has a '/' or is already lib*.so.
void* openLikeNccl(const std::string& name) {
  void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h != nullptr) return h;
  std::string first = dlerror();
  bool libSo = name.rfind("lib", 0) == 0 && name.size() > 3 &&
               name.compare(name.size() - 3, 3, ".so") == 0;
  if (name.find('/') == std::string::npos && !libSo) {
    std::string alt = "libnccl-net-" + name + ".so";
    h = dlopen(alt.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h != nullptr) return h;
    first += "; " + std::string(dlerror());
  }
  die("dlopen(%s): %s", name.c_str(), first.c_str());
}

/// The plugin's table, whatever its version, as the v11 calls (the harness's own adapter;
/// NCCL's compat shims do the same).
struct Net {
  int version = 11;
  std::string name;
  std::function<int(void**)> init;  // ctx out (the v10- shims: one ctx per process)
  std::function<int(int*)> devices;
  std::function<int(int, braid_ncclNetProperties_v11_t*)> getProperties;
  std::function<int(void*, int, void*, void**)> listen;
  std::function<int(void*, int, void*, void**, braid_ncclNetDeviceHandle_t**)> connect;
  std::function<int(void*, void**, braid_ncclNetDeviceHandle_t**)> accept;
  std::function<int(void*, void*, size_t, int, void**)> regMr;
  std::function<int(void*, void*)> deregMr;
  std::function<int(void*, void*, size_t, int, void*, void**)> isend;
  std::function<int(void*, int, void**, size_t*, int*, void**, void**)> irecv;
  std::function<int(void*, int, void**, int*, void**, void**)> iflush;
  std::function<int(void*, int*, int*)> test;
  std::function<int(void*)> closeSend, closeRecv, closeListen;
  std::function<int(int*, braid_ncclNetVDeviceProps_t*)> makeVDevice;
  std::function<int(void*)> finalize;  // v11 only
};

template <class T>
void common(Net& n, const T* t) {
  n.name = t->name;
  n.devices = t->devices;
  n.accept = t->accept;
  n.deregMr = t->deregMr;
  n.iflush = t->iflush;
  n.test = t->test;
  n.closeSend = t->closeSend;
  n.closeRecv = t->closeRecv;
  n.closeListen = t->closeListen;
}

/// isend/irecv of v11 and v10, which take profiler handles: NCCL passes non-NULL ones.
template <class T>
void withProfilerHandles(Net& n, const T* t) {
  n.isend = [t](void* c, void* d, size_t s, int tag, void* mh, void** r) {
    int ph = 0;
    return t->isend(c, d, s, tag, mh, &ph, r);
  };
  n.irecv = [t](void* c, int k, void** d, size_t* s, int* tags, void** mh, void** r) {
    void* ph[8] = {};
    return t->irecv(c, k, d, s, tags, mh, ph, r);
  };
}

Net load(void* lib, int version) {
  std::string sym = "ncclNetPlugin_v" + std::to_string(version);
  void* p = dlsym(lib, sym.c_str());
  CHECK(p != nullptr, "dlsym(%s): %s", sym.c_str(), dlerror());
  Net n;
  n.version = version;
  if (version == 11) {
    auto* t = static_cast<const braid_ncclNet_v11_t*>(p);
    common(n, t);
    n.init = [t](void** ctx) {
      braid_ncclNetCommConfig_t cfg{BRAID_NCCL_NET_TRAFFIC_CLASS_UNDEF};
      static uint64_t commId = 0x5eed;
      return t->init(ctx, commId++, &cfg, logger, nullptr);
    };
    n.getProperties = t->getProperties;
    n.listen = t->listen;
    n.connect = t->connect;
    n.regMr = t->regMr;
    withProfilerHandles(n, t);
    n.makeVDevice = t->makeVDevice;
    n.finalize = t->finalize;
    CHECK(t->finalize != nullptr, "v11 finalize is NULL");
    CHECK(t->getDeviceMr == nullptr && t->irecvConsumed == nullptr,
          "a host plugin leaves getDeviceMr and irecvConsumed NULL");
    return n;
  }
  auto props10 = [](auto* t) {
    return [t](int d, braid_ncclNetProperties_v11_t* out) {
      braid_ncclNetProperties_v10_t p{};
      int rc = t->getProperties(d, &p);
      std::memset(out, 0, sizeof *out);
      std::memcpy(out, &p, sizeof p);
      out->maxMultiRequestSize = 1;
      return rc;
    };
  };
  if (version == 10) {
    auto* t = static_cast<const braid_ncclNet_v10_t*>(p);
    common(n, t);
    n.init = [t](void** ctx) {
      *ctx = nullptr;
      return t->init(logger, nullptr);
    };
    n.getProperties = props10(t);
    n.listen = [t](void*, int d, void* h, void** l) { return t->listen(d, h, l); };
    n.connect = [t](void*, int d, void* h, void** s, braid_ncclNetDeviceHandle_t** dh) {
      braid_ncclNetCommConfig_t cfg{-1};
      return t->connect(d, &cfg, h, s, dh);
    };
    n.regMr = t->regMr;
    withProfilerHandles(n, t);
    n.makeVDevice = t->makeVDevice;
    return n;
  }
  if (version == 9) {
    auto* t = static_cast<const braid_ncclNet_v9_t*>(p);
    common(n, t);
    n.init = [t](void** ctx) {
      *ctx = nullptr;
      return t->init(logger);
    };
    n.getProperties = props10(t);
    n.listen = [t](void*, int d, void* h, void** l) { return t->listen(d, h, l); };
    n.connect = [t](void*, int d, void* h, void** s, braid_ncclNetDeviceHandle_t** dh) {
      return t->connect(d, h, s, dh);
    };
    n.regMr = t->regMr;
    n.isend = t->isend;
    n.irecv = t->irecv;
    n.makeVDevice = t->makeVDevice;
    return n;
  }
  CHECK(version == 8, "unknown version %d", version);
  auto* t = static_cast<const braid_ncclNet_v8_t*>(p);
  common(n, t);
  n.init = [t](void** ctx) {
    *ctx = nullptr;
    return t->init(logger);
  };
  n.getProperties = [t](int d, braid_ncclNetProperties_v11_t* out) {
    braid_ncclNetProperties_v8_t p{};
    int rc = t->getProperties(d, &p);
    std::memset(out, 0, sizeof *out);
    out->name = p.name;
    out->pciPath = p.pciPath;
    out->guid = p.guid;
    out->ptrSupport = p.ptrSupport;
    out->regIsGlobal = p.regIsGlobal;
    out->speed = p.speed;
    out->port = p.port;
    out->maxComms = p.maxComms;
    out->maxRecvs = p.maxRecvs;
    out->netDeviceType = p.netDeviceType;
    out->netDeviceVersion = p.netDeviceVersion;
    out->vProps.ndevs = 1;  // what NCCL's v8 shim reports
    out->vProps.devs[0] = d;
    out->maxP2pBytes = size_t{1} << 30;
    return rc;
  };
  n.listen = [t](void*, int d, void* h, void** l) { return t->listen(d, h, l); };
  n.connect = [t](void*, int d, void* h, void** s, braid_ncclNetDeviceHandle_t** dh) {
    return t->connect(d, h, s, dh);
  };
  n.regMr = [t](void* c, void* d, size_t s, int type, void** mh) {
    return t->regMr(c, d, static_cast<int>(s), type, mh);
  };
  n.isend = [t](void* c, void* d, size_t s, int tag, void* mh, void** r) {
    return t->isend(c, d, static_cast<int>(s), tag, mh, r);
  };
  n.irecv = [t](void* c, int k, void** d, size_t* s, int* tags, void** mh, void** r) {
    int sz[8];
    for (int i = 0; i < k && i < 8; ++i) sz[i] = static_cast<int>(s[i]);
    return t->irecv(c, k, d, sz, tags, mh, r);
  };
  return n;
}

// ---- out of band: a stream socket (socketpair, or TCP between two hosts)

void oobWrite(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t k = ::write(fd, c, n);
    CHECK(k > 0, "out-of-band write: %s", std::strerror(errno));
    c += k;
    n -= static_cast<size_t>(k);
  }
}

void oobRead(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t k = ::read(fd, c, n);
    CHECK(k > 0, "out-of-band read: %s", k == 0 ? "peer closed" : std::strerror(errno));
    c += k;
    n -= static_cast<size_t>(k);
  }
}

void barrier(int fd, char tag) {
  oobWrite(fd, &tag, 1);
  char got = 0;
  oobRead(fd, &got, 1);
  CHECK(got == tag, "out-of-band barrier '%c' met '%c'", tag, got);
}

// ---- data

uint8_t pattern(size_t i, uint64_t seed) {
  uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
  return static_cast<uint8_t>(x >> 29);
}

void fill(uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = pattern(i, seed);
}

void verify(const uint8_t* p, size_t n, uint64_t seed, const char* what) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != pattern(i, seed))
      die("%s: byte %zu of %zu is %#x, expected %#x", what, i, n, p[i], pattern(i, seed));
}

int kTimeoutS = std::getenv("HARNESS_TIMEOUT_S") ? std::atoi(std::getenv("HARNESS_TIMEOUT_S")) : 60;

void* waitDone(Net& net, void* req, int* sizes, const char* what) {
  auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
  int done = 0;
  while (!done) {
    int rc = net.test(req, &done, sizes);
    CHECK(rc == 0, "%s: test returned ncclResult %d", what, rc);
    CHECK(Clock::now() < deadline, "%s: not done after %d s", what, kTimeoutS);
  }
  return nullptr;
}

void* postSend(Net& net, void* comm, void* data, size_t size, int tag, void* mh) {
  void* req = nullptr;
  auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
  for (;;) {
    NCCLCHECK(net.isend(comm, data, size, tag, mh, &req));
    if (req != nullptr) return req;
    CHECK(Clock::now() < deadline, "isend of %zu bytes kept returning a NULL request", size);
  }
}

void* postRecv(Net& net, void* comm, int n, void** data, size_t* sizes, int* tags, void** mhs,
               bool hint) {
  void* req = nullptr;
  auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
  for (;;) {
    // NCCL stores NCCL_NET_OPTIONAL_RECV_COMPLETION in *request first (LL/LL128, n == 1).
    req = hint ? reinterpret_cast<void*>(BRAID_NCCL_NET_OPTIONAL_RECV_COMPLETION) : nullptr;
    NCCLCHECK(net.irecv(comm, n, data, sizes, tags, mhs, &req));
    CHECK(req != reinterpret_cast<void*>(BRAID_NCCL_NET_OPTIONAL_RECV_COMPLETION),
          "irecv left the 0x1 hint in *request");
    if (req != nullptr) return req;
    CHECK(Clock::now() < deadline, "irecv kept returning a NULL request");
  }
}

struct Options {
  std::string plugin;
  int version = 11;
  size_t maxSize = 64u << 20;
  int repeat = 1;
  int dev = 0;
  std::string oob;  // HOST:PORT (send) or PORT (recv)
  size_t benchSize = 4u << 20;
  int benchIters = 200;
  int window = 8;
  bool fuse = false;  // makeVDevice over devices 0 and 1, and use it
  bool expectFlush = false;  // iflush must return a request (verbs)
  bool gpu = false;  // the device must advertise NCCL_PTR_CUDA; step 1 registers as CUDA
};

void checkDevices(Net& net, int* ndev) {
  NCCLCHECK(net.devices(ndev));
  CHECK(*ndev > 0, "devices() reported %d", *ndev);
  std::vector<std::string> names;
  for (int d = 0; d < *ndev; ++d) {
    braid_ncclNetProperties_v11_t p{};
    NCCLCHECK(net.getProperties(d, &p));
    CHECK(p.name != nullptr && *p.name != '\0', "device %d has no name", d);
    for (const auto& n : names) CHECK(n != p.name, "device name %s is not unique", p.name);
    names.emplace_back(p.name);
    CHECK(p.speed > 0, "device %s: speed %d", p.name, p.speed);
    CHECK(p.maxRecvs == 8, "device %s: maxRecvs %d (expected 8)", p.name, p.maxRecvs);
    CHECK(p.netDeviceType == BRAID_NCCL_NET_DEVICE_HOST && p.netDeviceVersion == 0,
          "device %s: netDeviceType %d version %d", p.name, p.netDeviceType,
          p.netDeviceVersion);
    CHECK(p.ptrSupport & BRAID_NCCL_PTR_HOST, "device %s: no NCCL_PTR_HOST", p.name);
    CHECK(p.maxP2pBytes > 0 && p.maxP2pBytes <= static_cast<size_t>(BRAID_NCCL_MAX_NET_SIZE_BYTES),
          "device %s: maxP2pBytes %zu outside (0, 1 TiB]", p.name, p.maxP2pBytes);
    CHECK(p.vProps.ndevs >= 1 && p.vProps.ndevs <= 4, "device %s: vProps.ndevs %d", p.name,
          p.vProps.ndevs);
    CHECK(p.maxComms > 0, "device %s: maxComms %d", p.name, p.maxComms);
    say("device %d: %s pci %s guid %#llx port %d speed %d Mbit/s ptrSupport %#x maxRecvs %d "
        "maxP2pBytes %zu",
        d, p.name, p.pciPath != nullptr ? p.pciPath : "(none)",
        static_cast<unsigned long long>(p.guid), p.port, p.speed, p.ptrSupport, p.maxRecvs,
        p.maxP2pBytes);
  }
}

/// makeVDevice over devices 0 and 1 as NCCL's NIC fusion does; checks the new device.
int fuse(Net& net, int ndev) {
  CHECK(net.makeVDevice != nullptr, "v%d has no makeVDevice", net.version);
  CHECK(ndev >= 2, "--fuse needs two devices, %d exist", ndev);
  braid_ncclNetProperties_v11_t p0{}, p1{};
  NCCLCHECK(net.getProperties(0, &p0));
  NCCLCHECK(net.getProperties(1, &p1));
  braid_ncclNetVDeviceProps_t vp{};
  vp.ndevs = 2;
  vp.devs[0] = 0;
  vp.devs[1] = 1;
  int v = -1;
  NCCLCHECK(net.makeVDevice(&v, &vp));
  int n2 = 0;
  NCCLCHECK(net.devices(&n2));
  CHECK(v == ndev && n2 == ndev + 1, "makeVDevice gave device %d, devices() %d (had %d)", v, n2,
        ndev);
  braid_ncclNetProperties_v11_t pv{};
  NCCLCHECK(net.getProperties(v, &pv));
  CHECK(pv.vProps.ndevs == 2 && pv.vProps.devs[0] == 0 && pv.vProps.devs[1] == 1,
        "virtual device %d lists %d children", v, pv.vProps.ndevs);
  CHECK(pv.speed == p0.speed + p1.speed, "virtual device speed %d, children %d + %d", pv.speed,
        p0.speed, p1.speed);
  CHECK(std::string(pv.name) == std::string(p0.name) + "+" + p1.name, "virtual device name %s",
        pv.name);
  // A bad group is refused, and leaves the table as it was.
  braid_ncclNetVDeviceProps_t bad{};
  bad.ndevs = 2;
  bad.devs[0] = 0;
  bad.devs[1] = 99;
  int b = -1;
  CHECK(net.makeVDevice(&b, &bad) != 0, "makeVDevice accepted device 99");
  NCCLCHECK(net.devices(&n2));
  CHECK(n2 == ndev + 1, "a refused makeVDevice changed the device count to %d", n2);
  say("virtual device %d %s over devices 0 and 1, %d Mbit/s, ptrSupport %#x", v, pv.name,
      pv.speed, pv.ptrSupport);
  return v;
}

std::vector<size_t> sizesUpTo(size_t max) {
  std::vector<size_t> out = {0, 1, 7, 100, 4095, 4096, 16384, 16385, 65536, (1u << 20) + 3,
                             4u << 20, 16u << 20, 64u << 20};
  std::vector<size_t> keep;
  for (size_t s : out)
    if (s <= max) keep.push_back(s);
  return keep;
}

/// Connects over the out-of-band socket: the receiver listens and sends the handle; the
/// sender retries connect() until it returns a comm. Returns the comm.
void* establish(Net& net, void* ctx, int dev, int oob, bool sender, bool nullDevComm) {
  auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
  if (sender) {
    char handle[BRAID_NCCL_NET_HANDLE_MAXSIZE];
    oobRead(oob, handle, sizeof handle);
    void* comm = nullptr;
    braid_ncclNetDeviceHandle_t* devComm = nullptr;
    int tries = 0;
    while (comm == nullptr) {
      NCCLCHECK(net.connect(ctx, dev, handle, &comm, nullDevComm ? nullptr : &devComm));
      ++tries;
      CHECK(Clock::now() < deadline, "connect: no send comm after %d s", kTimeoutS);
    }
    CHECK(devComm == nullptr, "connect: a host plugin set a device handle");
    say("connected after %d connect() calls", tries);
    return comm;
  }
  char handle[BRAID_NCCL_NET_HANDLE_MAXSIZE];
  std::memset(handle, 0xa5, sizeof handle);
  void* lc = nullptr;
  NCCLCHECK(net.listen(ctx, dev, handle, &lc));
  CHECK(lc != nullptr, "listen returned a NULL listen comm");
  oobWrite(oob, handle, sizeof handle);
  void* comm = nullptr;
  braid_ncclNetDeviceHandle_t* devComm = nullptr;
  int tries = 0;
  while (comm == nullptr) {
    NCCLCHECK(net.accept(lc, &comm, nullDevComm ? nullptr : &devComm));
    ++tries;
    CHECK(Clock::now() < deadline, "accept: no receive comm after %d s", kTimeoutS);
  }
  CHECK(devComm == nullptr, "accept: a host plugin set a device handle");
  NCCLCHECK(net.closeListen(lc));  // as NCCL does, right after accept
  say("accepted after %d accept() calls", tries);
  return comm;
}

/// The whole conversation of one side. Both run the same steps in the same order.
void runSide(const Options& o, bool sender, int oob) {
  void* lib = openLikeNccl(o.plugin);
  Net net = load(lib, o.version);
  CHECK(net.name == "braid", "the plugin's name is '%s'", net.name.c_str());
  void* ctx = nullptr;
  NCCLCHECK(net.init(&ctx));
  int ndev = 0;
  checkDevices(net, &ndev);
  CHECK(o.dev < ndev, "device %d requested, %d exist", o.dev, ndev);
  int dev = o.fuse ? fuse(net, ndev) : o.dev;

  void* comm = establish(net, ctx, dev, oob, sender, o.version == 9);

  // 1. One message per size, each received into a larger buffer (NCCL's receives are
  //    sized for the step, the sends for the data).
  std::vector<size_t> sizes = sizesUpTo(o.maxSize);
  size_t cap = sizes.back() + 4096;
  std::vector<uint8_t> buf(cap);
  void* mh = nullptr;
  int type = BRAID_NCCL_PTR_HOST;
  if (o.gpu) {
    braid_ncclNetProperties_v11_t p{};
    NCCLCHECK(net.getProperties(dev, &p));
    CHECK(p.ptrSupport & BRAID_NCCL_PTR_CUDA, "--gpu: device %d advertises ptrSupport %#x", dev,
          p.ptrSupport);
    type = BRAID_NCCL_PTR_CUDA;
  }
  NCCLCHECK(net.regMr(comm, buf.data(), buf.size(), type, &mh));
  CHECK(mh != nullptr, "regMr returned a NULL handle");
  uint64_t moved = 0;
  auto t0 = Clock::now();
  for (int rep = 0; rep < o.repeat; ++rep) {
    for (size_t s : sizes) {
      uint64_t seed = s * 7919 + static_cast<uint64_t>(rep);
      if (sender) {
        fill(buf.data(), s, seed);
        void* req = postSend(net, comm, buf.data(), s, 3, mh);
        int got = -1;
        std::string what = "send of " + std::to_string(s) + " bytes";
        waitDone(net, req, &got, what.c_str());
        CHECK(got == static_cast<int>(s), "send of %zu reported %d bytes", s, got);
      } else {
        std::memset(buf.data(), 0, s + 64);
        void* data[1] = {buf.data()};
        size_t rs[1] = {cap};
        int tags[1] = {3};
        void* mhs[1] = {mh};
        void* req = postRecv(net, comm, 1, data, rs, tags, mhs, s < 65536);
        int got = -1;
        std::string what = "receive of " + std::to_string(s) + " bytes";
        waitDone(net, req, &got, what.c_str());
        CHECK(got == static_cast<int>(s), "receive of a %zu-byte message reported %d", s, got);
        verify(buf.data(), s, seed, "receive");
        for (size_t i = s; i < s + 64; ++i)
          CHECK(buf[i] == 0, "receive of %zu bytes wrote byte %zu", s, i);
        // iflush, as NCCL issues it after a GPUDirect receive: over verbs an RDMA READ of
        // the buffer (--expect-flush), over TCP nothing to wait for (NULL); an empty
        // receive never needs one.
        int isz[1] = {got};
        void* fr = reinterpret_cast<void*>(0x1);
        NCCLCHECK(net.iflush(comm, 1, data, isz, mhs, &fr));
        if (s == 0) CHECK(fr == nullptr, "iflush of an empty receive returned a request");
        else if (o.expectFlush) CHECK(fr != nullptr, "iflush over verbs issued no READ");
        if (fr != nullptr) waitDone(net, fr, nullptr, "flush");
        if (s > 0) verify(buf.data(), s, seed, "receive after its flush");
      }
      moved += s;
    }
    if (o.repeat > 1)
      say("round %d of %d: %zu sizes up to %zu bytes intact", rep + 1, o.repeat, sizes.size(),
          sizes.back());
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  say("sizes 0..%zu: %zu messages x %d intact (%.1f MB in %.2f s)", sizes.back(), sizes.size(),
      o.repeat, moved / 1e6, secs);
  barrier(oob, 'a');

  // 2. Grouped receives: 8 buffers, tags 10..17, sizes differing; the sender sends the
  //    tags in reverse order, so only tag matching puts each in its buffer.
  {
    constexpr int kN = 8;
    std::vector<std::vector<uint8_t>> bufs(kN);
    void* data[kN];
    size_t rs[kN];
    int tags[kN];
    void* mhs[kN];
    for (int i = 0; i < kN; ++i) {
      size_t s = 1000 * static_cast<size_t>(i) + (i % 2 ? 70000 : 13);
      bufs[i].assign(s + 128, 0);
      data[i] = bufs[i].data();
      rs[i] = bufs[i].size();
      tags[i] = 10 + i;
      NCCLCHECK(net.regMr(comm, data[i], rs[i], BRAID_NCCL_PTR_HOST, &mhs[i]));
    }
    if (sender) {
      void* reqs[kN];
      for (int i = kN - 1; i >= 0; --i) {
        size_t s = rs[i] - 128;
        fill(bufs[i].data(), s, 100 + static_cast<uint64_t>(i));
        reqs[i] = postSend(net, comm, data[i], s, tags[i], mhs[i]);
      }
      for (int i = 0; i < kN; ++i) waitDone(net, reqs[i], nullptr, "grouped send");
    } else {
      void* req = postRecv(net, comm, kN, data, rs, tags, mhs, false);
      int got[kN];
      std::fill(got, got + kN, -1);
      waitDone(net, req, got, "grouped receive");
      for (int i = 0; i < kN; ++i) {
        size_t s = rs[i] - 128;
        CHECK(got[i] == static_cast<int>(s), "grouped receive %d: size %d, expected %zu", i,
              got[i], s);
        verify(bufs[i].data(), s, 100 + static_cast<uint64_t>(i), "grouped receive");
      }
    }
    for (int i = 0; i < kN; ++i) NCCLCHECK(net.deregMr(comm, mhs[i]));
    say("grouped receive of 8 tagged buffers intact");
  }
  barrier(oob, 'b');

  // 3. Requests in flight: the sender posts 256 (32 x maxRecvs) before testing any; the
  //    257th must come back NULL (retry), and succeed once one finished. The receiver
  //    posts 32 grouped receives of 8.
  {
    constexpr int kReq = 256, kMsg = 512;
    std::vector<uint8_t> many(static_cast<size_t>(kReq + 1) * kMsg);
    void* mmh = nullptr;
    NCCLCHECK(net.regMr(comm, many.data(), many.size(), BRAID_NCCL_PTR_HOST, &mmh));
    if (sender) {
      std::vector<void*> reqs;
      for (int i = 0; i <= kReq; ++i) fill(&many[static_cast<size_t>(i) * kMsg], kMsg, 5000u + i);
      for (int i = 0; i < kReq; ++i) {
        void* r = nullptr;
        NCCLCHECK(net.isend(comm, &many[static_cast<size_t>(i) * kMsg], kMsg, i % 8, mmh, &r));
        CHECK(r != nullptr, "isend %d of %d in flight returned NULL", i + 1, kReq);
        reqs.push_back(r);
      }
      void* extra = nullptr;
      NCCLCHECK(net.isend(comm, &many[static_cast<size_t>(kReq) * kMsg], kMsg, kReq % 8, mmh, &extra));
      CHECK(extra == nullptr, "isend %d with %d in flight did not ask for a retry", kReq + 1, kReq);
      waitDone(net, reqs[0], nullptr, "send 0 of many");
      extra = postSend(net, comm, &many[static_cast<size_t>(kReq) * kMsg], kMsg, kReq % 8, mmh);
      for (int i = 1; i < kReq; ++i) waitDone(net, reqs[static_cast<size_t>(i)], nullptr, "send of many");
      waitDone(net, extra, nullptr, "retried send");
    } else {
      // Receives 0..255 as 32 groups of 8 (tags 0..7), then the 257th (tag 0) alone.
      std::vector<void*> reqs;
      for (int g = 0; g < kReq / 8; ++g) {
        void* data[8];
        size_t rs[8];
        int tags[8];
        void* mhs[8];
        for (int k = 0; k < 8; ++k) {
          data[k] = &many[static_cast<size_t>(g * 8 + k) * kMsg];
          rs[k] = kMsg;
          tags[k] = k;
          mhs[k] = mmh;
        }
        reqs.push_back(postRecv(net, comm, 8, data, rs, tags, mhs, false));
      }
      void* last = &many[static_cast<size_t>(kReq) * kMsg];
      size_t lastSize = kMsg;
      int lastTag = 0;
      void* r257 = postRecv(net, comm, 1, &last, &lastSize, &lastTag, &mmh, true);
      for (void* r : reqs) {
        int got[8];
        waitDone(net, r, got, "grouped receive of many");
        for (int k = 0; k < 8; ++k) CHECK(got[k] == kMsg, "many: size %d", got[k]);
      }
      waitDone(net, r257, nullptr, "receive 257");
      for (int i = 0; i <= kReq; ++i)
        verify(&many[static_cast<size_t>(i) * kMsg], kMsg, 5000u + i, "many");
    }
    NCCLCHECK(net.deregMr(comm, mmh));
    say("256 requests in flight, the 257th retried after a NULL request, all intact");
  }
  barrier(oob, 'c');

  // 4. A message larger than its receive: an error, never an overrun.
  {
    std::vector<uint8_t> big(70000 + 64, 0);
    if (sender) {
      fill(big.data(), 70000, 77);
      void* req = postSend(net, comm, big.data(), 70000, 4, nullptr);
      int done = 0, got = 0, rc = 0;
      auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
      while (rc == 0 && !done && Clock::now() < deadline) rc = net.test(req, &done, &got);
      CHECK(rc != 0, "a send larger than its receive finished without an error");
      say("oversized send failed with ncclResult %d", rc);
    } else {
      void* data[1] = {big.data()};
      size_t rs[1] = {4096};
      int tags[1] = {4};
      void* req = postRecv(net, comm, 1, data, rs, tags, nullptr, false);
      int done = 0, got = 0, rc = 0;
      auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
      while (rc == 0 && !done && Clock::now() < deadline) rc = net.test(req, &done, &got);
      CHECK(rc == braid_ncclInvalidUsage, "truncated receive: ncclResult %d (done %d), expected "
            "ncclInvalidUsage", rc, done);
      for (size_t i = 4096; i < big.size(); ++i)
        CHECK(big[i] == 0, "truncated receive wrote byte %zu past its 4096", i);
      say("truncated receive failed with ncclInvalidUsage, nothing written past the buffer");
    }
  }
  barrier(oob, 'd');

  // 5. Closing with requests in flight: receives never matched, a rendezvous send
  //    never received. Both closes return promptly; nothing crashes.
  {
    std::vector<uint8_t> pend(1u << 20);
    void* pmh = nullptr;
    NCCLCHECK(net.regMr(comm, pend.data(), pend.size(), BRAID_NCCL_PTR_HOST, &pmh));
    if (sender) {
      void* r = postSend(net, comm, pend.data(), pend.size(), 99, pmh);
      int done = 0;
      NCCLCHECK(net.test(r, &done, nullptr));
    } else {
      for (int i = 0; i < 4; ++i) {
        void* data[1] = {pend.data()};
        size_t rs[1] = {pend.size()};
        int tags[1] = {50 + i};
        postRecv(net, comm, 1, data, rs, tags, &pmh, false);
      }
    }
    barrier(oob, 'e');
    NCCLCHECK(net.deregMr(comm, mh));
    NCCLCHECK(net.deregMr(comm, pmh));
    auto c0 = Clock::now();
    NCCLCHECK(sender ? net.closeSend(comm) : net.closeRecv(comm));
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - c0).count();
    CHECK(ms < 5000, "close with requests in flight took %.0f ms", ms);
    say("closed with requests in flight in %.0f ms", ms);
  }
  if (net.finalize) {
    NCCLCHECK(net.finalize(ctx));
    NCCLCHECK(net.finalize(nullptr));  // after a failed init NCCL finalizes a NULL ctx
  }
  barrier(oob, 'f');
  say("v%d: all steps passed", o.version);
}

int forkPair(const Options& o, const std::function<void(bool, int)>& side) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", std::strerror(errno));
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: %s", std::strerror(errno));
  if (pid == 0) {
    ::close(sv[0]);
    gRole = "send";
    side(true, sv[1]);
    std::fflush(stdout);
    _exit(0);
  }
  ::close(sv[1]);
  gRole = "recv";
  side(false, sv[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the sender failed (status %#x)", status);
  (void)o;
  return 0;
}

int oobConnect(const std::string& hostPort) {
  auto colon = hostPort.rfind(':');
  CHECK(colon != std::string::npos, "--oob wants HOST:PORT, not %s", hostPort.c_str());
  std::string host = hostPort.substr(0, colon), port = hostPort.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  CHECK(getaddrinfo(host.c_str(), port.c_str(), &hints, &ai) == 0, "getaddrinfo(%s) failed",
        hostPort.c_str());
  auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
  for (;;) {
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      freeaddrinfo(ai);
      return fd;
    }
    ::close(fd);
    CHECK(Clock::now() < deadline, "out-of-band connect to %s: %s", hostPort.c_str(),
          std::strerror(errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

int oobAccept(int port) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  CHECK(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(l, 1) == 0,
        "out-of-band listen on port %d: %s", port, std::strerror(errno));
  int fd = ::accept(l, nullptr, nullptr);
  CHECK(fd >= 0, "out-of-band accept: %s", std::strerror(errno));
  ::close(l);
  return fd;
}

void* loopConnect(Net& n, void* lctx, void* cctx, void** rcOut);

// ---- local: two communicators in one process, and a second copy of the library

void localMode(const Options& o) {
  gRole = "local";
  void* lib = openLikeNccl(o.plugin);
  Net a = load(lib, o.version);
  void* ctxA = nullptr;
  void* ctxB = nullptr;
  NCCLCHECK(a.init(&ctxA));
  NCCLCHECK(a.init(&ctxB));  // a second communicator
  int ndev = 0;
  checkDevices(a, &ndev);

  // A listen comm that never accepts, closed unused (NCCL's shared comms do this).
  {
    char handle[BRAID_NCCL_NET_HANDLE_MAXSIZE] = {};
    void* lc = nullptr;
    NCCLCHECK(a.listen(ctxA, 0, handle, &lc));
    CHECK(lc != nullptr, "listen returned NULL");
    NCCLCHECK(a.closeListen(lc));
    say("closeListen on a listen comm that never accepted");
  }

  // Loopback: ctxB connects to ctxA's listener; connect and accept alternate in this one
  // thread with NULL device-handle pointers (NCCL's ncclGpuGdrSupport does this).
  auto loop = [&](Net& ln, void* lctx, Net& cn, void* cctx, const char* what) {
    char handle[BRAID_NCCL_NET_HANDLE_MAXSIZE] = {};
    void* lc = nullptr;
    NCCLCHECK(ln.listen(lctx, 0, handle, &lc));
    void* sc = nullptr;
    void* rc = nullptr;
    auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
    while (sc == nullptr || rc == nullptr) {
      if (sc == nullptr) NCCLCHECK(cn.connect(cctx, 0, handle, &sc, nullptr));
      if (rc == nullptr) NCCLCHECK(ln.accept(lc, &rc, nullptr));
      CHECK(Clock::now() < deadline, "%s: loopback connect/accept did not finish", what);
    }
    NCCLCHECK(ln.closeListen(lc));
    // A few messages each way is not possible (one-way comms): send 3 sizes.
    for (size_t s : {size_t{0}, size_t{5000}, size_t{3u << 20}}) {
      std::vector<uint8_t> out(s + 1), in(s + 64, 0);
      fill(out.data(), s, s + 1);
      void *smh = nullptr, *rmh = nullptr;
      NCCLCHECK(cn.regMr(sc, out.data(), out.size(), BRAID_NCCL_PTR_HOST, &smh));
      NCCLCHECK(ln.regMr(rc, in.data(), in.size(), BRAID_NCCL_PTR_HOST, &rmh));
      void* data[1] = {in.data()};
      size_t rs[1] = {in.size()};
      int tags[1] = {1};
      void* rreq = postRecv(ln, rc, 1, data, rs, tags, &rmh, false);
      void* sreq = postSend(cn, sc, out.data(), s, 1, smh);
      int sdone = 0, rdone = 0, got = -1;
      while (!sdone || !rdone) {
        if (!sdone) NCCLCHECK(cn.test(sreq, &sdone, nullptr));
        if (!rdone) NCCLCHECK(ln.test(rreq, &rdone, &got));
        CHECK(Clock::now() < deadline, "%s: loopback transfer of %zu did not finish", what, s);
      }
      CHECK(got == static_cast<int>(s), "%s: received %d of %zu", what, got, s);
      verify(in.data(), s, s + 1, what);
      NCCLCHECK(cn.deregMr(sc, smh));
      NCCLCHECK(ln.deregMr(rc, rmh));
    }
    NCCLCHECK(cn.closeSend(sc));
    NCCLCHECK(ln.closeRecv(rc));
    say("%s: loopback connect/accept from one thread, 3 messages intact", what);
  };
  loop(a, ctxA, a, ctxB, "two communicators");

  // Forged or stale handles are errors, never a crash: a handle braid's listen did not make,
  // and one whose connect id this communicator never issued.
  {
    char handle[BRAID_NCCL_NET_HANDLE_MAXSIZE];
    std::memset(handle, 0x5a, sizeof handle);
    void* sc = reinterpret_cast<void*>(0x1);
    CHECK(a.connect(ctxA, 0, handle, &sc, nullptr) != 0 && sc == nullptr,
          "connect accepted a handle of random bytes");
    void* lc = nullptr;
    NCCLCHECK(a.listen(ctxA, 0, handle, &lc));
    uint64_t bogus = 0xdeadbeefULL;
    std::memcpy(handle + 80, &bogus, sizeof bogus);  // the connect id's place
    sc = reinterpret_cast<void*>(0x1);
    CHECK(a.connect(ctxB, 0, handle, &sc, nullptr) != 0 && sc == nullptr,
          "connect accepted a handle naming a connect that does not exist");
    NCCLCHECK(a.closeListen(lc));
    say("forged handles refused");
  }

  // GPU memory is refused where GPUDirect RDMA is not advertised (NCCL stages it instead).
  {
    braid_ncclNetProperties_v11_t p{};
    NCCLCHECK(a.getProperties(0, &p));
    if ((p.ptrSupport & BRAID_NCCL_PTR_CUDA) == 0) {
      char handle[BRAID_NCCL_NET_HANDLE_MAXSIZE] = {};
      void* lc = nullptr;
      NCCLCHECK(a.listen(ctxA, 0, handle, &lc));
      void *sc = nullptr, *rc = nullptr;
      auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
      while (sc == nullptr || rc == nullptr) {
        if (sc == nullptr) NCCLCHECK(a.connect(ctxB, 0, handle, &sc, nullptr));
        if (rc == nullptr) NCCLCHECK(a.accept(lc, &rc, nullptr));
        CHECK(Clock::now() < deadline, "connect/accept did not finish");
      }
      std::vector<uint8_t> buf(4096);
      void* mh = reinterpret_cast<void*>(0x1);
      int rcode = a.regMr(sc, buf.data(), buf.size(), BRAID_NCCL_PTR_CUDA, &mh);
      CHECK(rcode != 0 && mh == nullptr, "regMr of type CUDA without NCCL_PTR_CUDA: result %d",
            rcode);
      NCCLCHECK(a.closeListen(lc));
      NCCLCHECK(a.closeSend(sc));
      NCCLCHECK(a.closeRecv(rc));
      say("ptrSupport %#x: regMr of GPU memory refused (result %d)", p.ptrSupport, rcode);
    }
  }

  // Misuse is an error, never a crash: a NULL request, a send on a receive comm, too many
  // grouped receives; and a communicator finalized before its comms are closed leaves them
  // working until they are.
  {
    void* ctxD = nullptr;
    NCCLCHECK(a.init(&ctxD));
    void* rc = nullptr;
    void* sc = loopConnect(a, ctxD, ctxD, &rc);
    int done = 0;
    CHECK(a.test(nullptr, &done, nullptr) != 0, "test(NULL) succeeded");
    uint8_t byte = 1;
    void* r = reinterpret_cast<void*>(0x1);
    CHECK(a.isend(rc, &byte, 1, 0, nullptr, &r) != 0 && r == nullptr, "isend on a receive comm");
    void* data[9];
    size_t sizes[9];
    int tags[9];
    for (int i = 0; i < 9; ++i) {
      data[i] = &byte;
      sizes[i] = 1;
      tags[i] = i;
    }
    r = reinterpret_cast<void*>(0x1);
    CHECK(a.irecv(rc, 9, data, sizes, tags, nullptr, &r) != 0 && r == nullptr,
          "irecv of 9 buffers (maxRecvs 8) succeeded");
    if (a.finalize) NCCLCHECK(a.finalize(ctxD));
    uint8_t in = 0;
    void* din = &in;
    size_t cap = 1;
    int tag = 2;
    void* rr = postRecv(a, rc, 1, &din, &cap, &tag, nullptr, false);
    void* sr = postSend(a, sc, &byte, 1, 2, nullptr);
    waitDone(a, sr, nullptr, "send after finalize");
    waitDone(a, rr, nullptr, "receive after finalize");
    CHECK(in == 1, "the message after finalize did not arrive");
    NCCLCHECK(a.closeRecv(rc));  // the receiver first, this time
    NCCLCHECK(a.closeSend(sc));
    say("misuse refused; comms outlive their finalized communicator");
  }

  // A second copy of the library (another file: dlopen gives a separate instance, with its
  // own statics), talking to the first.
  std::string copy = "/tmp/libnccl-net-braid-copy-" + std::to_string(getpid()) + ".so";
  std::filesystem::copy_file(o.plugin, copy, std::filesystem::copy_options::overwrite_existing);
  void* lib2 = dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
  CHECK(lib2 != nullptr, "dlopen(%s): %s", copy.c_str(), dlerror());
  std::filesystem::remove(copy);
  CHECK(lib2 != lib, "the copy did not load as a second instance");
  Net b = load(lib2, o.version);
  void* ctxC = nullptr;
  NCCLCHECK(b.init(&ctxC));
  int ndev2 = 0;
  NCCLCHECK(b.devices(&ndev2));
  CHECK(ndev2 == ndev, "the second instance sees %d devices, the first %d", ndev2, ndev);
  loop(a, ctxA, b, ctxC, "two instances of the library");

  if (a.finalize) {
    NCCLCHECK(a.finalize(ctxA));
    NCCLCHECK(a.finalize(ctxB));
    NCCLCHECK(b.finalize(ctxC));
    NCCLCHECK(a.finalize(nullptr));
  }
  // lib2 stays loaded: braid keeps a few process-lifetime tables (log sinks, parsed knobs,
  // the libibverbs table) that an unload would leave behind (about 5 KB, which LSan would
  // rightly report), and NCCL unloads a plugin only after its last communicator.
  say("local: all steps passed");
}

// ---- threads: NCCL's service thread (connect/accept, regMr/deregMr) and progress thread
// (isend/irecv/test) inside one communicator at once

void* loopConnect(Net& n, void* lctx, void* cctx, void** rcOut) {
  char handle[BRAID_NCCL_NET_HANDLE_MAXSIZE] = {};
  void* lc = nullptr;
  NCCLCHECK(n.listen(lctx, 0, handle, &lc));
  void *sc = nullptr, *rc = nullptr;
  auto deadline = Clock::now() + std::chrono::seconds(kTimeoutS);
  while (sc == nullptr || rc == nullptr) {
    if (sc == nullptr) NCCLCHECK(n.connect(cctx, 0, handle, &sc, nullptr));
    if (rc == nullptr) NCCLCHECK(n.accept(lc, &rc, nullptr));
    CHECK(Clock::now() < deadline, "loopback connect/accept did not finish");
  }
  NCCLCHECK(n.closeListen(lc));
  *rcOut = rc;
  return sc;
}

void threadsMode(const Options& o) {
  gRole = "threads";
  void* lib = openLikeNccl(o.plugin);
  Net n = load(lib, o.version);
  void *ctxA = nullptr, *ctxB = nullptr;
  NCCLCHECK(n.init(&ctxA));
  NCCLCHECK(n.init(&ctxB));
  int ndev = 0;
  NCCLCHECK(n.devices(&ndev));
  void* rc = nullptr;
  void* sc = loopConnect(n, ctxA, ctxB, &rc);
  constexpr int kIters = 300;
  constexpr size_t kSize = 40000;  // above the eager limit: rendezvous
  std::thread progress([&] {
    std::vector<uint8_t> out(kSize), in(kSize);
    for (int i = 0; i < kIters; ++i) {
      fill(out.data(), kSize, static_cast<uint64_t>(i));
      void* data = in.data();
      size_t cap = kSize;
      int tag = 7;
      void* rr = postRecv(n, rc, 1, &data, &cap, &tag, nullptr, false);
      void* sr = postSend(n, sc, out.data(), kSize, 7, nullptr);
      int sd = 0, rd = 0, got = 0;
      while (!sd || !rd) {
        if (!sd) NCCLCHECK(n.test(sr, &sd, nullptr));
        if (!rd) NCCLCHECK(n.test(rr, &rd, &got));
      }
      CHECK(got == static_cast<int>(kSize), "threads: received %d", got);
      verify(in.data(), kSize, static_cast<uint64_t>(i), "threads");
    }
  });
  // Meanwhile the "service" thread registers and deregisters on the same comms, and makes
  // and closes other connections on the same communicators.
  std::vector<uint8_t> reg(1 << 20);
  for (int i = 0; i < 40; ++i) {
    void *m1 = nullptr, *m2 = nullptr;
    NCCLCHECK(n.regMr(sc, reg.data(), reg.size(), BRAID_NCCL_PTR_HOST, &m1));
    NCCLCHECK(n.regMr(rc, reg.data() + 4096, 8192, BRAID_NCCL_PTR_HOST, &m2));
    NCCLCHECK(n.deregMr(sc, m1));
    NCCLCHECK(n.deregMr(rc, m2));
    if (i % 8 == 0) {
      void* rc2 = nullptr;
      void* sc2 = loopConnect(n, ctxA, ctxB, &rc2);
      NCCLCHECK(n.closeSend(sc2));
      NCCLCHECK(n.closeRecv(rc2));
    }
  }
  progress.join();
  NCCLCHECK(n.closeSend(sc));
  NCCLCHECK(n.closeRecv(rc));
  if (n.finalize) {
    NCCLCHECK(n.finalize(ctxA));
    NCCLCHECK(n.finalize(ctxB));
  }
  say("threads: %d transfers on the progress thread while the service thread registered and "
      "connected, all intact", kIters);
}

// ---- bench: 4 MiB messages through the plugin API, a window of 8 as NCCL's steps

void benchSide(const Options& o, bool sender, int oob) {
  void* lib = openLikeNccl(o.plugin);
  Net net = load(lib, o.version);
  void* ctx = nullptr;
  NCCLCHECK(net.init(&ctx));
  int ndev = 0;
  NCCLCHECK(net.devices(&ndev));
  void* comm = establish(net, ctx, o.dev, oob, sender, false);
  const int w = o.window;
  // One buffer for every message in flight, as braid_send_bw and perftest do without
  // validation: the comparison is then of the paths, not of cache footprints.
  std::vector<uint8_t> buf(o.benchSize);
  fill(buf.data(), buf.size(), 1);
  void* mh = nullptr;
  NCCLCHECK(net.regMr(comm, buf.data(), buf.size(), BRAID_NCCL_PTR_HOST, &mh));
  // As NCCL's proxy: up to `w` steps posted, only the oldest outstanding one tested.
  auto run = [&](int iters) {
    std::vector<void*> slots(static_cast<size_t>(w), nullptr);
    int posted = 0, finished = 0;
    while (finished < iters) {
      while (posted < iters && posted - finished < w) {
        void* data = buf.data();
        void* r = nullptr;
        if (sender) {
          NCCLCHECK(net.isend(comm, data, o.benchSize, 0, mh, &r));
        } else {
          size_t rs = o.benchSize;
          int tag = 0;
          NCCLCHECK(net.irecv(comm, 1, &data, &rs, &tag, &mh, &r));
        }
        if (r == nullptr) break;
        slots[static_cast<size_t>(posted % w)] = r;
        ++posted;
      }
      if (finished == posted) continue;
      int done = 0, sz = 0;
      NCCLCHECK(net.test(slots[static_cast<size_t>(finished % w)], &done, &sz));
      if (done) ++finished;
    }
  };
  run(std::max(10, o.benchIters / 10));  // warm-up
  barrier(oob, 'w');
  auto t0 = Clock::now();
  run(o.benchIters);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  barrier(oob, 'x');
  if (!sender) {
    double mbs = static_cast<double>(o.benchSize) * o.benchIters / secs / 1e6;
    std::printf("plugin_bw size %zu iters %d window %d: %.1f MB/s (%.3f s)\n", o.benchSize,
                o.benchIters, w, mbs, secs);
    std::fflush(stdout);
  }
  NCCLCHECK(net.deregMr(comm, mh));
  NCCLCHECK(sender ? net.closeSend(comm) : net.closeRecv(comm));
  if (net.finalize) NCCLCHECK(net.finalize(ctx));
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: plugin_harness pair|recv|send|local|threads|bench --plugin PATH [--version "
               "11|10|9|8]\n  [--max-size BYTES] [--repeat N] [--dev D] [--oob HOST:PORT | "
               "--oob-listen PORT]\n  [--size BYTES] [--iters N] [--window W]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string mode = argv[1];
  Options o;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--plugin") o.plugin = next();
    else if (a == "--version") o.version = std::stoi(next());
    else if (a == "--max-size") o.maxSize = std::stoull(next());
    else if (a == "--repeat") o.repeat = std::stoi(next());
    else if (a == "--dev") o.dev = std::stoi(next());
    else if (a == "--oob" || a == "--oob-listen") o.oob = next();
    else if (a == "--size") o.benchSize = std::stoull(next());
    else if (a == "--iters") o.benchIters = std::stoi(next());
    else if (a == "--window") o.window = std::stoi(next());
    else if (a == "--fuse") o.fuse = true;
    else if (a == "--expect-flush") o.expectFlush = true;
    else if (a == "--gpu") o.gpu = true;
    else usage();
  }
  if (o.plugin.empty()) usage();
  if (mode == "pair") return forkPair(o, [&](bool s, int fd) { runSide(o, s, fd); });
  if (mode == "bench") return forkPair(o, [&](bool s, int fd) { benchSide(o, s, fd); });
  if (mode == "local") {
    localMode(o);
    return 0;
  }
  if (mode == "threads") {
    threadsMode(o);
    return 0;
  }
  if (mode == "recv") {
    gRole = "recv";
    runSide(o, false, oobAccept(std::stoi(o.oob)));
    return 0;
  }
  if (mode == "send") {
    gRole = "send";
    runSide(o, true, oobConnect(o.oob));
    return 0;
  }
  usage();
}
