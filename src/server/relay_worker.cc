// Relay::Worker (relay_internal.h): one thread of a relay. Its generation slots and the counts
// it flushes to the daemon's metrics, its table of agent endpoints (the keys of its upstream
// pool), its acceptor and its sweep.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <vector>

#include "relay_internal.h"

namespace mend::server_detail {
namespace {

constexpr auto kSweepPeriod = std::chrono::milliseconds(200);

}  // namespace

Relay::Worker::Slot* Relay::Worker::acquire_slot() {
  DaemonCore& core = relay.core_;
  const std::uint64_t number = core.generation_number();
  if (!slot || slot->number != number) {
    if (slot) {
      flush(*slot);
      if (slot->users == 0) {
        slot.reset();
      } else {
        retired.push_back(std::move(slot));
      }
    }
    slot = std::make_unique<Slot>();
    slot->number = number;
    slot->generation = core.current();
    if (slot->generation && relay.options_.index < slot->generation->relay_routes.size()) {
      slot->route = slot->generation->relay_routes[relay.options_.index].get();
    }
    slot->deltas.assign(slot->route ? slot->route->chain.size() : 0, AgentDelta{});
  }
  ++slot->users;
  return slot.get();
}

void Relay::Worker::release_slot(Slot* s) {
  if (--s->users > 0 || s == slot.get()) return;
  flush(*s);
  std::erase_if(retired, [s](const std::unique_ptr<Slot>& r) { return r.get() == s; });
}

// Counts go to the daemon's families and its per-agent counters (under their own locks).
void Relay::Worker::flush() {
  DaemonCore& core = relay.core_;
  // The calls first, the requests' outcomes last: whoever sees an outcome counted sees its
  // calls counted too.
  if (slot) flush(*slot);
  for (auto& r : retired) flush(*r);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (outcomes[i] == 0) continue;
    core.m_.relay_requests->with({relay.options_.agent, kOutcomeNames[i]})
        .inc(static_cast<double>(outcomes[i]));
    outcomes[i] = 0;
  }
  for (std::size_t i = 0; i < hedges.size(); ++i) {
    if (hedges[i] == 0) continue;
    if (hedge_family == nullptr) {
      // Registered here rather than with the daemon's families: only a relay hedges. The same
      // definition from every worker and relay gives the same family.
      hedge_family = &core.metrics.counter(
          "mend_relay_hedges_total",
          "Hedges of requests through a relay (a second call to another replica of a slow "
          "agent), by the relay's agent and how they ended: won, lost, failed, refused.",
          {"relay", "result"});
    }
    hedge_family->with({relay.options_.agent, kHedgeResultNames[i]})
        .inc(static_cast<double>(hedges[i]));
    hedges[i] = 0;
  }
}

void Relay::Worker::flush(Slot& s) {
  DaemonCore& core = relay.core_;
  if (s.route == nullptr) return;
  for (std::size_t i = 0; i < s.deltas.size() && i < s.route->chain.size(); ++i) {
    AgentDelta& d = s.deltas[i];
    if (d.empty()) continue;
    const RelayTarget& t = s.route->chain[i];
    if (d.successes) {
      core.m_.attempts->with({t.agent, "success"}).inc(static_cast<double>(d.successes));
    }
    if (d.failures)
      core.m_.attempts->with({t.agent, "failure"}).inc(static_cast<double>(d.failures));
    if (d.retries) core.m_.retries->with({t.agent}).inc(static_cast<double>(d.retries));
    if (d.fallbacks) core.m_.fallbacks->with({t.agent}).inc(static_cast<double>(d.fallbacks));
    if (t.counters != nullptr) {
      t.counters->calls.fetch_add(d.successes + d.failures, std::memory_order_relaxed);
      t.counters->failures.fetch_add(d.failures, std::memory_order_relaxed);
      t.counters->retries.fetch_add(d.retries, std::memory_order_relaxed);
      t.counters->answered_as_fallback.fetch_add(d.fallbacks, std::memory_order_relaxed);
      t.counters->calls_ended.fetch_add(d.ended, std::memory_order_relaxed);
      t.counters->latency_ns.fetch_add(d.latency_ns, std::memory_order_relaxed);
    }
    d = AgentDelta{};
  }
}

std::size_t Relay::Worker::endpoint_slot(const tcp::endpoint& e) {
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    if (endpoints[i] == e) return i;
  }
  endpoints.push_back(e);
  idle.emplace_back();
  return endpoints.size() - 1;
}

void Relay::Worker::accept() {
  acceptor.async_accept([this](const error_code& ec, Socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
        ec == net::error::no_memory || ec.value() == ENFILE) {
      // Out of descriptors or memory: accepting again at once would spin. A pause lets
      // connections end meanwhile.
      accept_pause.expires_after(std::chrono::milliseconds(100));
      accept_pause.async_wait([this](const error_code& e) {
        if (!e && acceptor.is_open()) accept();
      });
      return;
    }
    if (!ec) {
      error_code peer_error;
      net::ip::address client = socket.remote_endpoint(peer_error).address();
      if (client.is_v6() && client.to_v6().is_v4_mapped()) {
        client = net::ip::make_address_v4(net::ip::v4_mapped, client.to_v6());
      }
      const std::size_t per_client_limit = relay.options_.max_connections_per_client;
      const std::size_t workers = relay.workers_.size();
      auto from_client = per_client.find(client);
      const std::size_t held = from_client == per_client.end() ? 0 : from_client->second;
      if (peer_error || connections.size() * workers >= relay.options_.max_connections ||
          (per_client_limit > 0 && held >= std::max<std::size_t>(1, per_client_limit / workers))) {
        error_code ignored;
        socket.close(ignored);  // over a limit: refused at once, as the API server does
      } else {
        std::make_shared<Connection>(*this, std::move(socket), client)->start();
      }
    }
    accept();
  });
}

void Relay::Worker::arm_sweep() {
  sweep.expires_after(kSweepPeriod);
  sweep.async_wait([this](const error_code& ec) {
    if (ec) return;
    run_sweep();
    arm_sweep();
  });
}

void Relay::Worker::run_sweep() {
  const TimePoint now = clock().coarse_now();
  // Copied: a sweep may end a connection, which takes itself out of the list.
  const std::vector<Connection*> now_open = connections;
  for (Connection* c : now_open) c->sweep(now);
  for (auto& pool : idle) {
    std::erase_if(pool, [now](const std::unique_ptr<Upstream>& u) { return now >= u->deadline; });
  }
  flush();
}

}  // namespace mend::server_detail
