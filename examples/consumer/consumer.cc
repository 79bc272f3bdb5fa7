// Sends one message to itself over loopback through the installed braid.
#include <braid/transport.h>

#include <cstdio>
#include <cstring>

int main() {
  using namespace std::chrono_literals;
  auto ctx = braid::Context::create();
  if (!ctx) return std::printf("%s\n", ctx.status().toString().c_str()), 1;
  auto w = braid::Worker::create(*ctx);
  auto l = braid::Listener::create(**w);
  if (!l) return std::printf("%s\n", l.status().toString().c_str()), 1;
  auto c = braid::Endpoint::connect(**w, (*l)->address());
  std::unique_ptr<braid::Endpoint> s;
  while (!s || (*c)->connectProgress().code() == braid::Code::kInProgress)
    if (!s)
      if (auto a = (*l)->accept()) s = std::move(a).value();
  char out[] = "hello braid", in[32] = {};
  auto r = s->irecv(in, sizeof in, 1);
  auto q = (*c)->isend(out, sizeof out, 1);
  if (!q->wait(5s).isOk() || !r->wait(5s).isOk()) return 1;
  std::printf("received '%s' (%zu bytes)\n", in, r->size());
  return std::strcmp(in, out) == 0 ? 0 : 1;
}
